"""What every router returns, and the input checks every router shares.

    decisions = router.route(["What is a compiler?", "hello"])
    decisions[0].to_json()   # {"prompt": ..., "adapter": "computing", "confidence": 0.97, "scores": {...}}

``confidence`` is the calibrated probability of the top-scoring label. The decision is that label, or ``base``
when the confidence is below the router's threshold: a ``base`` decision with a high confidence means "clearly
general", one with a low confidence means "unsure, so abstain".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import ArtifactError, RequestError
from .calibration import BASE, Calibration, decide, softmax


class RouterInputError(RequestError):
    """A prompt a router cannot route (empty, or not text); the message is one line."""


class EmptyPromptError(RouterInputError):
    """An empty (or whitespace-only) prompt."""


class RouterArtifactError(ArtifactError):
    """A router directory that cannot be loaded here (missing files, another base, another encoder)."""


class PromptTruncatedWarning(UserWarning):
    """A prompt longer than the router's context was cut from the left (its end, the question, is kept)."""


@dataclass(frozen=True)
class RouteDecision:
    prompt: str
    adapter: str  # a domain name or "base"
    confidence: float  # calibrated probability of the top-scoring label
    scores: dict[str, float]  # label -> calibrated probability, over the router's labels

    @property
    def top(self) -> str:
        """The top-scoring label (differs from ``adapter`` when the router abstained)."""
        return max(self.scores, key=self.scores.__getitem__)

    @property
    def abstained(self) -> bool:
        return self.adapter == BASE and self.top != BASE

    def to_json(self) -> dict:
        """Exactly the DESIGN.md contract: ``{"prompt", "adapter", "confidence", "scores"}``."""
        return {"prompt": self.prompt, "adapter": self.adapter, "confidence": float(self.confidence),
                "scores": {k: float(v) for k, v in self.scores.items()}}


@runtime_checkable
class Router(Protocol):
    """What the runtime and the evaluation use: a router's labels, its calibration and ``route``."""

    kind: str  # "inmodel", "external" or "arrow"
    labels: list[str]
    calibration: Calibration

    def route(self, prompts: Sequence[str]) -> list[RouteDecision]: ...


class LogitsRouter:
    """``route`` for a router that has ``logits(prompts) -> (N, L)``, ``labels`` and ``calibration``: every kind
    turns its raw logits into decisions the same way (calibration, abstention)."""

    def route(self, prompts: Sequence[str]) -> list[RouteDecision]:
        prompts = check_prompts(prompts)
        if not prompts:
            return []
        return decisions_from_logits(prompts, self.logits(prompts), self.labels, self.calibration)


def check_labels(labels: Sequence[str]) -> list[str]:
    """A router's labels as a list of two or more distinct names, or a one-line RouterArtifactError."""
    labels = [str(label) for label in labels]
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise RouterArtifactError(f"a router needs two or more distinct labels, got {labels!r}")
    return labels


def check_prompts(prompts: Sequence[str]) -> list[str]:
    """The prompts as a list, or a one-line RouterInputError naming the first bad one."""
    if isinstance(prompts, str):
        raise RouterInputError("route() takes a list of prompts, not one string")
    prompts = list(prompts)
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise RouterInputError(f"prompt {i} is {type(p).__name__}, not text")
        if not p.strip():
            raise EmptyPromptError(f"prompt {i} is empty: there is nothing to route")
    return prompts


def decisions_from_logits(prompts: Sequence[str], logits: np.ndarray, labels: list[str],
                          calibration: Calibration) -> list[RouteDecision]:
    """Temperature-scaled softmax, then the top label or ``base`` below the threshold."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.shape != (len(prompts), len(labels)):
        raise ValueError(f"logits of shape {logits.shape} for {len(prompts)} prompts and {len(labels)} labels")
    probs = softmax(logits, calibration.temperature)
    decided, conf = decide(probs, labels, calibration.threshold)
    return [RouteDecision(prompt=p, adapter=d, confidence=float(c), scores=dict(zip(labels, map(float, row))))
            for p, d, c, row in zip(prompts, decided, conf, probs)]
