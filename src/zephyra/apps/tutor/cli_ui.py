"""``zephyra tutor ui``: the tutor's Streamlit app (ui.py), added to the tutor's app by ``register``.

    zephyra serve --tutor runs/tutor --api-key sk-local &
    zephyra tutor ui --server http://127.0.0.1:8000 --api-key sk-local        # http://localhost:8501
    zephyra tutor ui --base runs/phase2/final --root runs/tutor              # the tutor in the app's process
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from ... import clikit

UI = Path(__file__).with_name("ui.py")
MAX_UPLOAD_MB = 20  # vision.MAX_BYTES in MiB, the backend's limit (a test holds them equal; vision imports torch)


def streamlit_command(port: int, address: str = "localhost") -> list[str]:
    """``streamlit run ui.py``, headless (no browser opened, no usage statistics sent)."""
    return [sys.executable, "-m", "streamlit", "run", str(UI), "--server.headless", "true",
            "--server.port", str(port), "--server.address", address, "--browser.gatherUsageStats", "false",
            "--client.toolbarMode", "minimal",  # no "Deploy" button
            "--server.maxUploadSize", str(MAX_UPLOAD_MB)]  # the uploader says the backend's limit, not 200 MB


def ui_env(server: str | None, api_key: str | None, base: Path, root: Path) -> dict[str, str]:
    """The app's settings, in its environment (the key stays off the command line)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZEPHYRA_TUTOR_UI_")}
    env.update({"ZEPHYRA_TUTOR_UI_BASE": str(base), "ZEPHYRA_TUTOR_UI_ROOT": str(root)})
    if server:
        env["ZEPHYRA_TUTOR_UI_SERVER"] = server
    if api_key:
        env["ZEPHYRA_TUTOR_UI_API_KEY"] = api_key
    return env


def ui(server: Annotated[str | None, typer.Option(help="the backend (zephyra serve --tutor); without it the tutor "
                                                       "runs in the app's process")] = None,
       api_key: Annotated[str | None, typer.Option(envvar="ZEPHYRA_API_KEY", help="the server's key")] = None,
       port: Annotated[int, typer.Option(min=1, max=65535, help="the app's port")] = 8501,
       address: Annotated[str, typer.Option(help="the address the app listens on")] = "localhost",
       base: Annotated[Path, typer.Option(help="the base model (in-process only)")] = Path("runs/phase2/final"),
       root: Annotated[Path, typer.Option(help="the tutor's indexes, adapters, vision (in-process only)")]
       = Path("runs/tutor")) -> None:
    """The tutor's Streamlit app: chat, subject, image upload, reading options, and the steps behind each turn."""
    if server and not server.startswith(("http://", "https://")):
        clikit.fail(f"--server must be the backend's http(s) URL (zephyra serve --tutor), got {server!r}")
    if not server and not (base / "config.json").is_file():
        clikit.fail(f"--base {base}: no model there (run the quickstart, pass --base, or --server URL)")
    typer.echo(f"the tutor's app on http://{address}:{port} ({server or 'in-process'}); Ctrl-C stops it", err=True)
    try:
        rc = subprocess.call(streamlit_command(port, address), env=ui_env(server, api_key, base, root))
    except KeyboardInterrupt:
        rc = 0
    raise typer.Exit(rc)


def register(app) -> None:
    """Add this part's verb to the tutor's Typer app."""
    app.command("ui")(ui)
