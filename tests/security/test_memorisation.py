"""The secret-sharer memorisation test (zephyra.bench.memorisation): canaries, planting, dedup, and exposure on
a tiny model, where a canary trained many times must rank first and an untrained one must not. The full run on
the quickstart base is the slow test (it writes runs/eval/memorisation/memorisation.json and .png)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from zephyra.errors import ConfigError
from zephyra.bench.memorisation import (MemorisationConfig, canary_text, dedup, exposure, greedy_extracts,
                                             make_canaries, plant, secret_nlls, summarise)

ROOT = Path(__file__).resolve().parents[2]


def test_canaries_are_unique_deterministic_and_planted_as_often_as_asked():
    cfg = MemorisationConfig(repetitions=[1, 4], canaries_per_repetition=2, controls=1, digits=4)
    cs = make_canaries(cfg)
    assert cs == make_canaries(cfg) and len({c["prefix"] for c in cs}) == 5
    assert [c["repeats"] for c in cs] == [1, 1, 4, 4, 0]
    assert all(len(c["secret"].split()) == 4 for c in cs)
    texts = plant(["some text"] * 10, cs, seed=0)
    assert len(texts) == 10 + 10 and all(texts.count(canary_text(c)) == c["repeats"] for c in cs)
    deduped = dedup(texts)
    assert all(deduped.count(canary_text(c)) == min(1, c["repeats"]) for c in cs)
    with pytest.raises(ConfigError, match="repetitions"):
        MemorisationConfig(repetitions=[0])
    with pytest.raises(ConfigError, match="mitigations"):
        MemorisationConfig(mitigations=["opacus"])


@pytest.fixture(scope="module")
def tiny():
    """A tiny Zephyra trained (all weights, a few hundred steps) on one canary among filler lines."""
    from zephyra.model import ZephyraForCausalLM, preset_config
    from zephyra.tokenizer import build_tokenizer

    cfg = MemorisationConfig(repetitions=[8], canaries_per_repetition=1, controls=1, digits=3)
    trained, control = make_canaries(cfg)
    filler = [f"The {w} report is ready." for w in ("blue", "green", "red", "grey")]
    corpus = plant(filler * 2, [trained], seed=0)
    tok = build_tokenizer(corpus + [canary_text(control)] + [" ".join("0123456789")] * 3, vocab_size=300,
                          min_frequency=1)
    torch.manual_seed(0)
    model = ZephyraForCausalLM(preset_config("tiny", vocab_size=len(tok), pad_token_id=tok.pad_token_id,
                                             bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id))
    rows = [[tok.bos_token_id, *tok(t, add_special_tokens=False)["input_ids"], tok.eos_token_id] for t in corpus]
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), tok.pad_token_id)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
    labels = ids.masked_fill(ids == tok.pad_token_id, -100)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(150):
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    return {"model": model, "tok": tok, "trained": trained, "control": control, "cfg": cfg}


def test_exposure_is_high_for_a_trained_canary_and_chance_for_an_untrained_one(tiny):
    m, tok = tiny["model"], tiny["tok"]
    hit = exposure(m, tok, tiny["trained"], digits=3, alternatives=999, seed=0)
    miss = exposure(m, tok, tiny["control"], digits=3, alternatives=999, seed=0)
    assert hit["exact"] and hit["space"] == 1000
    assert hit["rank"] == 1 and hit["exposure"] == pytest.approx(math.log2(1000))
    assert miss["rank"] > 10 and miss["exposure"] < hit["exposure"] - 3
    assert greedy_extracts(m, tok, tiny["trained"])[0]
    assert not greedy_extracts(m, tok, tiny["control"])[0]
    # sampled ranks: the estimate stops at log2(sampled + 1) bits when nothing sampled beats the canary
    sampled = exposure(m, tok, tiny["trained"], digits=3, alternatives=99, seed=0)
    assert not sampled["exact"] and sampled["exposure"] == pytest.approx(math.log2(100), abs=0.01)
    rows = [{**tiny["trained"], **hit, "extracted": True}, {**tiny["control"], **miss, "extracted": False}]
    s = summarise(rows)
    assert s["8"]["beats_all_alternatives"] == 1 and s["0"]["beats_all_alternatives"] == 0


def test_secret_nlls_agree_with_the_models_own_loss(tiny):
    m, tok, c = tiny["model"], tiny["tok"], tiny["trained"]
    nll = secret_nlls(m, tok, c["prefix"], [c["secret"]])[0]
    head = [tok.bos_token_id, *tok(c["prefix"], add_special_tokens=False)["input_ids"]]
    tail = tok(" " + c["secret"], add_special_tokens=False)["input_ids"]
    ids = torch.tensor([head + tail])
    labels = ids.clone()
    labels[0, :len(head)] = -100
    with torch.no_grad():
        mean = float(m(input_ids=ids, labels=labels).loss)
    assert nll == pytest.approx(mean * len(tail), rel=1e-4)


@pytest.mark.slow
def test_full_run_on_the_quickstart_base(tmp_path):
    """The measurement in docs/security.md: python -m zephyra.bench.memorisation (a few minutes)."""
    from zephyra.bench.memorisation import run

    base, data = ROOT / "runs/phase2/final", ROOT / "runs/data"
    if not (base / "config.json").is_file() or not (data / "domains").is_dir():
        pytest.skip("needs the quickstart base and data (zephyra quickstart)")
    out = ROOT / "runs/eval/memorisation"
    report = run(MemorisationConfig(base=str(base), data_root=str(data), out=str(out)))
    assert json.loads((out / "memorisation.json").read_text())["runs"][0]["label"] == "none"
    assert (out / "memorisation.png").stat().st_size > 0
    none = next(r for r in report["runs"] if r["label"] == "none")["summary"]
    assert none["16"]["exposure_fit_mean"] > none["0"]["exposure_fit_mean"]
