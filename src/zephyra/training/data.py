"""Training data: dataset splits -> formatted documents -> token ids packed into fixed-length sequences, cached,
and a deterministic sampler whose whole state is a few integers, so a resumed run reads the very same batches.

A document is ``bos tokens eos``; documents are concatenated and cut into ``seq_len`` pieces (the last partial
piece is dropped). Packed ids are cached as ``.npy`` under ``cache_dir``, keyed by the split's file hashes, the
tokenizer, the formatter and ``seq_len``: a second run, a resumed run and every process share one copy.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from ..io import atomic_write_bytes, sha256_bytes, sha256_dir
from .config import DataSource

PACK_VERSION = 1  # bump when the packing itself changes, so old caches are not reused


class DataError(ValueError):
    """Missing or unusable training data; one line naming the dataset."""


# --------------------------------------------------------------------------------------------------------------
# formatters: one dataset row -> one document (a string with no bos/eos; those are added as ids)
# --------------------------------------------------------------------------------------------------------------

def _chat(tokenizer, messages: list[dict]) -> str:
    if tokenizer is None:  # training the tokenizer itself: only the words matter
        return "\n".join(m["content"] for m in messages)
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    # the template opens with bos and closes every turn with eos; the packer adds the outer bos/eos itself
    text = text.removeprefix(tokenizer.bos_token)
    return text.removesuffix(tokenizer.eos_token)


def format_text(row: dict, tokenizer) -> str:
    return row["text"]


def format_phase1(row: dict, tokenizer) -> str:
    if row["kind"] == "category":
        return f"{row['prompt']}: {row['response']}"  # "watermelon: fruit"
    return _chat(tokenizer, [{"role": "user", "content": row["prompt"]},
                             {"role": "assistant", "content": row["response"]}])


def format_qa(row: dict, tokenizer) -> str:
    return _chat(tokenizer, [{"role": "user", "content": row["question"]},
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
# packing and the cache
# --------------------------------------------------------------------------------------------------------------

def tokenizer_fingerprint(tokenizer) -> str:
    """Hash of the tokenizer's full serialisation (vocabulary, merges, special tokens)."""
    return sha256_bytes(tokenizer.backend_tokenizer.to_str().encode())[:16]


def cache_key(source: DataSource, tokenizer, seq_len: int) -> str:
    split_dir = Path(source.path) / source.split
    if not split_dir.is_dir():
        raise DataError(f"{source.path}: no split directory {source.split!r}")
    parts = [str(PACK_VERSION), sha256_dir(split_dir), tokenizer_fingerprint(tokenizer), source.formatter, str(seq_len)]
    return sha256_bytes("|".join(parts).encode())[:20]


def pack_documents(docs: Iterator[str], tokenizer, seq_len: int, batch: int = 512) -> np.ndarray:
    """(N, seq_len) token ids: ``bos doc eos`` for every document, concatenated and cut."""
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
        pending.append(doc)
        if len(pending) >= batch:
            flush()
    flush()
    stream = np.concatenate(pieces) if pieces else np.zeros(0, dtype=dtype)
    n = len(stream) // seq_len
    return stream[: n * seq_len].reshape(n, seq_len)


def packed_sequences(source: DataSource, tokenizer, seq_len: int, cache_dir: str | Path) -> np.ndarray:
    """The packed (N, seq_len) ids of ``source``, from the cache or built and cached now (atomically)."""
    path = Path(cache_dir) / f"{cache_key(source, tokenizer, seq_len)}.npy"
    if path.is_file():
        return np.load(path, mmap_mode="r")
    packed = pack_documents(iter_documents(source, tokenizer), tokenizer, seq_len)
    if len(packed) == 0:
        raise DataError(f"{source.path}/{source.split}: fewer tokens than one sequence of seq_len={seq_len}")
    buf = io.BytesIO()
    np.save(buf, packed)
    atomic_write_bytes(path, buf.getvalue())
    meta = {"path": str(source.path), "split": source.split, "formatter": source.formatter, "seq_len": seq_len,
            "sequences": int(len(packed)), "tokens": int(packed.size)}
    atomic_write_bytes(path.with_suffix(".json"), json.dumps(meta, indent=2).encode())
    return np.load(path, mmap_mode="r")


# --------------------------------------------------------------------------------------------------------------
# the sampler: a deterministic stream of sequences from a weighted mixture of sources
# --------------------------------------------------------------------------------------------------------------

class MixtureSampler:
    """Sequence k of the run comes from the source furthest behind its share (so every stretch of the stream holds
    each source at its fraction, to within one sequence), and within that source from a seeded permutation per
    epoch. The state is ``consumed`` plus one counter per source: a resumed run, or a run over a different number
    of processes, reads exactly the same stream."""

    def __init__(self, sources: list[np.ndarray], weights: list[float], seed: int):
        if len(sources) != len(weights) or not sources:
            raise ValueError("one weight per source, at least one source")
        w = np.asarray(weights, dtype=np.float64)
        self.sources, self.p, self.seed = sources, w / w.sum(), seed
        self.consumed = 0
        self.counts = [0] * len(sources)
        self._perm: dict[int, tuple[int, np.ndarray]] = {}

    def _choice(self) -> int:
        deficit = self.p * (self.consumed + 1) - np.asarray(self.counts)
        return int(np.argmax(deficit))  # ties go to the first source: deterministic

    def _row(self, j: int, c: int) -> int:
        n = len(self.sources[j])
        epoch = c // n
        if j not in self._perm or self._perm[j][0] != epoch:
            self._perm[j] = (epoch, np.random.default_rng([self.seed, 2, j, epoch]).permutation(n))
        return int(self._perm[j][1][c % n])

    def next_batch(self, n: int) -> np.ndarray:
        """The next ``n`` sequences of the stream, (n, seq_len) int64."""
        rows = []
        for _ in range(n):
            j = self._choice() if len(self.sources) > 1 else 0
            rows.append(self.sources[j][self._row(j, self.counts[j])])
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


def eval_batches(packed: np.ndarray, micro_batch: int, limit: int) -> list[np.ndarray]:
    """Held-out micro-batches in file order (the same every evaluation); ``limit`` 0: all of them."""
    n = len(packed) // micro_batch if len(packed) >= micro_batch else 1
    if limit:
        n = min(n, limit)
    return [np.asarray(packed[i * micro_batch:(i + 1) * micro_batch], dtype=np.int64) for i in range(n)]
