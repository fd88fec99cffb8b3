"""Zephyra Resolve: poly-domain adaptation on one unified architecture.

``import zephyra`` is light (no torch): the CLI starts from it. The architecture's names are imported on first
use, and importing ``zephyra.model`` (which any of them does) registers Zephyra with transformers' Auto classes
(model_type "zephyra"):

    import zephyra.model                       # or: from zephyra import ZephyraForCausalLM
    AutoModelForCausalLM.from_pretrained("runs/phase2/final")
"""

import logging

from ._lazy import exports

# bitsandbytes (imported by peft) tries to fetch a CPU 4-bit kernel from the Hugging Face hub at import time and,
# offline as we always are, warns on every command that it falls back to its built-in kernel. The fallback is
# what we measured (docs/adapters.md), so the line is noise: keep its errors, drop its warnings.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

__version__ = "0.1.0"
__getattr__, __dir__, __all__ = exports(__name__, {
    "model": ["ZephyraConfig", "ZephyraForCausalLM", "ZephyraModel", "preset_config"],
})
__all__ = [*__all__, "__version__"]
