"""Augmentation of training records: WordNet synonym replacement, character/word noise, back-translation
through Apertium (English -> Spanish -> English, only when ``apertium`` and its en-es pair are installed), and
template paraphrases of questions.

Augmented copies are added beside the originals, never instead of them, and are marked: records get
``"augmented": "<method>"`` and their ``source`` gains ``+<method>`` ("foldoc+paraphrase"), which is how they
show in the saved datasets. Only training splits are augmented.
"""

from __future__ import annotations

import random
import re
import shutil
import subprocess
from collections import Counter

from .config import AugmentConfig
from .records import stable_unit

_WORD = re.compile(r"[A-Za-z]+")
_STOP = frozenset("""the a an and or but of to in on at by for with from as is are was were be been being it its
this that these those he she they we you i his her their our your not no so than then there here what which who
whom whose when where why how all any some each every very can could shall should will would may might must do
does did have has had""".split())


# --- questions -----------------------------------------------------------------------------------------------

_PARAPHRASES: list[tuple[re.Pattern, list[str]]] = [
    (re.compile(r"^What is (.+) in (chemistry|computing|Python)\?$"), ["In {1}, what does {0} mean?",
                                                                 "Can you explain {0} ({1})?"]),
    (re.compile(r"^What is (.+)\?$"), ["Can you tell me what {0} is?", "Explain {0}.", "What's {0}?"]),
    (re.compile(r"^What does the (.+) method do\?$"), ["What is the {0} method for?",
                                                        "Explain what the {0} method does."]),
    (re.compile(r"^What does (.+) do\?$"), ["What is {0} for?", "Explain what {0} does."]),
    (re.compile(r"^What does (.+) say\?$"), ["Quote {0}.", "What is written in {0}?"]),
    (re.compile(r"^Who is (.+)\?$"), ["Tell me who {0} is.", "Can you tell me who {0} is?"]),
    (re.compile(r"^Where is (.+)\?$"), ["Where can {0} be found?", "Tell me where {0} is."]),
    (re.compile(r"^In which country is (.+)\?$"), ["Which country is {0} in?", "{0} lies in which country?"]),
    (re.compile(r"^What is the (.+) of (.+)\?$"), ["Tell me the {0} of {1}.", "Do you know the {0} of {1}?"]),
]


def paraphrase_question(question: str) -> str:
    """One template paraphrase (stable for a given question), or "" when no template fits."""
    for pattern, templates in _PARAPHRASES:
        m = pattern.match(question)
        if m:
            template = templates[int(stable_unit("para", question) * len(templates))]
            return template.format(*m.groups())
    return ""


def paraphrase_qa(rows: list[dict]) -> list[dict]:
    """A marked paraphrased copy of every Q/A row a template fits."""
    out = []
    for row in rows:
        q = paraphrase_question(row["question"])
        if q and q != row["question"]:
            out.append({**row, "question": q, "source": f"{row['source']}+paraphrase", "augmented": "paraphrase"})
    return out


# --- text ----------------------------------------------------------------------------------------------------

def synonym_replace(text: str, rate: float, rng: random.Random, wordnet) -> str:
    """Replace about ``rate`` of the content words with a one-word lemma of their most frequent synset."""
    def swap(m: re.Match) -> str:
        word = m.group(0)
        if word.lower() in _STOP or len(word) < 4 or rng.random() >= rate:
            return word
        synsets = wordnet.synsets(word.lower())
        options = [lemma.name() for lemma in synsets[0].lemmas()] if synsets else []
        options = [o for o in options if o.isalpha() and o.lower() != word.lower()]
        if not options:
            return word
        choice = rng.choice(options)
        return choice.capitalize() if word[0].isupper() else choice

    return _WORD.sub(swap, text)


def _char_edit(word: str, rng: random.Random) -> str:
    if len(word) < 3:
        return word
    i = rng.randrange(len(word) - 1)
    op = rng.randrange(3)
    if op == 0:
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]  # swap two neighbours
    if op == 1:
        return word[:i] + word[i + 1:]  # drop one
    return word[:i] + word[i] + word[i:]  # double one


def add_noise(text: str, rate: float, rng: random.Random) -> str:
    """Typos (swap, drop, double a character) and word drops/swaps, each word edited with probability ``rate``."""
    words = text.split(" ")
    out: list[str] = []
    i = 0
    while i < len(words):
        w = words[i]
        r = rng.random()
        if r < rate * 0.6:
            out.append(_char_edit(w, rng))
        elif r < rate * 0.8:
            pass  # drop the word
        elif r < rate and i + 1 < len(words):
            out += [words[i + 1], w]
            i += 1
        else:
            out.append(w)
        i += 1
    return " ".join(out)


# Apertium's English-Spanish modes: "en-es"/"es-en" in older packages, "eng-spa"/"spa-eng" in apertium-eng-spa
# (Debian 12's apertium-en-es is a transitional package that installs it)
_MODE_PAIRS = (("en-es", "es-en"), ("eng-spa", "spa-eng"))


def _apertium_modes() -> tuple[str, str] | str:
    """The installed (to Spanish, to English) mode pair, or why there is none."""
    if shutil.which("apertium") is None:
        return "apertium is not installed (apt-get install apertium apertium-en-es)"
    try:
        modes = subprocess.run(["apertium", "-l"], capture_output=True, text=True, timeout=30).stdout.split()
    except (OSError, subprocess.SubprocessError) as e:
        return f"apertium does not run: {e}"
    for pair in _MODE_PAIRS:
        if all(m in modes for m in pair):
            return pair
    return "apertium has no English-Spanish modes (apt-get install apertium-en-es)"


def apertium_missing() -> str:
    """Why back-translation cannot run here ("" when it can)."""
    modes = _apertium_modes()
    return modes if isinstance(modes, str) else ""


def _apertium(mode: str, lines: list[str]) -> list[str]:
    # -u: no "*" marks on unknown words; one text a line, and apertium keeps line breaks
    proc = subprocess.run(["apertium", "-u", mode], input="\n".join(lines) + "\n", capture_output=True, text=True,
                          timeout=600, check=True)
    out = proc.stdout.rstrip("\n").split("\n")
    if len(out) != len(lines):
        raise RuntimeError(f"apertium {mode} returned {len(out)} lines for {len(lines)}")
    return out


def translate_to_spanish(texts: list[str]) -> list[str]:
    modes = _apertium_modes()
    if isinstance(modes, str):
        raise RuntimeError(modes)
    return _apertium(modes[0], [" ".join(t.split()) for t in texts])


def back_translate(texts: list[str]) -> list[str]:
    """English -> Spanish -> English through Apertium (needs it installed: ``apertium_missing()`` says)."""
    modes = _apertium_modes()
    if isinstance(modes, str):
        raise RuntimeError(modes)
    return _apertium(modes[1], _apertium(modes[0], [" ".join(t.split()) for t in texts]))


# --- records -------------------------------------------------------------------------------------------------

def augment_records(records: list[dict], cfg: AugmentConfig, wordnet=None) -> tuple[list[dict], dict]:
    """Marked augmented copies of a share of ``records`` (training text), and counts per method."""
    stats: Counter = Counter()
    out: list[dict] = []
    rng = random.Random(cfg.seed)

    def pick(method: str, fraction: float) -> list[dict]:
        return [r for r in records if fraction and stable_unit(method, str(cfg.seed), r["text"][:200]) < fraction]

    def mark(r: dict, text: str, method: str) -> dict:
        return {**r, "text": text, "source": f"{r['source']}+{method}", "augmented": method}

    if cfg.synonym_fraction and wordnet is not None:
        for r in pick("synonym", cfg.synonym_fraction):
            new = synonym_replace(r["text"], cfg.synonym_rate, rng, wordnet)
            if new != r["text"]:
                out.append(mark(r, new, "synonym"))
                stats["synonym"] += 1
    for r in pick("noise", cfg.noise_fraction):
        out.append(mark(r, add_noise(r["text"], cfg.noise_rate, rng), "noise"))
        stats["noise"] += 1
    chosen = pick("backtranslate", cfg.backtranslate_fraction)
    if chosen:
        reason = apertium_missing()
        if reason:
            stats["backtranslate_skipped"] += len(chosen)
            return out, {**stats, "backtranslate_skip_reason": reason}
        for r, text in zip(chosen, back_translate([r["text"] for r in chosen])):
            out.append(mark(r, text, "backtranslate"))
            stats["backtranslate"] += 1
    return out, dict(stats)
