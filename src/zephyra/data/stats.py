"""``zephyra data stats --root runs/data``: the per-source table (MB, records, drops) and PNG plots.

Reads the root manifest a build wrote (or the manifest of a ``zephyra data curate`` output); nothing is
recomputed, so it is instant.
"""

from __future__ import annotations

from pathlib import Path

from ..io import atomic_write_figure
from ..manifest import read_manifest


def source_rows(manifest: dict) -> dict[str, dict]:
    """The per-source table from a build manifest, or rebuilt from a curate manifest's stats."""
    if "sources" in manifest:
        return manifest["sources"]
    rows = {}
    for name, st in manifest.get("curation", {}).get("by_source", {}).items():
        rows[name] = {"package": "", "licence": "", "records_in": st["in"], "records_out": st["out"],
                      "mb_in": round(st["bytes_in"] / 1e6, 3), "mb_out": round(st["bytes_out"] / 1e6, 3),
                      "qa": 0, "dropped": st["dropped"]}
    return rows


def format_table(rows: dict[str, dict]) -> str:
    head = ["source", "package", "licence", "MB in", "MB out", "records in", "kept", "dropped", "Q/A",
            "drops by step"]
    lines = [head]
    total = {"mb_in": 0.0, "mb_out": 0.0, "records_in": 0, "records_out": 0, "qa": 0, "dropped": 0}
    for name, r in sorted(rows.items()):
        dropped = sum(r["dropped"].values())
        steps = ", ".join(f"{k} {v}" for k, v in sorted(r["dropped"].items(), key=lambda kv: -kv[1]) if v)
        lines.append([name, r.get("package", ""), r.get("licence", ""), f"{r['mb_in']:.2f}", f"{r['mb_out']:.2f}",
                      str(r["records_in"]), str(r["records_out"]), str(dropped), str(r.get("qa", 0)), steps or "-"])
        for k in ("mb_in", "mb_out", "records_in", "records_out", "qa"):
            total[k] += r.get(k, 0)
        total["dropped"] += dropped
    lines.append(["TOTAL", "", "", f"{total['mb_in']:.2f}", f"{total['mb_out']:.2f}", str(total["records_in"]),
                  str(total["records_out"]), str(total["dropped"]), str(total["qa"]), ""])
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    right = {3, 4, 5, 6, 7, 8}

    def fmt(row):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(lines[0]), rule, *map(fmt, lines[1:-1]), rule, fmt(lines[-1])]).rstrip()


def _save(fig, path: Path) -> Path:
    return atomic_write_figure(fig, path, dpi=110, bbox_inches="tight")


def write_plots(root: Path, manifest: dict) -> list[Path]:
    """sources_mb.png (MB in and kept per source), drops.png (drops per step per source) and, for a build,
    datasets.png (rows per split of every dataset)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = source_rows(manifest)
    names = sorted(rows)
    out = []
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(names) + 1.5))
    y = range(len(names))
    ax.barh([i + 0.2 for i in y], [rows[n]["mb_in"] for n in names], height=0.4, label="read")
    ax.barh([i - 0.2 for i in y], [rows[n]["mb_out"] for n in names], height=0.4, label="kept")
    ax.set_yticks(list(y), names)
    ax.set_xlabel("MB of text")
    ax.legend()
    ax.set_title("Text per source")
    out.append(_save(fig, root / "plots" / "sources_mb.png"))
    plt.close(fig)

    steps = sorted({s for n in names for s, v in rows[n]["dropped"].items() if v})
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(names) + 1.5))
    left = [0] * len(names)
    for step in steps:
        vals = [rows[n]["dropped"].get(step, 0) for n in names]
        ax.barh(names, vals, left=left, label=step)
        left = [a + b for a, b in zip(left, vals)]
    ax.set_xlabel("records dropped")
    ax.set_title("Drops per curation step")
    if steps:
        ax.legend(fontsize=8)
    out.append(_save(fig, root / "plots" / "drops.png"))
    plt.close(fig)

    datasets = manifest.get("datasets", {})
    if datasets:
        fig, ax = plt.subplots(figsize=(8, 0.35 * len(datasets) + 1.5))
        left = [0] * len(datasets)
        names = sorted(datasets)
        for split in ("train", "validation", "test"):
            vals = [datasets[n]["rows"].get(split, 0) for n in names]
            ax.barh(names, vals, left=left, label=split)
            left = [a + b for a, b in zip(left, vals)]
        ax.set_xscale("log")
        ax.set_xlabel("rows (log scale)")
        ax.legend(fontsize=8)
        ax.set_title("Dataset sizes")
        out.append(_save(fig, root / "plots" / "datasets.png"))
        plt.close(fig)
    return out


def stats(root: str | Path, plots: bool = True) -> tuple[str, list[Path]]:
    """(the table, the plot files). Command: ``zephyra data stats --root runs/data``."""
    root = Path(root)
    manifest = read_manifest(root)
    table = format_table(source_rows(manifest))
    return table, write_plots(root, manifest) if plots else []
