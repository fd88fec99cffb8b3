"""The in-model router ("tiny ada"): a small head on the Zephyra base's own trunk states of the prompt.

The head and its labels are the router's artifact (``router.json`` + ``router.safetensors`` beside the base),
not part of the base: the base's fingerprint and config know no labels, so adding an adapter means training a
router for the new label set (seconds) while the base and every other adapter stay as they are.

Training leaves the base untouched. The trunk is frozen, so its pooled features are computed once per prompt (a
feature cache: training then takes seconds) and a linear classifier is fitted on them with AdamW, weight decay
and early stopping on validation loss; its weights become the head. Temperature and abstention threshold are
then fitted on validation (calibration.py).

    zephyra router train --kind inmodel --model runs/phase2/final --data runs/data/router --out runs/router/inmodel

    router = InModelRouter.load("runs/router/inmodel", model, tokenizer)
    router.route(["What does zip() do?"])                    # trunk-only forward pass
    out = model(ids, attention_mask=mask, return_trunk_states=True)
    router.route_trunk(out.trunk_states, mask, prompts)      # routing from the generation's own prefill
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..adapters import BaseFingerprint
from ..adapters.fingerprint import unwrap
from ..errors import ConfigError
from .artifact import check_router_base, read_router_dir, router_base_fingerprint, save_router_dir
from .calibration import BASE, Calibration, CalibrationConfig, decide, fit_calibration, softmax
from .data import RouterSplit
from .decision import (
    LogitsRouter,
    PromptTruncatedWarning,
    RouteDecision,
    RouterArtifactError,
    check_labels,
    check_prompts,
    decisions_from_logits,
)
from .features import POOLINGS, PROMPT_FORMATS, encode_prompts, head_features, pad_id_of, trunk_features
from .metrics import route_metrics
from .signals import IndexSignals


@dataclass
class InModelTrainConfig:
    """How the router head is fitted. ``zephyra router train --kind inmodel`` exposes these as options."""

    prompt_format: str = "chat"  # "chat": as the runtime prefills a prompt (so one pass routes and generates)
    pooling: str = "mean"  # how the head pools the prompt's trunk states: "mean" or "last"
    labels: list[str] | None = None  # the router's labels; None: "base" and every label of the training data
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
    # the knowledge indexes' signals beside the trunk's features (router/signals.py): the index root, None for none
    index: str | None = None
    index_scale: float = 3.0
    # which signals: BM25's top score is left out by default: on validation the head did better without it (91.8%
    # vs 90.2%) and it is most of the lookups' cost (docs/results.md, "In-model routing: the token table")
    index_signals: list[str] = field(default_factory=lambda: ["name_words", "named", "known_words", "mean_idf"])
    # the token table: one weight per token of the vocabulary and label, read as the prompt's bag of tokens (log
    # counts, unit length) beside the pooled trunk states; what a 2-layer trunk loses of rare names, it keeps
    token_bag: bool = True
    token_scale: float = 1.0

    def __post_init__(self):
        from .signals import ALL

        if self.index_scale <= 0:
            raise ConfigError(f"index_scale must be positive, got {self.index_scale!r}")
        if self.token_scale <= 0:
            raise ConfigError(f"token_scale must be positive, got {self.token_scale!r}")
        bad = [w for w in self.index_signals if w not in ALL]
        if bad or not self.index_signals:
            raise ConfigError(f"index_signals must be some of {', '.join(ALL)}, got {self.index_signals!r}")
        if self.prompt_format not in PROMPT_FORMATS:
            raise ConfigError(f"prompt_format must be one of {', '.join(PROMPT_FORMATS)}, got {self.prompt_format!r}")
        if self.pooling not in POOLINGS:
            raise ConfigError(f"pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}")
        for name in ("batch_size", "minibatch", "max_epochs", "patience"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)!r}")
        if isinstance(self.calibration, dict):
            self.calibration = CalibrationConfig(**self.calibration)


class RouterHead(nn.Module):
    """Trunk states (B, T, C) of a prompt -> one logit per label: RMS-normalised, pooled over the prompt's real
    tokens (mean, or each row's last token), scaled per channel and projected. It is the router's, not the
    base's: saved in the router's own directory, so the base knows no labels and an adapter set can grow."""

    def __init__(self, hidden_size: int, num_labels: int, eps: float = 1e-6, pooling: str = "mean"):
        super().__init__()
        if pooling not in POOLINGS:
            raise ConfigError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        if num_labels < 2:
            raise ConfigError(f"a router needs two or more labels, got {num_labels}")
        self.norm = nn.Module()
        self.norm.weight = nn.Parameter(torch.ones(hidden_size))
        self.proj = nn.Linear(hidden_size, num_labels, bias=True)
        self.eps, self.pooling = eps, pooling
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def features(self, trunk_states: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """What the linear layer reads, before the per-channel scale: (B, C). Cacheable (see features.py)."""
        if attention_mask is None:
            attention_mask = torch.ones(trunk_states.shape[:2], dtype=torch.long, device=trunk_states.device)
        return head_features(trunk_states, attention_mask, self.eps, self.pooling)

    def forward(self, trunk_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.from_features(self.features(trunk_states, attention_mask))  # (B, n_labels)

    def from_features(self, features: torch.Tensor) -> torch.Tensor:
        return self.proj(features * self.norm.weight.float())


def _zephyra(model):
    base = unwrap(model)
    if getattr(base.config, "model_type", None) != "zephyra":
        raise RouterArtifactError(f"the in-model router reads a Zephyra trunk; this base is "
                                  f"{getattr(base.config, 'model_type', type(base).__name__)!r}")
    return base


class InModelRouter(LogitsRouter):
    """Routes with a head on the base's trunk states, calibrated. ``model`` may be the base or a PeftModel over it
    (the trunk is never adapted, so adapters do not change routing; prefix tuning, which prefixes every layer,
    would). The head and its labels belong to the router: a new label set is a new router, the base unchanged."""

    kind = "inmodel"

    def __init__(self, model, tokenizer, labels: Sequence[str], head: RouterHead | None = None,
                 calibration: Calibration | None = None, prompt_format: str = "chat", pooling: str = "mean",
                 batch_size: int = 32, base: BaseFingerprint | None = None, signals: IndexSignals | None = None,
                 signal_weight: torch.Tensor | None = None, token_weight: torch.Tensor | None = None,
                 token_scale: float = 1.0):
        cfg = _zephyra(model).config
        self.model, self.tokenizer = model, tokenizer
        self.labels: list[str] = check_labels(labels)
        self.head = head if head is not None else RouterHead(cfg.hidden_size, len(self.labels), cfg.rms_norm_eps,
                                                             pooling)
        if self.head.proj.out_features != len(self.labels):
            raise RouterArtifactError(f"a head with {self.head.proj.out_features} outputs for {len(self.labels)} "
                                      "labels")
        # the indexes' signals (N, S) add signal_weight (L, S) to the head's logits: no second model, lookups only
        self.signals = signals
        if signals is not None:
            self.signal_weight = (signal_weight if signal_weight is not None
                                  else torch.zeros(len(self.labels), signals.dim, dtype=torch.float64))
            if tuple(self.signal_weight.shape) != (len(self.labels), signals.dim):
                raise RouterArtifactError(f"signal weights of shape {tuple(self.signal_weight.shape)} for "
                                          f"{len(self.labels)} labels and {signals.dim} signals")
        # the token table (L, V): the prompt's bag of tokens (token_bag) times it, added to the logits; None: none
        self.token_weight, self.token_scale = token_weight, float(token_scale)
        if token_weight is not None and tuple(token_weight.shape) != (len(self.labels), cfg.vocab_size):
            raise RouterArtifactError(f"a token table of shape {tuple(token_weight.shape)} for {len(self.labels)} "
                                      f"labels and a {cfg.vocab_size}-token vocabulary")
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
        pad = pad_id_of(self.tokenizer, unwrap(self.model))
        with torch.no_grad():
            logits = self.head.from_features(trunk_features(self.model, self.head, encoded, self.batch_size,
                                                            pad)).double().numpy()
        return logits + self._signal_logits(prompts) + self._token_logits(encoded)

    def _token_logits(self, encoded: list[list[int]] | None) -> np.ndarray | float:
        if self.token_weight is None:
            return 0.0
        bag = token_bag(encoded, self.token_weight.shape[1]) * self.token_scale
        return (bag @ self.token_weight.float().T).double().numpy()

    def _signal_logits(self, prompts: Sequence[str] | None) -> np.ndarray | float:
        if self.signals is None:
            return 0.0
        if prompts is None or any(not p for p in prompts):
            raise ValueError("this in-model router also reads the knowledge indexes: route_trunk needs the prompts")
        return self.signals(prompts) @ self.signal_weight.double().numpy().T


    def route_trunk(self, trunk_states: torch.Tensor, attention_mask: torch.Tensor | None,
                    prompts: Sequence[str] | None = None, input_ids: Sequence[Sequence[int]] | None = None
                    ) -> list[RouteDecision]:
        """Decisions from trunk states (B, T, C) the caller already has, e.g. those of a generation's own
        prefill (``model(..., return_trunk_states=True).trunk_states``): routing then costs no pass of its own.
        Without ``prompts`` the decisions' ``prompt`` is empty (the caller knows its prompts); a router with the
        indexes' signals or a token table needs them. ``input_ids``: the prompts' ids as prefilled (unpadded),
        which the token table reads; without them the prompts are encoded again. What the runtime calls, between
        the last trunk layer and the first branch layer."""
        with torch.no_grad():
            logits = self.head(trunk_states, attention_mask).double().numpy()
        if self.token_weight is not None:
            if input_ids is None:
                if prompts is None or any(not p for p in prompts):
                    raise ValueError("this in-model router also reads the prompt's tokens: route_trunk needs the "
                                     "prompts or their input_ids")
                with warnings.catch_warnings():  # a prompt cut to the context was said once, by the prefill
                    warnings.simplefilter("ignore", PromptTruncatedWarning)
                    input_ids = self.encode(prompts)
            logits = logits + self._token_logits([list(x) for x in input_ids])
        return self.route_from_logits(logits + self._signal_logits(prompts), prompts)

    def route_from_logits(self, router_logits: torch.Tensor | np.ndarray, prompts: Sequence[str] | None = None
                          ) -> list[RouteDecision]:
        """Decisions from raw router logits (N, L)."""
        if isinstance(router_logits, torch.Tensor):
            router_logits = router_logits.detach().float().cpu().numpy()
        prompts = [""] * len(router_logits) if prompts is None else list(prompts)
        return decisions_from_logits(prompts, router_logits, self.labels, self.calibration)

    # --- artifact ---
    def save(self, out_dir: str | os.PathLike, *, config: dict | None = None, metrics: dict | None = None,
             inputs: dict | None = None) -> Path:
        cfg = unwrap(self.model).config
        spec = {"kind": self.kind, "labels": self.labels, "calibration": self.calibration.to_dict(),
                "prompt_format": self.prompt_format, "pooling": self.head.pooling, "eps": self.head.eps,
                "hidden_size": cfg.hidden_size, "num_trunk_layers": cfg.num_trunk_layers}
        tensors = dict(self.head.state_dict())
        if self.signals is not None:
            spec["signals"] = self.signals.spec()
            tensors["signal_weight"] = self.signal_weight.double()
        if self.token_weight is not None:
            spec["token_scale"] = self.token_scale
            tensors["token_weight"] = self.token_weight.float().contiguous()
        return save_router_dir(out_dir, spec, tensors, config=config, metrics=metrics,
                               inputs=inputs, base=self._base or router_base_fingerprint(self.model))

    @classmethod
    def load(cls, path: str | os.PathLike, model, tokenizer, batch_size: int = 32,
             index_root: str | os.PathLike | None = None) -> InModelRouter:
        """A saved router on ``model``'s trunk; refused for any other base (its fingerprint). One fitted with the
        indexes' signals opens them under ``index_root`` if given, else where they were."""
        spec, tensors, manifest = read_router_dir(path, kind=cls.kind)
        check_router_base(path, manifest, model)
        signal_weight, signals = tensors.pop("signal_weight", None), None
        token_weight = tensors.pop("token_weight", None)
        if spec.get("signals"):
            from ..errors import ArtifactError

            try:
                signals = IndexSignals.from_spec(spec["signals"], index_root)
            except ArtifactError as e:
                raise RouterArtifactError(f"{path}: {e}") from None
        cfg = _zephyra(model).config
        head = RouterHead(cfg.hidden_size, len(spec["labels"]), spec.get("eps", cfg.rms_norm_eps),
                          spec.get("pooling", "mean"))
        try:
            head.load_state_dict(tensors)
        except RuntimeError as e:
            raise RouterArtifactError(f"{path}: the router head does not fit this base "
                                      f"({str(e).splitlines()[-1].strip()[:120]})") from None
        return cls(model, tokenizer, spec["labels"], head, spec["calibration"], spec["prompt_format"],
                   batch_size=batch_size,
                   base=BaseFingerprint(**{k: v for k, v in manifest["base"].items() if k != "fingerprint"}),
                   signals=signals, signal_weight=signal_weight, token_weight=token_weight,
                   token_scale=spec.get("token_scale", 1.0))


def token_bag(encoded: Sequence[Sequence[int]], vocab: int) -> torch.Tensor:
    """(N, vocab): how often each token occurs in each prompt, as log(1 + count), scaled to unit length per prompt:
    what the router's token table reads (a linear classifier on it is a bag-of-tokens model inside the head)."""
    out = torch.zeros(len(encoded), vocab)
    for i, ids in enumerate(encoded):
        if ids:
            t = torch.as_tensor(list(ids), dtype=torch.long)
            out[i].index_add_(0, t, torch.ones(len(t)))
    out = torch.log1p(out)
    return out / out.norm(dim=1, keepdim=True).clamp(min=1e-9)


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


def labels_of(train: RouterSplit) -> list[str]:
    """A router's labels from its training data: "base" first, then every other label in sorted order."""
    return [BASE, *sorted(set(train.labels) - {BASE})]


def train_inmodel_router(model, tokenizer, train: RouterSplit, validation: RouterSplit,
                         cfg: InModelTrainConfig | None = None) -> tuple[InModelRouter, dict]:
    """Fit a head for ``cfg.labels`` (default: ``labels_of(train)``) on the base's frozen trunk, and calibrate it.
    The base is not changed. Returns the router and a report (history, timings, validation metrics) for the
    manifest."""
    cfg = cfg or InModelTrainConfig()
    base = _zephyra(model)
    labels = check_labels(cfg.labels if cfg.labels is not None else labels_of(train))
    train.check_labels(labels, "train")
    validation.check_labels(labels, "validation")
    base.eval()
    t0 = time.perf_counter()
    signals, sig_tr = None, None
    if cfg.index is not None:
        from .signals import fit_signals

        signals, sig_tr = fit_signals(cfg.index, labels, train.prompts, cfg.index_scale, cfg.index_signals)
    router = InModelRouter(model, tokenizer, labels, calibration=Calibration(), prompt_format=cfg.prompt_format,
                           pooling=cfg.pooling, batch_size=cfg.batch_size, base=router_base_fingerprint(base),
                           signals=signals)
    # --- feature cache: one trunk pass per prompt ---
    pad = pad_id_of(tokenizer, base)
    enc_tr, enc_va = router.encode(train.prompts), router.encode(validation.prompts)
    x_tr = trunk_features(base, router.head, enc_tr, cfg.batch_size, pad)
    x_va = trunk_features(base, router.head, enc_va, cfg.batch_size, pad)
    n_trunk = x_tr.shape[1]
    vocab = base.config.vocab_size
    if cfg.token_bag:  # the token table, fitted with the head: one linear layer over all the parts
        x_tr = torch.cat([x_tr, token_bag(enc_tr, vocab) * cfg.token_scale], 1)
        x_va = torch.cat([x_va, token_bag(enc_va, vocab) * cfg.token_scale], 1)
    n_tok = n_trunk + (vocab if cfg.token_bag else 0)
    if signals is not None:  # fitted jointly with the head: one linear layer over both
        x_tr = torch.cat([x_tr, torch.from_numpy(sig_tr).float()], 1)
        x_va = torch.cat([x_va, torch.from_numpy(signals(validation.prompts)).float()], 1)
    t1 = time.perf_counter()
    index = {label: i for i, label in enumerate(labels)}
    y_tr = torch.tensor([index[y] for y in train.labels])
    y_va = torch.tensor([index[y] for y in validation.labels])
    # --- fit the head on the cache, then calibrate on validation ---
    with single_thread():
        weight, bias, hist = fit_linear(x_tr, y_tr, x_va, y_va, len(labels), cfg)
    with torch.no_grad():  # the features were fitted without the head's per-channel scale: it stays at ones
        router.head.norm.weight.fill_(1.0)
        router.head.proj.weight.copy_(weight[:, :n_trunk])
        router.head.proj.bias.copy_(bias)
        if cfg.token_bag:
            router.token_weight, router.token_scale = weight[:, n_trunk:n_tok].float().clone(), cfg.token_scale
        if signals is not None:
            router.signal_weight = weight[:, n_tok:].double().clone()
        val_logits = router.head.from_features(x_va[:, :n_trunk]).double().numpy()
        val_logits = val_logits + (x_va[:, n_trunk:].double() @ weight[:, n_trunk:].double().T).numpy()
    router.calibration = fit_calibration(val_logits, labels, validation.labels, cfg.calibration)
    decided, _ = decide(softmax(val_logits, router.calibration.temperature), labels, router.calibration.threshold)
    report = {**hist, "index_signals": signals.domains if signals is not None else None,
              "feature_seconds": round(t1 - t0, 3), "fit_seconds": round(time.perf_counter() - t1, 3),
              "n_train": len(train), "n_validation": len(validation), **router.calibration.to_dict(),
              "validation": route_metrics(validation.labels, decided), "config": asdict(cfg)}
    return router, report
