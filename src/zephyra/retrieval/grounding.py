"""Grounding: retrieved chunks -> the passages a prompt carries, and the citations an answer makes.

The prompt is built by the one chat encoder (``zephyra.chat.grounded_messages``): a system message "Sources:" with
the passages numbered [1]..[k], then the conversation. Training (``zephyra.training.grounded``) and the runtime
build it the same way, from the same function here, so the adapter reads at run time exactly what it learnt on.

Each passage is cut to a token budget around the sentences that share the most words with the question
(``focus``), so k passages, the question and the answer fit the base's context. An answer cites the passage it
copied from as "[n]" (``cited``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import ConfigError

_WORD = re.compile(r"\w+", re.UNICODE)
_CITE = re.compile(r"\s*\[(\d{1,2})\]")
STOP = frozenset(["a", "an", "the", "of", "in", "on", "at", "to", "is", "are", "was", "were", "be", "what", "who", "whom", "which", "where", "when", "why", "how", "does", "do", "did", "say", "says", "said", "tell", "me", "about", "for", "and", "or", "it", "its", "this", "that", "with", "from", "by", "as", "can", "you", "please"])


ANSWERS = ("quote", "cited", "generate")


@dataclass(frozen=True)
class GroundingConfig:
    """How retrieval feeds a prompt. Stored in a grounded adapter's manifest; the runtime uses the adapter's own."""
    k: int = 3  # passages per prompt
    mode: str = "hybrid"  # hybrid, dense or sparse (zephyra.retrieval.index.MODES)
    passage_tokens: int = 48  # each passage is cut to this many tokens around its best sentences
    min_score: float = 0.3  # below this cosine for the best hit (and no hit named), retrieval found nothing relevant
    answer: str = "quote"  # quote: the best passage verbatim; cited: the passage the adapter cites; generate: its words

    def __post_init__(self):
        if self.k < 1:
            raise ConfigError(f"retrieval k must be at least 1, got {self.k}")
        if self.mode not in ("hybrid", "dense", "sparse"):
            raise ConfigError(f"retrieval mode must be hybrid, dense or sparse, got {self.mode!r}")
        if self.passage_tokens < 8:
            raise ConfigError(f"passage_tokens must be at least 8, got {self.passage_tokens}")
        if self.answer not in ANSWERS:
            raise ConfigError(f"retrieval answer must be one of {', '.join(ANSWERS)}, got {self.answer!r}")

    @classmethod
    def from_dict(cls, d: dict | None) -> GroundingConfig:
        d = dict(d or {})
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"retrieval: unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(known)})")
        return cls(**d)

    def to_dict(self) -> dict:
        return {"k": self.k, "mode": self.mode, "passage_tokens": self.passage_tokens, "min_score": self.min_score,
                "answer": self.answer}


def content_words(text: str) -> set[str]:
    return {w.casefold() for w in _WORD.findall(text)} - STOP


def focus(text: str, query: str, max_tokens: int, count_tokens) -> str:
    """``text`` cut to at most ``max_tokens`` (as ``count_tokens`` counts) keeping its opening label (what the
    chunk is: "Psalms 89:15", "HAMLET (Hamlet, ACT III, SCENE I)", "Iron") and the sentences that share most
    content words with ``query``, in their original order."""
    if count_tokens(text) <= max_tokens:
        return text
    sentences = [s for s in re.split(r"(?<=[.;:!?])\s+", text) if s]
    q = content_words(query)
    order = sorted(range(len(sentences)), key=lambda i: (-(len(q & content_words(sentences[i]))), i))
    keep: set[int] = set()
    used = 0
    for i in [0, *[j for j in order if j != 0]]:  # the first sentence carries the label
        n = count_tokens(sentences[i]) + 1
        if used + n > max_tokens:
            continue
        keep.add(i)
        used += n
    if not keep:  # one long first sentence: its head
        return _head(text, max_tokens, count_tokens)
    return " ".join(sentences[i] for i in sorted(keep))


def _head(text: str, max_tokens: int, count_tokens) -> str:
    words = text.split()
    lo, hi = 1, len(words)
    while lo < hi:  # the longest word prefix within the budget
        mid = (lo + hi + 1) // 2
        if count_tokens(" ".join(words[:mid])) <= max_tokens:
            lo = mid
        else:
            hi = mid - 1
    return " ".join(words[:lo])


def token_counter(tokenizer):
    """``text -> number of tokens`` (no special tokens), through the fast backend when there is one."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return lambda s: len(backend.encode(s, add_special_tokens=False).ids)
    return lambda s: len(tokenizer(s, add_special_tokens=False)["input_ids"])


def passages_for(query: str, texts: Sequence[str], cfg: GroundingConfig, tokenizer) -> list[str]:
    """The passages a prompt carries for ``query``: each retrieved text focused to ``cfg.passage_tokens``."""
    count = token_counter(tokenizer)

    return [focus(t, query, cfg.passage_tokens, count) for t in texts]


def cite(answer: str, n: int) -> str:
    """A training target: the answer and the number of the passage it copies from."""
    return f"{answer.rstrip()} [{n}]"


def cited(answer: str, k: int) -> list[int]:
    """The passage numbers (1-based, at most ``k``) an answer cites, in order, without repeats."""
    out: list[int] = []
    for m in _CITE.finditer(answer):
        n = int(m.group(1))
        if 1 <= n <= k and n not in out:
            out.append(n)
    return out


def strip_citations(answer: str) -> str:
    return _CITE.sub("", answer).strip()


def support(answer: str, passages: Sequence[str]) -> float:
    """Share of the answer's content words found in the passages (1.0: every word of it was there to copy)."""
    a = content_words(strip_citations(answer))
    if not a:
        return 0.0
    have = set().union(*(content_words(p) for p in passages)) if passages else set()
    return len(a & have) / len(a)
