"""``zephyra paper``: the verb (registered in zephyra.cli's VERBS). Imports typer only; the build loads inside."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .. import clikit


def paper(
    out: Annotated[Path, typer.Option(help="directory for paper.tex, its tables and figures, and paper.pdf")],
    results: Annotated[Path | None, typer.Option(help="a directory zephyra bench all wrote")] = None,
    runs: Annotated[Path, typer.Option(help="the runs/ tree of the quickstart, evaluations and applications")
                    ] = Path("runs"),
    no_pdf: Annotated[bool, typer.Option("--no-pdf", help="write the LaTeX sources only")] = False,
) -> None:
    """The IEEE-format paper (IEEEtran), every number from the results JSON, built offline with latexmk.

    zephyra paper --out runs/paper --results runs/bench/all
    """
    from .build import build_paper, write_sources

    if results is not None and not (results.is_dir() and any(results.glob("*.json"))):
        clikit.fail(f"--results {results}: not a directory zephyra bench all wrote (no *.json in it)")
    if not runs.is_dir():
        clikit.fail(f"--runs {runs}: no such directory")
    if no_pdf:
        res = write_sources(out, results, runs)
        typer.echo(f"sources written to {out} ({len(res.missing)} sources missing: {out / 'missing.json'})")
        return
    pdf = build_paper(out, results, runs)
    typer.echo(f"paper written to {pdf} (missing sources, if any: {out / 'missing.json'})")
