"""Metrics against their references: sacrebleu itself, rouge values and SQuAD values worked out by hand, the
official SQuAD v1.1 functions, and perplexity recomputed text by text from the model's own loss."""

import collections
import math
import re
import string

import pytest
import sacrebleu
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from zephyra.evaluation.metrics import (
    bleu, exact_match, normalize_answer, perplexity, rouge, squad_scores, token_f1,
)
from zephyra.model import ZephyraForCausalLM, preset_config

# --- BLEU ---------------------------------------------------------------------------------------------------


def test_bleu_equals_sacrebleu():
    hyps = ["the cat sat on the mat", "there is a dog in the garden", "hello world"]
    refs = [["the cat is on the mat", "a cat sat on the mat"], ["a dog is in the garden"], ["hello there world"]]
    streams = [[r[0] for r in refs], [r[1] if len(r) > 1 else None for r in refs]]
    assert bleu(hyps, refs) == pytest.approx(sacrebleu.corpus_bleu(hyps, streams).score, abs=1e-9)
    assert bleu(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(100.0)
    assert bleu(["completely unrelated words here"], ["the cat sat on the mat"]) == pytest.approx(0.0, abs=1e-9)


def test_bleu_refuses_mismatched_lengths():
    with pytest.raises(ValueError, match="2 hypotheses but 1 reference entries"):
        bleu(["a", "b"], ["a"])


# --- ROUGE --------------------------------------------------------------------------------------------------


def test_rouge_worked_example():
    # "the cat sat" vs "the cat sat down": unigrams P = 3/3, R = 3/4 -> F = 6/7; bigrams 2 of 2 vs 3 -> F = 0.8;
    # the longest common subsequence is 3 words long, so ROUGE-L = ROUGE-1 here.
    got = rouge(["the cat sat"], ["the cat sat down"])
    assert got == pytest.approx({"rouge1": 6 / 7, "rouge2": 0.8, "rougeL": 6 / 7})
    # several references: the best one counts; two hypotheses: the mean
    got = rouge(["the cat sat", "a b"], [["dog", "the cat sat"], "a b"])
    assert got == pytest.approx({"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0})


# --- SQuAD exact match and F1 -------------------------------------------------------------------------------

# The official SQuAD v1.1 evaluation functions, verbatim in substance, as the reference.
def _squad_normalize(s):
    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def _squad_f1(prediction, ground_truth):
    prediction_tokens = _squad_normalize(prediction).split()
    ground_truth_tokens = _squad_normalize(ground_truth).split()
    common = collections.Counter(prediction_tokens) & collections.Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


EXAMPLES = [  # prediction, references, EM, F1 worked out by hand
    # "cat sat" vs "cat sat down": P = 2/2, R = 2/3 -> F1 = 2 * 1 * 2/3 / (1 + 2/3) = 0.8
    ("the cat sat", ["a cat sat down"], 0.0, 0.8),
    # case, punctuation and articles go: "cat" == "cat"
    ("The Cat.", ["cat"], 1.0, 1.0),
    # "paris france" vs "paris": P = 1/2, R = 1 -> 2/3; vs "frances capital": 0; best of the two: 2/3
    ("Paris, France", ["Paris", "France's capital"], 0.0, 2 / 3),
    # bag of words: "b a b" -> ["b", "b"] (the article goes); vs "b c": one "b" in common, P = 1/2, R = 1/2
    ("b a b", ["b c"], 0.0, 0.5),
    ("  Noah   built  it ", ["noah built it"], 1.0, 1.0),
    ("nothing alike", ["the ark"], 0.0, 0.0),
]


@pytest.mark.parametrize("pred, refs, em, f1", EXAMPLES)
def test_exact_match_and_f1_worked_examples(pred, refs, em, f1):
    assert exact_match(pred, refs) == em
    assert token_f1(pred, refs) == pytest.approx(f1)
    assert token_f1(pred, refs) == pytest.approx(max(_squad_f1(pred, r) for r in refs))
    assert normalize_answer(pred) == _squad_normalize(pred)


def test_squad_scores_average_and_empty_answers():
    preds, refs = [e[0] for e in EXAMPLES], [e[1] for e in EXAMPLES]
    got = squad_scores(preds, refs)
    assert got["exact_match"] == pytest.approx(sum(e[2] for e in EXAMPLES) / len(EXAMPLES))
    assert got["f1"] == pytest.approx(sum(e[3] for e in EXAMPLES) / len(EXAMPLES))
    # SQuAD v2's rule: an empty answer matches only an empty reference ("the" normalises to nothing)
    assert token_f1("the", "") == 1.0 and token_f1("", "cat") == 0.0 and exact_match("a", "an") == 1.0


# --- perplexity ---------------------------------------------------------------------------------------------

TEXTS = ["the cat sat on the mat", "a dog", "the dog sat on a cat and the cat sat on the dog", "mat"]


@pytest.fixture
def tokenizer():
    words = sorted({w for t in TEXTS for w in t.split()})
    vocab = {"[PAD]": 0, "[UNK]": 1, **{w: i + 3 for i, w in enumerate(words)}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]")


def _zephyra():
    return ZephyraForCausalLM(preset_config("tiny", vocab_size=32))


def _gpt2():
    return GPT2LMHeadModel(GPT2Config(vocab_size=32, n_embd=32, n_layer=2, n_head=4, n_positions=64))


@pytest.mark.parametrize("build", [_zephyra, _gpt2], ids=["zephyra", "gpt2"])
def test_perplexity_is_exp_of_the_token_weighted_mean_loss(tokenizer, build):
    model = build().eval()
    total, count = 0.0, 0
    for text in TEXTS:  # one text at a time, no padding, the model's own mean loss
        ids = torch.tensor([tokenizer(text)["input_ids"]])
        if ids.shape[1] < 2:
            continue
        with torch.no_grad():
            loss = model(input_ids=ids, labels=ids).loss.item()
        total, count = total + loss * (ids.shape[1] - 1), count + ids.shape[1] - 1
    got = perplexity(model, tokenizer, TEXTS, batch_size=2)  # batched with right padding
    assert got.tokens == count == 5 + 1 + 12  # words minus one per text; "mat" predicts nothing
    assert got.mean_loss == pytest.approx(total / count, rel=1e-5)
    assert got.perplexity == pytest.approx(math.exp(total / count), rel=1e-5)
    assert perplexity(model, tokenizer, TEXTS, max_length=3).tokens == 2 + 1 + 2


def test_perplexity_needs_a_predicted_token(tokenizer):
    model = _zephyra()
    with pytest.raises(ValueError, match="no text has two or more tokens"):
        perplexity(model, tokenizer, ["mat", ""])
    with pytest.raises(TypeError, match="not one string"):
        perplexity(model, tokenizer, "the cat")
