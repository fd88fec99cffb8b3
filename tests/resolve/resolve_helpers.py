"""Helpers shared by the resolve tests (imported by name: tests/ has no packages)."""

import copy

import torch
from peft import PeftModel

from zephyra.adapters import attach_adapter, load_adapter, save_adapter
from zephyra.model import ZephyraForCausalLM, preset_config

VOCAB = 64
NAMES = ("python", "chemistry", "geography")


def make_base(seed: int = 0, **overrides) -> ZephyraForCausalLM:
    """A tiny Zephyra (trunk = layer 0, branch = layer 1). Wide initial weights, so greedy decoding does not
    collapse into one repeated token and "same tokens" means something."""
    torch.manual_seed(seed)
    return ZephyraForCausalLM(preset_config("tiny", vocab_size=VOCAB, initializer_range=0.3, **overrides)).eval()


def save_adapters(base, root, names=NAMES, **options) -> dict:
    """Non-identity LoRA adapters (random A and B), each saved with our manifest; {name: dir}."""
    dirs = {}
    for i, name in enumerate(names):
        torch.manual_seed(100 + i)
        peft = attach_adapter(copy.deepcopy(base), "lora", name=name, identity_init=False, **options)
        dirs[name] = save_adapter(peft, root / name)
    return dirs


def peft_with(base, dirs: dict) -> PeftModel:
    """A copy of ``base`` holding every adapter through our PEFT layer."""
    model = copy.deepcopy(base)
    for path in dirs.values():
        model = load_adapter(model, path)
    return model.eval()


def peft_alone(peft_model, adapter, ids: list[int], n: int):
    """Generate one prompt alone (no padding) with PEFT, ``adapter`` active (None: adapters disabled):
    (new tokens (n,), raw logits (n, V))."""
    x = torch.tensor([ids])
    kwargs = dict(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=n, do_sample=False,
                  eos_token_id=None, pad_token_id=0, output_logits=True, return_dict_in_generate=True)
    with torch.no_grad():
        if adapter is None:
            with peft_model.disable_adapter():
                out = peft_model.generate(**kwargs)
        else:
            peft_model.set_adapter(adapter)
            out = peft_model.generate(**kwargs)
    return out.sequences[0, x.shape[1]:], torch.cat(out.logits).float()


def left_pad(prompts: list[list[int]], pad: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, prompts))
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    return ids, mask
