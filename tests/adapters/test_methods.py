"""Method presets: every method builds on a tiny Zephyra, trains only itself, stays in the branch, generates;
identity init is the base, non-identity init is not; other HF causal LMs get their last half adapted."""

import re

import pytest
import torch
from peft import get_peft_model
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from zephyra.adapters import AdapterConfigError, AdapterSpec, attach_adapter, peft_config

from adapter_helpers import VOCAB, logits

WEIGHT_METHODS = ["lora", "dora", "ia3"]  # methods that add weights to layers (prefix adds inputs)
ADAPTER_PARAM = re.compile(r"(lora_|ia3_|prompt_encoder)")


def _layer_of(name: str) -> int | None:
    m = re.search(r"\.layers\.(\d+)\.", name)
    return int(m.group(1)) if m else None


@pytest.mark.parametrize("method", WEIGHT_METHODS)
def test_identity_init_gives_the_base_logits(base, twin, ids, method):
    model = attach_adapter(base, method)
    got, want = logits(model, ids), logits(twin, ids)
    if method == "dora":  # DoRA rescales by |W| / |W| at init: equal up to rounding
        torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    else:  # adding B @ A = 0, or scaling by 1, is exact
        assert torch.equal(got, want)


@pytest.mark.parametrize("method", [*WEIGHT_METHODS, "prefix"])
def test_non_identity_adapter_changes_the_logits(base, twin, ids, method):
    model = attach_adapter(base, method, identity_init=False)
    assert (logits(model, ids) - logits(twin, ids)).abs().max() > 1e-3


@pytest.mark.parametrize("method", [*WEIGHT_METHODS, "qlora", "prefix"])
def test_every_method_trains_only_itself_and_generates(base, ids, method):
    model = attach_adapter(base, method, identity_init=False)
    model.train()
    model(input_ids=ids, labels=ids).loss.backward()
    adapter = {n for n, p in model.named_parameters() if ADAPTER_PARAM.search(n)}
    assert adapter, "no adapter parameters"
    for n, p in model.named_parameters():
        if n in adapter:
            assert p.requires_grad and p.grad is not None and p.grad.abs().sum() > 0, n
        else:
            assert not p.requires_grad and p.grad is None, n
    model.eval()
    out = model.generate(input_ids=ids[:1, :4], attention_mask=torch.ones(1, 4, dtype=torch.long),
                         max_new_tokens=5, min_new_tokens=5, do_sample=False, pad_token_id=0)
    greedy = ids[:1, :4]  # the same greedy decode without a KV cache (and, like min_new_tokens, without EOS)
    for _ in range(5):
        step = logits(model, greedy)[:, -1]
        step[:, base.config.eos_token_id] = -float("inf")
        greedy = torch.cat([greedy, step.argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out, greedy)


@pytest.mark.parametrize("method", [*WEIGHT_METHODS, "qlora"])
def test_adapters_live_only_in_branch_layers(base, method):
    model = attach_adapter(base, method)
    trunk, branch = base.config.trunk_layers, base.config.branch_layers
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and {_layer_of(n) for n in trainable} == set(branch)
    for name, module in model.named_modules():
        if _layer_of(name + ".") in trunk:
            assert not any(ADAPTER_PARAM.search(n) for n, _ in module.named_parameters(recurse=False)), name
            assert not hasattr(module, "lora_A") and not hasattr(module, "ia3_l"), name
    # every branch linear the method targets carries an adapter
    kinds = {"ia3": {"qkv_proj", "down_proj"}}.get(method, {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"})
    adapted = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if hasattr(m, "lora_A") or hasattr(m, "ia3_l")}
    assert adapted == kinds


def test_prefix_cannot_be_limited_to_the_branch(base, ids):
    """PEFT's prefix encoder feeds every layer, the trunk included: the trunk's states (what the router
    reads) change, and asking for branch layers only is refused."""
    with pytest.raises(AdapterConfigError, match="prefix tuning cannot be limited"):
        peft_config("prefix", base.config, layers=[1])
    before = base(input_ids=ids, output_hidden_states=True).hidden_states
    model = attach_adapter(base, "prefix", num_virtual_tokens=4)
    cfg = model.peft_config["default"]
    assert cfg.num_layers == base.config.num_hidden_layers  # all layers, not the branch
    kv = base.config.num_key_value_heads * base.config.head_dim
    assert model.prompt_encoder["default"].embedding.weight.shape == (4, cfg.num_layers * 2 * kv)
    with torch.no_grad():
        after = model(input_ids=ids, output_hidden_states=True).hidden_states
    trunk_out = base.config.num_trunk_layers  # hidden_states[0] is the embedding output
    assert torch.equal(after[0], before[0])
    assert (after[trunk_out] - before[trunk_out]).abs().max() > 1e-4


def test_spec_errors_are_one_line(base):
    with pytest.raises(AdapterConfigError, match="unknown adapter method 'lorax'"):
        peft_config("lorax", base.config)
    with pytest.raises(AdapterConfigError, match=r"layers \[0\] are not branch layers \[1\]"):
        peft_config("lora", base.config, layers=[0, 1])
    with pytest.raises(AdapterConfigError, match="unknown adapter option"):
        AdapterSpec.from_dict({"method": "lora", "rnak": 4})
    with pytest.raises(AdapterConfigError, match="rank must be a positive integer"):
        peft_config("lora", base.config, rank=0)


def _llama():
    return LlamaForCausalLM(LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64))


def _gpt2():
    return GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=4, n_head=4, n_positions=64))


@pytest.mark.parametrize("build", [_llama, _gpt2], ids=["llama", "gpt2"])
@pytest.mark.parametrize("method", ["lora", "ia3"])
def test_other_hf_models_get_their_last_half_adapted(build, method, ids):
    model = get_peft_model(build(), peft_config(method, build().config, identity_init=False))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    layers = {int(re.search(r"\.(?:layers|h)\.(\d+)\.", n).group(1)) for n in trainable}
    assert layers == {2, 3}
    model(input_ids=ids, labels=ids).loss.backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad)
