"""Alert rules fire and resolve on the live outcomes, to a JSONL log and a webhook on loopback; a webhook that
cannot be reached is logged, not fatal; ``zephyra monitor --once`` shows the traffic by adapter version."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx
import pytest
from serve_helpers import running
from typer.testing import CliRunner

from zephyra.cli import app
from zephyra.errors import ConfigError
from zephyra.serve.alerts import Alerter, AlertsConfig
from zephyra.serve.canary import Outcomes
from zephyra.serve.monitor import _quantile


@pytest.fixture
def receiver():
    got = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            got.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", got
    server.shutdown()


def test_an_alert_fires_and_resolves_to_the_log_and_the_webhook(receiver, tmp_path):
    url, got = receiver
    out = Outcomes()
    cfg = AlertsConfig(webhook=url, rules=[{"name": "errors", "metric": "error_rate", "max": 0.2, "window": 0.5,
                                            "severity": "critical"}])
    alerter = Alerter(cfg, out, tmp_path / "alerts.jsonl")
    for ok in (True, False, False):
        out.answer("python", "v1", ok, 0.1, None)
    (fired,) = alerter.step()
    assert fired["state"] == "firing" and fired["severity"] == "critical" and fired["webhook"] == 204
    assert alerter.step() == []  # still firing: no new event
    time.sleep(0.6)
    out.answer("python", "v1", True, 0.1, None)
    (resolved,) = alerter.step()
    assert resolved["state"] == "resolved"
    assert [e["state"] for e in got] == ["firing", "resolved"] and got[0]["adapter"] == "python"
    lines = [json.loads(x) for x in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert [x["state"] for x in lines] == ["firing", "resolved"]


def test_an_unreachable_webhook_is_logged_not_fatal(tmp_path):
    out = Outcomes()
    out.answer("geography", "v1", False, 0.1, None)
    cfg = AlertsConfig(webhook="http://127.0.0.1:9/none", rules=[{"name": "e", "metric": "error_rate", "max": 0.1}])
    (event,) = Alerter(cfg, out, tmp_path / "a.jsonl").step()
    assert event["webhook"].startswith("failed")
    with pytest.raises(ConfigError, match="unknown metric"):
        AlertsConfig(rules=[{"name": "x", "metric": "mood", "max": 1}])


def test_a_served_alert_and_the_monitor(system_dirs, receiver, tmp_path):
    from zephyra.resolve.system import load_system
    from zephyra.serve.app import create_app

    url_hook, got = receiver
    system = load_system(system_dirs["base"], system_dirs["adapters"], system_dirs["router"])
    alerts = AlertsConfig(interval=0.2, webhook=url_hook, log=str(tmp_path / "alerts.jsonl"),
                          rules=[{"name": "slow", "metric": "latency_p95", "max": 0.0, "window": 30}])
    with running(create_app(system, alerts=alerts, max_tokens=4)) as url:
        for model in ("python", "geography", "python"):
            httpx.post(url + "/v1/chat/completions", timeout=60,
                       json={"model": model, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 2})
        deadline = time.monotonic() + 10
        while len(got) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert {e["adapter"] for e in got} == {"python", "geography"} and all(e["alert"] == "slow" for e in got)
        r = CliRunner().invoke(app, ["monitor", "--url", url, "--once"])
        assert r.exit_code == 0, r.output
        assert "python" in r.output and "geography" in r.output and "stable" in r.output


def test_histogram_quantiles_interpolate_inside_the_bucket():
    buckets = [(0.1, 0.0), (1.0, 10.0), (2.0, 20.0), (float("inf"), 20.0)]
    assert _quantile(buckets, 0.5) == pytest.approx(1.0) and _quantile(buckets, 0.25) == pytest.approx(0.55)
    assert _quantile([], 0.5) != _quantile([], 0.5)  # nan
