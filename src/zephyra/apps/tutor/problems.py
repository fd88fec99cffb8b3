"""Math problems generated with worked, checkable solutions: the tutor's math subject and its Socratic dialogues.

Every problem has an exact answer (an integer, a fraction or a decimal with its unit) and the steps that reach it,
so a learner's answer can be checked and a hint can be the next step without the last one. Deterministic by seed;
``kind`` families: arithmetic, fractions, percentages, linear equations, areas, rates.

    for p in math_problems(3, seed=0):
        print(p.question, p.steps, p.answer)
    check_answer(p, "x = 4")        # True when the text's last number (or fraction) is the answer
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction

KINDS = ("arithmetic", "fractions", "percentages", "equations", "areas", "rates")


@dataclass(frozen=True)
class Problem:
    id: str
    kind: str
    question: str
    steps: list[str]  # the worked solution; the last step states the answer
    answer: str  # "12", "3/4", "7.5 km"
    value: Fraction  # the answer's number, for checking
    unit: str = ""
    facts: dict = field(default_factory=dict)  # the numbers of the problem (for hints that name them)

    def to_dict(self) -> dict:
        return {"id": self.id, "kind": self.kind, "question": self.question, "steps": list(self.steps),
                "answer": self.answer, "unit": self.unit}


def _fmt(v: Fraction) -> str:
    if v.denominator == 1:
        return str(v.numerator)
    if 100 % v.denominator == 0 or v.denominator in (2, 4, 5, 8, 10, 20, 25, 40, 50):
        return f"{float(v):g}"
    return f"{v.numerator}/{v.denominator}"


def _arithmetic(r: random.Random) -> tuple:
    a, b, c = r.randint(2, 12), r.randint(2, 12), r.randint(1, 20)
    op = r.choice(["+", "-"])
    prod = a * b
    value = prod + c if op == "+" else prod - c
    q = r.choice([f"What is {a} × {b} {op} {c}?", f"Work out {a} times {b} {'plus' if op == '+' else 'minus'} {c}.",
                  f"Calculate {a} * {b} {op} {c}."])
    steps = [f"Multiply first: {a} × {b} = {prod}.", f"Then {prod} {op} {c} = {value}."]
    return q, steps, Fraction(value), "", {"a": a, "b": b, "c": c}


def _fractions(r: random.Random) -> tuple:
    d1, d2 = r.choice([2, 3, 4, 5, 6]), r.choice([2, 3, 4, 6, 8])
    n1, n2 = r.randint(1, d1 - 1), r.randint(1, d2 - 1)
    x, y = Fraction(n1, d1), Fraction(n2, d2)
    common = d1 * d2 // __import__("math").gcd(d1, d2)
    total = x + y
    q = r.choice([f"What is {n1}/{d1} + {n2}/{d2}?", f"Add {n1}/{d1} and {n2}/{d2}.",
                  f"Find the sum of {n1}/{d1} and {n2}/{d2} in lowest terms."])
    steps = [f"Use a common denominator, {common}: {n1}/{d1} = {x.numerator * common // x.denominator}/{common} and "
             f"{n2}/{d2} = {y.numerator * common // y.denominator}/{common}.",
             f"Add the numerators: {(x + y) * common}/{common}.",
             f"In lowest terms that is {total.numerator}/{total.denominator}." if total.denominator != 1
             else f"That is {total.numerator}."]
    answer = f"{total.numerator}/{total.denominator}" if total.denominator != 1 else str(total.numerator)
    return q, steps, total, "", {"answer_text": answer}


def _percentages(r: random.Random) -> tuple:
    p, n = r.choice([5, 10, 15, 20, 25, 30, 40, 50, 75]), r.choice([20, 40, 60, 80, 120, 200, 240, 300])
    value = Fraction(p * n, 100)
    q = r.choice([f"What is {p}% of {n}?", f"Find {p} percent of {n}.",
                  f"A coat costs {n} pounds. How much is a {p}% discount?"])
    steps = [f"{p}% means {p}/100.", f"{p}/100 × {n} = {p * n}/100.", f"{p * n}/100 = {_fmt(value)}."]
    return q, steps, value, "", {"p": p, "n": n}


def _equations(r: random.Random) -> tuple:
    a, x, b = r.randint(2, 9), r.randint(1, 12), r.randint(1, 20)
    c = a * x + b
    q = r.choice([f"Solve for x: {a}x + {b} = {c}.", f"Find x if {a}x + {b} = {c}.",
                  f"What value of x makes {a}x + {b} = {c} true?"])
    steps = [f"Subtract {b} from both sides: {a}x = {c - b}.", f"Divide both sides by {a}: x = {x}."]
    return q, steps, Fraction(x), "", {"a": a, "b": b, "c": c}


def _areas(r: random.Random) -> tuple:
    shape = r.choice(["rectangle", "triangle", "square"])
    if shape == "rectangle":
        w, h = r.randint(2, 15), r.randint(2, 15)
        value = Fraction(w * h)
        q = f"A rectangle is {w} cm wide and {h} cm tall. What is its area?"
        steps = ["The area of a rectangle is width × height.", f"{w} × {h} = {w * h} square cm."]
    elif shape == "square":
        s = r.randint(2, 15)
        value = Fraction(s * s)
        q = f"What is the area of a square with sides of {s} cm?"
        steps = ["The area of a square is side × side.", f"{s} × {s} = {s * s} square cm."]
    else:
        b, h = r.randint(2, 16), r.randint(2, 16)
        value = Fraction(b * h, 2)
        q = f"A triangle has a base of {b} cm and a height of {h} cm. What is its area?"
        steps = ["The area of a triangle is half of base × height.", f"{b} × {h} = {b * h}.",
                 f"Half of {b * h} is {_fmt(value)} square cm."]
    return q, steps, value, "square cm", {"shape": shape}


def _rates(r: random.Random) -> tuple:
    speed, hours = r.choice([30, 40, 45, 50, 60, 80]), r.choice([2, 3, 4, 5])
    if r.random() < 0.5:
        value = Fraction(speed * hours)
        q = f"A train travels at {speed} km per hour for {hours} hours. How far does it go?"
        steps = ["Distance is speed × time.", f"{speed} × {hours} = {speed * hours} km."]
        unit = "km"
    else:
        dist = speed * hours
        value = Fraction(speed)
        q = f"A car drives {dist} km in {hours} hours. What is its average speed?"
        steps = ["Speed is distance ÷ time.", f"{dist} ÷ {hours} = {speed} km per hour."]
        unit = "km per hour"
    return q, steps, value, unit, {"speed": speed, "hours": hours}


_MAKERS = {"arithmetic": _arithmetic, "fractions": _fractions, "percentages": _percentages,
           "equations": _equations, "areas": _areas, "rates": _rates}


def math_problems(n: int, seed: int = 0, kinds: Sequence[str] | None = None) -> list[Problem]:
    """``n`` problems, the families in turn (``kinds``: some of KINDS), deterministic by ``seed``."""
    from ...errors import DataError

    kinds = list(kinds or KINDS)
    unknown = [k for k in kinds if k not in _MAKERS]
    if unknown:
        raise DataError(f"unknown problem kind {unknown[0]!r}; known: {', '.join(KINDS)}")
    r = random.Random(seed)
    out = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        q, steps, value, unit, facts = _MAKERS[kind](r)
        answer = facts.pop("answer_text", None) or _fmt(value)
        out.append(Problem(id=f"math-{seed}-{i}", kind=kind, question=q, steps=steps,
                           answer=f"{answer} {unit}".strip(), value=value, unit=unit, facts=facts))
    return out


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:\s*/\s*\d+)?")


def numbers_in(text: str, lowest_terms: bool = False) -> list[Fraction]:
    """Every number in ``text`` (integers, decimals, fractions such as 3/4), in order; ``lowest_terms``: a fraction
    not in lowest terms ("3000/100", a step still to be done) is left out."""
    import math

    out = []
    for m in _NUMBER.finditer(text.replace(",", "")):
        s = m.group(0).replace(" ", "")
        if lowest_terms and "/" in s:
            a, b = (int(x) for x in s.split("/"))
            if b == 0 or math.gcd(a, b) != 1:
                continue
        try:
            out.append(Fraction(s))
        except (ValueError, ZeroDivisionError):
            continue
    return out


def check_answer(problem: Problem, text: str) -> bool:
    """Whether ``text`` gives the problem's answer: its last number equals it (3/4, 0.75 and 6/8 all do)."""
    nums = numbers_in(text)
    return bool(nums) and nums[-1] == problem.value


def says_answer(problem: Problem, text: str) -> bool:
    """Whether ``text`` gives the answer away (a leak, in a tutor's turn): it states the answer's number (a
    fraction in lowest terms; "3000/100 = ?" is a step left to the learner), and that number is not one the
    question itself gives."""
    if problem.value in numbers_in(problem.question):
        return False  # cannot tell a leak from quoting the question
    return any(v == problem.value for v in numbers_in(text, lowest_terms=True))


# --- a learner's own problem, when it has one of the families' shapes (``zephyra tutor ask``) ---------------------

_N = r"(-?\d+)"
_SHAPES = (
    ("arithmetic", re.compile(rf"{_N}\s*(?:×|x|\*|times)\s*{_N}\s*(\+|-|plus|minus)\s*{_N}", re.I)),
    ("equations", re.compile(rf"{_N}\s*x\s*\+\s*{_N}\s*=\s*{_N}", re.I)),
    ("percentages", re.compile(rf"{_N}\s*(?:%|percent)\s*of\s*{_N}", re.I)),
    ("fractions", re.compile(rf"{_N}\s*/\s*{_N}\s*(?:\+|and|plus)\s*{_N}\s*/\s*{_N}", re.I)),
)


class _Fixed(random.Random):
    """A Random whose integers are given in turn (and whose choices are the first), to rebuild a family's steps
    from a learner's numbers."""

    def __init__(self, ints, op=None):
        super().__init__(0)
        self.ints, self.op = list(ints), op

    def randint(self, a, b):
        return self.ints.pop(0)

    def choice(self, seq):
        seq = list(seq)
        if self.op is not None and self.op in seq:
            return self.op
        if self.ints and self.ints[0] in seq:
            return self.ints.pop(0)
        return seq[0]


def parse_problem(text: str) -> Problem | None:
    """The problem ``text`` poses, with its worked steps, when it has one of the generated families' shapes
    ("What is 4 × 11 - 3?", "Solve 3x + 2 = 11", "15% of 80", "1/2 + 1/3"); else None."""
    for kind, shape in _SHAPES:
        m = shape.search(text)
        if not m:
            continue
        g = m.groups()
        if kind == "arithmetic":
            op = "+" if g[2].casefold() in ("+", "plus") else "-"
            r = _Fixed([int(g[0]), int(g[1]), int(g[3])], op)
        elif kind == "equations":
            a, b, c = int(g[0]), int(g[1]), int(g[2])
            if a == 0 or (c - b) % a:
                return None
            r = _Fixed([a, (c - b) // a, b])
        elif kind == "percentages":
            r = _Fixed([int(g[0]), int(g[1])])
        else:
            d1, n1, d2, n2 = int(g[1]), int(g[0]), int(g[3]), int(g[2])
            if not d1 or not d2:
                return None
            r = _Fixed([d1, d2, n1, n2])
        q, steps, value, unit, facts = _MAKERS[kind](r)
        answer = facts.pop("answer_text", None) or _fmt(value)
        return Problem(id="asked", kind=kind, question=text.strip(), steps=steps, answer=f"{answer} {unit}".strip(),
                       value=value, unit=unit, facts=facts)
    return None
