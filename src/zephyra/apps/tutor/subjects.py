"""The tutor's subjects on disk, their knowledge indexes and retrieval (docs/tutor.md, "Subjects, textbooks and
retrieval").

Layout under ROOT (``runs/tutor``), the contract the tutor codes against:

    corpus/<subject>/          chunks.jsonl, qa.jsonl, manifest.json: the packaged corpus (``zephyra tutor data``)
    books/<subject>/<book>/    chunks.jsonl, qa.jsonl, manifest.json: one ingested PDF (``zephyra tutor ingest``)
    domains/<subject>/qa/      the Q/A splits of every part above, split by document (the store's "qa" kind)
    index/<subject>/           the knowledge index of every chunk above (``zephyra.retrieval.index``)
    manifest.json              what ``tutor data`` built

A chunk is ``{"id", "doc_id", "subject", "domain", "source", "text"}`` (a book's also has chapter, section, page);
``doc_id`` names the document it came from (a problem, a dictionary entry, a scene, a chapter, a book's section),
and so does a Q/A record's: the splits hold out whole documents, and a question's source chunk is known.

    index = open_subject_index("runs/tutor", "science")
    hits = retrieve(index, "What is a neutron in physics?", k=3)      # [Hit(id, text, score, ...)]
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from ...errors import ArtifactError, ConfigError, DataError

SUBJECTS = ("math", "science", "reading")
SPLITS = {"train": 0.8, "validation": 0.1, "test": 0.1}  # of the documents, not of the records
CHUNK_KEYS = ("id", "doc_id", "subject", "domain", "source", "text")


def check_subject(subject: str) -> str:
    """``subject`` when it is one of SUBJECTS, else a one-line ConfigError."""
    if subject not in SUBJECTS:
        raise ConfigError(f"unknown subject {subject!r}; known: {', '.join(SUBJECTS)}")
    return subject


def split_of(doc_id: str, seed: int = 0) -> str:
    """The split a document belongs to, from a hash of its id: the same on every run and whatever else is built,
    so a held-out document stays held out when a book is added."""
    u = int(hashlib.sha1(f"{seed}:{doc_id}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    edge = 0.0
    for name, share in SPLITS.items():
        edge += share
        if u < edge:
            return name
    return "test"


def split_by_document(records: Iterable[dict], seed: int = 0) -> dict[str, list[dict]]:
    """``records`` into train/validation/test by their ``doc_id``: no document has records in two splits."""
    out: dict[str, list[dict]] = {name: [] for name in SPLITS}
    for r in records:
        out[split_of(r["doc_id"], seed)].append(r)
    return out


# --- reading and writing the parts ------------------------------------------------------------------------------

def write_jsonl(path: Path, rows: Iterable[dict]) -> int:
    """Rows as JSON lines (the caller writes into an atomic directory); returns how many."""
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
            n += 1
    return n


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_part(path: Path, chunks: Sequence[dict], qa: Sequence[dict], **manifest) -> dict:
    """One part of a subject (its corpus, or a book) as chunks.jsonl + qa.jsonl + manifest, replaced atomically."""
    from ...io import atomic_directory
    from ...manifest import write_manifest

    with atomic_directory(path) as tmp:
        metrics = {"chunks": write_jsonl(tmp / "chunks.jsonl", chunks), "qa": write_jsonl(tmp / "qa.jsonl", qa)}
        write_manifest(tmp, "tutor-corpus", metrics=metrics, **manifest)
    return metrics


def part_dirs(root: str | os.PathLike, subject: str) -> list[Path]:
    """The subject's parts under ``root``: its corpus first, then its books in name order."""
    root = Path(root)
    parts = [root / "corpus" / subject] if (root / "corpus" / subject / "manifest.json").is_file() else []
    books = root / "books" / subject
    if books.is_dir():
        parts += sorted(p for p in books.iterdir()  # not ".name.*": a book being replaced, or a temporary
                       if not p.name.startswith(".") and (p / "manifest.json").is_file())
    return parts


def subject_parts(root: str | os.PathLike, subject: str) -> tuple[list[dict], list[dict]]:
    """(every chunk, every Q/A record) of the subject's parts."""
    chunks, qa = [], []
    for part in part_dirs(root, subject):
        chunks += read_jsonl(part / "chunks.jsonl")
        qa += read_jsonl(part / "qa.jsonl")
    return chunks, qa


def publish_subject(root: str | os.PathLike, subject: str, *, dense: bool = True, encoder=None,
                    extra: tuple[list[dict], list[dict]] | None = None, log: Callable[[str], None] = print) -> dict:
    """Rebuild the subject's index and Q/A splits from its parts (plus ``extra`` chunks and records not written
    yet: an ingest indexes its book before writing it, so a failed build leaves nothing). Both are replaced
    atomically; returns their counts."""
    from ...data.store import save_splits
    from ...io import atomic_directory
    from ...retrieval.index import build_index

    check_subject(subject)
    root = Path(root)
    chunks, qa = subject_parts(root, subject)
    if extra:
        chunks, qa = chunks + list(extra[0]), qa + list(extra[1])
    if dense and encoder is None:
        encoder = default_encoder()
    build_index([{**c, "domain": subject} for c in chunks], root / "index" / subject, domain=subject,
                encoder=encoder, dense=dense, log=log, chunking={"subject": subject})
    splits = split_by_document(qa)
    with atomic_directory(root / "domains" / subject / "qa") as tmp:
        rows = save_splits(tmp, "qa", splits, subject=subject)["rows"]
    return {"chunks": len(chunks), "qa": rows}


def default_encoder():
    """The project's MiniLM encoder, one per process."""
    from ...retrieval.embed import MiniLMEncoder
    from ...retrieval.index import shared_encoder

    return shared_encoder(MiniLMEncoder)


# --- retrieval ----------------------------------------------------------------------------------------------

def open_subject_index(root: str | os.PathLike, subject: str):
    """The subject's KnowledgeIndex under ``root`` (loaded once per process and build)."""
    from ...retrieval.index import load_index

    check_subject(subject)
    path = Path(root) / "index" / subject
    if not (path / "manifest.json").is_file():
        raise ArtifactError(f"{path}: no index for {subject!r} (build it with zephyra tutor data --out {root})")
    return load_index(path)


def retrieve(index, query: str, k: int = 3, mode: str = "hybrid") -> list:
    """The top ``k`` chunks of ``index`` for ``query`` (``mode``: hybrid, dense or sparse) as ``Hit``s: ``id``,
    ``text``, ``score`` (cosine to the query), ``doc_id``, ``source``."""
    from ...retrieval.index import MODES

    if mode not in MODES:
        raise ConfigError(f"unknown retrieval mode {mode!r}; known: {', '.join(MODES)}")
    if not query.strip():
        raise DataError("empty query")
    if mode != "sparse" and not index.has_dense:
        mode = "sparse"  # a BM25-only index (built with dense=False) still answers
    return index.search([query], k=k, mode=mode)[0]


def retrieval_bench(root: str | os.PathLike, subjects: Sequence[str] = SUBJECTS, max_questions: int = 200,
                    seed: int = 0) -> dict:
    """Recall@1/3/10, MRR and latency of dense, sparse and hybrid search on each subject's held-out (test split)
    questions, by the project's retrieval evaluation (``zephyra.evaluation.retrieval``)."""
    from ...evaluation.retrieval import evaluate_retrieval

    for s in subjects:
        check_subject(s)
    root = Path(root)
    return evaluate_retrieval(root / "index", root, list(subjects), max_questions=max_questions, seed=seed,
                              modes=("dense", "sparse", "hybrid"))


def bench_markdown(result: dict, command: str) -> str:
    """The bench's table, one row per subject and mode, with the command that made it."""
    lines = ["| subject | questions | chunks | mode | R@1 | R@3 | R@10 | MRR | search ms/q | embed ms/q |",
             "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for s, r in result["domains"].items():
        for mode in ("dense", "sparse", "hybrid"):
            if mode in r:
                m = r[mode]
                lines.append(f"| {s} | {r['questions']} | {r['chunks']:,} | {mode} | {m['recall@1']:.3f} | "
                             f"{m['recall@3']:.3f} | {m['recall@10']:.3f} | {m['mrr']:.3f} | "
                             f"{m['ms_per_query']:.1f} | {r['embed_ms_per_query']:.1f} |")
    return "\n".join(lines + ["", f"Command: `{command}`", ""])
