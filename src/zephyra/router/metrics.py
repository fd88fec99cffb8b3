"""Routing metrics on decided labels: accuracy, macro-F1, abstention recall, confusion matrix.

Macro-F1 and the confusion matrix are scikit-learn's; abstention recall is ours: the share of true-``base``
prompts (general, off-topic, greetings, gibberish) that the router sent to ``base``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .calibration import BASE


def _check(y_true: Sequence[str], y_pred: Sequence[str]) -> None:
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} true labels but {len(y_pred)} predictions")
    if not y_true:
        raise ValueError("no examples to score")


def accuracy(y_true: Sequence[str], y_pred: Sequence[str]) -> float:
    _check(y_true, y_pred)
    return float(np.mean([t == p for t, p in zip(y_true, y_pred)]))


def macro_f1(y_true: Sequence[str], y_pred: Sequence[str]) -> float:
    """Unweighted mean F1 over the classes present in ``y_true`` (a class the data lacks is not scored;
    predictions into it still cost the true class its recall)."""
    from sklearn.metrics import f1_score

    _check(y_true, y_pred)
    return float(f1_score(list(y_true), list(y_pred), labels=sorted(set(y_true)), average="macro", zero_division=0))


def abstention_recall(y_true: Sequence[str], y_pred: Sequence[str]) -> float:
    """Share of true-``base`` prompts routed to ``base``; NaN when there are none."""
    _check(y_true, y_pred)
    sent = [p == BASE for t, p in zip(y_true, y_pred) if t == BASE]
    return float(np.mean(sent)) if sent else float("nan")


def confusion(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """Counts (L, L): row = true label, column = decided label, in the order of ``labels``."""
    from sklearn.metrics import confusion_matrix

    _check(y_true, y_pred)
    return confusion_matrix(list(y_true), list(y_pred), labels=list(labels))


def route_metrics(y_true: Sequence[str], y_pred: Sequence[str]) -> dict[str, float]:
    """The headline numbers of issue 6 (ECE needs confidences: see calibration.expected_calibration_error)."""
    return {"accuracy": accuracy(y_true, y_pred), "macro_f1": macro_f1(y_true, y_pred),
            "abstention_recall": abstention_recall(y_true, y_pred), "n": len(y_true)}


def by_group(y_true: Sequence[str], y_pred: Sequence[str], groups: Sequence[str]) -> dict[str, dict]:
    """Accuracy and count per group (e.g. per phrasing family ``template``): where a router fails."""
    out: dict[str, dict] = {}
    for g in sorted(set(groups)):
        idx = [i for i, x in enumerate(groups) if x == g]
        out[g] = {"n": len(idx), "accuracy": float(np.mean([y_true[i] == y_pred[i] for i in idx]))}
    return out
