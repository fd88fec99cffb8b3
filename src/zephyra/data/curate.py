"""Curation as composable, counted steps over records.

    from zephyra.data import curate, CurateConfig
    kept, stats = curate(records, CurateConfig())
    stats == {"in": 120, "out": 97, "dropped": {"length": 3, ..., "near_dedup": 9}, "modified": {...}, ...}

Order (DESIGN.md): normalise -> quality filters (length, symbols, repetition, language, blocklist, toxicity) -> exact
dedup -> near dedup (MinHash LSH, datasketch) -> PII scrub. Every step is a callable ``record -> record | None``
(None drops it), so a caller can build its own ``Pipeline`` from any subset. The pipeline streams: only the
dedup steps keep state (a digest per record, and the LSH band tables).
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections import defaultdict
from collections.abc import Iterable, Iterator

from . import filters as F
from .config import CurateConfig, NearDedupConfig, NormaliseConfig, PIIConfig, QualityConfig


class Step:
    """One curation step. ``__call__`` returns the (possibly changed) record, or None to drop it."""
    name = "step"

    def __call__(self, rec: dict) -> dict | None:  # pragma: no cover - interface
        raise NotImplementedError


class Normalise(Step):
    name = "normalise"

    def __init__(self, cfg: NormaliseConfig):
        self.cfg = cfg

    def __call__(self, rec):
        text = F.normalise_text(rec["text"], self.cfg)
        if not text:
            return None
        if text != rec["text"]:
            rec = {**rec, "text": text, "_modified": self.name}
        return rec


class _WordFilter(Step):
    """Base for checks on the word list; words are computed once per record and cached on it."""

    def __init__(self, cfg: QualityConfig):
        self.cfg = cfg

    @staticmethod
    def words(rec: dict) -> list[str]:
        if "_words" not in rec:
            rec["_words"] = F.words_of(rec["text"])
        return rec["_words"]


class LengthFilter(_WordFilter):
    name = "length"

    def __call__(self, rec):
        return rec if F.length_ok(self.words(rec), self.cfg) else None


class SymbolFilter(_WordFilter):
    name = "symbols"

    def __call__(self, rec):
        return rec if F.symbols_ok(rec["text"], self.cfg) else None


class RepetitionFilter(_WordFilter):
    name = "repetition"

    def __call__(self, rec):
        return rec if F.repetition_ok(rec["text"], self.words(rec), self.cfg) else None


class LanguageFilter(_WordFilter):
    name = "language"

    def __call__(self, rec):
        return rec if F.language_ok(self.words(rec), self.cfg, rec["text"]) else None


class BlocklistFilter(_WordFilter):
    name = "blocklist"

    def __init__(self, cfg: QualityConfig):
        super().__init__(cfg)
        self.blocklist = F.load_blocklist(cfg.blocklist_file)

    def __call__(self, rec):
        return rec if F.blocklist_ok(self.words(rec), self.blocklist) else None


class ToxicityFilter(Step):
    """Drops a text whose most toxic line scores at or above ``toxicity_threshold`` (zephyra.guard.toxicity,
    alt-profanity-check's classifier)."""
    name = "toxicity"

    def __init__(self, cfg: QualityConfig):
        from ..guard.toxicity import toxicity_score

        self.cfg, self.score = cfg, toxicity_score

    def __call__(self, rec):
        return rec if self.score(rec["text"]) < self.cfg.toxicity_threshold else None


class ExactDedup(Step):
    """Drops a record whose case- and whitespace-folded text was seen before (8-byte digests in a set)."""
    name = "exact_dedup"

    def __init__(self):
        self.seen: set[bytes] = set()

    def __call__(self, rec):
        key = " ".join(rec["text"].casefold().split()).encode("utf-8")
        digest = hashlib.blake2b(key, digest_size=8).digest()
        if digest in self.seen:
            return None
        self.seen.add(digest)
        return rec


def shingles(text: str, k: int) -> set[bytes]:
    """Word k-grams of the lower-cased word sequence (a shorter text is one shingle)."""
    words = [w.lower() for w in F.words_of(text)]
    if len(words) <= k:
        return {" ".join(words).encode("utf-8")}
    return {" ".join(words[i:i + k]).encode("utf-8") for i in range(len(words) - k + 1)}


def jaccard(a: str, b: str, k: int = 5) -> float:
    sa, sb = shingles(a, k), shingles(b, k)
    return len(sa & sb) / len(sa | sb)


def _crc32(b: bytes) -> int:
    return zlib.crc32(b)  # deterministic across processes (Python's hash() is salted), and C-fast


class NearDedup(Step):
    """MinHash LSH (datasketch): drops a record whose estimated Jaccard similarity to a kept one reaches the
    threshold. Only the LSH tables are kept, not the sketches, so memory grows by ~bands x 8 bytes a record."""
    name = "near_dedup"

    def __init__(self, cfg: NearDedupConfig):
        from datasketch import MinHash, MinHashLSH

        self.cfg = cfg
        self.lsh = MinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm)
        self._template = MinHash(num_perm=cfg.num_perm, seed=cfg.seed, hashfunc=_crc32)
        self._next_key = 0

    def sketch(self, text: str):
        m = self._template.copy()
        m.update_batch(shingles(text, self.cfg.shingle_words))
        return m

    def __call__(self, rec):
        m = self.sketch(rec["text"])
        if self.lsh.query(m):
            return None
        self.lsh.insert(self._next_key, m, check_duplication=False)
        self._next_key += 1
        return rec


class ScrubPII(Step):
    name = "pii"

    def __init__(self, cfg: PIIConfig):
        self.cfg = cfg

    def __call__(self, rec):
        text = F.scrub_pii(rec["text"], self.cfg)
        if text != rec["text"]:
            rec = {**rec, "text": text, "_modified": self.name}
        return rec


def build_steps(cfg: CurateConfig) -> list[Step]:
    steps: list[Step] = [Normalise(cfg.normalise)]
    q = cfg.quality
    steps += [LengthFilter(q), SymbolFilter(q), RepetitionFilter(q)]
    if q.language:
        steps.append(LanguageFilter(q))
    if q.blocklist:
        steps.append(BlocklistFilter(q))
    if q.toxicity:
        steps.append(ToxicityFilter(q))
    if cfg.exact_dedup:
        steps.append(ExactDedup())
    if cfg.near_dedup.enabled:
        steps.append(NearDedup(cfg.near_dedup))
    if cfg.pii.enabled:
        steps.append(ScrubPII(cfg.pii))
    return steps


class Pipeline:
    """Runs steps in order over a stream of records and counts, per step and per source, what each dropped
    or changed. ``stats()`` is what goes into manifests and ``zephyra data curate --json``."""

    def __init__(self, steps: list[Step]):
        self.steps = steps
        self.n_in = self.n_out = 0
        self.dropped = {s.name: 0 for s in steps}
        self.modified: dict[str, int] = defaultdict(int)
        self.by_source: dict[str, dict] = {}

    def _source(self, name: str) -> dict:
        if name not in self.by_source:
            self.by_source[name] = {"in": 0, "out": 0, "bytes_in": 0, "bytes_out": 0, "dropped": defaultdict(int)}
        return self.by_source[name]

    def run(self, records: Iterable[dict]) -> Iterator[dict]:
        for rec in records:
            src = self._source(rec.get("source", ""))
            self.n_in += 1
            src["in"] += 1
            src["bytes_in"] += len(rec["text"].encode("utf-8"))
            out = self._apply(rec, src)
            if out is not None:
                out.pop("_words", None)
                self.n_out += 1
                src["out"] += 1
                src["bytes_out"] += len(out["text"].encode("utf-8"))
                yield out

    def _apply(self, rec: dict, src: dict) -> dict | None:
        for step in self.steps:
            new = step(rec)
            if new is None:
                self.dropped[step.name] += 1
                src["dropped"][step.name] += 1
                rec.pop("_words", None)  # leave the caller's dict as it was
                return None
            if new.pop("_modified", None):
                self.modified[step.name] += 1
                new.pop("_words", None)  # the text changed: recount its words
            rec = new
        return rec

    def stats(self) -> dict:
        by_source = {k: {**v, "dropped": dict(v["dropped"])} for k, v in sorted(self.by_source.items())}
        return {"in": self.n_in, "out": self.n_out, "dropped": dict(self.dropped),
                "modified": dict(self.modified), "by_source": by_source}


def curate(records: Iterable[dict], config: CurateConfig | None = None) -> tuple[list[dict], dict]:
    """Run every configured step; returns (kept records, stats). Records need at least ``text``.

    Command: ``zephyra data curate INPUT... --out DIR --json`` (reads the files, curates, saves DIR)."""
    pipe = Pipeline(build_steps(config or CurateConfig()))
    kept = list(pipe.run(records))
    return kept, pipe.stats()


def merge_stats(parts: list[dict]) -> dict:
    """Sum several ``Pipeline.stats()`` (e.g. one per dataset) into one."""
    total = {"in": 0, "out": 0, "dropped": defaultdict(int), "modified": defaultdict(int), "by_source": {}}
    for st in parts:
        total["in"] += st["in"]
        total["out"] += st["out"]
        for k, v in st["dropped"].items():
            total["dropped"][k] += v
        for k, v in st.get("modified", {}).items():
            total["modified"][k] += v
        for name, s in st.get("by_source", {}).items():
            t = total["by_source"].setdefault(name, {"in": 0, "out": 0, "bytes_in": 0, "bytes_out": 0,
                                                     "dropped": defaultdict(int)})
            for k in ("in", "out", "bytes_in", "bytes_out"):
                t[k] += s[k]
            for k, v in s["dropped"].items():
                t["dropped"][k] += v
    total["dropped"] = dict(total["dropped"])
    total["modified"] = dict(total["modified"])
    for t in total["by_source"].values():
        t["dropped"] = dict(t["dropped"])
    return total


_SPACES = re.compile(r"\s+")


def tidy(text: str) -> str:
    """One line, single spaces: for questions and answers."""
    return _SPACES.sub(" ", text).strip()
