"""A system on disk (base + adapters + router) loaded in one call; and the system comparison (routed, oracle, base,
merged) on a tiny system whose right routes are known."""

import json
import sys
from pathlib import Path

import pytest
import torch
from resolve_helpers import save_adapters

sys.path.insert(0, str(Path(__file__).parents[1] / "router"))
from router_helpers import WORDS, make_model, make_split, make_tokenizer  # noqa: E402

from zephyra.adapters import scan_adapters  # noqa: E402
from zephyra.data import DOMAINS  # noqa: E402
from zephyra.errors import ArtifactError  # noqa: E402
from zephyra.resolve.system import ResolveError, System, load_system  # noqa: E402

N = 4


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    """base/, adapters/<domain>/ (all six), router/ and data/domains/<d>/qa, the quickstart's layout."""
    from datasets import Dataset, DatasetDict

    from zephyra.manifest import write_manifest
    from zephyra.router import InModelTrainConfig, train_inmodel_router

    root = tmp_path_factory.mktemp("system")
    tok = make_tokenizer()
    torch.manual_seed(0)
    model = make_model(tok)
    router, _ = train_inmodel_router(model, tok, make_split("train"), make_split("validation"), InModelTrainConfig())
    model.save_pretrained(root / "base")
    tok.save_pretrained(root / "base")
    router.save(root / "router")
    save_adapters(model, root / "adapters", names=DOMAINS)
    for d in DOMAINS:  # held-out questions: each domain's own words in a phrasing the router never saw
        qa = root / "data" / "domains" / d / "qa"
        test = Dataset.from_dict({"question": [f"Give me details on {w}, please." for w in WORDS[d][:5]],
                                  "answer": [f"{w} is a {d} word" for w in WORDS[d][:5]]})
        DatasetDict({"test": test}).save_to_disk(str(qa))
        write_manifest(qa, "dataset")
    return {k: root / k for k in ("base", "adapters", "router", "data")}


@pytest.fixture(scope="module")
def system(dirs):
    s = load_system(dirs["base"], dirs["adapters"], dirs["router"])
    yield s
    s.close()


def test_load_system_finds_the_three_parts(system, dirs):
    assert sorted(system.adapters) == sorted(DOMAINS) and system.notes == []
    assert system.router.kind == "inmodel" and system.choices[:2] == ["auto", "base"]
    assert [d.adapter for d in system.route(["What is a compiler?", "hello"])] == ["computing", "base"]
    out = system.resolve(["Who is Ophelia?", "hello"], max_new_tokens=N)
    assert [o.adapter for o in out] == ["shakespeare", "base"] and out[0].confidence > 0.5
    forced = system.resolve("Who is Ophelia?", adapter="shakespeare", max_new_tokens=N)[0]
    assert forced.text == out[0].text and forced.confidence is None


def test_missing_parts_are_notes_and_asking_for_them_is_one_line(dirs, tmp_path):
    s = load_system(dirs["base"], tmp_path / "none", tmp_path / "no-router")
    assert any("no adapters under" in n for n in s.notes) and any("no router at" in n for n in s.notes)
    with pytest.raises(ResolveError, match="adapter 'auto' needs a router: no router at"):
        s.resolve("hi")
    with pytest.raises(ResolveError, match="no adapter named 'python'; known: auto, base$"):
        s.resolve("hi", adapter="python")
    assert s.resolve("hi", adapter="base", max_new_tokens=N)[0].adapter == "base"
    s.close()
    with pytest.raises(ArtifactError, match="not a model directory"):
        load_system(tmp_path / "nothing")


def test_a_domain_without_its_adapter_is_answered_by_the_base(dirs, tmp_path):
    some = tmp_path / "adapters"
    some.mkdir()
    for d in ("computing", "python"):
        (some / d).symlink_to(dirs["adapters"] / d)
    s = load_system(dirs["base"], some, dirs["router"])
    assert any(n.startswith("no adapter for") and "shakespeare" in n for n in s.notes)
    out = s.resolve(["Who is Ophelia?", "What is a compiler?"], max_new_tokens=N)
    assert [o.adapter for o in out] == ["base", "computing"]
    assert max(out[0].scores, key=out[0].scores.get) == "shakespeare"  # the router's choice stays visible
    assert out[0].text == s.resolve("Who is Ophelia?", adapter="base", max_new_tokens=N)[0].text
    fused = s.resolve(["Who is Ophelia?", "What does enumerate do?"], mode="fused", max_new_tokens=N)
    for f in fused:
        assert set(f.weights) <= {"computing", "python"}  # only what is loaded
    assert sum(fused[0].weights.values()) < 1e-3  # shakespeare's share went to the base
    assert fused[1].adapter == "python"
    s.close()


def test_scan_adapters_names_by_manifest_and_refuses_duplicates(dirs, tmp_path):
    assert scan_adapters(dirs["adapters"]) == {d: dirs["adapters"] / d for d in sorted(DOMAINS)}
    assert scan_adapters(tmp_path / "absent") == {} and scan_adapters(None) == {}
    assert scan_adapters(dirs["adapters"] / "python") == {"python": dirs["adapters"] / "python"}
    twice = tmp_path / "twice"
    twice.mkdir()
    for name in ("a", "b"):
        (twice / name).symlink_to(dirs["adapters"] / "python")
    (twice / ".python.tmp").symlink_to(dirs["adapters"] / "chemistry")  # an atomic write in progress: skipped
    with pytest.raises(ArtifactError, match="two adapters named 'python' \\(a, b\\)"):
        scan_adapters(twice)


# --- the system comparison ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def comparison(dirs):
    from zephyra.evaluation.system import compare_systems

    return compare_systems(dirs["base"], dirs["adapters"], dirs["router"], dirs["data"], max_questions=3,
                           max_new_tokens=N, batch_size=8)


def test_compare_systems_oracle_row_is_the_forced_adapters(comparison, dirs):
    assert comparison["domains"] == list(DOMAINS) and comparison["questions"] == dict.fromkeys(DOMAINS, 3)
    answers = comparison["answers"]
    assert len(answers) == 18
    from zephyra.loader import load_model

    model, tok = load_model(dirs["base"])
    resolver = System(model, tok, scan_adapters(dirs["adapters"]))
    for d in DOMAINS:
        rows = [a for a in answers if a["domain"] == d]
        forced = resolver.resolve([a["question"] for a in rows], adapter=d, max_new_tokens=N)
        assert [a["oracle"] for a in rows] == [f.text for f in forced]
    base = resolver.resolve([a["question"] for a in answers], adapter="base", max_new_tokens=N)
    assert [a["base"] for a in answers] == [b.text for b in base]
    # the router knows these words: routed answers are the oracle's wherever it routed right
    routing = comparison["routing"]
    assert routing["accuracy"] == pytest.approx(sum(a["routed_adapter"] == a["domain"] for a in answers) / 18)
    assert routing["accuracy"] == 1.0 and routing["to_base"] == 0.0
    assert [a["routed"] for a in answers] == [a["oracle"] for a in answers]
    assert comparison["systems"]["routed"]["overall"] == comparison["systems"]["oracle"]["overall"]
    resolver.close()


def test_compare_systems_scores_and_markdown(comparison):
    from zephyra.evaluation.metrics import squad_scores
    from zephyra.evaluation.system import SYSTEMS, answer_correct, markdown

    answers = comparison["answers"]
    for name in SYSTEMS:
        overall = comparison["systems"][name]["overall"]
        assert set(overall) == {"f1", "exact_match", "rougeL", "accuracy", "n"} and overall["n"] == 18
        refs = [(a["question"], a["answer"]) for a in answers]
        assert overall["accuracy"] == pytest.approx(sum(answer_correct(a[name], q, r) for a, (q, r) in
                                                        zip(answers, refs)) / 18)
        assert overall["f1"] == pytest.approx(squad_scores([a[name] for a in answers],
                                                           [a["answer"] for a in answers])["f1"])
        assert set(comparison["systems"][name]["by_domain"]) == set(DOMAINS)
    assert len({a["merged"] for a in answers} | {a["base"] for a in answers}) > 1
    md = markdown(comparison)
    for label in ("routed (top-1)", "oracle routing", "base model", "merged adapter (linear)", "routing accuracy"):
        assert label in md
    assert "fused" in comparison["systems"] and "routed+rag" not in comparison["systems"]  # no grounded adapter
    json.dumps(comparison)  # serialisable as it stands


def test_exact_answer_accuracy_wants_the_fact_the_question_does_not_say():
    from zephyra.evaluation.system import answer_correct, answer_key

    assert answer_key("What is the capital of France?", "The capital of France is Paris.") == {"paris"}
    assert answer_correct("France: its capital is Paris. [1]", "What is the capital of France?",
                          "The capital of France is Paris.")
    assert not answer_correct("The capital of Solara is Badam.", "What is the capital of France?",
                              "The capital of France is Paris.")
    verse = "In the beginning God created the heaven and the earth."
    assert answer_correct(f"Genesis 1:1 {verse}", "What does Genesis 1:1 say?", verse)
    assert not answer_correct("Genesis 1:1 In the beginning.", "What does Genesis 1:1 say?", verse)


def test_held_out_questions_are_capped_and_deterministic(dirs):
    from zephyra.evaluation.system import held_out_questions

    a = held_out_questions(dirs["data"], ["python", "chemistry"], max_questions=2)
    assert a == held_out_questions(dirs["data"], ["python", "chemistry"], max_questions=2)
    assert [q["domain"] for q in a] == ["python", "python", "chemistry", "chemistry"]
    assert len(held_out_questions(dirs["data"], ["python"], max_questions=0)) == 5
    with pytest.raises(FileNotFoundError, match="no dataset here"):
        held_out_questions(dirs["data"], ["hamlet"])


def test_the_entry_point_writes_the_report(dirs, tmp_path):
    from typer.testing import CliRunner

    from zephyra.evaluation.cli import app

    out = tmp_path / "eval"
    result = CliRunner().invoke(app, ["system", "--out", str(out), "--base", str(dirs["base"]), "--adapters",
                                      str(dirs["adapters"]), "--router", str(dirs["router"]), "--data",
                                      str(dirs["data"]), "--max-questions", "1", "--max-new-tokens", "2"])
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == {"system.md", "system.json", "manifest.json"}
    report = json.loads((out / "system.json").read_text())
    assert report["questions"] == dict.fromkeys(DOMAINS, 1)
    assert json.loads((out / "manifest.json").read_text())["kind"] == "report"
    bad = CliRunner().invoke(app, ["system", "--out", str(tmp_path / "x"), "--base", str(dirs["base"]), "--router",
                                   str(tmp_path / "none"), "--adapters", str(dirs["adapters"])])
    assert bad.exit_code == 2 and "needs a router and adapters" in bad.output
