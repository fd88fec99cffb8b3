"""Fit and save a router of any kind: what ``zephyra router train`` and the quickstart run.

    router, report = fit_and_save("inmodel", "runs/data/router", "runs/router/inmodel", model="runs/phase2/final")
"""

from __future__ import annotations

import os
from pathlib import Path


def fit_router(kind: str, data, model=None, tokenizer=None, adapters=None, threshold_strategy: str = "accuracy",
               target_recall: float = 0.9, prompt_format: str = "chat", pooling: str = "mean"):
    """Fit a router of ``kind`` on ``data``'s train split and calibrate it on validation: (router, report)."""
    from .calibration import CalibrationConfig
    from .data import load_router_data

    cal = CalibrationConfig(threshold_strategy=threshold_strategy, target_recall=target_recall)
    splits = load_router_data(data, ("train", "validation"))
    if kind == "external":
        from .external import ExternalTrainConfig, train_external_router
        return train_external_router(splits["train"], splits["validation"], ExternalTrainConfig(calibration=cal))
    if model is None:
        raise ValueError(f"a {kind} router needs the base model: pass --model DIR")
    from .artifact import load_base

    base, tok = load_base(model, tokenizer)
    if kind == "inmodel":
        from .inmodel import InModelTrainConfig, train_inmodel_router
        return train_inmodel_router(base, tok, splits["train"], splits["validation"],
                                    InModelTrainConfig(prompt_format=prompt_format, calibration=cal))
    if adapters is None:
        raise ValueError("an arrow router needs the adapters: pass --adapters DIR")
    from .arrow import ArrowConfig, build_arrow_router, find_adapters
    return build_arrow_router(base, tok, {k: str(v) for k, v in find_adapters(adapters).items()},
                              splits["validation"], ArrowConfig(prompt_format=prompt_format, pooling=pooling,
                                                                calibration=cal))


def fit_and_save(kind: str, data: str | os.PathLike, out: str | os.PathLike, **options):
    """``fit_router`` then save the router into ``out`` (atomically, with its manifest): (router, report)."""
    from ..io import sha256_dir

    router, report = fit_router(kind, data, **options)
    model = options.get("model")
    router.save(out, config=report.pop("config"), metrics=report,
                inputs={"data": {"path": str(data), "sha256": sha256_dir(Path(data))},
                        **({"model": str(model)} if model else {})})
    return router, report
