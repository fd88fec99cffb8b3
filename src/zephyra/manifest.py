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
        record = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise ArtifactError(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise ArtifactError(f"{path}: malformed JSON at line {e.lineno}: {e.msg}") from None
    if not isinstance(record, dict):
        raise ArtifactError(f"{path}: a manifest is a JSON object, got {type(record).__name__}")
    return record


def file_table(directory: str | os.PathLike, recursive: bool = False) -> dict[str, dict]:
    """``{name: {"sha256", "bytes"}}`` of every file in ``directory`` but the manifest (``recursive``: files in
    sub-directories too, by their relative POSIX path), for ``write_manifest(..., files=...)`` and
    ``verify_files`` at load."""
    from .io import sha256_file

    directory = Path(directory)
    found = directory.rglob("*") if recursive else directory.iterdir()
    return {p.relative_to(directory).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
            for p in sorted(found) if p.is_file() and p.relative_to(directory).as_posix() != MANIFEST}


def verify_files(directory: str | os.PathLike, manifest: dict | None = None) -> dict:
    """``manifest`` (read from ``directory`` when None) once every file its ``files`` table lists (``{name:
    {"sha256", "bytes"}}``, as training writes beside a model) is there with its size and hash; a one-line
    ArtifactError naming the first file that is missing or changed. A manifest with no table checks nothing."""
    from .io import safe_name, sha256_file

    directory = Path(directory)
    if manifest is None:
        manifest = read_manifest(directory)
    files = manifest.get("files") or {}
    if not isinstance(files, dict):
        raise ArtifactError(f"{directory / MANIFEST}: 'files' is not a table of name -> sha256")
    for name, rec in sorted(files.items()):
        path = directory / safe_name(name, "a manifest's file", slash=True)
        want = rec.get("sha256") if isinstance(rec, dict) else rec
        if not path.is_file():
            raise ArtifactError(f"{path}: missing (listed in {MANIFEST})")
        if isinstance(rec, dict) and rec.get("bytes") is not None and path.stat().st_size != rec["bytes"]:
            raise ArtifactError(f"{path}: {path.stat().st_size} bytes, {MANIFEST} says {rec['bytes']} (changed or "
                                "truncated); refused")
        if sha256_file(path) != want:
            raise ArtifactError(f"{path}: does not match its sha256 in {MANIFEST} (changed or corrupt); refused")
    return manifest
