"""``manifest.json``: what produced an artifact (command, resolved config, versions), its inputs' hashes,
its parents and its metrics. Every artifact directory carries one (DESIGN.md, "Contracts")."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path

from .errors import ArtifactError
from .io import atomic_write_json

MANIFEST = "manifest.json"


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("zephyra", "torch", "transformers", "tokenizers", "peft", "datasets"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def write_manifest(directory: str | os.PathLike, kind: str, *, config: dict | None = None,
                   inputs: dict | None = None, parents: list | None = None, metrics: dict | None = None,
                   **extra) -> Path:
    """Write ``directory/manifest.json`` atomically and return its path."""
    record = {
        "kind": kind,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "versions": versions(),
        "config": config or {},
        "inputs": inputs or {},
        "parents": parents or [],
        "metrics": metrics or {},
        **extra,
    }
    return atomic_write_json(Path(directory) / MANIFEST, record)


def read_manifest(directory: str | os.PathLike) -> dict:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{directory}: no {MANIFEST} (is this a zephyra artifact directory?)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ArtifactError(f"{path}: malformed JSON at line {e.lineno}: {e.msg}") from None
