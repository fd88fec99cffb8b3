"""The registry of versions: adapters, routers and datasets stored as immutable, content-hashed versions, with
the aliases ``stable`` and ``canary`` per name and an append-only deployment log. MLflow's versions and aliases,
for files.

    <root>/<name>/versions/<version>/   a copy of the artifact directory (files read-only); version = the first
                                        12 hex digits of its files' hash (the server's adapter version)
    <root>/<name>/aliases.json          {"stable", "canary", "canary_percent"}, replaced atomically
    <root>/log.jsonl                    one line per transition: time, who, name, action, from, to, why

    reg = Registry("runs/registry")
    v = reg.push("runs/adapters/python", "python", why="retrained")   # the first version of a name is stable
    reg.canary("python", v, percent=20)                              # shadow=True: it answers copies only
    reg.promote("python")                                              # canary -> stable
    reg.rollback("python")                                             # stable -> the one before

A dataset version (``zephyra registry push-data runs/data``) also records its splits' hashes, which adapter
manifests record as their inputs: ``trained_on`` lists the adapters trained on a version, ``check_source`` reports
a corpus that no longer matches what was registered, and ``rollback`` then ``restore`` put the old one back.

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

from ..errors import ArtifactError, UnsafeNameError
from ..io import append_line, atomic_directory, atomic_write_json, safe_name, sha256_dir, sha256_file

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
    if (path / "dataset_dict.json").is_file() or (path / "dataset_info.json").is_file():
        return "dataset"  # a saved (HF) dataset: zephyra data build / curate
    raise RegistryError(f"{path}: not an adapter (no adapter_config.json), a router (no router.json) or a dataset "
                        "(no dataset_dict.json) directory")


def dataset_splits(path: str | os.PathLike) -> dict[str, str]:
    """A dataset directory's hash per split (``sha256_dir`` of the split's directory, as an adapter's manifest
    records its training data in ``inputs``); a dataset without splits: {"": its hash}."""
    path = Path(path)
    splits = {p.name: sha256_dir(p) for p in sorted(path.iterdir())
              if p.is_dir() and (p / "dataset_info.json").is_file()}
    return splits or {"": sha256_dir(path, exclude=("manifest.json", META))}


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
        _safe(name, "a registry name")  # no path out of the registry (io.safe_name), then its own alphabet
        if not NAME.fullmatch(name):
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
            meta = _read_json(v / META, {}) if (v / META).is_file() else {}
            out.append({"version": v.name, "kind": meta.get("kind"), "pushed": meta.get("pushed"), "path": str(v),
                        "metrics": meta.get("metrics", {})})
        return sorted(out, key=lambda r: (r["pushed"] or "", r["version"]))

    def path(self, name: str, version: str) -> Path:
        p = self._known(name) / "versions" / _safe(version, f"{name}'s version")
        if not p.is_dir():
            have = ", ".join(r["version"] for r in self.versions(name))
            raise RegistryError(f"{name} has no version {version!r} (versions: {have})")
        return p

    def verify(self, name: str, version: str) -> Path:
        """The directory of ``name@version`` once its files still hash to its version, else a one-line
        RegistryError naming the file that changed (each file's hash is recorded at the push; a version pushed
        before that is checked as a whole)."""
        path = self.path(name, version)
        meta = json.loads((path / META).read_text()) if (path / META).is_file() else {}
        files = meta.get("files") or {}
        for rel, digest in sorted(files.items()):
            f = path / _safe(rel, "a stored file", slash=True)
            if not f.is_file():
                raise RegistryError(f"{name}@{version}: {rel} is missing (changed after the push)")
            if sha256_file(f) != digest:
                raise RegistryError(f"{name}@{version}: {rel} does not match its sha256 (changed or corrupt)")
        extra = sorted(str(q.relative_to(path)) for q in path.rglob("*") if q.is_file()
                       and q.name not in ("manifest.json", META) and str(q.relative_to(path)) not in files)
        if files and extra:
            raise RegistryError(f"{name}@{version}: {extra[0]} was added after the push")
        found = version_of(path)
        if found != version:
            raise RegistryError(f"{name}@{version}: its files hash to {found}, not to its version (changed or corrupt)")
        return path

    def aliases(self, name: str) -> Aliases:
        f = self._known(name) / "aliases.json"
        return _aliases(f, _read_json(f, {})) if f.is_file() else Aliases()

    def show(self, name: str) -> dict:
        return {"name": name, **self.aliases(name).to_dict(), "versions": self.versions(name)}

    def list(self) -> list[dict]:
        return [{"name": n, **self.aliases(n).to_dict(), "versions": len(self.versions(n))} for n in self.names()]

    def log(self, name: str | None = None) -> list[dict]:
        f = self.root / "log.jsonl"
        if not f.is_file():
            return []
        rows = []
        for n, line in enumerate(f.read_bytes().splitlines(), 1):
            if line.strip():
                row = _parse_json(line, f"{f} line {n}")
                if not isinstance(row, dict) or not isinstance(row.get("name"), str):
                    raise RegistryError(f"{f} line {n}: not a log entry (an object with a name)")
                rows.append(row)
        return [r for r in rows if name is None or r["name"] == name]

    # --- changing ---
    def _record(self, name: str, action: str, before, after, why: str | None, who: str | None) -> dict:
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "who": who or _user(), "name": name,
                 "action": action, "from": before, "to": after, "why": why}
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            append_line(self.root / "log.jsonl", json.dumps(entry))  # one whole line, or none (a full disk)
        except OSError as e:
            raise RegistryError(f"{self.root / 'log.jsonl'}: could not log {name} {action} ({_reason(e)}); "
                                "the log is unchanged") from None
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
        if target.is_dir():  # pushed before; finish what a push killed after its rename left undone
            if not any(e["action"] == "push" and e["to"] == version for e in self.log(name)):
                self._record(name, "push", None, version, why or "recorded after an interrupted push", who)
            self._first_is_stable(name, version, who)
            return version
        try:
            self._store(src, target, kind)
        except OSError as e:  # a full disk, a quota: the temp version is removed, the registry unchanged
            raise RegistryError(f"{name}: could not store {src} as version {version} under {d} ({_reason(e)}); "
                                "the registry is unchanged") from None
        self._record(name, "push", None, version, why, who)
        self._first_is_stable(name, version, who)
        return version

    def _first_is_stable(self, name: str, version: str, who: str | None) -> None:
        if self.aliases(name).stable is None:
            self._set_aliases(name, Aliases(stable=version))
            self._record(name, "promote", None, version, "the first version of a name is stable", who)

    def _store(self, src: Path, target: Path, kind: str) -> None:
        with atomic_directory(target) as tmp:
            shutil.copytree(src, tmp, dirs_exist_ok=True)
            manifest = json.loads((src / "manifest.json").read_text()) if (src / "manifest.json").is_file() else {}
            (tmp / META).write_text(json.dumps(
                {"kind": kind, "source": str(src.resolve()), "pushed": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                     time.gmtime()),
                 "metrics": manifest.get("metrics", {}), "base": (manifest.get("base") or {}).get("fingerprint"),
                 **({"splits": dataset_splits(src)} if kind == "dataset" else {}),
                 "files": {str(p.relative_to(tmp)): sha256_file(p) for p in sorted(tmp.rglob("*"))
                           if p.is_file() and p.name not in ("manifest.json", META)}}))
            for p in tmp.rglob("*"):  # immutable: read-only files
                if p.is_file():
                    p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))

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

    # --- datasets: lineage, drift, restore ---
    def _dataset_meta(self, name: str, version: str) -> dict:
        meta = _read_json(self.path(name, version) / META, {})
        if meta.get("kind") != "dataset":
            raise RegistryError(f"{name}@{version} is {meta.get('kind') or 'not'} a dataset version")
        return meta

    def trained_on(self, name: str, version: str | None = None, adapters=()) -> list[dict]:
        """The adapters trained on dataset ``name@version`` (None: on any of its versions): every registered
        adapter version, and every adapter directory found under the ``adapters`` directories, whose manifest
        records this dataset version (``config.run.datasets``) or one of its split hashes (``inputs``: older
        adapters too). [{"adapter", "version", "path", "dataset", "dataset_version", "inputs"}]"""
        targets = {v: self._dataset_meta(name, v).get("splits", {})
                   for v in ([version] if version else [r["version"] for r in self.versions(name)])}
        found = [({"adapter": n, "version": r["version"], "path": r["path"]}, Path(r["path"]))
                 for n in self.names() for r in self.versions(n) if r["kind"] == "adapter"]
        for root in adapters:
            found += [({"adapter": m.parent.name, "version": None, "path": str(m.parent)}, m.parent)
                      for m in sorted(Path(root).rglob("manifest.json"))
                      if (m.parent / "adapter_config.json").is_file()]
        out = []
        for label, d in found:
            try:
                man = json.loads((d / "manifest.json").read_text())
            except (OSError, ValueError):
                continue
            inputs = man.get("inputs") if isinstance(man.get("inputs"), dict) else {}
            recorded = ((man.get("config") or {}).get("run") or {}).get("datasets") or {}
            versions = {x.get("version") for x in recorded.values() if isinstance(x, dict)}
            groups: dict[str, dict[str, str]] = {}  # "python/raw" -> {"train": hash, "validation": hash}
            for key, h in inputs.items():
                prefix, _, split = str(key).rpartition("/")
                groups.setdefault(prefix, {})[split] = h
            for v, splits in targets.items():  # a dataset read matches when every split it read matches
                hit = sorted(f"{p}/{s}" for p, g in groups.items() if all(splits.get(s) == h for s, h in g.items())
                             for s in g)
                if v in versions or hit:
                    out.append({**label, "dataset": name, "dataset_version": v, "inputs": hit})
        return out

    def check_source(self, name: str, version: str | None = None) -> dict:
        """Whether the directory dataset ``name@version`` (None: stable) was pushed from still holds the same
        files: {"status": "ok" | "changed" | "missing", "changed": [splits whose hash differs], ...}."""
        version = version or self.aliases(name).stable
        meta = self._dataset_meta(name, version)
        src = Path(meta.get("source", ""))
        row = {"name": name, "version": version, "source": str(src), "status": "ok", "changed": []}
        if not src.is_dir():
            return {**row, "status": "missing"}
        now = dataset_splits(src)
        was = meta.get("splits", {})
        row["changed"] = sorted(k for k in set(was) | set(now) if was.get(k) != now.get(k))
        return {**row, "status": "changed" if row["changed"] else "ok", "current_version": version_of(src)}

    def restore(self, name: str, dest: str | os.PathLike, version: str | None = None) -> Path:
        """Copy ``name@version`` (None: stable, e.g. after ``rollback``) to ``dest``, replacing it atomically, once
        the stored files are verified: a poisoned corpus goes back to the registered one where trainers read it."""
        version = version or self.aliases(name).stable
        src = self.verify(name, version)
        with atomic_directory(Path(dest)) as tmp:
            shutil.copytree(src, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(META))
            for p in tmp.rglob("*"):
                if p.is_file():
                    p.chmod(p.stat().st_mode | stat.S_IWUSR)
        return Path(dest)


def _reason(e: OSError) -> str:
    """An OSError's reason in a few words ("no space left on device"), also for shutil.Error's list of them."""
    if e.strerror:
        return e.strerror.lower()
    found = re.search(r"\[Errno \d+\] ([^:'\"\]]+)", str(e))
    return found.group(1).strip().lower() if found else (str(e).splitlines() or [type(e).__name__])[0][:120]


def _safe(value, what: str, slash: bool = False) -> str:
    try:
        return safe_name(value, what, slash=slash)
    except UnsafeNameError as e:
        raise RegistryError(str(e)) from None


def _parse_json(data: bytes, where: str):
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise RegistryError(f"{where}: not UTF-8 text (corrupt)") from None
    except json.JSONDecodeError as e:
        raise RegistryError(f"{where}: malformed JSON ({e.msg}, column {e.colno}; corrupt)") from None


def _read_json(path: Path, like: dict) -> dict:
    """A registry file that holds one JSON object (aliases.json, a version's META), or a one-line RegistryError."""
    obj = _parse_json(path.read_bytes(), str(path))
    if not isinstance(obj, dict):
        raise RegistryError(f"{path}: expected a JSON object, got {type(obj).__name__} (corrupt)")
    return obj


def _aliases(path: Path, d: dict) -> Aliases:
    unknown = sorted(set(d) - {"stable", "canary", "canary_percent", "shadow"})
    percent = d.get("canary_percent", 0.0)
    if unknown or any(d.get(k) is not None and not isinstance(d[k], str) for k in ("stable", "canary")) \
            or isinstance(percent, bool) or not isinstance(percent, (int, float)) or not 0 <= percent <= 100 \
            or not isinstance(d.get("shadow", False), bool):
        raise RegistryError(f"{path}: not the registry's aliases {{stable, canary, canary_percent, shadow}} (corrupt)")
    return Aliases(**d)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
