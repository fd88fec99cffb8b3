"""Typed settings for the data layer: curation, augmentation and the full build.

The dataclasses are the schema; zephyra.config loads them (``load_config(BuildConfig, "build.yaml",
["curate.near_dedup.threshold=0.7"])``) with the project's one set of rules: unknown keys and wrong types are
one-line errors naming the key. The resolved config (``to_dict``) is written into every dataset's manifest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..errors import ConfigError


# --- curation ------------------------------------------------------------------------------------------------

LANGUAGE_SET = ("en", "es", "fr", "de", "it", "nl", "pt", "sv", "da", "no", "pl", "ro", "tr", "ru", "la", "fi", "cs",
                "hu")

@dataclass
class NormaliseConfig:
    unicode_form: Literal["NFC", "NFKC", "none"] = "NFKC"  # NFKC folds ligatures and full-width forms
    whitespace: bool = True  # unify newlines, strip trailing spaces, collapse runs (indentation kept)
    lowercase: bool = False  # off: case carries meaning for a generative model
    strip_punctuation: bool = False  # off: punctuation is part of what the model must learn


@dataclass
class QualityConfig:
    min_words: int = 3
    max_words: int = 50_000
    max_symbol_ratio: float = 0.25  # share of non-space characters outside letters, digits, . , ; : ! ? ' " - ( )
    max_duplicate_line_fraction: float = 0.3  # share of non-empty lines that repeat an earlier line
    max_top_bigram_fraction: float = 0.2  # share of word pairs taken by the most frequent pair ("buy now buy now")
    repetition_min_words: int = 30  # repetition statistics mean nothing on shorter texts
    language: bool = True
    # langid: langid.py's model (97 languages, naive Bayes over byte n-grams); heuristic: the share of English
    # function words (below). Measured against each other in docs/security.md, "Content and data safety"
    language_model: Literal["langid", "heuristic"] = "langid"
    language_min_confidence: float = 0.9  # langid: a text is dropped only when another language wins with this
    # langid: the candidate languages (ISO 639-1; []: all 97). These 18 (English, the languages the old heuristic
    # knew, and their neighbours) measured more accurate than all 97 and 8x faster (docs/security.md)
    language_set: list[str] = field(default_factory=lambda: list(LANGUAGE_SET))
    min_english_ratio: float = 0.12  # heuristic: share of words that are common English function words
    language_min_words: int = 12  # too few words to judge a language below this
    blocklist: bool = True
    blocklist_file: str = ""  # extra blocked words, one a line, added to the built-in list
    # alt-profanity-check's classifier (zephyra.guard.toxicity): drops a text whose most toxic line scores at or
    # above the threshold; off by default: it would drop Shakespeare's and the KJV's insults (docs/security.md)
    toxicity: bool = False
    toxicity_threshold: float = 0.8

    def __post_init__(self):
        _check_fraction(self, "max_symbol_ratio", "max_duplicate_line_fraction", "max_top_bigram_fraction",
                        "min_english_ratio", "language_min_confidence", "toxicity_threshold")
        if self.language_set and "en" not in self.language_set:
            raise ConfigError(f"quality.language_set must include 'en', got {self.language_set}")
        if self.min_words < 0 or self.max_words < self.min_words:
            raise ConfigError(f"quality: need 0 <= min_words <= max_words, got {self.min_words}, {self.max_words}")


@dataclass
class NearDedupConfig:
    enabled: bool = True
    threshold: float = 0.8  # estimated Jaccard similarity of word shingles at or above which a record is dropped
    num_perm: int = 64  # 64 permutations: about +-0.06 error on the estimate, twice as fast as 128
    shingle_words: int = 5
    seed: int = 1

    def __post_init__(self):
        if not 0.0 < self.threshold < 1.0:
            raise ConfigError(f"near_dedup.threshold must lie in (0, 1), got {self.threshold}")
        if self.num_perm < 16 or self.shingle_words < 1:
            raise ConfigError("near_dedup: num_perm must be >= 16 and shingle_words >= 1")


from ..retrieval.pii import PIIConfig  # noqa: E402  the one scrubber's settings (retrieval/pii.py)


@dataclass
class CurateConfig:
    """The steps, in this order: normalise -> quality filters -> exact dedup -> near dedup -> PII scrub."""
    normalise: NormaliseConfig = field(default_factory=NormaliseConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    exact_dedup: bool = True
    near_dedup: NearDedupConfig = field(default_factory=NearDedupConfig)
    pii: PIIConfig = field(default_factory=PIIConfig)


# --- augmentation --------------------------------------------------------------------------------------------

@dataclass
class AugmentConfig:
    """Fractions are the share of training records that get one augmented copy (0 turns a method off)."""
    paraphrase_questions: bool = True  # template paraphrases of training questions
    synonym_fraction: float = 0.0
    synonym_rate: float = 0.15  # share of eligible words replaced by a WordNet synonym
    noise_fraction: float = 0.0
    noise_rate: float = 0.05  # share of words that get a character or word edit
    backtranslate_fraction: float = 0.0  # needs apertium-en-es; skipped (and counted) when absent
    seed: int = 0

    def __post_init__(self):
        _check_fraction(self, "synonym_fraction", "synonym_rate", "noise_fraction", "noise_rate",
                        "backtranslate_fraction")


# --- datasets ------------------------------------------------------------------------------------------------

@dataclass
class SplitConfig:
    validation: float = 0.1
    test: float = 0.1
    phase2_validation: float = 0.02
    salt: str = "zephyra-v1"  # changing it reshuffles every split

    def __post_init__(self):
        _check_fraction(self, "validation", "test", "phase2_validation")
        if self.validation + self.test >= 0.9:
            raise ConfigError("split: validation + test must leave most data for training")


@dataclass
class Phase1Config:
    max_categories: int = 0  # 0: every word that passes the filters
    per_category_cap: int = 250  # keeps "plant" and "body part" from drowning the rest
    validation_words: float = 0.1  # share of words held out of training for the validation split

    def __post_init__(self):
        _check_fraction(self, "validation_words")


@dataclass
class RouterConfig:
    """Sizes of the router data (``zephyra.data.router``) and its synthetic share."""
    train_per_label: int = 2000
    eval_per_label: int = 250  # for validation and for test, each
    base_factor: float = 1.5  # base gets this many times the prompts of a domain (it is many kinds of prompt)
    casual_fraction: float = 0.15  # share of templated prompts typed casually: lower case, no final "?"
    # share of training prompts given an Apertium back-translated copy (en -> es -> en); 0.3 measured a little
    # better on held-out families than 0 (docs/results.md, "Router generalisation"); skipped, and counted, without
    # Apertium
    backtranslate_fraction: float = 0.3

    def __post_init__(self):
        _check_fraction(self, "casual_fraction", "backtranslate_fraction")
        if self.train_per_label < 1 or self.eval_per_label < 1 or self.base_factor <= 0:
            raise ConfigError("router: train_per_label, eval_per_label and base_factor must be positive")


@dataclass
class BuildConfig:
    """Everything ``zephyra data build`` does. ``max_records_per_source`` > 0 builds a small version fast."""
    max_records_per_source: int = 0
    sources: list[str] = field(default_factory=list)  # empty: every packaged source
    on_error: Literal["fail", "skip"] = "fail"  # a missing package: stop, or build without it
    decontaminate_ngram: int = 13
    curate: CurateConfig = field(default_factory=CurateConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    phase1: Phase1Config = field(default_factory=Phase1Config)
    router: RouterConfig = field(default_factory=RouterConfig)
    seed: int = 0

    def __post_init__(self):
        if self.max_records_per_source < 0:
            raise ConfigError("max_records_per_source must be >= 0 (0 means no limit)")
        if self.decontaminate_ngram < 5:
            raise ConfigError("decontaminate_ngram below 5 would drop ordinary phrases")


# --- checks ------------------------------------------------------------------------------------------------

def _check_fraction(obj, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"{type(obj).__name__}.{name} must lie in [0, 1], got {value}")
