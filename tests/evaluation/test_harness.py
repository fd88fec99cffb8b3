"""zephyra eval harness: lm-evaluation-harness (HF backend) on the Qwen3 export agrees with our own evaluator on
local task files made from held-out sets, offline."""

import copy
import json
import sys
from pathlib import Path

import pytest
import torch
from datasets import Dataset, DatasetDict

sys.path.insert(0, str(Path(__file__).parents[1] / "router"))
from router_helpers import save_tiny_base  # noqa: E402

from zephyra.adapters import attach_adapter, save_adapter  # noqa: E402

pytest.importorskip("lm_eval")


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    root = tmp_path_factory.mktemp("harness")
    model = save_tiny_base(root / "base")
    torch.manual_seed(5)
    peft = attach_adapter(copy.deepcopy(model), "lora", name="python", identity_init=False)
    save_adapter(peft, root / "adapters" / "python")
    data = root / "data"
    texts = ["python is a language", "the list sorts its items", "a tuple holds values", "print shows text"]
    DatasetDict({"validation": Dataset.from_dict({"text": texts, "source": ["t"] * 4, "licence": ["x"] * 4})}
                ).save_to_disk(str(data / "phase2"))
    words = [("apple", "fruit"), ("oak", "tree"), ("cod", "fish"), ("rose", "flower"), ("wren", "bird")]
    DatasetDict({"validation": Dataset.from_dict({
        "prompt": [w for w, _ in words], "response": [c for _, c in words], "kind": ["category"] * 5,
        "word": [w for w, _ in words], "category": [c for _, c in words]})}).save_to_disk(str(data / "phase1"))
    qa = [("What does len() do?", "It returns the length."), ("What does zip() do?", "It pairs items."),
          ("What is a list?", "A mutable sequence."), ("What is print?", "It writes text."),
          ("What is a dict?", "A mapping of keys.")]
    DatasetDict({"test": Dataset.from_dict({"question": [q for q, _ in qa], "answer": [a for _, a in qa],
                                            "source": ["t"] * 5, "doc_id": ["d"] * 5, "entity": ["e"] * 5})}
                ).save_to_disk(str(data / "domains" / "python" / "qa"))
    return root


def test_lm_eval_agrees_with_our_evaluator(system, tmp_path):
    from zephyra.evaluation.harness import run_harness

    report = run_harness(system / "base", {"python": system / "adapters" / "python"}, system / "data", tmp_path,
                         limit=4)
    rows = {(r["system"], r["task"], r["metric"]): r for r in report["rows"]}
    assert set(rows) == {("base", "zephyra_general", "word_perplexity"), ("base", "zephyra_general", "byte_perplexity"),
                         ("base", "zephyra_general", "bits_per_byte"), ("base", "zephyra_phase1", "acc"),
                         ("base", "zephyra_qa_python", "acc"), ("adapter python", "zephyra_qa_python", "acc")}
    for key, r in rows.items():
        assert r["lm_eval"] is not None, key
        assert r["lm_eval"] == pytest.approx(r["ours"], rel=1e-4, abs=1e-6), key
    assert rows[("base", "zephyra_general", "bits_per_byte")]["ours"] > 0
    # the task files are lm-eval's own format, on local JSONL: 4 choices, the gold one among them
    doc = json.loads((tmp_path / "tasks" / "zephyra_qa_python.jsonl").read_text().splitlines()[0])
    assert len(doc["choices"]) == 4 and doc["choices"][doc["gold"]] == "It returns the length."
    assert "dataset_path: json" in (tmp_path / "tasks" / "zephyra_qa_python.yaml").read_text()
    assert "| base | zephyra_general |" in (tmp_path / "harness.md").read_text()


def test_cli_refuses_missing_inputs(tmp_path):
    from typer.testing import CliRunner

    from zephyra.cli import app

    res = CliRunner().invoke(app, ["eval", "harness", "--base", str(tmp_path / "nope"), "--data", str(tmp_path)])
    assert res.exit_code == 2 and "--base" in res.output and "no such directory" in res.output
    res = CliRunner().invoke(app, ["eval", "harness", "--base", str(tmp_path), "--data", str(tmp_path),
                                   "--adapters", str(tmp_path)])
    assert res.exit_code == 2 and "no adapter" in res.output
