"""Compare routers on the same split: accuracy, macro-F1, abstention recall, expected calibration error and
milliseconds per prompt, as a Markdown table, a JSON file and a reliability diagram.

    zephyra router eval --router runs/router/inmodel --router runs/router/minilm --router runs/router/arrow \\
        --model runs/base --data runs/data/router --split test --out runs/reports/router

ECE is the top-label calibration error of the calibrated scores (before abstention), over the prompts whose true
label the router can output: for the Arrow router, which has no ``base`` class, the domain prompts only.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..io import atomic_directory
from ..manifest import write_manifest
from .calibration import BASE, expected_calibration_error, reliability_bins
from .data import RouterSplit
from .decision import Router
from .metrics import by_group, confusion, route_metrics


@dataclass
class RouterEvaluation:
    name: str
    kind: str
    n: int
    accuracy: float
    macro_f1: float
    abstention_recall: float  # true-base prompts routed to base
    ece: float
    ms_per_prompt: float  # wall time of route() over the split, batched as the router batches
    temperature: float
    threshold: float
    by_template: dict  # phrasing family -> {"n", "accuracy"}; for base families, accuracy = abstention recall
    confusion_labels: list
    confusion: list  # rows: true label, columns: decided label
    reliability: list  # equal-width bins: {"lo", "hi", "count", "confidence", "accuracy"}

    def row(self) -> dict:
        return {"router": self.name, "accuracy": self.accuracy, "macro_f1": self.macro_f1,
                "abstention_recall": self.abstention_recall, "ece": self.ece, "ms_per_prompt": self.ms_per_prompt}


def evaluate_router(router: Router, split: RouterSplit, name: str | None = None, n_bins: int = 15,
                    warmup: int = 4) -> RouterEvaluation:
    """Route every prompt of ``split`` (timed after routing ``warmup`` prompts once) and score the decisions."""
    if warmup:
        router.route(split.prompts[:warmup])  # first-call costs (allocations, lazy init) are not per-prompt costs
    t0 = time.perf_counter()
    decisions = router.route(split.prompts)
    ms = (time.perf_counter() - t0) * 1000 / len(split)
    decided = [d.adapter for d in decisions]
    known = [i for i, label in enumerate(split.labels) if label in router.labels]
    conf = [decisions[i].confidence for i in known]
    correct = [decisions[i].top == split.labels[i] for i in known]
    labels = list(dict.fromkeys([BASE, *router.labels, *sorted(set(split.labels))]))
    m = route_metrics(split.labels, decided)
    return RouterEvaluation(
        name=name or router.kind, kind=router.kind, n=len(split), accuracy=m["accuracy"], macro_f1=m["macro_f1"],
        abstention_recall=m["abstention_recall"], ece=expected_calibration_error(conf, correct, n_bins),
        ms_per_prompt=ms, temperature=router.calibration.temperature, threshold=router.calibration.threshold,
        by_template=by_group(split.labels, decided, split.templates), confusion_labels=labels,
        confusion=confusion(split.labels, decided, labels).tolist(),
        reliability=reliability_bins(conf, correct, n_bins))


def _fmt(x: float, pct: bool = True) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{100 * x:.1f}%" if pct else f"{x:.3f}"


def markdown_table(evals: list[RouterEvaluation]) -> str:
    """The comparison table, then accuracy per phrasing family (base families: abstention recall)."""
    lines = ["| router | accuracy | macro-F1 | abstention recall | ECE | ms/prompt |", "|---|---|---|---|---|---|"]
    for e in evals:
        lines.append(f"| {e.name} | {_fmt(e.accuracy)} | {_fmt(e.macro_f1)} | {_fmt(e.abstention_recall)} | "
                     f"{_fmt(e.ece, pct=False)} | {e.ms_per_prompt:.2f} |")
    families = sorted({t for e in evals for t in e.by_template})
    lines += ["", "| phrasing family | n | " + " | ".join(e.name for e in evals) + " |",
              "|---|---|" + "---|" * len(evals)]
    for t in families:
        n = next(e.by_template[t]["n"] for e in evals if t in e.by_template)
        cells = [_fmt(e.by_template[t]["accuracy"]) if t in e.by_template else "" for e in evals]
        lines.append(f"| {t} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def reliability_diagram(evals: list[RouterEvaluation], path: str | os.PathLike) -> Path:
    """One panel per router: accuracy per confidence bin against the diagonal of perfect calibration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(evals), figsize=(3.6 * len(evals), 3.6), squeeze=False)
    for ax, e in zip(axes[0], evals):
        bins = [b for b in e.reliability if b["count"]]
        width = e.reliability[0]["hi"] - e.reliability[0]["lo"]
        ax.bar([b["lo"] for b in bins], [b["accuracy"] for b in bins], width=width, align="edge",
               edgecolor="black", alpha=0.7, label="accuracy")
        ax.plot([0, 1], [0, 1], "--", color="grey", label="calibrated")
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", title=f"{e.name} (ECE {_fmt(e.ece, pct=False)})")
    axes[0][0].set_ylabel("accuracy")
    axes[0][0].legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(evals: list[RouterEvaluation], out_dir: str | os.PathLike, *, split: str = "test",
                 inputs: dict | None = None, config: dict | None = None) -> Path:
    """``out_dir``/table.md, metrics.json, reliability.png and manifest.json, written atomically."""
    with atomic_directory(out_dir) as tmp:
        table = markdown_table(evals)
        (tmp / "table.md").write_text(f"Routers on the {split} split\n\n{table}")
        (tmp / "metrics.json").write_text(json.dumps([asdict(e) for e in evals], indent=2, default=str) + "\n")
        reliability_diagram(evals, tmp / "reliability.png")
        write_manifest(tmp, "report", config={"split": split, **(config or {})}, inputs=inputs or {},
                       metrics={e.name: e.row() for e in evals})
    return Path(out_dir)
