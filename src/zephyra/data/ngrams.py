"""Word n-gram decontamination: no adapter-domain text reaches the phase-2 corpus.

Every 13-gram (lower-cased words) of every domain text, question and answer is hashed into a sorted uint64
array (~8 bytes an n-gram, so the ~6M domain n-grams take ~50 MB); a general record's paragraphs are checked
against it and a paragraph that shares any n-gram is removed (a record with nothing left is dropped).
"""

from __future__ import annotations

import numpy as np

from .filters import WORD_RE

_PRIME = np.uint64(1099511628211)  # FNV-64 prime: an odd multiplier for the rolling combination
_MASK = (1 << 64) - 1


def ngram_hashes(text: str, n: int) -> np.ndarray:
    """uint64 hashes of the text's word n-grams (empty when it has fewer than n words)."""
    words = WORD_RE.findall(text.lower())
    m = len(words) - n + 1
    if m <= 0:
        return np.empty(0, dtype=np.uint64)
    # hash() is salted per process, which is fine: the index and the queries live in the same process
    w = np.array([hash(x) & _MASK for x in words], dtype=np.uint64)
    h = np.zeros(m, dtype=np.uint64)
    for k in range(n):
        h = h * _PRIME + w[k:k + m]  # wraps modulo 2**64, as intended
    return h


class NgramIndex:
    def __init__(self, n: int = 13):
        self.n = n
        self._parts: list[np.ndarray] = []
        self._array: np.ndarray | None = None

    def add(self, text: str) -> None:
        h = ngram_hashes(text, self.n)
        if h.size:
            self._parts.append(h)
            self._array = None

    def array(self) -> np.ndarray:
        if self._array is None:
            self._array = np.unique(np.concatenate(self._parts)) if self._parts else np.empty(0, np.uint64)
            self._parts = [self._array] if self._array.size else []
        return self._array

    def __len__(self) -> int:
        return int(self.array().size)

    def contains_any(self, text: str) -> bool:
        arr = self.array()
        h = ngram_hashes(text, self.n)
        if not h.size or not arr.size:
            return False
        idx = np.searchsorted(arr, h)
        return bool((arr[np.minimum(idx, arr.size - 1)] == h).any())


def decontaminate(records: list[dict], index: NgramIndex) -> tuple[list[dict], dict]:
    """Remove paragraphs that share an n-gram with the index; returns (kept records, counts)."""
    kept, dropped, cut, by_source = [], 0, 0, {}
    for rec in records:
        if not index.contains_any(rec["text"]):
            kept.append(rec)
            continue
        paras = [p for p in rec["text"].split("\n\n") if not index.contains_any(p)]
        # a paragraph can be clean while the whole is not only across a paragraph break: check again
        text = "\n\n".join(paras)
        if paras and not index.contains_any(text):
            cut += 1
            kept.append({**rec, "text": text})
        else:
            dropped += 1
            by_source[rec["source"]] = by_source.get(rec["source"], 0) + 1
    return kept, {"dropped": dropped, "paragraphs_cut": cut, "by_source": by_source}
