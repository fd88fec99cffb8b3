"""Training-step throughput and peak memory: Zephyra against HF Llama of the same parameter count.

    zephyra bench model --preset small --batch 8 --seq 256 --dtypes fp32,bf16

Same threads, allocator and dtype for every architecture. Throughput: the architectures' training steps
alternate within one process, so a busy moment of the machine slows both alike; the table gives the median
step and the ratio of the medians. Peak memory: one process per architecture, so each peak is its own.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError

TCMALLOC_CANDIDATES = ["/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
                       "/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4"]


@dataclass
class ModelBenchConfig:
    preset: str = "small"
    batch: int = 8
    seq: int = 256
    vocab: int = 8192
    steps: int = 8
    warmup: int = 2
    rounds: int = 3
    threads: int = 2
    dtypes: list[str] = field(default_factory=lambda: ["fp32", "bf16"])
    archs: list[str] = field(default_factory=lambda: ["zephyra", "llama"])
    allocator: str = "system"  # "system" (glibc malloc) or "tcmalloc" (LD_PRELOAD), the same for every arch
    compile: bool = False  # torch.compile every arch alike
    device: str = "cpu"  # or "cuda" where torch sees a GPU: the same benchmark, unchanged

    def __post_init__(self):
        bad = [d for d in self.dtypes if d not in ("fp32", "bf16")]
        if bad:
            raise ConfigError(f"unknown dtype(s) {bad}: use fp32 and/or bf16")
        if self.allocator not in ("system", "tcmalloc"):
            raise ConfigError(f"allocator must be 'system' or 'tcmalloc', got {self.allocator!r}")
        if "llama" not in self.archs:
            raise ConfigError("archs must include 'llama': every ratio is against it")
        if self.device not in ("cpu", "cuda"):
            raise ConfigError(f"device must be cpu or cuda, got {self.device!r}")
        if self.device == "cuda":
            import torch

            if not torch.cuda.is_available():
                raise ConfigError(f"device cuda: torch {torch.__version__} sees no CUDA device here")


def tcmalloc_path() -> str:
    for p in TCMALLOC_CANDIDATES:
        if Path(p).is_file():
            return p
    raise FileNotFoundError("tcmalloc not found: apt-get install libtcmalloc-minimal4")


def _env(cfg: ModelBenchConfig) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(cfg.threads), TOKENIZERS_PARALLELISM="false")
    env.pop("LD_PRELOAD", None)
    if cfg.allocator == "tcmalloc":
        env["LD_PRELOAD"] = tcmalloc_path()
    return env


def _cmd(cfg: ModelBenchConfig, dtype: str, *extra: str) -> list[str]:
    cmd = [sys.executable, "-m", "zephyra.bench.train_step", "--preset", cfg.preset, "--batch", str(cfg.batch),
           "--seq", str(cfg.seq), "--dtype", dtype, "--steps", str(cfg.steps), "--warmup", str(cfg.warmup),
           "--vocab", str(cfg.vocab), "--threads", str(cfg.threads), "--device", cfg.device, *extra]
    return cmd + (["--compile"] if cfg.compile else [])


def _json(cmd: list[str], cfg: ModelBenchConfig, what: str):
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(cfg))
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark of {what} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(cfg: ModelBenchConfig, progress=None) -> list[dict]:
    """Throughput: per dtype and round, one process runs every arch with steps alternating, so load on the
    machine hits them alike. Peak memory: one process per (arch, dtype), so each peak is its own."""
    speeds: dict[tuple[str, str], list[float]] = {}
    for r in range(cfg.rounds):
        for dtype in cfg.dtypes:
            archs = cfg.archs if r % 2 == 0 else cfg.archs[::-1]
            res = _json(_cmd(cfg, dtype, "--interleave", ",".join(archs)), cfg, f"{dtype} round {r + 1}")
            for arch, values in res.items():
                speeds.setdefault((dtype, arch), []).extend(values)
            if progress:
                progress(f"round {r + 1}/{cfg.rounds} {dtype}: " + ", ".join(
                    f"{a} {statistics.median(v):.0f} tok/s" for a, v in res.items()))
    rows = []
    for (dtype, arch), values in speeds.items():
        mem = _json(_cmd(cfg, dtype, "--arch", arch), cfg, f"{arch}/{dtype} memory")
        if progress:
            progress(f"memory {dtype} {arch}: peak {mem['peak_rss_mib']:.0f} MiB")
        rows.append({"dtype": dtype, "arch": arch, "params_non_embedding": mem["params_non_embedding"],
                     "params_total": mem["params_total"], "tokens_per_s": statistics.median(values),
                     "steps_measured": len(values), "peak_rss_mib": mem["peak_rss_mib"]})
    for row in rows:
        ref = next(x for x in rows if x["dtype"] == row["dtype"] and x["arch"] == "llama")
        row["speed_vs_llama"] = row["tokens_per_s"] / ref["tokens_per_s"]
        row["memory_vs_llama"] = row["peak_rss_mib"] / ref["peak_rss_mib"]
    return rows


def machine() -> str:
    import torch
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, Python {platform.python_version()}"


def markdown(rows: list[dict], cfg: ModelBenchConfig) -> str:
    lines = [f"preset `{cfg.preset}`, batch {cfg.batch} x seq {cfg.seq}, vocab {cfg.vocab}, {cfg.threads} threads, "
             f"allocator {cfg.allocator}, compile {cfg.compile}, device {cfg.device}; median of {cfg.rounds} rounds x {cfg.steps} "
             "interleaved steps", "",
             "| dtype | arch | params (non-emb) | tokens/s | vs Llama | peak RSS MiB | memory vs Llama |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (r["dtype"], r["arch"] != "zephyra")):
        lines.append(f"| {r['dtype']} | {r['arch']} | {r['params_non_embedding']:,} | {r['tokens_per_s']:,.0f} | "
                     f"{r['speed_vs_llama']:.2f}x | {r['peak_rss_mib']:,.0f} | "
                     f"{r['memory_vs_llama']:.2f}x |")
    return "\n".join(lines)
