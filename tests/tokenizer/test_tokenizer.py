"""The tokenizer: byte-level BPE that round-trips any text, with fixed special ids and a chat template."""

import json

import pytest

from zephyra.tokenizer import build_tokenizer, load_tokenizer, train_tokenizer

CORPUS = ["To be, or not to be, that is the question.", "Whether 'tis nobler in the mind to suffer",
          "The slings and arrows of outrageous fortune,"] * 20


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    out = tmp_path_factory.mktemp("tok") / "tokenizer"
    train_tokenizer(CORPUS, out, vocab_size=300)
    return load_tokenizer(out), out


def test_special_token_ids_match_the_model_defaults(tok):
    t, _ = tok
    assert (t.pad_token_id, t.bos_token_id, t.eos_token_id) == (0, 1, 2)
    assert t("to be")["input_ids"][0] == t.bos_token_id


@pytest.mark.parametrize("text", ["To be, or not to be", "naïve café — ∑ 漢字 🎭", "  spaced\ttabs\nnewline  "])
def test_any_text_round_trips_exactly(tok, text):
    t, _ = tok
    assert t.decode(t(text)["input_ids"], skip_special_tokens=True) == text


def test_training_merges_frequent_words(tok):
    t, _ = tok
    assert len(t("the question")["input_ids"]) < len(" the question".encode())  # fewer tokens than bytes


def test_chat_template_renders_roles_and_marks_the_assistant(tok):
    t, _ = tok
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello"},
            {"role": "assistant", "content": "hi there"}]
    text = t.apply_chat_template(msgs, tokenize=False)
    assert text == ("<|bos|><|system|>\nBe brief.<|eos|><|user|>\nhello<|eos|><|assistant|>\nhi there<|eos|>")
    prompt = t.apply_chat_template(msgs[1:2], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|user|>\nhello<|eos|><|assistant|>\n")
    enc = t.apply_chat_template(msgs, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    marked = [i for i, m in zip(enc["input_ids"], enc["assistant_masks"]) if m]
    assert t.decode(marked) == "hi there<|eos|>"


def test_saved_with_a_manifest(tok):
    _, out = tok
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "tokenizer" and manifest["metrics"]["texts"] == len(CORPUS)


def test_empty_corpus_and_tiny_vocab_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="empty corpus"):
        build_tokenizer([], vocab_size=300)
    with pytest.raises(ValueError, match="too small"):
        build_tokenizer(CORPUS, vocab_size=100)
    with pytest.raises(FileNotFoundError, match="no tokenizer.json"):
        load_tokenizer(tmp_path)
