"""Serving from the registry: each adapter's stable version, and its canary to its share of users, sticky per
user; the canary is named by NAME@VERSION, counted in the metrics, and listed in /v1/models."""

import httpx
import pytest
from resolve_helpers import save_adapters
from serve_helpers import running


@pytest.fixture(scope="module")
def canary_server(system_dirs, tmp_path_factory):
    from zephyra.loader import load_model
    from zephyra.registry import Registry
    from zephyra.resolve.system import load_system
    from zephyra.serve.app import create_app
    from zephyra.serve.deploy import registry_adapters

    root = tmp_path_factory.mktemp("canary")
    reg = Registry(root / "registry")
    v1 = reg.push(system_dirs["adapters"] / "python", "python")
    reg.push(system_dirs["adapters"] / "chemistry", "chemistry")
    model, _ = load_model(system_dirs["base"])
    v2 = reg.push(save_adapters(model, root / "retrained", names=("python",))["python"], "python", why="retrained")
    reg.canary("python", v2, 50)
    dirs, canaries = registry_adapters(reg)
    assert set(dirs) == {"python", f"python@{v2}", "chemistry"} and canaries["python"].percent == 50
    system = load_system(system_dirs["base"], None, system_dirs["router"], adapter_dirs=dirs)
    with running(create_app(system, canaries=canaries, max_tokens=8)) as url:
        yield url, v1, v2


def _ask(url, model, user=None, content="Tell me about lambda."):
    body = {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 3}
    if user is not None:
        body["user"] = user
    r = httpx.post(url + "/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()["zephyra"]


def test_the_canary_gets_its_share_of_users_and_each_user_keeps_their_arm(canary_server):
    url, v1, v2 = canary_server
    served = {u: _ask(url, "python", user=u) for u in (f"user-{i}" for i in range(24))}
    arms = {u: z["canary"] for u, z in served.items()}
    assert all(z["version"] == (v2 if z["canary"] == "canary" else v1) for z in served.values())
    n = sum(a == "canary" for a in arms.values())
    assert 4 <= n <= 20, n  # 50% of 24 users, by a hash
    for u in list(served)[:6]:
        assert _ask(url, "python", user=u)["canary"] == arms[u]  # sticky
    routed = _ask(url, "auto", user="user-1")
    assert routed["adapter"] == "python" and routed["canary"] == arms["user-1"] and routed["confidence"] > 0
    assert _ask(url, f"python@{v2}")["version"] == v2 and "canary" not in _ask(url, "chemistry")


def test_the_canary_is_in_the_models_list_and_the_metrics(canary_server):
    url, v1, v2 = canary_server
    _ask(url, "python", user="someone")
    models = {m["id"]: m for m in httpx.get(url + "/v1/models").json()["data"]}
    assert models["python"]["version"] == v1 and models["python"]["canary"] == {"version": v2, "percent": 50.0}
    assert f"python@{v2}" not in models
    text = httpx.get(url + "/metrics").text
    assert "zephyra_canary_assignments_total" in text and f'version="{v2}"' in text
