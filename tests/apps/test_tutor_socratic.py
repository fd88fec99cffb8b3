"""The Socratic tutor's math (apps/tutor/problems.py, socratic.py): problems with checkable answers, hints that
mask the result, the simulated learner, the answer guard, the training dialogues, and the build and benchmark
commands on a tiny base."""

import json
import sys
from fractions import Fraction
from pathlib import Path

from typer.testing import CliRunner

sys.path[:0] = [str(Path(__file__).parents[1] / "router")]
from router_helpers import make_model, make_tokenizer  # noqa: E402

from zephyra.apps.tutor.problems import KINDS, check_answer, math_problems, says_answer  # noqa: E402
from zephyra.apps.tutor.socratic import (  # noqa: E402
    Learner,
    check,
    guard,
    hint_of,
    run_conversations,
    summarise,
    task_of,
    teacher,
)
from zephyra.cli import app  # noqa: E402

runner = CliRunner()


def test_problems_are_deterministic_and_their_answers_checkable():
    a, b = math_problems(12, seed=3), math_problems(12, seed=3)
    assert [p.question for p in a] == [p.question for p in b] and {p.kind for p in a} == set(KINDS)
    assert [p.question for p in math_problems(12, seed=4)] != [p.question for p in a]
    for p in a:
        assert check_answer(p, f"I think it is {p.answer}") and not check_answer(p, "no idea")
        assert p.steps[-1] and p.value == Fraction(p.value)
    frac = next(p for p in math_problems(60, seed=0, kinds=["areas"]) if p.value.denominator == 2)  # a triangle
    assert check_answer(frac, f"{float(frac.value)}") and check_answer(frac, f"{frac.value.numerator * 2}/4")


def test_hints_mask_the_result_and_the_teacher_never_leaks():
    assert hint_of("Multiply first: 4 × 11 = 44.") == "Multiply first: 4 × 11 = ?"
    assert hint_of("In lowest terms that is 22/15.") == "In lowest terms that is ?"
    tasks = [task_of(p) for p in math_problems(120, seed=9)]
    assert all(not says_answer(t.problem, h) for t in tasks for h in t.hints)
    with_hints = summarise(run_conversations(tasks, [Learner(k) for k in range(120)], teacher()))
    no_hints = summarise(run_conversations(tasks, [Learner(k) for k in range(120)],
                                           lambda batch: ["Have a think. What do you get?"] * len(batch)))
    assert with_hints["leak_rate"] == 0 and with_hints["question_rate"] >= 0.7
    assert with_hints["learner_success"] > no_hints["learner_success"]  # the hints help the simulated learner
    assert no_hints["grounded_hints"] == 0 and with_hints["grounded_hints"] > 0.5


def test_the_adapter_cites_the_hint_and_the_runtime_fills_it_in():
    from zephyra.apps.tutor.socratic import HINT_MARK, cite_hint, fill_hint

    t = task_of(math_problems(1, seed=5)[0])
    turn = f"Good. Next: {t.hints[0]} What do you get?"
    cited = cite_hint(turn, t, 0)
    assert HINT_MARK in cited and t.hints[0] not in cited
    assert fill_hint(cited, t, 0) == turn
    assert fill_hint(f"{HINT_MARK} and {HINT_MARK} again", t, 0) == f"{t.hints[0]} and again"  # one hint a turn


def test_the_check_and_the_guard():
    p = next(p for p in math_problems(30, seed=0) if p.kind == "equations")
    t = task_of(p)
    first = t.checkpoints[0]
    assert check(t, 0, f"{first}") == ("right", 1)
    assert check(t, 0, f"x = {p.answer}")[0] == "solved"
    assert check(t, 0, "Just tell me the answer.")[0] == "demand"
    assert check(t, 0, f"{first + 7}")[0] == "wrong"
    leaked, hit = guard(t, f"The answer is {p.answer}.", solved=False, i=0)
    assert hit and not says_answer(p, leaked) and "?" in leaked
    assert guard(t, f"Yes, {p.answer} is right.", solved=True, i=1) == (f"Yes, {p.answer} is right.", False)


def test_build_and_bench_on_a_tiny_base(tmp_path):
    from zephyra.chat import SOURCES_HEADER
    from zephyra.data.store import load
    from zephyra.training.data import format_qa

    tok = make_tokenizer()
    make_model(tok).save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    out = tmp_path / "tutor"
    r = runner.invoke(app, ["tutor", "build", "--base", str(tmp_path / "base"), "--out", str(out), "--general",
                            str(tmp_path / "none"), "max_steps=2", "seq_len=64", "eval_batches=1", "batch_size=4",
                            "micro_batch_size=4", "rank=4", "warmup_steps=0"])
    assert r.exit_code == 0, r.output
    qa = load(out / "data", "domains/tutor-math/qa")
    assert {p["doc_id"] for p in qa["train"]}.isdisjoint({p["doc_id"] for p in qa["test"]})  # held-out problems
    text = format_qa(qa["train"][0], tok)
    assert SOURCES_HEADER in text and "Hint:" in text and "Check: none" in text
    b = runner.invoke(app, ["tutor", "bench", "--base", str(tmp_path / "base"), "--out", str(out), "--problems", "4",
                            "--turns", "2", "--json"])
    assert b.exit_code == 0, b.output
    rows = json.loads(b.stdout.strip().splitlines()[-1])
    assert rows["teacher (rules, the reference)"]["leak_rate"] == 0
    guarded = rows["adapter, with sources + answer guard"]
    assert guarded["leak_rate"] == 0 and 0 <= guarded["question_rate"] <= 1  # the guard lets no answer out
    assert (out / "reports" / "socratic-math.json").is_file()
    bad = runner.invoke(app, ["tutor", "bench", "--out", str(tmp_path / "nowhere")])
    assert bad.exit_code == 2 and "zephyra tutor build" in bad.output
    other = runner.invoke(app, ["tutor", "build", "--subject", "history", "--base", str(tmp_path / "base"),
                                "--out", str(out)])
    assert other.exit_code == 2 and "unknown subject 'history'" in other.output


def test_ask_gives_a_hint_never_the_answer(tmp_path):
    from zephyra.apps.tutor.problems import parse_problem

    tok = make_tokenizer()
    make_model(tok).save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    p = parse_problem("Solve for x: 3x + 2 = 11")
    assert p.kind == "equations" and p.answer == "3" and p.steps[0].startswith("Subtract 2")
    assert parse_problem("Who wrote Hamlet?") is None
    opts = ["--base", str(tmp_path / "base"), "--out", str(tmp_path / "tutor")]
    r = runner.invoke(app, ["tutor", "ask", "What is 7 × 8 + 2?", "--json", *opts])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert list(out) == ["text", "subject", "adapter", "sources", "tool_calls"] and out["subject"] == "math"
    assert "58" not in out["text"] and "?" in out["text"]  # a hint and a question, not the answer
    for args, why in ((["   "], "empty message"), (["x", "--subject", "history"], "unknown subject 'history'")):
        bad = runner.invoke(app, ["tutor", "ask", *args, *opts])
        assert bad.exit_code == 2 and why in bad.output, bad.output
