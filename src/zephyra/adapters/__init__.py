"""Our thin layer over PEFT: method presets that keep adapters on Zephyra's branch, a base fingerprint that
ties every adapter to its base, atomic save/load with a manifest, named adapters on one base, merging, and
QLoRA's 4-bit base on CPU. See store.py for the workflow."""

from .fingerprint import BaseFingerprint, base_fingerprint
from .methods import METHODS, AdapterConfigError, AdapterSpec, adapter_layers, peft_config
from .quant import quantize_base_
from .store import (
    AdapterMismatchError, adapter_names, attach_adapter, check_adapter_base, load_adapter, merge_adapter,
    save_adapter, switch_adapter,
)

__all__ = [
    "METHODS", "AdapterConfigError", "AdapterMismatchError", "AdapterSpec", "BaseFingerprint", "adapter_layers",
    "adapter_names", "attach_adapter", "base_fingerprint", "check_adapter_base", "load_adapter", "merge_adapter",
    "peft_config", "quantize_base_", "save_adapter", "switch_adapter",
]
