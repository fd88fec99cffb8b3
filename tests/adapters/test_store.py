"""Save/load with the base fingerprint, named adapters on one base, switching and merging."""

import json

import pytest
import torch
from adapter_helpers import logits, make_base
from peft import PeftModel

from zephyra.adapters import (
    AdapterConfigError, AdapterMismatchError, adapter_names, attach_adapter, base_fingerprint, load_adapter,
    merge_adapter, save_adapter, switch_adapter,
)
from zephyra.model import ZephyraForCausalLM, preset_config


def _trained(base, method="lora", name="default", seed=0):
    """An adapter with non-identity weights, as training would leave it."""
    torch.manual_seed(seed)
    return attach_adapter(base, method, name=name, identity_init=False)


def test_fingerprint_is_stable_and_tells_bases_apart(base, twin):
    fp = base_fingerprint(base)
    assert fp == base_fingerprint(twin)
    assert base_fingerprint(twin.to(torch.bfloat16)).digest == fp.digest  # dtype-robust
    assert base_fingerprint(make_base(seed=1)).weights_hash != fp.weights_hash
    assert base_fingerprint(make_base(seed=1)).arch_hash == fp.arch_hash
    wider = ZephyraForCausalLM(preset_config("tiny", vocab_size=64, hidden_size=64))
    assert "hidden_size was 32, is 64" in base_fingerprint(wider).difference(fp.to_dict())
    # with adapters attached, the fingerprint is still the base's (PEFT's wrappers are seen through)
    assert base_fingerprint(_trained(base)).digest == fp.digest


@pytest.mark.parametrize("method", ["lora", "dora", "ia3", "prefix"])
def test_saved_adapter_loads_with_plain_peft(base, twin, ids, tmp_path, method):
    model = _trained(base, method, name="python")
    want = logits(model, ids)
    out = save_adapter(model, tmp_path / "python", domain="python", data_hashes={"train": "ab12"},
                       metrics={"val_loss": 1.5}, config={"lr": 1e-3})
    assert {"adapter_config.json", "adapter_model.safetensors", "manifest.json"} <= {p.name for p in out.iterdir()}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "adapter" and manifest["name"] == "python" and manifest["method"] == method
    assert manifest["base"]["fingerprint"] == base_fingerprint(twin).digest
    assert manifest["inputs"] == {"train": "ab12"} and manifest["metrics"] == {"val_loss": 1.5}
    assert manifest["config"]["adapter"]["method"] == method and manifest["config"]["run"] == {"lr": 1e-3}
    if method in ("lora", "dora"):
        assert manifest["config"]["peft"]["layers_to_transform"] == [1]
    plain = PeftModel.from_pretrained(twin, str(out))
    assert torch.equal(logits(plain, ids), want)
    assert not list(tmp_path.glob(".*"))  # no temporary left behind


def test_adapter_for_another_base_is_refused(base, tmp_path):
    save_adapter(_trained(base), tmp_path / "a", domain="chemistry")
    other = make_base(seed=1)  # same shapes, different weights
    with pytest.raises(AdapterMismatchError) as err:
        load_adapter(other, tmp_path / "a")
    msg = str(err.value)
    assert "\n" not in msg and "same architecture, different weights" in msg and "refusing" in msg
    with pytest.raises(FileNotFoundError, match="no manifest.json"):
        load_adapter(other, tmp_path)


@pytest.mark.parametrize("method", ["lora", "ia3"])
def test_switching_a_b_a_restores_a_exactly(twin, ids, tmp_path, method):
    for seed, name in ((1, "a"), (2, "b")):
        save_adapter(_trained(make_base(), method, name=name, seed=seed), tmp_path / name)
    model = load_adapter(twin, tmp_path / "a")
    model = load_adapter(model, tmp_path / "b")
    assert adapter_names(model) == ["a", "b"] and model.active_adapter == "b"
    b = logits(model, ids)
    a = logits(switch_adapter(model, "a"), ids)
    assert (a - b).abs().max() > 1e-3
    assert torch.equal(logits(switch_adapter(model, "b"), ids), b)
    assert torch.equal(logits(switch_adapter(model, "a"), ids), a)
    with model.disable_adapter():
        assert torch.equal(logits(model, ids), logits(make_base(), ids))
    with pytest.raises(AdapterMismatchError, match="no adapter named 'c'; loaded: a, b"):
        switch_adapter(model, "c")
    with pytest.raises(AdapterMismatchError, match="already loaded"):
        load_adapter(model, tmp_path / "a")


def test_mixing_methods_on_one_model_is_refused(base, tmp_path):
    save_adapter(_trained(make_base(), "ia3", name="x"), tmp_path / "x")
    with pytest.raises(AdapterMismatchError, match="cannot add a IA3 adapter to a model holding LORA"):
        load_adapter(_trained(base), tmp_path / "x")


@pytest.mark.parametrize("method", ["lora", "dora", "ia3"])
def test_merged_equals_unmerged(base, ids, method):
    model = _trained(base, method, name="m")
    want = logits(model, ids)
    merged = merge_adapter(model)
    assert type(merged) is ZephyraForCausalLM
    torch.testing.assert_close(logits(merged, ids), want, atol=1e-5, rtol=1e-5)
    assert torch.equal(logits(model, ids), want)  # the PeftModel was copied, not merged in place


def test_prefix_cannot_be_merged(base):
    with pytest.raises(AdapterConfigError, match="cannot be merged"):
        merge_adapter(_trained(base, "prefix"))


def test_the_fingerprint_is_the_architecture_and_weights_only(tmp_path):
    """Router labels and domain lists are no part of a base: a config attribute outside the architecture (an old
    checkpoint's router_labels, a run-time key a new transformers adds) changes neither the fingerprint nor which
    adapters load; a changed weight does."""
    import copy

    import torch

    from zephyra.adapters import AdapterMismatchError, attach_adapter, load_adapter, save_adapter
    from zephyra.model import ZephyraForCausalLM, preset_config

    base = ZephyraForCausalLM(preset_config("tiny", vocab_size=64)).eval()
    fp = base_fingerprint(base)
    assert not any("router" in k for k in fp.arch)
    save_adapter(attach_adapter(copy.deepcopy(base), "lora", name="python"), tmp_path / "ad", domain="python")
    base.config.router_labels = ["base", "python", "poetry"]
    base.config.some_runtime_key = True
    assert base_fingerprint(base) == fp
    assert "python" in load_adapter(copy.deepcopy(base), tmp_path / "ad").peft_config
    with torch.no_grad():
        base.model.layers[0].mlp.down_proj.weight.add_(1.0)
    with pytest.raises(AdapterMismatchError, match="same architecture, different weights"):
        load_adapter(base, tmp_path / "ad")
