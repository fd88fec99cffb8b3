"""``zephyra tutor classroom``: many simulated learners at once through the tutor's server (classroom.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ... import clikit


def register(app) -> None:
    @app.command()
    def classroom(learners: Annotated[int, typer.Option(min=1, max=512, help="learners at once")] = 24,
                  turns: Annotated[int, typer.Option(min=1, max=20, help="tutor turns a conversation, at most")] = 5,
                  timeout: Annotated[float, typer.Option(min=1, help="the whole classroom's wall-clock limit, s")]
                  = 600.0,
                  base: Annotated[Path, typer.Option(help="the base model (no --server)")] = Path("runs/phase2/final"),
                  root: Annotated[Path, typer.Option(help="the tutor's root: held-out QA; the report goes under "
                                                          "reports/")] = Path("runs/tutor"),
                  server: Annotated[str | None, typer.Option(help="a running server's URL (default: start one "
                                                                  "here on 127.0.0.1)")] = None,
                  api_key: Annotated[str | None, typer.Option(help="the server's key")] = None,
                  plot: Annotated[Path | None, typer.Option(help="the plot")] = Path("docs/img/tutor_classroom.png"),
                  as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
        """Simulated learners of math, science and reading at once: check accuracy, engagement, success, leaks,
        latency."""
        from ...io import atomic_write_json
        from .classroom import classroom as run
        from .classroom import classroom_markdown, plot_classroom

        if server is None and not (base / "config.json").is_file():
            clikit.fail(f"--base {base}: no model there (run the quickstart, pass --base, or --server URL)")
        try:
            report = run(base=base, root=root, server=server, api_key=api_key, learners=learners, turns=turns,
                         timeout=timeout, echo=lambda s: typer.echo(s, err=True))
        except ValueError as e:
            clikit.fail(str(e))
        (root / "reports").mkdir(parents=True, exist_ok=True)
        atomic_write_json(root / "reports" / "classroom.json", report)
        md = classroom_markdown(report)
        (root / "reports" / "classroom.md").write_text(md + "\n")
        if plot is not None:
            plot_classroom(report, plot)
            plot_classroom(report, root / "reports" / "classroom.png")
        typer.echo(json.dumps(report["rows"]) if as_json else md)
