"""Grounded adapters end to end on a tiny system: training documents (the right passage among others, cited),
whole-document packing, and the runtime's retrieval in the prompt with its fallbacks, through ``zephyra generate``."""

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

sys.path[:0] = [str(Path(__file__).parents[1] / "router"), str(Path(__file__).parents[1] / "resolve"),
                str(Path(__file__).parents[1] / "cli"), str(Path(__file__).parent)]
from router_helpers import make_tokenizer
from test_retrieval import CHUNKS

from zephyra.cli import app
from zephyra.errors import ArtifactError
from zephyra.resolve.engine import Request
from zephyra.retrieval.grounding import GroundingConfig
from zephyra.retrieval.index import build_index
from zephyra.training.data import tokenize_documents
from zephyra.training.grounded import WholePacker, grounded_documents, masked

runner = CliRunner()
QA = [{"question": "What is the capital of Peru?", "answer": "The capital of Peru is Lima.", "doc_id": "country:PE"},
      {"question": "What is the capital of France?", "answer": "The capital of France is Paris.",
       "doc_id": "country:FR"},
      {"question": "Where is Glasgow?", "answer": "Glasgow is in Scotland.", "doc_id": "city:Glasgow"},
      {"question": "Where is Atlantis?", "answer": "Nowhere.", "doc_id": "city:Atlantis"}]  # not in the index


@pytest.fixture(scope="module")
def sparse_index(tmp_path_factory):
    return build_index(CHUNKS, tmp_path_factory.mktemp("index") / "geography", domain="geography", encoder=None,
                       log=lambda s: None)


def test_grounded_documents_hold_the_right_passage_and_cite_its_number(sparse_index):
    tok = make_tokenizer()
    docs, stats = grounded_documents(QA, sparse_index, GroundingConfig(k=2, mode="sparse", passage_tokens=64), tok,
                                     seed=0, max_tokens=10_000)
    assert stats["no_source"] == 1 and stats["documents"] == 3  # Atlantis has no entry: no document
    for doc, qa in zip(docs, QA):
        listing = dict(re.findall(r"\[(\d)\] ([^\n<]+)", doc.split("<|user|>")[0]))
        gold = next(c["text"] for c in CHUNKS if c["id"] == qa["doc_id"])
        n = re.search(r"\[(\d)\]<\|eos\|>$|\[(\d)\]$", doc.strip())
        assert n, doc
        cited = n.group(1) or n.group(2)
        assert listing[cited] == gold  # the cited passage is the pair's own entry
        assert len(listing) == 2 and qa["answer"] in doc


def test_whole_document_rows_never_split_a_document_and_mask_the_padding():
    tok = make_tokenizer()
    texts = ["What is Peru?" * n for n in (1, 3, 5, 2, 4, 6, 1)]
    docs = tokenize_documents(iter(texts), tok)
    pad = tok.pad_token_id
    packer = WholePacker(docs, seq_len=40, seed=0, name="t", pad_id=pad)
    lengths = sorted(int(x) for x in np.diff(docs.offsets) if x <= 40)
    for c in range(2 * len(packer)):
        row = packer.row(c)
        assert row[0] == tok.bos_token_id and len(row) == 40
        content = row[row != pad]
        starts = np.flatnonzero(content == tok.bos_token_id)
        pieces = np.split(content, starts[1:])
        assert all(len(p) in lengths for p in pieces)  # whole documents only
    ids, labels = masked(np.stack([packer.row(0)]), pad)
    assert bool((labels[ids == pad] == -100).all()) and bool((labels[ids != pad] == ids[ids != pad]).all())


# --- the runtime --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def grounded_system(tmp_path_factory, sparse_index):
    from test_route import build_system

    dirs = build_system(tmp_path_factory.mktemp("system"))
    manifest_path = dirs["adapters"] / "geography" / "manifest.json"
    m = json.loads(manifest_path.read_text())
    m["config"]["run"]["grounding"] = {"index": str(sparse_index.path), "k": 2, "mode": "sparse",
                                       "passage_tokens": 12, "min_score": 0.1}
    manifest_path.write_text(json.dumps(m))
    return dirs


def _system(dirs, **kw):
    from zephyra.resolve.system import load_system

    return load_system(dirs["base"], dirs["adapters"], dirs["router"], **kw)


def test_a_grounded_adapter_answers_with_its_sources_and_falls_back_when_none_is_relevant(grounded_system):
    system = _system(grounded_system)
    try:
        assert system.grounded == ["geography"]
        (peru, nothing) = system.resolve(["What is the capital of Peru?", "zzz qqq"], adapter="geography",
                                         max_new_tokens=4)
        assert peru.adapter == "geography" and peru.sources[0]["id"] == "country:PE" and peru.note is None
        assert set(peru.sources[0]) == {"id", "text", "score"}
        assert peru.text == f"{peru.sources[0]['text']} [1]" and peru.cited == ["country:PE"]  # quoted, cited
        assert peru.generated is not None  # the adapter's own words, kept beside the quote
        assert nothing.adapter == "base" and nothing.sources == [] and "no relevant source" in nothing.note
        assert nothing.text.startswith("I do not know")
        (unknown,) = system.resolve(["What is the capital of Solara?"], adapter="geography", max_new_tokens=2)
        assert unknown.adapter == "base" and "solara" in unknown.text and "'solara'" in unknown.note
        (closed,) = system.resolve(["What is the capital of Peru?"], adapter="geography", max_new_tokens=4,
                                   retrieval=False)
        assert closed.sources == [] and "retrieval is off" in closed.note
        (other,) = system.resolve(["What is the capital of Peru?"], adapter="python", max_new_tokens=4)
        assert other.sources == [] and other.note is None  # a closed-book adapter: nothing retrieved
        ((req, _),) = system.ground([Request("What is the capital of Peru?", adapter="geography")])
        assert req.messages[0]["role"] == "system" and req.messages[0]["content"].startswith("Sources:\n[1] ")
    finally:
        system.close()
    system = _system(grounded_system, answer="generate")
    try:
        (own,) = system.resolve(["What is the capital of Peru?"], adapter="geography", max_new_tokens=4)
        assert own.text == own.generated and own.sources  # its own words, its sources still reported
    finally:
        system.close()


def test_the_passages_give_way_to_the_context_and_a_missing_index_is_one_line(grounded_system, tmp_path, monkeypatch):
    system = _system(grounded_system)
    try:
        long_question = "What is the capital of Peru? " + "Peru Lima capital " * 30  # nearly the whole context
        (r,) = system.resolve([long_question], adapter="geography", max_new_tokens=4)
        assert r.note and ("left out" in r.note or "no room" in r.note)
    finally:
        system.close()
    monkeypatch.chdir(tmp_path)  # no ./runs/index to fall back to
    system = _system(grounded_system, index_root=tmp_path / "elsewhere")
    system.retriever.grounded["geography"]["index"] = str(tmp_path / "gone" / "geography")
    with pytest.raises(ArtifactError, match="missing; build it"):
        system.resolve(["What is the capital of Peru?"], adapter="geography", max_new_tokens=2)
    system.close()


def test_generate_file_json_reports_sources_and_no_retrieval_turns_them_off(grounded_system, tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "What is the capital of Peru?"}\n{"prompt": "Where is Glasgow?"}\n')
    opts = [x for k in ("base", "adapters", "router") for x in (f"--{k}", str(grounded_system[k]))]
    res = runner.invoke(app, ["generate", "--file", str(prompts), "--adapter", "geography", "--json",
                              "--max-new-tokens", "3", *opts])
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in res.stdout.splitlines() if x.strip()]
    assert [x["index"] for x in lines] == [0, 1]
    assert lines[0]["sources"][0]["id"] == "country:PE" and lines[1]["sources"][0]["id"] == "city:Glasgow"
    assert all(isinstance(x["cited"], list) for x in lines)
    res = runner.invoke(app, ["generate", "What is the capital of Peru?", "--adapter", "geography", "--json",
                              "--no-retrieval", "--max-new-tokens", "3", *opts])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["sources"] == [] and "retrieval is off" in out["note"]
