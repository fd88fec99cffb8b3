"""Fit, calibrate and evaluate the injection guard on the labelled set (zephyra.guard.data).

    zephyra guard train --out runs/guard            # fit on train families; Platt + threshold on validation ones
    zephyra guard eval --guard runs/guard --out runs/guard/eval    # the held-out table, report.json, scores.png

Fitting: scikit-learn's LogisticRegression (class-balanced) on [MiniLM embedding, heuristics] of the TRAIN
families' texts; its C is picked from a small grid by recall on the VALIDATION families at the validation
threshold. Calibration: Platt scaling of the guard's raw score (its highest view's logit, detect.py) on the
validation families. Threshold: the lowest one at which at most ``target_fpr`` of the validation look-alikes and
of the validation ordinary prompts and passages are flagged. The HELDOUT families are read only by ``evaluate``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .data import Row, build_rows
from .detect import FEATURES, FORMAT, Guard

C_GRID = (0.3, 1.0, 3.0, 10.0)


@dataclass
class TrainConfig:
    target_fpr: float = 0.05  # on the validation look-alikes (and ordinary prompts), for the default threshold
    seed: int = 0
    embedding: bool = True  # use the MiniLM embedding (False: heuristics only; an ablation)
    heuristics: bool = True  # use the heuristic features (False: embedding only; an ablation)

    def __post_init__(self):
        from ..errors import ConfigError

        if not 0.0 < self.target_fpr < 1.0:
            raise ConfigError(f"target_fpr must be in (0, 1), got {self.target_fpr}")
        if not (self.embedding or self.heuristics):
            raise ConfigError("a guard needs the embedding, the heuristics or both")


class CachedEncoder:
    """An encoder that embeds each distinct text once (training reads the same views many times)."""

    def __init__(self, encoder):
        self.encoder, self.name, self.dim = encoder, encoder.name, encoder.dim
        self.cache: dict[str, np.ndarray] = {}

    def __call__(self, texts: list[str]) -> np.ndarray:
        todo = list(dict.fromkeys(t for t in texts if t not in self.cache))
        if todo:
            for t, e in zip(todo, self.encoder(todo)):
                self.cache[t] = e
        return np.stack([self.cache[t] for t in texts]) if texts else np.zeros((0, self.dim), np.float32)


def _threshold(scores: np.ndarray, target: float) -> float:
    """The lowest threshold flagging at most ``target`` of these negatives' scores (flagged: score >= t)."""
    if len(scores) == 0:
        return 0.5
    s = np.sort(scores)[::-1]
    k = int(np.floor(target * len(s)))  # negatives allowed above the threshold
    return float(np.nextafter(s[k], 1.0)) if k < len(s) else 0.0


def _spec(clf, kinds_clf, encoder, platt=(1.0, 0.0), threshold=0.5, use=None) -> dict:
    return {"format": FORMAT, "embedding": encoder.name, "dim": int(encoder.dim), "features": list(FEATURES),
            "weight": [float(w) for w in clf.coef_[0]], "bias": float(clf.intercept_[0]),
            "platt": [float(platt[0]), float(platt[1])], "threshold": float(threshold),
            "kinds": [str(k) for k in kinds_clf.classes_],
            "kind_weight": [[float(w) for w in row] for row in kinds_clf.coef_],
            "kind_bias": [float(b) for b in kinds_clf.intercept_], "use": dict(use or {})}


def fit(rows: Sequence[Row] | None = None, cfg: TrainConfig | None = None, encoder=None,
        progress=lambda s: None) -> tuple[Guard, dict]:
    """(the guard, what was chosen on validation). Heldout rows are never read here."""
    from sklearn.linear_model import LogisticRegression

    from .detect import default_encoder

    cfg = cfg or TrainConfig()
    rows = list(rows if rows is not None else build_rows(cfg.seed))
    encoder = encoder if isinstance(encoder, CachedEncoder) else CachedEncoder(encoder or default_encoder())
    use = {"embedding": cfg.embedding, "heuristics": cfg.heuristics}
    train = [r for r in rows if r.split == "train"]
    val = [r for r in rows if r.split == "validation"]
    probe = Guard({"format": FORMAT, "weight": [0.0] * (encoder.dim + len(FEATURES)), "bias": 0.0,
                   "platt": [1, 0], "threshold": 0.5, "kinds": ["x"], "kind_weight": [[0.0] * (encoder.dim +
                   len(FEATURES))], "kind_bias": [0.0], "use": use, "embedding": encoder.name}, encoder)
    progress(f"embedding {len(train)} training texts")
    x = probe.features([r.text for r in train])
    y = np.array([r.label for r in train])
    attacks = y == 1
    kinds_clf = LogisticRegression(C=1.0, max_iter=3000).fit(x[attacks], [r.kind for r in train if r.label])
    best = None
    for c in C_GRID:
        clf = LogisticRegression(C=c, class_weight="balanced", max_iter=3000).fit(x, y)
        guard = Guard(_spec(clf, kinds_clf, encoder, use=use), encoder)
        raw = guard.raw([r.text for r in val])[0]
        vy = np.array([r.label for r in val])
        platt = LogisticRegression(C=1e4, max_iter=1000).fit(raw.reshape(-1, 1), vy)
        a, b = float(platt.coef_[0][0]), float(platt.intercept_[0])
        p = 1.0 / (1.0 + np.exp(-(a * raw + b)))
        neg_look = p[[r.group == "lookalike" for r in val]]
        neg_plain = p[[r.group in ("benign", "passage") for r in val]]
        t = max(_threshold(neg_look, cfg.target_fpr), _threshold(neg_plain, cfg.target_fpr))
        recall = float((p[vy == 1] >= t).mean())
        progress(f"C={c}: validation recall {recall:.3f} at threshold {t:.3f}")
        if best is None or recall > best[0] + 1e-9:
            best = (recall, c, clf, (a, b), t)
    recall, c, clf, platt, t = best
    chosen = {"C": c, "platt": list(platt), "threshold": t, "validation_recall": recall,
              "train_rows": len(train), "validation_rows": len(val)}
    return Guard(_spec(clf, kinds_clf, encoder, platt, t, use), encoder), chosen


def ece(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: |mean score - share positive| per equal-width bin, weighted by its count."""
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    return float(sum(abs(p[idx == b].mean() - y[idx == b].mean()) * (idx == b).sum()
                     for b in range(bins) if (idx == b).any()) / max(len(p), 1))


def evaluate(guard: Guard, rows: Sequence[Row] | None = None, split: str = "heldout",
             threshold: float | None = None) -> dict:
    """Recall on the split's attack families, false-positive rates on its look-alikes / ordinary prompts /
    passages, ECE, and a row per family."""
    from sklearn.metrics import roc_auc_score

    rows = [r for r in (rows if rows is not None else build_rows()) if r.split == split]
    verdicts = guard.check([r.text for r in rows], threshold)
    p = np.array([v.score for v in verdicts])
    f = np.array([v.flagged for v in verdicts])
    y = np.array([r.label for r in rows])

    def rate(mask) -> float | None:
        mask = np.asarray(mask, dtype=bool)
        return round(float(f[mask].mean()), 4) if mask.any() else None

    families = []
    for fam in dict.fromkeys(r.family for r in rows):
        m = np.array([r.family == fam for r in rows])
        r0 = next(r for r in rows if r.family == fam)
        kinds = [v.kind for v, mm in zip(verdicts, m) if mm and v.flagged]
        families.append({"family": fam, "group": r0.group, "kind": r0.kind, "n": int(m.sum()),
                         "flagged": rate(m), "mean_score": round(float(p[m].mean()), 4),
                         "kind_right": round(float(np.mean([k == r0.kind or (r0.kind == "encoded" and k == "encoded")
                                                            for k in kinds])), 4) if kinds and r0.label else None})
    group = np.array([r.group for r in rows])
    out = {"split": split, "threshold": guard.threshold if threshold is None else threshold, "n": len(rows),
           "attack_recall": rate(y == 1), "lookalike_fpr": rate(group == "lookalike"),
           "benign_fpr": rate(group == "benign"), "passage_fpr": rate(group == "passage"),
           "ece": round(ece(p, y), 4), "families": families}
    if len(set(y)) == 2:
        out["auc"] = round(float(roc_auc_score(y, p)), 4)
        look = (group == "lookalike") | (y == 1)
        if len(set(y[look])) == 2:
            out["auc_vs_lookalikes"] = round(float(roc_auc_score(y[look], p[look])), 4)
    return out


def latency(guard: Guard, texts: Sequence[str], repeats: int = 1) -> dict:
    """Seconds per single-text check (one at a time, as a request arrives): median and p95."""
    guard.check([texts[0]])  # warm
    times = []
    for _ in range(repeats):
        for t in texts:
            t0 = time.perf_counter()
            guard.check([t])
            times.append(time.perf_counter() - t0)
    return {"n": len(times), "median_ms": round(1e3 * float(np.median(times)), 2),
            "p95_ms": round(1e3 * float(np.percentile(times, 95)), 2)}


def plot(report: dict, rows: Sequence[Row], guard: Guard, path) -> None:
    """Held-out score histograms per group with the threshold, and the flagged share per family."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import atomic_write_figure

    held = [r for r in rows if r.split == "heldout"]
    p = guard.scores([r.text for r in held])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    for g in ("attack", "lookalike", "benign", "passage"):
        s = [x for x, r in zip(p, held) if r.group == g]
        if s:
            ax1.hist(s, bins=25, range=(0, 1), alpha=0.5, label=f"{g} ({len(s)})")
    ax1.axvline(report["threshold"], color="k", ls="--", label=f"threshold {report['threshold']:.2f}")
    ax1.set(xlabel="calibrated score", ylabel="prompts (held-out families)", yscale="log")
    ax1.legend()
    fams = report["families"]
    ax2.barh([f["family"] for f in fams], [f["flagged"] for f in fams],
             color=["tab:red" if f["group"] == "attack" else "tab:blue" for f in fams])
    ax2.set(xlabel="share flagged (red: attacks, recall; blue: benign, FPR)", xlim=(0, 1))
    fig.tight_layout()
    atomic_write_figure(fig, path)
    plt.close(fig)
