"""The zephyra command line: one verb per module. ``zephyra --help`` lists them; every verb has ``--help``.

Heavy imports (torch, transformers) happen inside the verbs, so ``zephyra --help`` stays fast.
"""

from __future__ import annotations

import typer

app = typer.Typer(help="Zephyra Resolve: one base model, many domain adapters, and a router between them.",
                  no_args_is_help=True, pretty_exceptions_enable=False)


def main() -> None:
    """Entry point of the ``zephyra`` console script and ``python -m zephyra``."""
    app()
