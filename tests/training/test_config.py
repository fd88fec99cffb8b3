"""Recipes: every shipped YAML resolves; unknown keys and wrong types are one-line errors; overrides work."""

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from zephyra.training import RecipeError, TrainConfig, config_from_dict, load_recipe
from zephyra.training.cli import app

RECIPES = sorted((Path(__file__).parents[2] / "recipes").glob("*.yaml"))  # the repo's link to the package data


def _write(tmp_path, d) -> Path:
    p = tmp_path / "r.yaml"
    p.write_text(yaml.safe_dump(d))
    return p


MINIMAL = {"out_dir": "runs/x", "data": {"train": {"path": "runs/data/phase1", "formatter": "phase1"}}}


def test_shipped_recipes_exist():
    names = {p.name for p in RECIPES}
    assert {"phase1.yaml", "phase2.yaml", "phase1-large.yaml", "phase2-large.yaml"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_every_shipped_recipe_resolves(path):
    cfg = load_recipe(path)
    assert isinstance(cfg, TrainConfig)
    assert cfg.data.train is not None and cfg.out_dir
    cfg.micro_batches(1), cfg.micro_batches(2)  # the batch divides, on 1 process or 2
    assert config_from_dict(cfg.to_dict()) == cfg  # what is saved beside artifacts reads back the same


def test_phase2_recipes_continue_from_phase1_and_replay_it():
    for p2, p1 in (("phase2.yaml", "phase1.yaml"), ("phase2-large.yaml", "phase1-large.yaml")):
        c2 = load_recipe(RECIPES[0].parent / p2)
        c1 = load_recipe(RECIPES[0].parent / p1)
        assert c2.model.init_from == f"{c1.out_dir}/final" == c2.tokenizer
        assert c2.data.replay and c2.data.replay[0].formatter == "phase1"
        assert "phase1" in c1.eval_tasks and "phase1" in c2.eval_tasks


def test_overrides_reach_into_sections_and_parse_values(tmp_path):
    cfg = load_recipe(_write(tmp_path, MINIMAL), ["optim.lr=1e-3", "max_steps=7", "compile=true",
                                                  "data.replay=[{path: p, formatter: text, fraction: 0.25}]",
                                                  "model.overrides.hidden_act=relu2", "threads=null"])
    assert cfg.optim.lr == 1e-3 and isinstance(cfg.optim.lr, float)  # YAML 1.1 reads 1e-3 as a string
    assert cfg.max_steps == 7 and cfg.compile is True and cfg.threads is None
    assert cfg.data.replay[0].fraction == 0.25 and cfg.data.replay[0].name == "p/train"
    assert cfg.model.overrides == {"hidden_act": "relu2"}


@pytest.mark.parametrize("override, message", [
    ("batch_sise=4", "unknown key batch_sise (known in TrainConfig: out_dir, name,"),
    ("optim.learning_rate=0.1", "unknown key optim.learning_rate (known in optim: name, lr,"),
    ("data.train.colour=red", "unknown key data.train.colour (known in data.train: path,"),
    ("max_steps=ten", "max_steps: expected an integer, got str 'ten'"),
    ("max_steps=1.5", "max_steps: expected an integer"),
    ("compile=maybe", "compile: expected true or false"),
    ("precision=fp16", "precision: expected one of 'auto', 'bf16', 'fp32', got 'fp16'"),
    ("optim.lr=fast", "optim.lr: expected a number"),
    ("optim.betas=0.9", "optim.betas: expected a list"),
    ("model.arch=gpt3", "model.arch: expected one of"),
    ("eval_tasks=[phase3]", "eval_tasks[0]: expected one of 'phase1'"),
    ("batch_size=10", "batch_size (10) must be a multiple of micro_batch_size (16)"),
    ("data.replay=[{path: p, fraction: 1.5}]", "fraction must be in (0, 1]"),
    ("max_steps", "override 'max_steps' is not key=value"),
    ("out_dir.x=1", "override out_dir.x: out_dir is not a section"),
])
def test_bad_recipes_are_one_line_errors(tmp_path, override, message):
    with pytest.raises(RecipeError) as e:
        load_recipe(_write(tmp_path, MINIMAL), [override])
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_missing_required_keys_and_files(tmp_path):
    with pytest.raises(RecipeError, match="missing key out_dir"):
        load_recipe(_write(tmp_path, {"data": MINIMAL["data"]}))
    with pytest.raises(RecipeError, match="data.train is required"):
        load_recipe(_write(tmp_path, {"out_dir": "x"}))
    with pytest.raises(RecipeError, match="no such recipe file"):
        load_recipe(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("out_dir: [unclosed\n")
    with pytest.raises(RecipeError, match=r"bad\.yaml:\d+: malformed YAML"):
        load_recipe(tmp_path / "bad.yaml")


def test_micro_batches_follow_the_number_of_processes(tmp_path):
    cfg = load_recipe(_write(tmp_path, MINIMAL), ["batch_size=32", "micro_batch_size=8"])
    assert [cfg.micro_batches(n) for n in (1, 2, 4, 8)] == [(8, 4), (8, 2), (8, 1), (4, 1)]
    with pytest.raises(RecipeError, match="must divide evenly over 3 processes"):
        cfg.micro_batches(3)
    odd = load_recipe(_write(tmp_path, MINIMAL), ["batch_size=24", "micro_batch_size=4"])
    with pytest.raises(RecipeError, match="takes 6 sequences per step, which is not a multiple of micro_batch_size"):
        odd.micro_batches(4)


def test_cli_show_and_errors(tmp_path):
    runner = CliRunner()
    path = _write(tmp_path, MINIMAL)
    ok = runner.invoke(app, ["show", str(path), "optim.lr=0.01"])
    assert ok.exit_code == 0, ok.output
    assert yaml.safe_load(ok.output)["optim"]["lr"] == 0.01
    bad = runner.invoke(app, ["base", str(path), "optim.lrr=1"])
    assert bad.exit_code == 2
    assert "error: unknown key optim.lrr" in bad.output
