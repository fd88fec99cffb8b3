"""zephyra.config, the one typed-config loader every schema uses (data builds, training and adapter recipes,
routers, serving): the same rules for all, each error one line naming the dotted key."""

from dataclasses import dataclass, field
from typing import Literal

import pytest

from zephyra.config import ConfigError, apply_overrides, find_recipe, from_dict, load_config, shipped_recipes, to_dict


@dataclass
class Inner:
    rate: float = 0.1
    names: list[str] = field(default_factory=list)

    def __post_init__(self):
        if self.rate < 0:
            raise ConfigError(f"rate must be >= 0, got {self.rate}")


@dataclass
class Outer:
    out: str
    steps: int = 10
    flag: bool = False
    mode: Literal["a", "b"] = "a"
    limit: int | None = None
    inner: Inner = field(default_factory=Inner)
    weights: dict[str, float] = field(default_factory=dict)
    pair: tuple[int, ...] = (1, 2)


def test_round_trip_and_defaults():
    cfg = from_dict(Outer, {"out": "x"})
    assert cfg == Outer(out="x") and from_dict(Outer, to_dict(cfg)) == cfg


@pytest.mark.parametrize("value, expected", [(1, 1.0), ("1e-3", 1e-3), ("2.5", 2.5), (3.0, 3.0)])
def test_numbers_for_floats_and_yaml_strings(value, expected):
    got = from_dict(Outer, {"out": "x", "inner": {"rate": value}}).inner.rate
    assert got == expected and isinstance(got, float)


@pytest.mark.parametrize("data, message", [
    ({"out": "x", "stepz": 3}, "unknown key stepz (known in Outer: out, steps,"),
    ({"out": "x", "inner": {"rat": 1}}, "unknown key inner.rat (known in inner: rate, names)"),
    ({}, "missing key out"),
    ({"out": "x", "steps": "10"}, "steps: expected an integer, got str '10'"),
    ({"out": "x", "steps": True}, "steps: expected an integer, got bool True"),
    ({"out": "x", "steps": 1.5}, "steps: expected an integer, got float 1.5"),
    ({"out": "x", "steps": None}, "steps: expected an integer, got null"),
    ({"out": "x", "flag": "yes"}, "flag: expected true or false, got str 'yes'"),
    ({"out": "x", "mode": "c"}, "mode: expected one of 'a', 'b', got 'c'"),
    ({"out": "x", "inner": {"rate": "fast"}}, "inner.rate: expected a number, got str 'fast'"),
    ({"out": "x", "inner": {"names": "a"}}, "inner.names: expected a list, got str 'a'"),
    ({"out": "x", "inner": {"names": ["a", 2]}}, "inner.names[1]: expected a string, got int 2"),
    ({"out": "x", "weights": {"a": "x"}}, "weights.a: expected a number, got str 'x'"),
    ({"out": "x", "inner": []}, "inner: expected a mapping, got list []"),
    ({"out": "x", "inner": {"rate": -1}}, "inner: rate must be >= 0, got -1.0"),
    ({"out": 3}, "out: expected a string, got int 3"),
])
def test_bad_values_are_one_line_errors_naming_the_key(data, message):
    with pytest.raises(ConfigError) as e:
        from_dict(Outer, data)
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_none_only_where_allowed_and_tuples():
    cfg = from_dict(Outer, {"out": "x", "limit": None, "pair": [3, 4, 5]})
    assert cfg.limit is None and cfg.pair == (3, 4, 5)


def test_overrides_copy_parse_yaml_and_create_sections():
    tree = {"out": "x", "inner": {"rate": 0.5}}
    new = apply_overrides(tree, ["inner.names=[a, b]", "limit=null", "flag=true", "steps=3", "out="])
    assert tree == {"out": "x", "inner": {"rate": 0.5}}  # the input is not changed
    cfg = from_dict(Outer, new)
    assert (cfg.inner.names, cfg.limit, cfg.flag, cfg.steps, cfg.out) == (["a", "b"], None, True, 3, "")
    assert apply_overrides({"inner": None}, ["inner.rate=2"]) == {"inner": {"rate": 2}}
    for bad, message in [("steps", "is not key=value"), ("=3", "is not key=value"),
                         ("out.x=1", "override out.x: out is not a section"), ("steps=[1", "not valid YAML")]:
        with pytest.raises(ConfigError, match=message):
            apply_overrides({"out": "x"}, [bad])


def test_load_config_yaml_fields_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("out: from-yaml\nsteps: 5\ninner:\n  rate: 1e-3\n")
    cfg = load_config(Outer, path, ["steps=7"], out="from-cli", limit=None)
    assert (cfg.out, cfg.steps, cfg.inner.rate, cfg.limit) == ("from-cli", 7, 1e-3, None)
    (tmp_path / "bad.yaml").write_text("a: [1\n")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    (tmp_path / "bytes.yaml").write_bytes(b"out: \xff\n")
    for name, message in [("missing.yaml", "no such config file"), ("bad.yaml", r"bad\.yaml:\d+: malformed YAML"),
                          ("list.yaml", "top level must be a mapping"), ("bytes.yaml", "not UTF-8")]:
        with pytest.raises(ConfigError, match=message):
            load_config(Outer, tmp_path / name)


def test_shipped_recipes_are_package_data_found_by_name(tmp_path):
    names = shipped_recipes()
    assert {"phase1", "phase2", "adapters/default"} <= set(names)
    for name in ("phase1", "phase1.yaml", "recipes/phase1.yaml", "adapters/default"):
        assert find_recipe(name).is_file() and "zephyra/recipes" in find_recipe(name).resolve().as_posix()
    mine = tmp_path / "mine.yaml"
    mine.write_text("out_dir: x\n")
    assert find_recipe(mine) == mine
    with pytest.raises(ConfigError, match="no such recipe file, and no shipped recipe of that name"):
        find_recipe("phase9")
