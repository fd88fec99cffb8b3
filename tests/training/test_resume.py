"""Exact resume after SIGKILL; corrupt or truncated checkpoints refused before anything is loaded; 2 processes
under torchrun give the losses of 1 process with the same global batch."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import losses, read_metrics, recipe_dict, write_recipe
from zephyra.training import CheckpointError, load_recipe, train, verify
from zephyra.training.config import RecipeError
from zephyra.training.checkpoint import list_checkpoints

ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def _val(out) -> dict[int, float]:
    return {r["step"]: r["val_loss"] for r in read_metrics(out) if "val_loss" in r}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_root):
    """An uninterrupted in-process run: the losses every other run must reproduce."""
    tmp = tmp_path_factory.mktemp("reference")
    d = recipe_dict(data_root, tmp / "run", max_steps=60, batch_size=16, micro_batch_size=8, save_every=10,
                    eval_every=10)
    d["data"]["seq_len"] = 64
    d["model"]["overrides"] = {"max_position_embeddings": 64}
    train(load_recipe(write_recipe(tmp / "r.yaml", d)))
    return d, tmp / "run"


def test_sigkilled_run_resumes_on_the_same_losses(tmp_path, reference):
    d, ref_out = reference
    d = {**d, "out_dir": str(tmp_path / "run")}
    recipe = write_recipe(tmp_path / "r.yaml", d)
    cmd = [sys.executable, "-m", "zephyra.training", "base", str(recipe)]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpts = tmp_path / "run" / "checkpoints"
    deadline = time.time() + 120
    while not (ckpts / "step-0000020").exists():  # let it get a third of the way, then kill it mid-step
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.time() < deadline, "the run never wrote its step-20 checkpoint"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "run" / "final").exists()  # it really died mid-way
    killed_at = list_checkpoints(ckpts)[-1][0]
    assert 20 <= killed_at < 60

    train(load_recipe(recipe))  # resume=auto: from the newest checkpoint the killed run left
    got, want = losses(tmp_path / "run"), losses(ref_out)
    assert sorted(got) == list(range(1, 61))
    assert got == want  # bit for bit: weights, optimizer, schedule and data position all restored
    assert _val(tmp_path / "run") == _val(ref_out)


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage, message", [
    (lambda d: _flip_byte(d / "model.safetensors"), "model.safetensors does not match its sha256"),
    (lambda d: os.truncate(d / "optimizer.pt", 100), "optimizer.pt is 100 bytes, the manifest says"),
    (lambda d: (d / "rng.pt").unlink(), "rng.pt is missing"),
    (lambda d: (d / "manifest.json").unlink(), "no manifest.json"),
    (lambda d: (d / "manifest.json").write_text("{not json"), "malformed JSON"),
])
def test_damaged_checkpoint_is_refused_and_never_loaded(tmp_path, reference, monkeypatch, damage, message):
    _, ref_out = reference
    out = tmp_path / "run"
    shutil.copytree(ref_out / "checkpoints", out / "checkpoints")
    latest = list_checkpoints(out / "checkpoints")[-1][1]
    verify(latest)
    damage(latest)

    import safetensors.torch
    import torch

    def forbidden(*a, **k):
        raise AssertionError("a damaged checkpoint was deserialised")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(safetensors.torch, "load_file", forbidden)
    with pytest.raises(CheckpointError, match=message) as e:
        train(load_recipe(write_recipe(tmp_path / "r.yaml", {**reference[0], "out_dir": str(out)})))
    assert str(e.value).startswith(f"refusing checkpoint {latest}") and "\n" not in str(e.value)


def test_cli_reports_a_corrupt_checkpoint_in_one_line(tmp_path, reference):
    from typer.testing import CliRunner

    from zephyra.training.cli import app

    d, ref_out = reference
    out = tmp_path / "run"
    shutil.copytree(ref_out / "checkpoints", out / "checkpoints")
    _flip_byte(list_checkpoints(out / "checkpoints")[-1][1] / "optimizer.pt")
    r = CliRunner().invoke(app, ["base", str(write_recipe(tmp_path / "r.yaml", {**d, "out_dir": str(out)}))])
    assert r.exit_code == 2
    assert r.output.startswith("error: refusing checkpoint") and "optimizer.pt does not match its sha256" in r.output


def test_resume_never_refuses_to_mix_with_old_checkpoints(tmp_path, reference):
    d, ref_out = reference
    shutil.copytree(ref_out / "checkpoints", tmp_path / "run" / "checkpoints")
    cfg = load_recipe(write_recipe(tmp_path / "r.yaml", {**d, "out_dir": str(tmp_path / "run"), "resume": "never"}))
    with pytest.raises(CheckpointError, match="already holds checkpoints and resume=never"):
        train(cfg)


def _torchrun(recipe: Path, *overrides: str):
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or "torchrun"
    cmd = [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "zephyra.training", "base", str(recipe),
           *overrides]
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)


def test_two_processes_match_one_with_the_same_global_batch(tmp_path, reference):
    """torchrun, 2 processes x micro-batch 8 (no accumulation) against 1 process x 2 micro-batches of 8."""
    d, ref_out = reference
    d = {**d, "out_dir": str(tmp_path / "run"), "max_steps": 12, "save_every": 6, "eval_every": 6}
    one = {**d, "out_dir": str(tmp_path / "one")}
    train(load_recipe(write_recipe(tmp_path / "one.yaml", one)))
    done = _torchrun(write_recipe(tmp_path / "two.yaml", d))
    assert done.returncode == 0, done.stderr[-3000:]
    two, single = losses(tmp_path / "run"), losses(tmp_path / "one")
    assert sorted(two) == list(range(1, 13))
    for step in single:
        assert two[step] == pytest.approx(single[step], rel=1e-5, abs=1e-6), step
    for step, v in _val(tmp_path / "one").items():
        assert _val(tmp_path / "run")[step] == pytest.approx(v, rel=1e-5)
    assert verify(tmp_path / "run" / "final")["metrics"]["world_size"] == 2


@pytest.mark.parametrize("overrides", [["model.arch=gpt2"], ["model.arch=llama", "optim.name=muon"],
                                       ["precision=bf16", "schedule.kind=wsd"]], ids=["gpt2", "llama-muon", "bf16"])
def test_resume_from_a_copied_checkpoint_is_exact_for_every_arch_and_optimizer(tmp_path, data_root, overrides):
    d = recipe_dict(data_root, tmp_path / "a", max_steps=6, save_every=3, eval_every=3)
    full = train(load_recipe(write_recipe(tmp_path / "a.yaml", d), overrides))
    (tmp_path / "b" / "checkpoints").mkdir(parents=True)
    shutil.copytree(tmp_path / "a" / "checkpoints" / "step-0000003", tmp_path / "b" / "checkpoints" / "step-0000003")
    resumed = train(load_recipe(write_recipe(tmp_path / "b.yaml", {**d, "out_dir": str(tmp_path / "b")}), overrides))
    want = {k: v for k, v in losses(tmp_path / "a").items() if k > 3}  # b has no log of the steps before
    assert losses(tmp_path / "b") == want and sorted(want) == [4, 5, 6]
    assert resumed["metrics"]["val_loss"] == full["metrics"]["val_loss"]


def test_fsdp_over_two_processes_matches_one_and_resumes_exactly(tmp_path, reference):
    """parallel=fsdp: each process holds half of every parameter and of its optimizer state; the losses are those of
    one process with the same global batch, the checkpoints are whole (they load anywhere), and a copied
    checkpoint resumes under fsdp on the same losses."""
    d, _ = reference
    d = {**d, "max_steps": 6, "save_every": 3, "eval_every": 3}
    train(load_recipe(write_recipe(tmp_path / "one.yaml", {**d, "out_dir": str(tmp_path / "one")})))
    done = _torchrun(write_recipe(tmp_path / "a.yaml", {**d, "out_dir": str(tmp_path / "a")}), "parallel=fsdp")
    assert done.returncode == 0, done.stderr[-3000:]
    single, sharded = losses(tmp_path / "one"), losses(tmp_path / "a")
    assert sorted(sharded) == list(range(1, 7))
    for step in single:
        assert sharded[step] == pytest.approx(single[step], rel=1e-4, abs=1e-5), step
    for step, v in _val(tmp_path / "one").items():
        assert _val(tmp_path / "a")[step] == pytest.approx(v, rel=1e-4)
    final = verify(tmp_path / "a" / "final")
    assert final["metrics"]["world_size"] == 2
    from transformers import AutoModelForCausalLM
    whole = AutoModelForCausalLM.from_pretrained(tmp_path / "a" / "final")  # an ordinary, unsharded model
    ref = AutoModelForCausalLM.from_pretrained(tmp_path / "one" / "final")
    for (k, p), (_, q) in zip(whole.state_dict().items(), ref.state_dict().items()):
        assert torch.allclose(p, q, rtol=1e-3, atol=1e-4), k

    (tmp_path / "b" / "checkpoints").mkdir(parents=True)
    shutil.copytree(tmp_path / "a" / "checkpoints" / "step-0000003", tmp_path / "b" / "checkpoints" / "step-0000003")
    done = _torchrun(write_recipe(tmp_path / "b.yaml", {**d, "out_dir": str(tmp_path / "b")}), "parallel=fsdp")
    assert done.returncode == 0, done.stderr[-3000:]
    want = {k: v for k, v in sharded.items() if k > 3}
    got = losses(tmp_path / "b")
    assert sorted(got) == [4, 5, 6]
    for step in want:
        assert got[step] == pytest.approx(want[step], rel=1e-6, abs=1e-7), step
    # an fsdp checkpoint is refused by a one-process (ddp) resume, with the reason in one line
    (tmp_path / "c" / "checkpoints").mkdir(parents=True)
    shutil.copytree(tmp_path / "a" / "checkpoints" / "step-0000003", tmp_path / "c" / "checkpoints" / "step-0000003")
    with pytest.raises(CheckpointError, match="saved by a fsdp run"):
        train(load_recipe(write_recipe(tmp_path / "c.yaml", {**d, "out_dir": str(tmp_path / "c")})))


def test_fsdp_refuses_muon_and_compile(tmp_path, reference):
    d, _ = reference
    path = write_recipe(tmp_path / "r.yaml", {**d, "out_dir": str(tmp_path / "r")})
    with pytest.raises(RecipeError, match="Muon"):
        load_recipe(path, ["parallel=fsdp", "optim.name=muon"])
    with pytest.raises(RecipeError, match="compile"):
        load_recipe(path, ["parallel=fsdp", "compile=true"])
    with pytest.raises(RecipeError, match="parallel"):
        load_recipe(path, ["parallel=zero3"])
