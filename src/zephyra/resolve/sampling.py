"""Per-request sampling settings, and the next token of every row of a batch, each row by its own settings.

    SamplingParams(max_tokens=48)                                  # greedy (the default: reproducible answers)
    SamplingParams(temperature=0.8, top_p=0.9, seed=7, stop=["\\n\\n"], logit_bias={42: -100.0})

The settings are OpenAI's (temperature, top_p, max_tokens, stop, seed, logit_bias) plus top_k. A row samples
with its own ``torch.Generator`` seeded from ``seed``, so a seeded request gives the same tokens whatever else
shares its batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..errors import RequestError

MAX_STOPS = 4  # as OpenAI's API


@dataclass
class SamplingParams:
    max_tokens: int = 64  # new tokens at most (the context may end the answer sooner)
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0  # nucleus sampling: the smallest set of tokens whose probability reaches top_p
    top_k: int = 0  # 0: no top-k cut
    stop: list[str] = field(default_factory=list)  # the answer ends before the first of these (not included)
    seed: int | None = None  # None: a seed drawn from torch's global generator
    logit_bias: dict[int, float] = field(default_factory=dict)  # token id -> added to its logit (-100 bans it)

    def __post_init__(self):
        def bad(msg: str):
            raise RequestError(msg)

        if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            bad(f"max_tokens must be a positive integer, got {self.max_tokens!r}")
        if not _number(self.temperature) or not 0.0 <= self.temperature <= 2.0:
            bad(f"temperature must be a number in [0, 2], got {self.temperature!r}")
        if not _number(self.top_p) or not 0.0 < self.top_p <= 1.0:
            bad(f"top_p must be a number in (0, 1], got {self.top_p!r}")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            bad(f"top_k must be a non-negative integer, got {self.top_k!r}")
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        self.stop = list(self.stop or [])
        if len(self.stop) > MAX_STOPS or not all(isinstance(s, str) and s for s in self.stop):
            bad(f"stop must be up to {MAX_STOPS} non-empty strings, got {self.stop!r}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            bad(f"seed must be an integer, got {self.seed!r}")
        bias = {}
        for k, v in dict(self.logit_bias or {}).items():
            try:
                token = int(k)
            except (TypeError, ValueError):
                bad(f"logit_bias keys must be token ids, got {k!r}")
            if token < 0 or not _number(v) or not -100.0 <= v <= 100.0:
                bad(f"logit_bias[{k!r}] must be a number in [-100, 100] for a token id >= 0, got {v!r}")
            bias[token] = float(v)
        self.logit_bias = bias

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def generator(self) -> torch.Generator | None:
        """This request's own random stream (None when greedy)."""
        if self.greedy:
            return None
        seed = self.seed if self.seed is not None else int(torch.randint(0, 2**62, (1,)).item())
        return torch.Generator().manual_seed(seed)


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def pick_tokens(logits: torch.Tensor, params: list[SamplingParams], generators: list[torch.Generator | None]
                ) -> torch.Tensor:
    """logits (B, V) -> next tokens (B,): each row by its own settings. Greedy rows take one batched argmax;
    sampled rows are drawn one by one, each from its own generator."""
    logits = logits.float()
    biased = [i for i, p in enumerate(params) if p.logit_bias]
    if biased:
        logits = logits.clone()
        for i in biased:
            ids = torch.tensor(list(params[i].logit_bias), dtype=torch.long)
            keep = ids < logits.shape[-1]  # ids past the vocabulary were refused at submission; be safe anyway
            logits[i, ids[keep]] += torch.tensor(list(params[i].logit_bias.values()))[keep]
    out = logits.argmax(-1)
    for i, p in enumerate(params):
        if not p.greedy:
            out[i] = _sample(logits[i], p, generators[i])
    return out


def _sample(row: torch.Tensor, p: SamplingParams, generator: torch.Generator | None) -> torch.Tensor:
    """One token from one row of logits (V,), with temperature, top-k and top-p."""
    row = row / p.temperature
    if p.top_k and p.top_k < row.shape[-1]:
        kth = row.topk(p.top_k).values[-1]
        row = row.masked_fill(row < kth, float("-inf"))
    probs = row.softmax(-1)
    if p.top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        beyond = sorted_probs.cumsum(-1) - sorted_probs >= p.top_p  # tokens after the nucleus is full
        sorted_probs = sorted_probs.masked_fill(beyond, 0.0)
        probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
    return torch.multinomial(probs, 1, generator=generator)[0]
