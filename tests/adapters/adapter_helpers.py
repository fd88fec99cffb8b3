"""Helpers shared by the adapter tests (imported by name: tests/ has no packages)."""

import torch

from zephyra.model import ZephyraForCausalLM, preset_config

VOCAB = 64


def make_base(seed: int = 0) -> ZephyraForCausalLM:
    """A tiny Zephyra: 2 layers (trunk = layer 0, branch = layer 1), 32 wide."""
    torch.manual_seed(seed)
    return ZephyraForCausalLM(preset_config("tiny", vocab_size=VOCAB)).eval()


def logits(model, ids) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits
