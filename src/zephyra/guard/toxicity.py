"""Toxicity scores for text: the curation's filter and the server's output check.

    from zephyra.guard.toxicity import toxicity_scores, ToxicityPolicy
    toxicity_scores(["you are a fucking idiot", "thou art a boil, a plague sore"])  # -> [1.0, 0.07]
    policy = ToxicityPolicy(threshold=0.8, action="mask")
    policy.apply("what the fuck is this")  # -> ("what the **** is this", True)

The classifier is alt-profanity-check's (a linear SVM over character and word n-grams, calibrated, trained on
~200k labelled comments; its model ships inside the package, offline). Its package loads the model with joblib
(a pickle) from its own installed files when imported: we import it lazily, once. It is a bag-of-n-grams model,
so one profane line in a long document is diluted by the rest: a text is scored line by line (long lines in
windows of ``WINDOW_WORDS`` words) and its score is the highest. Measured against the word list it replaced in
docs/security.md ("Content and data safety"); ``python -m zephyra.guard.toxicity --help`` reproduces it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from ..errors import ConfigError

DEFAULT_THRESHOLD = 0.8  # chosen on the labelled set in docs/security.md: precision first (old texts swear)
WINDOW_WORDS = 48
_WORD = re.compile(r"\S+")


@lru_cache(maxsize=1)
def _predict_prob():
    from profanity_check import predict_prob  # loads its vectorizer and model (joblib) on first import

    return predict_prob


def _windows(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        words = line.split()
        for i in range(0, len(words), WINDOW_WORDS):
            out.append(" ".join(words[i:i + WINDOW_WORDS]))
    return out or [""]


def toxicity_scores(texts: Sequence[str]) -> list[float]:
    """The probability that each text is toxic (0..1): the highest over its lines and windows."""
    pieces, owner = [], []
    for i, t in enumerate(texts):
        for w in _windows(t):
            pieces.append(w)
            owner.append(i)
    if not pieces:
        return []
    probs = _predict_prob()(pieces)
    best = [0.0] * len(texts)
    for i, p in zip(owner, probs):
        best[i] = max(best[i], float(p))
    return best


def toxicity_score(text: str) -> float:
    return toxicity_scores([text])[0]


def mask_toxic(text: str, threshold: float = DEFAULT_THRESHOLD, mask: str = "*") -> tuple[str, int]:
    """Each word the classifier scores at or above ``threshold`` on its own, replaced by ``mask`` characters
    (punctuation around it kept); returns (text, words masked)."""
    spans = [m for m in _WORD.finditer(text)]
    if not spans:
        return text, 0
    cores = [m.group(0).strip(".,;:!?'\"()[]") or m.group(0) for m in spans]
    probs = _predict_prob()(cores)
    out, last, n = [], 0, 0
    for m, core, p in zip(spans, cores, probs):
        if p >= threshold:
            start = m.start() + m.group(0).find(core)
            out += [text[last:start], mask * len(core)]
            last = start + len(core)
            n += 1
    out.append(text[last:])
    return "".join(out), n


@dataclass
class ToxicityPolicy:
    """What the server does with a generated text that scores at or above ``threshold``: ``withhold`` replaces
    it with ``message``; ``mask`` stars out the words that score high on their own (and withholds the text when
    none does, since then the toxicity is not in one word)."""
    threshold: float = DEFAULT_THRESHOLD
    action: Literal["withhold", "mask"] = "withhold"
    message: str = "[withheld: the generated text was flagged as toxic]"

    def __post_init__(self):
        if not 0.0 < self.threshold <= 1.0:
            raise ConfigError(f"toxicity threshold must lie in (0, 1], got {self.threshold}")
        if self.action not in ("withhold", "mask"):
            raise ConfigError(f"toxicity action must be 'withhold' or 'mask', got {self.action!r}")

    def apply(self, text: str) -> tuple[str, bool]:
        """(the text to send, whether it was flagged)."""
        if not text or toxicity_score(text) < self.threshold:
            return text, False
        if self.action == "mask":
            masked, n = mask_toxic(text, self.threshold)
            if n:
                return masked, True
        return self.message, True


def main(argv: list[str] | None = None) -> int:
    """``python -m zephyra.guard.toxicity [--threshold T] TEXT...``: one line per text, ``score<TAB>text``."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m zephyra.guard.toxicity", description=main.__doc__)
    p.add_argument("texts", nargs="+")
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    a = p.parse_args(argv)
    for t, s in zip(a.texts, toxicity_scores(a.texts)):
        print(f"{s:.3f}\t{'TOXIC' if s >= a.threshold else 'ok'}\t{t}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
