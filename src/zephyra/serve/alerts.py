"""Alert rules over the server's per-version outcomes (the same answers and ratings the canary's rules read):
each rule has a metric, a threshold, a window and a severity; it is checked per adapter version every
``interval`` seconds, and when it starts or stops firing one line goes to the alerts log (JSONL) and one POST to
the webhook.

    alerts.yaml:
        interval: 10
        webhook: http://127.0.0.1:9000/hook        # optional; a JSON body per transition
        rules:
          - {name: errors, metric: error_rate, max: 0.05, window: 60, severity: critical}
          - {name: slow, metric: latency_p95, max: 20, window: 120, severity: warning}
          - {name: unhappy, metric: thumbs_down_rate, max: 0.4, window: 300, severity: warning, min_requests: 5}

A webhook that cannot be reached is itself a line in the log: alerting never stops serving.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from .canary import p95

ALERT_METRICS = ("error_rate", "latency_p95", "thumbs_down_rate", "requests")
SEVERITIES = ("info", "warning", "critical")


@dataclass
class AlertRule:
    name: str
    metric: str
    max: float | None = None
    min: float | None = None
    window: float = 60.0
    severity: str = "warning"
    min_requests: int = 1

    def __post_init__(self):
        if self.metric not in ALERT_METRICS:
            raise ConfigError(f"alert {self.name!r}: unknown metric {self.metric!r}; known: {', '.join(ALERT_METRICS)}")
        if (self.max is None) == (self.min is None):
            raise ConfigError(f"alert {self.name!r}: give exactly one of max or min")
        if self.severity not in SEVERITIES:
            raise ConfigError(f"alert {self.name!r}: severity must be one of {', '.join(SEVERITIES)}")
        if self.window <= 0 or self.min_requests < 1:
            raise ConfigError(f"alert {self.name!r}: window > 0 and min_requests >= 1")

    def fires(self, value: float) -> bool:
        return value > self.max if self.max is not None else value < self.min


@dataclass
class AlertsConfig:
    interval: float = 10.0
    webhook: str | None = None
    log: str | None = None  # default: alerts.jsonl beside the registry, else in the working directory
    rules: list[AlertRule] = field(default_factory=list)

    def __post_init__(self):
        self.rules = [r if isinstance(r, AlertRule) else AlertRule(**r) for r in self.rules]
        if self.interval <= 0:
            raise ConfigError(f"alerts: interval must be positive, got {self.interval!r}")
        if self.webhook is not None and not str(self.webhook).startswith(("http://", "https://")):
            raise ConfigError(f"alerts: webhook must be an http(s) URL, got {self.webhook!r}")

    @classmethod
    def from_yaml(cls, path) -> AlertsConfig:
        from ..config import from_dict, read_yaml

        return from_dict(cls, read_yaml(path))


def _value(metric: str, answers: list, ratings: list) -> float | None:
    if metric == "requests":
        return float(len(answers))
    if metric == "error_rate":
        return sum(not ok for _, ok, _, _ in answers) / len(answers) if answers else None
    if metric == "latency_p95":
        return p95([s for _, _, s, _ in answers]) if answers else None
    return sum(not up for _, up in ratings) / len(ratings) if ratings else None  # thumbs_down_rate


class Alerter:
    def __init__(self, cfg: AlertsConfig, outcomes, log_path: str | os.PathLike):
        self.cfg, self.outcomes, self.log_path = cfg, outcomes, Path(log_path)
        self.firing: set[tuple[str, str, str]] = set()  # (rule, adapter, version)

    def step(self) -> list[dict]:
        """Check every rule on every adapter version with traffic; returns the transitions (also logged and
        posted)."""
        events = []
        for adapter, version in self.outcomes.keys():
            for rule in self.cfg.rules:
                answers, ratings = self.outcomes.window(adapter, version, rule.window)
                value = _value(rule.metric, answers, ratings)
                key = (rule.name, adapter, version)
                enough = len(answers) >= rule.min_requests and value is not None
                now_firing = enough and rule.fires(value)
                if now_firing == (key in self.firing):
                    continue
                (self.firing.add if now_firing else self.firing.discard)(key)
                events.append(self._emit({
                    "alert": rule.name, "state": "firing" if now_firing else "resolved", "severity": rule.severity,
                    "adapter": adapter, "version": version, "metric": rule.metric, "value": value,
                    "threshold": rule.max if rule.max is not None else rule.min,
                    "bound": "max" if rule.max is not None else "min", "window_s": rule.window,
                    "requests": len(answers)}))
        return events

    def _emit(self, event: dict) -> dict:
        event = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **event}
        if self.cfg.webhook:
            try:
                req = urllib.request.Request(self.cfg.webhook, data=json.dumps(event).encode(), method="POST",
                                             headers={"content-type": "application/json"})
                with urllib.request.urlopen(req, timeout=5) as r:
                    event["webhook"] = r.status
            except OSError as e:  # unreachable, refused, timed out: said in the log, serving goes on
                event["webhook"] = f"failed: {type(e).__name__}: {e}"[:200]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(event) + "\n")
        return event
