"""The plays' data as files, tables and plots: ``zephyra shakespeare data`` (and the benchmark's plot)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ...io import atomic_write_text
from .plays import load_play, play_checks, speaker_table, turn_matrix


def data_report(plays: list[str], out: str | os.PathLike, top: int = 12) -> dict:
    """For each play: ``<out>/<play>.speeches.jsonl`` (every speech), the checks, the speakers' table, and plots
    (``speakers.png``: speeches and words per character; ``<play>.turns.png``: who speaks after whom)."""
    from ...errors import DataError

    if not plays:
        raise DataError("no play given")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result, md = {"plays": {}}, []
    tables = {}
    for name in plays:
        scenes = load_play(name)
        rows = [s.to_dict() for sc in scenes for s in sc.speeches]
        atomic_write_text(out / f"{name}.speeches.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
        checks, table = play_checks(scenes), speaker_table(scenes)
        tables[name] = table
        names = [r["speaker"] for r in table[:8]]
        result["plays"][name] = {"title": scenes[0].title if scenes else name, "checks": checks,
                                 "speakers": table, "turns": {"names": names, "counts": turn_matrix(scenes, names)}}
        md += [f"## {result['plays'][name]['title']}", "",
               ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in checks.items()), "",
               "| speaker | speeches | words | scenes |", "|---|---:|---:|---:|"]
        md += [f"| {r['speaker']} | {r['speeches']} | {r['words']:,} | {r['scenes']} |" for r in table[:top]]
        md.append("")
        _plot_turns(result["plays"][name]["turns"], out / f"{name}.turns.png", result["plays"][name]["title"])
    _plot_speakers(tables, out / "speakers.png", top)
    result["markdown"] = "\n".join(md) + f"\nfiles: {out}\n"
    return result


def _plot_speakers(tables: dict, path: Path, top: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tables), figsize=(5.5 * len(tables), 4.2), squeeze=False)
    for ax, (play, table) in zip(axes[0], tables.items()):
        rows = table[:top][::-1]
        ax.barh([r["speaker"] for r in rows], [r["words"] for r in rows], color="#4c72b0")
        for i, r in enumerate(rows):
            ax.text(r["words"], i, f" {r['speeches']} speeches", va="center", fontsize=7)
        ax.set_title(f"{play}: words per speaker")
        ax.set_xlabel("words")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_turns(turns: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, counts = turns["names"], turns["counts"]
    fig, ax = plt.subplots(figsize=(5.6, 4.8))
    im = ax.imshow(counts, cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    for i, row in enumerate(counts):
        for j, v in enumerate(row):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=7, color="white" if v > max(map(max, counts)) / 2
                    else "black")
    ax.set_xlabel("speaks next")
    ax.set_ylabel("speaker")
    ax.set_title(f"{title}: who speaks after whom")
    fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_matrix(result: dict, path: str | os.PathLike) -> None:
    """The benchmark's perplexity matrix as a heat map (log colour scale)."""
    import math

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .characters import display

    rows, cols, vals = result["rows"], result["columns"], result["perplexity"]
    fig, ax = plt.subplots(figsize=(1.0 * len(cols) + 2.5, 0.55 * len(rows) + 2))
    im = ax.imshow([[math.log(v) for v in r] for r in vals], cmap="viridis_r")
    ax.set_xticks(range(len(cols)), [display(c) for c in cols], rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), [r if r in ("base", "shared") else display(r) for r in rows], fontsize=8)
    for i, r in enumerate(vals):
        for j, v in enumerate(r):
            ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=7, color="white")
    ax.set_xlabel("test replies of")
    ax.set_ylabel("adapter")
    ax.set_title("held-out reply perplexity (log colour)")
    fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
