"""``zephyra privacy purge|retain|hash-key``: a user's data removed from the stores on disk, the retention limit
applied, an API key hashed for a key file (serve/privacy.py, serve/auth.py). A running server's memory is purged
over its API (``POST /v1/admin/purge``, a key with the purge scope).

    zephyra privacy purge --user user-42 --root runs/serve --root runs/shakespeare/conversations [--json]
    zephyra privacy retain --root runs/shakespeare/conversations --days 30 --count 500
    zephyra privacy hash-key sk-secret            # sha256:<hex>, for zephyra serve --api-key-file
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from .. import clikit

app = clikit.app("user data: purge a user everywhere it is stored, apply the retention limit, hash an API key.")

RootsOpt = Annotated[list[Path], typer.Option("--root", help="a directory (or JSONL file) of user data to walk "
                                              "(repeatable): transcripts, owners.jsonl, feedback and other logs")]
JsonOpt = Annotated[bool, typer.Option("--json", help="one JSON object on stdout")]


@app.command("purge")
def purge(
    user: Annotated[str, typer.Option("--user", help="the user id (the requests' 'user', the viewer's and "
                                      "tutor's 'user')")],
    root: RootsOpt,
    as_json: JsonOpt = False,
) -> None:
    """Remove a user's conversations, feedback and records from every store under the roots (atomic rewrites).

    zephyra privacy purge --user user-42 --root runs/serve --root runs/shakespeare/conversations
    """
    from .privacy import purge_roots

    for r in root:
        if r.exists() and not r.is_dir():
            clikit.fail(f"--root {r}: not a directory (a store root holds the stores' files)")
    removed = purge_roots(user, root)
    total = sum(removed.values())
    if as_json:
        typer.echo(json.dumps({"user": user, "removed": removed, "total": total}))
    else:
        typer.echo(f"purged {user}: {total} record(s) or transcript(s) from {sum(1 for v in removed.values() if v)} "
                   f"store(s)")


@app.command("retain")
def retain(
    root: RootsOpt,
    days: Annotated[float | None, typer.Option(help="remove what is older than this many days")] = None,
    count: Annotated[int | None, typer.Option(help="keep the newest N transcripts of each directory")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Apply a retention limit to the stores under the roots (the server does it on its own with --retention-days
    / --retention-count).

    zephyra privacy retain --root runs/shakespeare/conversations --days 30 --count 500
    """
    from .privacy import Retention, retain_roots

    if days is None and count is None:
        clikit.fail("give --days and/or --count (the limit to apply)")
    removed = retain_roots(Retention(days, count), root)
    if as_json:
        typer.echo(json.dumps({"removed": removed, "total": sum(removed.values())}))
    else:
        typer.echo(f"retention: {sum(removed.values())} record(s) or transcript(s) removed")


@app.command("hash-key")
def hash_key(
    key: Annotated[str, typer.Argument(help="the API key ('-': read it from stdin, so it stays out of the shell's "
                                       "history)")],
) -> None:
    """Print ``sha256:<hex>`` of an API key: the line to write in a key file instead of the key.

    zephyra privacy hash-key sk-secret     # then: echo "sha256:... name=alice scopes=generate" >> keys.txt
    """
    from .auth import hash_key as _hash

    if key == "-":
        key = sys.stdin.readline().strip()
    typer.echo(_hash(key))
