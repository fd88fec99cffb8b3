"""Temperature scaling, ECE, reliability bins and the abstention threshold, on numbers worked out by hand."""

import numpy as np
import pytest

from zephyra.router.calibration import (
    Calibration, CalibrationConfig, decide, expected_calibration_error, fit_calibration, fit_temperature,
    fit_threshold, nll, reliability_bins, softmax,
)


def test_softmax_rows_sum_to_one_and_temperature_flattens():
    z = np.array([[2.0, 0.0, -1.0], [1000.0, 0.0, 0.0]])  # the second would overflow a naive exp
    p = softmax(z)
    assert np.allclose(p.sum(1), 1.0) and p[1, 0] == pytest.approx(1.0)
    assert softmax(z, 10.0)[0, 0] < p[0, 0]


def test_fit_temperature_recovers_the_temperature_that_generated_the_labels():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4000, 5)) * 3.0
    true_t = 2.5
    targets = np.array([rng.choice(5, p=row) for row in softmax(logits, true_t)])
    t = fit_temperature(logits, targets)
    assert t == pytest.approx(true_t, rel=0.1)
    assert nll(logits, targets, t) <= nll(logits, targets, 1.0)


def test_fit_temperature_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match="logits"):
        fit_temperature(np.zeros((3, 2)), np.zeros(4, dtype=int))


def test_ece_by_hand():
    # bin (0.6, 0.667]: confidences 0.65, 0.65, accuracy 1/2 -> gap 0.15; bin (0.933, 1]: 0.95, 0.95 both right
    conf = np.array([0.65, 0.65, 0.95, 0.95])
    correct = np.array([1, 0, 1, 1])
    assert expected_calibration_error(conf, correct, 15) == pytest.approx((2 * 0.15 + 2 * 0.05) / 4)
    assert expected_calibration_error(np.array([1.0, 1.0]), np.array([1, 1])) == pytest.approx(0.0)


def test_reliability_bins_edges_and_counts():
    bins = reliability_bins(np.array([0.0, 0.1, 0.5, 1.0]), np.array([1, 0, 1, 1]), n_bins=2)
    assert [b["count"] for b in bins] == [3, 1]  # 0.5 sits in (0, 0.5]; 0 goes to the first bin
    assert bins[0]["accuracy"] == pytest.approx(2 / 3) and bins[1]["confidence"] == 1.0
    assert reliability_bins(np.array([0.9]), np.array([1]), 15)[0]["accuracy"] is None


def test_decide_abstains_below_threshold():
    probs = np.array([[0.1, 0.9], [0.45, 0.55]])
    labels, conf = decide(probs, ["base", "python"], 0.6)
    assert labels == ["python", "base"] and conf.tolist() == [0.9, 0.55]


# probs over (base, python, chemistry); ordered by confidence: 0.4 (true base), 0.5 (true python, top python),
# 0.6 (true base, top chemistry), 0.9 (true python)
PROBS = np.array([[0.3, 0.4, 0.3], [0.25, 0.5, 0.25], [0.2, 0.2, 0.6], [0.05, 0.9, 0.05]])
TOP_LABELS = ["base", "python", "chemistry"]
TRUE = ["chemistry", "python", "base", "python"]


def test_fit_threshold_accuracy_picks_the_best_cut():
    # abstaining the k least confident: row 0 (true chemistry, top python) is wrong either way, so
    # k=0: 2 right, k=1: 2, k=2: 1, k=3: 2, k=4: 1 -> best first at k=0, no abstention
    assert fit_threshold(PROBS, TOP_LABELS, TRUE, "accuracy") == 0.0
    true = ["base", "python", "base", "python"]  # now abstaining rows 0..2 gains row 0 and 2, loses row 1
    # k=0: 2, k=1: 3, k=2: 2, k=3: 3, k=4: 2 -> first best k=1, threshold between 0.4 and 0.5
    assert fit_threshold(PROBS, TOP_LABELS, true, "accuracy") == pytest.approx(0.45)


def test_fit_threshold_recall_meets_the_target_with_least_abstention():
    true = ["base", "python", "base", "python"]
    # true-base rows have confidences 0.4 and 0.6 and tops python and chemistry: recall 1/2 needs k=1, 1 needs k=3
    assert fit_threshold(PROBS, TOP_LABELS, true, "recall", 0.5) == pytest.approx(0.45)
    assert fit_threshold(PROBS, TOP_LABELS, true, "recall", 1.0) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="base"):
        fit_threshold(PROBS, TOP_LABELS, ["python"] * 4, "recall")


def test_fit_calibration_without_a_base_class_fits_temperature_on_known_labels():
    # an Arrow-style router over two adapters; the base prompt is skipped by the temperature, used by the threshold
    logits = np.array([[3.0, 0.0], [0.0, 3.0], [0.1, 0.0], [2.0, 0.0]])
    targets = ["python", "chemistry", "base", "python"]
    cal = fit_calibration(logits, ["python", "chemistry"], targets)
    assert cal.temperature < 1.0  # separable known labels: sharpen
    assert decide(softmax(logits, cal.temperature), ["python", "chemistry"], cal.threshold)[0] == targets


@pytest.mark.parametrize("bad", [dict(temperature=0.0), dict(temperature=float("nan")), dict(threshold=1.5)])
def test_calibration_refuses_bad_values(bad):
    with pytest.raises(ValueError):
        Calibration(**bad)


def test_calibration_config_refuses_unknown_strategy():
    with pytest.raises(ValueError, match="threshold_strategy"):
        CalibrationConfig(threshold_strategy="vibes")
