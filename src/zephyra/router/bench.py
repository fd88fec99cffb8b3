"""What routing costs: the prefill of a batch of prompts with and without the in-model router head (interleaved
in the same run, so drift in machine load hits both alike), the head alone, each in-model router's whole decision
inside the prefill (``route_trunk``: head, token table, index signals), and the standalone routers' cost per
prompt beside it (the in-model router's trunk-only pass, the external MiniLM router).

    zephyra router bench --model runs/base --router runs/router/inmodel --router runs/router/minilm

Issue 6 asks that in-model routing add at most 3% to prefill time: ``overhead_pct`` is that number, from the
fastest run of each mode (interference from other work only ever adds time, so the minimum is the steadiest
estimate on a shared machine); ``overhead_median_pct`` is the median of the paired per-repeat ratios. The head's
own cost, timed alone, bounds what the head can add.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch

from ..errors import DataError
from ..adapters.fingerprint import unwrap
from .decision import Router, check_prompts
from .features import encode_prompts, pad_id_of, padded_batches


@dataclass
class RouterBench:
    batch_size: int
    prompt_tokens: int  # padded length of the batch
    prefill_ms: float  # fastest, without the router head
    prefill_router_ms: float  # fastest, with return_trunk_states=True and the head on them
    overhead_pct: float  # prefill_router_ms / prefill_ms - 1, in percent
    overhead_median_pct: float  # median of the paired per-repeat ratios, minus 1, in percent
    head_ms: float  # the router head alone on the batch's trunk states (fastest)
    routers: dict = field(default_factory=dict)  # name -> ms per prompt of router.route on the same prompts
    # in-model router name -> {"ms": per batch (fastest), "ratio": to plain prefills interleaved with it} of the
    # prefill with that router's whole route_trunk on its trunk states (head, token table, index signals)
    in_prefill: dict = field(default_factory=dict)
    repeats: int = 0

    def rows(self) -> list[dict]:
        b = self.batch_size
        out = [{"what": "prefill, no router", "ms_per_batch": self.prefill_ms, "ms_per_prompt": self.prefill_ms / b,
                "vs_prefill": "-"},
               {"what": "prefill + in-model router head", "ms_per_batch": self.prefill_router_ms,
                "ms_per_prompt": self.prefill_router_ms / b,
                "vs_prefill": f"{self.overhead_pct:+.2f}% (median of pairs {self.overhead_median_pct:+.2f}%)"},
               {"what": "router head alone", "ms_per_batch": self.head_ms, "ms_per_prompt": self.head_ms / b,
                "vs_prefill": f"{100 * self.head_ms / self.prefill_ms:+.2f}%"}]
        for name, m in self.in_prefill.items():
            out.append({"what": f"prefill + {name} router inside it (route_trunk)", "ms_per_batch": m["ms"],
                        "ms_per_prompt": m["ms"] / b, "vs_prefill": f"{100 * (m['ratio'] - 1):+.1f}% "
                                                                    f"({m['ratio']:.2f}x)"})
        for name, ms in self.routers.items():
            out.append({"what": f"{name} router, standalone", "ms_per_batch": ms * b, "ms_per_prompt": ms,
                        "vs_prefill": f"{100 * ms * b / self.prefill_ms:+.1f}%"})
        return out

    def markdown(self) -> str:
        lines = [f"Batch of {self.batch_size} prompts, {self.prompt_tokens} tokens (padded), fastest of "
                 f"{self.repeats} interleaved repeats", "",
                 "| what | ms/batch | ms/prompt | vs prefill |", "|---|---|---|---|"]
        lines += [f"| {r['what']} | {r['ms_per_batch']:.2f} | {r['ms_per_prompt']:.3f} | {r['vs_prefill']} |"
                  for r in self.rows()]
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict:
        return {**asdict(self), "rows": self.rows()}


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


@torch.no_grad()
def bench_router_overhead(model, tokenizer, prompts: Sequence[str], *, batch_size: int = 8, repeats: int = 30,
                          warmup: int = 5, prompt_format: str = "chat",
                          routers: dict[str, Router] | None = None) -> RouterBench:
    """Time one batch's prefill (KV cache on, logits of the last position only, as ``generate`` prefills) with
    and without the in-model router (trunk states kept, the head run on them), alternating which goes first;
    then the head alone; then each of ``routers`` routing the same prompts. The head is the first in-model
    router's among ``routers``, else an untrained one for seven labels (it costs the same)."""
    from .inmodel import RouterHead

    base = unwrap(model).eval()
    head = next((r.head for r in (routers or {}).values() if getattr(r, "kind", None) == "inmodel"),
                RouterHead(base.config.hidden_size, 7, base.config.rms_norm_eps))
    prompts = check_prompts(prompts)[:batch_size]
    if len(prompts) < batch_size:
        raise DataError(f"bench needs {batch_size} prompts, got {len(prompts)}")
    encoded = encode_prompts(tokenizer, prompts, base.config.max_position_embeddings, prompt_format)
    _, ids, mask = next(padded_batches(encoded, batch_size, pad_id_of(tokenizer, base)))

    def prefill(router: bool):
        out = base(input_ids=ids, attention_mask=mask, use_cache=True, logits_to_keep=1, return_trunk_states=router)
        return head(out.trunk_states, mask) if router else out

    for _ in range(warmup):
        prefill(False), prefill(True)
    plain, routed = [], []
    for r in range(repeats):
        order = (False, True) if r % 2 == 0 else (True, False)  # ABBA: neither mode always runs second
        for flag in order:
            (routed if flag else plain).append(_timed(lambda flag=flag: prefill(flag)))
    trunk = base.model(input_ids=ids, attention_mask=mask, use_cache=False, return_trunk_states=True)["trunk_states"]
    head_times = [_timed(lambda: head(trunk, mask)) for _ in range(repeats)]
    ratios = [b / a for a, b in zip(plain, routed)]
    result = RouterBench(batch_size=batch_size, prompt_tokens=int(ids.shape[1]), prefill_ms=min(plain),
                         prefill_router_ms=min(routed), overhead_pct=100 * (min(routed) / min(plain) - 1),
                         overhead_median_pct=100 * (statistics.median(ratios) - 1), head_ms=min(head_times),
                         repeats=repeats)
    for name, router in (routers or {}).items():
        if getattr(router, "kind", None) != "inmodel":
            continue

        def routed_prefill(router=router):
            out = base(input_ids=ids, attention_mask=mask, use_cache=True, logits_to_keep=1, return_trunk_states=True)
            return router.route_trunk(out.trunk_states, mask, prompts, input_ids=encoded)

        routed_prefill()
        times, own = [], []
        for r in range(repeats):  # interleaved with plain prefills: the ratio is to the fastest of those
            times.append(_timed(routed_prefill))
            own.append(_timed(lambda: prefill(False)))
        result.in_prefill[name] = {"ms": min(times), "ratio": min(times) / min(own)}
    for name, router in (routers or {}).items():
        router.route(prompts)  # warm-up
        times = [_timed(lambda r=router: r.route(prompts)) for _ in range(max(3, repeats // 5))]
        result.routers[name] = min(times) / batch_size
    return result
