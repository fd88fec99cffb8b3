"""Grounded training documents: a domain's Q/A pairs with the passages retrieval finds for them, so an adapter
learns to copy the answer from its sources and to cite the passage it copied.

For each question the domain's knowledge index is searched (sparse BM25: cheap enough for every training
question, and its hits are as mixed as the runtime's: the right entry, entries about the same words, entries
about nothing); the pair's own source entry (``zephyra.data.knowledge.gold_chunks``) replaces the last hit when
retrieval missed it, so every document can be answered from its sources, and the order is shuffled, so the
answer is not always in [1]. The other passages are wrong or partly relevant: the adapter must pick. The
document is the one chat encoder's ``grounded_messages`` + the answer with its citation, exactly the runtime's
prompt. Documents are packed whole (``WholePacker``): a row never starts inside a document, so every answer is
trained with its passages in view; padding is masked out of the loss.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..chat import grounded_messages, render_chat
from ..data.knowledge import gold_chunks
from ..errors import DataError
from ..io import atomic_write_bytes, sha256_bytes, sha256_dir
from ..retrieval.grounding import GroundingConfig, cite, passages_for, token_counter
from ..retrieval.index import KnowledgeIndex
from .data import Documents, load_split, tokenize_documents

GROUNDED_VERSION = 1  # bump when the document format changes, so cached documents are rebuilt
MAX_ANSWER_WORDS = 40  # long definitions are cut: the copy, not its length, is what is learnt
MAX_ROWS = {"train": 3000, "validation": 256}  # a quickstart adapter reads ~1,100 grounded documents in training


def grounded_documents(rows: list[dict], index: KnowledgeIndex, cfg: GroundingConfig, tokenizer, seed: int,
                       max_tokens: int) -> tuple[list[str], dict]:
    """(documents, stats): one rendered chat document per answerable Q/A row that fits ``max_tokens``."""
    by_doc: dict[str, list[dict]] = defaultdict(list)
    for c in index.chunks:
        by_doc[c.get("doc_id", "")].append(c)
    texts = {c["id"]: c["text"] for c in index.chunks}
    hits = index.search([r["question"] for r in rows], k=cfg.k, mode="sparse", cosine=False) if rows else []
    rng, count = random.Random(seed), token_counter(tokenizer)
    docs, stats = [], {"rows": len(rows), "no_source": 0, "too_long": 0, "retrieved_gold": 0}
    for row, hs in zip(rows, hits):
        gold = gold_chunks(row, by_doc)
        if not gold:
            stats["no_source"] += 1
            continue
        ids = [h.id for h in hs][: cfg.k]
        found = [i for i in ids if i in gold]
        if found:
            stats["retrieved_gold"] += 1
            answer_id = found[0]
        else:
            answer_id = gold[0]
            ids = [*ids[: cfg.k - 1], answer_id]
        while len(ids) < cfg.k and len(index.chunks) > len(ids):  # fewer hits than k: random entries
            extra = index.chunks[rng.randrange(len(index.chunks))]["id"]
            if extra not in ids:
                ids.append(extra)
        rng.shuffle(ids)
        passages = passages_for(row["question"], [texts[i] for i in ids], cfg, tokenizer)
        answer = " ".join(row["answer"].split()[:MAX_ANSWER_WORDS])
        messages = grounded_messages(row["question"], passages)
        messages.append({"role": "assistant", "content": cite(answer, ids.index(answer_id) + 1)})
        doc = render_chat(tokenizer, messages)
        if count(doc) + 2 > max_tokens:
            stats["too_long"] += 1
            continue
        docs.append(doc)
    stats["documents"] = len(docs)
    return docs, stats


def load_grounded(qa_path: str | Path, split: str, index: KnowledgeIndex, cfg: GroundingConfig, tokenizer,
                  cache_dir: str | Path, seed: int, max_tokens: int) -> tuple[Documents, dict]:
    """The tokenized grounded documents of one Q/A split, cached like every training source (keyed by the split,
    the index's chunks, the grounding config, the tokenizer and the seed)."""
    from .data import _save_npy, tokenizer_fingerprint

    split_dir = Path(qa_path) / split
    if not split_dir.is_dir():
        raise DataError(f"{qa_path}: no split {split!r}; build the domain data first (zephyra data build)")
    key = sha256_bytes("|".join([str(GROUNDED_VERSION), sha256_dir(split_dir), index.manifest.get("chunks_sha256", ""),
                                 json.dumps(cfg.to_dict(), sort_keys=True), tokenizer_fingerprint(tokenizer),
                                 str(seed), str(max_tokens)]).encode())[:20]
    stem = Path(cache_dir) / f"grounded-{key}"
    meta = stem.with_suffix(".json")
    if not meta.is_file():
        ds = load_split(qa_path, split)
        need = [c for c in ("question", "answer", "doc_id") if c not in ds.column_names]
        if need:
            raise DataError(f"{qa_path}/{split}: grounded training needs column(s) {', '.join(need)}; "
                            "rebuild the data (zephyra data build)")
        rows = list(ds)
        if len(rows) > MAX_ROWS.get(split, len(rows)):  # a seeded sample, the same every run
            rows = random.Random(seed).sample(rows, MAX_ROWS[split])
        docs, stats = grounded_documents(rows, index, cfg, tokenizer, seed, max_tokens)
        if not docs:
            raise DataError(f"{qa_path}/{split}: no Q/A pair has its source entry in the index {index.path} "
                            f"({stats['no_source']} without one): was the index built from the same sources?")
        tokens = tokenize_documents(iter(docs), tokenizer)
        _save_npy(stem.with_suffix(".tokens.npy"), tokens.tokens)
        _save_npy(stem.with_suffix(".offsets.npy"), tokens.offsets)
        atomic_write_bytes(meta, json.dumps({"path": str(qa_path), "split": split, **stats}, indent=2).encode())
    stats = json.loads(meta.read_text())
    return (Documents(np.load(stem.with_suffix(".tokens.npy")), np.load(stem.with_suffix(".offsets.npy"))), stats)


class WholePacker:
    """Rows of ``seq_len`` tokens holding whole documents only (greedy, in a fresh seeded order every epoch),
    right-padded with ``pad_id``; the trainer masks the padding out of the loss. Same interface as EpochPacker."""

    def __init__(self, docs: Documents, seq_len: int, seed: int, name: str, pad_id: int):
        lengths = np.diff(docs.offsets)
        keep = np.flatnonzero(lengths <= seq_len)
        if len(keep) == 0:
            raise DataError(f"{name}: no document fits seq_len={seq_len}")
        self.docs, self.keep, self.seq_len, self.seed, self.pad_id, self.name = docs, keep, seq_len, seed, pad_id, name
        self._epoch, self._rows = -1, None
        self.n_rows = len(self._pack(keep))  # rows per epoch, about the same every epoch

    def _pack(self, order: np.ndarray) -> list[np.ndarray]:
        rows, cur, used = [], [], 0
        for d in order:
            a, b = self.docs.offsets[d], self.docs.offsets[d + 1]
            if used + (b - a) > self.seq_len and cur:
                rows.append(self._row(cur, used))
                cur, used = [], 0
            cur.append(self.docs.tokens[a:b])
            used += b - a
        if cur:
            rows.append(self._row(cur, used))
        return rows

    def _row(self, pieces: list[np.ndarray], used: int) -> np.ndarray:
        pad = np.full(self.seq_len - used, self.pad_id, dtype=self.docs.tokens.dtype)
        return np.concatenate([*pieces, pad])

    def __len__(self) -> int:
        return self.n_rows

    def row(self, c: int) -> np.ndarray:
        epoch, i = divmod(c, self.n_rows)
        if epoch != self._epoch:
            order = self.keep[np.random.default_rng([self.seed, 3, epoch]).permutation(len(self.keep))]
            self._epoch, self._rows = epoch, self._pack(order)
        return self._rows[i % len(self._rows)]

    def fixed_rows(self) -> np.ndarray:
        return np.stack(self._pack(self.keep))


def masked(batch: np.ndarray, pad_id: int):
    """(ids, labels) with the padding out of the loss, for ``summed_nll`` and the train loop."""
    import torch

    ids = torch.from_numpy(np.asarray(batch, dtype=np.int64))
    labels = ids.clone()
    labels[ids == pad_id] = -100
    return ids, labels
