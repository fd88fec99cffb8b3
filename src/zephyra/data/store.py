"""Writing and reading the datasets: HF ``DatasetDict`` saved with ``save_to_disk``, plus ``manifest.json``.

Layout under ROOT (the contract other tools code against):
    phase1/               train, validation: prompt, response, kind, word, category
    phase2/               train, validation: text, source, licence
    domains/<d>/raw/      train, validation, test: text, source, licence
    domains/<d>/qa/       train, validation, test: question, answer, source
    router/               train, validation, test: prompt, label, template
    manifest.json         the build summary (sources, counts, drops, timings, peak RSS)
"""

from __future__ import annotations

import os
from pathlib import Path

from ..io import sha256_dir
from ..manifest import write_manifest

COLUMNS: dict[str, tuple[str, ...]] = {
    "phase1": ("prompt", "response", "kind", "word", "category"),
    "phase2": ("text", "source", "licence"),
    "raw": ("text", "source", "licence"),
    "qa": ("question", "answer", "source", "doc_id", "entity"),  # doc_id: the source entry (retrieval's gold)
    # qa with the passages a prompt carries (one a line): trained as the runtime puts them (training/data.py)
    "qa_sources": ("question", "answer", "source", "doc_id", "entity", "sources"),
    "router": ("prompt", "label", "template"),
    "curated": ("text", "domain", "source", "licence"),
}


def save_splits(path: Path, kind: str, splits: dict[str, list[dict]], **manifest) -> dict:
    """Save ``splits`` as a DatasetDict with the ``kind``'s columns (all strings, so an empty split still has
    its schema) and write the manifest; returns the row counts and content hash."""
    from datasets import Dataset, DatasetDict, Features, Value

    cols = COLUMNS[kind]
    features = Features({c: Value("string") for c in cols})
    dd = DatasetDict({name: Dataset.from_dict({c: [r.get(c, "") for r in rows] for c in cols}, features=features)
                      for name, rows in splits.items()})
    # datasets 5.2 writes no shard for an empty split and then cannot load it: give empty splits one shard
    dd.save_to_disk(str(path), num_shards={name: 1 if not rows else None for name, rows in splits.items()})
    rows = {name: len(v) for name, v in splits.items()}
    info = {"rows": rows, "sha256": sha256_dir(path)}
    metrics = {**manifest.pop("metrics", {}), **info}
    write_manifest(path, "dataset", metrics=metrics, columns=list(cols), splits=list(splits), **manifest)
    return info


def save_dataset(path: Path, kind: str, rows: list[dict], **manifest) -> dict:
    """One ``Dataset`` (no splits), e.g. the output of ``zephyra data curate``."""
    from datasets import Dataset, Features, Value

    cols = COLUMNS[kind]
    features = Features({c: Value("string") for c in cols})
    Dataset.from_dict({c: [r.get(c, "") for r in rows] for c in cols}, features=features).save_to_disk(
        str(path), num_shards=1 if not rows else None)  # see save_splits: an empty dataset needs one shard
    info = {"rows": len(rows), "sha256": sha256_dir(path)}
    write_manifest(path, "dataset", metrics={**manifest.pop("metrics", {}), **info}, columns=list(cols),
                   **manifest)
    return info


def load(root: str | os.PathLike, name: str):
    """``load("runs/data", "domains/python/qa")`` -> the saved ``DatasetDict`` (or ``Dataset``).

    Built by ``zephyra data build --out runs/data``."""
    from datasets import load_from_disk

    path = Path(root) / name
    if not (path / "manifest.json").is_file():
        raise FileNotFoundError(f"{path}: no dataset here (build it with `zephyra data build --out {root}`)")
    return load_from_disk(str(path))
