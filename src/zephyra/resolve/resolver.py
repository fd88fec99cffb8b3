"""``Resolver``: prompts -> (route ->) generate with the chosen adapter(s), in one pass over each prompt.

    resolver = Resolver(model, tokenizer, {"python": "runs/adapters/python", "chemistry": "runs/adapters/chemistry"},
                        router=router)
    resolver.resolve(["What does zip() do?", "Hello!"])                  # routed, top-1
    resolver.resolve(prompts, mode="fused")                             # top adapters weighted by router score
    resolver.resolve(prompts, adapter="python")                          # forced; adapter="base": the base model

With a router, the prompt is prefilled once: the router head reads the trunk's states of the prompt at the
trunk/branch boundary of the prefill, the router turns its logits into decisions, and the branch then runs with
the chosen adapters; the trunk's KV cache is never recomputed (multi.py). All prompts of a call share one batch
(``batch_size`` at a time), whatever adapters they were routed to.

The router is any callable ``router(router_logits (B, n_labels)) -> one decision per row``, a decision being
``(adapter, confidence, scores)`` or an object with those attributes (the router package's ``RouteDecision``);
``scores`` are probabilities by adapter name ("base" included). A router that reads the prompt's text instead
(the external MiniLM router) is given as ``prompt_router(prompts) -> one decision per prompt``: it decides before
the prefill, and the batch then runs with those adapters, still one batch for all of them.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from . import PromptError, encode_prompt
from .lora import AdapterBank, AdapterBankError, Mix
from .multi import MultiLoRAEngine

MODES = ("top1", "fused", "base")


@dataclass
class Resolved:
    prompt: str
    adapter: str  # the adapter that answered (the router's top choice when fused), or "base"
    confidence: float | None  # the router's confidence; None when nothing was routed (forced or base)
    text: str
    scores: dict[str, float] = field(default_factory=dict)  # the router's scores; {} when nothing was routed
    weights: dict[str, float] = field(default_factory=dict)  # the adapters applied and their weights ({}: base)
    new_tokens: int = 0
    truncated: bool = False


@dataclass(frozen=True)
class Decision:
    adapter: str
    confidence: float
    scores: dict[str, float]


def as_decision(d) -> Decision:
    """A router's decision as (adapter, confidence, scores), from a tuple or a RouteDecision-like object."""
    if isinstance(d, tuple):
        adapter, confidence, scores = d
    else:
        adapter, confidence, scores = d.adapter, d.confidence, d.scores
    return Decision(str(adapter), float(confidence), {str(k): float(v) for k, v in dict(scores).items()})


def fused_mix(decision: Decision, top: int) -> Mix:
    """The ``top`` best-scored adapters weighted by their scores, renormalised over those ``top``; "base" among
    them keeps its share of the weight but adds no update (so a doubtful router leans towards the base)."""
    if any(v < 0 for v in decision.scores.values()):
        raise ValueError("fused mode needs router scores that are probabilities (non-negative)")
    best = sorted(decision.scores.items(), key=lambda kv: kv[1], reverse=True)[:top]
    total = sum(v for _, v in best)
    if total <= 0:
        return {}
    return {name: v / total for name, v in best if name != "base" and v > 0}


class Resolver:
    """Routes and answers prompts with one base, its LoRA adapters and (optionally) a router. The base's adapted
    Linear modules are swapped for per-row ones sharing their weights (see multi.py) until ``close()``."""

    def __init__(self, model, tokenizer, adapters: Mapping[str, str | os.PathLike] | AdapterBank | None = None,
                 router: Callable | None = None, *, prompt_router: Callable | None = None, fuse_top: int = 2,
                 kernel: str = "masked", fmt: str = "chat"):
        if router is not None and getattr(model, "router_head", None) is None:
            raise ValueError("a router needs the model's router head (set router_labels in its config)")
        if router is not None and prompt_router is not None:
            raise ValueError("give a router (on the trunk's states) or a prompt_router (on the text), not both")
        bank = adapters if isinstance(adapters, AdapterBank) else AdapterBank.from_dirs(model, adapters or {})
        self.model, self.tokenizer, self.router, self.prompt_router = model.eval(), tokenizer, router, prompt_router
        self.engine = MultiLoRAEngine(model, bank, kernel=kernel)
        self.fuse_top, self.fmt = fuse_top, fmt

    @property
    def adapters(self) -> list[str]:
        return self.engine.bank.names

    def close(self):
        """Give the model back as it came (plain Linear modules); returns it."""
        return self.engine.remove()

    def resolve(self, prompts: str | Sequence[str], mode: str = "top1", adapter: str | None = None,
                max_new_tokens: int = 48, *, batch_size: int = 32, do_sample: bool = False,
                temperature: float = 0.8, top_k: int = 40, seed: int = 0) -> list[Resolved]:
        """Answer every prompt. ``adapter``: None (route when there is a router, else the base), "auto" (route),
        "base", or an adapter name (forced). ``mode``: "top1" (the router's choice), "fused" (the router's best
        ``fuse_top`` adapters weighted by score) or "base" (no adapter, no routing)."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        fixed = self._fixed_mix(mode, adapter)
        generator = torch.Generator().manual_seed(seed) if do_sample else None
        sampling = dict(do_sample=do_sample, temperature=temperature, top_k=top_k, generator=generator)
        out = []
        for start in range(0, len(prompts), batch_size):
            out += self._batch(prompts[start:start + batch_size], mode, fixed, max_new_tokens, sampling)
        return out

    # --- what each row gets ---

    def _fixed_mix(self, mode: str, adapter: str | None) -> Mix | None:
        """The mix every row gets, or None when the router decides."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
        routed = self.router is not None or self.prompt_router is not None
        if adapter is None:
            adapter = "auto" if routed else "base"
        if mode == "base" or adapter == "base":
            return {}
        if adapter == "auto":
            if not routed:
                raise ValueError("adapter='auto' needs a router; give one to Resolver(...) or name an adapter")
            return None
        if mode == "fused":
            raise ValueError("mode='fused' mixes what the router picks: use adapter='auto', not a fixed adapter")
        if adapter not in self.adapters:
            raise AdapterBankError(f"no adapter named {adapter!r}; loaded: {', '.join(self.adapters) or 'none'}")
        return {adapter: 1.0}

    def _mix(self, decision: Decision, mode: str) -> Mix:
        mix = fused_mix(decision, self.fuse_top) if mode == "fused" else (
            {} if decision.adapter == "base" else {decision.adapter: 1.0})
        unknown = [n for n in mix if n not in self.adapters]
        if unknown:
            raise AdapterBankError(f"the router chose {unknown[0]!r}, which is not loaded "
                                   f"(loaded: {', '.join(self.adapters) or 'none'})")
        return mix

    def _route(self, mode: str, decisions: list[Decision]):
        """The engine's route callback: router head on the prefill's trunk states -> router -> rows' mixes."""
        def route(trunk_states: torch.Tensor, attention_mask: torch.Tensor | None) -> list[Mix]:
            logits = self.model.router_head(trunk_states, attention_mask)  # (B, n_labels)
            decisions.extend(as_decision(d) for d in self.router(logits))
            if len(decisions) != trunk_states.shape[0]:
                raise ValueError(f"the router gave {len(decisions)} decisions for {trunk_states.shape[0]} prompts")
            return [self._mix(d, mode) for d in decisions]
        return route

    # --- one batch ---

    def _encode(self, prompts: list[str], max_new_tokens: int) -> tuple[torch.Tensor, torch.Tensor, list[bool]]:
        """Left-padded ids and mask; a prompt longer than the context is cut from the left, with a warning."""
        limit = self.model.config.max_position_embeddings - max_new_tokens
        if limit < 1:
            raise PromptError(f"max_new_tokens {max_new_tokens} leaves no room in the "
                              f"{self.model.config.max_position_embeddings}-token context")
        rows, truncated = [], []
        for p in prompts:
            ids = encode_prompt(self.tokenizer, p, self.fmt)
            truncated.append(len(ids) > limit)
            if truncated[-1]:
                warnings.warn(f"prompt of {len(ids)} tokens cut to its last {limit} to fit the context", stacklevel=3)
            rows.append(ids[-limit:])
        width, pad = max(map(len, rows)), self._pad_id()
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
        return ids, mask, truncated

    def _pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return pad if pad is not None else (self.model.config.pad_token_id or 0)

    def _batch(self, prompts: list[str], mode: str, fixed: Mix | None, max_new_tokens: int, sampling: dict):
        ids, mask, truncated = self._encode(prompts, max_new_tokens)
        decisions: list[Decision] = []
        route, mixes = None, [fixed] * len(prompts)
        if fixed is None and self.prompt_router is not None:  # decided from the text, before the prefill
            decisions = [as_decision(d) for d in self.prompt_router(prompts)]
            mixes = [self._mix(d, mode) for d in decisions]
        elif fixed is None:
            route = self._route(mode, decisions)
        out = self.engine.generate(ids, mask, adapters=None if route else mixes, route=route,
                                   max_new_tokens=max_new_tokens, eos_token_id=self.tokenizer.eos_token_id,
                                   pad_token_id=self._pad_id(), **sampling)
        results = []
        for i, prompt in enumerate(prompts):
            d = decisions[i] if decisions else None
            mix = out.mixes[i]
            name = d.adapter if d else (next(iter(mix)) if mix else "base")
            n = out.lengths[i]
            text = self.tokenizer.decode(out.tokens[i, :n], skip_special_tokens=True).strip()
            results.append(Resolved(prompt=prompt, adapter=name, confidence=d.confidence if d else None, text=text,
                                    scores=d.scores if d else {}, weights=mix, new_tokens=n, truncated=truncated[i]))
        return results
