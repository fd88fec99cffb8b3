"""The inference-precision benchmark (bench/precision.py) on a saved tiny base with held-out text: every variant
decodes, int8 replaces only the decoder's linears, and the quality columns are measured against fp32."""

import importlib.util
from pathlib import Path

import pytest
import torch

from zephyra.bench import precision

_spec = importlib.util.spec_from_file_location("training_fixtures", Path(__file__).parents[1] / "training" / "conftest.py")
fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixtures)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    from zephyra.model import ZephyraForCausalLM, preset_config
    from zephyra.tokenizer import train_tokenizer

    root = tmp_path_factory.mktemp("precision")
    fixtures.make_text(root / "data" / "phase2")
    from datasets import load_from_disk

    tok = train_tokenizer(load_from_disk(str(root / "data" / "phase2"))["train"]["text"], root / "tok", vocab_size=300)
    torch.manual_seed(0)
    model = ZephyraForCausalLM(preset_config("tiny", vocab_size=len(tok), bos_token_id=tok.bos_token_id,
                                             eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id))
    model.save_pretrained(root / "base")
    tok.save_pretrained(root / "base")
    return root


def test_int8_quantizes_the_decoder_linears_only(saved):
    from zephyra.loader import load_model

    model, _ = load_model(saved / "base")
    v = precision.variants(model)
    from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear

    quantized = [n for n, m in v["int8"].named_modules() if isinstance(m, DynamicInt8Linear)]
    linears = [n for n, m in v["fp32"].named_modules() if isinstance(m, torch.nn.Linear) and ".layers." in f".{n}"]
    assert quantized and sorted(quantized) == sorted(linears)
    assert isinstance(v["int8"].lm_head, torch.nn.Linear)  # the tied output matrix stays fp32
    assert next(v["bf16"].parameters()).dtype == torch.bfloat16 and next(v["fp32"].parameters()).dtype == torch.float32


def test_every_variant_decodes_and_is_scored_against_fp32(saved):
    res = precision.run(saved / "base", saved / "data", batches=[1, 2], prompt_len=6, new_tokens=3, rounds=1,
                        threads=1, max_tokens=256, seq=32)
    rows = {(r["variant"], r["batch"]): r for r in res["rows"]}
    assert set(rows) == {(v, b) for v in ("fp32", "bf16", "int8") for b in (1, 2)}
    assert rows[("fp32", 1)]["agreement_with_fp32"] == 1.0 and rows[("fp32", 2)]["speed_vs_fp32"] == 1.0
    for (v, _), r in rows.items():
        assert r["tokens_per_s"] > 0 and r["perplexity"] > 1 and 0.0 <= r["agreement_with_fp32"] <= 1.0
    # bf16 rounds every weight: the same model to within its precision
    assert abs(rows[("bf16", 1)]["perplexity"] / rows[("fp32", 1)]["perplexity"] - 1) < 0.05
    assert res["quality_tokens"] > 0 and res["model"] == str(saved / "base")
