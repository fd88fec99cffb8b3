"""Phase 1: greetings, small talk and word -> category pairs ("watermelon" -> "fruit").

Greetings and small talk are hand-written phrasings expanded with punctuation, casing and openers; a few
phrasings per intent are held out of training and appear only in validation ("phrased differently").
Categories come from WordNet: a word's most frequent noun sense (first-sense filtering), the first category
of a fixed priority list above it, a commonness test and a short stoplist. Validation holds category examples
for words never seen in training.
"""

from __future__ import annotations

import re
from collections import defaultdict

from .config import Phase1Config
from .records import stable_unit
from .sources.wordnet import WordNetSource, gloss_word_counts, read_noun_index

# (category, WordNet roots): the first match in this order wins, so "poodle" is a dog before a mammal, and a
# rickshaw a vehicle before a container.
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("dog", ("dog.n.01",)), ("fruit", ("edible_fruit.n.01",)), ("vegetable", ("vegetable.n.01",)),
    ("cheese", ("cheese.n.01",)), ("bird", ("bird.n.01",)), ("fish", ("fish.n.01",)), ("insect", ("insect.n.01",)),
    ("reptile", ("reptile.n.01",)), ("mammal", ("mammal.n.01",)), ("animal", ("animal.n.01",)),
    ("tree", ("tree.n.01",)), ("flower", ("flower.n.01",)), ("plant", ("plant.n.02",)), ("gem", ("gem.n.02",)),
    ("musical instrument", ("musical_instrument.n.01",)), ("vehicle", ("vehicle.n.01",)),
    ("weapon", ("weapon.n.01",)), ("toy", ("toy.n.01",)), ("tool", ("tool.n.01",)),
    ("clothing", ("clothing.n.01",)), ("furniture", ("furniture.n.01",)), ("fabric", ("fabric.n.01",)),
    ("color", ("chromatic_color.n.01", "achromatic_color.n.01")), ("body part", ("body_part.n.01",)),
    ("drink", ("beverage.n.01",)), ("room", ("room.n.01",)), ("building", ("building.n.01",)),
    ("relative", ("relative.n.01",)), ("occupation", ("worker.n.01", "professional.n.01")),
    ("sport", ("sport.n.01",)), ("game", ("game.n.01",)), ("disease", ("disease.n.01",)),
    ("emotion", ("emotion.n.01",)), ("food", ("food.n.02", "dish.n.02", "baked_goods.n.01")),
    ("unit", ("unit_of_measurement.n.01",)), ("shape", ("shape.n.02",)), ("container", ("container.n.01",)),
]
# Categories whose members are mostly everyday words even when WordNet's corpus never saw them ("watermelon")
SMALL_CATEGORIES = frozenset({"fruit", "vegetable", "dog", "cheese", "musical instrument", "drink"})
# Words whose first sense is technically right but misleading out of context, or offensive.
STOPLIST = frozenset("""organs upper shrink rebel chips extern mate loti leu whorehouse wart pellet carving
bloomers rainbow shunt seta warble gut""".split())

GREETINGS = ["hi", "hello", "hey", "hiya", "howdy", "good morning", "good afternoon", "good evening", "greetings",
             "hello there", "hi there", "hey there", "morning", "heya", "hi friend", "hello friend"]
GREETINGS_HELD_OUT = ["good day", "salutations", "hullo", "ahoy there", "hey buddy", "well hello"]
GREETING_REPLIES = ["Hello! How can I help you today?", "Hi there! What can I do for you?",
                    "Hey! Nice to hear from you. What would you like to talk about?",
                    "Hello! I'm Zephyra. Ask me anything.", "Hi! How are you doing today?"]

# intent -> (phrasings, replies). The last phrasing of each intent is held out for validation.
SMALLTALK: dict[str, tuple[list[str], list[str]]] = {
    "how_are_you": (["how are you", "how are you doing", "how's it going", "how are things", "how have you been",
                     "how is your day going"],
                    ["I'm doing well, thank you! How about you?", "All good here, thanks for asking. And you?"]),
    "name": (["what's your name", "what is your name", "who are you", "what should I call you",
              "do you have a name", "tell me your name"],
             ["I'm Zephyra, a small language model.", "My name is Zephyra. Nice to meet you!"]),
    "thanks": (["thanks", "thank you", "thanks a lot", "thank you so much", "many thanks", "much appreciated"],
               ["You're welcome!", "Happy to help!", "Any time!"]),
    "bye": (["bye", "goodbye", "see you later", "talk to you later", "I have to go", "catch you later"],
            ["Goodbye! Have a great day.", "See you soon!", "Bye for now!"]),
    "help": (["what can you do", "can you help me", "how can you help", "what are you good at", "I need some help",
              "what do you do"],
             ["I can answer questions, explain things and chat. What do you need?",
              "Sure! Tell me what you need and I'll do my best."]),
    "creator": (["who made you", "who created you", "who built you", "where do you come from",
                 "who trained you", "who programmed you"],
                ["I was built by the Zephyra project, trained from scratch on open text.",
                 "The Zephyra project made me."]),
    "nature": (["are you a robot", "are you human", "are you a person", "are you alive", "are you real",
                "are you a computer"],
               ["I'm a language model, a computer program, not a person.",
                "I'm software: a small language model called Zephyra."]),
    "sorry": (["sorry", "my bad", "I apologise", "oops, sorry", "sorry about that", "I apologize"],
              ["No problem at all!", "That's all right. How can I help?"]),
    "praise": (["good job", "well done", "nice work", "you're great", "that was helpful", "you are clever"],
               ["Thank you, that's kind of you!", "Glad I could help!"]),
    "meet": (["nice to meet you", "pleased to meet you", "good to meet you", "glad to meet you",
              "lovely to meet you", "great to meet you"],
             ["Nice to meet you too!", "Likewise! What shall we talk about?"]),
}
OPENERS = ["", "hey, ", "so, ", "ok, "]


def _variants(phrase: str, question: bool, openers: list[str]) -> list[str]:
    endings = ["?", "", "??"] if question else ["", "!", "."]
    out = []
    for opener in openers:
        for end in endings:
            text = f"{opener}{phrase}{end}"
            out += [text, text[:1].upper() + text[1:]]
    return list(dict.fromkeys(out))  # unique, in order


def _reply(prompt: str, replies: list[str]) -> str:
    return replies[int(stable_unit("reply", prompt) * len(replies))]


def conversation_examples() -> dict[str, list[dict]]:
    """{"train": [...], "validation": [...]} of greeting and small-talk examples."""
    out: dict[str, list[dict]] = {"train": [], "validation": []}
    for split, phrases in (("train", GREETINGS), ("validation", GREETINGS_HELD_OUT)):
        for phrase in phrases:
            for prompt in _variants(phrase, False, ["", "oh "] if split == "train" else [""]):
                out[split].append(_example(prompt, _reply(prompt, GREETING_REPLIES), "greeting"))
    for intent, (phrases, replies) in SMALLTALK.items():
        for i, phrase in enumerate(phrases):
            split = "validation" if i == len(phrases) - 1 else "train"
            question = intent not in ("thanks", "bye", "sorry", "praise", "meet") and not phrase.startswith("I ")
            for prompt in _variants(phrase, question, OPENERS):
                out[split].append(_example(prompt, _reply(prompt, replies), "smalltalk"))
    return out


def _example(prompt: str, response: str, kind: str, word: str = "", category: str = "") -> dict:
    return {"prompt": prompt, "response": response, "kind": kind, "word": word, "category": category}


# --- word -> category ----------------------------------------------------------------------------------------

def category_pairs(source: WordNetSource, cfg: Phase1Config, limit: int = 0) -> list[tuple[str, str]]:
    """(word, category) pairs, capped per category; the order is stable across runs."""
    syns = source.index()
    by_key = {s.key: s for s in syns}
    members = [(cat, source.below(*roots)) for cat, roots in CATEGORIES]
    common = gloss_word_counts(syns)
    names = {cat for cat, _ in CATEGORIES}
    root_keys = {source.key_of(r) for _, roots in CATEGORIES for r in roots}

    def category_of(key: str) -> str:
        return next((cat for cat, keys in members if key in keys), "")

    chosen: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for lemma, senses, tagsense in read_noun_index():
        if not re.fullmatch(r"[a-z]{3,}", lemma) or lemma in STOPLIST or lemma in names:
            continue
        first = by_key.get(senses[0])
        if first is None or any(sym == "@i" for sym, _ in first.pointers):
            continue  # instances are names (people, places), not kinds
        cat = category_of(first.key)
        if cat in ("plant", "tree", "flower") and len(senses) > 1 and category_of(senses[1]) in ("fruit", "vegetable"):
            cat = category_of(senses[1])  # WordNet often lists the plant before the fruit: "watermelon"
        if not (tagsense > 0 or common[lemma] >= 2 or cat in SMALL_CATEGORIES):
            continue  # rare words ("coryphantha") teach nothing useful at this stage
        if cat and first.key not in root_keys:  # "dog -> dog" teaches nothing
            # common words first, then a stable shuffle
            chosen[cat].append((0.0 if tagsense > 0 else 1.0 + stable_unit("cat", lemma), lemma))
    pairs = []
    for cat, words in chosen.items():
        for _, word in sorted(words)[:cfg.per_category_cap]:
            pairs.append((word, cat))
    pairs.sort(key=lambda p: stable_unit("order", p[0]))
    if cfg.max_categories:
        pairs = pairs[:cfg.max_categories]
    return pairs[:limit] if limit else pairs


def build_phase1(source: WordNetSource, cfg: Phase1Config, limit: int = 0) -> tuple[dict[str, list[dict]], dict]:
    """The phase-1 splits and their counts."""
    splits = conversation_examples()
    pairs = category_pairs(source, cfg, limit=limit * 4 if limit else 0)
    held_out = 0
    for word, cat in pairs:
        split = "validation" if stable_unit("phase1-word", word) < cfg.validation_words else "train"
        held_out += split == "validation"
        splits[split].append(_example(word, cat, "category", word, cat))
    counts = {split: {kind: sum(1 for r in rows if r["kind"] == kind) for kind in ("greeting", "smalltalk",
                                                                                 "category")}
              for split, rows in splits.items()}
    return splits, {"examples": sum(len(v) for v in splits.values()), "category_words": len(pairs),
                    "held_out_words": held_out, "by_split": counts}
