"""The in-model router ("tiny ada"): the Zephyra model's own router head on the trunk's pooled prompt states.

Training freezes the whole base and fits only ``model.router_head``. The trunk is frozen, so its pooled features
are computed once per prompt (a feature cache: training then takes seconds) and a linear classifier is fitted on
them with AdamW, weight decay and early stopping on validation loss; its weights are written into the head.
Temperature and abstention threshold are then fitted on validation (calibration.py).

    zephyra router train --kind inmodel --model runs/base --data runs/data/router --out runs/router/inmodel

    router = InModelRouter.load("runs/router/inmodel", model, tokenizer)
    router.route(["What does zip() do?"])                    # trunk-only forward pass
    out = model(ids, attention_mask=mask, return_router_logits=True)
    router.route_from_logits(out.router_logits, prompts)     # routing from the generation's own prefill
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..adapters import BaseFingerprint
from ..adapters.fingerprint import unwrap
from .artifact import check_router_base, read_router_dir, router_base_fingerprint, save_router_dir
from .calibration import Calibration, CalibrationConfig, decide, fit_calibration, softmax
from .data import RouterSplit
from .decision import RouteDecision, RouterArtifactError, check_prompts, decisions_from_logits
from .features import PROMPT_FORMATS, encode_prompts, head_logits, pad_id_of, trunk_features
from .metrics import route_metrics


@dataclass
class InModelTrainConfig:
    """How the router head is fitted. ``zephyra router train --kind inmodel`` exposes these as options."""

    prompt_format: str = "chat"  # "chat": as the runtime prefills a prompt (so one pass routes and generates)
    batch_size: int = 32  # prompts per trunk forward pass while caching features
    lr: float = 1e-2
    weight_decay: float = 1e-2  # AdamW's decoupled decay on the projection (not its bias)
    minibatch: int = 512
    max_epochs: int = 500
    patience: int = 20  # epochs without a lower validation loss before stopping (the best epoch is kept)
    min_delta: float = 1e-3  # a validation loss must fall by this much (nats) to count as lower: on separable
    # data it falls forever by tiny amounts as the weights grow
    seed: int = 0
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)

    def __post_init__(self):
        if self.prompt_format not in PROMPT_FORMATS:
            raise ValueError(f"prompt_format must be one of {', '.join(PROMPT_FORMATS)}, got {self.prompt_format!r}")
        for name in ("batch_size", "minibatch", "max_epochs", "patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if isinstance(self.calibration, dict):
            self.calibration = CalibrationConfig(**self.calibration)


class InModelRouter:
    """Routes with the model's router head, calibrated. ``model`` may be the base or a PeftModel over it (the
    trunk is never adapted, so adapters do not change routing; prefix tuning, which prefixes every layer, would)."""

    kind = "inmodel"

    def __init__(self, model, tokenizer, calibration: Calibration | None = None, prompt_format: str = "chat",
                 batch_size: int = 32, base: BaseFingerprint | None = None):
        self.model, self.tokenizer = model, tokenizer
        cfg = unwrap(model).config
        if unwrap(model).router_head is None:
            raise ValueError("this model has no router head: set router_labels in its config")
        self.labels: list[str] = list(cfg.router_labels)
        self.calibration = calibration or Calibration()
        self.prompt_format, self.batch_size = prompt_format, batch_size
        self.max_length: int = cfg.max_position_embeddings
        self._base = base  # the fingerprint recorded at training time, else computed when saving

    def encode(self, prompts: Sequence[str]) -> list[list[int]]:
        """Token ids as the runtime prefills them, cut from the left to the context with a warning."""
        return encode_prompts(self.tokenizer, check_prompts(prompts), self.max_length, self.prompt_format)

    def logits(self, prompts: Sequence[str]) -> np.ndarray:
        """Raw (uncalibrated) router logits (N, L)."""
        encoded = self.encode(prompts)
        return head_logits(self.model, encoded, self.batch_size, pad_id_of(self.tokenizer, unwrap(self.model))).numpy()

    def route(self, prompts: Sequence[str]) -> list[RouteDecision]:
        prompts = check_prompts(prompts)
        if not prompts:
            return []
        return decisions_from_logits(prompts, self.logits(prompts), self.labels, self.calibration)

    def route_from_trunk_states(self, trunk_states: torch.Tensor, attention_mask: torch.Tensor | None,
                                prompts: Sequence[str]) -> list[RouteDecision]:
        """Decisions from trunk states (B, T, C) the caller already has (``model.model(...,
        return_trunk_states=True)["trunk_states"]``), through the model's head."""
        with torch.no_grad():
            logits = unwrap(self.model).router_head(trunk_states, attention_mask)
        return self.route_from_logits(logits, prompts)

    def route_from_logits(self, router_logits: torch.Tensor | np.ndarray, prompts: Sequence[str] | None = None
                          ) -> list[RouteDecision]:
        """Decisions from router logits the caller already has, e.g. ``model(..., return_router_logits=True)
        .router_logits`` of a generation's prefill: routing then costs no pass of its own. Without ``prompts``
        the decisions' ``prompt`` is empty (the caller knows its prompts)."""
        if isinstance(router_logits, torch.Tensor):
            router_logits = router_logits.detach().float().cpu().numpy()
        prompts = [""] * len(router_logits) if prompts is None else list(prompts)
        return decisions_from_logits(prompts, router_logits, self.labels, self.calibration)

    # the runtime's router callback (zephyra.resolve.Resolver): router logits (B, L) -> one decision per row
    __call__ = route_from_logits

    # --- artifact ---
    def save(self, out_dir: str | os.PathLike, *, config: dict | None = None, metrics: dict | None = None,
             inputs: dict | None = None) -> Path:
        head = unwrap(self.model).router_head
        spec = {"kind": self.kind, "labels": self.labels, "calibration": self.calibration.to_dict(),
                "prompt_format": self.prompt_format, "pooling": unwrap(self.model).config.router_pooling}
        return save_router_dir(out_dir, spec, dict(head.state_dict()), config=config, metrics=metrics,
                               inputs=inputs, base=self._base or router_base_fingerprint(self.model))

    @classmethod
    def load(cls, path: str | os.PathLike, model, tokenizer, batch_size: int = 32) -> InModelRouter:
        """Load a saved router head into ``model``'s router head; refused for any other base."""
        spec, tensors, manifest = read_router_dir(path, kind=cls.kind)
        base = unwrap(model)
        if base.router_head is None or list(base.config.router_labels) != spec["labels"]:
            raise RouterArtifactError(f"{path}: router labels {spec['labels']} do not match the model's "
                                      f"{getattr(base.config, 'router_labels', None)}")
        check_router_base(path, manifest, model)
        with torch.no_grad():
            base.router_head.load_state_dict(tensors)
        return cls(model, tokenizer, spec["calibration"], spec["prompt_format"], batch_size,
                   BaseFingerprint(**{k: v for k, v in manifest["base"].items() if k != "fingerprint"}))


# --- training --------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def single_thread():
    """Run torch on one thread: for a classifier this small, handing work to a second thread costs more than
    the arithmetic (ten times slower on a busy 2-core machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def fit_linear(train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor, val_y: torch.Tensor,
               n_labels: int, cfg: InModelTrainConfig) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Softmax regression on the cached features, early-stopped on validation loss: (weight, bias, history).

    The features are not standardised: they are RMS-normalised already, and standardising blows up the channels
    that barely vary within the training phrasings, exactly the ones a new phrasing shifts (on held-out templates
    it cost most of the accuracy in our tests)."""
    torch.manual_seed(cfg.seed)
    lin = nn.Linear(train_x.shape[1], n_labels)
    nn.init.zeros_(lin.weight)  # zero start: the fit is convex, so this is deterministic and loses nothing
    nn.init.zeros_(lin.bias)
    opt = torch.optim.AdamW([{"params": [lin.weight], "weight_decay": cfg.weight_decay},
                             {"params": [lin.bias], "weight_decay": 0.0}], lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    best, best_state, best_epoch, bad, epoch = float("inf"), None, 0, 0, 0
    for epoch in range(1, cfg.max_epochs + 1):
        for idx in torch.randperm(len(train_x), generator=gen).split(cfg.minibatch):
            loss = F.cross_entropy(lin(train_x[idx]), train_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():
            val_loss = F.cross_entropy(lin(val_x), val_y).item()
        if val_loss < best - cfg.min_delta:
            best, best_epoch, bad = val_loss, epoch, 0
            best_state = {k: v.clone() for k, v in lin.state_dict().items()}
        elif (bad := bad + 1) >= cfg.patience:
            break
    lin.load_state_dict(best_state)
    with torch.no_grad():
        train_loss = F.cross_entropy(lin(train_x), train_y).item()
    history = {"epochs": epoch, "best_epoch": best_epoch, "train_loss": train_loss, "val_loss": best}
    return lin.weight.detach(), lin.bias.detach(), history


@torch.no_grad()
def write_head(head: nn.Module, weight: torch.Tensor, bias: torch.Tensor) -> None:
    """The fitted classifier into the head: its norm's weight back to ones (the features were fitted without
    it), its projection to the classifier."""
    head.norm.weight.fill_(1.0)
    head.proj.weight.copy_(weight)
    head.proj.bias.copy_(bias)


def features_to_logits(head: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """What the head outputs for cached features (exactly ``model.route``'s logits)."""
    with torch.no_grad():
        return head.proj(features * head.norm.weight.float())


def train_inmodel_router(model, tokenizer, train: RouterSplit, validation: RouterSplit,
                         cfg: InModelTrainConfig | None = None) -> tuple[InModelRouter, dict]:
    """Fit ``model.router_head`` (everything else frozen and unchanged) and calibrate it. Returns the router and
    a report (history, timings, validation metrics) for the manifest."""
    cfg = cfg or InModelTrainConfig()
    base = unwrap(model)
    if base.router_head is None:
        raise ValueError("this model has no router head: set router_labels in its config")
    labels = list(base.config.router_labels)
    train.check_labels(labels, "train")
    validation.check_labels(labels, "validation")
    fingerprint = router_base_fingerprint(base)  # before the head changes
    for p in base.parameters():
        p.requires_grad_(False)
    base.eval()
    router = InModelRouter(model, tokenizer, Calibration(), cfg.prompt_format, cfg.batch_size, fingerprint)
    # --- feature cache: one trunk pass per prompt ---
    t0 = time.perf_counter()
    pad = pad_id_of(tokenizer, base)
    x_tr = trunk_features(base, router.encode(train.prompts), cfg.batch_size, pad)
    x_va = trunk_features(base, router.encode(validation.prompts), cfg.batch_size, pad)
    t1 = time.perf_counter()
    index = {label: i for i, label in enumerate(labels)}
    y_tr = torch.tensor([index[y] for y in train.labels])
    y_va = torch.tensor([index[y] for y in validation.labels])
    # --- fit the head on the cache, then calibrate on validation ---
    with single_thread():
        weight, bias, hist = fit_linear(x_tr, y_tr, x_va, y_va, len(labels), cfg)
    write_head(base.router_head, weight, bias)
    val_logits = features_to_logits(base.router_head, x_va).numpy()
    router.calibration = fit_calibration(val_logits, labels, validation.labels, cfg.calibration)
    decided, _ = decide(softmax(val_logits, router.calibration.temperature), labels, router.calibration.threshold)
    report = {**hist, "feature_seconds": round(t1 - t0, 3), "fit_seconds": round(time.perf_counter() - t1, 3),
              "n_train": len(train), "n_validation": len(validation), **router.calibration.to_dict(),
              "validation": route_metrics(validation.labels, decided), "config": asdict(cfg)}
    return router, report
