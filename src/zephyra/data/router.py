"""Router data: prompts per domain in varied phrasings, and ``base`` prompts (everything no adapter knows: word
and category questions, arithmetic, small talk, jokes, sports, weather, recipes, advice, health, opinions,
errands, other languages, greetings, gibberish).

The phrasings are in ``router_phrasings.KINDS``: per label, kinds of prompt (verse look-ups, questions about Bible
people, ...), each with three or more phrasing *families*; a family's templates are used in exactly one split:
within each kind the last family in ``test``, the one before it in ``validation``, the rest in ``train``. Routing
is therefore measured on phrasings the router never saw, for every kind of prompt. Entities (the ``{x}``,
``{name}``, ``{play}``, ... of a template) come from the domain's data of the same split (``domain_pools``), so
test prompts also ask about things no training prompt mentions; words of the hand-written slot lists are
split by a stable hash the same way.

Optionally (``RouterConfig.backtranslate_fraction``) a share of the training prompts gets a back-translated
copy (English -> Spanish -> English through Apertium, ``augment.back_translate``); copies that equal a prompt of
any split are dropped. Skipped, and counted as skipped, when Apertium is not installed.
"""

from __future__ import annotations

import random
import re
import string
from collections import Counter

from .config import RouterConfig
from .records import DOMAINS, stable_unit
from .router_phrasings import KINDS, SLOTS

LABELS = ("base", *DOMAINS)
SPLITS = ("train", "validation", "test")
_SLOT = re.compile(r"\{(\w+)\}")
_REF = re.compile(r"^(.+?) \d+:\d+$")  # "1 Kings 3:5" -> "1 Kings"
_PLAY = re.compile(r"^Who is .+ in (.+)\?$")  # the Shakespeare source's character questions
_NAME = re.compile(r"(?<=[a-z,;] )([A-Z][a-z]{2,})\b")  # a capitalised word inside a sentence
_ERROR = re.compile(r"(Error|Exception|Warning)$")
_SAYS = re.compile(r'^In .+, who says "(.+)"\?$')  # the Shakespeare source's line questions
_WRITTEN = re.compile(r'^Where in the Bible is it written: "(.+)"\?$')  # the KJV source's phrase questions

# --- families and splits -------------------------------------------------------------------------------------

FAMILY_KIND: dict[str, dict[str, str]] = {label: {f: kind for kind, fams in kinds.items() for f, _ in fams}
                                          for label, kinds in KINDS.items()}


def family_split(label: str, family: str) -> str:
    """The one split a phrasing family is used in: per kind, the last family is test, the one before validation."""
    names = [f for f, _ in KINDS[label][FAMILY_KIND[label][family]]]
    i = names.index(family)
    return "test" if i == len(names) - 1 else "validation" if i == len(names) - 2 else "train"


def word_split(slot: str, word: str) -> str:
    """Slot words of lists long enough to share (20+) are split 70/15/15 by a stable hash; shorter lists are used
    whole in every split (there the family is what is held out)."""
    if len(SLOTS.get(slot, ())) < 20:
        return "any"
    u = stable_unit("router-slot", slot, word)
    return "test" if u < 0.15 else "validation" if u < 0.3 else "train"


# --- entity pools from the domain data -----------------------------------------------------------------------

def _by_hash(values, key: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    for v in sorted(set(values)):
        u = stable_unit(key, v.casefold())
        out["test" if u < 0.15 else "validation" if u < 0.3 else "train"].append(v)
    return out


def bible_names(texts, min_count: int = 4) -> list[str]:
    """People and places of the KJV: capitalised words inside sentences, seen ``min_count`` times or more, whose
    lowercase form never occurs (so "Moses", "Jericho", not "And" or "Lord")."""
    counts: Counter = Counter()
    lower: set[str] = set()
    for text in texts:
        counts.update(_NAME.findall(text))
        lower.update(w for w in re.findall(r"[a-z]+", text))
    return sorted(w for w, c in counts.items() if c >= min_count and w.lower() not in lower)


def domain_pools(domain: str, qa: dict[str, list[dict]], raw: dict[str, list[dict]] | None = None
                 ) -> dict[str, dict[str, list[str]]]:
    """What a domain's router prompts may mention, per split: ``x`` = the Q/A rows' entities of that split, and per
    domain pools read from the same rows (Shakespeare's plays, the Bible's books, Python's exceptions, the
    countries and cities of the gazetteer, chemistry's elements) or, for the KJV's people and places, from the
    raw text (each name in one split, by a stable hash)."""
    rows = {s: [q for q in qa.get(s, []) if q.get("entity") and "augmented" not in q] for s in SPLITS}
    pools = {"x": {s: [q["entity"] for q in rows[s]] for s in SPLITS}}

    def pick(fn) -> dict[str, list[str]]:
        return {s: sorted({v for q in rows[s] if (v := fn(q))}) for s in SPLITS}

    if domain == "scripture":
        books = {m.group(1) for s in SPLITS for q in rows[s] if (m := _REF.match(q["entity"]))}
        pools["book"] = _by_hash(books, "router-bible-book")  # every chapter's split holds every book
        texts = [r["text"] for s in SPLITS for r in (raw or {}).get(s, []) if "augmented" not in r]
        pools["name"] = _by_hash(bible_names(texts), "router-bible-name")
        pools["phrase"] = pick(lambda q: (m := _WRITTEN.match(q["question"])) and m.group(1))
    elif domain == "shakespeare":
        plays = {m.group(1) for s in SPLITS for q in rows[s] if (m := _PLAY.match(q["question"]))}
        pools["play"] = _by_hash(plays, "router-play")  # a play's characters are in every split
        pools["line"] = pick(lambda q: (m := _SAYS.match(q["question"])) and m.group(1))
    elif domain == "python":
        pools["error"] = pick(lambda q: _ERROR.search(q["entity"]) and q["entity"])
    elif domain == "chemistry":
        pools["element"] = pick(lambda q: re.search(r"\b(atomic|symbol)\b", q["question"]) and q["entity"])
    elif domain == "geography":
        pools["country"] = pick(lambda q: "country code of" in q["question"] and q["entity"])
        pools["city"] = pick(lambda q: q["question"].startswith("In which country is") and q["entity"])
    return pools


def _drop_shared_names(pools: dict) -> None:
    """A Bible name that is also a Shakespeare character or a place of the gazetteer ("Egypt", "John") would make
    the same prompt two labels' prompt: drop it from the Bible's names."""
    names = pools.get("scripture", {}).get("name")
    if not names:
        return
    other = {e.casefold() for label in ("shakespeare", "geography") for pool in pools.get(label, {}).values()
             for vs in pool.values() for e in vs}
    for s in names:
        names[s] = [n for n in names[s] if n.casefold() not in other]


# --- prompts -------------------------------------------------------------------------------------------------

def _gibberish(kind: str, rng: random.Random) -> str:
    if kind == "gibberish_letters":
        return " ".join("".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 9)))
                        for _ in range(rng.randint(1, 4)))
    if kind == "gibberish_keys":
        rows = ["qwertyuiop", "asdfghjkl", "zxcvbnm"]
        return "".join(rng.choice(rows[rng.randrange(3)]) for _ in range(rng.randint(6, 20)))
    sylls = ["ba", "lo", "ki", "mu", "zor", "pla", "nee", "vok", "tri", "sha", "glu", "dri"]
    return " ".join("".join(rng.choices(sylls, k=rng.randint(2, 4))) for _ in range(rng.randint(1, 3)))


def _slot_words(split: str) -> dict[str, list[str]]:
    return {k: [w for w in ws if word_split(k, w) in (split, "any")] for k, ws in SLOTS.items()}


def _fill(template: str, pools: dict[str, dict[str, list[str]]], words: dict[str, list[str]], split: str,
          rng: random.Random) -> str | None:
    """The template with every slot filled, or None when a slot has nothing to offer in this split."""
    chosen: dict[str, str] = {}
    for slot in _SLOT.findall(template):
        if slot in chosen:
            continue
        base = slot[:-1] if slot.endswith("2") and slot not in pools and slot not in words else slot
        if base in ("n", "m"):
            chosen[slot] = str(rng.randint(2, 12))
            continue
        if base == "big":
            chosen[slot] = str(rng.randint(10, 999))
            continue
        if base in pools:
            options = pools[base].get(split) or pools[base].get("train", [])
        else:
            options = words.get(base, [])
        options = [o for o in options if o != chosen.get(base)] if base != slot else options
        if not options:
            return None
        chosen[slot] = rng.choice(options)
    return _SLOT.sub(lambda m: chosen[m.group(1)], template)


def _casual(prompt: str) -> str:
    """How people also type: lower case, no final punctuation."""
    return prompt.lower().rstrip("?.!").strip() or prompt


def _label_rows(label: str, split: str, pools: dict, n: int, rng: random.Random, casual: float) -> list[dict]:
    """``n`` distinct prompts of one label in one split, the kinds taking turns (a kind that stops giving new
    prompts drops out). A domain's first kind, about the entities of its own Q/A (the largest pools), takes two
    turns in a round."""
    kinds = {kind: [(f, t) for f, t in fams if family_split(label, f) == split] for kind, fams in KINDS[label].items()}
    turns = [k for k, fams in kinds.items() if fams]
    if label != "base" and turns:
        turns.insert(0, turns[0])
    words = _slot_words(split)
    rows, seen, misses, i = [], set(), Counter(), 0
    while len(rows) < n and turns:
        kind = turns[i % len(turns)]
        i += 1
        family, templates = rng.choice(kinds[kind])
        if family.startswith("gibberish"):
            prompt = _gibberish(family, rng)
        else:
            prompt = _fill(rng.choice(templates), pools, words, split, rng) if templates else None
            if prompt and casual and rng.random() < casual:
                prompt = _casual(prompt)
        if prompt and prompt not in seen:
            seen.add(prompt)
            rows.append({"prompt": prompt, "label": label, "template": f"{label}/{family}"})
            misses[kind] = 0
        else:
            misses[kind] += 1
            if misses[kind] >= 50:
                turns = [k for k in turns if k != kind]
    return rows


def _per_label(cfg: RouterConfig, label: str, split: str) -> int:
    n = cfg.train_per_label if split == "train" else cfg.eval_per_label
    return round(n * cfg.base_factor) if label == "base" else n


def build_router(pools: dict[str, dict[str, dict[str, list[str]]]], cfg: RouterConfig, seed: int = 0,
                 forbidden: set[str] | None = None) -> tuple[dict[str, list[dict]], dict]:
    """``pools[label][pool][split]``: what prompts may mention (``domain_pools``; for base, ``x`` = general
    words). Prompts in ``forbidden`` (the domains' test questions) are dropped from train and validation."""
    rng = random.Random(seed)
    forbidden = {q.casefold() for q in (forbidden or set())}
    _drop_shared_names(pools)
    out: dict[str, list[dict]] = {s: [] for s in SPLITS}
    dropped = 0
    for label in LABELS:
        for split in SPLITS:
            rows = _label_rows(label, split, pools.get(label, {}), _per_label(cfg, label, split), rng,
                               cfg.casual_fraction)
            if split != "test":
                kept = [r for r in rows if r["prompt"].casefold() not in forbidden]
                dropped += len(rows) - len(kept)
                rows = kept
            out[split] += rows
    info: dict = {"dropped_test_questions": dropped}
    if cfg.backtranslate_fraction:
        info["backtranslate"] = add_backtranslations(out, cfg.backtranslate_fraction, seed)
    for rows in out.values():
        rng.shuffle(rows)
    info["by_split"] = {split: {label: sum(1 for r in rows if r["label"] == label) for label in LABELS}
                        for split, rows in out.items()}
    info["families"] = {split: len({r["template"] for r in rows}) for split, rows in out.items()}
    info["diversity"] = {split: diversity([r["prompt"] for r in rows]) for split, rows in out.items()}
    return out, info


# --- synthetic prompts: back-translation ---------------------------------------------------------------------

def add_backtranslations(splits: dict[str, list[dict]], fraction: float, seed: int = 0,
                         translate=None) -> dict:
    """Add a back-translated copy of about ``fraction`` of the training prompts (not gibberish, not other
    languages) to ``splits["train"]``; copies equal (case-folded) to a prompt of any split are dropped. Returns
    counts and the copies' diversity. ``translate``: list[str] -> list[str] (default Apertium en->es->en)."""
    from .augment import apertium_missing, back_translate

    chosen = [r for r in splits["train"] if stable_unit("router-bt", str(seed), r["prompt"]) < fraction
              and not re.search(r"/(gibberish|[a-z]{2}_[abc]$)", r["template"])]
    if translate is None:
        reason = apertium_missing()
        if reason:
            return {"skipped": len(chosen), "skip_reason": reason}
        translate = back_translate
    have = {r["prompt"].casefold() for rows in splits.values() for r in rows}
    held_out = {r["prompt"].casefold() for s in ("validation", "test") for r in splits.get(s, [])}
    added, same, dup, dup_eval, sources = [], 0, 0, 0, {}
    for row, text in zip(chosen, translate([r["prompt"] for r in chosen]) if chosen else []):
        text = " ".join(text.split())
        if not text or text.casefold() == row["prompt"].casefold():
            same += 1
        elif text.casefold() in have:
            dup += 1
            dup_eval += text.casefold() in held_out
        else:
            have.add(text.casefold())
            added.append({**row, "prompt": text})
            sources[text] = row["prompt"]
    known = {g for r in splits["train"] for g in _bigrams(r["prompt"])}
    new = [g for r in added for g in _bigrams(r["prompt"])]
    splits["train"] += added
    return {"chosen": len(chosen), "added": len(added), "unchanged": same, "duplicates_dropped": dup,
            "of_which_validation_or_test": dup_eval, "diversity": diversity([r["prompt"] for r in added]),
            "sources_diversity": diversity([sources[r["prompt"]] for r in added]),
            "new_bigram_share": round(sum(g not in known for g in new) / len(new), 4) if new else 0.0}


def _bigrams(prompt: str) -> list[tuple[str, str]]:
    w = prompt.lower().split()
    return list(zip(w, w[1:]))


def diversity(prompts: list[str]) -> dict:
    """Distinct-n: distinct word unigrams and bigrams over all unigrams and bigrams (1.0: no n-gram repeats)."""
    out = {"prompts": len(prompts), "distinct_prompts": len({p.casefold() for p in prompts})}
    for n in (1, 2):
        grams = [tuple(w[i:i + n]) for p in prompts for w in [p.lower().split()] for i in range(len(w) - n + 1)]
        out[f"distinct_{n}"] = round(len(set(grams)) / len(grams), 4) if grams else 0.0
    return out
