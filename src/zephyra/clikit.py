"""What every ``zephyra`` verb shares: one app factory whose commands report errors the same way, and the
warnings-as-one-line helper. Imports typer and click only (``zephyra --help`` must not import torch).

The exit-code policy (zephyra.errors): a ``ZephyraError`` (bad input, bad settings, a missing or foreign
artifact), or the system refusing a path the user gave, prints ``error: <one line>`` on stderr and exits 2, as
click does for a bad option; a bug keeps its traceback (exit 1). Commands therefore just raise: none of them
catches and re-words errors itself.

    app = clikit.app("Train and inspect tokenizers.")
    @app.command()
    def train(...):
        if bad: clikit.fail("--text: no such file")      # = raise ZephyraError(...)
"""

from __future__ import annotations

import argparse
import contextlib
import warnings
from typing import NoReturn

import click
import typer
from typer.core import TyperGroup

from .errors import EXIT_USER, ZephyraError, is_user_error, one_line


# typer parses with its own copy of click (typer._click): its UsageError, found without naming a private module
_USAGE = tuple({click.UsageError, next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")})


class _Group(TyperGroup):
    """A command group that turns user errors raised by any command under it into ``error: ...`` + exit 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except _USAGE as e:  # a bad option value, a missing or unknown option: one line too, not a panel
            where = e.ctx.command_path if getattr(e, "ctx", None) is not None else ctx.command_path
            click.echo(f"error: {' '.join(e.format_message().split())} (see '{where} --help')", err=True)
            ctx.exit(EXIT_USER)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as e:  # noqa: BLE001  (sorted below: user errors are reported, bugs re-raised)
            if not is_user_error(e):
                raise
            click.echo(f"error: {one_line(e)}", err=True)
            ctx.exit(EXIT_USER)


class ArgParser(argparse.ArgumentParser):
    """An argparse parser for a verb that hands its options on (``zephyra bench adapters ...``): a bad option is
    the project's one ``error:`` line (a ZephyraError), not argparse's usage text and exit."""

    def error(self, message: str) -> NoReturn:
        raise ZephyraError(f"{message} (see '{self.prog} --help')")


def app(help: str, **options) -> typer.Typer:
    """A Typer app (a verb or a group of verbs) with the project's error policy."""
    return typer.Typer(help=help, cls=_Group, no_args_is_help=True, pretty_exceptions_enable=False,
                       add_completion=False, **options)


def fail(message: str) -> NoReturn:
    """Refuse bad input from inside a command: ``error: message`` and exit 2 (the one policy)."""
    raise ZephyraError(message)


@contextlib.contextmanager
def warnings_to_stderr():
    """Warnings raised inside (a prompt cut to fit the context, ...) as one ``warning: ...`` line each."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        yield
    for message in dict.fromkeys(str(w.message).splitlines()[0] for w in caught
                                 if issubclass(w.category, UserWarning)):
        typer.echo(f"warning: {message}", err=True)
