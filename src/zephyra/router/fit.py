"""Fit and save a router of any kind: what ``zephyra router train`` and the quickstart run.

    router, report = fit_and_save("inmodel", "runs/data/router", "runs/router/inmodel", model="runs/phase2/final")
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ConfigError


def fit_router(kind: str, data, model=None, tokenizer=None, adapters=None, threshold_strategy: str = "accuracy",
               target_recall: float = 0.9, prompt_format: str = "chat", pooling: str = "mean"):
    """Fit a router of ``kind`` on ``data``'s train split and calibrate it on validation: (router, report).

    With ``adapters`` (a directory of them), an in-model or external router's labels are that adapter set and
    "base" (``for_labels``): the router data is narrowed or widened to it, so adding an adapter means retraining
    the router alone. Arrow reads the adapters' own weights instead."""
    from ..adapters import scan_adapters
    from .calibration import CalibrationConfig
    from .data import for_labels, load_router_data

    cal = CalibrationConfig(threshold_strategy=threshold_strategy, target_recall=target_recall)
    splits = load_router_data(data, ("train", "validation"))
    if adapters is not None and kind != "arrow":
        names = list(scan_adapters(adapters))
        if not names:
            raise ConfigError(f"{adapters}: no adapters found, so no labels to route to")
        splits = for_labels(splits, names, Path(data).parent)
    if kind == "external":
        from .external import ExternalTrainConfig, train_external_router
        return train_external_router(splits["train"], splits["validation"], ExternalTrainConfig(calibration=cal))
    if model is None:
        raise ConfigError(f"a {kind} router needs the base model: pass --model DIR")
    from ..loader import load_model

    base, tok = load_model(model, tokenizer_dir=tokenizer)
    if kind == "inmodel":
        from .inmodel import InModelTrainConfig, train_inmodel_router
        return train_inmodel_router(base, tok, splits["train"], splits["validation"],
                                    InModelTrainConfig(prompt_format=prompt_format, calibration=cal))
    if adapters is None:
        raise ConfigError("an arrow router needs the adapters: pass --adapters DIR")
    from .arrow import ArrowConfig, build_arrow_router, find_adapters
    return build_arrow_router(base, tok, {k: str(v) for k, v in find_adapters(adapters).items()},
                              splits["validation"], ArrowConfig(prompt_format=prompt_format, pooling=pooling,
                                                                calibration=cal))


def fit_and_save(kind: str, data: str | os.PathLike, out: str | os.PathLike, **options):
    """``fit_router`` then save the router into ``out`` (atomically, with its manifest): (router, report)."""
    from ..io import sha256_dir

    router, report = fit_router(kind, data, **options)
    model = options.get("model")
    inputs = {"data": {"path": str(data), "sha256": sha256_dir(Path(data))}}
    if model:
        inputs["model"] = str(model)
    if options.get("adapters") is not None:
        from ..adapters import scan_adapters

        inputs["adapters"] = {name: str(path) for name, path in scan_adapters(options["adapters"]).items()}
    router.save(out, config=report.pop("config"), metrics=report, inputs=inputs)
    return router, report
