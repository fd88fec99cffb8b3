"""Pure text functions behind the curation steps: normalisation, the quality checks, PII scrubbing.

Each check returns True when a text should be KEPT; ``curate.py`` wraps them into named, counted steps.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections import Counter
from functools import lru_cache
from pathlib import Path

from ..errors import DataError
from .config import NormaliseConfig, QualityConfig

WORD_RE = re.compile(r"[^\W_]+(?:'[^\W_]+)?")  # letters/digits, with an inner apostrophe ("don't", "o'er")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u200b-\u200f\u2028\u2029\ufeff]")
_INNER_SPACES = re.compile(r"(?<=\S)[ \t]{2,}")  # runs after the first visible character: indentation kept
_MANY_NEWLINES = re.compile(r"\n{3,}")

# Common English function words, archaic forms included so that the KJV and Shakespeare pass.
_ENGLISH = frozenset("""
a about after all also an and any are as at be because been but by can could did do does for from had has have
he her him his how i if in into is it its just may me more most my no not now of on one only or other our out
over said she should so some such than that the their them then there these they this those through to up upon
us was we were what when where which while who will with would you your shall unto thou thee thy thine hath
doth art ye yea hast nor o own whom whose been being am let make made very every each
""".split())

# Frequent function words of German, French, Spanish, Italian, Latin and Dutch that are not English words.
_FOREIGN = frozenset("""
der das und ist nicht ein eine zu den mit sich auf für im dem von auch es wie ich sie wir aber oder
le les et est une des du pour dans que qui ne pas sur au avec ce il elle nous vous sont mais ou
los las por para del se como pero muy sus
di che è della per non sono gli nel alla
sed cum quae quod ut esse enim atque nec ad ab ex sunt erat
het een niet op dat zijn voor
""".split())

# A short built-in list of strong slurs and obscenities (whole words, case-insensitive). Kept deliberately
# small: words that old texts use innocently ("ass", "chink" in a wall, "faggot" of sticks, "retard" meaning
# delay) are not on it.
_BLOCKLIST = frozenset("""
fuck fucking fucked fucker motherfucker shit shitty cunt cocksucker nigger niggers kike kikes wetback wetbacks
""".split())

_SPACE = re.compile(r"\s")
_ODD = re.compile(r"[^\w\s.,;:!?'\"()-]|_")  # neither a letter or digit, nor space, nor ordinary punctuation


# --- normalisation -------------------------------------------------------------------------------------------

def normalise_text(text: str, cfg: NormaliseConfig) -> str:
    if cfg.unicode_form != "none":
        text = unicodedata.normalize(cfg.unicode_form, text)
    text = _CONTROL.sub("", text)
    if cfg.whitespace:
        text = text.replace("\r\n", "\n").replace("\r", "\n").expandtabs(4)
        text = "\n".join(_INNER_SPACES.sub(" ", line.rstrip()) for line in text.split("\n"))
        text = _MANY_NEWLINES.sub("\n\n", text).strip()
    if cfg.lowercase:
        text = text.lower()
    if cfg.strip_punctuation:
        text = text.translate(_punctuation_table())
        if cfg.whitespace:
            text = re.sub(r"[ \t]{2,}", " ", text).strip()
    return text


@lru_cache(maxsize=1)
def _punctuation_table() -> dict[int, None]:
    return {i: None for i in range(sys.maxunicode + 1) if unicodedata.category(chr(i)).startswith("P")}


# --- quality checks ------------------------------------------------------------------------------------------

def words_of(text: str) -> list[str]:
    return WORD_RE.findall(text)


def length_ok(words: list[str], cfg: QualityConfig) -> bool:
    return cfg.min_words <= len(words) <= cfg.max_words


def symbol_ratio(text: str) -> float:
    visible = len(text) - len(_SPACE.findall(text))
    if not visible:
        return 1.0
    return len(_ODD.findall(text)) / visible


def symbols_ok(text: str, cfg: QualityConfig) -> bool:
    return symbol_ratio(text) <= cfg.max_symbol_ratio


def repetition_ok(text: str, words: list[str], cfg: QualityConfig) -> bool:
    if len(words) < cfg.repetition_min_words:
        return True
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    if len(lines) >= 4:
        dup_lines = len(lines) - len(set(lines))
        if dup_lines / len(lines) > cfg.max_duplicate_line_fraction:
            return False
    low = [w.lower() for w in words]
    bigrams = Counter(zip(low, low[1:]))
    top = bigrams.most_common(1)[0][1]
    return top / (len(low) - 1) <= cfg.max_top_bigram_fraction


def english_ratio(words: list[str]) -> float:
    if not words:
        return 0.0
    return sum(1 for w in words if w.lower() in _ENGLISH) / len(words)


def foreign_ratio(words: list[str]) -> float:
    if not words:
        return 0.0
    return sum(1 for w in words if w.lower() in _FOREIGN) / len(words)


def language_ok(words: list[str], cfg: QualityConfig, text: str | None = None) -> bool:
    """Whether a text is English enough to keep, by ``cfg.language_model``: langid (needs ``text``) or the
    function-word heuristic. Below ``language_min_words`` words a text is too short to judge and kept."""
    if len(words) < cfg.language_min_words:
        return True
    if cfg.language_model == "langid" and text is not None:
        lang, prob = language_id(text, tuple(cfg.language_set))
        return lang == "en" or prob < cfg.language_min_confidence
    return heuristic_language_ok(words, cfg)


@lru_cache(maxsize=1)
def _langid_model():
    """langid's model, unpacked once (about 5 s; it ships as a compressed pickle inside the package)."""
    from langid.langid import LanguageIdentifier, model

    return LanguageIdentifier.from_modelstring(model, norm_probs=True)


@lru_cache(maxsize=4)
def _langid(languages: tuple[str, ...]):
    """One langid identifier per language set, with normalised probabilities. langid's module-level ``classify``
    shares one global model, which ``set_languages`` changes for every caller: we keep our own (a shallow copy:
    ``set_languages`` replaces the arrays it trims, it does not write into them)."""
    import copy

    ident = copy.copy(_langid_model())
    if languages:
        try:
            ident.set_languages(list(languages))
        except ValueError as e:
            raise DataError(f"language_set: {e}") from None
    return ident


def language_id(text: str, languages: tuple[str, ...] = ()) -> tuple[str, float]:
    """(ISO 639-1 code, probability) of ``text``'s language by langid; deterministic (no sampling)."""
    return _langid(languages).classify(text)


def heuristic_language_ok(words: list[str], cfg: QualityConfig) -> bool:
    """English prose passes on its function words. Terse English (dictionary glosses: "softly hairy South
    African herb having flowers with bright blue rays") has few, so below the threshold a text is dropped only
    when another language's function words outnumber English ones, or when it is long and has almost none."""
    if len(words) < cfg.language_min_words:
        return True  # too short to judge
    en = english_ratio(words)
    if en >= cfg.min_english_ratio:
        return True
    if foreign_ratio(words) > en:
        return False
    return not (len(words) >= 40 and en < cfg.min_english_ratio / 2)


def load_blocklist(extra_file: str = "") -> frozenset[str]:
    if not extra_file:
        return _BLOCKLIST
    path = Path(extra_file)
    try:
        extra = {w.strip().lower() for w in path.read_text(encoding="utf-8").splitlines()}
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read blocklist: {e}") from None
    return _BLOCKLIST | {w for w in extra if w and not w.startswith("#")}


def blocklist_ok(words: list[str], blocklist: frozenset[str]) -> bool:
    return not any(w.lower() in blocklist for w in words)


# --- PII -----------------------------------------------------------------------------------------------------
# the one scrubber lives in retrieval/pii.py (the server scrubs user data with it and may not import data/)
from ..retrieval.pii import luhn_ok, scrub_pii  # noqa: E402,F401
