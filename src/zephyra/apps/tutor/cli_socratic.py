"""``zephyra tutor build|bench|ask``: the Socratic adapters, their benchmark (socratic.py), and the tutor at run
time (tutor.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from ... import clikit

OUT = Path("runs/tutor")
BaseOpt = Annotated[Path, typer.Option(help="the base model")]
SubjectOpt = Annotated[str, typer.Option(help="the subject: math, science or reading")]


def _err(fn):
    from ...errors import ZephyraError

    try:
        return fn()
    except ZephyraError as e:
        clikit.fail(str(e))


def register(app) -> None:
    @app.command()
    def build(subject: SubjectOpt = "math", base: BaseOpt = Path("runs/phase2/final"),
              out: Annotated[Path, typer.Option(help="where the data and adapters go")] = OUT,
              general: Annotated[Path, typer.Option(help="the base's general corpus, replayed")]
              = Path("runs/data/phase2"),
              overrides: Annotated[list[str] | None, typer.Argument(help="recipe key=value (adapters/tutor.yaml)")]
              = None) -> None:
        """The subject's tutoring dialogues and its Socratic adapter (a few minutes on 2 cores).

        Command: ``zephyra tutor build --subject science``."""
        from .socratic import train_tutor

        if not (base / "config.json").is_file():
            clikit.fail(f"--base {base}: no model there (run the quickstart, or pass --base)")
        t0 = time.perf_counter()
        r = _err(lambda: train_tutor(subject, base=base, out=out, general=general, overrides=list(overrides or []),
                                     echo=lambda s: typer.echo(s, err=True)))
        typer.echo(f"{subject}: tutor-turn perplexity (validation) {r['base_val_qa_perplexity']:.1f} (base) -> "
                   f"{r['val_qa_perplexity']:.1f}; {r['out']} ({time.perf_counter() - t0:.0f} s)")

    @app.command()
    def ask(message: Annotated[str, typer.Argument(help="the learner's message")],
            subject: Annotated[str | None, typer.Option(help="math, science or reading (default: the one that "
                                                             "fits)")] = None,
            base: BaseOpt = Path("runs/phase2/final"),
            out: Annotated[Path, typer.Option(help="the tutor's indexes and adapters")] = OUT,
            as_json: Annotated[bool, typer.Option("--json", help="one JSON object: text, subject, adapter, sources, "
                                                                 "tool_calls")] = False) -> None:
        """One tutor turn: a hint and a question, never the answer; the passages it drew on."""
        from .tutor import Tutor

        if not (base / "config.json").is_file():
            clikit.fail(f"--base {base}: no model there (run the quickstart, or pass --base)")
        tutor = _err(lambda: Tutor(base, out))
        try:
            r = _err(lambda: tutor.ask(message, subject))
        finally:
            tutor.close()
        if as_json:
            typer.echo(json.dumps(r))
            return
        typer.echo(f"[{r['subject']} · {r['adapter']}] {r['text']}")
        for i, s in enumerate(r["sources"], 1):
            typer.echo(f"  [{i}] {s['text'][:160]}")

    @app.command()
    def bench(subject: SubjectOpt = "math", base: BaseOpt = Path("runs/phase2/final"),
              out: Annotated[Path, typer.Option(help="where build wrote the adapters; the report goes here")] = OUT,
              problems: Annotated[int, typer.Option(min=1, help="held-out problems (or passage items)")] = 300,
              turns: Annotated[int, typer.Option(min=1, help="tutor turns a conversation, at most")] = 5,
              as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
        """Conversations with simulated learners on held-out items: leak rate, questions, learner success.

        Command: ``zephyra tutor bench --subject reading``."""
        from ...io import atomic_write_json
        from ...resolve.system import load_system
        from .socratic import bench_markdown, tutor_bench

        from .subjects import check_subject

        _err(lambda: check_subject(subject))
        adapter = out / "adapters" / subject
        if not (adapter / "adapter_config.json").is_file():
            clikit.fail(f"no {subject} tutor adapter under {out / 'adapters'}; train it: zephyra tutor build "
                        f"--subject {subject}")
        system = _err(lambda: load_system(base, None, None, adapter_dirs={subject: adapter}))
        try:
            report = _err(lambda: tutor_bench(system, subject, adapter=subject, n=problems, turns=turns, root=out,
                                              echo=lambda s: typer.echo(s, err=True)))
        finally:
            system.close()
        (out / "reports").mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "reports" / f"socratic-{subject}.json", report)
        typer.echo(json.dumps(report["rows"]) if as_json else bench_markdown(report))
