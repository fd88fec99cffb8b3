"""Typed configs, one module for every kind (data builds, training and adapter recipes, routers, serving):
dataclasses are the schema, YAML files mirror them, ``key=value`` overrides win.

    cfg = load_config(TrainConfig, "recipes/phase1.yaml", ["optim.lr=1e-3", "max_steps=200"])
    cfg = load_config(AdapterRecipe, None, ["rank=16"], domain="python")   # fields given by a CLI option
    tree = to_dict(cfg)                                                     # saved beside the artifact
    assert from_dict(TrainConfig, tree) == cfg                              # and read back

The rules, the same for every schema (each error is one line naming the dotted key):
- unknown keys, missing required keys and wrong types are ``ConfigError``s;
- ints are accepted for floats, and so are numeric strings (YAML 1.1 reads ``1e-3`` as a string); nothing else
  is converted: ``true`` is not an int, ``"3"`` is not an int, ``1.5`` is not an int;
- ``None`` only where the annotation allows it; ``Literal`` values must be one of the choices;
- lists, tuples and ``dict[str, T]`` have their items checked (``sources[2]``, ``overrides.lr``);
- an override's value is parsed as YAML (``[a, b]``, ``null``, ``true``); dotted keys reach into sections;
- a check in a dataclass's ``__post_init__`` raises ``ConfigError`` (or ``ValueError``), reported with its key.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar

from .errors import ConfigError

T = TypeVar("T")

__all__ = ["RECIPES", "ConfigError", "apply_overrides", "find_recipe", "from_dict", "load_config", "read_yaml",
           "shipped_recipes", "to_dict"]

# The shipped YAML recipes are package data (pyproject.toml), so they are found the same way in an editable
# checkout (where recipes/ at the repository's root links here) and in a plain `pip install .`.
RECIPES = Path(__file__).resolve().parent / "recipes"


# --------------------------------------------------------------------------------------------------------------
# plain data -> dataclasses, with types checked
# --------------------------------------------------------------------------------------------------------------

def _join(prefix: str, key: str) -> str:
    key = key if key.isprintable() else repr(key)  # a key with a newline must not break the one-line message
    return f"{prefix}.{key}" if prefix else key


def _show(value: Any) -> str:
    return "null" if value is None else f"{type(value).__name__} {value!r}"


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """``value`` as type ``tp``, or a ConfigError naming ``key``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got null")
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: expected {_type_name(tp)}, got {_show(value)}")
    if value is None and tp is not type(None):
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got null")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: expected one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {_show(value)}")
        item = args[0] if args else Any
        return origin(_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {_show(value)}")
        item = args[1] if len(args) == 2 else Any
        return {str(k): _coerce(v, item, _join(key, str(k))) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key)
    return _scalar(value, tp, key)


def _scalar(value: Any, tp: Any, key: str) -> Any:
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {_show(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {_show(value)}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {_show(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {_show(value)}")
        return value
    if tp is type(None):
        if value is not None:
            raise ConfigError(f"{key}: expected null, got {_show(value)}")
        return None
    raise TypeError(f"{key}: unsupported schema type {tp!r}")  # a bug in the schema, not in the config


def _type_name(tp: Any) -> str:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(tp)))
    if typing.get_origin(tp) in (list, tuple):
        return "a list"
    if typing.get_origin(tp) is dict or dataclasses.is_dataclass(tp):
        return "a mapping"
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def from_dict(cls: type[T], data: Any, prefix: str = "") -> T:
    """Build dataclass ``cls`` from a mapping (``None`` is an empty one); see the module docstring for the rules.
    ``prefix`` is the dotted key of ``data`` inside a larger config, for the messages."""
    where = prefix or cls.__name__
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {_show(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(map(str, set(data) - set(fields)))
    if unknown:
        raise ConfigError(f"unknown key {', '.join(_join(prefix, k) for k in unknown)} "
                          f"(known in {where}: {', '.join(fields)})")
    kwargs = {}
    for name, f in fields.items():
        key = _join(prefix, name)
        if name in data:
            kwargs[name] = _coerce(data[name], hints[name], key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing key {key}")
    try:
        return cls(**kwargs)
    except (ConfigError, ValueError) as e:  # a __post_init__ check
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(message if not prefix or message.startswith(prefix) else f"{prefix}: {message}") from None


def to_dict(config: Any) -> dict:
    """A dataclass as plain data (what manifests store and ``from_dict`` reads back)."""
    return dataclasses.asdict(config)


# --------------------------------------------------------------------------------------------------------------
# YAML and overrides
# --------------------------------------------------------------------------------------------------------------

def read_yaml(path: str | os.PathLike) -> dict:
    """A YAML file as a plain dict (not yet checked against any schema), or a one-line ConfigError."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = getattr(e, "problem", None) or type(e).__name__
        raise ConfigError(f"{path}{line}: malformed YAML ({problem})") from None
    if tree is None:  # an empty file (or only comments) given on purpose is a mistake: its defaults need no file
        raise ConfigError(f"{path}: the config file is empty (no keys)")
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(tree).__name__}")
    return tree


def apply_overrides(tree: dict, overrides: list[str] | tuple[str, ...]) -> dict:
    """A copy of ``tree`` with ``key=value`` overrides applied; dotted keys reach into sections (created when
    absent or null); values are parsed as YAML, an empty value is the empty string."""
    import yaml

    tree = copy.deepcopy(dict(tree or {}))
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not key=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: the value is not valid YAML ({type(e).__name__})") from None
        parts = key.split(".")
        node = tree
        for i, part in enumerate(parts[:-1]):
            if node.get(part) is None:
                node[part] = {}
            if not isinstance(node[part], dict):
                raise ConfigError(f"override {key}: {'.'.join(parts[:i + 1])} is not a section")
            node = node[part]
        node[parts[-1]] = value
    return tree


def load_config(cls: type[T], path: str | os.PathLike | None = None, overrides: list[str] | None = None,
                **fields: Any) -> T:
    """``cls`` from a YAML file (optional), then ``fields`` (e.g. CLI options; None values are left out), then
    ``key=value`` overrides, checked against the schema."""
    tree = read_yaml(path) if path is not None else {}
    tree.update({k: v for k, v in fields.items() if v is not None})
    return from_dict(cls, apply_overrides(tree, list(overrides or [])))


# --------------------------------------------------------------------------------------------------------------
# the shipped recipes
# --------------------------------------------------------------------------------------------------------------

def shipped_recipes() -> list[str]:
    """Names of the shipped recipes, e.g. ``phase1``, ``adapters/default``."""
    return sorted(str(p.relative_to(RECIPES).with_suffix("")) for p in RECIPES.rglob("*.yaml"))


def find_recipe(name_or_path: str | os.PathLike) -> Path:
    """A recipe file: the path itself when it exists, else the shipped recipe of that name (``phase1``,
    ``phase1.yaml``, ``recipes/phase1.yaml`` or ``adapters/default``), else a one-line ConfigError."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    name = str(path).removeprefix("recipes/").removesuffix(".yaml")
    shipped = RECIPES / f"{name}.yaml"
    if shipped.is_file():
        return shipped
    raise ConfigError(f"{path}: no such recipe file, and no shipped recipe of that name "
                      f"(shipped: {', '.join(shipped_recipes())})")
