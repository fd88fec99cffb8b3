"""Multi-adapter generation throughput: our engine against PEFT, the base and a merged adapter, in one run.

    python -m zephyra.bench.adapters --preset small --batch 8 --new-tokens 64 --rounds 15 --threads 1
    zephyra bench adapters --preset small --batch 8 --new-tokens 64 --rounds 15   (once the CLI is wired)

One process builds a random-weight base of the preset and ``adapters`` random LoRA adapters (rank ``rank``, on
the branch, saved and loaded as the runtime loads them), then measures two things:

1. Generation: greedy generation of ``new_tokens`` for a batch of ``batch`` prompts of ``prompt_len`` tokens,
   prefill included, in every way of ``VARIANTS``. Every round runs every variant once, in a rotated order, so
   a slow moment of the shared machine hits all of them.
2. Decode steps: one decoding step of each of ``STEPS`` in turn, step after step (each with its own KV cache),
   so the two sides of a ratio are measured milliseconds apart: the precise figure for "decoding speed".

Tables give medians; each ratio is the median of its paired ratios (per round, or per step). Both wall time and
the process's CPU time are recorded for generation: other jobs on the machine inflate the first far more.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers.cache_utils import DynamicCache

from ..errors import ConfigError
from ..adapters import attach_adapter, base_fingerprint, load_adapter, merge_adapter, save_adapter
from ..model import ZephyraForCausalLM, preset_config
from ..resolve.lora import AdapterBank
from ..resolve.multi import MultiLoRAEngine, decode
from .model import machine


@dataclass
class AdapterBenchConfig:
    preset: str = "small"
    batch: int = 8
    prompt_len: int = 32
    new_tokens: int = 64
    adapters: int = 4  # LoRA adapters on the branch; mixed batches cycle through them row by row
    rank: int = 8
    rounds: int = 15  # generation rounds (every variant once per round)
    step_rounds: int = 10  # decode-step rounds (a fresh prefill, then new_tokens steps of every step variant)
    warmup: int = 1  # untimed generation rounds first
    threads: int = 2
    vocab: int = 8192
    dtype: str = "fp32"  # "fp32" or "bf16" (weights cast; the same for every variant)
    variants: list[str] | None = None  # generation variants; None: all of VARIANTS
    seed: int = 0

    def __post_init__(self):
        if self.dtype not in ("fp32", "bf16"):
            raise ConfigError(f"dtype must be fp32 or bf16, got {self.dtype!r}")
        if self.batch % self.adapters:
            raise ConfigError(f"batch {self.batch} must be a multiple of adapters {self.adapters} "
                             "(one batch per adapter splits it evenly)")
        unknown = sorted(set(self.variants or []) - set(VARIANTS))
        if unknown:
            raise ConfigError(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")


# Generation variants. "HF" = transformers' model.generate; the others use our loop (resolve.multi.decode).
VARIANTS = {
    "base_hf": "(a) base model, HF generate",
    "base": "(a) base model, our loop",
    "peft_single": "(b) one adapter unmerged, PEFT + HF generate",
    "ours_single": "(c) one adapter unmerged, our engine",
    "ours_single_hf": "(c) one adapter unmerged, our layers + HF generate",
    "merged_hf": "(d) one adapter merged, HF generate",
    "merged": "(d) one adapter merged, our loop",
    "peft_mixed": "(e) mixed batch, PEFT adapter_names + HF generate",
    "ours_mixed": "(f) mixed batch, our engine (masked kernel, the default)",
    "ours_mixed_bmm": "(f) mixed batch, our engine (bmm kernel)",
    "ours_mixed_grouped": "(f) mixed batch, our engine (grouped kernel)",
    "ours_fused": "(f) fused: every row a 50/50 mix of two adapters, our engine",
    "peft_per_adapter": "(g) one batch per adapter, PEFT + HF generate",
    "ours_per_adapter": "(g) one batch per adapter, our engine",
}

# (name, numerator, denominator, target): the figures the issue asks for, and PEFT's equivalents
RATIOS = [
    ("ours: mixed / single adapter", "ours_mixed", "ours_single", 0.8),
    ("ours: unmerged / base (same loop)", "ours_single", "base", 0.9),
    ("ours: unmerged / base (HF generate)", "ours_single", "base_hf", None),
    ("ours: one batch per adapter / single", "ours_per_adapter", "ours_single", None),
    ("ours: fused / single", "ours_fused", "ours_single", None),
    ("ours: bmm kernel / masked kernel, mixed", "ours_mixed_bmm", "ours_mixed", None),
    ("ours: grouped kernel / masked kernel, mixed", "ours_mixed_grouped", "ours_mixed", None),
    ("ours: our loop / HF generate, one adapter", "ours_single", "ours_single_hf", None),
    ("PEFT: mixed / single adapter", "peft_mixed", "peft_single", None),
    ("PEFT: unmerged / base", "peft_single", "base_hf", None),
    ("PEFT: one batch per adapter / single", "peft_per_adapter", "peft_single", None),
    ("merged / base (HF generate)", "merged_hf", "base_hf", None),
    ("ours mixed / PEFT mixed", "ours_mixed", "peft_mixed", None),
]

# Decode-step variants (the whole batch, one new token each) and their ratios (speed = inverse step time).
STEPS = {
    "base": "base model",
    "merged": "one adapter merged",
    "peft_single": "one adapter unmerged, PEFT",
    "ours_single": "one adapter unmerged, our engine",
    "peft_mixed": "mixed batch, PEFT adapter_names",
    "ours_mixed": "mixed batch, our engine",
}
STEP_RATIOS = [
    ("ours: mixed / single adapter", "ours_mixed", "ours_single", 0.8),
    ("ours: unmerged / base", "ours_single", "base", 0.9),
    ("PEFT: mixed / single adapter", "peft_mixed", "peft_single", None),
    ("PEFT: unmerged / base", "peft_single", "base", None),
    ("merged / base", "merged", "base", None),
    ("ours mixed / PEFT mixed", "ours_mixed", "peft_mixed", None),
]


# --- the models --------------------------------------------------------------------------------------------------

def _no_eos(model):
    """Every variant generates exactly new_tokens: random weights would otherwise stop rows at random."""
    model.generation_config.eos_token_id = None
    return model


@dataclass
class Models:
    base: ZephyraForCausalLM
    peft: object  # PeftModel holding every adapter
    merged: ZephyraForCausalLM  # the base with the first adapter folded in
    dirs: dict[str, Path]  # adapter name -> saved directory
    names: list[str] = field(default_factory=list)

    def engine(self, kernel: str = "masked", rows: list | None = None) -> MultiLoRAEngine:
        """An engine on its own copy of the base (so engines with different rows can run side by side)."""
        model = _no_eos(copy.deepcopy(self.base))
        engine = MultiLoRAEngine(model, AdapterBank.from_dirs(model, self.dirs), kernel=kernel)
        if rows is not None:
            engine.set_rows(engine.mixes(rows))
        return engine


def build_models(cfg: AdapterBenchConfig, workdir: Path) -> Models:
    """The base, the adapters (saved, then read back as the runtime reads them), PEFT holding them, a merged copy."""
    torch.manual_seed(cfg.seed)
    base = ZephyraForCausalLM(preset_config(cfg.preset, vocab_size=cfg.vocab)).eval()
    if cfg.dtype == "bf16":
        base = base.to(torch.bfloat16)
    names = [f"adapter{i}" for i in range(cfg.adapters)]
    dirs = {}
    for i, name in enumerate(names):
        torch.manual_seed(cfg.seed + 1 + i)
        peft = attach_adapter(copy.deepcopy(base), "lora", name=name, rank=cfg.rank, identity_init=False)
        dirs[name] = save_adapter(peft, workdir / name)
    fingerprint = base_fingerprint(base)
    peft = copy.deepcopy(base)
    for name in names:
        peft = load_adapter(peft, dirs[name], fingerprint=fingerprint)
    merged = merge_adapter(peft, names[0])
    peft.set_adapter(names[0])
    return Models(base=_no_eos(base), peft=_no_eos(peft.eval()), merged=_no_eos(merged.eval()), dirs=dirs,
                  names=names)


def _rows(cfg: AdapterBenchConfig, names: list[str]) -> tuple[list[str], list[str]]:
    """(single: every row the first adapter, mixed: the adapters row by row in turn)."""
    return [names[0]] * cfg.batch, [names[i % len(names)] for i in range(cfg.batch)]


# --- generation variants -----------------------------------------------------------------------------------------

@dataclass
class Variant:
    run: Callable[[], object]
    prepare: Callable[[], object] = field(default=lambda: None)  # untimed (e.g. PEFT's set_adapter)


def _hf(model, ids, n, **kwargs):
    with torch.no_grad():
        model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False,
                       pad_token_id=0, **kwargs)


def _ours(model, ids, n):
    with torch.no_grad():
        decode(model, ids, None, n, lambda logits: logits.argmax(-1), nullcontext)


def make_variants(cfg: AdapterBenchConfig, m: Models, ids: torch.Tensor) -> dict[str, Variant]:
    n, names, peft = cfg.new_tokens, m.names, m.peft
    eng, bmm, grouped = m.engine("masked"), m.engine("bmm"), m.engine("grouped")
    single, mixed = _rows(cfg, names)
    fused = [{names[i % len(names)]: 0.5, names[(i + 1) % len(names)]: 0.5} for i in range(cfg.batch)]
    groups = [[i for i in range(cfg.batch) if mixed[i] == name] for name in names]

    def peft_per_adapter():
        for name, rows in zip(names, groups):
            peft.set_adapter(name)  # timed: switching is part of serving one batch per adapter
            _hf(peft, ids[rows], n)

    def ours_single_hf():
        with eng.use(single):
            _hf(eng.model, ids, n)

    return {
        "base_hf": Variant(lambda: _hf(m.base, ids, n)),
        "base": Variant(lambda: _ours(m.base, ids, n)),
        "peft_single": Variant(lambda: _hf(peft, ids, n), prepare=lambda: peft.set_adapter(names[0])),
        "ours_single": Variant(lambda: eng.generate(ids, adapters=single, max_new_tokens=n)),
        "ours_single_hf": Variant(ours_single_hf),
        "merged_hf": Variant(lambda: _hf(m.merged, ids, n)),
        "merged": Variant(lambda: _ours(m.merged, ids, n)),
        "peft_mixed": Variant(lambda: _hf(peft, ids, n, adapter_names=mixed)),
        "ours_mixed": Variant(lambda: eng.generate(ids, adapters=mixed, max_new_tokens=n)),
        "ours_mixed_bmm": Variant(lambda: bmm.generate(ids, adapters=mixed, max_new_tokens=n)),
        "ours_mixed_grouped": Variant(lambda: grouped.generate(ids, adapters=mixed, max_new_tokens=n)),
        "ours_fused": Variant(lambda: eng.generate(ids, adapters=fused, max_new_tokens=n)),
        "peft_per_adapter": Variant(peft_per_adapter),
        "ours_per_adapter": Variant(lambda: [eng.generate(ids[rows], adapters=[name] * len(rows), max_new_tokens=n)
                                             for name, rows in zip(names, groups)]),
    }


def measure_generation(cfg: AdapterBenchConfig, variants: dict[str, Variant], progress=None) -> dict:
    """{"wall"|"cpu": {variant: tokens/s per round}}: wall time is what a user waits; this process's CPU time is
    the work done (on a machine shared with other jobs it moves far less than wall time does)."""
    keys, tokens = list(variants), cfg.batch * cfg.new_tokens
    samples: dict[str, dict[str, list[float]]] = {"wall": {k: [] for k in keys}, "cpu": {k: [] for k in keys}}
    for r in range(cfg.warmup + cfg.rounds):
        order = keys[r % len(keys):] + keys[: r % len(keys)]  # rotate who goes first
        for k in order:
            variants[k].prepare()
            t, c = time.perf_counter(), time.process_time()
            variants[k].run()
            wall, cpu = tokens / (time.perf_counter() - t), tokens / max(time.process_time() - c, 1e-9)
            if r >= cfg.warmup:
                samples["wall"][k].append(wall)
                samples["cpu"][k].append(cpu)
            if progress:
                progress(f"round {r + 1 - cfg.warmup}/{cfg.rounds} {k:20s} {wall:8.0f} tok/s wall {cpu:8.0f} tok/s cpu")
    return samples


# --- decode steps ------------------------------------------------------------------------------------------------

class Stepper:
    """Decodes one batch one token at a time with its own KV cache: ``start()`` prefills, ``step()`` decodes."""

    def __init__(self, model, ids: torch.Tensor, **forward_kwargs):
        self.model, self.ids, self.kwargs = model, ids, forward_kwargs
        self.cache, self.next = None, None

    @torch.no_grad()
    def _forward(self, ids):
        out = self.model(input_ids=ids, past_key_values=self.cache, use_cache=True, logits_to_keep=1, **self.kwargs)
        self.next = out.logits[:, -1].argmax(-1, keepdim=True)  # (B, 1)

    def start(self):
        self.cache = DynamicCache(config=self.model.config)
        self._forward(self.ids)

    def step(self):
        self._forward(self.next)


def make_steppers(cfg: AdapterBenchConfig, m: Models, ids: torch.Tensor) -> dict[str, Stepper]:
    single, mixed = _rows(cfg, m.names)
    m.peft.set_adapter(m.names[0])
    return {"base": Stepper(m.base, ids), "merged": Stepper(m.merged, ids),
            "peft_single": Stepper(m.peft, ids), "ours_single": Stepper(m.engine(rows=single).model, ids),
            "peft_mixed": Stepper(m.peft, ids, adapter_names=mixed),
            "ours_mixed": Stepper(m.engine(rows=mixed).model, ids)}


def measure_steps(cfg: AdapterBenchConfig, steppers: dict[str, Stepper], progress=None) -> dict[str, list[float]]:
    """{variant: seconds per step}, the variants taking turns step by step (index i of every list: the same
    step, measured within milliseconds)."""
    keys = list(steppers)
    times: dict[str, list[float]] = {k: [] for k in keys}
    for r in range(cfg.step_rounds):
        for s in steppers.values():
            s.start()
        for i in range(cfg.new_tokens - 1):
            j = (r + i) % len(keys)
            for k in keys[j:] + keys[:j]:
                t = time.perf_counter()
                steppers[k].step()
                times[k].append(time.perf_counter() - t)
        if progress:
            progress(f"decode steps, round {r + 1}/{cfg.step_rounds}: " + ", ".join(
                f"{k} {statistics.median(v[-cfg.new_tokens + 1:]) * 1e3:.2f} ms" for k, v in times.items()))
    return times


# --- summary -----------------------------------------------------------------------------------------------------

def _ratio(num: list[float], den: list[float]) -> dict:
    return {"paired": statistics.median(a / b for a, b in zip(num, den)),
            "of_medians": statistics.median(num) / statistics.median(den)}


def summarise(cfg: AdapterBenchConfig, gen: dict, steps: dict[str, list[float]]) -> dict:
    wall, cpu = gen["wall"], gen["cpu"]
    rows = [{"variant": k, "label": VARIANTS[k], "tokens_per_s": statistics.median(wall[k]),
             "tokens_per_s_cpu": statistics.median(cpu[k]), "tokens_per_s_all": [round(x) for x in wall[k]]}
            for k in wall]
    ratios = [{"ratio": name, "numerator": num, "denominator": den, "target": target,
               "wall": _ratio(wall[num], wall[den]), "cpu": _ratio(cpu[num], cpu[den])}
              for name, num, den, target in RATIOS if num in wall and den in wall]
    speed = {k: [cfg.batch / t for t in v] for k, v in steps.items()}  # tokens/s of each step
    step_rows = [{"variant": k, "label": STEPS[k], "ms_per_step": statistics.median(v) * 1e3,
                  "tokens_per_s": statistics.median(speed[k])} for k, v in steps.items()]
    step_ratios = [{"ratio": name, "numerator": num, "denominator": den, "target": target,
                    **_ratio(speed[num], speed[den])} for name, num, den, target in STEP_RATIOS if num in speed]
    return {"rows": rows, "ratios": ratios, "step_rows": step_rows, "step_ratios": step_ratios,
            "machine": machine(), "config": dict(cfg.__dict__)}


def run(cfg: AdapterBenchConfig, progress=None) -> dict:
    """Both measurements; returns rows and ratios for each, as ``summarise`` lays them out."""
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            m = build_models(cfg, Path(tmp))
            ids = torch.randint(3, cfg.vocab, (cfg.batch, cfg.prompt_len), generator=torch.Generator().manual_seed(1))
            variants = {k: v for k, v in make_variants(cfg, m, ids).items() if k in (cfg.variants or VARIANTS)}
            gen = measure_generation(cfg, variants, progress)
            steps = measure_steps(cfg, make_steppers(cfg, m, ids), progress) if cfg.step_rounds else {}
    finally:
        torch.set_num_threads(threads)
    return summarise(cfg, gen, steps)


def _target(value: float, target: float | None) -> str:
    return "" if target is None else f">= {target}: " + ("met" if value >= target else "NOT met")


def markdown(result: dict, cfg: AdapterBenchConfig) -> str:
    lines = [f"preset `{cfg.preset}` (random weights), {cfg.adapters} LoRA adapters r={cfg.rank} on the branch, "
             f"batch {cfg.batch}, prompt {cfg.prompt_len} tokens, {cfg.new_tokens} new tokens (greedy), {cfg.dtype}, "
             f"{cfg.threads} threads. Machine: {result['machine']}.", "",
             f"Generation, prefill included: medians of {cfg.rounds} interleaved rounds.", "",
             "| variant | tokens/s (wall) | tokens/s (CPU time) | wall, every round |", "|---|---:|---:|---|"]
    lines += [f"| {r['label']} | {r['tokens_per_s']:,.0f} | {r['tokens_per_s_cpu']:,.0f} | {r['tokens_per_s_all']} |"
              for r in result["rows"]]
    lines += ["", "| ratio | wall: median of per-round ratios (of medians) | CPU time | target (on wall) |",
              "|---|---:|---:|---|"]
    for q in result["ratios"]:
        cells = [f"{q[c]['paired']:.2f}x ({q[c]['of_medians']:.2f}x)" for c in ("wall", "cpu")]
        lines.append(f"| {q['ratio']} | {cells[0]} | {cells[1]} | {_target(q['wall']['paired'], q['target'])} |")
    if result["step_rows"]:
        lines += ["", f"Decode steps, the variants taking turns step by step: medians of "
                      f"{cfg.step_rounds} x {cfg.new_tokens - 1} steps each.", "",
                  "| variant | ms per step | tokens/s |", "|---|---:|---:|"]
        lines += [f"| {r['label']} | {r['ms_per_step']:.2f} | {r['tokens_per_s']:,.0f} |" for r in result["step_rows"]]
        lines += ["", "| ratio | median of per-step ratios | ratio of medians | target |", "|---|---:|---:|---|"]
        lines += [f"| {q['ratio']} | {q['paired']:.2f}x | {q['of_medians']:.2f}x | "
                  f"{_target(q['paired'], q['target'])} |" for q in result["step_ratios"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None, parser: type[argparse.ArgumentParser] = argparse.ArgumentParser,
         prog: str | None = None) -> None:
    """python -m zephyra.bench.adapters --preset small --batch 8 --new-tokens 64 --rounds 15 --threads 1"""
    p = parser(prog=prog, description=__doc__.split("\n")[0])
    for f in ("preset", "dtype"):
        p.add_argument(f"--{f}", default=getattr(AdapterBenchConfig, f))
    for f in ("batch", "prompt_len", "new_tokens", "adapters", "rank", "rounds", "step_rounds", "warmup", "threads",
              "vocab", "seed"):
        p.add_argument(f"--{f.replace('_', '-')}", type=int, default=getattr(AdapterBenchConfig, f))
    p.add_argument("--variants", default=None, help="comma-separated subset of: " + ", ".join(VARIANTS))
    args = vars(p.parse_args(argv))
    args["variants"] = args["variants"].split(",") if args["variants"] else None
    cfg = AdapterBenchConfig(**args)
    print(markdown(run(cfg, progress=lambda s: print(s, flush=True)), cfg))


if __name__ == "__main__":
    main()
