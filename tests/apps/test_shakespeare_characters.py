"""Characters (apps/shakespeare/characters.py, converse.py): their dialogue data split by scene, the bad input
of every entry point, the perplexity matrix, and a conversation on a tiny base with random character adapters:
turn-taking, one JSON object a turn, the transcript and ``converse watch``."""

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path[:0] = [str(Path(__file__).parents[1] / d) for d in ("router", "resolve")]
from resolve_helpers import save_adapters  # noqa: E402
from router_helpers import save_tiny_base  # noqa: E402

from zephyra.apps.shakespeare.characters import (  # noqa: E402
    CHARACTERS, character_splits, check_characters, dialogue_pairs, perplexity_matrix, write_character_data,
)
from zephyra.apps.shakespeare.converse import converse, next_speaker, open_characters, watch  # noqa: E402
from zephyra.apps.shakespeare.plays import load_play  # noqa: E402
from zephyra.cli import app  # noqa: E402
from zephyra.errors import DataError  # noqa: E402

runner = CliRunner()


def test_every_character_has_replies_to_train_and_test_on_in_separate_scenes():
    cache = {}
    for slug, (play, name) in CHARACTERS.items():
        splits = character_splits(slug, cache)
        assert splits["train"] and splits["test"] and splits["validation"], slug
        train_scenes = {p.scene for p in splits["train"] + splits["validation"]}
        assert not train_scenes & {p.scene for p in splits["test"]}, slug  # the split is by scene
        assert all(p.speaker == name and p.prompt.startswith(f"{p.to}: ") and p.to != name
                   for v in splits.values() for p in v)
    ophelia = dialogue_pairs(load_play("hamlet"), "Ophelia")
    assert any(p.to == "Hamlet" for p in ophelia) and any(p.to == "Polonius" for p in ophelia)


def test_bad_character_lists_are_one_line():
    with pytest.raises(DataError, match="unknown character 'yorick'; known: hamlet, ophelia"):
        check_characters(["hamlet", "yorick"])
    with pytest.raises(DataError, match="'hamlet' is given twice"):
        check_characters(["hamlet", "Hamlet"])
    with pytest.raises(DataError, match="no character given"):
        check_characters([" "])
    assert check_characters(["Lady Macbeth"]) == ["lady-macbeth"]


def test_character_data_is_the_adapter_trainers_layout(tmp_path):
    from zephyra.data.store import load

    counts = write_character_data(["ophelia"], tmp_path, echo=lambda s: None)
    qa = load(tmp_path, "domains/ophelia/qa")
    assert {k: len(v) for k, v in qa.items()} == counts["ophelia"]
    assert qa["train"][0]["question"].split(":")[0] in {"Hamlet", "Polonius", "Laertes", "Claudius", "Gertrude"}
    assert len(load(tmp_path, "domains/ophelia/raw")["test"]) == counts["ophelia"]["test"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny base and random LoRA adapters named as characters."""
    root = tmp_path_factory.mktemp("characters")
    model = save_tiny_base(root / "base")
    save_adapters(model, root / "adapters", names=("hamlet", "ophelia", "polonius"))
    return root


def test_a_conversation_takes_turns_logs_them_and_can_be_watched(tiny, tmp_path):
    from zephyra.registry.store import version_of

    system = open_characters(["hamlet", "ophelia", "polonius"], base=tiny / "base", adapters=tiny / "adapters")
    log = tmp_path / "talk.jsonl"
    try:
        turns = list(converse(system, ["hamlet", "ophelia", "polonius"], turns=4, temperature=0.0, log=log,
                              max_tokens=6, scene="A room in the castle."))
    finally:
        system.close()
    assert [t["turn"] for t in turns] == [1, 2, 3, 4] and turns[0]["speaker"] == "Hamlet"
    for a, b in zip(turns, turns[1:]):
        assert b["adapter"] == next_speaker(a["text"], a["adapter"], ["hamlet", "ophelia", "polonius"])
        assert b["adapter"] != a["adapter"]  # nobody answers themselves
    assert all(t["version"] == version_of(tiny / "adapters" / t["adapter"]) and t["text"] for t in turns)
    records = list(watch(log, follow=False))
    assert records[0]["kind"] == "settings" and records[0]["characters"] == ["hamlet", "ophelia", "polonius"]
    assert [r["text"] for r in records[1:]] == [t["text"] for t in turns]
    assert next_speaker("Good Polonius, a word.", "hamlet", ["hamlet", "ophelia", "polonius"]) == "polonius"
    assert next_speaker("A word.", "polonius", ["hamlet", "ophelia", "polonius"]) == "hamlet"  # round-robin


def test_conversations_in_lockstep_share_batches_and_say_the_same(tiny):
    """converse_many: one mixed-adapter batch a turn across conversations, the same turns as one at a time."""
    from zephyra.apps.shakespeare.converse import Conversation, converse_many
    from zephyra.apps.shakespeare.fidelity import AttributionScorer

    groups = [["hamlet", "ophelia"], ["ophelia", "polonius"], ["polonius", "hamlet", "ophelia"]]
    system = open_characters(["hamlet", "ophelia", "polonius"], base=tiny / "base", adapters=tiny / "adapters")
    batches = []
    run = system.engine.run
    system.engine.run = lambda requests: batches.append([r.adapter for r in requests]) or run(requests)
    scorer = AttributionScorer(["hamlet", "ophelia", "polonius"])
    try:
        together = converse_many(system, [Conversation(system, g, turns=3, temperature=0.0, max_tokens=5,
                                                       scorer=scorer) for g in groups])
        alone = [list(converse(system, g, turns=3, temperature=0.0, max_tokens=5)) for g in groups]
    finally:
        system.close()
    assert batches[0] == ["hamlet", "ophelia", "polonius"]  # three adapters in the first batch
    assert len(batches) == 3 + 9  # three lockstep steps, then nine turns one by one
    assert [[t["text"] for t in c] for c in together] == [[t["text"] for t in c] for c in alone]
    for turn in (t for c in together for t in c):
        sc = turn["scores"]
        assert 0 <= sc["attribution"] <= 1 and sc["named"] in {"hamlet", "ophelia", "polonius"}
        assert 0 <= sc["echo"] <= 1 and 0 <= sc["repetition"] <= 1
    with pytest.raises(DataError, match="serves no adapter 'shakespeare/hamlet'"):
        Conversation(system, ["hamlet", "ophelia"], names={"hamlet": "shakespeare/hamlet"})


def test_the_converse_command_speaks_json_and_refuses_bad_input(tiny, tmp_path):
    opts = ["--base", str(tiny / "base"), "--adapters", str(tiny / "adapters")]
    log = tmp_path / "cli.jsonl"
    r = runner.invoke(app, ["converse", "--characters", "hamlet,ophelia", "--turns", "2", "--json", "--log",
                            str(log), "--max-tokens", "4", *opts])
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert [set(x) for x in rows] == [{"turn", "speaker", "adapter", "version", "text", "sources"}] * 2
    logged = [json.loads(line) for line in log.read_text().splitlines()][1:]
    assert all(0 <= t["scores"]["attribution"] <= 1 for t in logged)  # the transcript has per-turn scores
    w = runner.invoke(app, ["converse", "watch", str(log), "--no-follow"])
    assert w.exit_code == 0 and "HAMLET (hamlet@" in w.output
    for args, why in ((["--characters", "hamlet,hamlet"], "given twice"),
                      (["--characters", "hamlet,yorick"], "unknown character 'yorick'; known:"),
                      (["--characters", "hamlet"], "two to four characters"),
                      (["--characters", "hamlet,ophelia", "--turns", "0"], "--turns must be at least 1"),
                      (["--characters", "hamlet,gertrude"], "no adapter for 'gertrude'")):
        bad = runner.invoke(app, ["converse", *args, *opts])
        assert bad.exit_code == 2 and why in bad.output and len(bad.output.strip().splitlines()) == 1, bad.output
    missing = runner.invoke(app, ["converse", "watch", str(tmp_path / "none.jsonl"), "--no-follow"])
    assert missing.exit_code == 2 and "no such transcript" in missing.output
    play = runner.invoke(app, ["shakespeare", "data", "--plays", "hamlett", "--out", str(tmp_path)])
    assert play.exit_code == 2 and "no play 'hamlett'" in play.output


def test_the_perplexity_matrix_scores_every_adapter_on_every_characters_test_replies(tiny):
    result = perplexity_matrix(["hamlet", "ophelia"], tiny / "base", tiny / "adapters", echo=lambda s: None)
    assert result["rows"] == ["base", "hamlet", "ophelia"] and result["columns"] == ["hamlet", "ophelia"]
    assert all(len(r) == 2 and all(v > 1 for v in r) for r in result["perplexity"])
    assert result["test_replies"]["ophelia"] == len(character_splits("ophelia")["test"])


def test_style_statistics_and_the_attribution_ceiling():
    from zephyra.apps.shakespeare.fidelity import AttributionScorer, style

    s = style(["thou art a villain, a villain", "send me an email"])
    assert s["distinct_1"] == pytest.approx(8 / 10) and s["words_per_reply"] == 5.0  # 10 words, 8 distinct
    assert s["repetition"] == pytest.approx(2 / 10)  # "a" and "villain" repeat a word of the last three
    assert s["archaic_rate"] == pytest.approx(2 / 10) and s["modern_rate"] == pytest.approx(1 / 10)
    scorer = AttributionScorer(["hamlet", "ophelia", "macbeth", "lady-macbeth"])
    cache = {}
    test = [(p.reply, slug) for slug in scorer.slugs for p in character_splits(slug, cache)["test"]]
    real = scorer.macro_f1([t for t, _ in test], [s for _, s in test])
    assert 0.25 < real < 1.0  # the real held-out lines: above chance (0.25), far from perfect


def test_fidelity_scores_generated_replies_beside_the_real_ones(tiny):
    from zephyra.apps.shakespeare.fidelity import PROBES, fidelity, fidelity_markdown

    system = open_characters(["hamlet", "ophelia"], base=tiny / "base", adapters=tiny / "adapters")
    try:
        r = fidelity(system, ["hamlet", "ophelia"], per_character=3, max_tokens=4, echo=lambda s: None)
    finally:
        system.close()
    assert r["attribution_macro_f1"]["chance"] == 0.5 and 0 <= r["attribution_macro_f1"]["generated"] <= 1
    assert set(r["per_character"]) == {"hamlet", "ophelia"} and r["probes"] == list(PROBES)
    assert r["per_character"]["ophelia"]["replies"] == 3 and "| Ophelia | 3 |" in fidelity_markdown(r)
    from zephyra.apps.shakespeare.report import compare_fidelity, comparison_markdown

    table = compare_fidelity({"plain": r, "again": r})
    row = table["rows"][0]
    assert row["tfidf"] == r["attribution_macro_f1"]["generated"] and row["judge_real"] == r["judge_macro_f1"]["real"]
    md = comparison_markdown(table)
    assert md.startswith("| setting |") and "\n| plain | " in md and "\n| again | " in md
    bad = runner.invoke(app, ["shakespeare", "compare", "no-label"])
    assert bad.exit_code == 2 and "give LABEL=REPORT.json" in bad.output
    pit = r["point_in_time"]  # one probe each of Hamlet and Ophelia, asked in Act I
    assert [p["character"] for p in pit["probes"]] == ["hamlet", "ophelia"] and 0 <= pit["rate"] <= 1
    assert 0 <= pit["real_rate"] < 0.2  # their real lines up to Act I seldom tell of a later death


def test_point_in_time_probes_need_the_subject_and_a_later_event():
    from zephyra.apps.shakespeare.fidelity import tells_the_future

    assert tells_the_future("Alas, Polonius is dead behind the arras.", ["polonius"], ["dead", "arras"])
    assert not tells_the_future("My father is dead.", ["polonius"], ["dead"])  # Hamlet's father, not Polonius
    assert not tells_the_future("Polonius is a tedious old fool.", ["polonius"], ["dead"])


def test_character_versions_live_in_the_registry_and_roll_back_exactly(tiny, tmp_path):
    """``build --registry``: each build of a character is a version with its metrics; a rollback restores the
    version before, file for file."""
    from zephyra.io import sha256_dir
    from zephyra.registry import Registry

    reg_dir, versions = tmp_path / "registry", []
    for seed in (1, 2):  # two builds with other weights: two versions
        r = runner.invoke(app, ["shakespeare", "build", "--base", str(tiny / "base"), "--characters", "ophelia",
                                "--layer", "none", "--out", str(tmp_path / f"b{seed}"), "--registry", str(reg_dir),
                                "--general", str(tmp_path / "none"), "max_steps=2", "eval_batches=1",
                                f"seed={seed}"])
        assert r.exit_code == 0, r.output
        versions.append(r.stdout.strip().splitlines()[-1].split()[0].split("@")[1])
    reg = Registry(reg_dir)
    first, second = versions
    assert first != second and reg.aliases("ophelia").stable == first
    assert "val_qa_perplexity" in reg.versions("ophelia")[-1]["metrics"]  # its scores go with it
    reg.promote("ophelia", second)
    reg.rollback("ophelia")
    assert reg.aliases("ophelia").stable == first
    assert sha256_dir(reg.path("ophelia", first), exclude=("manifest.json", ".registry.json")) == \
        sha256_dir(tmp_path / "b1" / "adapters" / "ophelia", exclude=("manifest.json",))


def test_the_vocabulary_bias_favours_a_characters_words_and_bans_modern_ones(tiny):
    from zephyra.apps.shakespeare.steering import vocabulary_bias
    from zephyra.loader import load_model

    _, tok = load_model(tiny / "base")
    bias = vocabulary_bias("hamlet", tok, top=10, strength=1.5)
    up = [t for t, v in bias.items() if v > 0]
    assert len(up) == 10 and all(bias[t] == 1.5 for t in up)
    assert all(v in (1.5, -100.0) for v in bias.values())
    system = open_characters(["hamlet", "ophelia"], base=tiny / "base", adapters=tiny / "adapters")
    try:
        steered = list(converse(system, ["hamlet", "ophelia"], turns=2, temperature=0.0, max_tokens=4,
                                steer="bias"))
        with pytest.raises(DataError, match="steer must be none or bias"):
            list(converse(system, ["hamlet", "ophelia"], turns=1, steer="magic"))
    finally:
        system.close()
    assert len(steered) == 2


def test_the_conversation_benchmark_scores_turns_beside_real_dialogue(tiny, tmp_path):
    r = runner.invoke(app, ["converse", "bench", "--group", "hamlet,ophelia", "--group", "hamlet,ophelia,polonius",
                            "--seeds", "1", "--turns", "3", "--base", str(tiny / "base"), "--adapters",
                            str(tiny / "adapters"), "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "reports" / "conversations.json").read_text())
    assert set(report["groups"]) == {"hamlet+ophelia", "hamlet+ophelia+polonius"}
    g = report["groups"]["hamlet+ophelia"]
    assert len(g["attribution_by_turn"]) == 3 and 0 <= g["echo"] <= 1 and 0 <= g["spoke_for_another"] <= 1
    assert 0 < report["real"]["coherence"] < 1 and 0 < report["real"]["echo"] < 1  # real dialogue, for reference
    assert (tmp_path / "reports" / "conversations.png").is_file() and "| hamlet+ophelia |" in r.stdout
    assert report["lockstep"] is True and report["seconds"] > 0 and "one mixed-adapter batch a turn" in r.stdout
    bad = runner.invoke(app, ["converse", "bench", "--group", "hamlet", "--base", str(tiny / "base")])
    assert bad.exit_code == 2 and "two to four characters" in bad.output
