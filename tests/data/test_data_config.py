"""The data layer's settings through the project's one typed-config loader (zephyra.config): unknown keys and
wrong types are errors that name the key; overrides and YAML."""

import pytest

from zephyra.config import ConfigError, apply_overrides, from_dict, load_config
from zephyra.data.config import BuildConfig, CurateConfig


def test_defaults_round_trip():
    cfg = from_dict(BuildConfig, {})
    assert cfg == BuildConfig() and cfg.curate.near_dedup.threshold == 0.8


@pytest.mark.parametrize("data, message", [
    ({"curate": {"near_dedup": {"treshold": 0.7}}}, r"unknown key curate\.near_dedup\.treshold \(known in "
                                                     r"curate\.near_dedup: enabled, threshold"),
    ({"max_records_per_source": "ten"}, r"max_records_per_source: expected an integer, got str 'ten'"),
    ({"max_records_per_source": True}, r"max_records_per_source: expected an integer, got bool True"),
    ({"on_error": "ignore"}, r"on_error: expected one of 'fail', 'skip', got 'ignore'"),
    ({"sources": "wordnet"}, r"sources: expected a list"),
    ({"curate": {"near_dedup": {"threshold": 1.5}}}, r"threshold must lie in \(0, 1\)"),
    ({"curate": []}, r"curate: expected a mapping"),
])
def test_bad_settings_name_the_key(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(BuildConfig, data)


def test_ints_are_accepted_for_floats():
    assert from_dict(CurateConfig, {"near_dedup": {"threshold": 1e-1}}).near_dedup.threshold == 0.1
    assert isinstance(from_dict(BuildConfig, {"split": {"test": 0}}).split.test, float)


def test_overrides_parse_yaml_values():
    data = apply_overrides({"curate": {"exact_dedup": True}},
                           ["curate.near_dedup.threshold=0.7", "sources=[wordnet, devil]", "curate.exact_dedup=false"])
    cfg = from_dict(BuildConfig, data)
    assert cfg.curate.near_dedup.threshold == 0.7 and cfg.sources == ["wordnet", "devil"]
    assert cfg.curate.exact_dedup is False
    with pytest.raises(ConfigError, match="is not key=value"):
        apply_overrides({}, ["novalue"])


def test_yaml_file_and_its_errors(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("max_records_per_source: 5\ncurate:\n  quality:\n    min_words: 2\n")
    cfg = load_config(BuildConfig, good, ["seed=3"])
    assert (cfg.max_records_per_source, cfg.curate.quality.min_words, cfg.seed) == (5, 2, 3)
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: 1\nb: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml:\d+: malformed YAML \("):
        load_config(BuildConfig, bad)
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(BuildConfig, tmp_path / "missing.yaml")
