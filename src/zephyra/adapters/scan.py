"""The one scanner of an adapters directory: what the runtime, the router, the evaluation and the CLI all mean by
"the adapters under runs/adapters".

    scan_adapters("runs/adapters")            # {"chemistry": Path("runs/adapters/chemistry"), ...}
    scan_adapters("runs/adapters/python")     # a single adapter directory: {"python": ...}

The rules:
- an adapter directory holds PEFT's ``adapter_config.json``; ``root`` itself may be one, else its direct
  subdirectories are looked at (hidden ones, such as an atomic write still in progress, never);
- an adapter's name is its manifest's ``name`` (then ``domain``), or the directory's name for a plain PEFT
  directory without our manifest;
- two adapters with one name, or an adapter named ``base`` or ``auto`` (the runtime's reserved names), are a
  one-line ``ArtifactError`` naming the directories.
No adapters is not an error here (a system is trained stage by stage): callers that need some say so.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ArtifactError

RESERVED = ("base", "auto")  # what a request names instead of an adapter


def adapter_name(adapter_dir: str | os.PathLike) -> str:
    """The name an adapter directory is known by (see the module docstring)."""
    from ..manifest import read_manifest

    d = Path(adapter_dir)
    try:
        manifest = read_manifest(d)
    except FileNotFoundError:  # a plain PEFT directory
        manifest = {}
    return str(manifest.get("name") or manifest.get("domain") or d.name)


def scan_adapters(root: str | os.PathLike | None) -> dict[str, Path]:
    """Name -> directory of every adapter at or directly under ``root``, sorted by name; {} when ``root`` is
    None, absent, or holds none."""
    if root is None or not Path(root).is_dir():
        return {}
    root = Path(root)
    dirs = [root] if (root / "adapter_config.json").is_file() else sorted(
        p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / "adapter_config.json").is_file())
    found: dict[str, Path] = {}
    for d in dirs:
        name = adapter_name(d)
        if name in RESERVED:
            raise ArtifactError(f"{d}: an adapter may not be named {name!r} (reserved for the runtime); rename it")
        if name in found:
            raise ArtifactError(f"{root}: two adapters named {name!r} ({found[name].name}, {d.name}); rename one")
        found[name] = d
    return dict(sorted(found.items()))
