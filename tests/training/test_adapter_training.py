"""Adapter training (zephyra.training.adapter): tiny bases saved in tmp dirs, tiny two-domain data. Training lowers
the domain's held-out loss, changes only adapter weights, saves a directory plain PEFT loads with the same logits,
and reports clean one-line errors."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from typer.testing import CliRunner

from zephyra.training.adapter import DEFAULT_RECIPE, AdapterRecipe, load_adapter_recipe, train_adapter
from zephyra.training import RecipeError
from zephyra.training.cli import app

WORDS = {
    "general": "the a of and to in is was it that for on with as at by this had from people day time".split(),
    "alpha": "acid base salt ion metal carbon oxygen bond atom molecule gas solution element".split(),
    "beta": "king queen lord thou thee thy sword crown castle hath doth wherefore night".split(),
}
QUIET = dict(echo=lambda line: None)


def _texts(rng: random.Random, words: list[str], n: int) -> list[str]:
    general = WORDS["general"]
    return [" ".join(rng.choice(words if rng.random() < 0.7 else general) for _ in range(rng.randint(10, 30))) + "."
            for _ in range(n)]


def _make_domain(root: Path, name: str, seed: int) -> None:
    from datasets import Dataset, DatasetDict

    rng = random.Random(seed)
    raw = {s: Dataset.from_dict({"text": _texts(rng, WORDS[name], n)})
           for s, n in (("train", 240), ("validation", 40), ("test", 40))}
    DatasetDict(raw).save_to_disk(str(root / "domains" / name / "raw"))
    qa = {s: Dataset.from_dict({"question": [f"what is {rng.choice(WORDS[name])}?" for _ in range(n)],
                                "answer": _texts(rng, WORDS[name], n)}) for s, n in (("train", 80), ("validation", 20))}
    DatasetDict(qa).save_to_disk(str(root / "domains" / name / "qa"))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """{"data": data_root with domains alpha and beta, "tokenizer": a trained tokenizer}."""
    from zephyra.tokenizer import train_tokenizer

    root = tmp_path_factory.mktemp("adapter-data")
    from datasets import Dataset, DatasetDict

    for i, name in enumerate(("alpha", "beta")):
        _make_domain(root, name, seed=i)
    general = _texts(random.Random(7), WORDS["general"], 120)  # the general corpus adapters may replay
    DatasetDict({"train": Dataset.from_dict({"text": general})}).save_to_disk(str(root / "phase2"))
    texts = [t for name in WORDS for t in _texts(random.Random(9), WORDS[name], 100)]
    tokenizer = train_tokenizer(texts, root / "tokenizer", vocab_size=300)
    return {"data": root, "tokenizer": tokenizer}


def _save_base(path: Path, model, tokenizer) -> Path:
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def zephyra_base(world, tmp_path_factory):
    from zephyra.model import ZephyraForCausalLM, preset_config

    tok = world["tokenizer"]
    torch.manual_seed(0)
    cfg = preset_config("tiny", vocab_size=len(tok), pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                        eos_token_id=tok.eos_token_id)
    return _save_base(tmp_path_factory.mktemp("zbase"), ZephyraForCausalLM(cfg), tok)


@pytest.fixture(scope="module")
def llama_base(world, tmp_path_factory):
    """A non-Zephyra HF model dir: a tiny LlamaForCausalLM saved with the tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = world["tokenizer"]
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return _save_base(tmp_path_factory.mktemp("lbase"), LlamaForCausalLM(cfg), tok)


def _recipe(world, base, out, **kw) -> AdapterRecipe:
    """Small and deterministic: fp32, one thread, a few dozen steps of 8 x 32 tokens."""
    d = dict(base=str(base), domain="alpha", data_root=str(world["data"]), cache_dir=str(Path(out).parent / "cache"),
             out=str(out), seq_len=32, batch_size=8, micro_batch_size=4, max_steps=30, lr=1e-2, warmup_steps=3,
             rank=4, precision="fp32", threads=1, eval_batches=0, seed=3, general_fraction=0.0)
    d.update(kw)
    return AdapterRecipe(**d)


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def _base_weights(model) -> dict[str, torch.Tensor]:
    """The frozen weights under a PeftModel, named as in the plain base."""
    out = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            out[name.removeprefix("base_model.model.").replace(".base_layer", "")] = p.detach()
    return out


# --------------------------------------------------------------------------------------------------------------
# what training does
# --------------------------------------------------------------------------------------------------------------

def test_training_lowers_held_out_loss_changes_only_the_adapter_and_saves_what_peft_loads(world, zephyra_base,
                                                                                        tmp_path):
    from zephyra.loader import load_model

    result = train_adapter(_recipe(world, zephyra_base, tmp_path / "alpha"), return_model=True, **QUIET)
    m, model = result["metrics"], result["model"]
    # held-out raw/validation, not the train rows; a random tiny base with a frozen output matrix moves ~15%
    assert m["val_perplexity"] < 0.9 * m["base_val_perplexity"]
    assert m["val_qa_perplexity"] < m["base_val_qa_perplexity"]
    # the base is bit-identical after training: only adapter weights moved
    fresh, _ = load_model(zephyra_base)
    base_now, base_then = _base_weights(model), dict(fresh.named_parameters())
    assert base_now.keys() == base_then.keys()
    assert all(torch.equal(base_now[k], base_then[k]) for k in base_now)
    # the saved directory loads with plain PEFT and gives the in-memory logits
    ids = torch.randint(3, len(world["tokenizer"]), (2, 12), generator=torch.Generator().manual_seed(1))
    plain = PeftModel.from_pretrained(fresh, result["out"]).eval()
    assert torch.allclose(_logits(plain, ids), _logits(model.eval(), ids), atol=1e-6)
    assert not torch.allclose(_logits(plain, ids), _logits(load_model(zephyra_base)[0], ids), atol=1e-4)


def test_manifest_records_domain_method_data_metrics_and_recipe(world, zephyra_base, tmp_path):
    from zephyra.adapters import base_fingerprint
    from zephyra.io import sha256_dir
    from zephyra.loader import load_model

    out = Path(train_adapter(_recipe(world, zephyra_base, tmp_path / "a", max_steps=4), **QUIET)["out"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "adapter" and manifest["domain"] == "alpha" and manifest["method"] == "lora"
    assert manifest["base"]["fingerprint"] == base_fingerprint(load_model(zephyra_base)[0]).digest
    domain = world["data"] / "domains" / "alpha"
    assert manifest["inputs"] == {"alpha/raw/train": sha256_dir(domain / "raw" / "train"),
                                  "alpha/qa/train": sha256_dir(domain / "qa" / "train"),
                                  "alpha/raw/validation": sha256_dir(domain / "raw" / "validation"),
                                  "alpha/qa/validation": sha256_dir(domain / "qa" / "validation")}
    m = manifest["metrics"]
    for key in ("val_perplexity", "base_val_perplexity", "train_seconds", "tokens", "tok_per_s", "peak_rss_mb",
                "trainable_params", "adapter_bytes_on_disk"):
        assert isinstance(m[key], (int, float)) and m[key] > 0, key
    assert m["tokens"] == 4 * 8 * 32
    on_disk = sum((out / f).stat().st_size for f in ("adapter_model.safetensors", "adapter_config.json"))
    assert m["adapter_bytes_on_disk"] == on_disk
    run = manifest["config"]["run"]
    assert run["domain"] == "alpha" and run["lr"] == 1e-2 and run["out"] == str(out)
    assert not list(tmp_path.glob(".*"))  # nothing half-written left beside it


def test_general_replay_is_mixed_in_at_its_share(world, tmp_path):
    from zephyra.training.adapter import prepare_domain_data

    recipe = _recipe(world, "unused", tmp_path / "a", general_fraction=0.25, qa_fraction=0.25)
    data = prepare_domain_data(recipe, world["tokenizer"])
    assert set(data.hashes) >= {"alpha/raw/train", "alpha/qa/train", "phase2/train"}
    assert list(data.sampler.p) == [0.5, 0.25, 0.25]
    data.sampler.next_batch(40)
    assert data.sampler.counts == [20, 10, 10]  # a quarter of the rows come from the general corpus


def test_a_finished_adapter_is_kept_unless_forced(world, zephyra_base, tmp_path):
    recipe = _recipe(world, zephyra_base, tmp_path / "a", max_steps=2)
    first = train_adapter(recipe, **QUIET)
    stamp = (tmp_path / "a" / "manifest.json").read_text()
    again = train_adapter(recipe, **QUIET)
    assert again["skipped"] and again["metrics"] == first["metrics"]
    assert (tmp_path / "a" / "manifest.json").read_text() == stamp
    assert not train_adapter(recipe, force=True, **QUIET)["skipped"]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(RecipeError, match="is not an adapter directory: refusing"):
        train_adapter(_recipe(world, zephyra_base, tmp_path / "other"), force=True, **QUIET)


def test_works_on_a_non_zephyra_model(world, llama_base, tmp_path):
    result = train_adapter(_recipe(world, llama_base, tmp_path / "a", domain="beta"), **QUIET)
    assert result["metrics"]["val_perplexity"] < result["metrics"]["base_val_perplexity"]
    config = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    assert config["layers_to_transform"] == [1]  # the last half of a 2-layer Llama


@pytest.mark.parametrize("method", ["lora", "dora", "ia3", "prefix", "qlora"])
def test_every_method_trains(world, zephyra_base, tmp_path, method):
    if method == "qlora":
        pytest.importorskip("bitsandbytes", reason="qlora needs bitsandbytes' CPU NF4 kernels")
    from peft import get_peft_model_state_dict

    from zephyra.adapters import attach_adapter
    from zephyra.loader import load_model

    # bf16 autocast here (the default): the precision the real runs use
    recipe = _recipe(world, zephyra_base, tmp_path / method, method=method, max_steps=6, precision="bf16",
                     eval_batches=2)
    result = train_adapter(recipe, return_model=True, **QUIET)
    assert json.loads((tmp_path / method / "manifest.json").read_text())["method"] == method
    assert all(torch.isfinite(torch.tensor(result["metrics"][k])) for k in ("val_perplexity", "train_loss_last"))
    # the adapter's weights moved from the very initialisation the run started from (same seed)
    torch.manual_seed(recipe.seed)
    start = get_peft_model_state_dict(attach_adapter(load_model(zephyra_base)[0], recipe.spec(), name="alpha"),
                                      adapter_name="alpha")
    trained = get_peft_model_state_dict(result["model"], adapter_name="alpha")
    assert start.keys() == trained.keys()
    assert all(not torch.equal(start[k], trained[k]) for k in trained), method
    plain = PeftModel.from_pretrained(load_model(zephyra_base)[0], result["out"]).eval()
    ids = torch.randint(3, len(world["tokenizer"]), (1, 8), generator=torch.Generator().manual_seed(2))
    assert torch.isfinite(_logits(plain, ids)).all()


# --------------------------------------------------------------------------------------------------------------
# recipes and the command line
# --------------------------------------------------------------------------------------------------------------

def test_the_shipped_recipe_mirrors_the_defaults():
    r = load_adapter_recipe(None, [], domain="python", base="runs/phase2/final")
    assert r == AdapterRecipe(base="runs/phase2/final", domain="python")
    assert load_adapter_recipe(DEFAULT_RECIPE, ["method=dora", "rank=8"], domain="x", base="b").spec().rank == 8
    assert AdapterRecipe(base="b", domain="python").out_dir() == Path("runs/adapters/python")
    assert AdapterRecipe(base="b", domain="python", method="ia3").out_dir() == Path("runs/adapters/ia3/python")


@pytest.mark.parametrize("override, message", [
    ("colour=red", "unknown key colour (known in AdapterRecipe:"),
    ("method=lorax", "method: expected one of 'lora', 'dora', 'qlora', 'ia3', 'prefix', got 'lorax'"),
    ("rank=0", "rank must be a positive integer"),
    ("batch_size=10", "batch_size (10) must be a multiple of micro_batch_size (16)"),
    ("qa_fraction=1.0", "qa_fraction must be in [0, 1)"),
    ("general_fraction=0.8", "qa_fraction 0.25 + general_fraction 0.8 + grounded_fraction 0.0 >= 1"),
    ("grounded_fraction=0.3", "grounded_fraction > 0 needs index_root"),
    ("retrieval={top: 3}", "retrieval: unknown key(s) top"),
    ("lr=-1", "optim.lr and optim.muon_lr must be positive"),
])
def test_bad_adapter_recipes_are_one_line_errors(override, message):
    with pytest.raises(RecipeError) as e:
        load_adapter_recipe(None, [override], domain="python", base="b")
    assert message in str(e.value) and "\n" not in str(e.value)


def _cli(*args):
    return CliRunner().invoke(app, [*args])


def test_cli_errors_are_one_line(world, zephyra_base, tmp_path):
    data = f"data_root={world['data']}"
    cases = [
        (["adapter", "--domain", "gamma", "--base", str(zephyra_base), data, f"out={tmp_path / 'x'}"],
         "unknown domain 'gamma'; built under"),
        (["adapter", "--domain", "alpha", "--base", str(zephyra_base), f"data_root={tmp_path / 'nodata'}",
          f"out={tmp_path / 'x'}"], "no such directory; build the data first"),
        (["adapter", "--domain", "alpha", "--method", "lorax", "--base", str(zephyra_base), data],
         "method: expected one of"),
        (["adapter", "--domain", "alpha", "--base", str(zephyra_base), data, "colour=red"],
         "unknown key colour (known in AdapterRecipe:"),
        (["adapter", "--domain", "alpha", "--base", str(tmp_path), data, f"out={tmp_path / 'x'}"],
         "not a model directory (no config.json)"),
        (["adapters", "--domains", "alpha,gamma", "--base", str(zephyra_base), data, f"out_root={tmp_path}"],
         "unknown domain 'gamma'"),
    ]
    for args, message in cases:
        result = _cli(*args)
        assert result.exit_code == 2, (args, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], (args, result.stderr)
    assert not (tmp_path / "x").exists()


def test_cli_trains_several_domains_and_prints_a_table(world, zephyra_base, tmp_path):
    args = ["adapters", "--domains", "all", "--base", str(zephyra_base), f"data_root={world['data']}",
            f"out_root={tmp_path}", f"cache_dir={tmp_path / 'cache'}", "seq_len=32", "batch_size=8",
            "micro_batch_size=8", "max_steps=3", "precision=fp32", "threads=1", "eval_batches=1", "rank=4"]
    result = _cli(*args)
    assert result.exit_code == 0, result.output
    assert {p.name for p in tmp_path.iterdir() if (p / "manifest.json").is_file()} == {"alpha", "beta"}
    assert "val ppl base -> adapter" in result.stdout and f"beta: {tmp_path / 'beta'}" in result.stdout
    again = _cli(*args)  # finished adapters are kept
    assert again.exit_code == 0 and "(kept)" in again.stdout


def test_an_adapter_can_start_from_another_and_refines_it(world, zephyra_base, tmp_path):
    """init_from: a shared layer (alpha) that a second adapter starts from: at step 0 it equals the shared one,
    and training on beta moves it from there; an adapter of another rank is refused in one line."""
    from safetensors.torch import load_file

    shared = train_adapter(_recipe(world, zephyra_base, tmp_path / "shared", max_steps=10), **QUIET)["out"]
    start = train_adapter(_recipe(world, zephyra_base, tmp_path / "same", domain="beta", init_from=shared,
                                  max_steps=1, lr=1e-12), **QUIET)["out"]
    a = load_file(str(Path(shared) / "adapter_model.safetensors"))
    b = load_file(str(Path(start) / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)  # it started there
    moved = train_adapter(_recipe(world, zephyra_base, tmp_path / "delta", domain="beta", init_from=shared,
                                  max_steps=10), **QUIET)
    c = load_file(str(Path(moved["out"]) / "adapter_model.safetensors"))
    assert any(not torch.allclose(a[k], c[k], atol=1e-4) for k in a)
    assert moved["metrics"]["val_perplexity"] < moved["metrics"]["base_val_perplexity"]
    with pytest.raises(RecipeError, match="init_from .* rank 4, not lora of rank 8"):
        train_adapter(_recipe(world, zephyra_base, tmp_path / "bad", domain="beta", init_from=shared, rank=8),
                      **QUIET)
