"""Training data: dataset splits -> formatted documents -> token ids packed into fixed-length sequences, cached,
and a deterministic sampler whose whole state is a few integers, so a resumed run reads the very same batches.

A document is ``bos tokens eos``. Tokenized documents are cached as ``.npy`` under ``cache_dir``, keyed by the
split's file hashes, the tokenizer and the formatter: a second run, a resumed run, every process and every
``seq_len`` share one copy. Training rows are cut from the documents laid end to end in a new seeded order each
epoch (the last partial row dropped); held-out rows keep the stored order.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io import atomic_write_bytes, sha256_bytes, sha256_dir
from ..chat import render_chat
from ..errors import DataError
from .config import DataSource

PACK_VERSION = 2  # bump when the packing itself changes, so old caches are not reused


__all__ = ["DataError"]  # zephyra.errors.DataError: missing or unusable training data, one line naming the dataset


# --------------------------------------------------------------------------------------------------------------
# formatters: one dataset row -> one document (a string with no bos/eos; those are added as ids)
# --------------------------------------------------------------------------------------------------------------

def _chat(tokenizer, messages: list[dict]) -> str:
    if tokenizer is None:  # training the tokenizer itself: only the words matter
        return "\n".join(m["content"] for m in messages)
    return render_chat(tokenizer, messages)  # the one chat encoder; the packer adds the outer bos/eos


def format_text(row: dict, tokenizer) -> str:
    return row["text"]


def format_phase1(row: dict, tokenizer) -> str:
    if row["kind"] == "category":
        return f"{row['prompt']}: {row['response']}"  # "watermelon: fruit"
    return _chat(tokenizer, [{"role": "user", "content": row["prompt"]},
                             {"role": "assistant", "content": row["response"]}])


def format_qa(row: dict, tokenizer) -> str:
    """A question and its answer; with "sources" (passages, one a line: the ``qa_sources`` kind), those in front
    as the runtime puts them (``chat.grounded_messages``)."""
    from ..chat import grounded_messages

    sources = [s for s in (row.get("sources") or "").split("\n") if s.strip()]
    return _chat(tokenizer, [*grounded_messages(row["question"], sources),
                             {"role": "assistant", "content": row["answer"]}])


FORMATTERS: dict[str, tuple[Callable[[dict, object], str], tuple[str, ...]]] = {
    "text": (format_text, ("text",)),
    "phase1": (format_phase1, ("prompt", "response", "kind")),
    "qa": (format_qa, ("question", "answer")),
}


# --------------------------------------------------------------------------------------------------------------
# reading a split
# --------------------------------------------------------------------------------------------------------------

def load_split(path: str | Path, split: str):
    """One split of a ``save_to_disk`` DatasetDict, or a one-line DataError."""
    import datasets

    path = Path(path)
    if not (path / "dataset_dict.json").is_file():
        raise DataError(f"{path}: not a saved DatasetDict (no dataset_dict.json); build the data first")
    dd = datasets.load_from_disk(str(path))
    if split not in dd:
        raise DataError(f"{path}: no split {split!r} (splits: {', '.join(dd)})")
    return dd[split]


def iter_documents(source: DataSource, tokenizer=None) -> Iterator[str]:
    """The formatted documents of one source, in dataset order (no tokenizer: chat turns joined by newlines,
    for training the tokenizer)."""
    fn, columns = FORMATTERS[source.formatter]
    ds = load_split(source.path, source.split)
    missing = [c for c in columns if c not in ds.column_names]
    if missing:
        raise DataError(f"{source.path}/{source.split}: formatter {source.formatter!r} needs column(s) "
                        f"{', '.join(missing)}; the split has {', '.join(ds.column_names)}")
    for batch in ds.iter(batch_size=1000):
        keys = list(batch)
        for values in zip(*(batch[k] for k in keys)):
            yield fn(dict(zip(keys, values)), tokenizer)


# --------------------------------------------------------------------------------------------------------------
# tokenized documents and their cache
# --------------------------------------------------------------------------------------------------------------

@dataclass
class Documents:
    """Every document of a source as ``bos ids eos``, concatenated (``tokens``), with ``offsets`` (n + 1,)."""
    tokens: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def stream(self, order: np.ndarray | None = None) -> np.ndarray:
        """All tokens with the documents in ``order`` (None: as stored)."""
        if order is None:
            return np.asarray(self.tokens)
        starts, ends = self.offsets[:-1][order], self.offsets[1:][order]
        return np.concatenate([self.tokens[a:b] for a, b in zip(starts, ends)])


def tokenizer_fingerprint(tokenizer) -> str:
    """Hash of the tokenizer's full serialisation (vocabulary, merges, special tokens)."""
    return sha256_bytes(tokenizer.backend_tokenizer.to_str().encode())[:16]


def cache_key(source: DataSource, tokenizer) -> str:
    split_dir = Path(source.path) / source.split
    if not split_dir.is_dir():
        raise DataError(f"{source.path}: no split directory {source.split!r}")
    parts = [str(PACK_VERSION), sha256_dir(split_dir), tokenizer_fingerprint(tokenizer), source.formatter]
    return sha256_bytes("|".join(parts).encode())[:20]


def tokenize_documents(docs: Iterator[str], tokenizer, batch: int = 512) -> Documents:
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    dtype = np.uint16 if len(tokenizer) <= np.iinfo(np.uint16).max + 1 else np.int32
    pieces: list[np.ndarray] = []
    pending: list[str] = []

    def flush():
        # add_special_tokens=False: we place bos/eos ourselves, so every formatter is treated alike
        for ids in tokenizer(pending, add_special_tokens=False)["input_ids"]:
            pieces.append(np.asarray([bos, *ids, eos], dtype=dtype))
        pending.clear()

    for doc in docs:
        if doc:
            pending.append(doc)
        if len(pending) >= batch:
            flush()
    flush()
    lengths = np.fromiter((len(p) for p in pieces), dtype=np.int64, count=len(pieces))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return Documents(np.concatenate(pieces) if pieces else np.zeros(0, dtype=dtype), offsets)


def _save_npy(path: Path, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, array)
    atomic_write_bytes(path, buf.getvalue())


def load_documents(source: DataSource, tokenizer, cache_dir: str | Path) -> Documents:
    """The tokenized documents of ``source``, from the cache or tokenized and cached now. The ``.json`` beside
    the arrays is written last: without it the arrays are not trusted (a run killed mid-write re-tokenizes)."""
    stem = Path(cache_dir) / cache_key(source, tokenizer)
    meta = stem.with_suffix(".json")
    if not meta.is_file():
        docs = tokenize_documents(iter_documents(source, tokenizer), tokenizer)
        _save_npy(stem.with_suffix(".tokens.npy"), docs.tokens)
        _save_npy(stem.with_suffix(".offsets.npy"), docs.offsets)
        info = {"path": str(source.path), "split": source.split, "formatter": source.formatter,
                "documents": len(docs), "tokens": int(len(docs.tokens))}
        atomic_write_bytes(meta, json.dumps(info, indent=2).encode())
    return Documents(np.load(stem.with_suffix(".tokens.npy"), mmap_mode="r"),
                     np.load(stem.with_suffix(".offsets.npy")))


# --------------------------------------------------------------------------------------------------------------
# packing: documents -> fixed-length rows, reshuffled every epoch
# --------------------------------------------------------------------------------------------------------------

class EpochPacker:
    """Rows of ``seq_len`` tokens cut from the documents laid end to end in a fresh seeded order every epoch.

    A fixed packing would let a small set be memorised as a few hundred fixed rows, each document predicted from
    its neighbours rather than learnt on its own (seen on phase 1: training loss 0.01, yet "dress:" out of
    context no better than chance); reshuffling gives every document new neighbours and positions each epoch."""

    def __init__(self, docs: Documents, seq_len: int, seed: int, name: str):
        self.docs, self.seq_len, self.seed = docs, seq_len, seed
        self.n_rows = len(docs.tokens) // seq_len  # the same every epoch: the order changes, not the total
        if self.n_rows == 0:
            raise DataError(f"{name}: {len(docs.tokens)} tokens, fewer than one sequence of seq_len={seq_len}")
        self._epoch, self._stream = -1, None

    def __len__(self) -> int:
        return self.n_rows

    def row(self, c: int) -> np.ndarray:
        """Row ``c`` of this source's endless stream (row c % n_rows of epoch c // n_rows)."""
        epoch, i = divmod(c, self.n_rows)
        if epoch != self._epoch:
            order = np.random.default_rng([self.seed, 2, epoch]).permutation(len(self.docs))
            self._epoch, self._stream = epoch, self.docs.stream(order)
        return self._stream[i * self.seq_len:(i + 1) * self.seq_len]

    def fixed_rows(self) -> np.ndarray:
        """(n_rows, seq_len): the documents in stored order (held-out data: the same every evaluation)."""
        return self.docs.stream()[: self.n_rows * self.seq_len].reshape(self.n_rows, self.seq_len)


# --------------------------------------------------------------------------------------------------------------
# the sampler: a deterministic stream of sequences from a weighted mixture of sources
# --------------------------------------------------------------------------------------------------------------

class MixtureSampler:
    """Sequence k of the run comes from the source furthest behind its share (so every stretch of the stream holds
    each source at its fraction, to within one sequence), and is that source's next row. The state is
    ``consumed`` plus one counter per source: a resumed run, or a run over a different number of processes, reads
    exactly the same stream."""

    def __init__(self, sources: list[EpochPacker], weights: list[float], seed: int):
        if len(sources) != len(weights) or not sources:
            raise ValueError("one weight per source, at least one source")
        w = np.asarray(weights, dtype=np.float64)
        self.sources, self.p, self.seed = sources, w / w.sum(), seed
        self.consumed = 0
        self.counts = [0] * len(sources)

    def _choice(self) -> int:
        deficit = self.p * (self.consumed + 1) - np.asarray(self.counts)
        return int(np.argmax(deficit))  # ties go to the first source: deterministic

    def next_batch(self, n: int) -> np.ndarray:
        """The next ``n`` sequences of the stream, (n, seq_len) int64."""
        rows = []
        for _ in range(n):
            j = self._choice() if len(self.sources) > 1 else 0
            rows.append(self.sources[j].row(self.counts[j]))
            self.counts[j] += 1
            self.consumed += 1
        return np.stack(rows).astype(np.int64)

    def state_dict(self) -> dict:
        return {"consumed": self.consumed, "counts": list(self.counts), "seed": self.seed,
                "sizes": [len(s) for s in self.sources]}

    def load_state_dict(self, state: dict) -> None:
        sizes = [len(s) for s in self.sources]
        if state["sizes"] != sizes or state["seed"] != self.seed:
            raise DataError(f"the checkpoint's data position is for sources of sizes {state['sizes']} "
                            f"(seed {state['seed']}); the data now has {sizes} (seed {self.seed}): "
                            "the data or the tokenizer changed since the checkpoint")
        self.consumed, self.counts = int(state["consumed"]), [int(c) for c in state["counts"]]


def eval_batches(rows: np.ndarray, micro_batch: int, limit: int) -> list[np.ndarray]:
    """Held-out micro-batches in stored order (the same every evaluation); ``limit`` 0: all of them."""
    n = len(rows) // micro_batch if len(rows) >= micro_batch else 1
    if limit:
        n = min(n, limit)
    return [np.asarray(rows[i * micro_batch:(i + 1) * micro_batch], dtype=np.int64) for i in range(n)]
