"""Augmentation: paraphrases, noise and synonyms change text and mark it; back-translation is skipped cleanly
without Apertium and runs through it when present."""

import os
import random
import stat

import pytest

from zephyra.data import augment
from zephyra.data.augment import add_noise, augment_records, paraphrase_qa, paraphrase_question, synonym_replace
from zephyra.data.config import AugmentConfig

TEXT = ("The quick brown fox jumps over the lazy dog while the farmer watches from the gate and the "
        "children laugh at the noise")


def rows(n=20):
    return [{"text": f"{TEXT} number {i}", "domain": "general", "source": "src", "licence": "CC0", "doc_id": str(i)}
            for i in range(n)]


@pytest.mark.parametrize("question, expected", [
    ("What does zip() do?", {"What is zip() for?", "Explain what zip() does."}),
    ("Who is Polonius in Hamlet?", {"Tell me who Polonius in Hamlet is.",
                                    "Can you tell me who Polonius in Hamlet is?"}),
    ("What is benzene in chemistry?", {"In chemistry, what does benzene mean?",
                                       "Can you explain benzene (chemistry)?"}),
    ("Why?", {""}),
])
def test_paraphrase_templates(question, expected):
    assert paraphrase_question(question) in expected
    assert paraphrase_question(question) == paraphrase_question(question)  # stable


def test_paraphrased_rows_are_marked():
    (row,) = paraphrase_qa([{"question": "Where is Lima?", "answer": "In Peru.", "source": "wordnet"}])
    assert row["question"] != "Where is Lima?" and row["answer"] == "In Peru."
    assert row["source"] == "wordnet+paraphrase" and row["augmented"] == "paraphrase"


def test_noise_is_deterministic_and_scaled_by_rate():
    a = add_noise(TEXT, 0.3, random.Random(1))
    assert a == add_noise(TEXT, 0.3, random.Random(1)) and a != TEXT
    assert add_noise(TEXT, 0.0, random.Random(1)) == TEXT


class FakeLemma:
    def __init__(self, name):
        self._name = name

    def name(self):
        return self._name


class FakeWordNet:
    """Stands in for nltk's reader: every word's first synset offers "speedy" (or nothing)."""

    def synsets(self, word):
        lemmas = [FakeLemma(word), FakeLemma("speedy"), FakeLemma("two_words")]
        return [type("S", (), {"lemmas": lambda self: lemmas})()] if word == "quick" else []


def test_synonym_replacement_uses_wordnet_lemmas():
    out = synonym_replace(TEXT, 1.0, random.Random(0), FakeWordNet())
    assert out == TEXT.replace("quick", "speedy")


def test_augment_records_marks_copies_and_keeps_originals():
    cfg = AugmentConfig(synonym_fraction=1.0, synonym_rate=1.0, noise_fraction=0.5, noise_rate=0.3)
    extra, stats = augment_records(rows(), cfg, FakeWordNet())
    assert stats["synonym"] == 20 and 0 < stats["noise"] < 20
    assert {r["augmented"] for r in extra} == {"synonym", "noise"}
    assert all(r["source"] == f"src+{r['augmented']}" for r in extra)


def test_backtranslation_skipped_cleanly_without_apertium(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty PATH: no apertium
    extra, stats = augment_records(rows(5), AugmentConfig(backtranslate_fraction=1.0))
    assert extra == []
    assert stats["backtranslate_skipped"] == 5 and "not installed" in stats["backtranslate_skip_reason"]


def test_backtranslation_goes_through_apertium_when_present(monkeypatch, tmp_path):
    # a stand-in apertium: lists both modes, and "translates" by upper-casing en-es and lower-casing es-en
    fake = tmp_path / "apertium"
    fake.write_text('#!/bin/sh\nif [ "$1" = "-l" ]; then echo en-es; echo es-en; exit 0; fi\n'
                    'if [ "$2" = "en-es" ]; then tr a-z A-Z; else tr A-Z a-z; fi\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert augment.apertium_missing() == ""
    extra, stats = augment_records(rows(3), AugmentConfig(backtranslate_fraction=1.0))
    assert stats == {"backtranslate": 3}
    assert [r["text"] for r in extra] == [r["text"].lower() for r in rows(3)]
    assert {r["source"] for r in extra} == {"src+backtranslate"}
