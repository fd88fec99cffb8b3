"""``zephyra monitor``: a live table of a running server, per adapter version: requests, errors, latency
percentiles (end to end and to the first token, from the Prometheus histograms), ratings and canary state.

    zephyra monitor --url http://127.0.0.1:8000 [--api-key KEY] [--every 2] [--once]
"""

from __future__ import annotations

import math
import time
from typing import Annotated

import typer


def _quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """A quantile of a Prometheus histogram from its cumulative (upper bound, count) buckets, interpolated
    linearly inside the bucket (as histogram_quantile does)."""
    buckets = sorted(buckets)
    total = buckets[-1][1] if buckets else 0
    if total <= 0:
        return float("nan")
    rank, lo, prev = q * total, 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if math.isinf(upper):
                return lo
            return lo + (upper - lo) * ((rank - prev) / max(count - prev, 1e-12))
        lo, prev = upper, count
    return lo


def snapshot(url: str, api_key: str | None = None) -> dict:
    """{(adapter, version): row} from ``/metrics``, and the models (with canaries) from ``/v1/models``."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    def get(path):
        req = urllib.request.Request(url.rstrip("/") + path,
                                     headers={"Authorization": f"Bearer {api_key}"} if api_key else {})
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.read().decode()

    rows: dict[tuple[str, str], dict] = {}

    def row(labels):
        key = (labels.get("adapter", "-"), labels.get("version", "-"))
        return rows.setdefault(key, {"requests": 0.0, "errors": 0.0, "up": 0.0, "down": 0.0, "latency": [],
                                     "ttft": []})

    for family in text_string_to_metric_families(get("/metrics")):
        for s in family.samples:
            labels = s.labels
            if s.name == "zephyra_requests_total" and labels.get("adapter", "-") != "-":
                r = row(labels)
                r["requests"] += s.value
                if labels.get("status", "200")[0] in "45":
                    r["errors"] += s.value
            elif s.name == "zephyra_feedback_total":
                row(labels)[labels["rating"]] += s.value
            elif s.name == "zephyra_request_seconds_bucket":
                row(labels)["latency"].append((float(labels["le"]), s.value))
            elif s.name == "zephyra_time_to_first_token_seconds_bucket":
                row(labels)["ttft"].append((float(labels["le"]), s.value))
    import json

    models = json.loads(get("/v1/models"))["data"]
    return {"rows": rows, "models": models}


def render(snap: dict):
    from rich.table import Table

    canaries = {m["id"]: m.get("canary") for m in snap["models"]}
    stable = {m["id"]: m.get("version") for m in snap["models"]}
    table = Table(title="zephyra serve: traffic by adapter version")
    for col in ("adapter", "version", "state", "requests", "errors", "p50 s", "p95 s", "TTFT p50 s", "up", "down"):
        table.add_column(col, justify="left" if col in ("adapter", "version", "state") else "right")
    for (adapter, version), r in sorted(snap["rows"].items()):
        c = canaries.get(adapter)
        state = (f"canary {c['percent']:g}%" if c and c["version"] == version else
                 "stable" if stable.get(adapter) == version else "-" if version == "-" else "old")
        merged = {}
        for key in ("latency", "ttft"):
            agg: dict[float, float] = {}
            for le, v in r[key]:
                agg[le] = agg.get(le, 0.0) + v
            merged[key] = list(agg.items())
        q = lambda key, p: _quantile(merged[key], p)  # noqa: E731
        fmt = lambda x: "-" if math.isnan(x) else f"{x:.2f}"  # noqa: E731
        table.add_row(adapter, version, state, f"{r['requests']:.0f}", f"{r['errors']:.0f}", fmt(q("latency", 0.5)),
                      fmt(q("latency", 0.95)), fmt(q("ttft", 0.5)), f"{r['up']:.0f}", f"{r['down']:.0f}")
    return table


def monitor(
    url: Annotated[str, typer.Option(help="the server's base URL")] = "http://127.0.0.1:8000",
    api_key: Annotated[str | None, typer.Option(help="a key, when the server wants one")] = None,
    every: Annotated[float, typer.Option(min=0.2, help="seconds between refreshes")] = 2.0,
    once: Annotated[bool, typer.Option("--once", help="print the table once and exit")] = False,
) -> None:
    """A live table of a running zephyra serve: per adapter version, traffic, errors, latency percentiles, ratings,
    canary state.

    zephyra monitor --url http://127.0.0.1:8000
    """
    from rich.console import Console
    from rich.live import Live

    from .. import clikit

    console = Console(width=160) if once else Console()  # once: for pipes and logs, whole rows
    try:
        if once:
            console.print(render(snapshot(url, api_key)))
            return
        with Live(render(snapshot(url, api_key)), console=console, refresh_per_second=4) as live:
            while True:
                time.sleep(every)
                live.update(render(snapshot(url, api_key)))
    except OSError as e:
        clikit.fail(f"cannot read {url}: {e}")
    except KeyboardInterrupt:
        pass
