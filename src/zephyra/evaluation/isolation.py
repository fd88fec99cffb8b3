"""Off-domain isolation against own-domain gain: adapter variants (rank, branch layers, replay) measured on every
domain's held-out text, the trade-off tabled and plotted.

    python -m zephyra.evaluation.isolation --adapter chemistry=runs/adapters/chemistry \\
        --adapter chemistry@r8=runs/isolation/chemistry-r8 ... --out runs/eval/isolation

Each ``--adapter NAME=DIR`` is one variant (NAME: ``<domain>@<variant>``, the domain before "@"). Per variant: its
own domain's perplexity ratio to the base (lower: more gain), the worst and mean ratio on the other domains, and
how many of those are within 10% of the base (the isolation goal). Writes ``isolation.md``, ``isolation.json``,
``isolation.png`` and ``manifest.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import ConfigError


def trade_off(base_dir, variants: dict[str, str], data_root, max_ppl_tokens: int = 8192) -> dict:
    from .suite import evaluate_matrix

    result = evaluate_matrix(base_dir, variants, data_root, max_ppl_tokens=max_ppl_tokens, max_questions=1,
                             max_new_tokens=1)
    rows = {}
    for name in variants:
        domain = name.split("@")[0]
        if domain not in result.domains:
            raise ConfigError(f"variant {name!r}: domain {domain!r} was not evaluated")
        others = {d: result.ratio(name, d) for d in result.domains if d != domain}
        rows[name] = {"domain": domain, "own_ratio": result.ratio(name, domain),
                      "worst_other": max(others.values(), key=lambda r: abs(r - 1)),
                      "mean_other": sum(others.values()) / len(others),
                      "within_10pct": sum(1 for r in others.values() if abs(r - 1) <= 0.10), "others": others,
                      "trained": {k: result.adapters[name].metrics.get(k) for k in ("train_seconds", "tokens")}}
    return {"variants": rows, "domains": result.domains, "settings": result.settings}


def markdown(res: dict, command: str) -> str:
    lines = ["# Off-domain isolation vs own-domain gain", "",
             "Perplexity ratio to the base on held-out text (own domain: lower is more gain; other domains: 1.0 is "
             "untouched, the goal is within 10%).", "",
             "| variant | own-domain ratio | worst other | mean other | others within 10% |",
             "|---|---:|---:|---:|---:|"]
    for name, r in res["variants"].items():
        lines.append(f"| {name} | {r['own_ratio']:.3f} | {r['worst_other']:.3f} | {r['mean_other']:.3f} | "
                     f"{r['within_10pct']}/{len(r['others'])} |")
    lines += ["", f"Command: `{command}`", ""]
    return "\n".join(lines)


def plot(res: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    domains = sorted({r["domain"] for r in res["variants"].values()})
    colours = dict(zip(domains, plt.cm.tab10.colors))
    for name, r in res["variants"].items():
        ax.scatter(r["own_ratio"], r["mean_other"], color=colours[r["domain"]], s=40)
        ax.annotate(name.split("@", 1)[1] if "@" in name else "default", (r["own_ratio"], r["mean_other"]),
                    textcoords="offset points", xytext=(4, 3), fontsize=8)
    for d in domains:
        ax.scatter([], [], color=colours[d], label=d)
    ax.axhline(1.10, ls="--", color="grey", lw=0.8)
    ax.text(ax.get_xlim()[0], 1.105, " isolation goal (others within 10%)", fontsize=7, color="grey")
    ax.set_xlabel("own-domain perplexity ratio (lower: more gain)")
    ax.set_ylabel("mean perplexity ratio on the other domains")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(
    adapter: Annotated[list[str], typer.Option(help="NAME=DIR, NAME as <domain>@<variant> (repeatable)")],
    out: Annotated[Path, typer.Option(help="report directory")] = Path("runs/eval/isolation"),
    base: Annotated[Path, typer.Option(help="base model directory")] = Path("runs/phase2/final"),
    data: Annotated[Path, typer.Option(help="data root")] = Path("runs/data"),
    max_ppl_tokens: Annotated[int, typer.Option(help="held-out tokens per domain")] = 8192,
) -> None:
    import sys

    from ..io import atomic_write_json, atomic_write_text
    from ..manifest import write_manifest

    variants = {}
    for item in adapter:
        name, sep, path = item.partition("=")
        if not sep or not Path(path).is_dir():
            raise ConfigError(f"--adapter {item!r}: expected NAME=DIR with an existing adapter directory")
        variants[name] = path
    res = trade_off(base, variants, data, max_ppl_tokens)
    command = " ".join(["python -m zephyra.evaluation.isolation", *sys.argv[1:]])
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "isolation.json", res)
    atomic_write_text(out / "isolation.md", markdown(res, command))
    plot(res, out / "isolation.png")
    write_manifest(out, "report", config={"variants": variants, "max_ppl_tokens": max_ppl_tokens}, report="isolation",
                   metrics={n: {"own": r["own_ratio"], "mean_other": r["mean_other"]} for n, r in
                            res["variants"].items()})
    typer.echo(markdown(res, command))


if __name__ == "__main__":
    from .. import clikit

    app = clikit.app("Off-domain isolation vs own-domain gain of adapter variants.")
    app.command()(main)
    app(prog_name="python -m zephyra.evaluation.isolation")

