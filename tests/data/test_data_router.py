"""The router data (zephyra.data.router): phrasing families held out by split within every kind of prompt,
entities from the same split, a large and varied base class, and back-translation that is measured, deduplicated
against every split and skipped cleanly without Apertium. Built from small synthetic entity pools: fast."""

import os
import re

import pytest

from zephyra.data import augment
from zephyra.data.config import RouterConfig
from zephyra.data.records import DOMAINS
from zephyra.data.router import (FAMILY_KIND, LABELS, SPLITS, add_backtranslations, bible_names, build_router,
                                 diversity, domain_pools, family_split, word_split)
from zephyra.data.router_phrasings import KINDS, SLOTS

POOLS_OF = {"computing": ["x"], "python": ["x", "error"], "shakespeare": ["x", "play", "line"],
            "scripture": ["x", "name", "book", "phrase"], "chemistry": ["x", "element"],
            "geography": ["x", "country", "city"], "base": ["x"]}


def synthetic_pools() -> dict:
    """Per label and pool, 40 made-up entities per split, named after their split ("scripture-name-test-7")."""
    return {label: {pool: {s: [f"{label}-{pool}-{s}-{i}" for i in range(40)] for s in SPLITS} for pool in pools}
            for label, pools in POOLS_OF.items()}


@pytest.fixture(scope="module")
def built():
    cfg = RouterConfig(train_per_label=600, eval_per_label=150, backtranslate_fraction=0.0)  # not on Apertium
    return build_router(synthetic_pools(), cfg, seed=0,
                        forbidden={"What is computing-x-train-3?"})


def family(row) -> str:
    return row["template"].split("/", 1)[1]


def test_every_kind_has_a_train_validation_and_test_family_and_names_are_unique():
    for label, kinds in KINDS.items():
        names = [f for fams in kinds.values() for f, _ in fams]
        assert len(names) == len(set(names)), label
        for kind, fams in kinds.items():
            assert len(fams) >= 3, (label, kind)
            splits = [family_split(label, f) for f, _ in fams]
            assert splits[-1] == "test" and splits[-2] == "validation" and set(splits[:-2]) == {"train"}


def test_a_family_given_twice_in_the_yaml_is_refused(tmp_path):
    from zephyra.data.router_phrasings import _load

    bad = tmp_path / "p.yaml"
    bad.write_text('kinds:\n  base:\n    word:\n      a: ["x"]\n      a: ["y"]\n      b: []\nslots: {}\n')
    with pytest.raises(Exception, match="given twice: a"):
        _load(bad)


def test_every_slot_can_be_filled():
    for label, kinds in KINDS.items():
        for fams in kinds.values():
            for _, templates in fams:
                for slot in re.findall(r"\{(\w+)\}", " ".join(templates)):
                    base = slot[:-1] if slot.endswith("2") else slot
                    assert base in (*POOLS_OF[label], "n", "m", "big") or base in SLOTS, (label, slot)


def test_families_are_disjoint_across_splits_and_every_kind_is_tested(built):
    splits, _ = built
    fams = {s: {r["template"] for r in rows} for s, rows in splits.items()}
    assert not fams["train"] & fams["test"] and not fams["train"] & fams["validation"]
    assert not fams["validation"] & fams["test"]
    for label, kinds in KINDS.items():
        tested = {FAMILY_KIND[label][family(r)] for r in splits["test"] if r["label"] == label}
        assert tested == set(kinds), label  # no kind of prompt goes untested
    for split, rows in splits.items():
        assert {r["label"] for r in rows} == set(LABELS), split


def test_entities_come_from_the_same_split(built):
    splits, _ = built
    for split, rows in splits.items():
        for r in rows:
            for other in set(SPLITS) - {split}:
                assert f"-{other}-" not in r["prompt"], (split, r["prompt"])
    train_words = {w for r in splits["train"] for w in r["prompt"].lower().split()}
    held_out = [w for w in SLOTS["deed"] if word_split("deed", w) == "test"]
    assert held_out and not any(f"who {w.lower()}" in " ".join(train_words) for w in held_out)


def test_no_test_prompt_in_train_and_forbidden_questions_dropped(built):
    splits, info = built
    test = {r["prompt"].casefold() for r in splits["test"]}
    assert not test & {r["prompt"].casefold() for r in splits["train"] + splits["validation"]}
    assert "What is computing-x-train-3?" not in {r["prompt"] for r in splits["train"]}


def test_base_is_large_and_varied(built):
    splits, info = built
    base = [r["prompt"] for r in splits["train"] if r["label"] == "base"]
    assert len(set(base)) == len(base) >= 600
    kinds = {FAMILY_KIND["base"][family(r)] for r in splits["train"] if r["label"] == "base"}
    assert len(kinds) >= 15  # word, category, arithmetic, small talk, sport, weather, cooking, languages, ...
    without_words = [p for p in base if "base-x-" not in p]  # not the general-word questions
    assert len(set(without_words)) >= 400
    assert diversity(base)["distinct_2"] > 0.2
    test_base = [r for r in splits["test"] if r["label"] == "base"]
    assert len({family(r) for r in test_base}) >= 15
    assert info["diversity"]["train"]["distinct_prompts"] == len({r["prompt"].casefold() for r in splits["train"]})


def test_base_factor_scales_the_base_class():
    cfg = RouterConfig(train_per_label=100, eval_per_label=40, base_factor=2.0, backtranslate_fraction=0.0)
    splits, info = build_router(synthetic_pools(), cfg, seed=1)
    assert info["by_split"]["train"]["base"] == 200 and info["by_split"]["train"]["python"] == 100


def test_domain_pools_read_the_domain_data():
    qa = {"train": [{"question": "Who is Puck in A Midsummer Night's Dream?", "entity": "Puck"},
                    {"question": "What does Genesis 1:1 say?", "entity": "Genesis 1:1"}],
          "validation": [], "test": [{"question": "What is the two-letter country code of Peru?", "entity": "Peru"},
                                     {"question": "In which country is Lima?", "entity": "Lima"},
                                     {"question": "Which city does the airport code LIM serve?", "entity": "LIM"}]}
    assert domain_pools("shakespeare", qa)["play"] in ({**{s: [] for s in SPLITS}, s: ["A Midsummer Night's Dream"]}
                                                       for s in SPLITS)
    geo = domain_pools("geography", qa)
    assert geo["country"]["test"] == ["Peru"] and geo["city"]["test"] == ["Lima"]
    assert "LIM" in geo["x"]["test"] and "LIM" not in geo["city"]["test"]  # codes make no natural city question
    raw = {"train": [{"text": "And Moses said unto Aaron, Go to Moses and Aaron, and Moses went; and Moses "
                              "spake to Aaron and Aaron answered, and Aaron went. And the Lord spake."}]}
    names = domain_pools("scripture", qa, raw)["name"]
    assert sorted(n for v in names.values() for n in v) == ["Aaron", "Moses"]
    assert bible_names(["in the land and Lord and lord said"], min_count=1) == []


def test_bible_names_that_other_domains_use_are_dropped():
    pools = synthetic_pools()
    pools["scripture"]["name"]["train"].append("Egypt")
    pools["geography"]["x"]["test"].append("Egypt")
    splits, _ = build_router(pools, RouterConfig(train_per_label=300, eval_per_label=30, backtranslate_fraction=0.0),
                             seed=0)
    assert not any("Egypt" in r["prompt"] for r in splits["train"] if r["label"] == "scripture")


# --- back-translation ----------------------------------------------------------------------------------------

def test_backtranslation_skipped_cleanly_without_apertium(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty PATH: no apertium
    splits, info = build_router(synthetic_pools(), RouterConfig(train_per_label=60, eval_per_label=20,
                                                                backtranslate_fraction=0.5), seed=0)
    bt = info["backtranslate"]
    assert bt["skipped"] > 0 and "not installed" in bt["skip_reason"]
    assert info["by_split"]["train"]["python"] == 60  # nothing added


def test_backtranslation_drops_copies_of_any_split():
    splits = {"train": [{"prompt": "Who built the ark?", "label": "scripture", "template": "scripture/who_did"},
                        {"prompt": "How do I sort a list?", "label": "python", "template": "python/how_do"},
                        {"prompt": "Tell me a joke.", "label": "base", "template": "base/offtopic_a"},
                        {"prompt": "asdf qwer", "label": "base", "template": "base/gibberish_letters"}],
              "validation": [], "test": [{"prompt": "What is a joke?", "label": "base", "template": "base/x"}]}
    fake = {"Who built the ark?": "Who  constructed the ark?", "How do I sort a list?": "How do I sort a list?",
            "Tell me a joke.": "What is a joke?"}
    info = add_backtranslations(splits, 1.0, translate=lambda ps: [fake[p] for p in ps])
    assert info["chosen"] == 3  # gibberish is not translated
    assert info == {**info, "added": 1, "unchanged": 1, "duplicates_dropped": 1, "of_which_validation_or_test": 1}
    assert splits["train"][-1] == {"prompt": "Who constructed the ark?", "label": "scripture",
                                   "template": "scripture/who_did"}  # same family: still held out of test


def test_apertium_eng_spa_modes_are_recognised(monkeypatch, tmp_path):
    # apertium-eng-spa (what Debian 12's apertium-en-es installs) names its modes eng-spa / spa-eng
    fake = tmp_path / "apertium"
    fake.write_text('#!/bin/sh\nif [ "$1" = "-l" ]; then echo eng-spa; echo spa-eng; exit 0; fi\n'
                    'if [ "$2" = "eng-spa" ]; then tr a-z A-Z; else tr A-Z a-z; fi\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")  # found before a real one
    assert augment.apertium_missing() == ""
    assert augment.back_translate(["Who Built The Ark?"]) == ["who built the ark?"]


def test_router_config_checks():
    from zephyra.errors import ConfigError

    with pytest.raises(ConfigError):
        RouterConfig(backtranslate_fraction=1.5)
    with pytest.raises(ConfigError):
        RouterConfig(base_factor=0)


def test_labels_are_the_domains_and_base():
    assert set(LABELS) == {"base", *DOMAINS} and set(KINDS) == set(LABELS)
