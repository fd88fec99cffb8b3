"""Small text helpers shared by the source parsers."""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\"'`])")
_ABBREV_END = re.compile(r"\b(?:e\.g|i\.e|etc|cf|vs|viz|Mr|Mrs|Dr|St|no|Fig|approx|ca)\.$", re.IGNORECASE)
_BRACES = re.compile(r"\{([^{}]*)\}")


def reflow(text: str) -> str:
    """Paragraphs (blank-line separated) become single lines; indentation and line breaks inside go."""
    paras = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text)]
    return "\n\n".join(p for p in paras if p)


def sentences(text: str) -> list[str]:
    """A light sentence splitter that does not split after common abbreviations."""
    parts = _SENTENCE_END.split(" ".join(text.split()))
    out: list[str] = []
    for part in parts:
        if out and _ABBREV_END.search(out[-1]):
            out[-1] = f"{out[-1]} {part}"
        else:
            out.append(part)
    return out


def first_sentence(text: str, min_words: int = 4, max_chars: int = 400) -> str:
    """The first sentence (with the next ones while it is shorter than ``min_words``), cut at ``max_chars``."""
    answer = ""
    for s in sentences(text):
        answer = f"{answer} {s}".strip()
        if len(answer.split()) >= min_words:
            break
    if len(answer) > max_chars:
        answer = answer[:max_chars].rsplit(" ", 1)[0].rstrip(",;:") + " ..."
    return answer


def unbrace(text: str) -> str:
    """dictd cross-references ``{compiler}`` -> ``compiler``."""
    return _BRACES.sub(r"\1", text)


def with_article(term: str) -> str:
    """"compiler" -> "a compiler", "operating system" -> "an operating system"; names stay bare."""
    if not term or not term[0].islower() or not re.fullmatch(r"[a-z][a-z -]*", term):
        return term
    return ("an " if term[0] in "aeiou" else "a ") + term
