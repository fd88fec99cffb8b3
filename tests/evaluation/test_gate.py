"""The canary's quality gate: a candidate worse than stable on its domain's held-out text is refused (the log says
so, the aliases do not change); one as good becomes the canary."""

import copy
import json

import pytest
import torch
from test_suite import WORDS, _make_data, _texts, _train_lora
from typer.testing import CliRunner

from zephyra.adapters import attach_adapter, save_adapter
from zephyra.cli import app
from zephyra.evaluation.gate import gate_and_canary
from zephyra.loader import load_model
from zephyra.model import ZephyraForCausalLM, preset_config
from zephyra.registry import Registry
from zephyra.tokenizer import build_tokenizer

SMALL = {"max_ppl_tokens": 400, "batch_size": 4, "seq_len": 48}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("gate")
    data = _make_data(root / "data")
    tok = build_tokenizer([t for d in WORDS for t in _texts(d, 60, 0)] + ["What is it?"], vocab_size=300,
                          min_frequency=1)
    torch.manual_seed(0)
    ZephyraForCausalLM(preset_config("tiny", vocab_size=len(tok), initializer_range=0.2)).save_pretrained(root / "base")
    tok.save_pretrained(root / "base")
    base, tok = load_model(root / "base")
    trained = save_adapter(_train_lora(copy.deepcopy(base), tok, _texts("chemistry", 60, 0)), root / "good",
                           domain="chemistry")
    untrained = save_adapter(attach_adapter(copy.deepcopy(base), "lora", name="chemistry", identity_init=False),
                             root / "bad", domain="chemistry")
    better = save_adapter(_train_lora(copy.deepcopy(base), tok, _texts("chemistry", 60, 0), steps=60),
                          root / "better", domain="chemistry")
    return root, data, trained, untrained, better


def test_a_worse_candidate_is_refused_and_a_good_one_becomes_the_canary(world, tmp_path):
    root, data, trained, untrained, better = world
    reg = Registry(tmp_path / "reg")
    stable = reg.push(trained, "chemistry")
    bad = reg.push(untrained, "chemistry")
    result = gate_and_canary(reg, "chemistry", bad, 20, root / "base", data, margin=0.05, **SMALL)
    assert not result.passed and result.candidate_perplexity > 1.05 * result.stable_perplexity
    assert reg.aliases("chemistry").canary is None and reg.log("chemistry")[-1]["action"] == "gate refused"
    good = reg.push(better, "chemistry")
    result = gate_and_canary(reg, "chemistry", good, 20, root / "base", data, margin=0.05, **SMALL)
    assert result.passed, result.line()
    a = reg.aliases("chemistry")
    assert (a.stable, a.canary, a.canary_percent) == (stable, good, 20.0)
    last = reg.log("chemistry")[-1]
    assert last["who"] == "gate" and last["why"].startswith("gate passed")


def test_the_gate_command_exits_1_on_a_refusal(world, tmp_path):
    root, data, trained, untrained, _ = world
    reg = Registry(tmp_path / "reg")
    reg.push(trained, "chemistry")
    bad = reg.push(untrained, "chemistry")
    r = CliRunner().invoke(app, ["eval", "gate", f"chemistry@{bad}", "--registry", str(tmp_path / "reg"),
                                 "--base", str(root / "base"), "--data", str(data), "--max-ppl-tokens", "400",
                                 "--json"])
    assert r.exit_code == 1, r.output
    assert json.loads(r.output.strip().splitlines()[-1])["passed"] is False
