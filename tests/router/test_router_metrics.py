"""Routing metrics against values worked out by hand."""

import numpy as np
import pytest

from zephyra.router.metrics import abstention_recall, accuracy, by_group, confusion, macro_f1, route_metrics

TRUE = ["base", "base", "python", "python", "chemistry", "chemistry"]
PRED = ["base", "python", "python", "python", "chemistry", "base"]


def test_accuracy_and_abstention_recall():
    assert accuracy(TRUE, PRED) == pytest.approx(4 / 6)
    assert abstention_recall(TRUE, PRED) == pytest.approx(1 / 2)
    assert np.isnan(abstention_recall(["python"], ["python"]))


def test_macro_f1_by_hand():
    # base: P 1/2, R 1/2 -> 1/2; python: P 2/3, R 1 -> 4/5; chemistry: P 1, R 1/2 -> 2/3
    assert macro_f1(TRUE, PRED) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)


def test_confusion_rows_are_true_labels():
    m = confusion(TRUE, PRED, ["base", "python", "chemistry"])
    assert m.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]


def test_route_metrics_and_groups():
    m = route_metrics(TRUE, PRED)
    assert m["n"] == 6 and m["accuracy"] == pytest.approx(4 / 6)
    g = by_group(TRUE, PRED, ["a", "a", "b", "b", "b", "b"])
    assert g == {"a": {"n": 2, "accuracy": 0.5}, "b": {"n": 4, "accuracy": 0.75}}


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="predictions"):
        accuracy(["base"], [])
    with pytest.raises(ValueError, match="no examples"):
        accuracy([], [])
