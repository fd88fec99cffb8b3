"""What the server takes from the registry (registry/store.py): each adapter's stable version, and its canary
with the share of traffic it gets; and which arm a request goes to, sticky per user or conversation.

    dirs, canaries = registry_adapters(Registry("runs/registry"))
    # dirs: {"python": <stable dir>, "python@3f2a9c1b7d4e": <canary dir>, ...}; canaries: {"python": Canary(...)}
    arm = canary_arm("python", canaries["python"], sticky="user-42")    # "canary" or "stable"
    version, path = registry_router(Registry("runs/registry"))         # its "router", when it holds one
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Canary:
    version: str
    percent: float
    shadow: bool = False  # answers a copy of its share of requests; the users get stable's answers

    def key(self, name: str) -> str:
        """The name the canary's adapter is loaded under, beside the stable one."""
        return f"{name}@{self.version}"


def registry_adapters(registry) -> tuple[dict[str, Path], dict[str, Canary]]:
    """({adapter name or NAME@VERSION: directory}, {name: Canary}) of every adapter name the registry holds."""
    dirs: dict[str, Path] = {}
    canaries: dict[str, Canary] = {}
    for name in registry.names():
        versions = registry.versions(name)
        if not versions or versions[0]["kind"] != "adapter":
            continue
        aliases = registry.aliases(name)
        if aliases.stable is None:
            continue
        dirs[name] = registry.path(name, aliases.stable)
        if aliases.canary is not None and aliases.canary_percent > 0:
            canary = Canary(aliases.canary, aliases.canary_percent, aliases.shadow)
            dirs[canary.key(name)] = registry.path(name, aliases.canary)
            canaries[name] = canary
    return dirs, canaries


def registry_router(registry, name: str = "router") -> tuple[str, Path] | None:
    """(stable version, directory) of the router the registry holds under ``name``, or None when it holds none."""
    if name not in registry.names():
        return None
    versions = registry.versions(name)
    stable = registry.aliases(name).stable
    if not versions or versions[0]["kind"] != "router" or stable is None:
        return None
    return stable, registry.path(name, stable)


def canary_arm(name: str, canary: Canary, sticky: str) -> str:
    """"canary" for ``canary.percent`` of the values of ``sticky`` (a user id, a conversation's first message),
    by a hash: the same user or conversation always gets the same arm."""
    bucket = int.from_bytes(hashlib.sha256(f"{name}\0{sticky}".encode()).digest()[:8], "big") % 10_000
    return "canary" if bucket < canary.percent * 100 else "stable"
