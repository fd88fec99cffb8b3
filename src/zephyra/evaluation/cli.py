"""``zephyra eval adapters|methods``: the evaluation suite's command line (registered by zephyra.cli).

    zephyra eval adapters --base runs/phase2/final --adapters runs/adapters --data runs/data --out runs/eval
    zephyra eval methods --base runs/phase2/final --adapters runs/methods/lora --adapters runs/methods/ia3 \
        --data runs/data --out runs/eval-methods

Bad input (no base, no adapters, an unknown domain, an adapter trained on another base) is one line on stderr
and exit status 2 (zephyra.clikit). Heavy imports happen inside the commands, so ``zephyra --help`` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from .. import clikit

app = clikit.app("The evaluation suite: isolation matrix of adapters x domains, and adapter methods compared.")

Base = Annotated[Path, typer.Option(help="base model directory (model + tokenizer)")]
Data = Annotated[Path, typer.Option(help="data root holding domains/<domain>/{raw,qa}")]
MaxTokens = Annotated[int, typer.Option(help="held-out tokens per domain for perplexity")]
MaxQuestions = Annotated[int, typer.Option(help="QA test questions per domain")]
MaxNew = Annotated[int, typer.Option(help="greedy answer length cap, tokens")]
Batch = Annotated[int, typer.Option(help="perplexity rows per forward pass (and prompts per PEFT generate call)")]
GenBatch = Annotated[int, typer.Option(help="(question, adapter) rows per shared LoRA decoding batch")]


def _quiet() -> None:
    """No weight-loading bars from transformers: our own progress lines are the only ones."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def _command() -> str:
    return " ".join(["zephyra", *sys.argv[1:]])


@app.command()
def adapters(
    base: Base = Path("runs/phase2/final"),
    adapters: Annotated[Path, typer.Option(help="directory of adapters (every subdirectory with "
                                                "adapter_config.json)")] = Path("runs/adapters"),
    data: Data = Path("runs/data"),
    out: Annotated[Path, typer.Option(help="report directory (replaced whole)")] = Path("runs/eval"),
    domains: Annotated[list[str] | None, typer.Option("--domains", help="domains to evaluate (repeatable; "
                                                      "default: every domain under DATA/domains)")] = None,
    max_ppl_tokens: MaxTokens = 32768,
    max_questions: MaxQuestions = 100,
    max_new_tokens: MaxNew = 48,
    batch_size: Batch = 16,
    gen_batch_size: GenBatch = 64,
) -> None:
    """The isolation matrix: base and every adapter on every domain's held-out data, the verdict, a report.

    zephyra eval adapters --base runs/phase2/final --adapters runs/adapters --data runs/data --out runs/eval
    """
    from .report import write_report
    from .suite import evaluate_matrix, find_adapters

    _quiet()
    found = find_adapters(adapters)
    typer.echo(f"evaluating base + {len(found)} adapters ({', '.join(found)})", err=True)
    result = evaluate_matrix(base, found, data, _split(domains), max_ppl_tokens=max_ppl_tokens,
                             max_questions=max_questions, max_new_tokens=max_new_tokens, batch_size=batch_size,
                             gen_batch_size=gen_batch_size)
    result.settings["command"] = _command()
    write_report(result, out)
    for v in result.verdicts:
        typer.echo(f"{v.adapter}: own ppl ratio {_fmt(v.own_ppl_ratio)}, own F1 {_fmt(v.own_f1)} vs base "
                   f"{_fmt(v.base_f1)}, worst other ratio {_fmt(v.worst_other and v.worst_other[1])} -> "
                   f"{'n/a (own domain not evaluated)' if v.passed is None else 'pass' if v.passed else 'fail'}")
    typer.echo(f"report written to {out / 'report.md'}")


@app.command()
def methods(
    base: Base = Path("runs/phase2/final"),
    adapters: Annotated[list[Path] | None, typer.Option(help="an adapter directory (repeatable), or a directory "
                                                             "of them")] = None,
    data: Data = Path("runs/data"),
    out: Annotated[Path, typer.Option(help="report directory (replaced whole)")] = Path("runs/eval-methods"),
    max_ppl_tokens: MaxTokens = 32768,
    max_questions: MaxQuestions = 100,
    max_new_tokens: MaxNew = 48,
    batch_size: Batch = 16,
    gen_batch_size: GenBatch = 64,
) -> None:
    """Adapter methods compared on their own domain: perplexity, QA F1, parameters, time, memory, size.

    zephyra eval methods --base runs/phase2/final --adapters runs/methods/lora --adapters runs/methods/ia3
    """
    from .report import write_method_report
    from .suite import compare_methods, find_adapters

    _quiet()
    dirs = [d for a in adapters or [] for d in find_adapters(a).values()]
    if not dirs:
        clikit.fail("no adapters given: pass --adapters DIR (repeatable)")
    comparison = compare_methods(base, dirs, data, max_ppl_tokens=max_ppl_tokens, max_questions=max_questions,
                                 max_new_tokens=max_new_tokens, batch_size=batch_size,
                             gen_batch_size=gen_batch_size)
    comparison.settings["command"] = _command()
    write_method_report(comparison, out)
    for r in comparison.rows:
        typer.echo(f"{r.name}: ppl ratio {r.ppl_ratio:.3f}, F1 {r.f1:.3f} (base {r.base_f1:.3f}), "
                   f"{r.trainable_params:,} params, {r.bytes_on_disk:,} bytes")
    typer.echo(f"table written to {out / 'methods.md'}")


def _split(domains: list[str] | None) -> list[str] | None:
    """--domains a --domains b, or --domains a,b."""
    if not domains:
        return None
    return [d.strip() for item in domains for d in item.split(",") if d.strip()]


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _register_system() -> None:
    from .system import system_command

    app.command("system", help="Routed system vs oracle routing vs base vs one merged adapter, on every domain's "
                "held-out questions: token F1, exact match, ROUGE-L and routing accuracy.")(system_command)


_register_system()


@app.command("retrieval")
def retrieval_cmd(
    index: Annotated[Path, typer.Option(help="ROOT of the knowledge indexes (zephyra index build --out)")] = Path(
        "runs/index"),
    data: Data = Path("runs/data"),
    out: Annotated[Path, typer.Option(help="report directory")] = Path("runs/eval/retrieval"),
    max_questions: Annotated[int, typer.Option(help="held-out questions per domain (0: all)")] = 200,
    domains: Annotated[list[str] | None, typer.Option(help="domains (repeatable or comma-separated); default all")
                       ] = None,
) -> None:
    """Recall@1/3/10 and MRR of dense, sparse and hybrid retrieval on held-out questions whose source entry is
    known, with latency; writes retrieval.md, retrieval.json and recall.png.

    zephyra eval retrieval --index runs/index --data runs/data --out runs/eval/retrieval
    """
    from .retrieval import evaluate_retrieval, markdown, write_report

    result = evaluate_retrieval(index, data, _split(domains), max_questions)
    write_report(result, out)
    typer.echo(markdown(result))
    typer.echo(f"report written to {out}")


@app.command("gate")
def gate_cmd(
    ref: Annotated[str, typer.Argument(help="NAME@VERSION: the candidate, pushed to the registry")],
    percent: Annotated[float, typer.Option(help="the canary's share of traffic when the gate passes")] = 20.0,
    margin: Annotated[float, typer.Option(help="held-out perplexity may be worse than stable's by this share")] = 0.05,
    registry: Annotated[Path, typer.Option(help="registry directory")] = Path("runs/registry"),
    base: Base = Path("runs/phase2/final"),
    data: Data = Path("runs/data"),
    max_ppl_tokens: MaxTokens = 8192,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object on stdout")] = False,
) -> None:
    """Score a candidate version on its domain's held-out text against stable; on a pass make it the canary.

    zephyra eval gate python@3f2a9c1b7d4e --percent 20 --margin 0.05
    """
    import json

    from ..registry import Registry
    from .gate import gate_and_canary

    name, _, version = ref.partition("@")
    if not version:
        clikit.fail("gate needs NAME@VERSION")
    _quiet()
    result = gate_and_canary(Registry(registry), name, version, percent, base, data, margin=margin,
                             max_ppl_tokens=max_ppl_tokens)
    typer.echo(json.dumps(result.to_dict()) if as_json else result.line())
    if not result.passed:
        raise typer.Exit(1)


@app.command()
def harness(
    base: Base = Path("runs/phase2/final"),
    adapters: Annotated[Path | None, typer.Option(help="directory of domain adapters (one subdirectory each); "
                                                  "each is scored on its own domain's questions")] = None,
    data: Data = Path("runs/data"),
    out: Annotated[Path, typer.Option(help="report directory (harness.json, harness.md, tasks/, export/)")]
    = Path("runs/eval/harness"),
    limit: Annotated[int, typer.Option(min=1, help="documents / questions per task")] = 50,
) -> None:
    """lm-evaluation-harness (HF backend) on the Qwen3 export, beside our own evaluator, on local task files made
    from the held-out sets: general perplexity, phase-1 skills and each domain's questions as multiple choice.

    zephyra eval harness --base runs/phase2/final --adapters runs/adapters --data runs/data --out runs/eval/harness
    """
    from ..errors import ZephyraError
    from .harness import run_harness

    _quiet()
    for what, path in (("--base", base), ("--data", data)):
        if not path.is_dir():
            clikit.fail(f"{what} {path}: no such directory")
    found = {}
    if adapters is not None:
        if not adapters.is_dir():
            clikit.fail(f"--adapters {adapters}: no such directory")
        found = {p.name: p for p in sorted(adapters.iterdir()) if (p / "adapter_config.json").is_file()}
        if not found:
            clikit.fail(f"--adapters {adapters}: no adapter (no */adapter_config.json)")
    try:
        report = run_harness(base, found, data, out, limit=limit, progress=lambda s: typer.echo(s, err=True))
    except (ZephyraError, FileNotFoundError) as e:
        clikit.fail(str(e))
    typer.echo((out / "harness.md").read_text())
    typer.echo(f"largest difference between lm-eval and ours: {report['max_abs_diff']:.2e}")
