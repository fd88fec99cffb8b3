"""Formatting, packing, caching and the deterministic sampler."""

import numpy as np
import pytest

from zephyra.tokenizer import load_tokenizer
from zephyra.training import DataError, DataSource
from zephyra.training.data import EpochPacker, MixtureSampler, cache_key, eval_batches, iter_documents, load_documents


@pytest.fixture(scope="module")
def tok(data_root):
    return load_tokenizer(data_root / "tokenizer")


def test_phase1_formatter_writes_categories_plainly_and_chats_through_the_template(data_root, tok):
    docs = list(iter_documents(DataSource(str(data_root / "phase1"), formatter="phase1"), tok))
    assert "apple: fruit" in docs
    chat = next(d for d in docs if d.startswith("<|user|>\nhello<|eos|>"))
    assert chat == "<|user|>\nhello<|eos|><|assistant|>\nhi there!"  # outer bos/eos are added when packing


def test_qa_formatter_and_missing_columns(tmp_path, data_root, tok):
    from datasets import Dataset, DatasetDict

    DatasetDict({"train": Dataset.from_dict({"question": ["What is a compiler?"], "answer": ["A translator."]})}
                ).save_to_disk(str(tmp_path / "qa"))
    [doc] = iter_documents(DataSource(str(tmp_path / "qa"), formatter="qa"), tok)
    assert doc == "<|user|>\nWhat is a compiler?<|eos|><|assistant|>\nA translator."
    with pytest.raises(DataError, match="formatter 'qa' needs column"):
        list(iter_documents(DataSource(str(data_root / "phase2"), formatter="qa"), tok))
    with pytest.raises(DataError, match="not a saved DatasetDict"):
        list(iter_documents(DataSource(str(tmp_path / "nothing")), tok))
    with pytest.raises(DataError, match="no split 'test'"):
        list(iter_documents(DataSource(str(tmp_path / "qa"), split="test", formatter="qa"), tok))


def test_documents_are_bos_ids_eos_and_cached_once(data_root, tok, tmp_path):
    src = DataSource(str(data_root / "phase1"), formatter="phase1")
    docs = load_documents(src, tok, tmp_path)
    assert docs.tokens.dtype == np.uint16 and len(docs) == 6 * 33  # every training row is one document
    for a, b in zip(docs.offsets[:-1], docs.offsets[1:]):
        assert docs.tokens[a] == tok.bos_token_id and docs.tokens[b - 1] == tok.eos_token_id
    assert "apple: fruit" in {tok.decode(docs.tokens[a + 1:b - 1]) for a, b in zip(docs.offsets, docs.offsets[1:])}
    files = sorted(tmp_path.iterdir())
    again = load_documents(src, tok, tmp_path)
    assert sorted(tmp_path.iterdir()) == files and np.array_equal(again.tokens, docs.tokens)
    assert cache_key(src, tok) != cache_key(DataSource(src.path, split="validation", formatter="phase1"), tok)
    assert cache_key(src, tok) != cache_key(DataSource(src.path, formatter="text"), tok)


def test_a_half_written_cache_is_not_trusted(data_root, tok, tmp_path):
    src = DataSource(str(data_root / "phase2"), formatter="text")
    want = np.array(load_documents(src, tok, tmp_path).tokens)  # a copy: the file is about to be overwritten
    stem = tmp_path / cache_key(src, tok)
    stem.with_suffix(".json").unlink()  # as if killed between the arrays and the marker
    stem.with_suffix(".tokens.npy").write_bytes(b"garbage")
    assert np.array_equal(load_documents(src, tok, tmp_path).tokens, want)


def test_packing_reshuffles_documents_every_epoch(data_root, tok, tmp_path):
    docs = load_documents(DataSource(str(data_root / "phase1"), formatter="phase1"), tok, tmp_path)
    p = EpochPacker(docs, 16, seed=0, name="phase1")
    assert p.n_rows == len(docs.tokens) // 16
    epoch0 = np.stack([p.row(c) for c in range(p.n_rows)])
    epoch1 = np.stack([p.row(c) for c in range(p.n_rows, 2 * p.n_rows)])
    assert not np.array_equal(epoch0, epoch1)  # new neighbours and positions each epoch
    assert np.array_equal(np.stack([EpochPacker(docs, 16, 0, "x").row(c) for c in range(3)]), epoch0[:3])
    fixed = p.fixed_rows()
    assert fixed.shape == (p.n_rows, 16) and np.array_equal(fixed.reshape(-1), docs.tokens[: fixed.size])
    with pytest.raises(DataError, match="fewer than one sequence of seq_len=100000"):
        EpochPacker(docs, 100_000, 0, "phase1")


class _Rows:
    """A stand-in source: row c is c (plus an offset), so the stream shows what was read."""

    def __init__(self, n: int, offset: int):
        self.n, self.offset = n, offset

    def __len__(self):
        return self.n

    def row(self, c: int) -> np.ndarray:
        return np.full(4, self.offset + c % self.n)


def test_sampler_resumes_the_exact_stream():
    full = MixtureSampler([_Rows(10, 0), _Rows(3, 100)], [0.7, 0.3], seed=3)
    want = [full.next_batch(5) for _ in range(8)]
    first = MixtureSampler([_Rows(10, 0), _Rows(3, 100)], [0.7, 0.3], seed=3)
    got = [first.next_batch(5) for _ in range(3)]
    second = MixtureSampler([_Rows(10, 0), _Rows(3, 100)], [0.7, 0.3], seed=3)
    second.load_state_dict(first.state_dict())
    got += [second.next_batch(5) for _ in range(5)]
    assert all(np.array_equal(x, y) for x, y in zip(want, got))
    # every stretch of the stream holds the replay at its share; each source is read in order
    assert [int((b[:, 0] >= 100).sum()) for b in want] in ([2, 1, 2, 1, 2, 1, 2, 1], [1, 2, 1, 2, 1, 2, 1, 2])
    stream = np.concatenate(want)[:, 0]
    assert stream[stream < 100].tolist()[:12] == [*range(10), 0, 1]


def test_sampler_refuses_a_position_from_other_data():
    state = MixtureSampler([_Rows(10, 0)], [1.0], seed=0).state_dict()
    with pytest.raises(DataError, match="the data or the tokenizer changed"):
        MixtureSampler([_Rows(11, 0)], [1.0], seed=0).load_state_dict(state)


def test_eval_batches_are_fixed_and_limited():
    a = np.arange(40).reshape(10, 4)
    assert len(eval_batches(a, 3, 0)) == 3 and len(eval_batches(a, 3, 2)) == 2
    assert len(eval_batches(a[:2], 3, 0)) == 1  # smaller than one micro-batch: still evaluated
