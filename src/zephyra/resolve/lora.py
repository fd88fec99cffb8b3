"""The runtime's per-row LoRA (``AdapterBank``, ``RowLoRALinear``): it lives in ``zephyra.adapters.bank``, below the
router as well as the runtime, so that routers can batch adapters too; re-exported here for the runtime."""

from ..adapters.bank import (  # noqa: F401
    KERNELS,
    AdapterBank,
    AdapterBankError,
    LoRAUpdate,
    Mix,
    RowLoRALinear,
    read_adapter_dir,
    row_groups,
    row_masked,
    row_stacks,
)
