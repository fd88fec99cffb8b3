"""``zephyra route``, ``zephyra generate`` and ``zephyra chat`` (registered by zephyra.cli), and what they share:
the system options, loading, prompt files.

    zephyra route "What does zip() do?" "hello" --json
    zephyra route --file prompts.jsonl --json              # one {"prompt": ...} a line
    zephyra generate "What does zip() do?" --stream        # tokens as they are made
    zephyra generate --file prompts.jsonl --json           # one {"prompt"} or {"messages"} a line, all at once
    zephyra chat                                           # /adapter NAME|auto|base, /mode top1|fused, /quit

A system is three directories: ``--base`` (model + tokenizer), ``--adapters`` (one LoRA adapter per domain) and
``--router``; the defaults are where the quickstart writes them (docs/runtime.md). Imports only typer here:
the heavy parts load inside the commands.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from .. import clikit
from ..clikit import warnings_to_stderr
from .defaults import (
    AUTO,
    BASE,
    DEFAULT_ADAPTERS,
    DEFAULT_BASE,
    DEFAULT_INDEX,
    DEFAULT_ROUTER,
)

BaseOpt = Annotated[Path | None, typer.Option("--base", help="base model directory (model + tokenizer)",
                                              show_default=str(DEFAULT_BASE))]
AdaptersOpt = Annotated[Path | None, typer.Option("--adapters", help="directory of LoRA adapters, one per domain",
                                                  show_default=str(DEFAULT_ADAPTERS))]
RouterOpt = Annotated[Path | None, typer.Option("--router", help="router directory",
                                                show_default=str(DEFAULT_ROUTER))]
AdapterOpt = Annotated[str, typer.Option("--adapter", help="auto: routed; base: the base model; NAME: that adapter")]
ModeOpt = Annotated[str, typer.Option("--mode", help="top1: the router's adapter; fused: its best two, "
                                                     "weighted by score")]
MaxNewOpt = Annotated[int, typer.Option("--max-new-tokens", "--max-tokens", min=1, help="new tokens at most")]
SampleOpt = Annotated[bool, typer.Option(help="sample (temperature 0.8, top-k 40) instead of greedy decoding")]
IndexOpt = Annotated[Path | None, typer.Option("--index", help="knowledge indexes, one per domain (grounded "
                                               "adapters answer from them)", show_default=str(DEFAULT_INDEX))]
RetrievalOpt = Annotated[bool, typer.Option("--retrieval/--no-retrieval", help="grounded adapters answer from "
                                            "retrieved sources (off: closed-book)")]


def open_system(base: Path | None, adapters: Path | None, router: Path | None, *, fmt: str = "chat",
                defaults: bool = True, index: Path | None = None, answer: str | None = None,
                adapter_dirs: dict | None = None, upstream: dict | None = None):
    """load_system with the CLI's defaults (``defaults=False``: only what is given); notes on stderr."""
    import torch
    from transformers.utils import logging as hf_logging

    from ..runtime import choose_threads
    from .system import load_system

    hf_logging.disable_progress_bar()
    torch.set_num_threads(choose_threads())  # the cores free now (runtime.py)
    if defaults:
        base, adapters, router = base or DEFAULT_BASE, adapters or DEFAULT_ADAPTERS, router or DEFAULT_ROUTER
    with warnings_to_stderr():
        system = load_system(base, adapters, router, fmt=fmt, index_root=index, answer=answer,
                             adapter_dirs=adapter_dirs, upstream=upstream)
    for note in system.notes:
        typer.echo(f"note: {note}", err=True)
    return system


def usable_adapter(system, adapter: str, mode: str = "top1") -> str:
    """``adapter`` if the system can serve it; 'auto' without a router falls back to the base, with a warning
    (a system is trained stage by stage); anything else unservable is a one-line exit."""
    if adapter == AUTO and system.router is None:
        typer.echo("warning: no router, so 'auto' answers with the base model", err=True)
        adapter = BASE
    system.check(adapter, mode)
    return adapter


def read_jsonl(path: Path, *, messages: bool = False) -> list:
    """Prompts from a JSONL file, one ``{"prompt": ...}`` a line (blank lines skipped), or with ``messages`` also
    ``{"messages": [...]}``; a bad line is a one-line error naming its number."""
    from ..chat import as_messages
    from ..errors import DataError, RequestError
    from ..io import read_jsonl

    want = '{"prompt": ...} or {"messages": [...]}' if messages else '{"prompt": ...}'
    prompts = []
    for n, obj in read_jsonl(path):
        if messages and isinstance(obj, dict) and "messages" in obj:
            try:
                prompts.append(as_messages(obj["messages"]))
            except RequestError as e:
                raise DataError(f"{path} line {n}: {e}") from None
            continue
        if not isinstance(obj, dict) or not isinstance(obj.get("prompt"), str):
            raise DataError(f'{path} line {n}: expected an object with a "prompt" string, e.g. '
                            f'{{"prompt": "What is a compiler?"}} ({want})')
        if not obj["prompt"].strip():
            raise DataError(f"{path} line {n}: the prompt is empty")
        prompts.append(obj["prompt"])
    if not prompts:
        raise DataError(f"{path}: no prompts in it")
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
            clikit.fail(f"prompt {i + 1} is empty" if len(prompts) > 1 else "the prompt is empty")
    prompts += read_jsonl(file) if file is not None else []
    if not prompts:
        clikit.fail("no prompts: give PROMPT... or --file prompts.jsonl")
    system = open_system(base, None, router)
    with warnings_to_stderr():
        decisions = system.route(prompts)
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


# --- zephyra generate -----------------------------------------------------------------------------------------

def generate(
    prompt: Annotated[str | None, typer.Argument(help="the prompt (or --file)", show_default=False)] = None,
    file: Annotated[Path | None, typer.Option("--file", help='JSONL file, one {"prompt": ...} or '
                                                             '{"messages": [...]} a line, answered together')] = None,
    adapter: AdapterOpt = AUTO,
    mode: ModeOpt = "top1",
    base: BaseOpt = None,
    adapters: AdaptersOpt = None,
    router: RouterOpt = None,
    model: Annotated[Path | None, typer.Option(help="a plain model directory (with its tokenizer) instead of a "
                                               "system: no adapters, no router")] = None,
    system_prompt: Annotated[str | None, typer.Option("--system", help="a system message before the prompt")] = None,
    max_new_tokens: MaxNewOpt = 48,
    fmt: Annotated[str, typer.Option("--format", help="chat: wrap in the chat template; raw: continue the text")
                   ] = "chat",
    sample: SampleOpt = False,
    temperature: Annotated[float | None, typer.Option(help="0: greedy (default); else sample at it")] = None,
    top_p: Annotated[float, typer.Option(help="nucleus sampling mass")] = 1.0,
    seed: Annotated[int, typer.Option(help="sampling seed (prompt i of a file: seed + i)")] = 0,
    stop: Annotated[list[str] | None, typer.Option("--stop", help="end the answer before this text "
                                                   "(repeatable)")] = None,
    stream: Annotated[bool, typer.Option("--stream", help="print tokens as they are made")] = False,
    answer: Annotated[str | None, typer.Option(help="grounded answers: quote (the best passage), cited (the "
                                               "passage the adapter cites) or generate (its own words); default: "
                                               "each adapter's (quote)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object a line (with --stream: one per "
                                                         "event, then the answer)")] = False,
    index: IndexOpt = None,
    retrieval: RetrievalOpt = True,
) -> None:
    """Answer a prompt: routed to an adapter (auto), with the base, or with a named adapter; --stream prints the
    answer as it is made, --file answers many prompts in one process, sharing the batch.

    zephyra generate "What does zip() do?" --adapter auto --json
    zephyra generate "Who is Polonius?" --adapter shakespeare --stream
    zephyra generate --file prompts.jsonl --json --max-new-tokens 32
    zephyra generate "Who is Polonius?" --model runs/phase2/final     # a plain model
    zephyra generate "What is the capital of Peru?" --no-retrieval   # grounded adapters answer closed-book
    """
    from .engine import Request
    from .sampling import SamplingParams

    if fmt not in ("chat", "raw"):
        clikit.fail(f"unknown prompt format {fmt!r}: use 'chat' or 'raw'")
    if (prompt is None) == (file is None):
        clikit.fail("give a PROMPT or --file prompts.jsonl (one of them)")
    prompts = read_jsonl(file, messages=fmt == "chat") if file is not None else [prompt]
    if prompt is not None and not prompt.strip():
        clikit.fail("the prompt is empty")
    if system_prompt is not None:
        if fmt == "raw":
            clikit.fail("--system needs the chat format")
        prompts = [[{"role": "system", "content": system_prompt},
                    *([{"role": "user", "content": p}] if isinstance(p, str) else p)] for p in prompts]
    if model is not None:
        if any(x is not None for x in (base, adapters, router)):
            clikit.fail("--model is a plain model directory; for a system give --base/--adapters/--router instead")
        system = open_system(model, None, None, fmt=fmt, defaults=False)
        adapter = BASE if adapter == AUTO else adapter  # a plain model has no router
    else:
        system = open_system(base, adapters, router, fmt=fmt, index=index, answer=answer)
    adapter = usable_adapter(system, adapter, mode)
    temp = temperature if temperature is not None else (0.8 if sample else 0.0)
    requests = [Request(p, adapter=adapter, mode=mode, fmt=fmt, request_id=str(i), sampling=SamplingParams(
        max_tokens=max_new_tokens, temperature=temp, top_p=top_p, top_k=40 if sample else 0, seed=seed + i,
        stop=list(stop or []))) for i, p in enumerate(prompts)]
    try:
        with warnings_to_stderr():
            streams = system.submit_many(requests, retrieval)  # together: a file's prompts share the batch
        for s in streams:
            if s.grounding is not None and s.grounding.note and not as_json:
                typer.echo(f"note: {s.grounding.note}", err=True)
        if stream:
            _print_streams(streams, as_json)
        for p, s in zip(prompts, streams):
            c = s.result()
            if c.finish_reason == "error":
                raise RuntimeError(f"generation failed: {c.error}")
            if as_json:
                typer.echo(json.dumps(answer_json(p, c, len(prompts) > 1, s.grounding), ensure_ascii=False))
            elif not stream:
                typer.echo(answer_label(c.route), err=True)  # stdout stays the answer alone, for pipes
                typer.echo(s.grounding.final(c.text)[0] if s.grounding is not None else c.text.strip())
                _print_sources(s.grounding, c.text)
            elif s.grounding is not None and s.grounding.sources:
                typer.echo(f"answer: {s.grounding.final(c.text)[0]}", err=True)
                _print_sources(s.grounding, c.text)
    finally:
        system.close()


def _print_sources(g, generated: str) -> None:
    """A grounded answer's sources on stderr, the cited one starred."""
    if g is None or not (g.sources or g.note):
        return
    cites = set(g.final(generated)[1])
    for i, src in enumerate(g.sources, 1):
        mark = "*" if src["id"] in cites else " "
        typer.echo(f"  {mark}[{i}] {src['id']} ({src['score']:.2f}): {src['text'][:90]}", err=True)
    if g.note:
        typer.echo(f"  note: {g.note}", err=True)


def _print_streams(streams, as_json: bool) -> None:
    """Events as they come: plain text for one prompt; JSON lines tagged with the prompt's index for many."""
    if len(streams) == 1 and not as_json:
        s = streams[0]
        for i, piece in enumerate(visible(s)):
            if i == 0:
                typer.echo(answer_label(s.route), err=True)
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        return
    import queue
    import threading

    merged: queue.SimpleQueue = queue.SimpleQueue()

    def pump(i, s):
        for event in s:
            merged.put((i, event))

    for i, s in enumerate(streams):
        threading.Thread(target=pump, args=(i, s), daemon=True).start()
    left = len(streams)
    while left:
        i, event = merged.get()
        left -= event.finish_reason is not None
        if as_json:
            typer.echo(json.dumps({"index": i, "delta": event.text, "finish_reason": event.finish_reason}))
        else:
            typer.echo(f"[{i}] {event.text}" + (f" <{event.finish_reason}>" if event.finish_reason else ""))


def visible(stream):
    """A stream's text pieces with trailing whitespace held back until more text follows it, so what is printed
    as it comes ends exactly where the stripped answer ends. Yields at least one (maybe empty) piece."""
    held, any_yielded = "", False
    for event in stream:
        text = held + event.text
        shown = text.rstrip()
        held = text[len(shown):]
        if shown or not any_yielded and event.finish_reason is not None:
            any_yielded = True
            yield shown


def answer_json(prompt, c, indexed: bool = False, grounding=None) -> dict:
    """The DESIGN.md contract of ``generate --json``: {"adapter", "text", ...}, and "sources" (the retrieved
    passages, {"id", "text", "score"}), "cited" (the ids the answer cites) and "note" (a fallback) when the
    answering adapter is grounded."""
    r = c.route
    out = {"adapter": r.adapter, "confidence": r.confidence, "scores": r.scores, "weights": r.weights,
           "text": c.text.strip(), "finish_reason": c.finish_reason, "prompt_tokens": c.prompt_tokens,
           "new_tokens": c.completion_tokens, "truncated": c.truncated}
    if grounding is not None:
        text, cites = grounding.final(c.text)
        out.update(text=text, sources=grounding.sources, cited=cites, note=grounding.note)
        if grounding.sources:
            out["generated"] = c.text.strip()
    if indexed:
        out = {"index": int(c.request_id), "prompt": prompt, **out}
    return out


def answer_label(route) -> str:
    """``[python 0.93]`` when routed (the router's confidence), ``[python forced]`` when chosen by hand."""
    if route.confidence is None:
        return f"[{route.adapter} forced]"
    top = max(route.scores, key=route.scores.get) if route.scores else route.adapter
    extra = f", top {top}" if top != route.adapter else ""  # abstained, or the top domain has no adapter here
    if len(route.weights) > 1:
        extra += ", fused " + "+".join(f"{k} {v:.2f}" for k, v in route.weights.items())
    return f"[{route.adapter} {route.confidence:.2f}{extra}]"


# --- zephyra chat ---------------------------------------------------------------------------------------------

CHAT_HELP = "commands: /adapter NAME|auto|base, /mode top1|fused, /reset, /help, /quit"


def chat(
    base: BaseOpt = None,
    adapters: AdaptersOpt = None,
    router: RouterOpt = None,
    adapter: AdapterOpt = AUTO,
    mode: ModeOpt = "top1",
    max_new_tokens: MaxNewOpt = 48,
    sample: SampleOpt = False,
    history: Annotated[bool, typer.Option(help="send the conversation so far with each line (multi-turn); off: "
                                               "each line is answered on its own")] = False,
    index: IndexOpt = None,
    retrieval: RetrievalOpt = True,
) -> None:
    """Talk to the system: each answer streams as it is made, after the adapter that gives it and the router's
    confidence. Reads stdin until EOF or /quit, so it also runs piped.

    zephyra chat --adapter auto
    printf 'What does zip() do?\\n/adapter base\\nWhat does zip() do?\\n' | zephyra chat
    """
    import click

    system = open_system(base, adapters, router, index=index)
    state = {"adapter": usable_adapter(system, adapter, mode), "mode": mode, "messages": [], "retrieval": retrieval}
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
        _chat_turn(system, state, line, max_new_tokens, sample, seed=turn, history=history)
    system.close()


def _chat_command(system, state: dict, line: str) -> bool:
    """Handle a /command; True to quit. Mistakes are reported and the chat goes on."""
    from ..errors import ZephyraError
    from .engine import MODES

    cmd, _, arg = line.partition(" ")
    arg = arg.strip()
    if cmd in ("/quit", "/exit"):
        return True
    if cmd == "/help":
        typer.echo(CHAT_HELP)
    elif cmd == "/reset":
        state["messages"] = []
        typer.echo("conversation cleared")
    elif cmd == "/adapter" and arg:
        try:
            system.check(arg, "top1" if arg != AUTO else state["mode"])
        except ZephyraError as e:
            typer.echo(f"error: {e}")
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


def _chat_turn(system, state: dict, prompt: str, max_new_tokens: int, sample: bool, seed: int,
               history: bool) -> None:
    from ..errors import ZephyraError
    from .engine import Request
    from .sampling import SamplingParams

    messages = [*state["messages"], {"role": "user", "content": prompt}] if history else prompt
    request = Request(messages, adapter=state["adapter"], mode=state["mode"], sampling=SamplingParams(
        max_tokens=max_new_tokens, temperature=0.8 if sample else 0.0, top_k=40 if sample else 0, seed=seed))
    try:
        with warnings_to_stderr():
            stream = system.submit(request, state.get("retrieval", True))
    except ZephyraError as e:
        typer.echo(f"error: {e}")
        return
    pieces = []
    for piece in visible(stream):
        if not pieces:
            typer.echo(answer_label(stream.route) + " ", nl=False)
        pieces.append(piece)
        typer.echo(piece, nl=False)
    typer.echo("")
    g = stream.grounding
    if g is not None and g.sources:
        final = g.final("".join(pieces))[0]
        typer.echo(f"answer: {final}")
        pieces = [final]
    _print_sources(g, "".join(pieces))
    if history:
        state["messages"] = [*messages, {"role": "assistant", "content": "".join(pieces).strip()}]
