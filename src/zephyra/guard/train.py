"""Fit, calibrate and evaluate the injection guard on the labelled set (zephyra.guard.data).

    zephyra guard train --out runs/guard            # fit on train families; Platt + threshold on validation ones
    zephyra guard eval --guard runs/guard --out runs/guard/eval    # the held-out table, report.json, scores.png

Fitting: scikit-learn on the TRAIN families' texts and on the views the guard also reads (``training_views``:
the sentences of ordinary passages as negatives, decoded payloads as attacks). Candidates (``candidates``):
class-balanced LogisticRegression on [MiniLM embedding, heuristics] and on [embedding, heuristics, hashed
character n-grams] for C in ``C_GRID``, and a 64-unit MLPClassifier on [embedding, heuristics]; the one with the
highest recall on the VALIDATION families at its validation threshold is kept. Calibration: Platt scaling of the
guard's raw score (its highest view's logit, detect.py) on the validation families. Threshold: the lowest one at
which at most ``target_fpr`` of the validation look-alikes and of the validation ordinary prompts and passages
are flagged. The HELDOUT families are read only by ``evaluate``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .data import Row, build_rows
from .detect import FEATURES, FORMAT, LONG, Guard, views

C_GRID = (0.3, 1.0, 3.0, 10.0, 30.0)
MLP_ALPHA = (1e-3, 1e-2)
NGRAM_BUCKETS = 4096  # hashed character 3-5-grams (detect.ngrams), tried beside the embedding


@dataclass
class TrainConfig:
    target_fpr: float = 0.05  # on the validation look-alikes (and ordinary prompts), for the default threshold
    seed: int = 0
    embedding: bool = True  # use the MiniLM embedding (False: heuristics only; an ablation)
    heuristics: bool = True  # use the heuristic features (False: embedding only; an ablation)
    ngram_buckets: int = NGRAM_BUCKETS  # the candidates with character n-grams (0: none tried)
    sentence_chars: int = 60  # a text longer than this is also read (and its benign sentences fitted) one by one

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


def _spec(model, kinds_clf, encoder, platt=(1.0, 0.0), threshold=0.5, use=None, ngram_buckets: int = 0,
          sentence_chars: int = LONG) -> dict:
    """The JSON of a guard: a LogisticRegression (``coef_``) or an MLPClassifier (``coefs_``, relu) as plain lists."""
    if hasattr(model, "coefs_"):
        hidden = [{"weight": w.tolist(), "bias": b.tolist()} for w, b in zip(model.coefs_[:-1], model.intercepts_[:-1])]
        weight, bias = model.coefs_[-1][:, 0], float(model.intercepts_[-1][0])
    else:
        hidden, weight, bias = [], model.coef_[0], float(model.intercept_[0])
    return {"format": FORMAT, "embedding": encoder.name, "dim": int(encoder.dim), "features": list(FEATURES),
            "ngram_buckets": int(ngram_buckets), "sentence_chars": int(sentence_chars), "hidden": hidden,
            "weight": [float(w) for w in weight], "bias": bias,
            "platt": [float(platt[0]), float(platt[1])], "threshold": float(threshold),
            "kinds": [str(k) for k in kinds_clf.classes_],
            "kind_weight": [[float(w) for w in row] for row in kinds_clf.coef_],
            "kind_bias": [float(b) for b in kinds_clf.intercept_], "use": dict(use or {})}


def training_views(rows: Sequence[Row], long: int = LONG) -> tuple[list[str], np.ndarray]:
    """The texts the scorer is fitted on, with labels: each row's text, and the views the guard will also read
    (detect.views): every view of a benign row is benign (a sentence of an ordinary passage must not score high),
    every non-sentence view of an attack (its decoded payload, its leetspeak undone) is an attack; the sentences
    of an attack passage are not labelled (only one of them is the injection) and are left out."""
    texts, labels = [], []
    for r in rows:
        for how, v in views(r.text, long):
            if how == "text" or not r.label or how != "sentence":
                texts.append(v)
                labels.append(r.label)
    seen: dict[str, int] = {}
    for t, y in zip(texts, labels):
        seen[t] = max(seen.get(t, 0), y)
    return list(seen), np.array(list(seen.values()))


def candidates(ngram_buckets: int = NGRAM_BUCKETS):
    """(name, n-gram buckets, a scikit-learn classifier) tried on validation."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    for c in C_GRID:
        yield f"logreg C={c}", 0, LogisticRegression(C=c, class_weight="balanced", max_iter=3000)
    for c in C_GRID:
        yield f"logreg+ngrams C={c}", ngram_buckets, LogisticRegression(C=c, class_weight="balanced", max_iter=3000)
    for alpha in MLP_ALPHA:
        yield f"mlp(64) alpha={alpha}", 0, MLPClassifier((64,), alpha=alpha, max_iter=400, early_stopping=False,
                                                        random_state=0)


def fit(rows: Sequence[Row] | None = None, cfg: TrainConfig | None = None, encoder=None,
        progress=lambda s: None, only: Sequence[str] | None = None) -> tuple[Guard, dict]:
    """(the guard, what was chosen on validation). Heldout rows are never read here. ``only``: the candidate
    names to try (default all, ``candidates``)."""
    from sklearn.linear_model import LogisticRegression

    from .detect import default_encoder

    cfg = cfg or TrainConfig()
    rows = list(rows if rows is not None else build_rows(cfg.seed))
    encoder = encoder if isinstance(encoder, CachedEncoder) else CachedEncoder(encoder or default_encoder())
    use = {"embedding": cfg.embedding, "heuristics": cfg.heuristics}
    train = [r for r in rows if r.split == "train"]
    val = [r for r in rows if r.split == "validation"]
    width = encoder.dim + len(FEATURES)

    def probe(buckets: int) -> Guard:
        return Guard({"format": FORMAT, "weight": [0.0] * (width + buckets), "bias": 0.0, "ngram_buckets": buckets,
                      "sentence_chars": cfg.sentence_chars,
                      "platt": [1, 0], "threshold": 0.5, "kinds": ["x"], "kind_weight": [[0.0] * width],
                      "kind_bias": [0.0], "use": use, "embedding": encoder.name}, encoder)

    texts, y = training_views(train, cfg.sentence_chars)
    progress(f"embedding {len(texts)} training texts ({len(train)} rows and their views)")
    x = probe(cfg.ngram_buckets).features(texts)
    progress(f"embedding the {len(val)} validation rows' views")
    probe(0).raw([r.text for r in val])  # fills the encoder's cache
    base = x[:, :width]
    kinds_clf = _kinds(train, probe(0))
    vy = np.array([r.label for r in val])
    look = np.array([r.group == "lookalike" for r in val])
    plain = np.array([r.group in ("benign", "passage") for r in val])
    best, tried = None, []
    for name, buckets, model in candidates(cfg.ngram_buckets):
        if only is not None and name not in only:
            continue
        if buckets and not cfg.ngram_buckets:
            continue
        model.fit(x if buckets else base, y)
        guard = Guard(_spec(model, kinds_clf, encoder, use=use, ngram_buckets=buckets,
                            sentence_chars=cfg.sentence_chars), encoder)
        raw = guard.raw([r.text for r in val])[0]
        platt = LogisticRegression(C=1e4, max_iter=1000).fit(raw.reshape(-1, 1), vy)
        a, b = float(platt.coef_[0][0]), float(platt.intercept_[0])
        p = 1.0 / (1.0 + np.exp(-(a * raw + b)))
        t = max(_threshold(p[look], cfg.target_fpr), _threshold(p[plain], cfg.target_fpr))
        recall = float((p[vy == 1] >= t).mean())
        fpr = float((p[look] >= t).mean())
        progress(f"{name}: validation recall {recall:.3f} at threshold {t:.3f} (look-alike FPR {fpr:.3f})")
        tried.append({"model": name, "validation_recall": round(recall, 4), "threshold": round(t, 4),
                      "validation_lookalike_fpr": round(fpr, 4)})
        if best is None or recall > best[0] + 1e-9:
            best = (recall, name, model, buckets, (a, b), t)
    recall, name, model, buckets, platt, t = best
    chosen = {"model": name, "sentence_chars": cfg.sentence_chars, "platt": list(platt), "threshold": t,
              "validation_recall": recall,
              "train_rows": len(train), "train_texts": len(texts), "validation_rows": len(val),
              "validation_lookalikes": int(look.sum()), "tried": tried}
    return Guard(_spec(model, kinds_clf, encoder, platt, t, use, buckets, cfg.sentence_chars), encoder), chosen


def _kinds(train: Sequence[Row], probe: Guard):
    """The attack-kind model: a multinomial regression on [embedding, heuristics] of the training attacks."""
    from sklearn.linear_model import LogisticRegression

    attacks = [r for r in train if r.label]
    return LogisticRegression(C=1.0, max_iter=3000).fit(probe.features([r.text for r in attacks]),
                                                        [r.kind for r in attacks])


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


def probe(guard: Guard, threshold: float | None = None) -> dict:
    """The guard on probe.yaml (free-form prompts never used for any choice): recall, FPR, AUC, the misses."""
    from pathlib import Path

    import yaml
    from sklearn.metrics import roc_auc_score

    spec = yaml.safe_load((Path(__file__).parent / "probe.yaml").read_text(encoding="utf-8"))
    att, ben = spec["attacks"], spec["benign"]
    v = guard.check(att + ben, threshold)
    f = np.array([x.flagged for x in v])
    p = np.array([x.score for x in v])
    y = np.array([1] * len(att) + [0] * len(ben))
    return {"attacks": len(att), "benign": len(ben), "recall": round(float(f[y == 1].mean()), 4),
            "fpr": round(float(f[y == 0].mean()), 4), "auc": round(float(roc_auc_score(y, p)), 4),
            "missed": [t for t, x in zip(att, v[:len(att)]) if not x.flagged],
            "false_positives": [t for t, x in zip(ben, v[len(att):]) if x.flagged]}


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
