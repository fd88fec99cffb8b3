"""Synthetic router data and a tiny Zephyra for the router tests (imported by name: tests/ has no packages).

Each domain has its own words; train, validation and test use different phrasing templates, as the real data
does (its test split uses phrasing families never seen in training). ``base`` mixes general words, off-topic
requests, greetings and gibberish.
"""

import random
import string

import torch

from zephyra.model import ZephyraForCausalLM, preset_config
from zephyra.router.data import RouterSplit
from zephyra.tokenizer import build_tokenizer

# the routes of these tests: "base" and the six domains (the order a router trained on this data gives them)
ROUTES = ["base", "chemistry", "computing", "geography", "python", "scripture", "shakespeare"]

WORDS = {
    "computing": ["compiler", "kernel", "bytecode", "mutex", "firmware", "bitmap", "daemon", "router", "cache",
                  "socket", "linker", "opcode"],
    "python": ["zip()", "enumerate", "lambda", "asyncio", "itertools", "dict.get", "list.sort", "pathlib",
               "dataclass", "__init__", "yield", "f-string"],
    "shakespeare": ["Polonius", "Ophelia", "Macbeth", "Iago", "Prospero", "Falstaff", "Hamlet", "Desdemona",
                    "Lear", "Puck", "Banquo", "Titania"],
    "scripture": ["Genesis 1:1", "Exodus 3:14", "Psalm 23", "John 3:16", "Ruth 1:16", "Job 38:4", "Isaiah 40:31",
                  "Micah 6:8", "Romans 8:28", "Proverbs 3:5", "Jonah 1:17", "Mark 4:39"],
    "chemistry": ["sodium", "benzene", "ethanol", "oxide", "isotope", "argon", "sulfate", "catalyst", "covalent",
                  "titanium", "nitrate", "methane"],
    "geography": ["Peru", "Lima", "Nairobi", "the Andes", "Norway", "Mongolia", "the Nile", "Quito", "Iceland",
                  "Borneo", "Chad", "Tasmania"],
    "base": ["happiness", "table", "running", "yellow", "friendship", "window", "quickly", "garden", "blanket",
             "whisper", "mountain", "pencil"],
}
TEMPLATES = {
    "train": ["What is {x}?", "Tell me about {x}.", "Explain {x}.", "Define {x}."],
    "validation": ["Can you describe {x}?", "I want to know about {x}."],
    "test": ["{x}: what is that exactly?", "Give me details on {x}, please."],
}
OFFTOPIC = {"train": ["Tell me a joke.", "How do I bake bread?", "hello", "good morning"],
            "validation": ["What should I cook tonight?", "hi there"],
            "test": ["How do I tie a tie?", "Recommend a film.", "hey, how are you?"]}


def gibberish(rng: random.Random) -> str:
    return " ".join("".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 9))) for _ in range(rng.randint(1, 4)))


def make_split(split: str, seed: int = 0) -> RouterSplit:
    rng = random.Random(f"{split}-{seed}")
    rows = []
    for label, words in WORDS.items():
        for w in words:
            for t in TEMPLATES[split]:
                rows.append({"prompt": t.replace("{x}", w), "label": label, "template": f"{label}/{split}"})
    for p in OFFTOPIC[split]:
        rows.append({"prompt": p, "label": "base", "template": "base/offtopic"})
    for _ in range(12):
        rows.append({"prompt": gibberish(rng), "label": "base", "template": "base/gibberish"})
    rng.shuffle(rows)
    return RouterSplit.from_rows(rows)


def make_tokenizer():
    corpus = [t.replace("{x}", w) for words in WORDS.values() for w in words
              for ts in TEMPLATES.values() for t in ts] * 3
    corpus += [p for ps in OFFTOPIC.values() for p in ps] * 3
    return build_tokenizer(corpus, vocab_size=1000, min_frequency=1)


def label_tokens(tokenizer) -> dict[int, str]:
    """Token id -> label, for the tokens of each label's words that no other label's words and no template or
    off-topic prompt use."""
    frames = [t for ts in TEMPLATES.values() for t in ts] + [p for ps in OFFTOPIC.values() for p in ps]
    shared = {t for text in frames for t in tokenizer(text.replace("{x}", ""), add_special_tokens=False)["input_ids"]}
    seen: dict[int, set[str]] = {t: {"shared"} for t in shared}
    for label, words in WORDS.items():
        for w in words:
            for text in (w, " " + w):
                for t in tokenizer(text, add_special_tokens=False)["input_ids"]:
                    seen.setdefault(t, set()).add(label)
    return {t: next(iter(labels)) for t, labels in seen.items() if len(labels) == 1 and labels != {"shared"}
            and len(tokenizer.decode([t]).strip()) > 1}  # single characters belong to no one


def make_model(tokenizer, seed: int = 0, separable: bool = True, strength: float = 1.0, **overrides
               ) -> ZephyraForCausalLM:
    """A tiny Zephyra (trunk = layer 0). ``separable``: each label's own tokens embed along that label's axis and
    every other token along one shared "neutral" axis, so the trunk's pooled states separate the labels whatever
    the phrasing around them: a model whose right routing is known, standing in for a trained base."""
    torch.manual_seed(seed)
    cfg = preset_config("tiny", vocab_size=len(tokenizer), **overrides)
    model = ZephyraForCausalLM(cfg).eval()
    if separable:
        axis = {label: i for i, label in enumerate(ROUTES)}
        owned = label_tokens(tokenizer)
        with torch.no_grad():
            emb = model.model.embed_tokens.weight
            for t in range(len(tokenizer)):
                emb[t, axis[owned[t]] if t in owned else -1] += strength
    return model


def save_tiny_base(path):
    """A tiny base (``make_model`` on ``make_tokenizer``) saved with its tokenizer under ``path``, as a model
    directory the loaders read; returns the model, for adapters to be made on it."""
    tok = make_tokenizer()
    model = make_model(tok)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return model
