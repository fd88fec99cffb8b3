"""The Zephyra architecture: Hugging Face citizenship, exactness of the cache, the trunk/branch split."""

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, LlamaForCausalLM

import zephyra.model  # noqa: F401  (registers the Auto classes)
from zephyra.model import ZephyraConfig, ZephyraConfigError, ZephyraForCausalLM, preset_config
from zephyra.model.baselines import llama_config_like
from zephyra.model.loss import fused_linear_cross_entropy

V = 97


def tiny(**kw) -> ZephyraForCausalLM:
    torch.manual_seed(0)
    return ZephyraForCausalLM(preset_config("tiny", vocab_size=V, **kw)).eval()


def ids(b=2, t=12, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, V, (b, t), generator=g)


def test_save_load_round_trip_gives_identical_logits(tmp_path):
    model, x = tiny(), ids()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    loaded = ZephyraForCausalLM.from_pretrained(tmp_path).eval()
    assert torch.equal(model(x).logits, loaded(x).logits)
    assert loaded.lm_head.weight.data_ptr() == loaded.model.embed_tokens.weight.data_ptr()  # still tied


def test_auto_classes_load_a_saved_model(tmp_path):
    model, x = tiny(), ids()
    model.save_pretrained(tmp_path)
    assert AutoConfig.from_pretrained(tmp_path).model_type == "zephyra"
    auto = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert isinstance(auto, ZephyraForCausalLM)
    assert torch.equal(auto(x).logits, model(x).logits)


def test_greedy_generation_with_cache_equals_without():
    model, x = tiny(), ids(t=6)
    with_cache = model.generate(x, max_new_tokens=20, do_sample=False, use_cache=True)
    without = model.generate(x, max_new_tokens=20, do_sample=False, use_cache=False)
    assert with_cache.shape == (2, 26)
    assert torch.equal(with_cache, without)


def test_incremental_decoding_matches_full_forward():
    model, x = tiny(), ids(t=10)
    full = model(x, use_cache=False).logits
    out = model(x[:, :7], use_cache=True)
    past = out.past_key_values
    steps = [out.logits]
    for t in range(7, 10):
        o = model(x[:, t:t + 1], past_key_values=past, use_cache=True)
        past = o.past_key_values
        steps.append(o.logits)
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)


def test_left_padded_batch_generates_what_each_prompt_generates_alone():
    model = tiny()
    a, b = ids(1, 8, seed=2), ids(1, 5, seed=3)
    pad = torch.zeros(1, 3, dtype=torch.long)
    batch = torch.cat([a, torch.cat([pad, b], 1)])
    mask = torch.cat([torch.ones(1, 8), torch.cat([torch.zeros(1, 3), torch.ones(1, 5)], 1)]).long()
    together = model.generate(batch, attention_mask=mask, max_new_tokens=10, do_sample=False, pad_token_id=0)
    alone_a = model.generate(a, max_new_tokens=10, do_sample=False)
    alone_b = model.generate(b, max_new_tokens=10, do_sample=False)
    assert torch.equal(together[0, 8:], alone_a[0, 8:])
    assert torch.equal(together[1, 8:], alone_b[0, 5:])


def test_same_weights_give_hf_llamas_logits():
    """Zephyra without QK-norm is Llama with fused projections: copying Llama's weights must give its logits."""
    torch.manual_seed(0)
    cfg = preset_config("tiny", vocab_size=V, qk_norm=False)
    llama = LlamaForCausalLM(llama_config_like(cfg)).eval()
    z = ZephyraForCausalLM(cfg).eval()
    sd = llama.state_dict()
    new = {"model.embed_tokens.weight": sd["model.embed_tokens.weight"], "model.norm.weight": sd["model.norm.weight"]}
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        new[p + "self_attn.qkv_proj.weight"] = torch.cat([sd[p + f"self_attn.{n}_proj.weight"] for n in "qkv"])
        new[p + "self_attn.o_proj.weight"] = sd[p + "self_attn.o_proj.weight"]
        new[p + "mlp.gate_up_proj.weight"] = torch.cat([sd[p + "mlp.gate_proj.weight"], sd[p + "mlp.up_proj.weight"]])
        new[p + "mlp.down_proj.weight"] = sd[p + "mlp.down_proj.weight"]
        for n in ("input_layernorm", "post_attention_layernorm"):
            new[p + n + ".weight"] = sd[p + n + ".weight"]
    missing, unexpected = z.load_state_dict(new, strict=False)
    assert not unexpected and missing == ["lm_head.weight"]  # tied to the embedding
    x = ids()
    torch.testing.assert_close(z(x).logits, llama(x).logits, atol=1e-5, rtol=1e-5)


def test_fused_loss_equals_cross_entropy_in_value_and_gradient():
    torch.manual_seed(0)
    h = torch.randn(37, 16, requires_grad=True)
    w = torch.randn(V, 16, requires_grad=True)
    y = torch.randint(0, V, (37,))
    y[[3, 9]] = -100
    loss = fused_linear_cross_entropy(h, w, y, chunk=8)
    loss.backward()
    gh, gw = h.grad.clone(), w.grad.clone()
    h.grad = w.grad = None
    ref = torch.nn.functional.cross_entropy(h @ w.T, y, ignore_index=-100)
    ref.backward()
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close(gh, h.grad)
    torch.testing.assert_close(gw, w.grad)


def test_training_loss_path_equals_evaluation_loss_path():
    model, x = tiny(), ids()
    eval_loss = model(x, labels=x).loss
    model.train()
    out = model(x, labels=x)
    assert out.logits is None  # the fused path never builds the (B, T, V) logits
    torch.testing.assert_close(out.loss, eval_loss)


def test_trunk_states_come_from_the_trunk_alone_and_equal_the_full_pass():
    model, x = tiny(), ids(b=3)
    states = model.trunk_states(x)
    assert states.shape == (3, x.shape[1], model.config.hidden_size)
    torch.testing.assert_close(model(x, return_trunk_states=True).trunk_states, states)
    assert model(x).trunk_states is None  # only when asked for
    # the trunk only: changing a branch layer leaves the states unchanged, changing the trunk does not
    with torch.no_grad():
        model.model.layers[-1].mlp.down_proj.weight.add_(1.0)
    torch.testing.assert_close(model.trunk_states(x), states)
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight.add_(1.0)
    assert not torch.allclose(model.trunk_states(x), states)


def test_trunk_states_of_a_left_padded_row_equal_the_unpadded_row():
    model = tiny()
    x = ids(1, 6)
    padded = torch.cat([torch.zeros(1, 2, dtype=torch.long), x], 1)
    mask = torch.cat([torch.zeros(1, 2), torch.ones(1, 6)], 1).long()
    torch.testing.assert_close(model.trunk_states(padded, mask)[:, 2:], model.trunk_states(x), atol=1e-5, rtol=1e-5)


def test_the_base_knows_no_router_labels():
    cfg = preset_config("mini", vocab_size=1000)
    assert not any("router" in k for k in cfg.to_dict()) and not any("router" in n for n, _ in
                                                                      ZephyraForCausalLM(cfg).named_parameters())


def test_lora_on_the_branch_leaves_the_trunk_untouched():
    from peft import LoraConfig, get_peft_model

    model = tiny()
    cfg = model.config
    trunk_before = {n: p.detach().clone() for n, p in model.named_parameters()}
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
                      layers_to_transform=cfg.branch_layers, layers_pattern="layers", init_lora_weights=False)
    peft_model = get_peft_model(model, lora)
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all(any(f"layers.{i}." in n for i in cfg.branch_layers) for n in trainable)
    assert all("lora_" in n for n in trainable)
    opt = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    peft_model.train()
    x = ids()
    for _ in range(3):
        peft_model(input_ids=x, labels=x).loss.backward()
        opt.step()
        opt.zero_grad()
    after = dict(peft_model.base_model.model.named_parameters())
    for name, before in trunk_before.items():
        key = name if name in after else name.replace(".weight", ".base_layer.weight")
        assert torch.equal(after[key], before), name


@pytest.mark.parametrize("kw, fragment", [
    (dict(hidden_size=30, num_attention_heads=4), "does not divide hidden_size"),
    (dict(num_hidden_layers=2, num_trunk_layers=3), "trunk cannot be deeper"),
    (dict(num_attention_heads=4, num_key_value_heads=3), "does not divide num_attention_heads"),
    (dict(hidden_act="gelu"), "hidden_act must be"),
])
def test_bad_configs_fail_with_one_clear_line(kw, fragment):
    with pytest.raises(ZephyraConfigError) as err:
        ZephyraConfig(**kw)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_config_keeps_standard_names_and_split():
    cfg = preset_config("mini", vocab_size=1000)
    for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                 "intermediate_size", "max_position_embeddings", "rms_norm_eps", "rope_theta", "tie_word_embeddings"):
        assert hasattr(cfg, name)
    assert cfg.trunk_layers + cfg.branch_layers == list(range(cfg.num_hidden_layers))
    assert cfg.to_dict()["num_trunk_layers"] == cfg.num_trunk_layers


def test_a_cache_the_caller_passes_is_used_even_with_use_cache_false():
    """PEFT's prefix tuning hands its prefix in as a cache; dropping it would silently ignore the adapter."""
    from transformers import DynamicCache

    model, x = tiny(), ids(t=8)
    prefix = model(x[:, :3], use_cache=True).past_key_values
    with_prefix = model(x[:, 3:], past_key_values=prefix, use_cache=False).logits
    torch.testing.assert_close(with_prefix, model(x).logits[:, 3:], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(with_prefix, model(x[:, 3:], past_key_values=DynamicCache(config=model.config)).logits)
