"""Live rules over a canary's per-version traffic, with Argo Rollouts' analysis semantics: every ``interval``
seconds one measurement compares the canary's last window against its rules: more than ``failure_limit`` failed
measurements roll the canary back; ``count`` successful ones promote it; more than ``inconclusive_limit``
inconclusive ones (too few requests in the window to judge) hold it for a person. Every outcome is a line of the registry's log,
by "rule".

    rules.yaml:
        interval: 30            # seconds between measurements (the window each one reads)
        count: 5                # measurements before the verdict
        failure_limit: 1        # failed measurements tolerated
        inconclusive_limit: 2   # measurements with too few requests tolerated
        min_requests: 10        # fewer canary requests in a window: the measurement is inconclusive
        rules:                  # each: a metric of the canary's window and its bound
          - {metric: error_rate, max: 0.02}          # share of 5xx answers
          - {metric: thumbs_down_rate, max: 0.25}    # of the rated answers (POST /v1/feedback)
          - {metric: latency_p95_ratio, max: 1.5}    # canary p95 end-to-end latency / stable's
          - {metric: support, min: 0.5}              # mean retrieval support of grounded answers

The server records each answer's outcome (status, latency, retrieval support) and each rating under the adapter
version that gave it; the controller reads those windows.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

from ..errors import ConfigError

METRICS = ("error_rate", "thumbs_down_rate", "latency_p95_ratio", "support")


@dataclass
class Rule:
    metric: str
    max: float | None = None
    min: float | None = None

    def __post_init__(self):
        if self.metric not in METRICS:
            raise ConfigError(f"unknown canary rule metric {self.metric!r}; known: {', '.join(METRICS)}")
        if (self.max is None) == (self.min is None):
            raise ConfigError(f"canary rule {self.metric!r}: give exactly one of max or min")

    def holds(self, value: float) -> bool:
        return value <= self.max if self.max is not None else value >= self.min


@dataclass
class RulesConfig:
    interval: float = 30.0
    count: int = 5
    failure_limit: int = 1
    inconclusive_limit: int = 2
    min_requests: int = 10
    rules: list[Rule] = field(default_factory=lambda: [Rule("error_rate", max=0.02),
                                                       Rule("thumbs_down_rate", max=0.25)])

    def __post_init__(self):
        self.rules = [r if isinstance(r, Rule) else Rule(**r) for r in self.rules]
        if self.interval <= 0 or self.count < 1 or self.failure_limit < 0 or self.min_requests < 1 \
                or self.inconclusive_limit < 0:
            raise ConfigError("canary rules: interval > 0, count >= 1, failure_limit >= 0, inconclusive_limit >= 0, "
                              "min_requests >= 1")

    @classmethod
    def from_yaml(cls, path) -> RulesConfig:
        from ..config import from_dict, read_yaml

        return from_dict(cls, read_yaml(path))


class Outcomes:
    """Per (adapter, version): the recent answers (time, ok, seconds, support) and ratings (time, up), thread-safe
    and bounded."""

    def __init__(self, keep: int = 10_000):
        self._answers: dict[tuple[str, str], deque] = {}
        self._ratings: dict[tuple[str, str], deque] = {}
        self._keep = keep
        self._lock = threading.Lock()

    def answer(self, adapter: str, version: str, ok: bool, seconds: float, support: float | None) -> None:
        with self._lock:
            self._answers.setdefault((adapter, version), deque(maxlen=self._keep)).append(
                (time.monotonic(), ok, seconds, support))

    def rating(self, adapter: str, version: str, up: bool) -> None:
        with self._lock:
            self._ratings.setdefault((adapter, version), deque(maxlen=self._keep)).append((time.monotonic(), up))

    def keys(self) -> list[tuple[str, str]]:
        """Every (adapter, version) with answers."""
        with self._lock:
            return list(self._answers)

    def window(self, adapter: str, version: str, seconds: float) -> tuple[list, list]:
        since = time.monotonic() - seconds
        with self._lock:
            answers = [a for a in self._answers.get((adapter, version), ()) if a[0] >= since]
            ratings = [r for r in self._ratings.get((adapter, version), ()) if r[0] >= since]
        return answers, ratings


def p95(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(0.95 * len(xs)))] if xs else float("nan")


def measure(outcomes: Outcomes, adapter: str, stable: str, canary: str, cfg: RulesConfig) -> tuple[str, dict]:
    """One measurement of the canary's last window: ("successful" | "failed" | "inconclusive", the values)."""
    answers, ratings = outcomes.window(adapter, canary, cfg.interval)
    if len(answers) < cfg.min_requests:
        return "inconclusive", {"requests": len(answers)}
    values = {"requests": len(answers), "error_rate": sum(not ok for _, ok, _, _ in answers) / len(answers)}
    if ratings:
        values["thumbs_down_rate"] = sum(not up for _, up in ratings) / len(ratings)
    stable_answers, _ = outcomes.window(adapter, stable, cfg.interval)
    if stable_answers:
        values["latency_p95_ratio"] = p95([s for _, _, s, _ in answers]) / max(
            p95([s for _, _, s, _ in stable_answers]), 1e-9)
    supports = [s for *_, s in answers if s is not None]
    if supports:
        values["support"] = sum(supports) / len(supports)
    failed = [r.metric for r in cfg.rules if r.metric in values and not r.holds(values[r.metric])]
    values["failed"] = failed
    return ("failed" if failed else "successful"), values


class CanaryController:
    """Runs the analysis of every canary the server has; ``decide`` is called with (name, "promote" | "rollback" |
    "hold", why) at the verdict."""

    def __init__(self, cfg: RulesConfig, outcomes: Outcomes, decide):
        self.cfg, self.outcomes, self.decide = cfg, outcomes, decide
        self.runs: dict[tuple[str, str], list[str]] = {}  # (name, canary version) -> measurements so far

    def step(self, canaries: dict[str, tuple[str, str]]) -> list[tuple[str, str, str]]:
        """One measurement of each canary ({name: (stable version, canary version)}); returns the verdicts
        reached [(name, verdict, why)]."""
        verdicts = []
        for name, (stable, canary) in list(canaries.items()):
            result, values = measure(self.outcomes, name, stable, canary, self.cfg)
            runs = self.runs.setdefault((name, canary), [])  # a new canary version starts a new analysis
            runs.append(result)
            failed = runs.count("failed")
            why = (f"{len(runs)} measurement(s) every {self.cfg.interval:g} s: {failed} failed, "
                   f"{runs.count('inconclusive')} inconclusive; last {result}: "
                   + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items()))
            verdict = None
            if failed > self.cfg.failure_limit:
                verdict = "rollback"
            elif runs.count("inconclusive") > self.cfg.inconclusive_limit:
                verdict = "hold"
            elif runs.count("successful") >= self.cfg.count:
                verdict = "promote"
            if verdict is not None:
                self.runs.pop((name, canary))
                self.decide(name, verdict, why)
                verdicts.append((name, verdict, why))
        return verdicts
