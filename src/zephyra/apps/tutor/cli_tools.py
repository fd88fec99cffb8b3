"""``zephyra tutor``'s verbs for the tools part (added to the tutor's app by ``register``): ``tools-train``,
``tools-calibrate``, ``tools-parser``, ``tools-bench`` and ``tools-call`` (docs/tutor.md, "Tools and function calling")."""

from __future__ import annotations

import json
from typing import Annotated

import typer

BASE = "runs/phase2/final"
ADAPTER = "runs/tutor/adapters/tools"
BaseOpt = Annotated[str, typer.Option("--base", help="the base model directory")]
AdapterOpt = Annotated[str, typer.Option("--adapter", help="the tool-calling adapter ('' for the base alone)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="one JSON object on stdout")]


def tools_train(base: BaseOpt = BASE, out: Annotated[str, typer.Option("--out")] = ADAPTER,
                steps: Annotated[int, typer.Option(min=1, help="optimizer steps")] = 400,
                force: Annotated[bool, typer.Option(help="retrain over a finished adapter")] = False,
                overrides: Annotated[list[str] | None, typer.Argument(help="key=value recipe overrides")] = None
                ) -> None:
    """Generate the tool-calling conversations and train the LoRA adapter on them (a few minutes on 2 cores)."""
    from .tools import train_tools_adapter

    result = train_tools_adapter(base, out, max_steps=steps, overrides=overrides or [], force=force)
    keys = ("domain", "out", "metrics", "skipped", "calibration", "parser")
    typer.echo(json.dumps({k: result.get(k) for k in keys}, default=str))


def tools_calibrate(base: BaseOpt = BASE, adapter: AdapterOpt = ADAPTER,
                    n: Annotated[int, typer.Option(min=10, help="validation prompts")] = 120) -> None:
    """Fit the call threshold on the validation prompts (never the benchmark's) and store it beside the adapter
    (tools-train does this after training; this is for an adapter trained before)."""
    from .tools import calibrate_tools, load_tools_model

    model, tokenizer = load_tools_model(base, adapter or None)
    typer.echo(json.dumps(calibrate_tools(model, tokenizer, adapter or None, n=n)))


def tools_parser(adapter: Annotated[str, typer.Option("--adapter", help="the tools adapter to store it in")] = ADAPTER,
                 steps: Annotated[int, typer.Option(min=1, help="optimizer steps")] = 500,
                 layers: Annotated[int, typer.Option(min=0, max=6, help="encoder layers fine-tuned (top)")] = 6
                 ) -> None:
    """(Re)train the tool parser alone (tools-train trains it with the adapter): the shipped MiniLM encoder
    fine-tuned to decide call / no call and to point at the values; stored in the adapter as parser/."""
    from pathlib import Path

    from ...errors import RequestError
    from .tools import train_tools_parser

    if not (Path(adapter) / "adapter_config.json").is_file():
        raise RequestError(f"{adapter}: no tool-calling adapter; train it with zephyra tutor tools-train")
    typer.echo(json.dumps(train_tools_parser(adapter, steps=steps, layers=layers,
                                             echo=lambda m: typer.echo(m, err=True))))


def tools_bench(base: BaseOpt = BASE, adapter: AdapterOpt = ADAPTER,
                n: Annotated[int, typer.Option(min=5, help="held-out prompts")] = 60,
                split: Annotated[str, typer.Option(help="test: the generator's held-out split; probes: the "
                                                        "hand-written prompts (all of them)")] = "test",
                no_parser: Annotated[bool, typer.Option("--no-parser", help="decide with the adapter alone, "
                                                        "as before the parser")] = False,
                failures: Annotated[bool, typer.Option("--failures", help="print each failing case: wanted, got")]
                = False,
                as_json: JsonOpt = False) -> None:
    """The BFCL-style held-out benchmark: correct tool and arguments, no call when no tool fits."""
    from .tools import load_tools_model
    from .tools import tools_bench as bench

    from ...errors import RequestError

    if split not in ("test", "probes"):
        raise RequestError(f"--split must be test or probes, got {split!r}")
    model, tokenizer = load_tools_model(base, adapter or None)
    if no_parser:
        model.tool_parser = None
    report = bench(model, tokenizer, n=n, split=split)
    if as_json:
        typer.echo(json.dumps(report))
        return
    pct = lambda x: "-" if x is None else f"{100 * x:.1f}%"  # noqa: E731
    typer.echo(f"split {split}; decided by the {report['decider']}" +
               (f" (call threshold p(marker) >= {report['threshold']:.3g})" if report["decider"] == "adapter" else ""))
    typer.echo(f"{'metric':<24} {'value':>8}  n")
    typer.echo(f"{'call (structure match)':<24} {pct(report['call_accuracy']):>8}  {report['n_call']}")
    typer.echo(f"{'no call when none fits':<24} {pct(report['no_call_accuracy']):>8}  {report['n_no_call']}")
    for name, acc in report["by_tool"].items():
        typer.echo(f"{'  ' + name:<24} {pct(acc):>8}  {report['n_by_tool'][name]}")
    if failures:
        for f in report["failures"]:
            typer.echo(f"FAIL {f['prompt']!r}\n  want {json.dumps(f['want'])}\n  got  {json.dumps(f['got'])}")


def tools_call(prompt: Annotated[str, typer.Argument(help="the learner's message")],
               base: BaseOpt = BASE, adapter: AdapterOpt = ADAPTER,
               rounds: Annotated[int, typer.Option(min=0, max=8, help="tool calls at most")] = 3,
               as_json: JsonOpt = False) -> None:
    """Answer one message with the tools: the model calls, the tool runs, its result goes back, the model answers."""
    from .tools import Toolbox, load_tools_model, run_with_tools

    model, tokenizer = load_tools_model(base, adapter or None)
    run = run_with_tools(model, tokenizer, prompt, Toolbox.default(), max_rounds=rounds)
    if as_json:
        typer.echo(json.dumps({"text": run.text, "tool_calls": run.tool_calls, "rounds": run.rounds}))
        return
    for c in run.tool_calls:
        typer.echo(f"-> {c['name']}({json.dumps(c['arguments'])}) = {c['result']}", err=True)
    typer.echo(run.text)


def register(app) -> None:
    """Add this part's verbs to the tutor's Typer app."""
    app.command("tools-train")(tools_train)
    app.command("tools-calibrate")(tools_calibrate)
    app.command("tools-parser")(tools_parser)
    app.command("tools-bench")(tools_bench)
    app.command("tools-call")(tools_call)
