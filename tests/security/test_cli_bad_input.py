"""Item 5 of issue 15: every verb of ``zephyra`` (walked from the typer app: VERBS and GROUPS in src/zephyra/cli.py)
given bad input: an unknown option, a wrong type for each numeric option, and, where the verb reads files, every
file/directory option pointing at a missing file, an empty file, and a file with a wrong key. Each must end with a
one-line ``error: ...`` on stderr, a non-zero exit and no traceback. Run in-process (CliRunner), in an empty
working directory, so the defaults under ./runs do not exist and nothing real starts.

    .venv/bin/python -m pytest tests/security/test_cli_bad_input.py -q
"""

from __future__ import annotations

import types
import typing
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from test_fuzz_parsers import Hang, time_limit

from zephyra.cli import app

runner = CliRunner()
MISSING = "/nonexistent/zephyra-fuzz/x"
OUTPUTS = {"out", "plot", "plots", "docs", "to", "feedback_log"}  # written, not read: a new path is fine there
PER_CALL_S = 30


# found by this test and not fixed (each is strict: fixing one makes its case pass, and the mark must go); the
# last nine (mcp, data build, tokenizer train, bench adapters, registry list/log/check-data, converse watch) are fixed
KNOWN: dict = {}


def _leaves(cmd, path=()):
    if hasattr(cmd, "commands"):
        for name, sub in cmd.commands.items():
            yield from _leaves(sub, (*path, name))
    else:
        yield path, cmd


def _kind(param) -> str:
    tp = param.type_descriptor.annotation
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1:
        tp = args[0]
    if typing.get_origin(tp) is list:
        tp = typing.get_args(tp)[0]
    if getattr(param, "is_flag", False) or tp is bool:
        return "flag"
    if isinstance(tp, type) and issubclass(tp, Path):
        return "path"
    if tp in (int, float):
        return "number"
    return "text"


def _flag(param) -> list[str]:
    return [param.opts[0]] if param.param_type_name == "option" else []


def _fill(param, value: str) -> list[str]:
    return [*_flag(param), value]


def _required(cmd, skip=None) -> list[str]:
    out = []
    for p in cmd.params:
        if p is skip or not p.required:
            continue
        kind = _kind(p)
        out += _fill(p, {"path": MISSING, "number": "1"}.get(kind, "x"))
    return out


def _cases():
    root = typer.main.get_command(app)
    for path, cmd in _leaves(root):
        verb = " ".join(path)
        yield pytest.param(verb, "unknown option", [*path, "--no-such-option-zz"], id=f"{verb}:unknown-option",
                           marks=[pytest.mark.xfail(strict=True, reason=KNOWN[(verb, "unknown option")])]
                           if (verb, "unknown option") in KNOWN else [])
        numbers = [p for p in cmd.params if _kind(p) == "number" and p.param_type_name == "option"]
        for i, p in enumerate(numbers):  # the first numeric option of each verb in the default run, all as slow
            yield pytest.param(verb, f"wrong type {p.opts[0]}", [*path, *_required(cmd, skip=p), p.opts[0], "abc"],
                               id=f"{verb}:wrong-type{p.opts[0]}", marks=[pytest.mark.slow] if i else [])
        inputs = [p for p in cmd.params if _kind(p) == "path" and p.name not in OUTPUTS]
        if inputs:
            for bad in ("missing file", "empty file", "wrong key"):
                marks = [pytest.mark.slow]  # loads torch-side modules per verb: 2-3 minutes for all of them
                if (verb, bad) in KNOWN or (verb, "*") in KNOWN:
                    marks.append(pytest.mark.xfail(strict=True, reason=KNOWN.get((verb, bad), KNOWN.get((verb, "*")))))
                yield pytest.param(verb, bad, (path, cmd), id=f"{verb}:{bad.replace(' ', '-')}", marks=marks)


def _file_argv(path, cmd, bad: str, tmp: Path) -> list[str]:
    argv = [*path]
    for p in cmd.params:
        kind = _kind(p)
        if kind == "path" and p.name in OUTPUTS:
            argv += _fill(p, str(tmp / f"new-{p.name}"))
        elif kind == "path":
            if bad == "missing file":
                value = MISSING
            else:
                suffix = ".yaml" if any(w in p.name for w in ("config", "recipe", "rules", "alerts")) else ".jsonl"
                f = tmp / f"{p.name}{suffix}"
                f.write_text("" if bad == "empty file" else '{"no_such_key_zz": 1}\n')
                value = str(f)
            argv += _fill(p, value)
        elif p.required:
            argv += _fill(p, "1" if kind == "number" else "x")
    if any(p.name == "set_" for p in cmd.params) and bad == "wrong key":
        argv += ["--set", "no_such_key_zz=1"]
    return argv


@pytest.mark.parametrize(("verb", "bad", "argv"), list(_cases()))
def test_every_verb_refuses_bad_input_in_one_line(verb, bad, argv, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the defaults (runs/phase2/final, runs/adapters, ...) do not exist here
    if isinstance(argv, tuple):
        argv = _file_argv(*argv, bad, tmp_path)
    try:
        with time_limit(PER_CALL_S):
            result = runner.invoke(app, argv, catch_exceptions=True)
    except Hang:
        pytest.fail(f"zephyra {' '.join(argv)}: no answer within {PER_CALL_S} s")
    shown = f"zephyra {' '.join(argv)} -> exit {result.exit_code}\n{result.output[-1500:]}"
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        f"{shown}\n{type(result.exception).__name__}: {result.exception}"
    assert result.exit_code != 0, shown
    assert "Traceback" not in result.output, shown
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), shown
    assert sum(line.startswith("error: ") for line in lines) == 1, shown
