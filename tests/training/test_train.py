"""End to end on tiny models: artifacts, metrics, baselines, Muon, phase 2 from phase 1 with replay, schedules."""

import json
import math

import pytest
import torch

from conftest import losses, read_metrics, recipe_dict, write_recipe
from zephyra.training import RecipeError, load_recipe, train, verify
from zephyra.training.config import ScheduleConfig, from_dict, TrainConfig
from zephyra.training.optim import lr_multiplier


def _cfg(tmp_path, data_root, name="run", overrides=(), **top):
    path = write_recipe(tmp_path / f"{name}.yaml", recipe_dict(data_root, tmp_path / name, **top))
    return load_recipe(path, list(overrides))


@pytest.fixture(scope="module")
def phase1_run(tmp_path_factory, data_root):
    """A tiny phase-1 run long enough to learn the training words' categories."""
    tmp = tmp_path_factory.mktemp("phase1")
    d = recipe_dict(data_root, tmp / "run", max_steps=150, eval_every=50, save_every=50, log_every=10,
                    eval_tasks=["phase1"], phase1_eval={"data": str(data_root / "phase1"), "max_new_tokens": 6})
    d["data"]["train"] = {"path": str(data_root / "phase1"), "split": "train", "formatter": "phase1"}
    d["data"]["validation"] = [{"path": str(data_root / "phase1"), "split": "validation", "formatter": "phase1",
                                "name": "phase1"}]
    d["model"]["overrides"] = {"hidden_size": 64, "intermediate_size": 128}
    d["optim"]["lr"] = 1e-2
    return train(load_recipe(write_recipe(tmp / "phase1.yaml", d)))


def test_final_model_loads_with_transformers_and_its_tokenizer(phase1_run):
    import zephyra.model  # noqa: F401  (registers the Auto classes)
    from transformers import AutoModelForCausalLM

    from zephyra.tokenizer import load_tokenizer

    final = phase1_run["paths"]["final"]
    manifest = verify(final)  # every file hashed in the manifest, with the resolved config and metrics
    assert manifest["kind"] == "model" and manifest["config"]["max_steps"] == 150
    assert manifest["metrics"]["phase1/category_acc_train"] == phase1_run["metrics"]["phase1/category_acc_train"]
    model = AutoModelForCausalLM.from_pretrained(final)
    tok = load_tokenizer(final)
    x = torch.tensor([tok("apple:")["input_ids"]])
    assert model(input_ids=x).logits.shape == (1, x.shape[1], len(tok))


def test_metrics_tensorboard_and_checkpoint_rotation(phase1_run):
    out = phase1_run["paths"]["out_dir"]
    recs = read_metrics(out)
    train_recs = [r for r in recs if "loss" in r]
    assert [r["step"] for r in train_recs] == list(range(10, 151, 10))
    assert {"tokens", "lr", "grad_norm", "tok_per_s", "flops_per_s"} <= set(train_recs[0])
    assert train_recs[-1]["loss"] < train_recs[0]["loss"] - 1.0
    evals = [r for r in recs if "val_loss" in r]
    assert [r["step"] for r in evals] == [50, 100, 150] and "val/phase1" in evals[0]
    from pathlib import Path

    assert list((Path(out) / "tb").glob("events.out.tfevents.*"))
    ckpts = sorted(p.name for p in (Path(out) / "checkpoints").glob("step-*"))
    best = json.loads((Path(out) / "checkpoints" / "best.json").read_text())
    # keep_last 2 (the two newest) and the best one by validation loss, which may be one of them
    assert best["step"] in (50, 100, 150) and best["val_loss"] == min(r["val_loss"] for r in evals)
    assert ckpts == sorted({"step-0000100", "step-0000150", f"step-{best['step']:07d}"})
    assert phase1_run["metrics"]["tok_per_s"] > 0 and phase1_run["metrics"]["flops_per_s"] > 0


def test_phase1_skills_are_measured_and_learned(phase1_run):
    m = phase1_run["metrics"]
    assert m["phase1/category_words_train"] == 24 and m["phase1/category_words_heldout"] == 6
    assert m["phase1/category_acc_train"] >= 0.8  # a 2-layer model memorises 24 words in 150 steps
    assert m["phase1/greeting_complete"] >= 0.5
    details = json.loads((__import__("pathlib").Path(phase1_run["paths"]["out_dir"]) / "phase1_eval.json").read_text())
    assert len(details["greetings"]) == m["phase1/greetings"]
    # the held-out score is the share of held-out words answered right, and those words are not training words
    held, seen = details["categories_heldout"], details["categories_train"]
    assert m["phase1/category_acc_heldout"] == sum(r["correct"] for r in held) / len(held)
    assert not {r["word"] for r in held} & {r["word"] for r in seen}
    assert all({"prompt", "reply", "complete", "known"} <= set(g) for g in details["greetings"])


def test_phase2_continues_from_phase1_with_replay(tmp_path, data_root, phase1_run):
    final = phase1_run["paths"]["final"]
    d = recipe_dict(data_root, tmp_path / "p2", max_steps=6, eval_every=0, save_every=0, tokenizer=final)
    d["model"] = {"init_from": final}
    d["data"]["replay"] = [{"path": str(data_root / "phase1"), "split": "train", "formatter": "phase1",
                            "fraction": 0.25}]
    d["data"]["validation"].append({"path": str(data_root / "phase1"), "split": "validation",
                                    "formatter": "phase1", "name": "phase1"})
    res = train(load_recipe(write_recipe(tmp_path / "p2.yaml", d)))
    m = res["metrics"]
    assert {"val/phase2/validation", "val/phase1"} <= set(m)
    # training started from phase 1's weights: its phase-1 validation loss is far below a fresh model's
    assert m["val/phase1"] < 4.0
    assert verify(res["paths"]["final"])["parents"] == [final]


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_baselines_train_with_the_same_engine(tmp_path, data_root, arch):
    res = train(_cfg(tmp_path, data_root, overrides=[f"model.arch={arch}", "max_steps=6", "save_every=0"]))
    ls = losses(res["paths"]["out_dir"])
    assert ls[6] < ls[1] and math.isfinite(res["metrics"]["val_loss"])
    cfg = json.loads((tmp_path / "run" / "final" / "config.json").read_text())
    assert cfg["model_type"] == arch


def test_muon_and_bf16_train(tmp_path, data_root):
    res = train(_cfg(tmp_path, data_root, overrides=["optim.name=muon", "precision=bf16", "max_steps=8",
                                                     "save_every=4", "schedule.kind=wsd"]))
    ls = losses(res["paths"]["out_dir"])
    assert ls[8] < ls[1] - 0.3
    state = torch.load(f"{res['paths']['checkpoint']}/optimizer.pt", weights_only=True)
    assert len(state["optimizers"]) == 2  # Muon for the block matrices, AdamW for the rest


def test_tokenizer_is_trained_when_missing(tmp_path, data_root):
    d = recipe_dict(data_root, tmp_path / "run", max_steps=2, save_every=0, eval_every=0,
                    tokenizer=str(tmp_path / "tok"), tokenizer_vocab_size=300,
                    train_tokenizer_on=[{"path": str(data_root / "phase2"), "formatter": "text"},
                                        {"path": str(data_root / "phase1"), "formatter": "phase1"}])
    train(load_recipe(write_recipe(tmp_path / "r.yaml", d)))
    assert (tmp_path / "tok" / "tokenizer.json").is_file() and (tmp_path / "tok" / "manifest.json").is_file()
    assert json.loads((tmp_path / "run" / "final" / "config.json").read_text())["vocab_size"] == 300
    d.pop("train_tokenizer_on")
    d["tokenizer"] = str(tmp_path / "missing")
    with pytest.raises(RecipeError, match="does not exist and the recipe has no train_tokenizer_on"):
        train(load_recipe(write_recipe(tmp_path / "r2.yaml", d)))


def test_a_context_shorter_than_the_sequences_is_refused(tmp_path, data_root):
    cfg = _cfg(tmp_path, data_root, overrides=["model.overrides.max_position_embeddings=16"])
    with pytest.raises(RecipeError, match=r"data.seq_len \(32\) is longer than the model's context \(16\)"):
        train(cfg)


def test_schedules():
    cos = ScheduleConfig(kind="cosine", warmup_steps=10, min_lr_ratio=0.1)
    assert lr_multiplier(0, 100, cos) == pytest.approx(0.1) and lr_multiplier(9, 100, cos) == 1.0
    assert lr_multiplier(99, 100, cos) == pytest.approx(0.1, abs=1e-3)
    assert lr_multiplier(55, 100, cos) == pytest.approx(0.55)
    wsd = ScheduleConfig(kind="wsd", warmup_steps=10, decay_fraction=0.2, min_lr_ratio=0.0)
    assert [lr_multiplier(s, 100, wsd) for s in (10, 79)] == [1.0, 1.0]
    assert lr_multiplier(89, 100, wsd) == pytest.approx(0.5) and lr_multiplier(99, 100, wsd) == 0.0


def test_config_saved_beside_the_run_reads_back(tmp_path, data_root):
    import yaml

    cfg = _cfg(tmp_path, data_root, overrides=["max_steps=2", "save_every=0", "eval_every=0"])
    train(cfg)
    assert from_dict(TrainConfig, yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())) == cfg


def test_cli_base_trains_a_recipe_with_overrides(tmp_path, data_root):
    from typer.testing import CliRunner

    from zephyra.training.cli import app

    path = write_recipe(tmp_path / "r.yaml", recipe_dict(data_root, tmp_path / "run"))
    r = CliRunner().invoke(app, ["base", str(path), "max_steps=3", "save_every=0", "eval_every=0"])
    assert r.exit_code == 0, r.output
    assert f"final model: {tmp_path / 'run' / 'final'}" in r.output
    assert sorted(losses(tmp_path / "run")) == [1, 2, 3]


def test_a_second_run_into_the_same_out_dir_is_refused(tmp_path, data_root):
    import fcntl

    cfg = _cfg(tmp_path, data_root, overrides=["max_steps=2"])
    (tmp_path / "run").mkdir()
    with open(tmp_path / "run" / ".lock", "a+") as held:  # as a live run in another process holds it
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(RecipeError, match="another training run is using"):
            train(cfg)
    train(cfg)  # released: runs
