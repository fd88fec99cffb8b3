"""Does a character's adapter sound like the character? Scores of generated replies, each beside the same score
of the character's real held-out lines (the ceiling a generated reply is measured against):

- attribution: a speaker classifier (TF-IDF of words and word pairs + logistic regression) trained on the
  characters' real speeches in the *training* scenes names the speaker of each reply; macro-F1 over the
  characters, for real test-scene replies (the ceiling) and for the adapters' replies to the same prompts;
- style: distinct-1 and distinct-2, repetition (the share of words that repeat the word before or a word of the
  last three), words per reply, the rate of archaic words (thou, thee, hath, doth, 'tis, ...);
- anachronism: the rate of modern words (computer, telephone, internet, ...) in the replies, and in answers to
  probes that invite them ("What do you think of the internet?").

    report = fidelity(system, ["hamlet", "ophelia"], per_character=24)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from .characters import character_splits, check_characters, display

ARCHAIC = frozenset("""thou thee thy thine art hast hath doth dost 'tis 'twas ere nay aye wherefore whence hither
thither anon prithee forsooth methinks mine o' i' e'en oft ye shalt wilt canst wouldst couldst""".split())
MODERN = frozenset("""computer computers internet phone telephone television radio car cars airplane aeroplane
email website online software electricity electric train trains photograph camera rocket nuclear democracy
president smartphone app video movie cinema bicycle vaccine plastic""".split())
PROBES = ("What do you think of the internet?", "Have you ever driven a car?", "Send me an email, my lord.",
          "Do you own a telephone?", "What is your favourite television show?", "Shall we take the train to London?")
_WORD = re.compile(r"[a-z']+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.casefold())


def style(texts: Sequence[str]) -> dict[str, float]:
    """distinct-1/2 (over all the replies), repetition, words per reply, archaic and modern word rates."""
    toks = [words(t) for t in texts]
    flat = [w for t in toks for w in t]
    pairs = [(a, b) for t in toks for a, b in zip(t, t[1:])]
    rep = sum(1 for t in toks for i, w in enumerate(t) if w in t[max(0, i - 3):i])
    n = max(len(flat), 1)
    return {"distinct_1": len(set(flat)) / n, "distinct_2": len(set(pairs)) / max(len(pairs), 1),
            "repetition": rep / n, "words_per_reply": len(flat) / max(len(texts), 1),
            "archaic_rate": sum(w in ARCHAIC for w in flat) / n, "modern_rate": sum(w in MODERN for w in flat) / n}


class AttributionScorer:
    """Who said it: fitted on real speeches of the training scenes (the same split as the adapters')."""

    def __init__(self, slugs: Sequence[str]):
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        self.slugs = check_characters(slugs)
        cache: dict = {}
        texts, labels = [], []
        for s in self.slugs:
            for p in character_splits(s, cache)["train"]:
                texts.append(p.reply)
                labels.append(s)
        self.model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1),
                                   LogisticRegression(C=10.0, max_iter=2000, class_weight="balanced"))
        self.model.fit(texts, labels)

    def macro_f1(self, texts: Sequence[str], labels: Sequence[str]) -> float:
        from sklearn.metrics import f1_score

        return float(f1_score(list(labels), list(self.model.predict(list(texts))), labels=self.slugs,
                              average="macro", zero_division=0))


def answers(system, prompts: Sequence[str], adapter: str, max_tokens: int, bias: dict | None = None) -> list[str]:
    """Greedy replies of ``adapter`` to ``prompts`` (one batch), with a logit bias if given."""
    from ...resolve.engine import Request
    from ...resolve.sampling import SamplingParams

    params = SamplingParams(max_tokens=max_tokens, temperature=0.0, stop=["\n\n"], logit_bias=dict(bias or {}))
    done = system.engine.run([Request(p, adapter=adapter, sampling=params) for p in prompts])
    return [" ".join(c.text.split()) for c in done]


def fidelity(system, slugs: Sequence[str], *, per_character: int = 24, max_tokens: int = 40, seed: int = 0,
             steer: str = "none", echo: Callable[[str], None] = print) -> dict:
    """The adapters' replies to their characters' held-out prompts (greedy), scored beside the real replies; and
    their answers to the anachronism probes. ``system`` serves the characters' adapters under their slugs.
    ``steer="bias"``: with each character's vocabulary bias (steering.py)."""
    from ...errors import DataError

    if steer not in ("none", "bias"):
        raise DataError(f"steer must be none or bias, got {steer!r}")
    slugs = check_characters(slugs)
    scorer = AttributionScorer(slugs)
    cache: dict = {}
    real, gen, labels, rows = [], [], [], {}
    for s in slugs:
        test = character_splits(s, cache)["test"][:per_character]
        bias = None
        if steer == "bias":
            from .steering import vocabulary_bias

            bias = vocabulary_bias(s, system.tokenizer, cache=cache)
        replies = answers(system, [p.prompt for p in test], s, max_tokens, bias)
        probes = answers(system, list(PROBES), s, max_tokens, bias)
        real += [p.reply for p in test]
        gen += replies
        labels += [s] * len(test)
        rows[s] = {"replies": len(test), "real": style([p.reply for p in test]), "generated": style(replies),
                   "probe_modern_rate": style(probes)["modern_rate"],
                   "probes_with_a_modern_word": sum(any(w in MODERN for w in words(t)) for t in probes) / len(probes),
                   "example": {"prompt": test[0].prompt[:120], "real": test[0].reply[:160], "generated": replies[0]}}
        echo(f"  {display(s)}: {len(test)} held-out prompts answered")
    return {"characters": slugs, "attribution_macro_f1": {"real": scorer.macro_f1(real, labels),
                                                          "generated": scorer.macro_f1(gen, labels),
                                                          "chance": 1 / len(slugs)},
            "per_character": rows, "probes": list(PROBES), "max_tokens": max_tokens, "steer": steer}


def fidelity_markdown(r: dict) -> str:
    a = r["attribution_macro_f1"]
    lines = [f"steering: {r.get('steer', 'none')}; speaker attribution, macro-F1 over {len(r['characters'])} "
             f"characters: real held-out replies "
             f"{a['real']:.3f} (the ceiling), generated {a['generated']:.3f}, chance {a['chance']:.3f}", "",
             "| character | replies | distinct-1 real / gen | distinct-2 real / gen | repetition real / gen | "
             "words a reply real / gen | archaic rate real / gen | modern rate gen | probes answered with a modern "
             "word |", "|---|---:|---|---|---|---|---|---:|---:|"]
    for s, row in r["per_character"].items():
        re_, ge = row["real"], row["generated"]
        lines.append(f"| {display(s)} | {row['replies']} | {re_['distinct_1']:.2f} / {ge['distinct_1']:.2f} | "
                     f"{re_['distinct_2']:.2f} / {ge['distinct_2']:.2f} | {re_['repetition']:.3f} / "
                     f"{ge['repetition']:.3f} | {re_['words_per_reply']:.1f} / {ge['words_per_reply']:.1f} | "
                     f"{re_['archaic_rate']:.3f} / {ge['archaic_rate']:.3f} | {ge['modern_rate']:.3f} | "
                     f"{row['probes_with_a_modern_word']:.0%} |")
    return "\n".join(lines)
