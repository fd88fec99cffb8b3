"""A scripted canary run on a live server: a canary at 50%, thumbs down on its answers, and the rules roll it back
by themselves (the log and the traffic say so); the same run with thumbs up promotes it."""

import time

import httpx
import pytest
from resolve_helpers import save_adapters
from serve_helpers import running

from zephyra.serve.canary import Outcomes, RulesConfig, measure


def _registry(system_dirs, root):
    from zephyra.loader import load_model
    from zephyra.registry import Registry

    reg = Registry(root / "registry")
    v1 = reg.push(system_dirs["adapters"] / "python", "python")
    model, _ = load_model(system_dirs["base"])
    v2 = reg.push(save_adapters(model, root / "retrained", names=("python",))["python"], "python")
    reg.canary("python", v2, 50)
    return reg, v1, v2


def _serve(system_dirs, reg, rules):
    from zephyra.resolve.system import load_system
    from zephyra.serve.app import create_app
    from zephyra.serve.deploy import registry_adapters

    dirs, canaries = registry_adapters(reg)
    system = load_system(system_dirs["base"], None, system_dirs["router"], adapter_dirs=dirs)
    return running(create_app(system, canaries=canaries, registry=reg, rules=rules, max_tokens=4))


def _traffic(url, n, rate_canary):
    """``n`` requests from distinct users; each canary answer rated ``rate_canary``, each stable one up."""
    versions = []
    for i in range(n):
        r = httpx.post(url + "/v1/chat/completions", timeout=60, json={
            "model": "python", "user": f"u{i}-{time.monotonic()}", "max_tokens": 2,
            "messages": [{"role": "user", "content": "Tell me about lambda."}]})
        z = r.json()["zephyra"]
        versions.append(z["version"])
        rating = rate_canary if z.get("canary") == "canary" else "up"
        assert httpx.post(url + "/v1/feedback", json={"request_id": r.headers["x-request-id"],
                                                      "rating": rating}).status_code == 200
    return versions


def _wait_for(reg, action, seconds=20):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if any(e["action"] == action and e["who"] == "rule" for e in reg.log("python")):
            return
        time.sleep(0.1)
    raise AssertionError(f"no {action} by the rules in {seconds} s: {reg.log('python')}")


RULES = {"interval": 1.0, "count": 2, "failure_limit": 0, "inconclusive_limit": 20, "min_requests": 3,
         "rules": [{"metric": "error_rate", "max": 0.05}, {"metric": "thumbs_down_rate", "max": 0.3}]}


def test_failing_feedback_rolls_the_canary_back_by_itself(system_dirs, tmp_path):
    reg, v1, v2 = _registry(system_dirs, tmp_path)
    with _serve(system_dirs, reg, RulesConfig(**RULES)) as url:
        seen, deadline = [], time.monotonic() + 30
        while reg.aliases("python").canary is not None and time.monotonic() < deadline:
            seen += _traffic(url, 8, "down")  # keeps every window above min_requests
        assert v2 in seen and v1 in seen
        _wait_for(reg, "rollback")
        assert reg.aliases("python").stable == v1 and reg.aliases("python").canary is None
        assert set(_traffic(url, 6, "up")) == {v1}  # every user back on stable
        assert "zephyra_feedback_total" in httpx.get(url + "/metrics").text
    last = [e for e in reg.log("python") if e["who"] == "rule"][-1]
    assert "thumbs_down_rate" in last["why"] and last["from"] == v2 and last["to"] == v1


def test_passing_measurements_promote_the_canary(system_dirs, tmp_path):
    reg, v1, v2 = _registry(system_dirs, tmp_path)
    with _serve(system_dirs, reg, RulesConfig(**RULES)) as url:
        deadline = time.monotonic() + 30
        while reg.aliases("python").canary is not None and time.monotonic() < deadline:
            _traffic(url, 8, "up")  # keeps every window above min_requests
        assert reg.aliases("python").stable == v2, reg.log("python")
        assert set(_traffic(url, 6, "up")) == {v2}
        assert httpx.get(url + "/v1/models").json()["data"][-1]["version"] in (v1, v2)
    assert [e for e in reg.log("python") if e["who"] == "rule"][-1]["action"] == "promote"


def test_a_window_with_too_few_requests_is_inconclusive_and_rules_are_checked():
    out = Outcomes()
    cfg = RulesConfig(interval=60, min_requests=2, rules=[{"metric": "error_rate", "max": 0.1}])
    assert measure(out, "python", "v1", "v2", cfg)[0] == "inconclusive"
    for ok in (True, False, True):
        out.answer("python", "v2", ok, 0.1, None)
    result, values = measure(out, "python", "v1", "v2", cfg)
    assert result == "failed" and values["failed"] == ["error_rate"] and abs(values["error_rate"] - 1 / 3) < 1e-9
    with pytest.raises(Exception, match="unknown canary rule metric"):
        RulesConfig(rules=[{"metric": "vibes", "max": 1}])


def test_too_many_inconclusive_measurements_hold_the_canary_for_a_person():
    from zephyra.serve.canary import CanaryController

    decided = []
    c = CanaryController(RulesConfig(interval=60, count=2, inconclusive_limit=1, min_requests=5), Outcomes(),
                         lambda *a: decided.append(a))
    assert c.step({"python": ("v1", "v2")}) == []  # one inconclusive: tolerated
    ((name, verdict, why),) = c.step({"python": ("v1", "v2")})
    assert (name, verdict) == ("python", "hold") and "2 inconclusive" in why and decided[0][1] == "hold"
