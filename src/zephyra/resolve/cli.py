"""``zephyra route`` and ``zephyra chat`` (registered by zephyra.cli, beside ``zephyra generate``), and what the
three share: the system options, loading, prompt files, and warnings as one line on stderr.

    zephyra route "What does zip() do?" "hello" --json
    zephyra route --file prompts.jsonl --json              # one {"prompt": ...} a line
    zephyra chat                                           # /adapter NAME|auto|base, /mode top1|fused, /quit

A system is three directories: ``--base`` (model + tokenizer), ``--adapters`` (one LoRA adapter per domain) and
``--router`` (the in-model router); the defaults are where the quickstart writes them (docs/runtime.md).
"""

from __future__ import annotations

import contextlib
import json
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer

from .system import AUTO, BASE, DEFAULT_ADAPTERS, DEFAULT_BASE, DEFAULT_ROUTER

BaseOpt = Annotated[Path | None, typer.Option("--base", help="base model directory (model + tokenizer)",
                                              show_default=str(DEFAULT_BASE))]
AdaptersOpt = Annotated[Path | None, typer.Option("--adapters", help="directory of LoRA adapters, one per domain",
                                                  show_default=str(DEFAULT_ADAPTERS))]
RouterOpt = Annotated[Path | None, typer.Option("--router", help="router directory",
                                                show_default=str(DEFAULT_ROUTER))]
AdapterOpt = Annotated[str, typer.Option("--adapter", help="auto: routed; base: the base model; NAME: that adapter")]
ModeOpt = Annotated[str, typer.Option("--mode", help="top1: the router's adapter; fused: its best two, "
                                                     "weighted by score")]


def fail(message: str) -> None:
    """One clear line on stderr and exit 2, as every zephyra verb reports bad input."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def first_line(e: BaseException) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__


ERRORS = (ValueError, FileNotFoundError, KeyError)  # our one-line errors (PromptError, ResolveError, ...) included


@contextlib.contextmanager
def warnings_to_stderr():
    """Warnings raised inside (a prompt cut to fit the context, ...) as one ``warning: ...`` line each."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        yield
    for message in dict.fromkeys(str(w.message).splitlines()[0] for w in caught
                                 if issubclass(w.category, UserWarning)):
        typer.echo(f"warning: {message}", err=True)


def open_system(base: Path | None, adapters: Path | None, router: Path | None, *, fmt: str = "chat",
                defaults: bool = True):
    """load_system with the CLI's defaults (``defaults=False``: only what is given), or a one-line exit."""
    from transformers.utils import logging as hf_logging

    from .system import load_system

    hf_logging.disable_progress_bar()
    if defaults:
        base, adapters, router = base or DEFAULT_BASE, adapters or DEFAULT_ADAPTERS, router or DEFAULT_ROUTER
    try:
        with warnings_to_stderr():
            system = load_system(base, adapters, router, fmt=fmt)
    except ERRORS as e:
        fail(first_line(e))
    for note in system.notes:
        typer.echo(f"note: {note}", err=True)
    return system


def usable_adapter(system, adapter: str, mode: str = "top1") -> str:
    """``adapter`` if the system can serve it; 'auto' without a router falls back to the base, with a warning
    (a system is trained stage by stage); anything else unservable is a one-line exit."""
    from .system import ResolveError

    if adapter == AUTO and system.router is None:
        typer.echo("warning: no router, so 'auto' answers with the base model", err=True)
        adapter = BASE
    try:
        system.check(adapter, mode)
    except ResolveError as e:
        fail(first_line(e))
    return adapter


def read_prompt_file(path: Path) -> list[str]:
    """Prompts from a JSONL file, one ``{"prompt": ...}`` a line (blank lines skipped); a bad line is a one-line
    ValueError naming its number."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    prompts = []
    with path.open("rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                raise ValueError(f"{path} line {n}: not UTF-8 text") from None
            if not line:
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path} line {n}: not JSON ({e.msg})") from None
            if not isinstance(obj, dict) or not isinstance(obj.get("prompt"), str):
                raise ValueError(f'{path} line {n}: expected an object with a "prompt" string, e.g. '
                                 '{"prompt": "What is a compiler?"}')
            if not obj["prompt"].strip():
                raise ValueError(f"{path} line {n}: the prompt is empty")
            prompts.append(obj["prompt"])
    if not prompts:
        raise ValueError(f"{path}: no prompts in it")
    return prompts


# --- zephyra route --------------------------------------------------------------------------------------------

def route(
    prompts: Annotated[list[str] | None, typer.Argument(help="prompts to route", show_default=False)] = None,
    file: Annotated[Path | None, typer.Option("--file", help='JSONL file, one {"prompt": ...} a line')] = None,
    base: BaseOpt = None,
    router: RouterOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object a line: prompt, adapter, confidence, "
                                                         "scores")] = False,
) -> None:
    """Route prompts to an adapter (a domain) or the base, without generating: the router alone.

    zephyra route "What does zip() do?" "hello" --json
    zephyra route --file prompts.jsonl --json
    """
    prompts = list(prompts or [])
    for i, p in enumerate(prompts):
        if not p.strip():
            fail(f"prompt {i + 1} is empty" if len(prompts) > 1 else "the prompt is empty")
    try:
        prompts += read_prompt_file(file) if file is not None else []
    except ERRORS as e:
        fail(first_line(e))
    if not prompts:
        fail("no prompts: give PROMPT... or --file prompts.jsonl")
    system = open_system(base, None, router)
    try:
        with warnings_to_stderr():
            decisions = system.route(prompts)
    except ERRORS as e:
        fail(first_line(e))
    if as_json:
        for d in decisions:
            typer.echo(json.dumps(d.to_json()))
    else:
        _route_table(decisions)


def _route_table(decisions) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("prompt", "adapter", "confidence", "top scores")
    for d in decisions:
        top = sorted(d.scores.items(), key=lambda kv: kv[1], reverse=True)[:3]
        prompt = d.prompt if len(d.prompt) <= 60 else d.prompt[:57] + "..."
        table.add_row(prompt, d.adapter, f"{d.confidence:.3f}", ", ".join(f"{k} {v:.2f}" for k, v in top))
    Console().print(table)


# --- zephyra chat ---------------------------------------------------------------------------------------------

CHAT_HELP = "commands: /adapter NAME|auto|base, /mode top1|fused, /help, /quit"


def chat(
    base: BaseOpt = None,
    adapters: AdaptersOpt = None,
    router: RouterOpt = None,
    adapter: AdapterOpt = AUTO,
    mode: ModeOpt = "top1",
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 48,
    sample: Annotated[bool, typer.Option(help="sample instead of greedy decoding")] = False,
) -> None:
    """Talk to the system: each line is answered on its own, shown with the adapter that answered and the router's
    confidence. Reads stdin until EOF or /quit, so it also runs piped.

    zephyra chat --adapter auto
    printf 'What does zip() do?\\n/adapter base\\nWhat does zip() do?\\n' | zephyra chat
    """
    import click

    system = open_system(base, adapters, router)
    state = {"adapter": usable_adapter(system, adapter, mode), "mode": mode}
    typer.echo(f"zephyra chat: adapters {', '.join(system.adapters) or 'none'}; answering with "
               f"{state['adapter']} ({state['mode']}). {CHAT_HELP}", err=True)
    stdin, interactive = click.get_text_stream("stdin"), sys.stdin.isatty()
    turn = 0
    while True:
        if interactive:
            typer.echo("> ", nl=False)
        line = stdin.readline()
        if not line:
            break
        line = line.strip()
        if not line:
            continue
        if line.startswith("/"):
            if _chat_command(system, state, line):
                break
            continue
        turn += 1
        _chat_turn(system, state, line, max_new_tokens, sample, seed=turn)


def _chat_command(system, state: dict, line: str) -> bool:
    """Handle a /command; True to quit. Mistakes are reported and the chat goes on."""
    from .resolver import MODES
    from .system import ResolveError

    cmd, _, arg = line.partition(" ")
    arg = arg.strip()
    if cmd in ("/quit", "/exit"):
        return True
    if cmd == "/help":
        typer.echo(CHAT_HELP)
    elif cmd == "/adapter" and arg:
        try:
            system.check(arg, "top1" if arg != AUTO else state["mode"])
        except ResolveError as e:
            typer.echo(f"error: {first_line(e)}")
            return False
        state["adapter"] = arg
        typer.echo(f"now answering with {arg}")
    elif cmd == "/mode" and arg in MODES:
        if arg == "fused" and state["adapter"] != AUTO:
            typer.echo("error: mode 'fused' mixes what the router picks: /adapter auto first")
            return False
        state["mode"] = arg
        typer.echo(f"mode {arg}")
    else:
        typer.echo(f"error: unknown command {line!r}; {CHAT_HELP}")
    return False


def _chat_turn(system, state: dict, prompt: str, max_new_tokens: int, sample: bool, seed: int) -> None:
    try:
        with warnings_to_stderr():
            out = system.resolve([prompt], adapter=state["adapter"], mode=state["mode"],
                                 max_new_tokens=max_new_tokens, do_sample=sample, seed=seed)[0]
    except ERRORS as e:
        typer.echo(f"error: {first_line(e)}")
        return
    typer.echo(f"{answer_label(out)} {out.text}")


def answer_label(out) -> str:
    """``[python 0.93]`` when routed (the router's confidence), ``[python forced]`` when chosen by hand."""
    if out.confidence is None:
        return f"[{out.adapter} forced]"
    top = max(out.scores, key=out.scores.get) if out.scores else out.adapter
    extra = f", top {top}" if top != out.adapter else ""  # abstained, or the top domain has no adapter here
    if len(out.weights) > 1:
        extra += ", fused " + "+".join(f"{k} {v:.2f}" for k, v in out.weights.items())
    return f"[{out.adapter} {out.confidence:.2f}{extra}]"
