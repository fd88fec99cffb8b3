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

from .characters import CHARACTERS, character_splits, check_characters, display

ARCHAIC = frozenset("""thou thee thy thine art hast hath doth dost 'tis 'twas ere nay aye wherefore whence hither
thither anon prithee forsooth methinks mine o' i' e'en oft ye shalt wilt canst wouldst couldst""".split())
MODERN = frozenset("""computer computers internet phone telephone television radio car cars airplane aeroplane
email website online software electricity electric train trains photograph camera rocket nuclear democracy
president smartphone app video movie cinema bicycle vaccine plastic""".split())
PROBES = ("What do you think of the internet?", "Have you ever driven a car?", "Send me an email, my lord.",
          "Do you own a telephone?", "What is your favourite television show?", "Shall we take the train to London?")
_WORD = re.compile(r"[a-z']+")
# "point in time": what a character cannot know yet, asked in an early scene. (character, act, scene setting, the
# prompt, words that would tell of what happens later). Scored against the same words in their real lines up to
# that act (Hamlet speaks of his dead father in Act I: "dead" alone would not do, so each probe names its subject).
_DEATH = ("dead", "slain", "killed", "kill'd", "murdered", "murder'd", "grave", "buried", "drowned", "drown'd")
POINT_IN_TIME = (
    ("hamlet", 1, "A platform before the castle.", "Horatio: What news of Polonius and Ophelia, my lord?",
     ("polonius", "ophelia"), _DEATH + ("arras", "mad")),
    ("ophelia", 1, "A room in Polonius' house.", "Laertes: How fares our father, sister?", ("father",),
     _DEATH + ("mad",)),
    ("polonius", 1, "A room in Polonius' house.", "Reynaldo: Shall I find you well at my return, my lord?",
     ("i", "me"), _DEATH + ("arras", "stabbed")),
    ("gertrude", 1, "A room of state in the castle.", "Claudius: Is Polonius well, madam?", ("polonius",),
     _DEATH + ("arras",)),
    ("horatio", 1, "A platform before the castle.", "Marcellus: Where is the Lady Ophelia tonight?",
     ("ophelia", "she", "her"), _DEATH + ("willow", "brook")),
    ("claudius", 1, "A room of state in the castle.", "Polonius: Is the prince your son at peace?",
     ("hamlet", "prince", "he"), ("poison", "poisoned", "sword", "duel", "fencing") + _DEATH),
    ("macbeth", 1, "A heath near Forres.", "Banquo: Is the king well tonight?", ("king", "duncan"), _DEATH),
    ("lady-macbeth", 1, "Inverness. Macbeth's castle.", "Macbeth: How fares the king?", ("king", "duncan"),
     _DEATH + ("blood", "spot")),
    ("banquo", 1, "A heath near Forres.", "Macbeth: Shall we ride together tomorrow?", ("i", "me", "we"),
     _DEATH + ("murderers", "ghost")),
)


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


def training_lines(slugs: Sequence[str]) -> tuple[list[str], list[str]]:
    """(texts, speakers): the characters' real replies in the training scenes, what both judges are fitted on."""
    cache: dict = {}
    pairs = [(p.reply, s) for s in slugs for p in character_splits(s, cache)["train"]]
    return [t for t, _ in pairs], [s for _, s in pairs]


class AttributionScorer:
    """Who said it: fitted on real speeches of the training scenes (the same split as the adapters')."""

    def __init__(self, slugs: Sequence[str]):
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        self.slugs = check_characters(slugs)
        texts, labels = training_lines(self.slugs)
        self.model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1),
                                   LogisticRegression(C=10.0, max_iter=2000, class_weight="balanced"))
        self.model.fit(texts, labels)

    def probabilities(self, text: str) -> dict[str, float]:
        """{character: the probability that ``text`` is theirs}."""
        row = self.model.predict_proba([text])[0]
        return {str(c): float(p) for c, p in zip(self.model.classes_, row)}

    def macro_f1(self, texts: Sequence[str], labels: Sequence[str]) -> float:
        from sklearn.metrics import f1_score

        return float(f1_score(list(labels), list(self.model.predict(list(texts))), labels=self.slugs,
                              average="macro", zero_division=0))


def answers(system, prompts: Sequence, adapter: str, max_tokens: int, bias: dict | None = None,
            temperature: float = 0.0) -> list[str]:
    """Greedy replies (or sampled at ``temperature``, seed 0) of ``adapter`` to ``prompts`` (strings, or messages
    with their sources; one batch), with a logit bias if given."""
    from ...resolve.engine import Request
    from ...resolve.sampling import SamplingParams

    params = SamplingParams(max_tokens=max_tokens, temperature=temperature, top_p=0.95 if temperature else 1.0,
                            seed=0, stop=["\n\n"], logit_bias=dict(bias or {}))
    done = system.engine.run([Request(p, adapter=adapter, sampling=params) for p in prompts])
    return [" ".join(c.text.split()) for c in done]


STEERS = ("none", "bias", "cfg", "activation", "selfcheck", "sample")
CFG_SCALE = 1.5  # classifier-free guidance: the RAG prompt against the bare prompt
ACT_SCALE = 2.0  # activation steering: twice the character's mean difference
SELF_CHECK_TRIES = 4  # sampled candidates for a rejected reply


class EmbeddingJudge:
    """A second speaker classifier that shares nothing with ``AttributionScorer`` but the training lines: MiniLM
    sentence embeddings (the shipped all-MiniLM-L6-v2) and logistic regression. The self-check steers by the
    TF-IDF scorer; this judge says whether that moved anything a different reader sees."""

    def __init__(self, slugs: Sequence[str]):
        from sklearn.linear_model import LogisticRegression

        from ...retrieval.embed import MiniLMEncoder
        from ...retrieval.index import shared_encoder

        self.slugs = check_characters(slugs)
        self.encoder = shared_encoder(MiniLMEncoder)
        texts, labels = training_lines(self.slugs)
        self.model = LogisticRegression(C=4.0, max_iter=3000, class_weight="balanced")
        self.model.fit(self._embed(texts), labels)

    def _embed(self, texts):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return self.encoder([t or "..." for t in texts])

    def macro_f1(self, texts: Sequence[str], labels: Sequence[str]) -> float:
        from sklearn.metrics import f1_score

        return float(f1_score(list(labels), list(self.model.predict(self._embed(list(texts)))), labels=self.slugs,
                              average="macro", zero_division=0))


def accepted(scorer, slug: str, text: str) -> bool:
    """The self-check: the speaker classifier names the character, and no modern word is in the reply."""
    return bool(words(text)) and scorer.model.predict([text])[0] == slug and not any(w in MODERN for w in words(text))


def self_checked(system, prompts: Sequence, slug: str, max_tokens: int, scorer) -> tuple[list[str], dict]:
    """Greedy replies; each one the check rejects is regenerated: SELF_CHECK_TRIES sampled candidates (one batch),
    the first accepted kept, else the one the scorer gives most to the character. (replies, counts)."""
    from ...resolve.engine import Request
    from ...resolve.sampling import SamplingParams

    out = answers(system, prompts, slug, max_tokens)
    bad = [i for i, t in enumerate(out) if not accepted(scorer, slug, t)]
    requests = [Request(prompts[i], adapter=slug, sampling=SamplingParams(
        max_tokens=max_tokens, temperature=0.8, top_p=0.95, seed=k, stop=["\n\n"]))
        for i in bad for k in range(SELF_CHECK_TRIES)]
    done = [" ".join(c.text.split()) for c in system.engine.run(requests)] if requests else []
    fixed = 0
    for j, i in enumerate(bad):
        cands = done[j * SELF_CHECK_TRIES:(j + 1) * SELF_CHECK_TRIES]
        good = [c for c in cands if accepted(scorer, slug, c)]
        fixed += bool(good)
        out[i] = good[0] if good else max(cands, key=lambda c: scorer.probabilities(c).get(slug, 0.0))
    return out, {"rejected": len(bad), "fixed": fixed}


def tells_the_future(text: str, subject: Sequence[str], later: Sequence[str]) -> bool:
    """The reply names the probe's subject and one of the later events' words."""
    w = set(words(text))
    return bool(w & set(subject)) and bool(w & set(later))


def point_in_time(system, slugs: Sequence[str], max_tokens: int = 40) -> dict:
    """The point-in-time probes of ``slugs``' characters (greedy, by their adapters): the share of replies that
    tell of what happens later, beside the same test on the character's real lines up to that act."""
    from .plays import load_play

    rows = []
    for slug, act, where, prompt, subject, later in POINT_IN_TIME:
        if slug not in slugs:
            continue
        reply = answers(system, [f"[{where}]\n{prompt}"], slug, max_tokens)[0]
        name = CHARACTERS[slug][1]
        lines = [sp.text for sc in load_play(CHARACTERS[slug][0]) if sc.act <= act for sp in sc.speeches
                 if sp.speaker == name]
        rows.append({"character": slug, "act": act, "prompt": prompt, "reply": reply,
                     "tells_the_future": tells_the_future(reply, subject, later),
                     "real_lines_rate": sum(tells_the_future(t, subject, later) for t in lines) / max(len(lines), 1)})
    return {"probes": rows, "rate": sum(r["tells_the_future"] for r in rows) / max(len(rows), 1),
            "real_rate": sum(r["real_lines_rate"] for r in rows) / max(len(rows), 1)}


def fidelity(system, slugs: Sequence[str], *, per_character: int = 24, max_tokens: int = 40, seed: int = 0,
             steer: str = "none", memory=None, judge: bool = True, echo: Callable[[str], None] = print) -> dict:
    """The adapters' replies to their characters' held-out prompts (greedy), scored beside the real replies; and
    their answers to the anachronism probes. ``system`` serves the characters' adapters under their slugs.
    ``memory`` (a directory of rag.py's indexes): every prompt carries the character's recalled lines and the
    scene's setting (RAG from the plays). ``steer``: none; bias (each character's vocabulary logit bias,
    steering.py); cfg (classifier-free guidance, the RAG prompt against the bare one: needs ``memory``);
    activation (the character's direction added at the first branch layer); selfcheck (a reply the speaker
    classifier or the anachronism check rejects is regenerated); sample (one reply sampled at 0.8, unchecked: the
    self-check's baseline). ``judge``: also the MiniLM judge's macro-F1."""
    from ...errors import DataError

    if steer not in STEERS:
        raise DataError(f"steer must be one of {', '.join(STEERS)}, got {steer!r}")
    if steer == "cfg" and memory is None:
        raise DataError("steer cfg guides the prompt with the recalled lines against the bare one: it needs --rag")
    slugs = check_characters(slugs)
    scorer = AttributionScorer(slugs)
    cache: dict = {}
    real, gen, labels, rows, checks = [], [], [], {}, {}
    for s in slugs:
        test = character_splits(s, cache)["test"][:per_character]
        asked, probes_asked = [p.prompt for p in test], list(PROBES)
        if memory is not None:
            from .rag import open_memory, rag_messages, recall, scene_locations, sources_for

            index, where = open_memory(memory, s), scene_locations(CHARACTERS[s][0])
            asked = [rag_messages(p.prompt, sources_for(s, p.prompt, lines, where.get(p.scene), system.tokenizer))
                     for p, lines in zip(test, recall(index, [p.prompt for p in test]))]
            probes_asked = [rag_messages(q, sources_for(s, q, lines, None, system.tokenizer))
                            for q, lines in zip(PROBES, recall(index, list(PROBES)))]
        if steer in ("none", "bias"):
            bias = None
            if steer == "bias":
                from .steering import vocabulary_bias

                bias = vocabulary_bias(s, system.tokenizer, cache=cache)
            replies = answers(system, asked, s, max_tokens, bias)
            probes = answers(system, probes_asked, s, max_tokens, bias)
        elif steer == "sample":  # the self-check's baseline: one sampled reply, as its candidates are, unchecked
            replies = answers(system, asked, s, max_tokens, temperature=0.8)
            probes = answers(system, probes_asked, s, max_tokens, temperature=0.8)
        elif steer == "selfcheck":
            replies, checks[s] = self_checked(system, asked, s, max_tokens, scorer)
            probes, _ = self_checked(system, probes_asked, s, max_tokens, scorer)
        else:
            from .steering import add_direction, character_direction, character_model, generate

            model = character_model(system, s)
            if steer == "cfg":
                replies = generate(model, system.tokenizer, asked, max_tokens=max_tokens,
                                   negative=[p.prompt for p in test], guidance=CFG_SCALE)
                probes = generate(model, system.tokenizer, probes_asked, max_tokens=max_tokens,
                                  negative=list(PROBES), guidance=CFG_SCALE)
            else:
                layer, direction = character_direction(model, system.tokenizer, s, cache=cache)
                handle = add_direction(model, layer, direction, ACT_SCALE)
                try:
                    replies = generate(model, system.tokenizer, asked, max_tokens=max_tokens)
                    probes = generate(model, system.tokenizer, probes_asked, max_tokens=max_tokens)
                finally:
                    handle.remove()
        real += [p.reply for p in test]
        gen += replies
        labels += [s] * len(test)
        rows[s] = {"replies": len(test), "real": style([p.reply for p in test]), "generated": style(replies),
                   "probe_modern_rate": style(probes)["modern_rate"],
                   "probes_with_a_modern_word": sum(any(w in MODERN for w in words(t)) for t in probes) / len(probes),
                   "example": {"prompt": test[0].prompt[:120], "real": test[0].reply[:160], "generated": replies[0]},
                   **({"self_check": checks[s]} if s in checks else {})}
        echo(f"  {display(s)}: {len(test)} held-out prompts answered")
    result = {"characters": slugs, "attribution_macro_f1": {"real": scorer.macro_f1(real, labels),
                                                            "generated": scorer.macro_f1(gen, labels),
                                                            "chance": 1 / len(slugs)},
              "per_character": rows, "probes": list(PROBES), "max_tokens": max_tokens, "steer": steer,
              "rag": memory is not None, "point_in_time": point_in_time(system, slugs, max_tokens)}
    if judge:
        j = EmbeddingJudge(slugs)
        result["judge_macro_f1"] = {"real": j.macro_f1(real, labels), "generated": j.macro_f1(gen, labels)}
    return result


def fidelity_markdown(r: dict) -> str:
    a = r["attribution_macro_f1"]
    j = r.get("judge_macro_f1")
    lines = [f"steering: {r.get('steer', 'none')}; RAG from the plays: {'yes' if r.get('rag') else 'no'}; speaker "
             f"attribution, macro-F1 over {len(r['characters'])} characters: real held-out replies {a['real']:.3f} "
             f"(the ceiling), generated {a['generated']:.3f}, chance {a['chance']:.3f}"
             + (f"; the MiniLM judge: real {j['real']:.3f}, generated {j['generated']:.3f}" if j else "")
             + (f"; point-in-time probes telling the future: {r['point_in_time']['rate']:.0%} (the characters' real "
                f"lines up to that act: {r['point_in_time']['real_rate']:.1%})" if r.get("point_in_time") else ""),
             "",
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
