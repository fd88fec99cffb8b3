"""Lazy package exports: a package's names are imported on first use, so importing one light module of it (its
``cli``, its errors) never pulls in torch, transformers or PEFT. What keeps ``zephyra --help`` fast.

    # in a package's __init__.py
    from .._lazy import exports
    __getattr__, __dir__, __all__ = exports(__name__, {"trainer": ["train"], "config": ["TrainConfig"]})
"""

from __future__ import annotations

import importlib
from collections.abc import Callable


def exports(package: str, names: dict[str, list[str]]) -> tuple[Callable, Callable, list[str]]:
    """(``__getattr__``, ``__dir__``, ``__all__``) for ``package``: ``names`` maps a submodule (relative, e.g.
    ``"trainer"`` or ``"..errors"``) to the names it provides."""
    where = {name: module for module, provided in names.items() for name in provided}
    module_globals = importlib.import_module(package).__dict__

    def __getattr__(name: str):
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = where[name] if where[name].startswith(".") else "." + where[name]
        value = getattr(importlib.import_module(_absolute(package, module)), name)
        module_globals[name] = value  # later look-ups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(module_globals) | set(where))

    return __getattr__, __dir__, sorted(where)


def _absolute(package: str, relative: str) -> str:
    dots = len(relative) - len(relative.lstrip("."))
    parts = package.split(".")
    base = parts[: len(parts) - dots + 1]
    rest = relative.lstrip(".")
    return ".".join(base + ([rest] if rest else []))
