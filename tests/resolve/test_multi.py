"""The multi-adapter engine against PEFT: each row of a mixed batch equals its prompt generated alone."""

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from resolve_helpers import left_pad, make_base, peft_alone, save_adapters

from zephyra.adapters import attach_adapter, base_fingerprint, quantize_base_, save_adapter
from zephyra.resolve.lora import AdapterBank, AdapterBankError, RowLoRALinear
from zephyra.resolve.multi import MultiLoRAEngine

N = 6  # new tokens


def _engine(model, dirs, kernel="masked"):
    return MultiLoRAEngine(model, AdapterBank.from_dirs(model, dirs), kernel=kernel)


@pytest.mark.parametrize("kernel", ["masked", "bmm", "grouped"])
def test_mixed_batch_rows_equal_peft_alone(fresh_base, adapter_dirs, peft_ref, prompts, kernel):
    rows = ["python", "chemistry", None, "geography", "python"]
    ids, mask = left_pad(prompts)
    out = _engine(fresh_base, adapter_dirs, kernel).generate(ids, mask, adapters=rows, max_new_tokens=N,
                                                             return_logits=True)
    assert out.tokens.shape == (5, N) and out.mixes[2] == {} and out.mixes[0] == {"python": 1.0}
    for i, (prompt, adapter) in enumerate(zip(prompts, rows)):
        want_tokens, want_logits = peft_alone(peft_ref, adapter, prompt, N)
        assert out.tokens[i].tolist() == want_tokens.tolist(), f"row {i} ({adapter})"
        torch.testing.assert_close(out.logits[i], want_logits, atol=1e-4, rtol=1e-4)
    # the adapters really act: every adapted row differs from the base
    base_tokens, _ = peft_alone(peft_ref, None, prompts[0], N)
    assert out.tokens[0].tolist() != base_tokens.tolist()


def test_base_rows_equal_the_plain_base(base, fresh_base, adapter_dirs, prompts):
    ids, mask = left_pad(prompts)
    engine = _engine(fresh_base, adapter_dirs)
    got = engine.generate(ids, mask, adapters=[None] * len(prompts), max_new_tokens=N, return_logits=True)
    for i, prompt in enumerate(prompts):
        x = torch.tensor([prompt])
        with torch.no_grad():
            want = base.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=N, do_sample=False,
                                 eos_token_id=None, pad_token_id=0, output_logits=True, return_dict_in_generate=True)
        assert got.tokens[i].tolist() == want.sequences[0, x.shape[1]:].tolist()
        torch.testing.assert_close(got.logits[i], torch.cat(want.logits), atol=1e-4, rtol=1e-4)


def test_fused_weights_one_zero_equal_top1_and_mixes_are_exact(fresh_base, adapter_dirs, peft_ref, prompts):
    ids, mask = left_pad(prompts[:2])
    engine = _engine(fresh_base, adapter_dirs)
    top1 = engine.generate(ids, mask, adapters=["python", "chemistry"], max_new_tokens=N, return_logits=True)
    fused = engine.generate(ids, mask, adapters=[{"python": 1.0, "chemistry": 0.0}, {"chemistry": 1.0, "python": 0.0}],
                            max_new_tokens=N, return_logits=True)
    assert torch.equal(fused.tokens, top1.tokens)
    torch.testing.assert_close(fused.logits, top1.logits)
    # a real mix equals PEFT's exact weighted sum of the two updates ("cat" merge: ranks side by side)
    peft_ref.add_weighted_adapter(["python", "chemistry"], [0.7, 0.3], "mix73", combination_type="cat")
    half = engine.generate(ids[:1], mask[:1], adapters=[{"python": 0.7, "chemistry": 0.3}], max_new_tokens=N,
                           return_logits=True)
    want_tokens, want_logits = peft_alone(peft_ref, "mix73", prompts[0], N)
    assert half.tokens[0].tolist() == want_tokens.tolist()
    torch.testing.assert_close(half.logits[0], want_logits, atol=1e-4, rtol=1e-4)
    peft_ref.delete_adapter("mix73")


def _count_calls(modules) -> list[int]:
    counts = [0] * len(modules)
    for i, m in enumerate(modules):
        m.register_forward_hook(lambda *_, i=i: counts.__setitem__(i, counts[i] + 1))
    return counts


def test_trunk_runs_once_per_step_for_a_mixed_batch(fresh_base, adapter_dirs, prompts):
    layers = fresh_base.model.layers
    trunk = _count_calls([layers[i] for i in fresh_base.config.trunk_layers])
    branch = _count_calls([layers[i] for i in fresh_base.config.branch_layers])
    ids, mask = left_pad(prompts)
    _engine(fresh_base, adapter_dirs).generate(ids, mask, adapters=["python", "chemistry", "geography", None,
                                                                     {"python": .5, "geography": .5}],
                                               max_new_tokens=N)
    assert trunk == [N] and branch == [N]  # one prefill + N - 1 steps, whatever the number of adapters


def test_route_in_the_prefill_costs_no_second_pass(fresh_base, adapter_dirs, prompts):
    ids, mask = left_pad(prompts[:3])
    engine = _engine(fresh_base, adapter_dirs)
    want = engine.generate(ids, mask, adapters=["geography", None, "python"], max_new_tokens=N, return_logits=True)
    seen = []

    def route(trunk_states, attention_mask):
        seen.append(trunk_states.shape)
        return ["geography", "base", "python"]

    trunk = _count_calls([fresh_base.model.layers[0]])
    got = engine.generate(ids, mask, route=route, max_new_tokens=N, return_logits=True)
    assert seen == [(3, ids.shape[1], fresh_base.config.hidden_size)]  # called once, on the prompt's trunk states
    assert trunk == [N]
    assert got.mixes == [{"geography": 1.0}, {}, {"python": 1.0}]
    assert torch.equal(got.tokens, want.tokens)
    torch.testing.assert_close(got.logits, want.logits)


def test_layers_also_serve_hf_generate(fresh_base, adapter_dirs, prompts):
    ids, mask = left_pad(prompts[:3])
    engine = _engine(fresh_base, adapter_dirs)
    rows = ["chemistry", "python", None]
    own = engine.generate(ids, mask, adapters=rows, max_new_tokens=N)
    with engine.use(rows), torch.no_grad():
        hf = fresh_base.generate(ids, attention_mask=mask, max_new_tokens=N, do_sample=False, eos_token_id=None,
                                 pad_token_id=0)
    assert torch.equal(hf[:, ids.shape[1]:], own.tokens)


def test_eos_ends_a_row_and_pads_it(fresh_base, adapter_dirs, prompts):
    ids, mask = left_pad(prompts[:2])
    engine = _engine(fresh_base, adapter_dirs)
    free = engine.generate(ids, mask, adapters=["python", None], max_new_tokens=N)
    eos = int(free.tokens[0, 1])
    assert eos not in free.tokens[1].tolist(), "pick prompts whose second row never makes this token"
    out = engine.generate(ids, mask, adapters=["python", None], max_new_tokens=N, eos_token_id=eos, pad_token_id=0)
    first = free.tokens[0].tolist().index(eos) + 1
    assert out.lengths == [first, N]
    assert out.tokens[0, :first].tolist() == free.tokens[0, :first].tolist()
    assert set(out.tokens[0, first:].tolist()) <= {0}


def test_sampling_is_reproducible(fresh_base, adapter_dirs, prompts):
    ids, mask = left_pad(prompts[:3])
    engine = _engine(fresh_base, adapter_dirs)
    runs = [engine.generate(ids, mask, adapters=["python", None, "chemistry"], max_new_tokens=N, do_sample=True,
                            temperature=1.0, top_k=10, generator=torch.Generator().manual_seed(7)).tokens
            for _ in range(2)]
    assert torch.equal(runs[0], runs[1])


def test_engine_keeps_the_base_intact(base, fresh_base, adapter_dirs):
    keys = list(fresh_base.state_dict())
    engine = _engine(fresh_base, adapter_dirs)
    assert isinstance(fresh_base.model.layers[1].mlp.down_proj, RowLoRALinear)
    assert list(fresh_base.state_dict()) == keys
    assert base_fingerprint(fresh_base).digest == base_fingerprint(base).digest
    restored = engine.remove()
    assert type(restored.model.layers[1].mlp.down_proj) is torch.nn.Linear


def test_bank_from_peft_equals_bank_from_dirs(fresh_base, adapter_dirs, peft_ref):
    from_dirs = AdapterBank.from_dirs(fresh_base, adapter_dirs)
    from_peft = AdapterBank.from_peft(peft_ref, list(adapter_dirs))
    assert from_dirs.module_paths() == from_peft.module_paths() and from_dirs.names == from_peft.names
    for name in from_dirs.names:
        for path, u in from_dirs.adapters[name].items():
            torch.testing.assert_close(u.A, from_peft.adapters[name][path].A)
            torch.testing.assert_close(u.B, from_peft.adapters[name][path].B)


def test_refuses_trunk_dora_quantised_and_foreign_adapters(base, adapter_dirs, tmp_path):
    trunk = attach_adapter(make_base(0, num_trunk_layers=0), "lora", identity_init=False)  # every layer is branch
    bank = AdapterBank.from_peft(trunk)
    with pytest.raises(AdapterBankError, match="outside the branch"):
        MultiLoRAEngine(make_base(0), bank)
    dora = save_adapter(attach_adapter(make_base(0), "dora", identity_init=False), tmp_path / "dora")
    with pytest.raises(AdapterBankError, match="use_dora"):
        AdapterBank.from_dirs(base, {"dora": dora})
    other = save_adapters(make_base(seed=1), tmp_path, names=("python",))
    with pytest.raises(ValueError, match="refusing"):
        AdapterBank.from_dirs(base, other)
    with pytest.raises(AdapterBankError, match="reserved"):
        AdapterBank({"base": {}})
    with pytest.raises(AdapterBankError, match="full-precision base"):  # a 4-bit base's weights are packed
        MultiLoRAEngine(quantize_base_(make_base(0)), AdapterBank.from_dirs(base, adapter_dirs))


def test_plain_peft_directory_loads_with_rslora_scaling(fresh_base, tmp_path, prompts):
    """A directory saved by plain PEFT (no manifest; rsLoRA scaling, an alpha pattern) reads as PEFT applies it."""
    torch.manual_seed(5)
    cfg = LoraConfig(r=4, lora_alpha=4, use_rslora=True, alpha_pattern={"o_proj": 16}, init_lora_weights=False,
                     target_modules=["qkv_proj", "o_proj", "down_proj"], layers_to_transform=[1],
                     layers_pattern="layers")
    get_peft_model(make_base(0), cfg).save_pretrained(tmp_path / "plain")
    assert not (tmp_path / "plain" / "manifest.json").exists()
    plain = PeftModel.from_pretrained(make_base(0), tmp_path / "plain", adapter_name="rs").eval()
    engine = MultiLoRAEngine(fresh_base, AdapterBank.from_dirs(fresh_base, {"rs": tmp_path / "plain"}))
    ids, mask = left_pad(prompts[:1])
    got = engine.generate(ids, mask, adapters=["rs"], max_new_tokens=N, return_logits=True)
    want_tokens, want_logits = peft_alone(plain, "rs", prompts[0], N)
    assert got.tokens[0].tolist() == want_tokens.tolist()
    torch.testing.assert_close(got.logits[0], want_logits, atol=1e-4, rtol=1e-4)
