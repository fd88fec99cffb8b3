"""The comparison report: metrics from decisions, ECE over the labels a router knows, the Markdown table, the
reliability diagram and the report directory."""

import json

import numpy as np
import pytest

from zephyra.router import Calibration, RouterSplit, evaluate_router, markdown_table, write_report
from zephyra.router.decision import decisions_from_logits


class TableRouter:
    """A router whose logits are given per prompt: the evaluation's arithmetic can be checked by hand."""

    kind = "table"

    def __init__(self, labels, logits: dict, calibration=None):
        self.labels, self.logits, self.calibration = labels, logits, calibration or Calibration()

    def route(self, prompts):
        return decisions_from_logits(prompts, np.array([self.logits[p] for p in prompts]), self.labels,
                                     self.calibration)


SPLIT = RouterSplit(["a", "b", "c", "d"], ["python", "chemistry", "base", "base"],
                    ["python/x", "chemistry/x", "base/offtopic", "base/gibberish"])


def test_evaluation_of_a_router_with_a_base_class():
    logits = {"a": [0, 9, 0], "b": [0, 9, 0], "c": [9, 0, 0], "d": [0, 0, 0.5]}
    e = evaluate_router(TableRouter(["base", "python", "chemistry"], logits, Calibration(threshold=0.5)), SPLIT,
                        name="t", warmup=0)
    # decisions: python, python (wrong), base, base (abstained: top chemistry at 0.45)
    assert e.accuracy == pytest.approx(0.75) and e.abstention_recall == 1.0
    assert e.by_template["chemistry/x"]["accuracy"] == 0.0 and e.by_template["base/gibberish"]["accuracy"] == 1.0
    assert sum(map(sum, e.confusion)) == 4 and e.ece > 0 and e.ms_per_prompt >= 0


def test_ece_of_a_router_without_base_counts_domain_prompts_only():
    logits = {"a": [9, 0], "b": [0, 9], "c": [0.1, 0], "d": [0, 0.1]}
    e = evaluate_router(TableRouter(["python", "chemistry"], logits, Calibration(threshold=0.9)), SPLIT, warmup=0)
    assert e.accuracy == 1.0 and e.ece == pytest.approx(1 - 1 / (1 + np.exp(-9)), abs=1e-6)


def test_report_directory(tmp_path):
    logits = {"a": [0, 9, 0], "b": [0, 0, 9], "c": [9, 0, 0], "d": [9, 0, 0]}
    evals = [evaluate_router(TableRouter(["base", "python", "chemistry"], logits), SPLIT, name=n, warmup=0)
             for n in ("one", "two")]
    table = markdown_table(evals)
    assert table.splitlines()[0].startswith("| router | accuracy | macro-F1 | abstention recall | ECE | ms/prompt")
    assert "| one | 100.0% |" in table and "| base/gibberish | 1 |" in table
    out = write_report(evals, tmp_path / "report", inputs={"data": "synthetic"})
    assert {p.name for p in out.iterdir()} == {"table.md", "metrics.json", "reliability.png", "manifest.json"}
    assert (out / "reliability.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "manifest.json").read_text())["metrics"]["one"]["accuracy"] == 1.0
