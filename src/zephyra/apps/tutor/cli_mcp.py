"""``zephyra mcp``: the Socratic tutor as an MCP server (mcp_server.py), over stdio or streamable HTTP. Imports
only typer: the SDK and the model load inside the verb."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ... import clikit


def mcp(transport: Annotated[str, typer.Option(help="stdio (a client launches this command) or http "
                                                    "(streamable HTTP at http://HOST:PORT/mcp)")] = "stdio",
        host: Annotated[str, typer.Option(help="the address to listen on (http)")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="the port to listen on (http)")] = 8765,
        root: Annotated[Path, typer.Option(help="the tutor's indexes and adapters")] = Path("runs/tutor"),
        base: Annotated[Path, typer.Option(help="the base model (loaded at the first tutor_ask)")]
        = Path("runs/phase2/final"),
        sessions: Annotated[Path, typer.Option(help="one JSONL file per session id")]
        = Path("runs/tutor/sessions")) -> None:
    """The Socratic tutor as an MCP server: its tools, tutor_ask, the subjects and sessions as resources, and the
    socratic_tutor prompt.

    zephyra mcp --transport stdio --root runs/tutor --base runs/phase2/final
    """
    if transport not in ("stdio", "http"):
        clikit.fail(f"--transport {transport!r}: expected stdio or http")
    if not 0 < port < 65536:
        clikit.fail(f"--port {port}: expected 1-65535")
    # checked before the transport starts (stdio would otherwise wait on its input first); a missing base is
    # allowed (the tools work without it, tutor_ask says so in one line), a missing tutor root is a typo
    if not root.is_dir():
        clikit.fail(f"--root {root}: {'a file' if root.exists() else 'no such directory'}, not the tutor's "
                    "directory (zephyra tutor data --out DIR makes one)")
    for flag, path in (("--base", base), ("--sessions", sessions)):
        if path.exists() and not path.is_dir():
            clikit.fail(f"{flag} {path}: a file, not a directory")
    from .mcp_server import serve

    serve(transport, host=host, port=port, root=root, base=base, sessions=sessions)
