"""From prompts to what a router reads on a Zephyra model: token ids, padded batches, the trunk's pooled states.

Prompts are encoded exactly as the runtime prefills them (``prompt_format="chat"``: the chat template's user
turn followed by the assistant header), so the router logits of a generation's own prefill equal the router's.
A prompt longer than the context is cut from the left, keeping its end (where the question usually is), with a
``PromptTruncatedWarning``: never a crash.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F

from ..adapters.fingerprint import unwrap
from ..chat import FORMATS as PROMPT_FORMATS  # noqa: F401  (the routers read it from here)
from ..chat import encode_prompt  # the project's one chat encoder: ids exactly as the runtime prefills them
from .decision import PromptTruncatedWarning

POOLINGS = ("mean", "last")

def encode_prompts(tokenizer, prompts: Sequence[str], max_length: int, prompt_format: str = "chat"
                   ) -> list[list[int]]:
    """Token ids per prompt, each cut from the left to ``max_length`` with one warning for the lot."""
    encoded, cut = [], []
    for i, p in enumerate(prompts):
        ids = encode_prompt(tokenizer, p, prompt_format)
        if len(ids) > max_length:
            cut.append((i, len(ids)))
            ids = ids[-max_length:]
        encoded.append(ids)
    if cut:
        first, n = cut[0]
        warnings.warn(f"{len(cut)} prompt(s) longer than the {max_length}-token context cut from the left "
                      f"(prompt {first}: {n} tokens)", PromptTruncatedWarning, stacklevel=3)
    return encoded


def padded_batches(encoded: list[list[int]], batch_size: int, pad_id: int
                   ) -> Iterator[tuple[list[int], torch.Tensor, torch.Tensor]]:
    """(row indices, ids (B, T), mask (B, T)) left-padded as generation pads, prompts grouped by length so
    that little padding is computed."""
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    for s in range(0, len(order), batch_size):
        rows = order[s:s + batch_size]
        width = max(len(encoded[i]) for i in rows)
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, i in enumerate(rows):
            n = len(encoded[i])
            ids[r, width - n:] = torch.tensor(encoded[i])
            mask[r, width - n:] = 1
        yield rows, ids, mask


def pad_id_of(tokenizer, model) -> int:
    """Any id will do (padding is masked); the tokenizer's pad, else the model's, else 0."""
    for pid in (getattr(tokenizer, "pad_token_id", None), getattr(model.config, "pad_token_id", None)):
        if pid is not None:
            return int(pid)
    return 0


def pool_states(states: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """(B, T, C) -> (B, C): masked mean, or each row's last real token (left or right padding alike)."""
    m = mask[:, -states.shape[1]:].to(states.dtype)
    if pooling == "last":
        idx = (m * torch.arange(1, m.shape[1] + 1, device=m.device)).argmax(dim=1)
        return states[torch.arange(states.shape[0]), idx]
    return (states * m.unsqueeze(-1)).sum(1) / m.sum(1, keepdim=True).clamp(min=1.0)


def head_features(trunk_states: torch.Tensor, mask: torch.Tensor, eps: float, pooling: str) -> torch.Tensor:
    """What the router head's linear layer sees, before its per-channel scale: pooled, weight-free
    RMS-normalised trunk states (B, C). The head computes ``proj(norm.weight * features)``: a per-channel scale
    commutes with pooling, so these features are exact and can be cached once (training fits on the cache)."""
    h = F.rms_norm(trunk_states.float(), (trunk_states.shape[-1],), None, eps)
    return pool_states(h, mask, pooling)


@torch.no_grad()
def trunk_features(model, head, encoded: list[list[int]], batch_size: int = 32, pad_id: int = 0) -> torch.Tensor:
    """What ``head`` reads (``head.features``: pooled, RMS-normalised trunk states) for every encoded prompt,
    (N, C) in input order, from the trunk alone (``trunk_states`` runs no branch layer)."""
    base = unwrap(model)
    out = torch.empty(len(encoded), base.config.hidden_size)
    for rows, ids, mask in padded_batches(encoded, batch_size, pad_id):
        out[rows] = head.features(base.trunk_states(ids, mask), mask)
    return out
