"""Router data: prompts per domain in varied phrasings, and ``base`` prompts (general questions, off-topic
requests, greetings, gibberish).

Each label has phrasing *families*; a family's templates are used in exactly one split: the last family of a
label in ``test``, the one before it in ``validation``, the rest in ``train``. Routing is therefore measured on
phrasings the router never saw. Entities (the "{x}" in a template) come from the domain's Q/A pairs of the
same split, so test prompts also ask about things no training prompt mentions.
"""

from __future__ import annotations

import random
import string

from .config import RouterConfig
from .records import DOMAINS

# label -> [(family, [templates])]; order matters: [-1] is test, [-2] validation, the rest train
FAMILIES: dict[str, list[tuple[str, list[str]]]] = {
    "computing": [
        ("what_is", ["What is {x}?", "what's {x}", "What is {x} exactly?"]),
        ("explain", ["Explain {x} in computing.", "In computer terms, what does {x} mean?"]),
        ("define", ["Can you define the computing term {x}?", "Define {x} (computing)."]),
        ("slang", ["What does {x} mean in hacker slang?", "Is {x} a programming term?"]),
        ("tech_chat", ["I keep hearing about {x} in tech. What is it?", "Tell me about {x} as programmers use it."]),
        ("engineer", ["How would a software engineer describe {x}?", "Quick computer question: {x}?",
                      "{x} - what is that in IT?"]),
    ],
    "python": [
        ("what_does", ["What does {x} do?", "What does {x} do in Python?"]),
        ("how_use", ["How do I use {x} in Python?", "Show me how {x} works."]),
        ("explain", ["Explain Python's {x}.", "What is {x} for in Python?"]),
        ("when", ["When should I use {x}?", "Is {x} part of the Python standard library?"]),
        ("script", ["I'm writing a Python script. What does {x} return?", "python {x} usage"]),
        ("code", ["In my code I call {x}. What happens?", "Describe the behaviour of {x} in Python 3.",
                  "{x} -- docs please"]),
    ],
    "shakespeare": [
        ("who", ["Who is {x}?", "Who is {x} in Shakespeare?"]),
        ("character", ["Tell me about the character {x}.", "What role does {x} play?"]),
        ("which_play", ["In which play does {x} appear?", "Which Shakespeare play has {x} in it?"]),
        ("quote", ["What does {x} say in the play?", "Quote something {x} says."]),
        ("describe", ["Describe {x} from the Shakespeare plays.", "Is {x} a hero or a villain?"]),
        ("reader", ["I'm reading Shakespeare and met {x}. Who's that?", "Give me a character sketch of {x}.",
                    "What happens to {x} at the end?"]),
    ],
    "scripture": [
        ("what_says", ["What does {x} say?", "Quote {x}."]),
        ("read", ["Read me {x} from the King James Bible.", "What is written in {x}?"]),
        ("meaning", ["Explain the verse {x}.", "What is the meaning of {x}?"]),
        ("recite", ["Recite {x} (KJV).", "How does {x} go in the King James Version?"]),
        ("words", ["Which words are in {x}?", "I need the text of {x}."]),
        ("lookup", ["Look up {x} for me.", "Scripture reading: {x}?", "What's the verse at {x}?"]),
    ],
    "chemistry": [
        ("what_is", ["What is {x}?", "What is {x} in chemistry?"]),
        ("facts", ["What is the chemical symbol of {x}?", "Tell me the atomic number of {x}."]),
        ("properties", ["Describe the properties of {x}.", "Is {x} a metal?"]),
        ("reactions", ["How does {x} react?", "What compounds does {x} form?"]),
        ("class", ["In chemistry class we covered {x}. What is it?", "Explain {x} to a chemistry student."]),
        ("chemically", ["Chemically speaking, what's {x}?", "Give me the chemistry facts about {x}.",
                        "{x}: element or compound?"]),
    ],
    "geography": [
        ("where", ["Where is {x}?", "What is {x}?"]),
        ("capital", ["What is the capital of {x}?", "Which country is {x} in?"]),
        ("describe", ["Tell me about the geography of {x}.", "Describe {x} on a map."]),
        ("facts", ["How far is {x} from the sea?", "What is the population of {x}?"]),
        ("travel", ["I'm travelling to {x}. Where exactly is it?", "Locate {x} for me."]),
        ("globe", ["On which continent is {x}?", "Is {x} a city or a country?", "Point me to {x} on the globe."]),
    ],
    "base": [
        ("word", ["What does {x} mean?", "Define {x}.", "What is the meaning of the word {x}?"]),
        ("synonym", ["Give me a synonym for {x}.", "What's another word for {x}?"]),
        ("offtopic_a", []), ("greeting_a", []), ("gibberish_letters", []),
        ("spell", ["How do you spell {x}?", "Use {x} in a sentence."]), ("offtopic_b", []),
        ("greeting_b", []), ("gibberish_keys", []),
        ("rhyme", ["What rhymes with {x}?", "Is {x} a noun or a verb?"]), ("offtopic_c", []),
        ("greeting_c", []), ("gibberish_syllables", []),
    ],
}
# base families are split in three groups of five (train, validation, test), not by the last-two rule
_BASE_SPLITS = {"train": FAMILIES["base"][:5], "validation": FAMILIES["base"][5:9],
                "test": FAMILIES["base"][9:]}

OFFTOPIC = {
    "offtopic_a": ["What's the weather like today?", "Tell me a joke.", "How do I bake bread?",
                   "Write a short poem about the sea.", "What should I cook for dinner tonight?",
                   "Recommend a good film for the weekend.", "How can I sleep better?",
                   "What's a good name for a cat?", "How do I tie a tie?", "Give me a fun fact.",
                   "What is the best way to learn to swim?", "How long should I boil an egg?"],
    "offtopic_b": ["Can you suggest a birthday present for my mum?", "How do I get rid of hiccups?",
                   "Write a limerick about a frog.", "What time do shops usually open on Sunday?",
                   "Any tips for a job interview?", "How do I make my plants grow faster?",
                   "Which is better, tea or coffee?", "How do I start running?"],
    "offtopic_c": ["Help me plan a picnic.", "What's a nice way to say sorry to a friend?",
                   "How many hours of sleep does a teenager need?", "Tell me something that will cheer me up.",
                   "What games can we play at a party?", "How do I fold a paper plane?",
                   "What do you think about rainy days?", "Suggest a hobby I could try."],
}
GREETING_PROMPTS = {"greeting_a": ["hi", "hello", "hey there", "good morning", "how are you?", "thanks!"],
                    "greeting_b": ["hiya", "good evening", "what's up?", "cheers", "bye for now"],
                    "greeting_c": ["howdy", "greetings!", "yo, how's it going?", "see you", "nice to meet you"]}


def family_split(label: str, family: str) -> str:
    if label == "base":
        return next(split for split, fams in _BASE_SPLITS.items() if any(f == family for f, _ in fams))
    names = [f for f, _ in FAMILIES[label]]
    i = names.index(family)
    return "test" if i == len(names) - 1 else "validation" if i == len(names) - 2 else "train"


def _gibberish(kind: str, rng: random.Random) -> str:
    if kind == "gibberish_letters":
        return " ".join("".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 9)))
                        for _ in range(rng.randint(1, 4)))
    if kind == "gibberish_keys":
        rows = ["qwertyuiop", "asdfghjkl", "zxcvbnm"]
        return "".join(rng.choice(rows[rng.randrange(3)]) for _ in range(rng.randint(6, 20)))
    sylls = ["ba", "lo", "ki", "mu", "zor", "pla", "nee", "vok", "tri", "sha", "glu", "dri"]
    return " ".join("".join(rng.choices(sylls, k=rng.randint(2, 4))) for _ in range(rng.randint(1, 3)))


def _label_rows(label: str, split: str, entities: list[str], n: int, rng: random.Random) -> list[dict]:
    fams = [(f, t) for f, t in FAMILIES[label] if family_split(label, f) == split]
    rows, seen, attempts = [], set(), 0
    while len(rows) < n and attempts < n * 20:
        attempts += 1
        family, templates = fams[attempts % len(fams)]
        if family.startswith("offtopic"):
            prompt = rng.choice(OFFTOPIC[family])
        elif family.startswith("greeting"):
            prompt = rng.choice(GREETING_PROMPTS[family])
        elif family.startswith("gibberish"):
            prompt = _gibberish(family, rng)
        elif entities:
            prompt = rng.choice(templates).replace("{x}", rng.choice(entities))
        else:
            continue
        if prompt not in seen:
            seen.add(prompt)
            rows.append({"prompt": prompt, "label": label, "template": f"{label}/{family}"})
    return rows


def build_router(entities: dict[str, dict[str, list[str]]], cfg: RouterConfig, seed: int = 0,
                 forbidden: set[str] | None = None) -> tuple[dict[str, list[dict]], dict]:
    """``entities[label][split]``: what prompts may mention (for base: general words). Prompts in
    ``forbidden`` (the domains' test questions) are dropped from train and validation."""
    rng = random.Random(seed)
    forbidden = {q.casefold() for q in (forbidden or set())}
    out: dict[str, list[dict]] = {"train": [], "validation": [], "test": []}
    dropped = 0
    for label in ("base", *DOMAINS):
        for split in out:
            pool = entities.get(label, {}).get(split) or entities.get(label, {}).get("train", [])
            n = cfg.train_per_label if split == "train" else cfg.eval_per_label
            rows = _label_rows(label, split, sorted(set(pool)), n, rng)
            if split != "test":
                kept = [r for r in rows if r["prompt"].casefold() not in forbidden]
                dropped += len(rows) - len(kept)
                rows = kept
            out[split] += rows
    for rows in out.values():
        rng.shuffle(rows)
    counts = {split: {label: sum(1 for r in rows if r["label"] == label) for label in ("base", *DOMAINS)}
              for split, rows in out.items()}
    return out, {"by_split": counts, "dropped_test_questions": dropped}
