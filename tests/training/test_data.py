"""Formatting, packing, caching and the deterministic sampler."""

import numpy as np
import pytest

from zephyra.tokenizer import load_tokenizer
from zephyra.training import DataError, DataSource
from zephyra.training.data import MixtureSampler, cache_key, eval_batches, iter_documents, packed_sequences


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


def test_packing_puts_bos_before_and_eos_after_every_document(data_root, tok, tmp_path):
    src = DataSource(str(data_root / "phase1"), formatter="phase1")
    packed = packed_sequences(src, tok, 16, tmp_path)
    assert packed.shape[1] == 16 and packed.dtype == np.uint16
    stream = np.asarray(packed).reshape(-1).tolist()
    assert stream[0] == tok.bos_token_id
    text = tok.decode(stream[: stream.index(tok.eos_token_id) + 1])
    assert text.startswith("<|bos|>") and text.endswith("<|eos|>")
    # documents follow one another as bos ... eos (chat documents also close each turn with eos)
    bos_at = [i for i, t in enumerate(stream) if t == tok.bos_token_id]
    assert len(bos_at) > 10 and all(stream[i - 1] == tok.eos_token_id for i in bos_at[1:])


def test_cache_is_reused_and_keyed_by_what_changes_the_tokens(data_root, tok, tmp_path):
    src = DataSource(str(data_root / "phase2"), formatter="text")
    a = packed_sequences(src, tok, 32, tmp_path)
    files = sorted(tmp_path.glob("*.npy"))
    b = packed_sequences(src, tok, 32, tmp_path)
    assert sorted(tmp_path.glob("*.npy")) == files and np.array_equal(a, b)
    assert cache_key(src, tok, 32) != cache_key(src, tok, 64)
    assert cache_key(src, tok, 32) != cache_key(DataSource(src.path, split="validation"), tok, 32)
    with pytest.raises(DataError, match="fewer tokens than one sequence"):
        packed_sequences(DataSource(src.path, split="validation"), tok, 100_000, tmp_path)


def test_sampler_resumes_the_exact_stream():
    a = np.arange(40).reshape(10, 4)
    b = 100 + np.arange(12).reshape(3, 4)
    full = MixtureSampler([a, b], [0.7, 0.3], seed=3)
    want = [full.next_batch(5) for _ in range(8)]
    first = MixtureSampler([a, b], [0.7, 0.3], seed=3)
    got = [first.next_batch(5) for _ in range(3)]
    second = MixtureSampler([a, b], [0.7, 0.3], seed=3)
    second.load_state_dict(first.state_dict())
    got += [second.next_batch(5) for _ in range(5)]
    assert all(np.array_equal(x, y) for x, y in zip(want, got))
    # every stretch of the stream holds the replay at its share, and every row is read once per epoch
    stream = np.concatenate(want)[:, 0]
    assert [int((b[:, 0] >= 100).sum()) for b in want] in ([2, 1, 2, 1, 2, 1, 2, 1], [1, 2, 1, 2, 1, 2, 1, 2])
    assert abs((stream >= 100).mean() - 0.3) <= 1 / len(stream)
    assert sorted(stream[stream < 100][:10].tolist()) == list(range(0, 40, 4))


def test_sampler_refuses_a_position_from_other_data():
    s = MixtureSampler([np.zeros((10, 4))], [1.0], seed=0)
    state = s.state_dict()
    with pytest.raises(DataError, match="the data or the tokenizer changed"):
        MixtureSampler([np.zeros((11, 4))], [1.0], seed=0).load_state_dict(state)


def test_eval_batches_are_fixed_and_limited():
    a = np.arange(40).reshape(10, 4)
    assert len(eval_batches(a, 3, 0)) == 3 and len(eval_batches(a, 3, 2)) == 2
    assert len(eval_batches(a[:2], 3, 0)) == 1  # smaller than one micro-batch: still evaluated
