"""QLoRA on CPU: an NF4 (bitsandbytes) base under LoRA trains, keeps its full-precision fingerprint, and its
adapter loads onto the unquantised base."""

import pytest
import torch
from adapter_helpers import logits, make_base
from peft import get_peft_model_state_dict
from torch import nn

from zephyra.adapters import attach_adapter, base_fingerprint, load_adapter, quantize_base_, save_adapter

bnb = pytest.importorskip("bitsandbytes")


def test_quantize_replaces_only_the_decoder_linears(base, twin, ids):
    fp = base_fingerprint(base)
    quantize_base_(base)
    kinds = {name: type(m) for name, m in base.named_modules() if isinstance(m, nn.Linear)}
    assert {n for n, k in kinds.items() if k is bnb.nn.Linear4bit} == {
        f"model.layers.{i}.{m}" for i in (0, 1)
        for m in ("self_attn.qkv_proj", "self_attn.o_proj", "mlp.gate_up_proj", "mlp.down_proj")}
    assert kinds["lm_head"] is nn.Linear
    assert base.model.layers[1].mlp.down_proj.weight.dtype == torch.uint8  # packed 4-bit
    assert base_fingerprint(base) == fp  # the full-precision base's, recorded before packing
    got, want = logits(base, ids), logits(twin, ids)
    assert 0 < (got - want).abs().max() < 0.1 * want.abs().max()  # NF4 is close, not exact


def test_qlora_trains_and_its_adapter_loads_on_the_full_precision_base(base, twin, ids, tmp_path):
    model = attach_adapter(base, "qlora", name="q", rank=4)  # quantises `base` in place, then wraps it
    assert isinstance(model.base_model.model.model.layers[1].mlp.down_proj.base_layer, bnb.nn.Linear4bit)
    with model.disable_adapter():
        quantized = logits(model, ids)
    assert torch.equal(logits(model, ids), quantized)  # identity init on the NF4 base
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    losses = []
    for _ in range(8):  # memorise one batch: the loss must fall if gradients reach the LoRA weights
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.05
    model.eval()
    out = save_adapter(model, tmp_path / "q", domain="python")
    full = load_adapter(twin, out)  # accepted: the fingerprint was taken from the unquantised weights
    assert full.active_adapter == "q"
    trained = get_peft_model_state_dict(model, adapter_name="q")
    loaded = get_peft_model_state_dict(full, adapter_name="q")
    assert trained.keys() == loaded.keys() and all(torch.equal(trained[k], loaded[k]) for k in trained)
    assert (logits(full, ids) - logits(make_base(), ids)).abs().max() > 1e-3
