"""The registry of versions: adapters and routers stored as immutable, content-hashed versions, with the aliases
``stable`` and ``canary`` per name and an append-only deployment log. MLflow's versions and aliases, for files.

    <root>/<name>/versions/<version>/   a copy of the artifact directory (files read-only); version = the first
                                        12 hex digits of its files' hash (the server's adapter version)
    <root>/<name>/aliases.json          {"stable", "canary", "canary_percent"}, replaced atomically
    <root>/log.jsonl                    one line per transition: time, who, name, action, from, to, why

    reg = Registry("runs/registry")
    v = reg.push("runs/adapters/python", "python", why="retrained")   # the first version of a name is stable
    reg.canary("python", v, percent=20)                              # shadow=True: it answers copies only
    reg.promote("python")                                              # canary -> stable
    reg.rollback("python")                                             # stable -> the one before

Every change writes a temp file and renames it (a version directory, aliases.json) or appends one whole line
(the log), so a crash leaves the registry as it was or as it became, never half-written. Bad input (not an
artifact directory, an unknown name or version, a percent outside 0-100) is a one-line ``RegistryError``.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import ArtifactError
from ..io import atomic_directory, atomic_write_json, sha256_dir

VERSION_CHARS = 12
META = ".registry.json"  # what the registry adds to a stored version: kind, source, when, metrics
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class RegistryError(ArtifactError):
    """A registry operation that cannot be done; the message is one line."""


def artifact_kind(path: Path) -> str:
    """"adapter" (a PEFT directory) or "router" (a router directory), else a RegistryError."""
    if (path / "adapter_config.json").is_file():
        return "adapter"
    if (path / "router.json").is_file():
        return "router"
    raise RegistryError(f"{path}: not an adapter (no adapter_config.json) or a router (no router.json) directory")


def version_of(path: str | os.PathLike) -> str:
    """An artifact's version: the first hex digits of the hash of its files (not its manifest, which records when
    it was written): the same string ``zephyra serve`` reports."""
    return sha256_dir(path, exclude=("manifest.json", META))[:VERSION_CHARS]


@dataclass
class Aliases:
    stable: str | None = None
    canary: str | None = None
    canary_percent: float = 0.0
    shadow: bool = False  # the canary answers a copy of its share of requests; the users see stable's answers

    def to_dict(self) -> dict:
        return {"stable": self.stable, "canary": self.canary, "canary_percent": self.canary_percent,
                "shadow": self.shadow}


class Registry:
    def __init__(self, root: str | os.PathLike = "runs/registry"):
        self.root = Path(root)

    # --- reading ---
    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "versions").is_dir())

    def _check_name(self, name: str) -> None:
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise RegistryError(f"a registry name is letters, digits, '_', '.', '-' (up to 64), got {name!r}")

    def _known(self, name: str) -> Path:
        self._check_name(name)
        d = self.root / name
        if not (d / "versions").is_dir():
            known = ", ".join(self.names()) or "none"
            raise RegistryError(f"no name {name!r} in the registry {self.root} (known: {known})")
        return d

    def versions(self, name: str) -> list[dict]:
        """Every version of ``name``, oldest first: {"version", "kind", "pushed", "path", "metrics"}."""
        out = []
        for v in (self._known(name) / "versions").iterdir():
            if v.name.startswith("."):
                continue
            meta = json.loads((v / META).read_text()) if (v / META).is_file() else {}
            out.append({"version": v.name, "kind": meta.get("kind"), "pushed": meta.get("pushed"), "path": str(v),
                        "metrics": meta.get("metrics", {})})
        return sorted(out, key=lambda r: (r["pushed"] or "", r["version"]))

    def path(self, name: str, version: str) -> Path:
        p = self._known(name) / "versions" / version
        if not p.is_dir():
            have = ", ".join(r["version"] for r in self.versions(name))
            raise RegistryError(f"{name} has no version {version!r} (versions: {have})")
        return p

    def aliases(self, name: str) -> Aliases:
        f = self._known(name) / "aliases.json"
        return Aliases(**json.loads(f.read_text())) if f.is_file() else Aliases()

    def show(self, name: str) -> dict:
        return {"name": name, **self.aliases(name).to_dict(), "versions": self.versions(name)}

    def list(self) -> list[dict]:
        return [{"name": n, **self.aliases(n).to_dict(), "versions": len(self.versions(n))} for n in self.names()]

    def log(self, name: str | None = None) -> list[dict]:
        f = self.root / "log.jsonl"
        if not f.is_file():
            return []
        rows = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
        return [r for r in rows if name is None or r["name"] == name]

    # --- changing ---
    def _record(self, name: str, action: str, before, after, why: str | None, who: str | None) -> dict:
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "who": who or _user(), "name": name,
                 "action": action, "from": before, "to": after, "why": why}
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "log.jsonl", "a", encoding="utf-8") as f:  # one whole line per write
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return entry

    def note(self, name: str, action: str, before, after, why: str, *, who: str | None = None) -> dict:
        """A log line for an outcome that changes no alias (a gate's refusal, a rule held for a person)."""
        self._known(name)
        return self._record(name, action, before, after, why, who)

    def _set_aliases(self, name: str, aliases: Aliases) -> None:
        atomic_write_json(self.root / name / "aliases.json", aliases.to_dict())

    def push(self, src: str | os.PathLike, name: str, *, why: str | None = None, who: str | None = None) -> str:
        """Store ``src`` as a version of ``name`` (once: the same files are the same version). The first version
        of a name becomes ``stable``. Returns the version."""
        self._check_name(name)
        src = Path(src)
        if not src.is_dir():
            raise RegistryError(f"{src}: no such directory")
        kind = artifact_kind(src)
        version = version_of(src)
        d = self.root / name / "versions"
        if d.is_dir():
            kinds = {r["kind"] for r in self.versions(name)} - {None}
            if kinds and kind not in kinds:
                raise RegistryError(f"{name} holds {kinds.pop()} versions; {src} is a {kind}")
        target = d / version
        if target.is_dir():
            return version
        with atomic_directory(target) as tmp:
            shutil.copytree(src, tmp, dirs_exist_ok=True)
            manifest = json.loads((src / "manifest.json").read_text()) if (src / "manifest.json").is_file() else {}
            (tmp / META).write_text(json.dumps(
                {"kind": kind, "source": str(src.resolve()), "pushed": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                     time.gmtime()),
                 "metrics": manifest.get("metrics", {}), "base": (manifest.get("base") or {}).get("fingerprint")}))
            for p in tmp.rglob("*"):  # immutable: read-only files
                if p.is_file():
                    p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
        self._record(name, "push", None, version, why, who)
        aliases = self.aliases(name)
        if aliases.stable is None:
            self._set_aliases(name, Aliases(stable=version))
            self._record(name, "promote", None, version, "the first version of a name is stable", who)
        return version

    def canary(self, name: str, version: str, percent: float, *, shadow: bool = False, why: str | None = None,
               who: str | None = None) -> Aliases:
        """Send ``percent`` of ``name``'s traffic to ``version`` (0: none; the alias stays for a person).
        ``shadow``: the canary answers a copy of those requests and the users get stable's answers."""
        self.path(name, version)
        if isinstance(percent, bool) or not isinstance(percent, (int, float)) or not 0 <= percent <= 100:
            raise RegistryError(f"canary percent must be between 0 and 100, got {percent!r}")
        aliases = self.aliases(name)
        if version == aliases.stable:
            raise RegistryError(f"{name}@{version} is already stable; a canary is another version")
        before = aliases.canary
        aliases.canary, aliases.canary_percent, aliases.shadow = version, float(percent), bool(shadow)
        self._set_aliases(name, aliases)
        self._record(name, f"canary {percent:g}%" + (" (shadow)" if shadow else ""), before, version, why, who)
        return aliases

    def promote(self, name: str, version: str | None = None, *, why: str | None = None,
                who: str | None = None) -> Aliases:
        """Make ``version`` (default: the canary) stable; the canary ends."""
        aliases = self.aliases(name)
        version = version or aliases.canary
        if version is None:
            raise RegistryError(f"{name} has no canary to promote; name a version (NAME@VERSION)")
        self.path(name, version)
        before = aliases.stable
        self._set_aliases(name, Aliases(stable=version))
        self._record(name, "promote", before, version, why, who)
        return self.aliases(name)

    def rollback(self, name: str, *, why: str | None = None, who: str | None = None) -> Aliases:
        """End the canary, if any; with none, make stable the version that was stable before this one."""
        aliases = self.aliases(name)
        if aliases.canary is not None:
            self._set_aliases(name, Aliases(stable=aliases.stable))
            self._record(name, "rollback", aliases.canary, aliases.stable, why or "canary ended", who)
            return self.aliases(name)
        previous = [e["from"] for e in self.log(name) if e["action"] == "promote" and e["to"] == aliases.stable
                    and e["from"]]
        if not previous:
            raise RegistryError(f"{name}@{aliases.stable} has no earlier stable version to roll back to")
        self._set_aliases(name, Aliases(stable=previous[-1]))
        self._record(name, "rollback", aliases.stable, previous[-1], why, who)
        return self.aliases(name)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
