"""zephyra bench profile: torch.profiler's top operators and traces for a training step and a decode step."""

import json

import pytest

from zephyra.bench.profile import ProfileConfig, run
from zephyra.errors import ConfigError


def test_profile_writes_top_operators_and_traces(tmp_path):
    cfg = ProfileConfig(preset="tiny", archs=["zephyra", "llama"], dtype="fp32", batch=2, seq=16, vocab=256,
                        steps=1, warmup=1, decode_batch=2, decode_prompt=4, decode_tokens=3, threads=1, top=40)
    report = run(cfg, tmp_path)
    saved = json.loads((tmp_path / "profile.json").read_text())
    assert saved["archs"].keys() == {"zephyra", "llama"}
    for arch in ("zephyra", "llama"):
        for phase in ("train", "decode"):
            res = report["archs"][arch][phase]
            assert res["step_ms"] > 0 and 1 <= len(res["top"]) <= 40
            shares = [t["share"] for t in res["top"]]
            assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 1.0 + 1e-9
            trace = json.loads((tmp_path / f"trace-{arch}-{phase}.json").read_text())
            assert trace["traceEvents"]
        # a training step multiplies matrices: the operators listed must show it (tiny: overheads rank high)
        assert any("mm" in t["op"] for t in report["archs"][arch]["train"]["top"])
    md = (tmp_path / "profile.md").read_text()
    assert "### train" in md and "### decode" in md and "| `aten::" in md


def test_profile_config_refuses_bad_values():
    with pytest.raises(ConfigError, match="dtype"):
        ProfileConfig(dtype="fp16")
    with pytest.raises(ConfigError, match="arch"):
        ProfileConfig(archs=["mamba"])
    with pytest.raises(ConfigError, match="steps"):
        ProfileConfig(steps=0)
