"""The multi-adapter engine: one batch, each row with its own LoRA adapter (or none, or a weighted mix), the trunk
run once for the whole batch, a KV cache, greedy or sampled decoding, one static batch at a time. Works on token
ids; tokenisation stays at the edges. The streaming engine (engine.py) serves requests on the same layers.

    engine = MultiLoRAEngine(model, AdapterBank.from_dirs(model, {"python": dir1, "chemistry": dir2}))
    out = engine.generate(ids, mask, adapters=["python", "chemistry", None, {"python": .7, "chemistry": .3}],
                          max_new_tokens=32)
    out.tokens  # (B, 32): pad_token_id after each row's eos

Routing in the same pass: give ``route(trunk_states, attention_mask) -> one mix per row`` instead of
``adapters``. It is called once, in the prefill, between the last trunk layer and the first branch layer (a
forward pre-hook), so the branch runs with the chosen adapters and the trunk's KV cache is never recomputed.

Why our own decoding loop rather than ``model.generate``: HF's loop costs per step (logits processors, stopping
criteria, cache bookkeeping) about as much as the LoRA updates do at our sizes; ``zephyra bench adapters``
measures both. The adapted layers work under ``model.generate`` too: ``with engine.use(adapters): model.generate(...)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

import torch
from torch import nn
from transformers.cache_utils import DynamicCache

from .lora import KERNELS, AdapterBank, AdapterBankError, Mix, RowLoRALinear, row_groups, row_masked, row_stacks
from .sampling import SamplingParams, pick_tokens

# a row's adapters: None or "base", an adapter name, or {name: weight}
Route = Callable[[torch.Tensor, torch.Tensor | None], Sequence[object]]  # (trunk states, mask) -> one spec a row


@dataclass
class Generation:
    tokens: torch.Tensor  # (B, N) new tokens; pad_token_id after a row's eos
    mixes: list[Mix]  # the adapters each row was generated with ({} = base)
    logits: torch.Tensor | None = None  # (B, N, V) raw next-token logits, when asked for
    lengths: list[int] = field(default_factory=list)  # new tokens per row, eos included


def as_mix(spec, known: Sequence[str]) -> Mix:
    """One row's adapters from a short spec: None or "base" -> {} (base), "name" -> {"name": 1.0}, or a dict
    {name: weight}; zero weights are dropped."""
    if spec is None or spec == "base":
        return {}
    mix = {spec: 1.0} if isinstance(spec, str) else {str(k): float(v) for k, v in dict(spec).items()}
    unknown = [n for n in mix if n not in known and n != "base"]
    if unknown:
        raise AdapterBankError(f"no adapter named {unknown[0]!r}; loaded: {', '.join(known) or 'none'}")
    return {n: w for n, w in mix.items() if n != "base" and w != 0}


class MultiLoRAEngine:
    """Per-row LoRA on a plain Zephyra base. Replaces the branch's adapted Linear modules with ``RowLoRALinear``
    (same Parameters) until ``remove()``; with no adapters set the model computes exactly the base. One batch at
    a time: the rows' adapters live on the layers while a batch runs."""

    def __init__(self, model: nn.Module, bank: AdapterBank, kernel: str = "masked"):
        if hasattr(model, "peft_config"):
            raise TypeError("MultiLoRAEngine needs the plain base model, not a PeftModel: read its adapters with "
                            "AdapterBank.from_peft(peft_model) and give the engine a base")
        if kernel not in KERNELS:
            raise ValueError(f"unknown kernel {kernel!r}; known: {', '.join(KERNELS)}")
        bank.check_fits(model)
        self.model, self.bank, self.kernel = model, bank, kernel
        self.layers: dict[str, RowLoRALinear] = {}
        self._originals: dict[str, nn.Linear] = {}
        for path in bank.module_paths():
            parent_path, _, attr = path.rpartition(".")
            parent = model.get_submodule(parent_path)
            self._originals[path] = getattr(parent, attr)
            self.layers[path] = RowLoRALinear(self._originals[path], kernel)
            setattr(parent, attr, self.layers[path])

    def add(self, name: str, updates) -> None:
        """Load one more adapter (``{module path: LoRAUpdate}``, checked against the model first); a module no
        adapter updated before gets its per-row layer now. Not while a batch runs (the engine holds its step lock)."""
        from .lora import AdapterBank

        AdapterBank({name: updates}).check_fits(self.model)
        self.bank.adapters[name] = dict(updates)
        for path in updates:
            if path not in self.layers:
                parent_path, _, attr = path.rpartition(".")
                parent = self.model.get_submodule(parent_path)
                self._originals[path] = getattr(parent, attr)
                self.layers[path] = RowLoRALinear(self._originals[path], self.kernel)
                setattr(parent, attr, self.layers[path])

    def drop(self, name: str) -> None:
        """Forget an adapter (its layers stay: other adapters or none, they compute the base for its rows)."""
        self.bank.adapters.pop(name, None)

    def remove(self) -> nn.Module:
        """Put the original Linear modules back; returns the model."""
        for path, lin in self._originals.items():
            parent_path, _, attr = path.rpartition(".")
            setattr(self.model.get_submodule(parent_path), attr, lin)
        self.layers.clear()
        return self.model

    # --- which rows get which adapters ---

    def mixes(self, specs: Sequence[object]) -> list[Mix]:
        return [as_mix(s, self.bank.names) for s in specs]

    def set_rows(self, mixes: list[Mix] | None) -> None:
        """Give every adapted layer the rows' updates (None or all-base: the plain base, no extra work)."""
        build = {"masked": row_masked, "bmm": row_stacks, "grouped": row_groups}[self.kernel]
        for path, layer in self.layers.items():
            layer.rows = None if not mixes or not any(mixes) else build(self.bank, path, mixes, layer)

    @contextmanager
    def use(self, specs: Sequence[object] | None):
        """Rows' adapters for the duration of a block (e.g. around ``model.generate``)."""
        self.set_rows(self.mixes(specs) if specs is not None else None)
        try:
            yield
        finally:
            self.set_rows(None)

    def _boundary(self) -> nn.Module:
        """The module whose input is the trunk's output: the first branch layer (or the final norm)."""
        m, n = self.model.model, self.model.config.num_trunk_layers
        return m.layers[n] if n < len(m.layers) else m.norm

    @contextmanager
    def routing(self, route: Route, mask, chosen: list[Mix]):
        """Within the block, the first forward pass calls ``route(trunk_states, mask)`` at the trunk/branch
        boundary and sets the rows' adapters (also appended to ``chosen``) before the branch runs: routing from
        a prefill's own trunk states, so the trunk is never run twice."""
        def hook(_module, args):
            if not chosen:
                chosen.extend(self.mixes(route(args[0], mask)))
                self.set_rows(chosen)

        handle = self._boundary().register_forward_pre_hook(hook)
        try:
            yield
        finally:
            handle.remove()

    # --- generation ---

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
                 adapters: Sequence[object] | None = None, route: Route | None = None, max_new_tokens: int = 32,
                 eos_token_id: int | Sequence[int] | None = None, pad_token_id: int = 0, do_sample: bool = False,
                 temperature: float = 1.0, top_k: int = 0, generator: torch.Generator | None = None,
                 return_logits: bool = False) -> Generation:
        """Generate ``max_new_tokens`` for every row (left padding in ``attention_mask``), each row with its
        ``adapters`` entry, or with what ``route`` picks from the trunk in the prefill (give one, or neither:
        the base). Stops early when every row has produced an eos."""
        if adapters is not None and route is not None:
            raise ValueError("give adapters or route, not both")
        if adapters is not None and len(adapters) != input_ids.shape[0]:
            raise ValueError(f"{len(adapters)} adapter specs for a batch of {input_ids.shape[0]}")
        chosen: list[Mix] = []
        try:
            if route is None:
                chosen = self.mixes(adapters) if adapters is not None else [{} for _ in range(input_ids.shape[0])]
                self.set_rows(chosen)
                prefill = nullcontext
            else:
                prefill = lambda: self.routing(route, attention_mask, chosen)  # noqa: E731
            pick = _picker(do_sample, temperature, top_k, generator)
            tokens, logits = decode(self.model, input_ids, attention_mask, max_new_tokens, pick, prefill,
                                    eos_token_id, pad_token_id, return_logits)
        finally:
            self.set_rows(None)
        return Generation(tokens=tokens, mixes=chosen, logits=logits,
                          lengths=_lengths(tokens, eos_token_id, pad_token_id))


def _picker(do_sample: bool, temperature: float, top_k: int, generator) -> Callable[[torch.Tensor], torch.Tensor]:
    """logits (B, V) -> next tokens (B,): greedy, or every row sampled with temperature and top-k from one
    generator (the engine's token choice, sampling.py)."""
    if not do_sample:
        return lambda logits: logits.argmax(-1)
    params = SamplingParams(temperature=temperature, top_k=top_k)
    return lambda logits: pick_tokens(logits, [params] * logits.shape[0], [generator] * logits.shape[0])


def _eos_ids(eos_token_id) -> torch.Tensor | None:
    if eos_token_id is None:
        return None
    return torch.tensor([eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id))


def decode(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor | None, max_new_tokens: int, pick, prefill,
           eos_token_id=None, pad_token_id: int = 0, return_logits: bool = False):
    """The decoding loop: a prefill under ``prefill()``, then one token a step with the KV cache.
    Returns (tokens (B, N), logits (B, N, V) or None)."""
    B = ids.shape[0]
    padded = mask is not None and not bool(mask.all())  # without padding no mask is built: SDPA's fast path
    pos = (mask.long().cumsum(-1) - 1).clamp(min=0) if padded else None  # (B, T) per-row positions
    cache = DynamicCache(config=model.config)
    with prefill():
        out = model(input_ids=ids, attention_mask=mask if padded else None, position_ids=pos,
                    past_key_values=cache, use_cache=True, logits_to_keep=1)
    eos = _eos_ids(eos_token_id)
    done = torch.zeros(B, dtype=torch.bool)
    tokens, kept = [], []
    for step in range(max_new_tokens):
        logits = out.logits[:, -1]  # (B, V)
        if return_logits:
            kept.append(logits.float())
        nxt = pick(logits)  # (B,)
        if eos is not None:
            nxt = nxt.masked_fill(done, pad_token_id)
            done = done | torch.isin(nxt, eos)
        tokens.append(nxt)
        if step + 1 == max_new_tokens or (eos is not None and bool(done.all())):
            break
        if padded:
            mask = torch.cat([mask, mask.new_ones(B, 1)], 1)
            pos = pos[:, -1:] + 1
        out = model(input_ids=nxt[:, None], attention_mask=mask if padded else None, position_ids=pos,
                    past_key_values=cache, use_cache=True, logits_to_keep=1)
    return torch.stack(tokens, 1), (torch.stack(kept, 1) if return_logits else None)


def _lengths(tokens: torch.Tensor, eos_token_id, pad_token_id: int) -> list[int]:
    """New tokens per row, up to and including its first eos."""
    eos = _eos_ids(eos_token_id)
    if eos is None:
        return [tokens.shape[1]] * tokens.shape[0]
    hit = torch.isin(tokens, eos)
    first = hit.int().argmax(1) + 1  # argmax: the first hit
    return torch.where(hit.any(1), first, tokens.shape[1]).tolist()
