"""The zephyra command line: one verb table (``VERBS`` and ``GROUPS`` below map every verb to the function or
sub-app that runs it). ``zephyra --help`` lists them; every verb has ``--help``.

Nothing heavy is imported to build the table (each verb's module imports only typer; torch, transformers and
PEFT load inside the verbs), so help and argument errors come back at once. Errors follow one policy
(zephyra.clikit): ``error: <one line>`` on stderr and exit 2 for bad input; a traceback only for a bug.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from . import clikit
from .apps.shakespeare.cli import app as shakespeare_app
from .apps.shakespeare.cli import converse_app
from .apps.shakespeare.viewer import serve_characters
from .apps.tutor.backend import serve_tutor
from .apps.tutor.cli import app as tutor_app
from .apps.tutor.cli_mcp import mcp as mcp_verb
from .data.cli import app as data_app
from .data.index_cli import app as index_app
from .evaluation.cli import app as eval_app
from .export.cli import export as export_verb
from .registry.cli import app as registry_app
from .resolve import cli as resolve_cli
from .router.cli import app as router_app
from .serve.cli import serve as serve_verb
from .serve.monitor import monitor as monitor_verb
from .training.cli import app as train_app

app = clikit.app("Zephyra Resolve: one base model, many domain adapters, and a router between them.")
tokenizer_app = clikit.app("Train and inspect tokenizers.")
bench_app = clikit.app("Benchmarks: throughput, latency and memory against baselines in the same run.")


@app.command()
def quickstart(
    force: Annotated[str | None, typer.Option(help="redo this stage and every stage after it")] = None,
    records_per_source: Annotated[int, typer.Option(help="data build size per source (0: everything)")] = 3000,
    set_: Annotated[list[str] | None, typer.Option("--set", help="STAGE.KEY=VALUE recipe override, e.g. "
                                                   "phase1.max_steps=50 (repeatable)")] = None,
) -> None:
    """The main job: data -> base phase 1 -> phase 2 -> adapters -> router -> answers, under ./runs; finished
    stages are skipped.

    zephyra quickstart
    """
    from .pipeline import QuickstartConfig, run_quickstart

    overrides: dict[str, list[str]] = {}
    for item in set_ or []:
        stage, sep, kv = item.partition(".")
        if not sep or "=" not in kv:
            clikit.fail(f"--set {item!r}: expected STAGE.KEY=VALUE, e.g. phase1.max_steps=50")
        overrides.setdefault(stage, []).append(kv)
    run_quickstart(QuickstartConfig(data_records_per_source=records_per_source, overrides=overrides), force=force)


def presets() -> None:
    """List the Zephyra size presets with their parameter counts.

    zephyra presets
    """
    from rich.console import Console
    from rich.table import Table

    from .model import PRESETS, ZephyraForCausalLM, non_embedding_params, preset_config

    table = Table("preset", "layers (trunk+branch)", "width", "heads (kv)", "mlp", "context", "non-emb params")
    for name in PRESETS:
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
            clikit.fail(f"{p}: no such file")

    def lines():
        for p in text:
            try:
                yield from p.read_text(encoding="utf-8").splitlines()
            except UnicodeDecodeError as e:
                clikit.fail(f"{p}: not UTF-8 text (byte {e.start})")

    tok = train_tokenizer(lines(), out, vocab_size=vocab_size, sources={str(p): sha256_file(p) for p in text})
    typer.echo(f"tokenizer with {len(tok)} tokens written to {out}")


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

    cfg = ModelBenchConfig(preset=preset, batch=batch, seq=seq, steps=steps, rounds=rounds, threads=threads,
                           dtypes=dtypes.split(","), archs=archs.split(","), allocator=allocator, compile=compile)
    rows = run(cfg, progress=lambda s: typer.echo(s, err=True))
    if as_json:
        typer.echo(json.dumps({"machine": machine(), "config": cfg.__dict__, "rows": rows}))
    else:
        typer.echo(f"machine: {machine()}")
        typer.echo(markdown(rows, cfg))


# --------------------------------------------------------------------------------------------------------------
# the verb table
# --------------------------------------------------------------------------------------------------------------

VERBS = {  # zephyra VERB: the function that runs it (quickstart, tokenizer and bench are defined above)
    "presets": presets,
    "route": resolve_cli.route,
    "generate": resolve_cli.generate,
    "chat": resolve_cli.chat,
    "serve": serve_verb,
    "export": export_verb,
    "monitor": monitor_verb,
    "mcp": mcp_verb,
}
GROUPS = {  # zephyra GROUP VERB: the sub-app that holds the verbs
    "data": data_app,
    "index": index_app,
    "train": train_app,
    "router": router_app,
    "eval": eval_app,
    "tokenizer": tokenizer_app,
    "bench": bench_app,
    "registry": registry_app,
    "shakespeare": shakespeare_app,
    "converse": converse_app,
    "tutor": tutor_app,
}


@app.callback()
def _applications(ctx: typer.Context) -> None:
    # what the applications add to other verbs, handed down here (the top may import anything; serve imports no
    # application): zephyra serve --characters, --tutor
    ctx.obj = {"serve_characters": serve_characters, "serve_tutor": serve_tutor}


for _name, _fn in VERBS.items():
    app.command(_name)(_fn)
for _name, _group in GROUPS.items():
    app.add_typer(_group, name=_name)


def main() -> None:
    """Entry point of the ``zephyra`` console script and ``python -m zephyra``."""
    from .runtime import configure_threads

    configure_threads()  # before torch loads: OpenMP reads its wait policy once (runtime.py)
    app(prog_name="zephyra")


if __name__ == "__main__":
    sys.exit(main())
