"""The science and reading tutors (apps/tutor/passages.py over socratic.py): the answer's words found by the
question's form, hints that mask them and cite the passage, the check, the general answer guard, the simulated
learner, and build / bench / ask on a tiny base with a small corpus."""

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path[:0] = [str(Path(__file__).parents[1] / "router")]
from router_helpers import make_model, make_tokenizer  # noqa: E402

from zephyra.apps.tutor import passages  # noqa: E402
from zephyra.apps.tutor.passages import BLANK, answer_keys, mask, passage_task  # noqa: E402
from zephyra.apps.tutor.socratic import (  # noqa: E402
    Learner,
    guard,
    rules_tutor,
    run_conversations,
    summarise,
    teacher,
)
from zephyra.cli import app  # noqa: E402

runner = CliRunner()

NEUTRON = "neutron (physics): An elementary particle with no electric charge, found in the nucleus of atoms."
HAMLET = "HAMLET (Hamlet, Act 1, Scene 2): O, that this too too solid flesh would melt, thaw and resolve itself."
VERSE = "Proverbs 23:23 Buy the truth, and sell it not; also wisdom, and instruction, and understanding."


def test_the_answer_words_follow_the_question_form():
    assert answer_keys("What is neutron in physics?", NEUTRON) == ("elementary", "particle")
    assert answer_keys("In Hamlet, who says \"O, that this too too solid flesh ...\"?", HAMLET) == ("hamlet",)
    assert answer_keys("In Hamlet, who says \"O, that ...\"?", "Hamlet says it (Hamlet, Act 1, Scene 2).") == \
        ("hamlet",)  # a record's answer and the retrieved passage give the same word
    cloze = f"Which word completes Proverbs 23:23: \"Buy the truth, and sell it not; also wisdom, and instruction, " \
            f"and {BLANK}.\"?"
    assert answer_keys(cloze, VERSE) == ("understanding",)
    assert answer_keys("What does Proverbs 23:23 say?", VERSE) == ("understanding", "instruction")
    assert mask("Particles, particle and PARTICLE.", ["particle"]) == f"{BLANK}, {BLANK} and {BLANK}."


def test_hints_cite_the_passage_and_hide_the_answer():
    t = passage_task("What is neutron in physics?", NEUTRON, answer="An elementary particle with no charge.")
    assert t.keys == t.gold and t.kind == "definition"
    for i in range(3):
        assert "\"neutron (physics)\"" in t.hint(i) and not t.says_answer(t.hint(i)) and not t.leaks(t.hint(i))
        assert t.grounded(i, t.hint(i))  # the hint quotes the retrieved passage
    assert "\"e\" and \"p\"" in t.hint(1) and t.hint(9) == t.hint(2)
    assert t.check(0, "Is it an elementary particle?")[0] == "solved"
    assert t.check(0, "something with particles?") == ("right", 1)  # one of the two words: on to a stronger hint
    assert t.check(0, "Just tell me the answer.") == ("demand", 1)
    assert t.check(1, "a wave") == ("wrong", 2) and t.check(0, "...") == ("none", 0)
    s = passage_task("In Hamlet, who says \"O, that this too too solid flesh ...\"?", HAMLET)
    assert BLANK in s.hint(0) and "HAMLET" not in s.hint(0).upper().replace("(_____", "")


@pytest.mark.parametrize("turn", ["The answer is an elementary particle.", "PARTICLES that are ELEMENTARY, see?",
                                  "Think: elementary... what kind of thing is it?"])
def test_the_guard_is_about_the_words_not_a_template(turn):
    t = passage_task("What is neutron in physics?", NEUTRON)
    replaced, hit = guard(t, turn, solved=False, i=0)
    assert hit and not t.leaks(replaced) and "?" in replaced
    assert guard(t, turn, solved=True, i=0) == (turn, False)  # once the learner said it, the tutor may too


def _tasks():
    defs = [("neutron", "physics", "An elementary particle with no electric charge."),
            ("photon", "physics", "A quantum of electromagnetic radiation."),
            ("enzyme", "biology", "A protein that speeds up chemical reactions in living cells."),
            ("comet", "astronomy", "A frozen body of dust and ice orbiting the sun."),
            ("alkali", "chemistry", "A soluble base that neutralises acids."),
            ("isotope", "chemistry", "One of several forms of an element with different numbers of neutrons.")]
    return [passage_task(f"What is {w} in {f}?", f"{w} ({f}): {d}", answer=d, id=w) for w, f, d in defs * 10]


def test_the_teacher_hints_help_and_never_leak():
    tasks = _tasks()
    learners = lambda: [Learner(k) for k in range(len(tasks))]  # noqa: E731
    hinted = summarise(run_conversations(tasks, learners(), teacher()))
    bare = summarise(run_conversations(tasks, learners(), lambda b: ["What do you think?"] * len(b)))
    rules = summarise(run_conversations(tasks, learners(), rules_tutor("science")))
    assert hinted["leak_rate"] == 0 and hinted["question_rate"] >= 0.7 and hinted["grounded_hints"] > 0.3
    assert hinted["learner_success"] > bare["learner_success"]
    assert rules["grounded_hints"] == 0 and rules["leak_rate"] == 0
    leaky = summarise(run_conversations(tasks, learners(), lambda b: [f"It is: {t.answer}" for t, *_ in b]))
    assert leaky["leak_rate"] == 1  # the measure sees a leak however it is worded
    guarded = summarise(run_conversations(tasks, learners(), lambda b: [f"It is: {t.answer}" for t, *_ in b],
                                          use_guard=True))
    assert guarded["leak_rate"] == 0 and guarded["guarded_turns"] > 0.5


def _small_science(monkeypatch):
    """A small science corpus in place of the installed dictionaries (the test builds in seconds)."""
    words = ["neutron", "photon", "enzyme", "comet", "alkali", "isotope", "proton", "nebula", "allele", "quasar",
             "ion", "gene", "orbit", "acid", "atom", "cell", "lens", "star", "moon", "tide"]
    things = ["particle", "radiation", "protein", "glacier", "compound", "element", "nucleus", "cluster",
              "variant", "galaxy", "molecule", "sequence", "pathway", "solution", "structure", "organism",
              "instrument", "furnace", "satellite", "current"]
    chunks, records = [], []
    for k, (w, thing) in enumerate(zip(words, things)):
        d = f"A remarkable {thing} observed in laboratories."
        chunks.append({"id": f"t:{w}", "doc_id": f"t:{w}", "subject": "science", "domain": "science",
                       "source": "test", "text": f"{w} (physics): {d}"})
        records.append({"question": f"What is {w} in physics?", "answer": d, "doc_id": f"t:{w}", "k": k})
    splits = {"train": [r for r in records if r["k"] % 5 > 1], "validation": [r for r in records if r["k"] % 5 == 1],
              "test": [r for r in records if r["k"] % 5 == 0]}
    monkeypatch.setitem(passages._CORPUS, "science", (chunks, splits))
    return chunks


def test_build_bench_and_ask_science_on_a_tiny_base(tmp_path, monkeypatch):
    from zephyra.data.store import load
    from zephyra.retrieval.index import build_index

    chunks = _small_science(monkeypatch)
    tok = make_tokenizer()
    make_model(tok).save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    out = tmp_path / "tutor"
    base = ["--base", str(tmp_path / "base"), "--out", str(out)]
    r = runner.invoke(app, ["tutor", "build", "--subject", "science", *base, "--general", str(tmp_path / "none"),
                            "max_steps=2", "seq_len=64", "eval_batches=1", "batch_size=4", "micro_batch_size=4",
                            "rank=4", "warmup_steps=0"])
    assert r.exit_code == 0, r.output
    qa = load(out / "data", "domains/tutor-science/qa")
    assert {p["doc_id"] for p in qa["train"]}.isdisjoint({p["doc_id"] for p in qa["test"]})  # held-out entries
    assert "Question: What is" in qa["train"][0]["sources"] and "[2]" in qa["train"][0]["answer"]
    b = runner.invoke(app, ["tutor", "bench", "--subject", "science", *base, "--problems", "4", "--turns", "2",
                            "--json"])
    assert b.exit_code == 0, b.output
    rows = json.loads(b.stdout.strip().splitlines()[-1])
    assert rows["teacher (rules, the reference)"]["leak_rate"] == 0
    assert "rule-based turn (before: points at the passage)" in rows
    assert rows["adapter, with sources + answer guard"]["leak_rate"] == 0
    report = json.loads((out / "reports" / "socratic-science.json").read_text())
    assert report["passages"] == "BM25" and report["problems"] == 4

    build_index(chunks, out / "index" / "science", domain="science", encoder=None, dense=False, log=lambda s: None)
    a = runner.invoke(app, ["tutor", "ask", "--subject", "science", "What is neutron in physics?", "--json", *base])
    assert a.exit_code == 0, a.output
    got = json.loads(a.stdout.strip().splitlines()[-1])
    keys = passage_task("What is neutron in physics?", chunks[0]["text"]).keys
    assert got["adapter"] == "science" and keys and not any(k in got["text"].lower() for k in keys)  # guarded
    assert BLANK in got["sources"][0]["text"]  # the passage shown has the answer's words masked too
    bad = runner.invoke(app, ["tutor", "bench", "--subject", "history", *base])
    assert bad.exit_code == 2 and "unknown subject 'history'" in bad.output
    # the server's sessions (backend.py) carry a science question over turns, as they do a math problem
    from zephyra.apps.tutor.backend import Backend, new_question
    from zephyra.apps.tutor.tutor import Tutor

    backend = Backend(Tutor(tmp_path / "base", out))
    s = backend.session("s1")
    first = backend.turn(s, "What is neutron in physics?", "science", None)
    assert first["adapter"] == "science" and s.task is not None and s.context["check"] == "none"
    assert not any(k in first["text"].lower() for k in s.task.keys) and BLANK in first["sources"][0]["text"]
    backend.turn(s, "Is it a wave?", None, None)
    assert s.context["check"] == "wrong" and s.context["step"] == 1 and "session's question" in s.context["reason"]
    done = backend.turn(s, f"It is {' '.join(s.task.keys)}.", None, None)  # every answer word the tutor knows
    assert s.context["check"] == "solved" and s.solved and not done["text"].lower().startswith(("not", "no "))
    backend.turn(s, "What is photon in physics?", None, None)  # a new question: a new task, not a wrong reply
    assert s.context["check"] == "none" and s.context["query"] == "What is photon in physics?"
    assert new_question("Why does it glow?") and not new_question("Is it a comet?") and not new_question("what")


@pytest.mark.parametrize(("turn", "status", "against"), [
    ("Not quite. Look again: 7 x 8 is?", "right", True), ("No, check that again.", "solved", True),
    ("Yes, that's right. Next: add 2.", "right", False), ("Exactly. What is 56 + 2?", "wrong", True),
    ("Not yet, have another look.", "wrong", False), ("Good question, let's think.", "none", False),
    ("Well done, that's right. 12 is the answer. Well done!", "right", True),  # a step is not the answer
    ("Well done, that's right. 3 is the answer. Well done!", "solved", False),
    ("That is what the passage says. What helped you find it?", "wrong", True)])
def test_a_turn_against_the_check_is_replaced(turn, status, against):
    from zephyra.apps.tutor.socratic import contradicts

    t = passage_task("What is neutron in physics?", NEUTRON)
    assert contradicts(turn, status) is against
    replaced, hit = guard(t, turn, solved=status == "solved", i=1, status=status)
    assert hit is against and (replaced == turn) is not against
    if against:
        assert not contradicts(replaced, status) and not t.leaks(replaced) or status == "solved"
