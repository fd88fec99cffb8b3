"""The zephyra command line: one verb per module. ``zephyra --help`` lists them; every verb has ``--help``.

Heavy imports (torch, transformers) happen inside the verbs, so ``zephyra --help`` stays fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from .data.cli import app as data_app
from .evaluation.cli import app as eval_app
from .resolve import cli as resolve_cli
from .router.cli import app as router_app
from .training.cli import app as train_app

app = typer.Typer(help="Zephyra Resolve: one base model, many domain adapters, and a router between them.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
tokenizer_app = typer.Typer(help="Train and inspect tokenizers.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks: throughput, latency and memory against baselines in the same run.",
                        no_args_is_help=True)
app.add_typer(tokenizer_app, name="tokenizer")
app.add_typer(bench_app, name="bench")
app.add_typer(data_app, name="data")
app.add_typer(train_app, name="train")
app.add_typer(router_app, name="router")
app.add_typer(eval_app, name="eval")
app.command("route")(resolve_cli.route)
app.command("chat")(resolve_cli.chat)


def fail(message: str) -> None:
    """One clear line on stderr and exit 2: how every verb reports bad input."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


@app.command()
def quickstart(
    force: Annotated[str | None, typer.Option(help="redo this stage and every stage after it")] = None,
    records_per_source: Annotated[int, typer.Option(help="data build size per source (0: everything)")] = 3000,
    set_: Annotated[list[str] | None, typer.Option("--set", help="STAGE.KEY=VALUE recipe override, e.g. "
                                                   "phase1.max_steps=50 (repeatable)")] = None,
) -> None:
    """The main job: data -> base phase 1 -> phase 2 -> answers, under ./runs; finished stages are skipped.

    zephyra quickstart
    """
    from .pipeline import QuickstartConfig, run_quickstart

    overrides: dict[str, list[str]] = {}
    for item in set_ or []:
        stage, sep, kv = item.partition(".")
        if not sep or "=" not in kv:
            fail(f"--set {item!r}: expected STAGE.KEY=VALUE, e.g. phase1.max_steps=50")
        overrides.setdefault(stage, []).append(kv)
    try:
        run_quickstart(QuickstartConfig(data_records_per_source=records_per_source, overrides=overrides), force=force)
    except (ValueError, FileNotFoundError) as e:
        fail(str(e))


@app.command()
def presets() -> None:
    """List the Zephyra size presets with their parameter counts.

    zephyra presets
    """
    from rich.console import Console
    from rich.table import Table

    from .model import PRESETS, ZephyraForCausalLM, non_embedding_params, preset_config

    table = Table("preset", "layers (trunk+branch)", "width", "heads (kv)", "mlp", "context", "non-emb params")
    for name, p in PRESETS.items():
        cfg = preset_config(name, vocab_size=256)
        n = non_embedding_params(ZephyraForCausalLM(cfg))
        table.add_row(name, f"{cfg.num_trunk_layers}+{cfg.num_hidden_layers - cfg.num_trunk_layers}",
                      str(cfg.hidden_size), f"{cfg.num_attention_heads} ({cfg.num_key_value_heads})",
                      str(cfg.intermediate_size), str(cfg.max_position_embeddings), f"{n / 1e6:.2f}M")
    Console().print(table)


@tokenizer_app.command("train")
def tokenizer_train(
    text: Annotated[list[Path], typer.Option("--text", help="UTF-8 text file(s) to learn from (repeatable)")],
    out: Annotated[Path, typer.Option(help="directory to write the tokenizer to")] = Path("runs/tokenizer"),
    vocab_size: Annotated[int, typer.Option(help="vocabulary size, special tokens included")] = 4096,
) -> None:
    """Train a byte-level BPE tokenizer with a chat template on text files.

    zephyra tokenizer train --text a.txt --text b.txt --vocab-size 4096 --out runs/tokenizer
    """
    from .io import sha256_file
    from .tokenizer import train_tokenizer

    for p in text:
        if not p.is_file():
            fail(f"{p}: no such file")

    def lines():
        for p in text:
            try:
                yield from p.read_text(encoding="utf-8").splitlines()
            except UnicodeDecodeError as e:
                fail(f"{p}: not UTF-8 text (byte {e.start})")

    try:
        tok = train_tokenizer(lines(), out, vocab_size=vocab_size, sources={str(p): sha256_file(p) for p in text})
    except ValueError as e:
        fail(str(e))
    typer.echo(f"tokenizer with {len(tok)} tokens written to {out}")


@app.command()
def generate(
    prompt: Annotated[str, typer.Argument(help="the prompt")],
    adapter: resolve_cli.AdapterOpt = "auto",
    mode: resolve_cli.ModeOpt = "top1",
    base: resolve_cli.BaseOpt = None,
    adapters: resolve_cli.AdaptersOpt = None,
    router: resolve_cli.RouterOpt = None,
    model: Annotated[Path | None, typer.Option(help="a plain model directory (with its tokenizer) instead of a "
                                               "system: no adapters, no router")] = None,
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 48,
    fmt: Annotated[str, typer.Option("--format", help="chat: wrap in the chat template; raw: continue the text")] = "chat",
    sample: Annotated[bool, typer.Option(help="sample instead of greedy decoding")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Answer a prompt: routed to an adapter (auto), with the base, or with a named adapter.

    zephyra generate "What does zip() do?" --adapter auto --json
    zephyra generate "Who is Polonius?" --adapter shakespeare
    zephyra generate "Who is Polonius?" --model runs/phase2/final     # a plain model
    """
    if not prompt.strip():
        fail("the prompt is empty")
    if fmt not in ("chat", "raw"):
        fail(f"unknown prompt format {fmt!r}: use 'chat' or 'raw'")
    if model is not None:
        if any(x is not None for x in (base, adapters, router)):
            fail("--model is a plain model directory; for a system give --base/--adapters/--router instead")
        system = resolve_cli.open_system(model, None, None, fmt=fmt, defaults=False)
        adapter = "base" if adapter == "auto" else adapter  # a plain model has no router
    else:
        system = resolve_cli.open_system(base, adapters, router, fmt=fmt)
        adapter = resolve_cli.usable_adapter(system, adapter, mode)
    try:
        with resolve_cli.warnings_to_stderr():
            out = system.resolve([prompt], adapter=adapter, mode=mode, max_new_tokens=max_new_tokens,
                                 do_sample=sample)[0]
            prompt_tokens = system.prompt_tokens(prompt, max_new_tokens)
    except resolve_cli.ERRORS as e:
        fail(resolve_cli.first_line(e))
    if as_json:
        typer.echo(json.dumps({"adapter": out.adapter, "confidence": out.confidence, "scores": out.scores,
                               "text": out.text, "prompt_tokens": prompt_tokens, "new_tokens": out.new_tokens,
                               "truncated": out.truncated}))
    else:
        typer.echo(resolve_cli.answer_label(out), err=True)  # stdout stays the answer alone, for pipes
        typer.echo(out.text)


@bench_app.command("adapters", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench_adapters(ctx: typer.Context) -> None:
    """Multi-adapter decoding: mixed-adapter batches and unmerged adapters against the base, ours and PEFT's, in
    one run (options as ``python -m zephyra.bench.adapters --help``).

    zephyra bench adapters --preset small --batch 8 --new-tokens 64 --rounds 15 --threads 1
    """
    from .bench.adapters import main as bench_main

    bench_main(list(ctx.args))


@bench_app.command("model")
def bench_model(
    preset: str = "small",
    batch: int = 8,
    seq: int = 256,
    steps: int = 8,
    rounds: int = 3,
    threads: Annotated[int, typer.Option(help="torch threads, the same for every arch")] = 2,
    dtypes: Annotated[str, typer.Option(help="comma-separated: fp32,bf16")] = "fp32,bf16",
    archs: Annotated[str, typer.Option(help="comma-separated, llama required: zephyra,llama,gpt2")] = "zephyra,llama",
    allocator: Annotated[str, typer.Option(help="system or tcmalloc (same for every arch)")] = "system",
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile every arch alike")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Training-step tokens/s and peak memory of Zephyra vs HF Llama of equal size, with ratios.

    zephyra bench model --preset small --batch 8 --seq 256 --dtypes fp32,bf16
    """
    from .bench.model import ModelBenchConfig, machine, markdown, run

    try:
        cfg = ModelBenchConfig(preset=preset, batch=batch, seq=seq, steps=steps, rounds=rounds, threads=threads,
                               dtypes=dtypes.split(","), archs=archs.split(","), allocator=allocator, compile=compile)
        rows = run(cfg, progress=lambda s: typer.echo(s, err=True))
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        fail(str(e))
    if as_json:
        typer.echo(json.dumps({"machine": machine(), "config": cfg.__dict__, "rows": rows}))
    else:
        typer.echo(f"machine: {machine()}")
        typer.echo(markdown(rows, cfg))


def main() -> None:
    """Entry point of the ``zephyra`` console script and ``python -m zephyra``."""
    app(prog_name="zephyra")


if __name__ == "__main__":
    sys.exit(main())
