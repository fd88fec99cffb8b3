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
from .guard.cli import app as guard_app
from .paper.cli import paper as paper_verb
from .registry.cli import app as registry_app
from .resolve import cli as resolve_cli
from .router.cli import app as router_app
from .serve.cli import serve as serve_verb
from .serve.monitor import monitor as monitor_verb
from .serve.privacy_cli import app as privacy_app
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
    """Train a byte-level BPE tokenizer with a chat template on text files (a .jsonl file: each record's "text").

    zephyra tokenizer train --text a.txt --text b.txt --vocab-size 4096 --out runs/tokenizer
    """
    from .io import sha256_file
    from .tokenizer import train_tokenizer

    for p in text:
        if not p.is_file():
            clikit.fail(f"{p}: no such file")

    def read(p: Path) -> list[str]:
        try:
            body = p.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            clikit.fail(f"{p}: not UTF-8 text (byte {e.start})")
        if p.suffix != ".jsonl":
            return body.splitlines()
        out = []  # the project's JSONL (runs/data/*): each record's "text"
        for n, line in enumerate(body.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                clikit.fail(f"{p}:{n}: not JSON (a .jsonl file holds one record a line)")
            if not isinstance(rec, dict) or not isinstance(rec.get("text"), str):
                clikit.fail(f"{p}:{n}: a record without a 'text' string (a .jsonl file is read as records)")
            out.extend(rec["text"].splitlines())
        return out

    texts = [read(p) for p in text]
    if not any(line.strip() for t in texts for line in t):
        clikit.fail(f"--text: no text in {', '.join(map(str, text))}")

    def lines():
        for t in texts:
            yield from t

    tok = train_tokenizer(lines(), out, vocab_size=vocab_size, sources={str(p): sha256_file(p) for p in text})
    typer.echo(f"tokenizer with {len(tok)} tokens written to {out}")


@bench_app.command("adapters", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench_adapters(ctx: typer.Context) -> None:
    """Multi-adapter decoding: mixed-adapter batches and unmerged adapters against the base, ours and PEFT's, in
    one run (options as ``python -m zephyra.bench.adapters --help``).

    zephyra bench adapters --preset small --batch 8 --new-tokens 64 --rounds 15 --threads 1
    """
    from .bench.adapters import main as bench_main

    bench_main(list(ctx.args), parser=clikit.ArgParser, prog="zephyra bench adapters")


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
    device: Annotated[str, typer.Option(help="cpu, or cuda where torch sees a GPU (peak memory is then the GPU's)")
                      ] = "cpu",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Training-step tokens/s and peak memory of Zephyra vs HF Llama of equal size, with ratios.

    zephyra bench model --preset small --batch 8 --seq 256 --dtypes fp32,bf16
    """
    from .bench.model import ModelBenchConfig, machine, markdown, run

    from .errors import ConfigError

    try:
        cfg = ModelBenchConfig(preset=preset, batch=batch, seq=seq, steps=steps, rounds=rounds, threads=threads,
                               dtypes=dtypes.split(","), archs=archs.split(","), allocator=allocator, compile=compile,
                               device=device)
    except ConfigError as e:
        clikit.fail(str(e))
    rows = run(cfg, progress=lambda s: typer.echo(s, err=True))
    if as_json:
        typer.echo(json.dumps({"machine": machine(), "config": cfg.__dict__, "rows": rows}))
    else:
        typer.echo(f"machine: {machine()}")
        typer.echo(markdown(rows, cfg))


@bench_app.command("profile")
def bench_profile(
    preset: str = "small",
    arch: Annotated[list[str] | None, typer.Option("--arch", help="zephyra, llama, gpt2 (repeatable)")] = None,
    dtype: Annotated[str, typer.Option(help="fp32 or bf16")] = "bf16",
    batch: int = 8,
    seq: int = 256,
    steps: Annotated[int, typer.Option(help="profiled training steps (after 2 warm-up steps)")] = 3,
    decode_tokens: Annotated[int, typer.Option(help="profiled greedy decode steps")] = 32,
    threads: int = 2,
    top: Annotated[int, typer.Option(help="operators listed per phase")] = 15,
    out: Annotated[Path, typer.Option(help="directory for profile.json, profile.md and the traces")
                   ] = Path("runs/bench/profile"),
) -> None:
    """torch.profiler on a training step and a decode step: top operators and Chrome traces per architecture.

    zephyra bench profile --preset small --dtype bf16 --arch zephyra --arch llama --out runs/bench/profile
    """
    from .bench.profile import ProfileConfig, run
    from .errors import ConfigError

    try:
        cfg = ProfileConfig(preset=preset, archs=list(arch or ["zephyra", "llama"]), dtype=dtype, batch=batch,
                            seq=seq, steps=steps, decode_tokens=decode_tokens, threads=threads, top=top)
    except ConfigError as e:
        clikit.fail(str(e))
    run(cfg, out, progress=lambda s: typer.echo(s, err=True))
    typer.echo((out / "profile.md").read_text())


@bench_app.command("all")
def bench_all(
    quick: Annotated[bool, typer.Option("--quick", help="small presets, few steps: minutes on 2 cores")] = False,
    out: Annotated[Path, typer.Option(help="directory for <bench>.json, report.md and the plots")
                   ] = Path("runs/bench/all"),
    only: Annotated[list[str] | None, typer.Option("--only", help="run just this benchmark (repeatable)")] = None,
    threads: Annotated[int, typer.Option(help="torch threads for every benchmark")] = 2,
    level: Annotated[str | None, typer.Option(help="tiny | quick | full (overrides --quick; tiny: the tests')")
                     ] = None,
    device: Annotated[str, typer.Option(help="the training-step benchmark's device: cpu, or cuda where torch sees "
                                             "a GPU")] = "cpu",
) -> None:
    """Every benchmark against its baseline in one run: JSON per benchmark, report.md with plots, the machine.

    zephyra bench all --quick --out runs/bench/quick
    """
    from .bench.all import BenchAllConfig, run_all
    from .errors import ConfigError

    try:
        cfg = BenchAllConfig(level=level or ("quick" if quick else "full"), only=only or None, threads=threads,
                             device=device)
    except ConfigError as e:
        clikit.fail(str(e))
    results = run_all(cfg, out, progress=lambda s: typer.echo(s, err=True))
    for name, r in results.items():
        typer.echo(f"{name}: {r['status']}{' (' + r['reason'] + ')' if r['reason'] else ''}")
    typer.echo(f"report written to {out / 'report.md'}")


@bench_app.command("base")
def bench_base(
    out: Annotated[Path, typer.Option(help="directory for base.json, base.md, base.png and the candidates' runs")
                   ] = Path("runs/bench/base"),
    level: Annotated[str, typer.Option(help="tiny | quick | full (the candidates and budget below default to it)")
                     ] = "full",
    candidates: Annotated[str | None, typer.Option(help="comma-separated arch:preset, e.g. zephyra:mini,llama:mini")
                          ] = None,
    scale: Annotated[float | None, typer.Option(help="the compute budget: the mini recipes' steps times this")] = None,
    adapter_steps: Annotated[int | None, typer.Option(help="steps of each candidate's adapters")] = None,
    domains: Annotated[str | None, typer.Option(help="comma-separated adapter domains")] = None,
    max_questions: Annotated[int | None, typer.Option(help="grounded questions per adapter domain")] = None,
    data: Path = Path("runs/data"),
    tokenizer: Path = Path("runs/tokenizer"),
    index: Path = Path("runs/index"),
) -> None:
    """Choose the base: candidates trained at equal compute, the task suite on each, the rule's choice.

    zephyra bench base --out runs/bench/base     (after zephyra quickstart; about an hour on 2 cores)
    """
    from .bench.base_choice import BaseChoiceConfig, run
    from .errors import ConfigError

    def split(v):
        return [x.strip() for x in v.split(",") if x.strip()] if v else None

    try:
        cfg = BaseChoiceConfig(level=level, candidates=split(candidates), scale=scale, adapter_steps=adapter_steps,
                               domains=split(domains), max_questions=max_questions, data=data, tokenizer=tokenizer,
                               index=index)
        run(cfg, out, progress=lambda s: typer.echo(s, err=True))
    except ConfigError as e:
        clikit.fail(str(e))
    typer.echo((out / "base.md").read_text())


@bench_app.command("report")
def bench_report(
    results: Annotated[Path, typer.Argument(help="a directory zephyra bench all wrote")],
    docs: Annotated[Path | None, typer.Option(help="also replace the tables between <!-- bench:NAME --> markers "
                                                   "in this Markdown file")] = None,
) -> None:
    """(Re)write RESULTS/report.md from its JSON files, and the docs tables between their markers.

    zephyra bench report runs/bench/all --docs docs/benchmarks.md
    """
    from .bench.report import update_docs, write_report
    from .errors import DataError

    try:
        path = write_report(results)
        done = update_docs(docs, results) if docs else None
    except DataError as e:
        clikit.fail(str(e))
    typer.echo(f"report written to {path}")
    if docs:
        typer.echo(f"{docs}: replaced {', '.join(done) or 'nothing (no markers with results)'}")


@bench_app.command("soak")
def bench_soak(
    minutes: Annotated[float, typer.Option(help="how long to hold the load")] = 3.0,
    concurrency: Annotated[int, typer.Option(help="concurrent streaming clients")] = 4,
    out: Annotated[Path, typer.Option(help="directory for soak.json, soak.md and soak.png")] = Path("runs/bench/soak"),
    max_requests: Annotated[int, typer.Option(help="stop after this many requests even before the time")] = 100_000,
    max_tokens: Annotated[int, typer.Option(help="tokens per answer")] = 32,
    max_pending: Annotated[int, typer.Option(help="the server's admission limit (more: 429)")] = 64,
    answer: Annotated[str, typer.Option(help="grounded adapters: quote | cited | generate")] = "generate",
    base: Annotated[Path | None, typer.Option(help="base model directory (default: the quickstart's)")] = None,
    adapters: Annotated[Path | None, typer.Option(help="adapters directory (default: the quickstart's)")] = None,
    router: Annotated[Path | None, typer.Option(help="router directory (default: the quickstart's)")] = None,
) -> None:
    """Hold a bounded streaming load on a loopback server for MINUTES, sampling this process's RSS every second
    (the server runs in a thread here): soak.json, soak.md (RSS start/middle/end, slope MiB/min), soak.png.

    zephyra bench soak --minutes 3 --concurrency 4 --out runs/bench/soak
    """
    from .resolve.defaults import DEFAULT_ADAPTERS, DEFAULT_BASE, DEFAULT_ROUTER

    if minutes <= 0 or concurrency < 1 or max_requests < 1 or max_tokens < 1 or max_pending < 1:
        clikit.fail(f"--minutes must be > 0 and --concurrency, --max-requests, --max-tokens, --max-pending at least "
                    f"1; got {minutes}, {concurrency}, {max_requests}, {max_tokens}, {max_pending}")
    if answer not in ("quote", "cited", "generate"):
        clikit.fail(f"--answer must be quote, cited or generate, got {answer!r}")
    base, adapters, router = base or DEFAULT_BASE, adapters or DEFAULT_ADAPTERS, router or DEFAULT_ROUTER
    for what, p in (("base", base), ("adapters", adapters), ("router", router)):
        if not p.exists():
            clikit.fail(f"--{what} {p} does not exist (run zephyra quickstart, or pass --{what})")
    from .bench.soak import markdown, run

    r = run(base, adapters, router, out, minutes=minutes, concurrency=concurrency, max_tokens=max_tokens,
            max_pending=max_pending, answer=answer, max_requests=max_requests)
    typer.echo(markdown(r))
    typer.echo(f"written to {out / 'soak.json'}, soak.md, soak.png")


def eval_memorisation(
    base: Annotated[Path, typer.Option(help="base model directory (model + tokenizer)")] = Path("runs/phase2/final"),
    data: Annotated[Path, typer.Option(help="data root holding domains/<domain>/{raw,qa}")] = Path("runs/data"),
    domain: Annotated[str, typer.Option(help="the domain whose training text the canaries are planted in")]
    = "computing",
    out: Annotated[Path, typer.Option(help="report directory (memorisation.json, memorisation.png)")]
    = Path("runs/eval/memorisation"),
    steps: Annotated[int, typer.Option(help="adapter training steps (fewer_steps trains a quarter)")] = 240,
    mitigations: Annotated[list[str] | None, typer.Option("--mitigation", help="none, dedup, fewer_steps "
                                                          "(repeatable; default: all three)")] = None,
) -> None:
    """The secret-sharer test: plant canaries 1, 4, 16 times, train an adapter, measure exposure and extraction.

    zephyra eval memorisation --base runs/phase2/final --data runs/data --out runs/eval/memorisation
    """
    import json

    from .bench.memorisation import MemorisationConfig, run

    try:
        cfg = MemorisationConfig(base=str(base), data_root=str(data), domain=domain, out=str(out), max_steps=steps,
                                 **({"mitigations": mitigations} if mitigations else {}))
    except (ValueError, TypeError) as e:
        clikit.fail(str(e))
    report = run(cfg)
    typer.echo(json.dumps({r["label"]: r["summary"] for r in report["runs"]}))


eval_app.command("memorisation")(eval_memorisation)  # here: it trains (bench/), eval may not import training


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
    "paper": paper_verb,
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
    "privacy": privacy_app,
    "guard": guard_app,
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
