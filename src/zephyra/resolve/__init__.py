"""The runtime: prompt -> (route ->) generate. For now the base model alone; the router and adapters plug in
here (DESIGN.md: resolve).

    zephyra generate "Who is Polonius?" --model runs/quickstart/base
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch


class PromptError(ValueError):
    """A prompt that cannot be answered (empty, or not text)."""


@dataclass
class Generated:
    text: str
    prompt_tokens: int
    new_tokens: int
    truncated: bool
    adapter: str = "base"


def load_model(path: str | os.PathLike):
    """Load a model directory that holds both the model and its tokenizer (as training exports it)."""
    import zephyra  # noqa: F401  (registers the Zephyra Auto classes)
    from transformers import AutoModelForCausalLM

    from ..tokenizer import load_tokenizer

    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: not a model directory (no config.json)")
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    return model, load_tokenizer(path)


def encode_prompt(tokenizer, prompt: str, fmt: str = "chat") -> list[int]:
    if not isinstance(prompt, str) or not prompt.strip():
        raise PromptError("the prompt is empty")
    if fmt == "chat":
        return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                             tokenize=True, return_dict=False)
    if fmt == "raw":
        return tokenizer(prompt)["input_ids"]
    raise ValueError(f"unknown prompt format {fmt!r}: use 'chat' or 'raw'")


@torch.no_grad()
def generate_text(model, tokenizer, prompt: str, max_new_tokens: int = 48, fmt: str = "chat",
                  do_sample: bool = False, temperature: float = 0.8, top_k: int = 40, seed: int = 0) -> Generated:
    """Generate a reply. A prompt longer than the context is cut from the left with a warning, never a crash."""
    ids = encode_prompt(tokenizer, prompt, fmt)
    limit = model.config.max_position_embeddings - max_new_tokens
    if limit < 1:
        raise PromptError(f"max_new_tokens {max_new_tokens} leaves no room in the {model.config.max_position_embeddings}-"
                          "token context")
    truncated = len(ids) > limit
    if truncated:
        warnings.warn(f"prompt of {len(ids)} tokens cut to its last {limit} to fit the context", stacklevel=2)
        ids = ids[-limit:]
    x = torch.tensor([ids])
    torch.manual_seed(seed)
    kwargs = dict(do_sample=True, temperature=temperature, top_k=top_k) if do_sample else dict(do_sample=False)
    out = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=max_new_tokens,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **kwargs)
    new = out[0, x.shape[1]:]
    return Generated(text=tokenizer.decode(new, skip_special_tokens=True).strip(), prompt_tokens=x.shape[1],
                     new_tokens=int(new.numel()), truncated=truncated)
