"""Steering at run time, without training: a logit bias towards a character's own vocabulary and against modern
words (OpenAI's ``logit_bias``, applied per row by the engine).

    bias = vocabulary_bias("ophelia", tokenizer)          # {token id: +2.0 for her words, -100 for "computer"}
    SamplingParams(max_tokens=40, logit_bias=bias)

Her vocabulary: the tokens whose log-odds in her training-scene replies against every speaker's replies of the
play are highest (seen 3 times or more). Modern words are banned only where a word is one token that the play's
real lines never use (so no Shakespearean word that shares a token is touched).
"""

from __future__ import annotations

import math
from collections import Counter

from .characters import CHARACTERS, character_splits, play_pairs
from .fidelity import MODERN


def vocabulary_bias(slug: str, tokenizer, *, top: int = 40, strength: float = 2.0, ban_modern: bool = True,
                    cache: dict | None = None) -> dict[int, float]:
    play = CHARACTERS[slug][0]
    cache = {} if cache is None else cache
    mine = Counter(t for p in character_splits(slug, cache)["train"]
                   for t in tokenizer(p.reply, add_special_tokens=False)["input_ids"])
    everyone: Counter = Counter()
    for where, p in play_pairs(play):
        if where == "train":
            everyone.update(tokenizer(p.reply, add_special_tokens=False)["input_ids"])
    n_mine, n_all = sum(mine.values()) or 1, sum(everyone.values()) or 1
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    odds = {t: math.log((c + 1) / (n_mine + 1)) - math.log((everyone[t] + 1) / (n_all + 1))
            for t, c in mine.items() if c >= 3 and t not in special}
    bias = {t: strength for t in sorted(odds, key=odds.get, reverse=True)[:top]}
    if ban_modern:
        for w in MODERN:
            ids = tokenizer(" " + w, add_special_tokens=False)["input_ids"]
            if len(ids) == 1 and ids[0] not in everyone and ids[0] not in special:
                bias[ids[0]] = -100.0
    return bias
