"""Our thin layer over PEFT: method presets that keep adapters on Zephyra's branch, a base fingerprint that
ties every adapter to its base, atomic save/load with a manifest, named adapters on one base, merging,
QLoRA's 4-bit base on CPU, and training one adapter per domain (train.py). See store.py for the workflow.

    zephyra train adapter --domain python --base runs/phase2/final
"""

from .fingerprint import BaseFingerprint, base_fingerprint
from .methods import METHODS, AdapterConfigError, AdapterSpec, adapter_layers, peft_config
from .quant import quantize_base_
from .store import (
    AdapterMismatchError, adapter_names, attach_adapter, check_adapter_base, load_adapter, merge_adapter,
    save_adapter, switch_adapter,
)
from .train import AdapterRecipe, load_adapter_recipe, train_adapter

__all__ = [
    "METHODS", "AdapterConfigError", "AdapterMismatchError", "AdapterRecipe", "AdapterSpec", "BaseFingerprint",
    "adapter_layers", "adapter_names", "attach_adapter", "base_fingerprint", "check_adapter_base", "load_adapter",
    "load_adapter_recipe", "merge_adapter", "peft_config", "quantize_base_", "save_adapter", "switch_adapter",
    "train_adapter",
]
