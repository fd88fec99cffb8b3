"""The registry: immutable content-hashed versions, the stable and canary aliases, promote and rollback, an
append-only log, and ``zephyra registry`` with --json."""

import json

import pytest
from typer.testing import CliRunner

from zephyra.cli import app
from zephyra.registry import Registry, RegistryError, version_of

runner = CliRunner()


def _adapter(path, weights: bytes):
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4}))
    (path / "adapter_model.safetensors").write_bytes(weights)
    (path / "manifest.json").write_text(json.dumps({"metrics": {"val_ppl": 3.0}, "created": str(weights)}))
    return path


def test_versions_aliases_promote_canary_rollback_and_the_log(tmp_path):
    reg = Registry(tmp_path / "reg")
    v1 = reg.push(_adapter(tmp_path / "a1", b"one"), "python", why="first")
    assert len(v1) == 12 and reg.aliases("python").stable == v1  # the first version is stable
    assert reg.push(tmp_path / "a1", "python") == v1  # the same files are the same version, pushed once
    v2 = reg.push(_adapter(tmp_path / "a2", b"two"), "python")
    assert v2 != v1 and reg.aliases("python").stable == v1
    a = reg.canary("python", v2, 20, why="try it")
    assert (a.stable, a.canary, a.canary_percent) == (v1, v2, 20.0)
    assert reg.promote("python").stable == v2 and reg.aliases("python").canary is None
    assert reg.rollback("python", why="worse").stable == v1
    with pytest.raises(RegistryError, match="no earlier stable"):
        reg.rollback("python")
    actions = [(e["action"], e["from"], e["to"]) for e in reg.log("python")]
    assert actions == [("push", None, v1), ("promote", None, v1), ("push", None, v2), ("canary 20%", None, v2),
                       ("promote", v1, v2), ("rollback", v2, v1)]
    assert reg.log()[0]["why"] == "first" and all(e["who"] for e in reg.log())
    stored = reg.path("python", v2)
    assert (stored / "adapter_model.safetensors").read_bytes() == b"two"
    assert not (stored / "adapter_model.safetensors").stat().st_mode & 0o222  # immutable: read-only
    assert reg.versions("python")[0]["metrics"] == {"val_ppl": 3.0}


def test_a_canary_rollback_ends_the_canary_and_keeps_stable(tmp_path):
    reg = Registry(tmp_path / "reg")
    v1 = reg.push(_adapter(tmp_path / "a1", b"one"), "chemistry")
    v2 = reg.push(_adapter(tmp_path / "a2", b"two"), "chemistry")
    reg.canary("chemistry", v2, 50)
    a = reg.rollback("chemistry")
    assert (a.stable, a.canary) == (v1, None)
    assert reg.log("chemistry")[-1]["action"] == "rollback"


def test_the_version_is_the_one_the_server_reports(tmp_path):
    from zephyra.serve.app import adapter_version

    path = _adapter(tmp_path / "a", b"weights")
    assert version_of(path) == adapter_version(path)


@pytest.mark.parametrize("call, match", [
    (lambda r, t: r.push(t / "nothing", "python"), "no such directory"),
    (lambda r, t: r.push(t, "python"), "not an adapter"),
    (lambda r, t: r.push(t, "bad name!"), "a registry name"),
    (lambda r, t: r.show("nope"), "no name 'nope'"),
    (lambda r, t: r.canary("python", "000000000000", 10), "no version"),
    (lambda r, t: r.canary("python", r.aliases("python").stable, 10), "already stable"),
    (lambda r, t: r.promote("python"), "no canary to promote"),
])
def test_bad_input_is_one_line_and_changes_nothing(tmp_path, call, match):
    reg = Registry(tmp_path / "reg")
    reg.push(_adapter(tmp_path / "a1", b"one"), "python")
    before = (tmp_path / "reg" / "log.jsonl").read_text()
    with pytest.raises(RegistryError, match=match):
        call(reg, tmp_path)
    assert (tmp_path / "reg" / "log.jsonl").read_text() == before


def test_a_canary_percent_outside_0_100_is_refused(tmp_path):
    reg = Registry(tmp_path / "reg")
    reg.push(_adapter(tmp_path / "a1", b"one"), "python")
    v2 = reg.push(_adapter(tmp_path / "a2", b"two"), "python")
    with pytest.raises(RegistryError, match="between 0 and 100"):
        reg.canary("python", v2, 150)


def test_the_cli_speaks_json(tmp_path):
    root = ["--root", str(tmp_path / "reg")]
    _adapter(tmp_path / "a1", b"one")
    _adapter(tmp_path / "a2", b"two")
    r = runner.invoke(app, ["registry", "push", str(tmp_path / "a1"), "--name", "python", "--json", *root])
    assert r.exit_code == 0, r.output
    v1 = json.loads(r.output)["version"]
    v2 = json.loads(runner.invoke(app, ["registry", "push", str(tmp_path / "a2"), "--name", "python", "--json",
                                        *root]).output)["version"]
    r = runner.invoke(app, ["registry", "canary", f"python@{v2}", "--percent", "20", "--json", *root])
    assert json.loads(r.output)["canary"] == v2
    listed = json.loads(runner.invoke(app, ["registry", "list", "--json", *root]).output)["names"]
    assert listed == [{"name": "python", "stable": v1, "canary": v2, "canary_percent": 20.0, "shadow": False,
                       "versions": 2}]
    assert json.loads(runner.invoke(app, ["registry", "rollback", "python", "--json", *root]).output)["stable"] == v1
    log = json.loads(runner.invoke(app, ["registry", "log", "python", "--json", *root]).output)["log"]
    assert [e["action"] for e in log][-1] == "rollback"
    r = runner.invoke(app, ["registry", "show", "nope", *root])
    assert r.exit_code == 2 and "no name 'nope'" in r.output
