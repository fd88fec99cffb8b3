"""Merge several LoRA adapters into one, through PEFT's ``add_weighted_adapter`` (linear, TIES, DARE, ...), so a
merged adapter can be evaluated beside routing.

    merged = merge_adapters(base, {"python": dir1, "chemistry": dir2}, method="ties", density=0.5)
    merged.generate(...)                          # a PeftModel with the merged adapter active
    plain = zephyra.adapters.merge_adapter(merged) # folded into the weights: the base's speed

PEFT merges LoRA's A and B matrices separately for linear/TIES/DARE (all adapters must share one rank), which
only approximates a weighted sum of the updates when more than one adapter is merged; "cat" is the exact sum
(ranks side by side), the same thing our engine's fused mode computes per row. Nothing here is ours but the
defaults and the loading.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence

from peft import PeftModel

from ..adapters import base_fingerprint, load_adapter

METHODS = ("linear", "ties", "dare_linear", "dare_ties", "cat", "svd", "magnitude_prune")


def default_weights(method: str, n: int) -> list[float]:
    """Linear-style merges average (1/n each); TIES-style merges already average the adapters that agree in sign
    (their papers' lambda = 1), so each weight is 1."""
    return [1.0] * n if method in ("ties", "dare_ties", "magnitude_prune") else [1.0 / n] * n


def merge_adapters(model, adapters: Mapping[str, str | os.PathLike] | Sequence[str], method: str = "linear",
                   weights: Sequence[float] | None = None, density: float | None = 0.5, name: str = "merged",
                   copy_model: bool = True) -> PeftModel:
    """A PeftModel whose active adapter ``name`` merges ``adapters``: directories by name (loaded onto ``model``, a
    base or a PeftModel, with the fingerprint check) or names already loaded in the PeftModel ``model``.
    ``density`` is the fraction kept by TIES/DARE pruning (unused by linear and cat). ``model`` is deep-copied
    first unless ``copy_model=False``."""
    if method not in METHODS:
        raise ValueError(f"unknown merge method {method!r}; known: {', '.join(METHODS)}")
    target = copy.deepcopy(model) if copy_model else model
    if isinstance(adapters, Mapping):
        fingerprint = base_fingerprint(target)
        for adapter, path in adapters.items():
            target = load_adapter(target, path, name=adapter, fingerprint=fingerprint)
        names = list(adapters)
    else:
        names = list(adapters)
        if not isinstance(target, PeftModel):
            raise TypeError("adapters given by name must already be loaded in a PeftModel; or give {name: dir}")
    if not names:
        raise ValueError("nothing to merge: no adapters given")
    weights = list(weights) if weights is not None else default_weights(method, len(names))
    if len(weights) != len(names):
        raise ValueError(f"{len(weights)} weights for {len(names)} adapters")
    target.add_weighted_adapter(names, weights, name, combination_type=method,
                                density=density if method not in ("linear", "cat", "svd") else None)
    target.set_adapter(name)
    return target.eval()
