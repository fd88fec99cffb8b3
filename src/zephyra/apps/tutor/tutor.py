"""The tutor at run time (``zephyra tutor ask``): a learner's message -> the subject (given, or the one whose index
answers it best), the top 3 passages of that subject's index (shown to the learner as context), and the tutor's
turn. For a math problem in one of the generated families' shapes, its worked steps are rebuilt
(problems.parse_problem) and the math adapter makes the Socratic turn from the grounded prompt, behind the answer
guard. For science and reading, the top passage makes a passage task (passages.py: its answer's words masked in
the hint, the answer guard on those words) and the subject's adapter makes the turn from the same grounded prompt;
without an adapter (or a passage) the turn points the learner at the best passage and asks them a question.
When the tools adapter has its parser, a learner's answer to compare with a key is checked (check_answer) and a
unit conversion gets its factor as a hint (convert_units with 1): ``socratic_tools``, the calls in "tool_calls".

    tutor = Tutor("runs/phase2/final", "runs/tutor")
    tutor.ask("What is 4 × 11 - 3?")   # {"text", "subject", "adapter", "sources", "tool_calls"}
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ...errors import DataError
from .subjects import SUBJECTS, check_subject

_MATHY = re.compile(r"\d\s*(?:[-+×x*/%=]|percent|times|plus|minus)\s*\d|\d\s*x\s*[-+]", re.I)


SOCRATIC_TOOLS = ("check_answer", "convert_units")  # the calculator would do the learner's arithmetic: not offered
TOOLS_ADAPTER = Path("adapters") / "tools"  # under the tutor's root (zephyra tutor tools-train), with its parser


def socratic_tools(parser, message: str) -> tuple[list[dict], str]:
    """(the tool calls made for a learner's message, the words that open the tutor's turn with their results):
    the tool parser (``resolve.tools.parse_with``) decides among ``SOCRATIC_TOOLS``. ``check_answer`` checks the
    learner's answer against the one they were given and says whether they match; ``convert_units`` is called
    for the factor (1 unit of the first in the second), given as a hint, never the converted value (a
    temperature, whose scales are not a factor apart, gets no call). ([], "") when no tool fits."""
    import json

    from ...resolve.tools import parse_with
    from .tools import UNITS, Toolbox

    box = Toolbox.default()
    call = parse_with(parser, message, [t for t in box.tools if t.name in SOCRATIC_TOOLS])
    if call is None:
        return [], ""
    args = call["arguments"]
    if call["name"] == "check_answer":
        result = box.run("check_answer", args)
        lead = f"I checked {args['answer']} against {args['expected']}: " + \
            ("they match, well done." if json.loads(result)["correct"] else
             "they do not match yet. Which step would you check first?")
    else:
        f, t, value = args["from_unit"], args["to_unit"], args["value"]
        if f == t or UNITS[f][0] != UNITS[t][0] or UNITS[f][0] == "temperature":
            return [], ""
        args = {"value": 1, "from_unit": f, "to_unit": t}
        result = box.run("convert_units", args)
        lead = f"A hint from the unit table: {result}. How can you use that for {value:g} {f}?"
    return [{"id": "call_0", "name": call["name"], "arguments": args, "result": result}], lead


def tutor_adapters(root: Path) -> dict[str, Path]:
    """{subject: adapter dir} of the subject adapters under ``root/adapters`` (zephyra tutor build)."""
    return {s: root / "adapters" / s for s in SUBJECTS if (root / "adapters" / s / "adapter_config.json").is_file()}


class Tutor:
    def __init__(self, base: str | os.PathLike, root: str | os.PathLike = "runs/tutor"):
        from ...resolve.system import load_system

        self.root = Path(root)
        found = tutor_adapters(self.root)
        self.system, self.owned = load_system(base, None, None, adapter_dirs=found), True
        self.adapters = {s: s for s in found}  # subject -> the system's adapter name
        self.indexes: dict = {}

    @classmethod
    def from_system(cls, system, root: str | os.PathLike = "runs/tutor", prefix: str = "tutor/") -> Tutor:
        """The tutor on an existing system (the server's): its subject adapters are added to it as
        ``<prefix><subject>`` (checked as any adapter loaded while serving); ``close`` leaves the system open."""
        tutor = cls.__new__(cls)
        tutor.root, tutor.system, tutor.owned, tutor.indexes = Path(root), system, False, {}
        tutor.adapters = {}
        for subject, path in tutor_adapters(tutor.root).items():
            system.add_adapter(prefix + subject, path)
            tutor.adapters[subject] = prefix + subject
        return tutor

    def close(self) -> None:
        if self.owned:
            self.system.close()

    def tool_step(self, message: str) -> tuple[list[dict], str]:
        """``socratic_tools`` with the parser of the tutor's tools adapter (``TOOLS_ADAPTER``, loaded once); ([],
        "") when there is none."""
        if not hasattr(self, "_parser"):
            from ...retrieval.parser import adapter_parser

            self._parser = adapter_parser(self.root / TOOLS_ADAPTER)
        return socratic_tools(self._parser, message) if self._parser is not None else ([], "")

    def index(self, subject: str):
        from .subjects import open_subject_index

        if subject not in self.indexes:
            path = self.root / "index" / subject
            self.indexes[subject] = open_subject_index(self.root, subject) if (path / "manifest.json").is_file() \
                else None
        return self.indexes[subject]

    def pick_subject(self, message: str) -> str:
        """math for a message with arithmetic in it; else the subject whose index holds the closest passage."""
        from .problems import parse_problem

        if parse_problem(message) is not None or _MATHY.search(message):
            return "math"
        best, score = "reading", float("-inf")
        for s in SUBJECTS:
            idx = self.index(s)
            if idx is None:
                continue
            hits = idx.search([message], k=1, mode="hybrid")[0]
            if hits and hits[0].score > score:
                best, score = s, hits[0].score
        return best

    def retrieved(self, message: str, subject: str | None = None) -> tuple[str, list[dict]]:
        """(the subject, given or picked; the top 3 passages of its index as {"id", "text", "score"})."""
        from .subjects import retrieve

        if not message.strip():
            raise DataError("empty message: ask the tutor something")
        subject = check_subject(subject) if subject else self.pick_subject(message)
        idx = self.index(subject)
        hits = retrieve(idx, message, k=3) if idx is not None else []
        return subject, [{"id": h.id, "text": h.text, "score": round(float(h.score), 4)} for h in hits]

    def task_turn(self, subject: str, task, i: int, status: str, said: list[tuple[str, str]]) -> tuple[str, str]:
        """(the tutor's turn for a learner on step ``i`` of ``task`` -- a math problem or a passage task -- whose
        last message checked as ``status``, behind the answer guard (which also replaces a turn that contradicts
        the check); the adapter that made it, or "rules"): the subject adapter's greedy turn from the grounded
        prompt it was trained on (socratic.tutor_messages), else the rule-based teacher's. A passage task's first
        turn must give the hint (measured: the adapter once confirmed an answer nobody gave): else the rules'."""
        import random

        from .socratic import guard, model_tutor, teacher_turn

        rules = random.Random(len(said) if task.label == "Problem" else len(task.question))  # as before
        if subject in self.adapters:
            text, adapter = model_tutor(self.system, self.adapters[subject])([(task, i, status, said)])[0], \
                self.adapters[subject]
            if task.label != "Problem" and status == "none" and i == 0 and task.hint(0) not in text:
                text = teacher_turn(task, i, status, rules)
        else:
            text, adapter = teacher_turn(task, i, status, rules), "rules"
        text, _ = guard(task, text, solved=status == "solved", i=i, status=status)
        return text, adapter

    def math_turn(self, task, i: int, status: str, said: list[tuple[str, str]]) -> tuple[str, str]:
        return self.task_turn("math", task, i, status, said)

    def ask(self, message: str, subject: str | None = None) -> dict:
        from .passages import mask
        from .problems import parse_problem, says_answer
        from .socratic import task_of

        subject, sources = self.retrieved(message, subject)
        calls, lead = self.tool_step(message)
        problem = parse_problem(message) if subject == "math" else None
        if problem is not None:  # a passage that holds this very answer (the same exercise) is not shown
            sources = [x for x in sources if not says_answer(problem, x["text"])]
            text, adapter = self.math_turn(task_of(problem), 0, "none", [("Learner", message)])
        elif subject != "math" and subject in self.adapters and sources:
            text, adapter, keys = self.passage_turn(subject, message, sources[0]["text"])
            sources = [{**x, "text": mask(x["text"], keys)} for x in sources]  # the passages show the gaps too
        else:
            text, adapter = self.rules_turn(subject, sources)
        text = f"{lead} {text}" if lead else text
        return {"text": text, "subject": subject, "adapter": adapter, "sources": sources, "tool_calls": calls}

    def passage_turn(self, subject: str, message: str, passage: str) -> tuple[str, str, tuple[str, ...]]:
        """(the subject adapter's first turn on ``message`` over the retrieved ``passage`` (task_turn: the
        rule-based teacher's when the adapter's gives no hint), behind the answer guard on the passage's answer
        words; the adapter; those words)."""
        from .passages import passage_task

        task = passage_task(message, passage)
        text, adapter = self.task_turn(subject, task, 0, "none", [("Learner", message)])
        return text, adapter, task.keys

    @staticmethod
    def rules_turn(subject: str, sources: list[dict]) -> tuple[str, str]:
        """A turn without a subject adapter: the learner pointed at the best passage by its title, and asked to
        put what it says in their own words. The passage's words are not quoted: the answer is in them (the
        classroom measured 88-100% leaks when the turn quoted its first sentence)."""
        if sources:
            text = sources[0]["text"]  # a science entry's title is its headword; a reading passage's, its speaker
            head = text.split(":")[0].strip() if subject == "science" and ":" in text[:80] else ""
            on = f", on {head[:60]}" if head else ""
            return (f"Have a look at source [1]{on}. What does it tell you about your question? Put it in your "
                    f"own words, and I'll tell you if you are on the right track."), "rules"
        return "What do you already know about this? Tell me your first thought.", "rules"
