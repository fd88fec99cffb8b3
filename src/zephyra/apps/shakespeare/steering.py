"""Steering at run time, without training:

- a logit bias towards a character's own vocabulary and against modern words (OpenAI's ``logit_bias``, applied
  per row by the engine);
- classifier-free guidance against a neutral prompt (``generate(..., negative=, guidance=)``: transformers'
  processor): the prompt with the character's recalled lines (rag.py) against the bare prompt;
- activation steering: the character's direction (their mean hidden state at the first branch layer, minus the
  play's other speakers') added to every position by a forward hook (``add_direction``).

    bias = vocabulary_bias("ophelia", tokenizer)          # {token id: +2.0 for her words, -100 for "computer"}
    SamplingParams(max_tokens=40, logit_bias=bias)

Her vocabulary: the tokens whose log-odds in her training-scene replies against every speaker's replies of the
play are highest (seen 3 times or more). Modern words are banned only where a word is one token that the play's
real lines never use (so no Shakespearean word that shares a token is touched).
"""

from __future__ import annotations

import math
from collections import Counter

from .characters import CHARACTERS, character_splits, play_pairs
from .fidelity import MODERN


def vocabulary_bias(slug: str, tokenizer, *, top: int = 40, strength: float = 2.0, ban_modern: bool = True,
                    cache: dict | None = None) -> dict[int, float]:
    play = CHARACTERS[slug][0]
    cache = {} if cache is None else cache
    mine = Counter(t for p in character_splits(slug, cache)["train"]
                   for t in tokenizer(p.reply, add_special_tokens=False)["input_ids"])
    everyone: Counter = Counter()
    for where, p in play_pairs(play):
        if where == "train":
            everyone.update(tokenizer(p.reply, add_special_tokens=False)["input_ids"])
    n_mine, n_all = sum(mine.values()) or 1, sum(everyone.values()) or 1
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    odds = {t: math.log((c + 1) / (n_mine + 1)) - math.log((everyone[t] + 1) / (n_all + 1))
            for t, c in mine.items() if c >= 3 and t not in special}
    bias = {t: strength for t in sorted(odds, key=odds.get, reverse=True)[:top]}
    if ban_modern:
        for w in MODERN:
            ids = tokenizer(" " + w, add_special_tokens=False)["input_ids"]
            if len(ids) == 1 and ids[0] not in everyone and ids[0] not in special:
                bias[ids[0]] = -100.0
    return bias


# --- steering through the model itself (HF generate on the character's PEFT model) ---------------------------

def character_model(system, slug: str):
    """A copy of the system's base with ``slug``'s adapter loaded through PEFT (for HF generate and hooks)."""
    import copy

    from ...adapters.store import load_adapter

    return load_adapter(copy.deepcopy(system.model), system.adapter_dirs[slug]).eval()


def _reply_states(model, tokenizer, pairs, layer: int, limit: int = 200):
    """The mean hidden state after ``layer`` over the reply tokens of ``pairs`` (prompt + reply, chat template)."""
    import torch

    from ...chat import encode_chat

    total, n = None, 0
    ctx = model.config.max_position_embeddings
    with torch.no_grad():
        for p in pairs[:limit]:
            prompt = encode_chat(tokenizer, [{"role": "user", "content": p.prompt}])
            full = encode_chat(tokenizer, [{"role": "user", "content": p.prompt},
                                           {"role": "assistant", "content": p.reply}])
            cut = max(0, len(full) - ctx)  # a long prompt loses its start
            full, start = full[cut:], min(max(1, len(prompt) - cut), len(full) - 1)
            out = model(input_ids=torch.tensor([full]), output_hidden_states=True)
            h = out.hidden_states[layer + 1][0, start:].float()  # hidden_states[0] is the embeddings
            total = h.sum(0) if total is None else total + h.sum(0)
            n += h.shape[0]
    return total / max(n, 1)


def character_direction(model, tokenizer, slug: str, layer: int | None = None, cache: dict | None = None):
    """(layer, direction): the character's mean hidden state after ``layer`` (default: the first branch layer)
    over their training replies, minus the mean over every other speaker's training replies of the play."""
    import random

    cache = {} if cache is None else cache
    cfg = getattr(model, "config", None) or model.base_model.model.config
    layer = cfg.num_trunk_layers if layer is None else layer
    play, name = CHARACTERS[slug]
    mine = character_splits(slug, cache)["train"]
    others = [p for where, p in play_pairs(play) if where == "train" and p.speaker != name]
    random.Random(0).shuffle(others)
    return layer, _reply_states(model, tokenizer, mine, layer) - _reply_states(model, tokenizer, others, layer)


def _layers(model):
    inner = model
    for attr in ("base_model", "model", "model"):
        if hasattr(inner, "layers"):
            break
        inner = getattr(inner, attr, inner)
    return inner.layers


def add_direction(model, layer: int, direction, scale: float):
    """A forward hook adding ``scale * direction`` to every position's hidden state after ``layer``; returns the
    handle (``.remove()`` it)."""
    vec = direction.to(next(model.parameters()).dtype) * scale

    def hook(module, args, output):
        return output + vec if not isinstance(output, tuple) else (output[0] + vec, *output[1:])

    return _layers(model)[layer].register_forward_hook(hook)


def generate(model, tokenizer, prompts, *, max_tokens: int = 40, negative=None, guidance: float = 1.0) -> list[str]:
    """Greedy replies through HF ``generate`` (one prompt at a time; a reply ends at a blank line). With
    ``negative`` (one neutral prompt per prompt) and ``guidance`` > 1: classifier-free guidance against it
    (transformers' UnbatchedClassifierFreeGuidanceLogitsProcessor)."""
    import torch

    from ...chat import encode_chat

    room = model.config.max_position_embeddings - max_tokens
    out = []
    for i, p in enumerate(prompts):
        ids = torch.tensor([encode_chat(tokenizer, p)[-room:]])
        extra = {}
        if negative is not None and guidance != 1.0:
            neg = torch.tensor([encode_chat(tokenizer, negative[i])[-room:]])
            extra = {"guidance_scale": guidance, "negative_prompt_ids": neg,
                     "negative_prompt_attention_mask": torch.ones_like(neg)}
        with torch.no_grad():
            seq = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_tokens,
                                 do_sample=False, stop_strings=["\n\n"], tokenizer=tokenizer,
                                 pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id, **extra)
        text = tokenizer.decode(seq[0, ids.shape[1]:], skip_special_tokens=True)
        out.append(" ".join(text.split("\n\n")[0].split()))
    return out
