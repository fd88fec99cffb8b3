"""The plays' data as files, tables and plots: ``zephyra shakespeare data`` (and the benchmark's plot)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ...io import atomic_write_figure, atomic_write_text
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
    atomic_write_figure(fig, path, dpi=110)
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
    atomic_write_figure(fig, path, dpi=110)
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
    atomic_write_figure(fig, path, dpi=110)
    plt.close(fig)


def compare_fidelity(reports: dict[str, dict]) -> dict:
    """One row per fidelity report (``zephyra shakespeare bench`` JSON, labelled): both judges' macro-F1 of the
    generated replies beside their real-line ceilings, the style means over the characters, the probes."""
    rows = []
    for label, r in reports.items():
        per = list(r["per_character"].values())

        def mean(key, side="generated", per=per):
            return sum(row[side][key] for row in per) / max(len(per), 1)

        a, j = r["attribution_macro_f1"], r.get("judge_macro_f1") or {}
        pit = r.get("point_in_time") or {}
        rows.append({"setting": label, "steer": r.get("steer", "none"), "rag": bool(r.get("rag")),
                     "tfidf": a["generated"], "tfidf_real": a["real"], "judge": j.get("generated"),
                     "judge_real": j.get("real"), "chance": a["chance"], "distinct_1": mean("distinct_1"),
                     "distinct_1_real": mean("distinct_1", "real"), "repetition": mean("repetition"),
                     "repetition_real": mean("repetition", "real"), "words": mean("words_per_reply"),
                     "words_real": mean("words_per_reply", "real"),
                     "modern_probes": sum(row["probes_with_a_modern_word"] for row in per) / max(len(per), 1),
                     "point_in_time": pit.get("rate"), "point_in_time_real": pit.get("real_rate")})
    return {"rows": rows}


def comparison_markdown(result: dict) -> str:
    rows = result["rows"]
    if not rows:
        return "no report"
    r0 = rows[0]

    def f(v):
        return "-" if v is None else f"{v:.3f}"

    lines = [f"| setting | attribution, TF-IDF (real {r0['tfidf_real']:.3f}) | attribution, MiniLM judge (real "
             f"{f(r0['judge_real'])}) | distinct-1 (real {r0['distinct_1_real']:.2f}) | repetition (real "
             f"{r0['repetition_real']:.3f}) | words a reply (real {r0['words_real']:.1f}) | probes with a modern "
             f"word | point-in-time probes telling the future (real lines {f(r0['point_in_time_real'])}) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['setting']} | {r['tfidf']:.3f} | {f(r['judge'])} | {r['distinct_1']:.2f} | "
                     f"{r['repetition']:.3f} | {r['words']:.1f} | {r['modern_probes']:.0%} | "
                     f"{'-' if r['point_in_time'] is None else format(r['point_in_time'], '.0%')} |")
    lines.append(f"\nchance: {r0['chance']:.3f} (macro-F1 over {round(1 / r0['chance'])} characters)")
    return "\n".join(lines)


def plot_comparison(result: dict, path: str | os.PathLike) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    fig, ax = plt.subplots(figsize=(7.2, 3.6))
    xs = range(len(rows))
    ax.bar([x - 0.2 for x in xs], [r["tfidf"] for r in rows], 0.4, label="TF-IDF scorer (what bias / self-check "
           "/ RFT push on)")
    ax.bar([x + 0.2 for x in xs], [r["judge"] or 0 for r in rows], 0.4, label="MiniLM judge (independent)")
    ax.axhline(rows[0]["tfidf_real"], color="C0", ls="--", lw=1, label="real lines, TF-IDF")
    if rows[0]["judge_real"] is not None:
        ax.axhline(rows[0]["judge_real"], color="C1", ls="--", lw=1, label="real lines, MiniLM")
    ax.axhline(rows[0]["chance"], color="grey", ls=":", lw=1, label="chance")
    ax.set_xticks(list(xs), [r["setting"] for r in rows], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("speaker attribution, macro-F1")
    ax.set_title("generated replies: who does each judge think said them?")
    ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_write_figure(fig, path, dpi=110)
    plt.close(fig)
