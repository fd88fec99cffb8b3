"""A new adapter domain from your own files, laid out as ``zephyra data build`` lays out the packaged ones, so
the same adapter training and router training take it: the open adapter set's way in.

    zephyra data domain astronomy --text notes/ --qa questions.jsonl --root runs/data
    zephyra train adapter --domain astronomy --base runs/phase2/final
    zephyra router train --kind inmodel --model runs/phase2/final --adapters runs/adapters   # now with astronomy

Writes ``<root>/domains/<name>/raw`` (the curated text: train / validation / test by document) and, from a JSONL
file of ``{"question", "answer"}`` lines, ``<root>/domains/<name>/qa`` (the router's prompts for the new label,
and the adapter's question/answer share). Atomic: a failure leaves no half-written domain.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from ..errors import ConfigError, DataError
from .config import BuildConfig, CurateConfig, SplitConfig
from .records import make_qa

NAME = re.compile(r"^[a-z][a-z0-9_-]{0,47}$")
RESERVED = ("base", "auto")
SPLITS = ("train", "validation", "test")


def read_qa(path: str | os.PathLike, domain: str) -> list[dict]:
    """Question/answer rows from JSONL (``{"question", "answer"}``, optional ``entity``), or a one-line
    DataError naming the line."""
    from ..io import read_jsonl

    path = Path(path)
    rows = []
    for n, obj in read_jsonl(path):
        if not isinstance(obj, dict) or not all(isinstance(obj.get(k), str) and obj[k].strip()
                                                for k in ("question", "answer")):
            raise DataError(f'{path} line {n}: expected {{"question": "...", "answer": "..."}}')
        question = obj["question"].strip()
        rows.append(make_qa(question, obj["answer"].strip(), domain, f"user:{path.name}",
                            doc_id=f"{path.name}:{question.casefold()}", entity=str(obj.get("entity") or "")))
    if not rows:
        raise DataError(f"{path}: no questions in it")
    return rows


def build_domain(root: str | os.PathLike, name: str, files: list[str | os.PathLike], qa_file=None, *,
                 licence: str = "unknown", on_error: str = "fail", curate_config: CurateConfig | None = None,
                 split: SplitConfig | None = None, force: bool = False) -> dict:
    """Curate ``files`` into ``<root>/domains/<name>/raw`` (and ``qa_file`` into ``.../qa``); returns the rows per
    split. A domain already there is refused unless ``force``."""
    from ..config import to_dict
    from ..io import atomic_directory, sha256_file
    from .build import _assign, _qa_rows
    from .curate import curate
    from .sources.userfiles import ReadStats, expand, read_files
    from .store import save_splits

    if not NAME.match(name) or name in RESERVED:
        raise ConfigError(f"domain name {name!r}: use lowercase letters, digits, - or _ (not base or auto)")
    target = Path(root) / "domains" / name
    if target.exists() and not force:
        raise ConfigError(f"{target} exists: pick another name, or pass --force to replace it")
    t0 = time.time()
    cfg, split = curate_config or CurateConfig(), split or SplitConfig()
    paths = expand(list(files))
    stats = ReadStats()
    records = list(read_files(paths, on_error=on_error, domain=name, licence=licence, stats=stats))
    kept, curation = curate(records, cfg)
    if not kept:
        raise DataError(f"no text left for domain {name!r} after reading and curating {len(records)} records "
                        f"from {len(paths)} file(s)")
    qas = _qa_rows(read_qa(qa_file, name)) if qa_file is not None else []

    # documents split by their ids, as the packaged domains are (validation and test never left empty)
    assign = _assign([{r["doc_id"] for r in kept}, {q["doc_id"] for q in qas}], BuildConfig(split=split))
    raw = {s: [r for r in kept if assign[r["doc_id"]] == s] for s in SPLITS}
    qa = {s: [q for q in qas if assign[q["doc_id"]] == s] for s in SPLITS}
    inputs = {str(p): {"sha256": sha256_file(p)} for p in paths}
    if qa_file is not None:
        inputs[str(qa_file)] = {"sha256": sha256_file(qa_file)}
    with atomic_directory(target) as tmp:
        save_splits(tmp / "raw", "raw", raw, name=f"domains/{name}/raw", domain=name, curate_config=to_dict(cfg),
                    curation=curation, reading=stats.as_dict(), inputs=inputs,
                    metrics={"seconds": round(time.time() - t0, 2)})
        if qas:
            save_splits(tmp / "qa", "qa", qa, name=f"domains/{name}/qa", domain=name, inputs=inputs,
                        parents=[f"domains/{name}/raw"])
    return {"raw": {s: len(v) for s, v in raw.items()}, "qa": {s: len(v) for s, v in qa.items()},
            "dropped": curation.get("dropped", {}), "out": str(target)}
