"""Choosing the base (bench/base_choice.py): the equal-compute plan, the rule, bad settings, and a tiny end-to-end
run (two tiny candidates through both phases, an adapter, the isolation matrix and grounded QA) on a tmp data root."""

import importlib.util
import json
import math
import random
from pathlib import Path

import pytest

from zephyra.bench import base_choice as bc
from zephyra.errors import ConfigError

_spec = importlib.util.spec_from_file_location("training_fixtures", Path(__file__).parents[1] / "training" / "conftest.py")
fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixtures)

TERMS = {"python": "def class import list dict lambda yield loop function module".split(),
         "chemistry": "atom bond acid base ion oxide carbon proton molecule reaction".split()}


def _domain(root: Path, name: str, seed: int) -> list[dict]:
    from datasets import Dataset, DatasetDict

    rng = random.Random(seed)
    words = TERMS[name]

    def text():
        return " ".join(rng.choice(words + fixtures.WORDS[:10]) for _ in range(rng.randint(8, 20))) + "."

    DatasetDict({s: Dataset.from_dict({"text": [text() for _ in range(n)]})
                 for s, n in (("train", 60), ("validation", 10), ("test", 10))}).save_to_disk(
        str(root / "domains" / name / "raw"))
    chunks, qa = [], {}
    for s, n in (("train", 20), ("validation", 6), ("test", 6)):
        rows = []
        for i in range(n):
            w = words[i % len(words)]
            cid = f"{name}:{s}:{i}"
            chunks.append({"id": cid, "doc_id": cid, "domain": name, "source": "test", "text": f"The {w} is {text()}"})
            rows.append({"question": f"what is the {w}?", "answer": f"the {w} is a {name} word.", "doc_id": cid})
        qa[s] = Dataset.from_list(rows)
    DatasetDict(qa).save_to_disk(str(root / "domains" / name / "qa"))
    return chunks


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from zephyra.retrieval.index import build_index
    from zephyra.tokenizer import train_tokenizer

    root = tmp_path_factory.mktemp("base-choice")
    data = root / "data"
    fixtures.make_phase1(data / "phase1")
    fixtures.make_text(data / "phase2")
    texts = []
    for i, d in enumerate(TERMS):
        chunks = _domain(data, d, i)
        build_index(chunks, root / "index" / d, domain=d, encoder=None, log=lambda s: None)
        texts += [c["text"] for c in chunks]
    from zephyra.training.config import DataSource
    from zephyra.training.data import iter_documents

    texts += [*iter_documents(DataSource(str(data / "phase1"), formatter="phase1")),
              *iter_documents(DataSource(str(data / "phase2"), formatter="text"))]
    train_tokenizer(texts, root / "tokenizer", vocab_size=400)
    return {"data": data, "tokenizer": root / "tokenizer", "index": root / "index", "root": root}


def _cfg(world, **kw):
    return bc.BaseChoiceConfig(level="tiny", data=world["data"], tokenizer=world["tokenizer"], index=world["index"],
                               cache=world["root"] / "cache", **kw)


def test_the_plan_gives_every_candidate_the_same_compute(world):
    cfg = bc.BaseChoiceConfig(level="full", data=world["data"])
    p = bc.plan(cfg, vocab_size=4096)
    assert set(p) == set(bc.LEVELS["full"]["candidates"])
    for phase in ("phase1", "phase2"):
        budget = p["zephyra:mini"][phase]["flops"]
        assert p["zephyra:mini"][phase]["steps"] == p["zephyra:mini"][phase]["reference_steps"]
        for c, row in p.items():
            # equal to within one step's rounding
            assert abs(row[phase]["flops"] - budget) <= row[phase]["flops"] / row[phase]["steps"], (c, phase)
    # a base with more FLOPs per token trains fewer steps, in proportion
    mini, small, big = (p[c]["phase2"] for c in ("zephyra:mini", "zephyra:small", "zephyra:base"))
    assert big["steps"] < small["steps"] < mini["steps"]
    ratio = small["flops_per_token"] / mini["flops_per_token"]
    assert abs(mini["steps"] / small["steps"] - ratio) / ratio < 0.02
    assert p["zephyra:base"]["matmul_params"] > 10 * p["zephyra:mini"]["matmul_params"]


def test_flops_per_token_counts_weights_and_attention():
    from zephyra.training.prepare import matmul_params

    m = bc.build_candidate("llama:tiny", vocab_size=256)
    c = m.config
    assert bc.flops_per_token(m, 64) == 6 * matmul_params(m) + 6 * c.num_hidden_layers * 64 * c.hidden_size
    g = bc.build_candidate("gpt2:tiny", vocab_size=256)
    assert bc.flops_per_token(g, 64) == 6 * matmul_params(g) + 6 * g.config.n_layer * 64 * g.config.n_embd


def _rows(**metrics):
    return {c: {"metrics": m, "flops_per_token": f} for c, (m, f) in metrics.items()}


def test_the_rule_scales_each_metric_and_breaks_ties_by_cost():
    rows = _rows(a=({"general_ppl": 50.0, "grounded_qa": 0.2, "routing": 0.9}, 1.0),
                 b=({"general_ppl": 40.0, "grounded_qa": 0.4, "routing": None}, 2.0),
                 c=({"general_ppl": 60.0, "grounded_qa": 0.3, "routing": 0.8}, 3.0))
    s = bc.scores(rows)
    assert s["scaled"]["b"]["general_ppl"] == 1.0 and s["scaled"]["c"]["general_ppl"] == 0.0  # lower ppl is better
    assert s["scaled"]["a"]["general_ppl"] == pytest.approx(0.5)
    # cannot route in-model: accuracy 0 in the scaling, so the worst router still scores above it
    assert s["scaled"]["b"]["routing"] == 0.0 and s["scaled"]["c"]["routing"] == pytest.approx(0.8 / 0.9)
    assert s["score"]["a"] == pytest.approx((0.5 + 0.0 + 1.0) / 3)
    assert s["score_no_routing"]["b"] == pytest.approx(1.0)
    assert s["chosen"] == "b" and s["tied"] == ["b"]
    # within TIE of the best, a candidate at least 10% cheaper wins ...
    tied = _rows(x=({"general_ppl": 40.0, "grounded_qa": 0.30}, 5.0), y=({"general_ppl": 40.2, "grounded_qa": 0.30}, 1.0),
                 z=({"general_ppl": 80.0, "grounded_qa": 0.10}, 0.5))
    t = bc.scores(tied)
    assert set(t["tied"]) == {"x", "y"} and t["chosen"] == "y"
    # ... but a sliver of cost (two bases of the same size) does not overturn the better score
    even = _rows(x=({"general_ppl": 40.0, "grounded_qa": 0.30}, 1.0), y=({"general_ppl": 40.2, "grounded_qa": 0.30}, 0.99),
                 z=({"general_ppl": 80.0, "grounded_qa": 0.10}, 0.5))
    e = bc.scores(even)
    assert set(e["tied"]) == {"x", "y"} and e["chosen"] == "x"


@pytest.mark.parametrize("kw, message", [
    (dict(level="huge"), "level must be one of"),
    (dict(candidates=["zephyra:mini", "bert:mini"]), "candidate 'bert:mini'"),
    (dict(candidates=["zephyra:mini", "zephyra:giant"]), "candidate 'zephyra:giant'"),
    (dict(candidates=["zephyra:mini"]), "two or more distinct"),
    (dict(domains=["cooking"]), "domains must be some of"),
    (dict(scale=0.0), "scale must be positive"),
])
def test_bad_settings_are_one_line_errors(kw, message):
    with pytest.raises(ConfigError, match=message):
        bc.BaseChoiceConfig(**kw)


def test_missing_quickstart_outputs_are_named(tmp_path):
    cfg = bc.BaseChoiceConfig(level="tiny", data=tmp_path / "nodata", tokenizer=tmp_path / "tok", index=tmp_path / "ix")
    with pytest.raises(ConfigError, match=r"missing: the phase-1 set .*run zephyra quickstart first"):
        bc.run(cfg, tmp_path / "out")
    assert not (tmp_path / "out" / "base.json").exists()


@pytest.fixture(scope="module")
def result(world):
    return bc.run(_cfg(world), world["root"] / "out")


def test_end_to_end_trains_evaluates_and_chooses(world, result):
    out = world["root"] / "out"
    saved = json.loads((out / "base.json").read_text())
    assert saved["rows"].keys() == result["rows"].keys()
    assert set(saved["rows"]) == {"zephyra:tiny", "llama:tiny"}
    for c, r in saved["rows"].items():
        plan = r["plan"]
        m = r["metrics"]
        for phase in ("phase1", "phase2"):
            res = json.loads((out / c.replace(":", "-") / phase / "results.json").read_text())
            assert res["metrics"]["step"] == plan[phase]["steps"]  # trained exactly the planned steps
        assert m["general_ppl"] == pytest.approx(math.exp(json.loads(
            (out / c.replace(":", "-") / "phase2" / "results.json").read_text())["metrics"]["val/general"]))
        assert 0.0 <= m["phase1_category"] <= 1.0 and 0.0 <= m["grounded_qa"] <= 1.0 and 0.0 <= m["grounded_f1"] <= 1
        own = r["details"]["adapters"]["own_ratio"]["python"]
        assert m["adapter_gain"] == pytest.approx(own) and own > 0
        assert m["isolation"] == pytest.approx(abs(r["details"]["adapters"]["other_ratios"]["python"]["chemistry"] - 1))
        qa = r["details"]["grounded_qa"]
        assert set(qa["modes"]) == {"cited", "generate", "quote"}
        assert qa["modes"]["cited"]["overall"]["n"] == 4 and qa["modes"]["cited"]["overall"]["grounded_share"] > 0
        assert m["grounded_qa"] == qa["modes"]["cited"]["overall"]["accuracy"]
        assert m["grounded_f1"] == qa["modes"]["generate"]["overall"]["f1"]
        assert all(a["domain"] == "python" and "generated" in a for a in qa["answers"])
        assert (out / c.replace(":", "-") / "adapters" / "python" / "manifest.json").is_file()
        assert r["curve"] and r["curve"][-1]["seconds"] == pytest.approx(r["train_seconds"])
    # the same compute: the llama and the zephyra tiny differ in FLOPs per token, so in steps
    rows = saved["rows"]
    fz, fl = (rows[c]["flops"] for c in ("zephyra:tiny", "llama:tiny"))
    assert abs(fz - fl) / fz < 0.2
    assert saved["choice"]["chosen"] in rows and set(saved["choice"]["score"]) == set(rows)
    md = (out / "base.md").read_text()
    assert f"**Chosen:** {saved['choice']['chosen']}" in md
    assert f"{rows['llama:tiny']['metrics']['general_ppl']:.2f}" in md
    assert (out / "base.png").stat().st_size > 10_000
    # zephyra bench report picks it up beside the other benchmarks, and fills a docs marker from it
    from zephyra.bench.report import update_docs, write_report

    report = write_report(out).read_text()
    assert "## Choosing the base (`base`)" in report and f"Chosen: {saved['choice']['chosen']}" in report
    doc = world["root"] / "doc.md"
    doc.write_text("before\n<!-- bench:base -->\nold\n<!-- /bench:base -->\nafter\n")
    assert update_docs(doc, out) == ["base"]
    assert "old" not in doc.read_text() and "| zephyra:tiny" in doc.read_text()


def test_a_second_run_keeps_the_trained_candidates(world, result):
    out = world["root"] / "out"
    stamp = (out / "zephyra-tiny" / "phase2" / "final" / "manifest.json").stat().st_mtime_ns
    again = bc.run(_cfg(world), out)
    assert (out / "zephyra-tiny" / "phase2" / "final" / "manifest.json").stat().st_mtime_ns == stamp
    assert again["rows"]["zephyra:tiny"]["metrics"]["general_ppl"] == result["rows"]["zephyra:tiny"]["metrics"][
        "general_ppl"]
