"""torch.profiler on a training step and a decode step: the top operators and a Chrome trace per architecture.

    zephyra bench profile --preset small --dtype bf16 --arch zephyra --arch llama --out runs/bench/profile

For each architecture (the same builders as ``zephyra bench model``: Zephyra and HF Llama/GPT-2 of equal size) it
profiles ``--steps`` training steps (forward + backward + AdamW, after warm-up) and ``--decode-tokens`` greedy
decode steps with the KV cache, and writes:

- ``DIR/profile.json``: per arch and phase, wall time per step and the top operators by self CPU time
  (name, calls, self ms per step, share of the phase's self time);
- ``DIR/profile.md``: the same as Markdown tables, the architectures side by side per phase;
- ``DIR/trace-<arch>-<phase>.json``: Chrome traces (open in chrome://tracing or https://ui.perfetto.dev).

Profiling adds overhead per operator, so step times here are for reading shares, not for quoting throughput:
``zephyra bench model`` measures that without the profiler.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from ..io import atomic_write_json, atomic_write_text


@dataclass
class ProfileConfig:
    preset: str = "small"
    batch: int = 8
    seq: int = 256
    vocab: int = 8192
    dtype: str = "bf16"
    threads: int = 2
    steps: int = 3
    warmup: int = 2
    decode_batch: int = 8
    decode_prompt: int = 32
    decode_tokens: int = 32
    top: int = 15
    archs: list[str] = field(default_factory=lambda: ["zephyra", "llama"])

    def __post_init__(self):
        if self.dtype not in ("fp32", "bf16"):
            raise ConfigError(f"dtype must be fp32 or bf16, got {self.dtype!r}")
        bad = [a for a in self.archs if a not in ("zephyra", "llama", "gpt2")]
        if bad:
            raise ConfigError(f"unknown arch(s) {bad}: use zephyra, llama, gpt2")
        for name in ("batch", "seq", "steps", "decode_batch", "decode_prompt", "decode_tokens", "top", "threads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")


def _top(prof, n_steps: int, top: int) -> list[dict]:
    events = [e for e in prof.key_averages() if not e.key.startswith("ProfilerStep")]
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    return [{"op": e.key, "calls_per_step": e.count / n_steps,
             "self_ms_per_step": e.self_cpu_time_total / 1e3 / n_steps, "share": e.self_cpu_time_total / total} for e in events[:top]]


def profile_arch(arch: str, cfg: ProfileConfig, out: Path) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile

    from .train_step import build, training_step

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(0)
    model, n_params = build(arch, cfg.preset, cfg.vocab, max(cfg.seq, cfg.decode_prompt + cfg.decode_tokens), None)
    bf16 = cfg.dtype == "bf16"
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randint(3, cfg.vocab, (cfg.batch, cfg.seq))

    def train_step():
        training_step(model, opt, x, bf16)

    model.train()
    for _ in range(cfg.warmup):
        train_step()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=False) as prof:
        t0 = time.perf_counter()
        for _ in range(cfg.steps):
            train_step()
        train_s = (time.perf_counter() - t0) / cfg.steps
    prof.export_chrome_trace(str(out / f"trace-{arch}-train.json"))
    result = {"params_non_embedding": n_params, "train": {
        "step_ms": train_s * 1e3, "tokens_per_step": cfg.batch * cfg.seq, "top": _top(prof, cfg.steps, cfg.top)}}

    model.eval()
    prompt = torch.randint(3, cfg.vocab, (cfg.decode_batch, cfg.decode_prompt))
    gen = dict(max_new_tokens=cfg.decode_tokens, min_new_tokens=cfg.decode_tokens, do_sample=False, pad_token_id=0)

    def decode():
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            model.generate(prompt, attention_mask=torch.ones_like(prompt), **gen)

    decode()  # warm-up
    with profile(activities=[ProfilerActivity.CPU], record_shapes=False) as prof:
        t0 = time.perf_counter()
        decode()
        decode_s = time.perf_counter() - t0
    prof.export_chrome_trace(str(out / f"trace-{arch}-decode.json"))
    result["decode"] = {"step_ms": decode_s * 1e3 / cfg.decode_tokens, "tokens_per_step": cfg.decode_batch,
                        "top": _top(prof, cfg.decode_tokens, cfg.top)}
    return result


def markdown(report: dict) -> str:
    cfg = report["config"]
    lines = [f"preset `{cfg['preset']}`, {cfg['dtype']}, {cfg['threads']} threads; training: batch {cfg['batch']} x "
             f"seq {cfg['seq']}, {cfg['steps']} profiled steps; decode: batch {cfg['decode_batch']}, prompt "
             f"{cfg['decode_prompt']}, {cfg['decode_tokens']} greedy tokens with the KV cache. Machine: "
             f"{report['machine']}; load average before {report['load_before']}, after {report['load_after']}.", ""]
    for phase in ("train", "decode"):
        lines += [f"### {phase}", "", "| arch | ms/step (profiled) | tokens/step |", "|---|---:|---:|"]
        for arch, res in report["archs"].items():
            lines.append(f"| {arch} | {res[phase]['step_ms']:.1f} | {res[phase]['tokens_per_step']} |")
        for arch, res in report["archs"].items():
            lines += ["", f"{arch}, top operators by self CPU time:", "",
                      "| operator | calls/step | self ms/step | share |", "|---|---:|---:|---:|"]
            lines += [f"| `{t['op']}` | {t['calls_per_step']:.0f} | {t['self_ms_per_step']:.2f} | {t['share']:.1%} |"
                      for t in res[phase]["top"]]
        lines.append("")
    return "\n".join(lines)


def run(cfg: ProfileConfig, out: Path, progress=None) -> dict:
    import os

    from .model import machine

    out.mkdir(parents=True, exist_ok=True)
    report = {"config": cfg.__dict__, "machine": machine(), "load_before": round(os.getloadavg()[0], 2), "archs": {}}
    for arch in cfg.archs:
        if progress:
            progress(f"profiling {arch} ({cfg.preset}, {cfg.dtype})")
        report["archs"][arch] = profile_arch(arch, cfg, out)
        if progress:
            r = report["archs"][arch]
            progress(f"  {arch}: train {r['train']['step_ms']:.0f} ms/step, decode {r['decode']['step_ms']:.1f} "
                     f"ms/token (profiled)")
    report["load_after"] = round(os.getloadavg()[0], 2)
    atomic_write_json(out / "profile.json", report)
    atomic_write_text(out / "profile.md", markdown(report))
    return report
