"""Fit and save a router of any kind: what ``zephyra router train`` and the quickstart run.

    router, report = fit_and_save("inmodel", "runs/data/router", "runs/router/inmodel", model="runs/phase2/final")
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from ..errors import ConfigError


def train_config(kind: str, config: str | os.PathLike | None = None, overrides: list[str] | None = None,
                 **fields):
    """The typed training settings of a router ``kind`` (zephyra.config's rules): a YAML file (optional), then
    ``fields`` that were given (None: not given; ``threshold_strategy`` and ``target_recall`` reach into
    ``calibration``), then ``key=value`` overrides (``lr=3e-2``, ``calibration.threshold_strategy=recall``)."""
    from ..config import apply_overrides, from_dict, read_yaml
    from .arrow import ArrowConfig
    from .external import ExternalTrainConfig
    from .inmodel import InModelTrainConfig
    from .likelihood import LikelihoodTrainConfig

    cls = {"inmodel": InModelTrainConfig, "external": ExternalTrainConfig, "arrow": ArrowConfig,
           "likelihood": LikelihoodTrainConfig}.get(kind)
    if cls is None:
        raise ConfigError(f"unknown router kind {kind!r}; known: inmodel, external, arrow, likelihood")
    tree = read_yaml(config) if config is not None else {}
    names = {f.name for f in dataclasses.fields(cls)}
    for key, value in fields.items():
        if value is None:
            continue
        if key in ("threshold_strategy", "target_recall"):
            tree.setdefault("calibration", {})[key] = value
        elif key == "prompt_format" and "prompt_formats" in names:  # the likelihood router takes a list
            tree["prompt_formats"] = [value]
        elif key in names:
            tree[key] = value
    return from_dict(cls, apply_overrides(tree, list(overrides or [])))


def fit_router(kind: str, data, model=None, tokenizer=None, adapters=None, threshold_strategy: str | None = None,
               target_recall: float | None = None, prompt_format: str | None = None, pooling: str | None = None,
               config: str | os.PathLike | None = None, overrides: list[str] | None = None,
               index: str | os.PathLike | None = None):
    """Fit a router of ``kind`` on ``data``'s train split and calibrate it on validation: (router, report).
    Settings: ``train_config`` (the keyword options, a YAML ``config``, ``key=value`` ``overrides``).

    With ``adapters`` (a directory of them), an in-model or external router's labels are that adapter set and
    "base" (``for_labels``): the router data is narrowed or widened to it, so adding an adapter means retraining
    the router alone. Arrow reads the adapters' own weights instead; a likelihood router scores the prompts
    under them (it needs them). ``index``: an external or in-model router also reads the signals of the
    knowledge indexes under it (router/signals.py)."""
    from ..adapters import scan_adapters
    from .data import for_labels, load_router_data

    if index is not None and kind not in ("external", "inmodel"):
        raise ConfigError(f"--index (the knowledge indexes' signals) is for the external and in-model routers, "
                          f"not {kind}")
    cfg = train_config(kind, config, overrides, threshold_strategy=threshold_strategy, target_recall=target_recall,
                       prompt_format=prompt_format, pooling=pooling, index=str(index) if index else None)
    splits = load_router_data(data, ("train", "validation"))
    if adapters is not None and kind != "arrow":
        names = list(scan_adapters(adapters))
        if not names:
            raise ConfigError(f"{adapters}: no adapters found, so no labels to route to")
        splits = for_labels(splits, names, Path(data).parent)
    if kind == "external":
        from .external import train_external_router
        return train_external_router(splits["train"], splits["validation"], cfg)
    if model is None:
        raise ConfigError(f"a {kind} router needs the base model: pass --model DIR")
    from ..loader import load_model

    base, tok = load_model(model, tokenizer_dir=tokenizer)
    if kind == "inmodel":
        from .inmodel import train_inmodel_router
        return train_inmodel_router(base, tok, splits["train"], splits["validation"], cfg)
    if adapters is None:
        raise ConfigError(f"a {kind} router needs the adapters: pass --adapters DIR")
    if kind == "likelihood":
        from .likelihood import train_likelihood_router
        return train_likelihood_router(base, tok, adapters, splits["train"], splits["validation"], cfg)
    from .arrow import build_arrow_router, find_adapters
    return build_arrow_router(base, tok, {k: str(v) for k, v in find_adapters(adapters).items()},
                              splits["validation"], cfg)


def fit_and_save(kind: str, data: str | os.PathLike, out: str | os.PathLike, **options):
    """``fit_router`` then save the router into ``out`` (atomically, with its manifest): (router, report)."""
    from ..io import sha256_dir

    router, report = fit_router(kind, data, **options)
    model = options.get("model")
    inputs = {"data": {"path": str(data), "sha256": sha256_dir(Path(data))}}
    if model:
        inputs["model"] = str(model)
    if options.get("index") is not None:
        inputs["index"] = str(options["index"])
    if options.get("adapters") is not None:
        from ..adapters import scan_adapters

        inputs["adapters"] = {name: str(path) for name, path in scan_adapters(options["adapters"]).items()}
    router.save(out, config=report.pop("config"), metrics=report, inputs=inputs)
    return router, report
