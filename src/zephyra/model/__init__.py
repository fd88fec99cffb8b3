"""The Zephyra architecture. Imports nothing else of the zephyra package."""

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from .configuration import ZephyraConfig, ZephyraConfigError
from .modeling import ZephyraCausalLMOutput, ZephyraForCausalLM, ZephyraModel, ZephyraPreTrainedModel
from .presets import PRESETS, non_embedding_params, preset_config

AutoConfig.register("zephyra", ZephyraConfig, exist_ok=True)
AutoModel.register(ZephyraConfig, ZephyraModel, exist_ok=True)
AutoModelForCausalLM.register(ZephyraConfig, ZephyraForCausalLM, exist_ok=True)

__all__ = [
    "PRESETS", "ZephyraCausalLMOutput", "ZephyraConfig", "ZephyraConfigError", "ZephyraForCausalLM",
    "ZephyraModel", "ZephyraPreTrainedModel", "non_embedding_params", "preset_config",
]
