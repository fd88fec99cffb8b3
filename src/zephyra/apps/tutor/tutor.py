"""The tutor at run time (``zephyra tutor ask``): a learner's message -> the subject (given, or the one whose index
answers it best), the top 3 passages of that subject's index (shown to the learner as context), and the tutor's
turn. For a math problem in one of the generated families' shapes, its worked steps are rebuilt
(problems.parse_problem) and the math adapter makes the Socratic turn from the grounded prompt, behind the answer
guard. Otherwise the turn points the learner at the best passage and asks them a question (rules: no subject
adapter is trained for science and reading yet).

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


class Tutor:
    def __init__(self, base: str | os.PathLike, root: str | os.PathLike = "runs/tutor"):
        from ...resolve.system import load_system

        self.root = Path(root)
        adapters = {s: self.root / "adapters" / s for s in SUBJECTS
                    if (self.root / "adapters" / s / "adapter_config.json").is_file()}
        self.system = load_system(base, None, None, adapter_dirs=adapters)
        self.indexes: dict = {}

    def close(self) -> None:
        self.system.close()

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

    def ask(self, message: str, subject: str | None = None) -> dict:
        from .problems import parse_problem
        from .socratic import guard, model_tutor, task_of, teacher_turn
        from .subjects import retrieve

        if not message.strip():
            raise DataError("empty message: ask the tutor something")
        subject = check_subject(subject) if subject else self.pick_subject(message)
        idx = self.index(subject)
        hits = retrieve(idx, message, k=3) if idx is not None else []
        sources = [{"id": h.id, "text": h.text, "score": round(float(h.score), 4)} for h in hits]
        problem = parse_problem(message) if subject == "math" else None
        if problem is not None:  # a passage that holds this very answer (the same exercise) is not shown
            from .problems import says_answer

            sources = [x for x in sources if not says_answer(problem, x["text"])]
            task = task_of(problem)
            said = [("Learner", message)]
            if subject in self.system.adapter_dirs:
                text, adapter = model_tutor(self.system, subject)([(task, 0, "none", said)])[0], subject
            else:
                import random

                text, adapter = teacher_turn(task, 0, "none", random.Random(0)), "rules"
            text, _ = guard(task, text, solved=False, i=0)
        elif sources:
            first = sources[0]["text"].split(". ")[0].strip()
            text, adapter = (f"Let's look at what the {subject} sources say: \"{first[:200]}\". What do you think "
                             f"that tells you?"), "rules"
        else:
            text, adapter = "What do you already know about this? Tell me your first thought.", "rules"
        return {"text": text, "subject": subject, "adapter": adapter, "sources": sources, "tool_calls": []}
