"""The route JSON contract and the input checks every router shares."""

import json

import numpy as np
import pytest

from zephyra.router import Calibration, EmptyPromptError, RouteDecision, RouterInputError
from zephyra.router.decision import check_prompts, decisions_from_logits

LABELS = ["base", "python", "chemistry"]


def test_to_json_is_exactly_the_contract():
    d = RouteDecision("What does zip() do?", "python", 0.9, {"base": 0.05, "python": 0.9, "chemistry": 0.05})
    out = d.to_json()
    assert set(out) == {"prompt", "adapter", "confidence", "scores"}
    assert json.loads(json.dumps(out)) == out
    assert d.top == "python" and not d.abstained


def test_decisions_abstain_below_threshold_and_scores_are_probabilities():
    logits = np.array([[0.0, 5.0, 0.0], [0.0, 0.3, 0.2], [4.0, 0.0, 0.0]])
    ds = decisions_from_logits(["a", "b", "c"], logits, LABELS, Calibration(temperature=1.0, threshold=0.5))
    assert [d.adapter for d in ds] == ["python", "base", "base"]
    assert ds[1].abstained and ds[1].top == "python" and not ds[2].abstained
    for d in ds:
        assert sum(d.scores.values()) == pytest.approx(1.0) and d.confidence == max(d.scores.values())


def test_temperature_changes_confidence_not_the_top_label():
    logits = np.array([[0.0, 2.0, 1.0]])
    hot = decisions_from_logits(["a"], logits, LABELS, Calibration(temperature=4.0))[0]
    cold = decisions_from_logits(["a"], logits, LABELS, Calibration(temperature=0.5))[0]
    assert hot.top == cold.top == "python" and hot.confidence < cold.confidence


@pytest.mark.parametrize("prompts, error, match", [
    (["fine", ""], EmptyPromptError, "prompt 1 is empty"),
    (["   \n"], EmptyPromptError, "prompt 0 is empty"),
    ([None], RouterInputError, "not text"),
    ("one string", RouterInputError, "list of prompts"),
])
def test_bad_prompts_are_one_line_errors(prompts, error, match):
    with pytest.raises(error, match=match) as e:
        check_prompts(prompts)
    assert isinstance(e.value, ValueError) and "\n" not in str(e.value)


def test_logits_shape_is_checked():
    with pytest.raises(ValueError, match="shape"):
        decisions_from_logits(["a"], np.zeros((1, 2)), LABELS, Calibration())
