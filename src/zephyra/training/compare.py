"""Compare training runs by their validation-loss curves: which reaches a loss in fewer tokens.

    zephyra train compare runs/cmp-zephyra runs/cmp-gpt2 --baseline runs/cmp-gpt2 --out runs/cmp

For every run it reads ``metrics.jsonl`` (the evaluations: ``tokens``, ``val_loss``), plots validation loss
against tokens, and measures the **token ratio**: the tokens a run needed to first reach the baseline's final
validation loss, over the baseline's total tokens (linear interpolation between evaluations; None when it never
got there). A ratio of 0.7 means the run matched the baseline with 30% fewer tokens.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ZephyraError
from ..io import atomic_write_bytes, atomic_write_text


class CompareError(ZephyraError, ValueError):
    """A run that cannot be compared (no metrics, no evaluations); the message is one line."""


@dataclass
class Curve:
    name: str
    tokens: list[int]
    val_loss: list[float]
    arch: str = ""
    tok_per_s: float | None = None  # mean training throughput over the run's log lines

    @property
    def final(self) -> float:
        return self.val_loss[-1]


def read_curve(run_dir: str | os.PathLike) -> Curve:
    run = Path(run_dir)
    path = run / "metrics.jsonl"
    if not path.is_file():
        raise CompareError(f"{run}: no metrics.jsonl (not a training run directory)")
    tokens, losses, speeds = [], [], []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise CompareError(f"{path}:{n}: not JSON ({e.msg})") from None
        if "val_loss" in row:
            tokens.append(int(row["tokens"]))
            losses.append(float(row["val_loss"]))
        elif "tok_per_s" in row:
            speeds.append(float(row["tok_per_s"]))
    if not tokens:
        raise CompareError(f"{path}: no validation evaluations recorded")
    arch = ""
    cfg = run / "config.yaml"
    if cfg.is_file():
        import yaml

        arch = (yaml.safe_load(cfg.read_text()).get("model") or {}).get("arch", "")
    return Curve(run.name, tokens, losses, arch, sum(speeds) / len(speeds) if speeds else None)


def tokens_to_reach(curve: Curve, target: float) -> float | None:
    """Tokens at which ``curve`` first reaches ``target`` (linear between evaluations); None if it never does."""
    prev_t, prev_l = 0, None
    for t, loss in zip(curve.tokens, curve.val_loss):
        if loss <= target:
            if prev_l is None or prev_l == loss:
                return float(t)
            return prev_t + (prev_l - target) / (prev_l - loss) * (t - prev_t)
        prev_t, prev_l = t, loss
    return None


def compare(curves: list[Curve], baseline: str) -> list[dict]:
    """One row per run: final validation loss, tokens to reach the baseline's final loss and their ratio."""
    base = next((c for c in curves if c.name == baseline), None)
    if base is None:
        raise CompareError(f"baseline {baseline!r} is not among the runs ({', '.join(c.name for c in curves)})")
    rows = []
    for c in curves:
        reach = tokens_to_reach(c, base.final)
        rows.append({"run": c.name, "arch": c.arch, "final_val_loss": c.final, "tokens": c.tokens[-1],
                     "tokens_to_baseline_final": reach,
                     "token_ratio": None if reach is None else reach / base.tokens[-1],
                     "tok_per_s": c.tok_per_s})
    return rows


def markdown(rows: list[dict], baseline: str) -> str:
    lines = [f"| run | arch | final val loss | tokens | tokens to reach {baseline}'s final loss | ratio | train tok/s |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        reach = "never" if r["tokens_to_baseline_final"] is None else f"{r['tokens_to_baseline_final']:,.0f}"
        ratio = "-" if r["token_ratio"] is None else f"{r['token_ratio']:.2f}x"
        speed = "-" if r["tok_per_s"] is None else f"{r['tok_per_s']:,.0f}"
        lines.append(f"| {r['run']} | {r['arch']} | {r['final_val_loss']:.4f} | {r['tokens']:,} | {reach} | {ratio} "
                     f"| {speed} |")
    return "\n".join(lines) + "\n"


def plot(curves: list[Curve], path: str | os.PathLike, title: str = "validation loss") -> None:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for c in curves:
        ax.plot([t / 1e6 for t in c.tokens], c.val_loss, marker="o", markersize=3,
                label=f"{c.name} ({c.arch})" if c.arch else c.name)
    ax.set_xlabel("training tokens (millions)")
    ax.set_ylabel("validation loss (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(Path(path), buf.getvalue())


def run_compare(run_dirs: list[str | os.PathLike], baseline: str | os.PathLike, out: str | os.PathLike) -> list[dict]:
    """Read the runs, write ``compare.md``, ``compare.json`` and ``val_loss.png`` into ``out``; the rows."""
    curves = [read_curve(d) for d in run_dirs]
    names = [c.name for c in curves]
    if len(set(names)) != len(names):
        raise CompareError(f"run directories must have distinct names, got {names}")
    rows = compare(curves, Path(baseline).name)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "compare.md", markdown(rows, Path(baseline).name))
    atomic_write_text(out / "compare.json", json.dumps({"baseline": Path(baseline).name, "rows": rows,
                                                        "curves": [c.__dict__ for c in curves]}, indent=2))
    plot(curves, out / "val_loss.png")
    return rows
