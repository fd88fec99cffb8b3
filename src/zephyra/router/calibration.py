"""Calibration and abstention, as pure functions on numpy arrays: temperature scaling, expected calibration
error (ECE), reliability bins, and the confidence threshold below which a router abstains to ``base``.

Temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural Networks") divides the logits by one
scalar T fitted on validation data by minimising the negative log-likelihood; it never changes the argmax, only
the confidences. The threshold is then fitted on the same validation data, on the calibrated confidences.

    T = fit_temperature(val_logits, val_targets)
    probs = softmax(test_logits, T)
    ece = expected_calibration_error(probs.max(1), probs.argmax(1) == test_targets)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from ..errors import ConfigError, DataError

BASE = "base"  # the label a router abstains to
ThresholdStrategy = Literal["accuracy", "recall"]


@dataclass(frozen=True)
class Calibration:
    """What turns a router's raw logits into a decision. Saved beside every router."""

    temperature: float = 1.0  # logits are divided by this before the softmax
    threshold: float = 0.0  # a top confidence below this abstains to "base"; 0 never abstains

    def __post_init__(self):
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise ConfigError(f"temperature must be a positive number, got {self.temperature!r}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"threshold must be in [0, 1], got {self.threshold!r}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class CalibrationConfig:
    """How a router's temperature and threshold are fitted on validation data."""

    threshold_strategy: ThresholdStrategy = "accuracy"  # "accuracy": the threshold maximising validation accuracy
    # (base counted as a class), so abstention is traded against wrongly abstaining domain prompts at their true
    # cost; "recall": the smallest threshold whose validation abstention recall reaches target_recall
    target_recall: float = 0.9
    ece_bins: int = 15  # equal-width bins for the expected calibration error

    def __post_init__(self):
        if self.threshold_strategy not in ("accuracy", "recall"):
            raise ConfigError(f"threshold_strategy must be 'accuracy' or 'recall', got {self.threshold_strategy!r}")
        if not 0.0 < self.target_recall <= 1.0:
            raise ConfigError(f"target_recall must be in (0, 1], got {self.target_recall!r}")
        if self.ece_bins < 1:
            raise ConfigError(f"ece_bins must be positive, got {self.ece_bins!r}")


# --- temperature -----------------------------------------------------------------------------------------------

def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature`` in float64, shape (N, L) -> (N, L)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)  # stable: the largest exponent is 0
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def nll(logits: np.ndarray, targets: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of integer ``targets`` (N,) under ``softmax(logits / temperature)``."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=-1))
    return float(np.mean(log_norm - z[np.arange(len(z)), targets]))


def fit_temperature(logits: np.ndarray, targets: np.ndarray, bounds: tuple[float, float] = (1e-3, 1e3)) -> float:
    """The temperature minimising validation NLL, by a bounded 1-D search over log T. The NLL is convex in 1/T,
    so the search finds the global minimum within ``bounds`` (wide: Arrow scores differ by hundredths)."""
    from scipy.optimize import minimize_scalar

    logits, targets = np.asarray(logits, dtype=np.float64), np.asarray(targets)
    if logits.ndim != 2 or len(logits) != len(targets) or len(targets) == 0:
        raise ValueError(f"fit_temperature needs logits (N, L) and N targets, got {logits.shape} and {targets.shape}")
    res = minimize_scalar(lambda log_t: nll(logits, targets, math.exp(log_t)),
                          bounds=(math.log(bounds[0]), math.log(bounds[1])), method="bounded",
                          options={"xatol": 1e-5})
    return float(math.exp(res.x))


# --- calibration error -----------------------------------------------------------------------------------------

def reliability_bins(confidences: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> list[dict]:
    """Equal-width bins over [0, 1] (bin i holds confidences in (i/n, (i+1)/n], the first also holds 0):
    per bin its edges, count, mean confidence and accuracy (None when empty)."""
    conf = np.asarray(confidences, dtype=np.float64)
    ok = np.asarray(correct, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    out = []
    for i in range(n_bins):
        sel = idx == i
        n = int(sel.sum())
        out.append({"lo": float(edges[i]), "hi": float(edges[i + 1]), "count": n,
                    "confidence": float(conf[sel].mean()) if n else None,
                    "accuracy": float(ok[sel].mean()) if n else None})
    return out


def expected_calibration_error(confidences: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> float:
    """ECE: the count-weighted mean over equal-width bins of |accuracy - mean confidence| (0 = calibrated)."""
    conf = np.asarray(confidences)
    if conf.size == 0:
        return float("nan")
    bins = reliability_bins(conf, correct, n_bins)
    return float(sum(b["count"] * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"]) / conf.size)


# --- abstention ------------------------------------------------------------------------------------------------

def decide(probs: np.ndarray, labels: list[str], threshold: float) -> tuple[list[str], np.ndarray]:
    """(decided label per row, top confidence per row): the top label, or ``base`` when its probability is
    below ``threshold``."""
    probs = np.asarray(probs)
    top, conf = probs.argmax(axis=1), probs.max(axis=1)
    return [BASE if c < threshold else labels[t] for t, c in zip(top, conf)], conf


def _threshold_candidates(conf_sorted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(k, threshold) pairs: threshold t abstains exactly the k lowest confidences. Thresholds sit midway
    between distinct neighbouring confidences, so they never fall on an example."""
    n = len(conf_sorted)
    ks = [0] + [k for k in range(1, n) if conf_sorted[k - 1] < conf_sorted[k]] + [n]
    ts = [0.0] + [(conf_sorted[k - 1] + conf_sorted[k]) / 2 for k in ks[1:-1]] + [1.0]
    return np.array(ks), np.array(ts)


def fit_threshold(probs: np.ndarray, labels: list[str], targets: list[str], strategy: ThresholdStrategy = "accuracy",
                  target_recall: float = 0.9) -> float:
    """The abstention threshold on validation ``probs`` (N, L) over ``labels`` with true labels ``targets``.

    "accuracy": the threshold maximising accuracy (base counted as a class); among equals, the one that abstains
    least. "recall": the smallest threshold whose abstention recall (true-base prompts routed to base) reaches
    ``target_recall``; 1.0 (abstain on everything but certainties) when none does. One sort and two cumulative
    sums: O(N log N)."""
    probs = np.asarray(probs)
    top = np.array([labels[i] for i in probs.argmax(axis=1)])
    conf = probs.max(axis=1)
    order = np.argsort(conf, kind="stable")
    true = np.asarray(targets)[order]
    is_base, top_ok = true == BASE, top[order] == true
    ks, ts = _threshold_candidates(conf[order])
    # abstaining the k least confident: they score when truly base, the rest when their top label is right
    cum_base = np.concatenate([[0], np.cumsum(is_base)])
    cum_ok = np.concatenate([[0], np.cumsum(top_ok)])
    if strategy == "accuracy":
        correct = cum_base[ks] + (cum_ok[-1] - cum_ok[ks])
        return float(ts[int(np.argmax(correct))])  # argmax takes the first (smallest k) of equals
    if strategy != "recall":
        raise ConfigError(f"threshold strategy must be 'accuracy' or 'recall', got {strategy!r}")
    n_base = int(is_base.sum())
    if n_base == 0:
        raise DataError("fitting a threshold for abstention recall needs some true 'base' prompts in validation")
    # a true-base prompt goes to base when abstained, or when kept with base as its top label
    base_top = np.concatenate([[0], np.cumsum(is_base & top_ok)])
    recall = (cum_base[ks] + (base_top[-1] - base_top[ks])) / n_base
    meets = np.flatnonzero(recall >= target_recall - 1e-12)
    return float(ts[meets[0]]) if len(meets) else 1.0


def fit_calibration(logits: np.ndarray, labels: list[str], targets: list[str],
                    cfg: CalibrationConfig | None = None) -> Calibration:
    """Temperature on the validation prompts whose label the router knows (for a router without a ``base``
    class, the domain prompts), then the threshold on all of them, on the calibrated probabilities."""
    cfg = cfg or CalibrationConfig()
    index = {label: i for i, label in enumerate(labels)}
    known = [i for i, t in enumerate(targets) if t in index]
    if not known:
        raise DataError(f"no validation prompt has one of the router's labels {labels}")
    logits = np.asarray(logits, dtype=np.float64)
    temperature = fit_temperature(logits[known], np.array([index[targets[i]] for i in known]))
    threshold = fit_threshold(softmax(logits, temperature), labels, targets, cfg.threshold_strategy,
                              cfg.target_recall)
    return Calibration(temperature=temperature, threshold=threshold)
