"""How fast the training engine runs here: tokens/s and achieved FLOP/s of real ``train()`` runs on synthetic
data, against this machine's matrix-multiply peak measured in the same process.

    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 \\
        zephyra train throughput --preset mini --preset small --out runs/bench/train-throughput.json

Achieved FLOP/s = 6 x (parameters in matrix multiplies: all but the embeddings, plus the output matrix) x
tokens/s (forward 2, backward 4 per parameter and token; attention's own T^2 work is left out, as in the usual
estimate). The share of peak is against the fp32 or the bf16 peak, whichever the run computes in.
"""

from __future__ import annotations

import itertools
import os
import random
import tempfile
import time
from pathlib import Path

import torch


def matmul_peak(dtype: torch.dtype, n: int = 2048, seconds: float = 1.5, threads: int | None = None) -> float:
    """FLOP/s of an n x n x n matrix multiply in ``dtype`` (best of repeated timings)."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads or len(os.sched_getaffinity(0)))
    try:
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        for _ in range(2):
            a @ b  # warm-up: thread pool, kernel selection
        best, deadline = float("inf"), time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t0)
        return 2.0 * n**3 / best
    finally:
        torch.set_num_threads(old)


def tcmalloc_loaded() -> bool:
    try:
        return "tcmalloc" in Path("/proc/self/maps").read_text()
    except OSError:
        return False


def synthetic_corpus(root: Path, docs: int = 6000, vocab_size: int = 4096, seed: int = 0) -> tuple[Path, Path]:
    """A DatasetDict of pseudo-words (enough distinct ones to fill a ``vocab_size`` BPE) and its tokenizer."""
    from datasets import Dataset, DatasetDict

    from ..tokenizer import train_tokenizer

    rng = random.Random(seed)
    syllables = [a + b for a in "bcdfghklmnprstvwz" for b in ("a", "e", "i", "o", "u", "ai", "ou", "an", "er")]
    lexicon = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(20000)]
    texts = [" ".join(rng.choice(lexicon) for _ in range(rng.randint(20, 200))) + "." for _ in range(docs)]
    data = root / "synthetic"
    DatasetDict({"train": Dataset.from_dict({"text": texts[:-200]}),
                 "validation": Dataset.from_dict({"text": texts[-200:]})}).save_to_disk(str(data))
    tokenizer = root / "tokenizer"
    train_tokenizer(texts, tokenizer, vocab_size=vocab_size)
    return data, tokenizer


def measure(data: Path, tokenizer: Path, root: Path, preset: str, precision: str, compile: bool, steps: int,
            batch_size: int, seq_len: int, arch: str = "zephyra") -> dict:
    """One short ``train()`` run; its tokens/s is the median over steps after the first (warm-up, compilation)."""
    from ..config import from_dict
    from .config import TrainConfig
    from .trainer import train

    name = f"{arch}-{preset}-{precision}-{'compile' if compile else 'eager'}"
    source = {"path": str(data), "split": "train", "formatter": "text"}
    cfg: TrainConfig = from_dict(TrainConfig, {
        "name": name, "out_dir": str(root / name), "resume": "never", "tokenizer": str(tokenizer),
        "model": {"arch": arch, "preset": preset}, "data": {"train": source, "seq_len": seq_len,
                                                             "cache_dir": str(root / "cache")},
        "batch_size": batch_size, "micro_batch_size": batch_size, "max_steps": steps, "precision": precision,
        "compile": compile, "log_every": 1, "eval_every": 0, "save_every": 0,
        "schedule": {"warmup_steps": 2}, "progress": False})
    t0 = time.perf_counter()
    res = train(cfg)
    m = res["metrics"]
    steps_tps = [r["tok_per_s"] for r in _records(Path(res["paths"]["metrics"])) if "tok_per_s" in r][2:]
    return {"name": name, "arch": arch, "preset": preset, "precision": precision, "compile": compile,
            "tok_per_s": m["tok_per_s"], "tok_per_s_best": max(steps_tps, default=m["tok_per_s"]),
            "flops_per_s": m["flops_per_s"], "params_matmul": m["params_matmul"], "final_loss": m["loss"],
            "wall_seconds": time.perf_counter() - t0, "first_step_seconds": _first_step_seconds(res, batch_size,
                                                                                                seq_len)}


def _records(path: Path) -> list[dict]:
    import json

    return [json.loads(line) for line in path.read_text().splitlines()]


def _first_step_seconds(res: dict, batch_size: int, seq_len: int) -> float:
    first = next(r for r in _records(Path(res["paths"]["metrics"])) if "tok_per_s" in r)
    return batch_size * seq_len / first["tok_per_s"]  # includes torch.compile's compilation


def run_benchmark(presets: list[str], precisions: list[str], compiles: list[bool], steps: int = 30,
                  batch_size: int = 16, seq_len: int = 256, out: Path | None = None,
                  archs: tuple[str, ...] = ("zephyra",)) -> dict:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    load_before = os.getloadavg()[0]  # other work on the machine skews every figure: say how much there was
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    console.print(f"matmul peak (2048^3, {len(os.sched_getaffinity(0))} threads): fp32 {peaks['fp32'] / 1e12:.3f}, "
                  f"bf16 {peaks['bf16'] / 1e12:.3f} TFLOP/s; tcmalloc {'on' if tcmalloc_loaded() else 'off'}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="zephyra-throughput-") as tmp:
        data, tokenizer = synthetic_corpus(Path(tmp))
        for arch, preset, precision, comp in itertools.product(archs, presets, precisions, compiles):
            torch._dynamo.reset()
            r = measure(data, tokenizer, Path(tmp), preset, precision, comp, steps, batch_size, seq_len, arch)
            r["share_of_peak"] = r["flops_per_s"] / peaks[precision]
            rows.append(r)
            console.print(f"{r['name']}: {r['tok_per_s']:,.0f} tok/s median, {r['tok_per_s_best']:,.0f} best step, "
                          f"{r['flops_per_s'] / 1e9:.1f} GFLOP/s ({100 * r['share_of_peak']:.1f}% of the {precision} "
                          f"peak), first step {r['first_step_seconds']:.1f} s")
    table = Table("arch", "preset", "precision", "compile", "tok/s (median)", "tok/s (best step)", "GFLOP/s",
                  "% of peak", "first step s")
    for r in rows:
        table.add_row(r["arch"], r["preset"], r["precision"], str(r["compile"]), f"{r['tok_per_s']:,.0f}",
                      f"{r['tok_per_s_best']:,.0f}", f"{r['flops_per_s'] / 1e9:.1f}", f"{100 * r['share_of_peak']:.1f}",
                      f"{r['first_step_seconds']:.1f}")
    console.print(table)
    result = {"load_average_before": load_before, "load_average_after": os.getloadavg()[0], "peaks_flops": peaks,
              "tcmalloc": tcmalloc_loaded(), "threads": torch.get_num_threads(), "steps": steps, "batch_size": batch_size, "seq_len": seq_len, "runs": rows}
    if out is not None:
        from ..io import atomic_write_json

        atomic_write_json(out, result)
    return result
