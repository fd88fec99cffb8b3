"""Reports of the evaluation suite: Markdown tables, results.json, heatmaps and a manifest, written atomically.

    write_report(evaluate_matrix(...), "runs/eval")            # report.md, results.json, answers.json, *.png
    write_method_report(compare_methods(...), "runs/eval-methods")

Plots use matplotlib's object API (``Figure``, no pyplot), so no global backend is touched and nothing needs a
display; every file is written into a temporary directory that replaces ``out_dir`` in one rename.
"""

from __future__ import annotations

import io
import json
import math
import os
from pathlib import Path

from ..io import atomic_directory
from ..manifest import write_manifest
from .suite import MatrixResult, MethodComparison

# --- formatting -----------------------------------------------------------------------------------------------


def _num(x: float | None, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}f}"


def _check(ok: bool | None) -> str:
    return "n/a" if ok is None else ("pass" if ok else "**fail**")


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def matrix_table(result: MatrixResult, metric: str, digits: int = 3) -> str:
    """Rows (base, adapters) x domains; the adapter's own domain in bold."""
    rows = []
    for r, values in zip(result.rows, result.table(metric), strict=True):
        own = result.adapters[r].domain if r in result.adapters else None
        rows.append([r] + [f"**{_num(v, digits)}**" if d == own else _num(v, digits)
                           for d, v in zip(result.domains, values, strict=True)])
    return markdown_table(["", *result.domains], rows)


def verdict_table(result: MatrixResult) -> str:
    g = result.goals
    rows = []
    for v in result.verdicts:
        worst = v.worst_other
        rows.append([v.adapter, v.domain, _num(v.own_ppl_ratio), _check(v.own_ppl_pass),
                     f"{_num(v.own_f1)} vs {_num(v.base_f1)}", _check(v.own_f1_pass),
                     f"{_num(worst[1])} ({worst[0]})" if worst else "-", _check(v.others_pass), _check(v.passed)])
    return markdown_table(["adapter", "domain", "own ppl ratio", f"<= {g.own_ppl_ratio_max:g}?",
                           "own QA F1 vs base", "higher?", "worst other-domain ppl ratio",
                           f"within 1 +- {g.other_ppl_tolerance:g}?", "verdict"], rows)


def render_matrix(result: MatrixResult) -> str:
    s = result.settings
    parts = [
        "# Isolation matrix: base and adapters on every domain's held-out data",
        f"Base `{s['base']}`, data `{s['data']}` (split `{s['held_out_split']}`), seed {s['seed']}. Perplexity on up "
        f"to {s['max_ppl_tokens']} tokens per domain in rows of {s['seq_len']}; QA on up to {s['max_questions']} "
        f"questions per domain, chat template, greedy, at most {s['max_new_tokens']} new tokens. Each adapter's own "
        "domain is in bold. Reproduce: `" + s.get("command", "zephyra eval adapters ...") + "`",
        "## Verdict", verdict_table(result),
        "## Held-out perplexity", matrix_table(result, "perplexity", 2),
        "## Perplexity ratio to base (1.0: unchanged)", matrix_table(result, "ratio", 3),
        "## QA token F1 (SQuAD normalisation, 0-1)", matrix_table(result, "f1"),
        "## QA exact match (0-1)", matrix_table(result, "exact_match"),
        "## QA BLEU (sacrebleu, 0-100)", matrix_table(result, "bleu", 2),
        "## QA ROUGE-L F (0-1)", matrix_table(result, "rougeL"),
        "## QA ROUGE-1 / ROUGE-2 F (0-1)", matrix_table(result, "rouge1"), "", matrix_table(result, "rouge2"),
        "Plots: `ppl_ratio.png` (perplexity ratio to base), `qa_f1.png` (QA F1). Numbers: `results.json`; every "
        "answer: `answers.json`.",
    ]
    return "\n\n".join(parts) + "\n"


def render_methods(comparison: MethodComparison) -> str:
    rows = []
    for r in comparison.rows:
        rows.append([r.method, r.domain, f"{_num(r.perplexity, 2)} ({_num(r.base_perplexity, 2)})", _num(r.ppl_ratio),
                     f"{_num(r.f1)} ({_num(r.base_f1)})", f"{r.trainable_params:,}",
                     "-" if r.train_seconds is None else f"{r.train_seconds:.0f}",
                     "-" if r.peak_rss_mb is None else f"{r.peak_rss_mb:.0f}", _size(r.bytes_on_disk)])
    s = comparison.settings
    return "\n\n".join([
        "# Adapter methods compared",
        f"Own-domain held-out perplexity (base in brackets) and QA token F1 (base in brackets) on the `test` splits "
        f"of `{s['data']}` (up to {s['max_ppl_tokens']} tokens, {s['max_questions']} questions per domain); "
        "training time and peak RSS as each adapter's manifest records them; size on disk measured from the "
        "adapter's files (manifest excluded). Reproduce: `" + s.get("command", "zephyra eval methods ...") + "`",
        markdown_table(["method", "domain", "perplexity (base)", "ratio", "QA F1 (base)", "trainable params",
                        "train s", "peak RSS MB", "size on disk"], rows),
    ]) + "\n"


# --- plots ------------------------------------------------------------------------------------------------------

def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    return buf.getvalue()


def heatmap(values: list[list[float]], rows: list[str], cols: list[str], title: str, *, ratio: bool,
            own: dict[str, str] | None = None) -> bytes:
    """Annotated heatmap; ``ratio``: colours on a log scale centred on 1 (blue better, red worse); ``own``
    (row -> domain): cells outlined as each adapter's own domain."""
    import numpy as np
    from matplotlib.colors import LogNorm, Normalize
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    a = np.asarray(values, dtype=float)
    if ratio:
        worst = float(np.nanmax(np.abs(np.log(np.clip(a, 1e-6, None)))))  # furthest from 1, either way
        spread = max(2.0, math.exp(worst))
        norm, cmap = LogNorm(vmin=1 / spread, vmax=spread), "RdBu_r"
    else:
        norm, cmap = Normalize(vmin=0.0, vmax=1.0), "viridis"  # F1 and EM: 0-1, comparable across reports
    fig = Figure(figsize=(1.2 * len(cols) + 2.5, 0.55 * len(rows) + 1.8))
    ax = fig.add_subplot()
    im = ax.imshow(a, cmap=cmap, norm=norm, aspect="auto")
    ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            ax.text(j, i, f"{a[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if abs(norm(a[i, j]) - 0.5) > 0.35 or (not ratio and norm(a[i, j]) < 0.6)
                    else "black")
    for i, r in enumerate(rows):
        if (own or {}).get(r) in cols:
            ax.add_patch(Rectangle((cols.index(own[r]) - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="tab:orange",
                                   linewidth=2))
    ax.set_xlabel("held-out domain (outlined: the adapter's own)")
    ax.set_ylabel("model")
    ax.set_title(title)
    bar = fig.colorbar(im, ax=ax)
    if ratio:  # plain numbers at round ratios, not LogNorm's 3x10^0
        from matplotlib.ticker import FixedLocator, FormatStrFormatter, NullFormatter

        ticks = [t for t in (0.25, 0.5, 1.0, 2.0, 4.0) if 1 / spread <= t <= spread]
        bar.ax.yaxis.set_major_locator(FixedLocator(ticks))
        bar.ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        bar.ax.yaxis.set_minor_formatter(NullFormatter())
    return _png(fig)


def methods_plot(comparison: MethodComparison) -> bytes:
    """Own-domain perplexity ratio and QA F1 per adapter, and size on disk, as bars."""
    from matplotlib.figure import Figure

    names = [r.name for r in comparison.rows]
    fig = Figure(figsize=(max(6.0, 0.9 * len(names) + 3), 7.5))
    axes = fig.subplots(3, 1, sharex=True)
    series = [([r.ppl_ratio for r in comparison.rows], "ppl ratio to base (own domain)", 0.5),
              ([r.f1 for r in comparison.rows], "QA F1 (own domain; -: base)", None),
              ([r.bytes_on_disk / 1024 for r in comparison.rows], "size on disk (KiB)", None)]
    for ax, (vals, label, goal) in zip(axes, series, strict=True):
        ax.bar(range(len(names)), vals, color="tab:blue")
        ax.set_ylabel(label, fontsize=8)
        if goal is not None:
            ax.axhline(goal, color="tab:red", linestyle="--", linewidth=1)
    axes[1].scatter(range(len(names)), [r.base_f1 for r in comparison.rows], marker="_", s=600, color="black")
    axes[1].set_ylim(0, 1)
    axes[-1].set_xticks(range(len(names)), names, rotation=30, ha="right")
    axes[0].set_title("adapter methods: quality and cost")
    return _png(fig)


# --- writing ----------------------------------------------------------------------------------------------------

def _json(obj) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n"


def write_report(result: MatrixResult, out_dir: str | os.PathLike) -> Path:
    """Write ``out_dir`` (replacing it whole): report.md, results.json, answers.json, ppl_ratio.png, qa_f1.png
    and manifest.json."""
    adapters = [r for r in result.rows if r != "base"]
    own = {n: a.domain for n, a in result.adapters.items()}
    with atomic_directory(out_dir) as tmp:
        (tmp / "report.md").write_text(render_matrix(result))
        (tmp / "results.json").write_text(_json(result.to_dict()))
        (tmp / "answers.json").write_text(_json(result.answers))
        ratios = result.table("ratio")[1:] if adapters else result.table("ratio")
        (tmp / "ppl_ratio.png").write_bytes(heatmap(ratios, adapters or ["base"], result.domains,
                                                    "held-out perplexity / base perplexity", ratio=True, own=own))
        (tmp / "qa_f1.png").write_bytes(heatmap(result.table("f1"), result.rows, result.domains,
                                                "QA token F1 (held out)", ratio=False, own=own))
        write_manifest(tmp, "eval-report", config=result.settings, metrics={
            "verdicts": {v.adapter: v.passed for v in result.verdicts}},
            inputs={"base": result.settings["base"], "adapters": {n: a.path for n, a in result.adapters.items()},
                    "data": result.settings["data"]})
    return Path(out_dir)


def write_method_report(comparison: MethodComparison, out_dir: str | os.PathLike) -> Path:
    """Write ``out_dir`` (replacing it whole): methods.md (the table for docs/results.md), results.json,
    methods.png and manifest.json."""
    with atomic_directory(out_dir) as tmp:
        (tmp / "methods.md").write_text(render_methods(comparison))
        (tmp / "results.json").write_text(_json(comparison.to_dict()))
        (tmp / "methods.png").write_bytes(methods_plot(comparison))
        write_manifest(tmp, "eval-methods", config=comparison.settings,
                       inputs={"base": comparison.settings["base"], "adapters": [r.path for r in comparison.rows],
                               "data": comparison.settings["data"]})
    return Path(out_dir)
