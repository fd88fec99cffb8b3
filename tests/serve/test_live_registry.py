"""A running server follows its registry without a restart: a promotion, a rollback and a canary made with the
registry's commands take traffic within a reload interval; a version that fails its checks (files changed after
the push, trained on another base) is refused in the log and the version before it keeps serving; a shadow canary
answers copies that only the metrics and the rules see."""

import json
import shutil
import time

import httpx
import pytest
from resolve_helpers import save_adapters
from serve_helpers import running


@pytest.fixture
def live(system_dirs, tmp_path):
    from zephyra.loader import load_model
    from zephyra.registry import Registry
    from zephyra.resolve.system import load_system
    from zephyra.serve.app import create_app
    from zephyra.serve.deploy import registry_adapters

    reg = Registry(tmp_path / "registry")
    v1 = reg.push(system_dirs["adapters"] / "python", "python")
    reg.push(system_dirs["adapters"] / "chemistry", "chemistry")
    model, _ = load_model(system_dirs["base"])
    retrained = save_adapters(model, tmp_path / "retrained", names=("python",))["python"]
    dirs, canaries = registry_adapters(reg)
    system = load_system(system_dirs["base"], None, system_dirs["router"], adapter_dirs=dirs)
    app = create_app(system, canaries=canaries, registry=reg, max_tokens=8, reload_interval=0.2)
    with running(app) as url:
        yield url, reg, v1, retrained, app.state.server


def _ask(url, model="python", user="someone", text=False):
    r = httpx.post(url + "/v1/chat/completions", timeout=60, json={
        "model": model, "user": user, "max_tokens": 6, "temperature": 0,
        "messages": [{"role": "user", "content": "What is a lambda?"}]})
    assert r.status_code == 200, r.text
    body = r.json()
    return (body["zephyra"], body["choices"][0]["message"]["content"].strip()) if text else body["zephyra"]


def _alone(system_dirs, adapter_dir) -> str:
    """What ``adapter_dir`` answers when it is the only adapter of a freshly loaded system."""
    from zephyra.resolve.system import load_system

    system = load_system(system_dirs["base"], None, None, adapter_dirs={"python": adapter_dir})
    try:
        return system.resolve(["What is a lambda?"], adapter="python", max_new_tokens=6)[0].text
    finally:
        system.close()


def _until(check, seconds=15):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError("the server did not follow the registry in time")


def test_promote_rollback_and_canary_take_effect_without_a_restart(live, system_dirs):
    url, reg, v1, retrained, server = live
    info, before = _ask(url, text=True)
    assert info["version"] == v1 and before == _alone(system_dirs, system_dirs["adapters"] / "python")
    v2 = reg.push(retrained, "python", why="retrained")
    reg.promote("python", v2)
    _until(lambda: _ask(url)["version"] == v2)
    after = _ask(url, text=True)[1]
    assert after == _alone(system_dirs, retrained) and after != before  # the new weights answer, not a label
    models = {m["id"]: m for m in httpx.get(url + "/v1/models").json()["data"]}
    assert models["python"]["version"] == v2
    assert _ask(url, "auto")["adapter"] in ("python", "chemistry", "base")  # routing still works after the swap
    server.unload_after = 0.5
    _until(lambda: ("python", v1) not in server.loaded)  # the old version is unloaded once nobody uses it
    reg.rollback("python")
    _until(lambda: _ask(url)["version"] == v1)  # loaded again from the registry
    reg.canary("python", v2, 100)
    _until(lambda: _ask(url).get("canary") == "canary")
    assert _ask(url, user="another")["version"] == v2
    reg.rollback("python")  # the canary ends
    _until(lambda: "canary" not in _ask(url))
    assert _ask(url)["version"] == v1


def _reseal(directory):
    """A directory edited here stands for another trained artifact: its manifest's file table made anew, as
    training would write it (else the edit is refused as tampering, before the check this test is about)."""
    from zephyra.manifest import file_table

    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["files"] = file_table(directory)
    (directory / "manifest.json").write_text(json.dumps(manifest))


def test_a_version_that_fails_its_checks_is_refused_and_the_old_one_serves_on(live, tmp_path):
    url, reg, v1, retrained, server = live
    # trained on another base: its manifest names another fingerprint
    other = tmp_path / "other-base"
    shutil.copytree(retrained, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["base"]["fingerprint"] = "0" * 64
    (other / "manifest.json").write_text(json.dumps(manifest))
    config = json.loads((other / "adapter_config.json").read_text())
    config["revision"] = "another base"  # other files than the retrained version's: another version
    (other / "adapter_config.json").write_text(json.dumps(config))
    _reseal(other)
    v_other = reg.push(other, "python")
    reg.promote("python", v_other)
    _until(lambda: any(e["action"] == "refused" and e["to"] == v_other for e in reg.log("python")))
    refused = [e for e in reg.log("python") if e["action"] == "refused"][-1]
    assert refused["who"] == "server" and "not on this base" in refused["why"] and v1 in refused["why"]
    assert _ask(url)["version"] == v1
    # changed after the push: its files no longer hash to its version
    v2 = reg.push(retrained, "python")
    weights = reg.path("python", v2) / "adapter_model.safetensors"
    weights.chmod(0o644)
    weights.write_bytes(weights.read_bytes()[:-16])
    reg.promote("python", v2)
    _until(lambda: any(e["action"] == "refused" and e["to"] == v2 for e in reg.log("python")))
    assert "changed or corrupt" in [e for e in reg.log("python") if e["action"] == "refused"][-1]["why"]
    assert _ask(url)["version"] == v1 and httpx.get(url + "/ready").status_code == 200
    assert sum(e["action"] == "refused" for e in reg.log("python")) == 2  # each refused once, not every check


def test_a_shadow_canary_answers_copies_the_users_never_see(live):
    url, reg, v1, retrained, server = live
    v2 = reg.push(retrained, "python")
    reg.canary("python", v2, 100, shadow=True)
    assert reg.aliases("python").shadow and reg.log("python")[-1]["action"] == "canary 100% (shadow)"
    _until(lambda: _ask(url).get("canary") == "shadow")
    answers = [_ask(url, user=f"u{i}") for i in range(4)]
    assert all(a["version"] == v1 and a["canary"] == "shadow" for a in answers)
    _until(lambda: len(server.outcomes.window("python", v2, 60)[0]) >= 4)
    text = httpx.get(url + "/metrics").text
    assert f'zephyra_requests_total{{adapter="python",endpoint="shadow",status="200",version="{v2}"}}' in text
    assert 'arm="shadow"' in text


def test_the_registrys_router_is_served_and_followed_too(system_dirs, tmp_path):
    """A registry holding a "router" (routers are artifacts too): its stable version routes ``auto``; a promoted
    version routes from the next request on; one of another base is refused and the old one routes on."""
    from zephyra.registry import Registry
    from zephyra.resolve.system import load_system
    from zephyra.serve.app import create_app
    from zephyra.serve.deploy import registry_adapters, registry_router

    reg = Registry(tmp_path / "registry")
    for name in ("python", "chemistry"):
        reg.push(system_dirs["adapters"] / name, name)
    r1 = reg.push(system_dirs["router"], "router")
    assert registry_router(reg) == (r1, reg.path("router", r1))
    dirs, _ = registry_adapters(reg)
    system = load_system(system_dirs["base"], None, registry_router(reg)[1], adapter_dirs=dirs)
    with running(create_app(system, registry=reg, max_tokens=8, reload_interval=0.2)) as url:
        def auto_version():
            return next(m for m in httpx.get(url + "/v1/models").json()["data"] if m["id"] == "auto")["version"]

        assert auto_version() == r1 and _ask(url, "auto")["adapter"] != "base"
        # a version that abstains on everything: a temperature that flattens every score, a threshold of 0.5
        shy = tmp_path / "shy"
        shutil.copytree(system_dirs["router"], shy)
        spec = json.loads((shy / "router.json").read_text())
        spec["calibration"] = {"temperature": 1e6, "threshold": 0.5}
        (shy / "router.json").write_text(json.dumps(spec))
        _reseal(shy)
        r2 = reg.push(shy, "router")
        reg.promote("router", r2)
        _until(lambda: auto_version() == r2)
        assert _ask(url, "auto")["adapter"] == "base"
        other = tmp_path / "other"  # another base's router
        shutil.copytree(shy, other)
        manifest = json.loads((other / "manifest.json").read_text())
        manifest["base"]["fingerprint"] = "0" * 64
        (other / "manifest.json").write_text(json.dumps(manifest))
        spec["calibration"] = {"temperature": 1.0, "threshold": 0.0}
        (other / "router.json").write_text(json.dumps(spec))
        _reseal(other)
        r3 = reg.push(other, "router")
        reg.promote("router", r3)
        _until(lambda: any(e["action"] == "refused" and e["to"] == r3 for e in reg.log("router")))
        assert auto_version() == r2 and _ask(url, "auto")["adapter"] == "base"
