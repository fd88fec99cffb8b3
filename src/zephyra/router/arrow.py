"""The data-free baseline: routing from the LoRA adapters' own weights, Arrow-style (Ostapenko et al. 2024,
"Towards Modular LLMs by Building and Reusing a Library of LoRAs").

For every LoRA layer of an adapter, the top right-singular vector v of its update dW = B A is the input
direction the adapter changes most: its prototype. A prompt's score for an adapter is the mean over that
adapter's layers of |<h, v>|, with h the (unit-normalised, mean-pooled) input of that layer in the base model's
forward pass of the prompt; scores are turned into probabilities by a softmax over adapters. The absolute value
is Arrow's: a singular vector's sign is arbitrary. Arrow routes each token; ``pooling="token"`` averages the
per-token scores instead of scoring the mean state. No training data is used for the prototypes; validation
data fits only the temperature and the abstention threshold (a prompt goes to ``base`` below it).

    zephyra router train --kind arrow --model runs/base --adapters runs/adapters --data runs/data/router \\
        --out runs/router/arrow
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from ..errors import ArtifactError, ConfigError
from ..adapters import BaseFingerprint, base_fingerprint, check_adapter_base, scan_adapters
from ..adapters.fingerprint import unwrap
from ..io import sha256_file
from .artifact import check_router_base, read_router_dir, router_base_fingerprint, save_router_dir
from .calibration import Calibration, CalibrationConfig, decide, fit_calibration, softmax
from .data import RouterSplit
from .decision import LogitsRouter, RouterArtifactError, check_prompts
from .features import PROMPT_FORMATS, encode_prompts, pad_id_of, padded_batches
from .metrics import route_metrics

LORA_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<ab>[AB])(?:\.[^.]+)?\.weight$")
KEY_SEP = "::"  # label::module in the saved tensors


@dataclass
class ArrowConfig:
    prompt_format: str = "chat"  # as the runtime prefills a prompt
    pooling: str = "mean"  # "mean": score the mean-pooled input; "token": mean of per-token scores (Arrow's)
    batch_size: int = 32
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)

    def __post_init__(self):
        if self.prompt_format not in PROMPT_FORMATS:
            raise ConfigError(f"prompt_format must be one of {', '.join(PROMPT_FORMATS)}, got {self.prompt_format!r}")
        if self.pooling not in ("mean", "token"):
            raise ConfigError(f"pooling must be 'mean' or 'token', got {self.pooling!r}")
        if isinstance(self.calibration, dict):
            self.calibration = CalibrationConfig(**self.calibration)


def lora_prototypes(adapter_dir: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Module path (in the base model) -> unit top right-singular vector of dW = B A, from a saved LoRA
    adapter (PEFT's ``adapter_model.safetensors``). DoRA's magnitude vector rescales output rows only: ignored."""
    path = Path(adapter_dir) / "adapter_model.safetensors"
    if not path.is_file():
        raise RouterArtifactError(f"{adapter_dir}: no adapter_model.safetensors (not a saved adapter)")
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, t in load_file(str(path)).items():
        if m := LORA_KEY.match(key):
            parts.setdefault(m["module"], {})[m["ab"]] = t.float()
    if not parts:
        raise RouterArtifactError(f"{adapter_dir}: no LoRA weights: Arrow routing needs LoRA (or DoRA) adapters")
    out = {}
    for module, ab in sorted(parts.items()):
        if set(ab) != {"A", "B"}:
            raise RouterArtifactError(f"{adapter_dir}: module {module} has lora_{next(iter(ab))} only")
        delta = ab["B"] @ ab["A"]  # (out, in)
        out[module] = torch.linalg.svd(delta, full_matrices=False).Vh[0]  # (in,), unit norm
    return out


def find_adapters(root: str | os.PathLike) -> dict[str, Path]:
    """Name -> directory of the saved adapters under ``root`` (``scan_adapters``' rules); one or none is an error."""
    found = scan_adapters(root)
    if not found:
        raise RouterArtifactError(f"{root}: no saved adapters under it (directories with adapter_config.json)")
    return found


class ArrowRouter(LogitsRouter):
    kind = "arrow"

    def __init__(self, model, tokenizer, prototypes: dict[str, dict[str, torch.Tensor]],
                 calibration: Calibration | None = None, prompt_format: str = "chat", pooling: str = "mean",
                 batch_size: int = 32, base: BaseFingerprint | None = None):
        if len(prototypes) < 2:
            raise ArtifactError(f"Arrow routing needs two or more adapters, got {len(prototypes)}")
        self.model, self.tokenizer = model, tokenizer
        self.labels: list[str] = list(prototypes)
        self.prototypes = prototypes
        self.modules = sorted({m for protos in prototypes.values() for m in protos})
        base_model = unwrap(model)
        missing = [m for m in self.modules if not _has_module(base_model, m)]
        if missing:
            raise RouterArtifactError(f"the base model has no module {missing[0]} that an adapter adapts")
        self.calibration = calibration or Calibration()
        self.prompt_format, self.pooling, self.batch_size = prompt_format, pooling, batch_size
        self.max_length: int = base_model.config.max_position_embeddings
        self._base = base

    # --- scoring ---
    def _pool(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, d) layer inputs -> (B, d) unit vectors, or (B, T, d) unit vectors for per-token scoring."""
        m = mask.to(x.dtype).unsqueeze(-1)
        if self.pooling == "token":
            return F.normalize(x.float(), dim=-1) * m
        return F.normalize((x.float() * m).sum(1) / m.sum(1).clamp(min=1.0), dim=-1)

    def _score_batch(self, inputs: dict[str, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        """(B, A): per adapter, the mean over its layers of |<h, v>|."""
        out = torch.zeros(mask.shape[0], len(self.labels))
        n_tok = mask.sum(1).clamp(min=1).float()
        for a, label in enumerate(self.labels):
            for module, v in self.prototypes[label].items():
                dots = (inputs[module] @ v).abs()  # (B,) or (B, T)
                out[:, a] += dots.sum(1) / n_tok if self.pooling == "token" else dots
            out[:, a] /= len(self.prototypes[label])
        return out

    @torch.no_grad()
    def logits(self, prompts: Sequence[str]) -> np.ndarray:
        """Raw Arrow scores (N, A) in [0, 1] (the softmax's inputs before temperature)."""
        encoded = encode_prompts(self.tokenizer, check_prompts(prompts), self.max_length, self.prompt_format)
        base = unwrap(self.model)
        out = torch.empty(len(encoded), len(self.labels))
        captured: dict[str, torch.Tensor] = {}
        mask_now: list[torch.Tensor] = []

        def hook_for(name):
            return lambda _mod, args: captured.__setitem__(name, self._pool(args[0], mask_now[-1]))

        handles = [base.get_submodule(m).register_forward_pre_hook(hook_for(m)) for m in self.modules]
        try:
            with self._adapters_off():
                for rows, ids, mask in padded_batches(encoded, self.batch_size, pad_id_of(self.tokenizer, base)):
                    mask_now.append(mask)
                    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)  # left padding, as model.route does
                    base.model(input_ids=ids, attention_mask=mask, position_ids=position_ids, use_cache=False)
                    out[rows] = self._score_batch(captured, mask)
        finally:
            for h in handles:
                h.remove()
        return out.numpy()

    def _adapters_off(self):
        """Arrow scores read the base's states: a PeftModel's adapters are switched off while scoring."""
        disable = getattr(self.model, "disable_adapter", None)
        return disable() if callable(disable) and hasattr(self.model, "peft_config") else contextlib.nullcontext()

    # --- artifact ---
    def save(self, out_dir: str | os.PathLike, *, config: dict | None = None, metrics: dict | None = None,
             inputs: dict | None = None) -> Path:
        spec = {"kind": self.kind, "labels": self.labels, "calibration": self.calibration.to_dict(),
                "prompt_format": self.prompt_format, "pooling": self.pooling}
        tensors = {f"{label}{KEY_SEP}{m}": v for label, protos in self.prototypes.items() for m, v in protos.items()}
        return save_router_dir(out_dir, spec, tensors, config=config, metrics=metrics, inputs=inputs,
                               base=self._base or router_base_fingerprint(self.model))

    @classmethod
    def load(cls, path: str | os.PathLike, model, tokenizer, batch_size: int = 32) -> ArrowRouter:
        spec, tensors, manifest = read_router_dir(path, kind=cls.kind)
        check_router_base(path, manifest, model)
        prototypes: dict[str, dict[str, torch.Tensor]] = {label: {} for label in spec["labels"]}
        for key, v in tensors.items():
            label, module = key.split(KEY_SEP, 1)
            prototypes[label][module] = v
        return cls(model, tokenizer, prototypes, spec["calibration"], spec["prompt_format"], spec["pooling"],
                   batch_size, BaseFingerprint(**{k: v for k, v in manifest["base"].items() if k != "fingerprint"}))


def _has_module(model, name: str) -> bool:
    try:
        model.get_submodule(name)
        return True
    except AttributeError:
        return False


def build_arrow_router(model, tokenizer, adapters: dict[str, str | os.PathLike], validation: RouterSplit | None = None,
                       cfg: ArrowConfig | None = None) -> tuple[ArrowRouter, dict]:
    """Prototypes from saved LoRA adapters (each checked against ``model``'s fingerprint, as load_adapter does),
    then temperature and threshold on ``validation`` if given (else T = 1 and no abstention)."""
    cfg = cfg or ArrowConfig()
    fp = base_fingerprint(model)
    for d in adapters.values():
        check_adapter_base(d, fp)
    t0 = time.perf_counter()
    prototypes = {name: lora_prototypes(d) for name, d in adapters.items()}
    router = ArrowRouter(model, tokenizer, prototypes, None, cfg.prompt_format, cfg.pooling, cfg.batch_size,
                         router_base_fingerprint(model))
    report: dict = {"svd_seconds": round(time.perf_counter() - t0, 3), "config": asdict(cfg),
                    "adapters": {n: {"path": str(d), "sha256": sha256_file(Path(d) / "adapter_model.safetensors")}
                                 for n, d in adapters.items()},
                    "layers": {n: len(p) for n, p in prototypes.items()}}
    if validation is not None:
        val_logits = router.logits(validation.prompts)
        router.calibration = fit_calibration(val_logits, router.labels, validation.labels, cfg.calibration)
        decided, _ = decide(softmax(val_logits, router.calibration.temperature), router.labels,
                            router.calibration.threshold)
        report.update(router.calibration.to_dict(), n_validation=len(validation),
                      validation=route_metrics(validation.labels, decided))
    return router, report

