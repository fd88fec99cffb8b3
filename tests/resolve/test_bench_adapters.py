"""The adapter benchmark runs end to end on a tiny model and reports every variant and ratio (no timings
are asserted: the machine is shared)."""

import pytest

from zephyra.bench.adapters import RATIOS, STEP_RATIOS, STEPS, VARIANTS, AdapterBenchConfig, markdown, run


def test_bench_reports_every_variant_and_ratio():
    cfg = AdapterBenchConfig(preset="tiny", vocab=64, batch=4, adapters=2, prompt_len=6, new_tokens=3, rounds=1,
                             step_rounds=1, warmup=0, threads=1)
    result = run(cfg)
    assert [r["variant"] for r in result["rows"]] == list(VARIANTS)
    assert len(result["ratios"]) == len(RATIOS) and len(result["step_ratios"]) == len(STEP_RATIOS)
    assert [r["variant"] for r in result["step_rows"]] == list(STEPS)
    assert all(r["tokens_per_s"] > 0 for r in result["rows"] + result["step_rows"])
    table = markdown(result, cfg)
    assert "ours: mixed / single adapter" in table and "Decode steps" in table and result["machine"] in table


def test_bench_config_refuses_what_it_cannot_run():
    with pytest.raises(ValueError, match="multiple of adapters"):
        AdapterBenchConfig(batch=6, adapters=4)
    with pytest.raises(ValueError, match="unknown variant"):
        AdapterBenchConfig(variants=["nope"])
    with pytest.raises(ValueError, match="dtype"):
        AdapterBenchConfig(dtype="fp16")
