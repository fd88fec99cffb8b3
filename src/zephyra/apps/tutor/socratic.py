"""Hints, not answers: tutoring dialogues, a simulated learner, the tutor's turns and their benchmark.

One loop for every subject: a task is a math ``Task`` (below) or a science / reading ``passages.PassageTask``,
each answering the same questions (its hint for a step, the check of a learner's message, a leak, a grounded
turn, a simulated learner's try), so the teacher, the dialogues, the prompt, the guard and the benchmark are
shared. The math tasks, in detail:

A task is a problem with its worked steps (problems.py). Each step becomes a **hint**: the step with its result
masked ("Multiply first: 4 × 11 = ?") and a question. The tutor's turn is made by the subject's adapter from
the one chat encoder's grounded prompt (``chat.grounded_messages``): sources [1] the problem, [2] the hint of the
step the learner is on, [3] what the check of the learner's last message found (right, wrong, asked for the
answer, nothing yet) -- the runtime checks the learner's numbers against the steps (the check_answer tool) --
then the last exchanges. The adapter's job is the Socratic turn: feedback, the hint as a question, a refusal when
the learner demands the answer. It cites the hint as "[2]" and the runtime puts the hint's text in, as grounded
answers quote their passage: a model this small does not copy a step's numbers reliably (measured: with the hint
written out by the adapter, 3% of its turns named the step's numbers).

- ``teacher_turn``: the rule-based tutor that writes the training dialogues (and the reference in the benchmark);
- ``Learner``: a simulated learner, seeded: sometimes right, sometimes wrong, sometimes "just tell me"; more
  often right on a turn that gave them the step's numbers (a hint they can act on);
- ``guard``: the answer guard at run time: a tutor turn that holds the final answer before the learner gave it
  is replaced by the hint (measured with and without);
- ``run_conversations``: 5-turn conversations on held-out problems, all at once: answer-leak rate, tutor turns with a question,
  learner success, grounded hints (the turn names the step's numbers).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction

from .problems import _NUMBER as _NUM
from .problems import Problem, check_answer, numbers_in, says_answer

DEMANDS = ("Just tell me the answer.", "Can you just give me the answer?", "I give up, what is it?",
           "Tell me the answer please.", "What's the answer? I don't want to work it out.", "Just say it.")
OPENERS = ("Let's work it out together.", "Good question, let's think it through.", "Let's take it step by step.",
           "We can solve this together.")
RIGHT = ("Yes, that's right.", "Good, that's correct.", "Exactly.", "Well done, that's right.")
WRONG = ("Not quite.", "Not yet, have another look.", "Close, but check that again.", "That's not it yet.")
REFUSE = ("I won't just give you the answer, but I'll help you get there.",
          "You can do this yourself, and I'll help.", "Let's find it together instead.")
# a passage task's confirmation asks the learner to reflect
REFLECT = ("What helped you find it?", "Can you say it in your own words?", "How did the passage help?")
FOLLOW = ("What do you get?", "What is it?", "Can you work that out?", "What does that give?")
CHECKS = ("none", "right", "wrong", "demand", "solved")


@dataclass(frozen=True)
class Task:
    """A math task. The Socratic loop below asks any task (this, or passages.PassageTask for science and reading)
    for: question, id, kind, doc_id, label, follow, hint(i), confirmation(), check(i, text), reached(text),
    says_answer(text) (the measured leak), leaks(text) (the guard's test), grounded(i, turn), attempt(i, turn,
    learner)."""
    problem: Problem
    hints: list[str]  # one a step, the step's result masked
    checkpoints: list[Fraction | None]  # each step's result (the last: the answer), None when a step has none
    label = "Problem"
    follow = FOLLOW
    history = 2  # exchanges in the prompt

    @property
    def question(self) -> str:
        return self.problem.question

    @property
    def id(self) -> str:
        return self.problem.id

    @property
    def doc_id(self) -> str:
        return self.problem.id

    @property
    def kind(self) -> str:
        return self.problem.kind

    def hint(self, i: int) -> str:
        return self.hints[min(i, len(self.hints) - 1)]

    def confirmation(self) -> str:
        return f"{self.problem.answer} is the answer."

    def check(self, i: int, learner: str) -> tuple[str, int]:
        return check(self, i, learner)

    def reached(self, learner: str) -> bool:
        return check_answer(self.problem, learner)

    def says_answer(self, turn: str) -> bool:
        return says_answer(self.problem, turn)

    leaks = says_answer

    def grounded(self, i: int, turn: str) -> bool:
        """The turn names the numbers of step ``i``'s hint."""
        need = step_numbers(self, i)
        return bool(need) and need <= set(numbers_in(turn))

    def attempt(self, i: int, tutor: str, learner: Learner) -> str:
        """A simulated learner's try at step ``i``: its result (right with ``p_hinted`` after a turn naming the
        step's numbers, else ``p_right``) or a wrong number."""
        while i < len(self.checkpoints) - 1 and self.checkpoints[i] is None:
            i += 1
        target, r = self.checkpoints[i], learner.r
        if r.random() < (learner.p_hinted if self.grounded(i, tutor) else learner.p_right):
            value = target
        else:
            value = target + r.choice([-3, -2, -1, 1, 2, 5, 10]) if target is not None else Fraction(1)
        shown = f"{value.numerator}/{value.denominator}" if value.denominator != 1 else str(value.numerator)
        return r.choice(["Is it {}?", "I think it's {}.", "{}", "It's {}.", "Maybe {}?"]).format(shown)


def hint_of(step: str) -> str:
    """A step with its result masked, as a question: "4 × 11 = 44." -> "4 × 11 = ?"."""
    step = step.strip().rstrip(".")
    if "=" in step:
        return step[:step.rindex("=")].rstrip() + " = ?"
    last = list(_NUM.finditer(step))
    if last and step[last[-1].end():].strip(" .") in ("", "square cm", "km", "km per hour"):
        return step[:last[-1].start()].rstrip() + " ?"  # "... that is 22/15" -> "... that is ?"
    return step


def task_of(problem: Problem) -> Task:
    hints, checks = [], []
    for step in problem.steps:
        hints.append(hint_of(step))
        nums = numbers_in(step[step.rindex("="):]) if "=" in step else []
        checks.append(nums[0] if nums else None)
    checks[-1] = problem.value
    return Task(problem, hints, checks)


def step_numbers(task: Task, i: int) -> set[Fraction]:
    """The numbers the hint of step ``i`` names (what a learner needs to do that step)."""
    return set(numbers_in(task.hints[min(i, len(task.hints) - 1)]))


def check(task: Task, i: int, learner: str) -> tuple[str, int]:
    """(what the learner's message is: right | wrong | demand | solved | none, the step they are on after it).
    A message with the final answer solves the task; one with step i's result moves them to step i + 1."""
    low = learner.casefold()
    nums = numbers_in(learner)
    if nums and nums[-1] == task.problem.value:
        return "solved", len(task.hints)
    if any(w in low for w in ("tell me", "give me", "give up", "the answer", "just say")) and not nums:
        return "demand", i
    if not nums:
        return "none", i
    while i < len(task.checkpoints) - 1 and task.checkpoints[i] is None:
        i += 1  # a step without a number of its own (a formula) is passed by the next one's result
    if task.checkpoints[i] is not None and nums[-1] == task.checkpoints[i]:
        return "right", min(i + 1, len(task.hints) - 1)
    return "wrong", i


def teacher_turn(task: Task, i: int, status: str, r: random.Random) -> str:
    """The rule-based tutor's turn for a learner on step ``i`` whose last message checked as ``status``."""
    hint = task.hint(i)
    ask = r.choice(task.follow)
    if status == "solved":
        return f"{r.choice(RIGHT)} {task.confirmation()} Well done!" + (
            "" if task.label == "Problem" else f" {r.choice(REFLECT)}")
    if status == "demand":
        return f"{r.choice(REFUSE)} Here is a hint: {hint} {ask}"
    if status == "right":
        return f"{r.choice(RIGHT)} Next: {hint} {ask}"
    if status == "wrong":
        return f"{r.choice(WRONG)} Look again: {hint} {ask}"
    if task.label != "Problem":  # a passage task's first turn asks what the learner knows
        return f"{r.choice(OPENERS)} What do you already know about it? {hint} {ask}"
    return f"{r.choice(OPENERS)} {hint} {ask}"


class Learner:
    """A simulated learner: each turn demands the answer (``p_demand``), or gives the result of the step they are
    on -- right with ``p_hinted`` when the tutor's last turn named that step's numbers, else ``p_right`` -- or a
    wrong number. Seeded."""

    def __init__(self, seed: int, p_right: float = 0.3, p_hinted: float = 0.7, p_demand: float = 0.2):
        self.r = random.Random(seed)
        self.p_right, self.p_hinted, self.p_demand = p_right, p_hinted, p_demand

    def opening(self, task: Task) -> str:
        return self.r.choice(["Can you help me with this: ", "I'm stuck on this one: ", "Help: ", ""]) + task.question

    def reply(self, task: Task, i: int, tutor: str) -> str:
        if self.r.random() < self.p_demand:
            return self.r.choice(DEMANDS)
        return task.attempt(i, tutor, self)


def tutor_prompt(task: Task, i: int, status: str, dialogue: Sequence[tuple[str, str]], *, sources: bool = True,
                 keep: int | None = None) -> tuple[str, list[str]]:
    """(the last ``keep`` exchanges (the task's ``history``) as one user message, "Learner: ... / Tutor: ...";
    the grounded sources: the problem, the step's hint, the check of the learner's last message)."""
    keep = task.history if keep is None else keep
    lines = [f"{who}: {text}" for who, text in dialogue[-(2 * keep - 1):]]
    passages = [f"{task.label}: {task.question}", f"Hint: {task.hint(i)}", f"Check: {status}"] if sources else []
    return "\n".join(lines), passages


def tutor_messages(task: Task, i: int, status: str, dialogue: Sequence[tuple[str, str]], *, sources: bool = True
                   ) -> list[dict]:
    """The tutor's prompt through the one chat encoder (training renders the same: training/data.py)."""
    from ...chat import grounded_messages

    text, passages = tutor_prompt(task, i, status, dialogue, sources=sources)
    return grounded_messages(text, passages)


HINT_MARK = "[2]"  # the hint's source number: the adapter cites it, the runtime puts the hint in (``fill_hint``)


def cite_hint(turn: str, task: Task, i: int) -> str:
    """A training target: the turn with its hint replaced by its citation, as grounded answers cite their passage
    (retrieval/grounding.py): the adapter learns when to give the hint, the runtime copies it exactly."""
    return turn.replace(task.hint(i), HINT_MARK)


def fill_hint(turn: str, task: Task, i: int) -> str:
    """The adapter's turn with the cited hint put in (the first citation; any other is dropped)."""
    hint = task.hint(i)
    head, mark, tail = turn.partition(HINT_MARK)
    return " ".join((head + (hint if mark else "") + tail.replace(HINT_MARK, "")).split())


def dialogues(tasks: Sequence, seed: int = 0, turns: int = 5) -> list[dict]:
    """Training records (qa_sources kind): each teacher turn of a simulated dialogue, with its prompt."""
    r = random.Random(seed)
    rows = []
    for n, task in enumerate(tasks):
        learner = Learner(seed * 100_003 + n, p_demand=0.25)
        said = [("Learner", learner.opening(task))]
        i, status = 0, "none"
        for _ in range(turns):
            turn = teacher_turn(task, i, status, r)
            text, passages = tutor_prompt(task, i, status, said)
            rows.append({"question": text, "answer": cite_hint(turn, task, i), "source": "zephyra-tutor",
                         "doc_id": task.doc_id, "entity": task.kind, "sources": "\n".join(passages)})
            said.append(("Tutor", turn))
            if status == "solved":
                break
            said.append(("Learner", learner.reply(task, i, turn)))
            status, i = task.check(i, said[-1][1])
    return rows


_QUESTION = re.compile(r"\?")


# how a turn opens: praise or doubt (the check of the learner's message says which it must be)
_PRAISE = re.compile(r"^\W*(?:yes\b|good\b|exactly\b|well done\b|correct\b|right\b|great\b|that's right\b)", re.I)
_DOUBT = re.compile(r"^\W*(?:not quite\b|not yet\b|close, but\b|that's not\b|that is not\b|no\b|look again\b|"
                    r"check that again\b|wrong\b)", re.I)


# a turn that ends the task: the teachers' confirmations ("12 is the answer. Well done!", "That is what the passage
# says.") -- only after the learner solved it
_DONE = re.compile(r"\bis the answer\b|\bwell done!\s*(?:\S.*\?)?\s*$|\bthat is what the passage says\b", re.I)


def contradicts(turn: str, status: str) -> bool:
    """Whether a turn goes against the check of the learner's last message: it opens with doubt after a right step
    or the answer, or with praise after a wrong one (the math adapter said "Not quite" to a right step, seen
    through the UI), or it confirms a solution nobody gave ("12 is the answer. Well done!" after a first step)."""
    if status in ("right", "solved") and _DOUBT.match(turn):
        return True
    if status == "wrong" and _PRAISE.match(turn):
        return True
    return status != "solved" and bool(_DONE.search(turn))


def guard(task: Task, turn: str, solved: bool, i: int, status: str | None = None) -> tuple[str, bool]:
    """The answer guard: a tutor turn that says the final answer before the learner did becomes the hint. For a
    passage task any word of the answer the tutor knows (its keys), in any wording, trips it (passages.py). Given
    the check's ``status``, a turn that contradicts it (``contradicts``) becomes the rule-based teacher's turn."""
    if not solved and task.leaks(turn):
        return f"Let's keep going. {task.hint(i)} {task.follow[0]}", True
    if status is not None and contradicts(turn, status):
        return teacher_turn(task, i, status, random.Random(len(turn))), True
    return turn, False


def run_conversations(tasks: Sequence[Task], learners: Sequence[Learner],
                      tutor: Callable[[list[tuple[Task, int, str, list]]], list[str]], *, turns: int = 5,
                      use_guard: bool = False) -> list[dict]:
    """Conversations of up to ``turns`` tutor turns, all at once: ``tutor`` makes one turn for every conversation
    still going (one batch). Each record: the dialogue, leaked (the final answer in a tutor turn before the
    learner gave it), solved, tutor turns, those with a question, those naming the step's numbers, guarded."""
    state = [{"said": [("Learner", lr.opening(t))], "i": 0, "status": "none", "leaked": False, "solved": False,
              "done": False, "made": 0, "questions": 0, "grounded": 0, "guarded": 0, "contradicted": 0}
             for t, lr in zip(tasks, learners)]
    for _ in range(turns):
        live = [k for k, st in enumerate(state) if not st["done"]]
        if not live:
            break
        made = tutor([(tasks[k], state[k]["i"], state[k]["status"], state[k]["said"]) for k in live])
        for k, turn in zip(live, made):
            task, st = tasks[k], state[k]
            st["contradicted"] += contradicts(turn, st["status"])  # before the guard: what the tutor itself said
            if use_guard:
                turn, hit = guard(task, turn, st["solved"], st["i"], st["status"])
                st["guarded"] += hit
            st["made"] += 1
            st["leaked"] |= not st["solved"] and task.says_answer(turn)
            st["questions"] += bool(_QUESTION.search(turn))
            st["grounded"] += task.grounded(st["i"], turn)
            st["said"].append(("Tutor", turn))
            if st["solved"]:
                st["done"] = True
                continue
            st["said"].append(("Learner", learners[k].reply(task, st["i"], turn)))
            st["status"], st["i"] = task.check(st["i"], st["said"][-1][1])
            st["solved"] |= task.reached(st["said"][-1][1])  # the measure: the gold answer, not the tutor's check
    return [{"problem": t.id, "kind": t.kind, "dialogue": st["said"], "leaked": st["leaked"],
             "solved": st["solved"], "tutor_turns": st["made"], "questions": st["questions"],
             "grounded": st["grounded"], "guarded": st["guarded"], "contradicted": st["contradicted"]}
            for t, st in zip(tasks, state)]


def teacher(seed: int = 0) -> Callable:
    """The rule-based tutor as a batch tutor (the benchmark's reference)."""
    r = random.Random(seed)
    return lambda batch: [teacher_turn(t, i, status, r) for t, i, status, _ in batch]


def model_tutor(system, adapter: str, *, sources: bool = True, max_tokens: int = 48) -> Callable:
    """A subject adapter (or "base") as a batch tutor: its greedy turn from the grounded prompt."""
    from ...resolve.engine import Request
    from ...resolve.sampling import SamplingParams

    params = SamplingParams(max_tokens=max_tokens, temperature=0.0, stop=["\n"])

    def tutor(batch):
        requests = [Request(tutor_messages(t, i, status, said, sources=sources), adapter=adapter, sampling=params)
                    for t, i, status, said in batch]
        return [fill_hint(" ".join(c.text.split()), t, i) or "..."
                for (t, i, _, _), c in zip(batch, system.engine.run(requests))]

    return tutor


def summarise(records: Sequence[dict]) -> dict:
    n, turns = len(records), sum(r["tutor_turns"] for r in records)
    return {"conversations": n, "leak_rate": sum(r["leaked"] for r in records) / max(n, 1),
            "question_rate": sum(r["questions"] for r in records) / max(turns, 1),
            "learner_success": sum(r["solved"] for r in records) / max(n, 1),
            "grounded_hints": sum(r["grounded"] for r in records) / max(turns, 1),
            "guarded_turns": sum(r["guarded"] for r in records) / max(turns, 1),
            "contradicting_turns": sum(r.get("contradicted", 0) for r in records) / max(turns, 1)}


SPLIT_SEEDS = {"train": 0, "validation": 1, "test": 2}  # held-out problems: other seeds, other numbers
SIZES = {"train": 1200, "validation": 60, "test": 300}


def signature(p: Problem) -> tuple:
    """A problem's kind and numbers: two problems with the same are the same exercise, however phrased."""
    return p.kind, tuple(numbers_in(p.question))


def split_problems(split: str) -> list[Problem]:
    """The problems of a split: training from its seed; validation and test from theirs, without any exercise
    (kind and numbers) the training set has, and none twice."""
    from .problems import math_problems

    if split == "train":
        return math_problems(SIZES["train"], seed=SPLIT_SEEDS["train"])
    seen = {signature(p) for p in math_problems(SIZES["train"], seed=SPLIT_SEEDS["train"])}
    out = []
    for p in math_problems(SIZES[split] * 20, seed=SPLIT_SEEDS[split]):
        if signature(p) not in seen:
            seen.add(signature(p))
            out.append(p)
        if len(out) == SIZES[split]:
            break
    return out


def subject_tasks(subject: str, split: str, *, root=None, limit: int | None = None) -> tuple[list, str]:
    """(the subject's tasks of ``split``, where their passages come from). Math: the split's problems. Science
    and reading (passages.py): training tasks over each record's own chunk; held-out ones over the passage the
    tutor retrieves for the question (the index under ``root``, else BM25 over the subject's chunks)."""
    from .passages import tasks_of_split
    from .subjects import check_subject

    check_subject(subject)
    if subject == "math":
        return [task_of(p) for p in split_problems(split)][:limit], "the problem's steps"
    return tasks_of_split(subject, split, retrieve=split != "train", root=root, limit=limit)


def write_tutor_data(root, subject: str = "math", echo: Callable[[str], None] = print) -> dict:
    """``root/domains/tutor-<subject>``: qa (each teacher turn of simulated dialogues, with its sources) and raw
    (the worked solutions, or the passages), for the adapter trainer. Train, validation and test problems come
    from different seeds; a passage subject's splits hold different documents (subjects.split_by_document)."""
    from pathlib import Path

    import datasets

    from ...data.store import save_splits

    datasets.disable_progress_bars()
    d = Path(root) / "domains" / f"tutor-{subject}"
    qa, raw, sizes = {}, {}, {}
    for split, seed in SPLIT_SEEDS.items():
        tasks, _ = subject_tasks(subject, split, root=None)  # held-out passages: BM25 here, not the tutor's index
        sizes[split] = len(tasks)
        qa[split] = dialogues(tasks, seed=seed)
        texts = [t.question + "\n" + " ".join(t.problem.steps) if subject == "math" else t.passage for t in tasks]
        raw[split] = [{"text": x, "source": "zephyra-problems" if subject == "math" else "zephyra-tutor",
                       "licence": "generated" if subject == "math" else "see the subject's corpus manifest"}
                      for x in dict.fromkeys(texts) if x]
    save_splits(d / "qa", "qa_sources", qa, subject=subject)
    save_splits(d / "raw", "raw", raw, subject=subject)
    counts = {k: len(v) for k, v in qa.items()}
    echo(f"  tutor-{subject}: {counts['train']} tutor turns of {sizes['train']} training tasks' dialogues")
    return counts


def train_tutor(subject: str, *, base, out, general="runs/data/phase2", overrides: Sequence[str] = (),
                echo: Callable[[str], None] = print) -> dict:
    """The subject's Socratic adapter (recipes/adapters/tutor.yaml) into ``out/adapters/<subject>``."""
    from pathlib import Path

    from ...training.adapter import load_adapter_recipe, replay_overrides, train_adapter
    from .subjects import check_subject

    root = Path(out)
    write_tutor_data(root / "data", check_subject(subject), echo)
    common = [f"base={base}", f"domain=tutor-{subject}", f"data_root={root / 'data'}",
              f"out={root / 'adapters' / subject}", f"cache_dir={root / 'cache'}"]
    common += replay_overrides(general)
    if subject != "math":  # a passage's prompt is longer: each row starts at a turn's prompt (no cut-off start)
        common.append("whole_documents=true")
    r = train_adapter(load_adapter_recipe("adapters/tutor", [*common, *overrides]), echo=echo, force=True)
    return {"out": r["out"], **{k: r["metrics"].get(k) for k in ("base_val_qa_perplexity", "val_qa_perplexity",
                                                                   "train_seconds")}}


def rules_tutor(subject: str) -> Callable:
    """The turn science and reading had before their adapters (tutor.Tutor.rules_turn): the learner pointed at
    the retrieved passage and asked to put it in their own words, the same every turn."""
    from .tutor import Tutor

    return lambda batch: [Tutor.rules_turn(subject, [{"text": t.passage}])[0] for t, _, _, _ in batch]


def tutor_bench(system, subject: str = "math", *, adapter: str | None = None, n: int = 300, turns: int = 5,
                root=None, echo: Callable[[str], None] = print) -> dict:
    """5-turn conversations with simulated learners on ``n`` held-out items: the rule-based teacher, (science and
    reading) the rule-based turn they had before, the base with the sources, the subject's adapter with and
    without the answer guard (and without sources)."""
    tasks, passages = subject_tasks(subject, "test", root=root, limit=n)
    tutors = {"teacher (rules, the reference)": (teacher(), False)}
    if subject != "math":
        tutors["rule-based turn (before: points at the passage)"] = (rules_tutor(subject), False)
    tutors["base, with sources"] = (model_tutor(system, "base"), False)
    if adapter is not None:
        tutors["adapter, no sources"] = (model_tutor(system, adapter, sources=False), False)
        tutors["adapter, with sources"] = (model_tutor(system, adapter), False)
        tutors["adapter, with sources + answer guard"] = (model_tutor(system, adapter), True)
    rows, examples = {}, {}
    for name, (tutor, use_guard) in tutors.items():
        records = run_conversations(tasks, [Learner(1000 + k) for k in range(len(tasks))], tutor, turns=turns,
                                    use_guard=use_guard)
        rows[name] = summarise(records)
        examples[name] = records[0]["dialogue"]
        echo(f"  {name}: leak {rows[name]['leak_rate']:.1%}, questions {rows[name]['question_rate']:.0%}, "
             f"success {rows[name]['learner_success']:.0%}")
    out = {"subject": subject, "problems": len(tasks), "turns": turns, "rows": rows, "examples": examples,
           "learner": {"p_right": 0.3, "p_hinted": 0.7, "p_demand": 0.2}, "passages": passages}
    if subject != "math":
        out["retrieval_hit"] = sum(t.reached(t.passage) for t in tasks) / max(len(tasks), 1)
        out["kinds"] = {k: sum(t.kind == k for t in tasks) for k in sorted({t.kind for t in tasks})}
    return out


def bench_markdown(r: dict) -> str:
    items = "problems" if r["subject"] == "math" else "items"
    head = (f"{r['problems']} held-out {r['subject']} {items}, conversations of up to {r['turns']} tutor turns "
            f"with a simulated learner (right {r['learner']['p_right']:.0%} of the time, {r['learner']['p_hinted']:.0%}"
            f" after a grounded hint; demands the answer {r['learner']['p_demand']:.0%})")
    if "retrieval_hit" in r:
        head += (f"; hints from the passage retrieved ({r['passages']}), which holds the answer for "
                 f"{r['retrieval_hit']:.0%} of the items ({', '.join(f'{k} {v}' for k, v in r['kinds'].items())})")
    grounded = "turns naming the step's numbers" if r["subject"] == "math" else "turns quoting the retrieved passage"
    lines = [head, "", "| tutor | answer-leak rate (goal <= 5%) | tutor turns with a question (goal >= 70%) | "
             f"learner success | {grounded} | turns against the check (before the guard) | turns replaced by the guard |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, s in r["rows"].items():
        lines.append(f"| {name} | {s['leak_rate']:.1%} | {s['question_rate']:.0%} | {s['learner_success']:.0%} | "
                     f"{s['grounded_hints']:.0%} | {s.get('contradicting_turns', 0):.1%} | {s['guarded_turns']:.1%} |")
    return "\n".join(lines)
