"""Zephyra Resolve: poly-domain adaptation on one unified architecture.

``import zephyra`` registers the Zephyra architecture with transformers' Auto classes (model_type "zephyra").
"""

import logging

# bitsandbytes (imported by peft) tries to fetch a CPU 4-bit kernel from the Hugging Face hub at import time and,
# offline as we always are, warns on every command that it falls back to its built-in kernel. The fallback is
# what we measured (docs/adapters.md), so the line is noise: keep its errors, drop its warnings.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

from .model import ZephyraConfig  # noqa: E402  (after the logging set-up above), ZephyraForCausalLM, ZephyraModel, preset_config

__version__ = "0.1.0"
__all__ = ["ZephyraConfig", "ZephyraForCausalLM", "ZephyraModel", "preset_config", "__version__"]
