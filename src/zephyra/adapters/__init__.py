"""Our thin layer over PEFT: method presets that keep adapters on Zephyra's branch, a base fingerprint that
ties every adapter to its base, atomic save/load with a manifest, named adapters on one base, merging, QLoRA's
4-bit base on CPU, several LoRA adapters applied per row of one batch (bank.py), and the one scanner of an
adapters directory (scan.py). See store.py for the workflow.
Training an adapter is training's (zephyra.training.adapter): nothing here imports it.

    zephyra train adapter --domain python --base runs/phase2/final
"""

from .._lazy import exports

__getattr__, __dir__, __all__ = exports(__name__, {
    "bank": ["AdapterBank", "AdapterBankError", "RowLoRALinear", "read_adapter_dir"],
    "fingerprint": ["BaseFingerprint", "base_fingerprint"],
    "methods": ["METHODS", "AdapterConfigError", "AdapterSpec", "adapter_layers", "peft_config"],
    "quant": ["quantize_base_"],
    "scan": ["scan_adapters"],
    "store": ["AdapterMismatchError", "adapter_names", "attach_adapter", "check_adapter_base", "load_adapter",
              "merge_adapter", "save_adapter", "switch_adapter"],
})
