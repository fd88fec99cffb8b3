"""Source plugins: each yields records ``{text, domain, source, licence, doc_id}`` (and Q/A pairs for its
domain) from an installed package, and says which package to install when it is missing.

    from zephyra.data.sources import get_source
    for rec in get_source("foldoc").records(limit=10): ...
"""

from __future__ import annotations

from ...errors import ConfigError
from .base import Package, Source
from .dictd import DevilSource, ElementsSource, FoldocSource, GcideSource, JargonSource
from .geography import GeographySource
from .pydocs import PythonDocsSource
from .scripture import ScriptureSource
from .shakespeare import ShakespeareCastSource, ShakespearePlaysSource
from .userfiles import ReadStats, read_files
from .wordnet import WordNetSource

_CLASSES = (ShakespearePlaysSource, ShakespeareCastSource, WordNetSource, GcideSource, FoldocSource, JargonSource,
            ElementsSource, DevilSource, ScriptureSource, GeographySource, PythonDocsSource)
SOURCE_NAMES: tuple[str, ...] = tuple(cls.name for cls in _CLASSES)

_instances: dict[str, Source] = {}


def get_source(name: str) -> Source:
    """The (per-process) instance of a packaged source; WordNet's parsed index is cached on it."""
    if name not in _instances:
        by_name = {cls.name: cls for cls in _CLASSES}
        if name not in by_name:
            raise ConfigError(f"unknown source {name!r} (known: {', '.join(SOURCE_NAMES)})")
        _instances[name] = by_name[name]()
    return _instances[name]


__all__ = ["Package", "ReadStats", "SOURCE_NAMES", "Source", "get_source", "read_files"]
