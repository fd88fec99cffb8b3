"""Zephyra Resolve: poly-domain adaptation on one unified architecture.

``import zephyra`` registers the Zephyra architecture with transformers' Auto classes (model_type "zephyra").
"""

from .model import ZephyraConfig, ZephyraForCausalLM, ZephyraModel, preset_config

__version__ = "0.1.0"
__all__ = ["ZephyraConfig", "ZephyraForCausalLM", "ZephyraModel", "preset_config", "__version__"]
