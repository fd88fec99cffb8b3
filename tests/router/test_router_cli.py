"""``zephyra router train|eval|bench`` end to end on a tiny saved model and a saved synthetic DatasetDict."""

import json

import datasets
import pytest
from router_helpers import make_model
from typer.testing import CliRunner

from zephyra.router.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, tok, splits):
    root = tmp_path_factory.mktemp("cli")
    dd = datasets.DatasetDict({name: datasets.Dataset.from_dict(
        {"prompt": s.prompts, "label": s.labels, "template": s.templates}) for name, s in splits.items()})
    dd.save_to_disk(str(root / "data"))
    model = make_model(tok)
    model.save_pretrained(str(root / "base"))
    tok.save_pretrained(str(root / "base"))
    return root


def test_train_eval_bench(workdir):
    r = runner.invoke(app, ["train", "--kind", "inmodel", "--model", str(workdir / "base"), "--data",
                            str(workdir / "data"), "--out", str(workdir / "inmodel")])
    assert r.exit_code == 0, r.output
    assert "inmodel router written" in r.output and (workdir / "inmodel" / "manifest.json").is_file()
    manifest = json.loads((workdir / "inmodel" / "manifest.json").read_text())
    assert manifest["inputs"]["data"]["sha256"] and manifest["metrics"]["validation"]["accuracy"] >= 0.95
    r = runner.invoke(app, ["eval", "--router", str(workdir / "inmodel"), "--model", str(workdir / "base"),
                            "--data", str(workdir / "data"), "--out", str(workdir / "report")])
    assert r.exit_code == 0, r.output
    assert "| inmodel |" in r.output and (workdir / "report" / "reliability.png").is_file()
    r = runner.invoke(app, ["bench", "--model", str(workdir / "base"), "--router", str(workdir / "inmodel"),
                            "--repeats", "3", "--json", str(workdir / "bench.json")])
    assert r.exit_code == 0, r.output
    assert json.loads((workdir / "bench.json").read_text())["batch_size"] == 8


@pytest.mark.parametrize("args, message", [
    (["train", "--kind", "magic"], "unknown router kind"),
    (["train", "--kind", "inmodel", "--data", "nowhere"], "not a saved DatasetDict"),
    (["eval", "--router", "nowhere"], "not a router directory"),
])
def test_bad_input_is_one_clear_line(workdir, args, message):
    r = runner.invoke(app, args)
    assert r.exit_code == 2 and message in r.output and r.output.strip().count("\n") == 0, r.output


def test_inmodel_training_needs_a_model(workdir):
    r = runner.invoke(app, ["train", "--kind", "inmodel", "--data", str(workdir / "data")])
    assert r.exit_code == 2 and "--model" in r.output


def test_training_settings_come_from_yaml_and_overrides_with_the_config_rules(workdir):
    config = workdir / "router.yaml"
    config.write_text("max_epochs: 3\ncalibration:\n  threshold_strategy: recall\n")
    r = runner.invoke(app, ["train", "--kind", "inmodel", "--model", str(workdir / "base"), "--data",
                            str(workdir / "data"), "--out", str(workdir / "set"), "--config", str(config),
                            "--set", "pooling=last", "--set", "lr=2e-2"])
    assert r.exit_code == 0, r.output
    spec = json.loads((workdir / "set" / "router.json").read_text())
    settings = json.loads((workdir / "set" / "manifest.json").read_text())["config"]
    assert spec["pooling"] == "last" and settings["lr"] == 0.02 and settings["max_epochs"] == 3
    assert settings["calibration"]["threshold_strategy"] == "recall"
    bad = runner.invoke(app, ["train", "--kind", "inmodel", "--model", str(workdir / "base"), "--data",
                              str(workdir / "data"), "--set", "learning_rate=1"])
    assert bad.exit_code == 2 and "unknown key learning_rate (known in InModelTrainConfig:" in bad.output
