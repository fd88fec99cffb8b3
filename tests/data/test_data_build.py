"""A small real build (every packaged source, a few dozen records each) through `zephyra data build`: the
layout and columns others code against, lineage, held-out test questions, no domain text in phase 2."""

import json
import re

import pytest
from datasets import load_from_disk
from typer.testing import CliRunner

from zephyra.data import DOMAINS, BuildConfig, SourceMissing, build_all, load
from zephyra.data import build as build_module
from zephyra.data.cli import app
from zephyra.data.config import Phase1Config
from zephyra.data.ngrams import NgramIndex, decontaminate
from zephyra.data.phase1 import build_phase1
from zephyra.data.sources import SOURCE_NAMES, dictd, get_source
from zephyra.manifest import read_manifest

runner = CliRunner()
LAYOUT = {
    "phase1": ({"train", "validation"}, ["prompt", "response", "kind", "word", "category"]),
    "phase2": ({"train", "validation"}, ["text", "source", "licence"]),
    "router": ({"train", "validation", "test"}, ["prompt", "label", "template"]),
    **{f"domains/{d}/raw": ({"train", "validation", "test"}, ["text", "source", "licence"]) for d in DOMAINS},
    **{f"domains/{d}/qa": ({"train", "validation", "test"}, ["question", "answer", "source", "doc_id", "entity"]) for d in DOMAINS},
}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    missing = [n for n in SOURCE_NAMES if not get_source(n).available()]
    if missing:
        pytest.skip(f"packages missing for {missing}; `zephyra data sources` says how to install them")
    out = tmp_path_factory.mktemp("data") / "root"
    res = runner.invoke(app, ["build", "--out", str(out), "--max-records", "40", "--json"])
    assert res.exit_code == 0, res.output
    return out


def words(text):
    return [w.lower() for w in re.findall(r"[^\W_]+(?:'[^\W_]+)?", text)]


def grams(text, n=13):
    w = words(text)
    return {" ".join(w[i:i + n]) for i in range(len(w) - n + 1)}


def test_layout_columns_and_manifests(root):
    for name, (splits, columns) in LAYOUT.items():
        dd = load(root, name)
        assert set(dd) == splits, name
        for split in splits:
            assert dd[split].column_names == columns, (name, split)
            assert len(dd[split]) > 0, (name, split)
        manifest = read_manifest(root / name)
        assert manifest["kind"] == "dataset" and manifest["metrics"]["rows"] == {s: len(dd[s]) for s in dd}
        assert len(manifest["metrics"]["sha256"]) == 64 and manifest["config"]["max_records_per_source"] == 40
        for lineage in manifest["inputs"].values():
            assert lineage["package"] and lineage["version"] and lineage["licence"]


def test_root_manifest_has_lineage_counts_and_drops(root):
    m = read_manifest(root)
    assert set(m["inputs"]) == set(SOURCE_NAMES) and set(m["datasets"]) == set(LAYOUT)
    gcide = m["sources"]["gcide"]
    assert gcide["licence"] == "GPL-2.0-or-later" and gcide["records_in"] >= gcide["records_out"] > 0
    assert m["metrics"]["peak_rss_mb"] > 0 and m["curation"]["in"] - sum(m["curation"]["dropped"].values()) == \
        m["curation"]["out"]
    raw = read_manifest(root / "domains/computing/raw")
    assert raw["curation"]["in"] >= raw["curation"]["out"] and "near_dedup" in raw["curation"]["dropped"]


def assert_no_test_answer_13gram_in_phase2(root):
    test_grams = set()
    for d in DOMAINS:
        for answer in load(root, f"domains/{d}/qa")["test"]["answer"]:
            test_grams |= grams(answer)
    assert test_grams  # the check below means something only if some answers are that long
    phase2 = load(root, "phase2")
    for split in phase2:
        for text in phase2[split]["text"]:
            assert not grams(text) & test_grams


def assert_no_test_question_in_training(root):
    test_qs = {q for d in DOMAINS for q in load(root, f"domains/{d}/qa")["test"]["question"]}
    training = set()
    for d in DOMAINS:
        qa = load(root, f"domains/{d}/qa")
        training |= set(qa["train"]["question"]) | set(qa["validation"]["question"])
    training |= set(load(root, "router")["train"]["prompt"]) | set(load(root, "phase1")["train"]["prompt"])
    phase2_text = "\n".join(load(root, "phase2")["train"]["text"])
    assert test_qs and not test_qs & training
    assert not [q for q in test_qs if q in phase2_text]


def test_no_test_answer_13gram_reaches_phase2(root):
    assert_no_test_answer_13gram_in_phase2(root)


def test_no_test_question_in_any_training_split(root):
    assert_no_test_question_in_training(root)


@pytest.mark.slow
def test_full_build_within_budget_and_held_out(tmp_path):
    """The real thing (~4 min on 2 cores): every source, no limits."""
    if any(not get_source(n).available() for n in SOURCE_NAMES):
        pytest.skip("a package is missing")
    summary = build_all(tmp_path / "root", BuildConfig(), log=lambda m: None)
    assert summary["seconds"] < 600 and summary["peak_rss_mb"] < 8192
    assert summary["datasets"]["phase1"]["rows"]["train"] + summary["datasets"]["phase1"]["rows"]["validation"] >= 2000
    assert_no_test_answer_13gram_in_phase2(tmp_path / "root")
    assert_no_test_question_in_training(tmp_path / "root")


def test_raw_and_questions_share_document_splits(root):
    # a test question's source document is never raw training text for its adapter
    qa, raw = load(root, "domains/scripture/qa"), load(root, "domains/scripture/raw")
    train_chapters = {t.split("\n")[0] for t in raw["train"]["text"]}
    for q in qa["test"]["question"]:
        ref = re.search(r"What does (.+):\d+ say\?", q)
        if ref:
            assert ref.group(1) not in train_chapters


def test_router_holds_out_phrasings_and_covers_labels(root):
    router = load(root, "router")
    assert set(router["train"]["template"]).isdisjoint(router["test"]["template"])
    assert set(router["train"]["template"]).isdisjoint(router["validation"]["template"])
    for split in router:
        assert set(router[split]["label"]) == {"base", *DOMAINS}
    assert any(t.startswith("base/gibberish") for t in router["test"]["template"])


def test_phase1_validation_words_are_held_out(root):
    p1 = load(root, "phase1")
    train_words = {r["word"] for r in p1["train"] if r["kind"] == "category"}
    val_words = {r["word"] for r in p1["validation"] if r["kind"] == "category"}
    assert val_words and train_words and not val_words & train_words
    assert {"greeting", "smalltalk"} <= set(p1["validation"]["kind"])
    assert set(p1["validation"].filter(lambda r: r["kind"] != "category")["prompt"]).isdisjoint(p1["train"]["prompt"])


def test_full_phase1_has_thousands_of_examples():
    src = get_source("wordnet")
    if not src.available():
        pytest.skip("wordnet-base not installed")
    splits, info = build_phase1(src, Phase1Config())
    assert info["examples"] >= 2000 and info["category_words"] >= 1500
    pairs = {r["word"]: r["category"] for rows in splits.values() for r in rows if r["kind"] == "category"}
    assert pairs["watermelon"] == "fruit" and pairs["poodle"] == "dog"


def test_stats_command_prints_every_source_and_writes_plots(root):
    res = runner.invoke(app, ["stats", "--root", str(root)])
    assert res.exit_code == 0, res.output
    for name in SOURCE_NAMES:
        assert re.search(rf"^{re.escape(name)}\s", res.stdout, re.MULTILINE), name
    assert {p.name for p in (root / "plots").iterdir()} == {"sources_mb.png", "drops.png", "datasets.png"}


def test_decontamination_removes_planted_leaks():
    index = NgramIndex(13)
    index.add("And God said, Let there be light: and there was light. And God saw the light, that it was good.")
    leak = ("First paragraph is clean and ordinary prose about nothing much at all really.\n\n"
            "Quoting: and God said let there be light and there was light and God saw the light that it was good.")
    kept, stats = decontaminate([{"text": leak, "source": "gcide"},
                                 {"text": "Let there be light, said nobody in this sentence.", "source": "gcide"}],
                                index)
    assert [r["text"] for r in kept] == [leak.split("\n\n")[0], "Let there be light, said nobody in this sentence."]
    assert stats["paragraphs_cut"] == 1 and stats["dropped"] == 0


def test_failed_build_leaves_no_partial_output(tmp_path, monkeypatch):
    def boom(run, root):
        raise RuntimeError("boom")

    monkeypatch.setattr(build_module, "_build_phase1", boom)
    out = tmp_path / "root"
    with pytest.raises(RuntimeError, match="boom"):
        build_all(out, BuildConfig(max_records_per_source=3, sources=["devil", "elements"]), log=lambda m: None)
    assert list(tmp_path.iterdir()) == []


def test_missing_package_fails_or_is_skipped(tmp_path, monkeypatch):
    monkeypatch.setattr(dictd, "DICTD_DIR", tmp_path / "nowhere")
    res = runner.invoke(app, ["build", "--out", str(tmp_path / "a"), "--set", "sources=[devil]"])
    assert res.exit_code == 2 and not (tmp_path / "a").exists()
    assert "error: source 'devil' needs the apt package 'dict-devil'" in res.output
    assert "apt-get install -y dict-devil" in res.output
    summary = build_all(tmp_path / "b", BuildConfig(sources=["devil"], on_error="skip"), log=lambda m: None)
    assert list(summary["missing_sources"]) == ["devil"]
    assert load(tmp_path / "b", "phase1")["train"].num_rows > 0  # greetings still build
    with pytest.raises(SourceMissing):
        build_all(tmp_path / "c", BuildConfig(sources=["devil"]), log=lambda m: None)


def test_build_json_summary_and_load_errors(root, tmp_path):
    with pytest.raises(FileNotFoundError, match="zephyra data build"):
        load(tmp_path, "phase1")
    assert json.loads(json.dumps(read_manifest(root)["datasets"]))["router"]["rows"]["test"] > 0
    assert load_from_disk(str(root / "domains/python/qa"))["test"].num_rows > 0
