"""The likelihood router: the adapter whose branch explains the prompt best, read from the model itself.

Every adapter touches only the branch, so the prompt's trunk states are the same under all of them: the trunk runs
once, then the branch runs once per adapter and once for the base, all as one batch (``BranchScorer``: block r of
the batch is branch r; the adapters are applied per block by the runtime's own per-row LoRA layers,
``zephyra.adapters.bank``). What comes out is each branch's mean log-likelihood of the prompt's own tokens.

Features per prompt and prompt format (``chat``: the prompt as the user turn, as the runtime prefills it; ``raw``:
the bare text): the log-likelihood ratio of every adapter against the base (mean over the prompt's tokens), and the
base's own mean log-likelihood (gibberish is unlikely under every branch); optionally the trunk head's logits. A
multinomial logistic regression over ``base`` + the adapters combines them (``base``: no adapter explains the
prompt better than the base does), then temperature and abstention threshold are fitted on validation like every
router's (calibration.py). Fitting takes seconds after the features: the router is refitted for whatever adapter
set it is given.

    zephyra router train --kind likelihood --model runs/phase2/final --adapters runs/adapters \\
        --data runs/data/router --out runs/router/likelihood

    router = LikelihoodRouter.load("runs/router/likelihood", model, tokenizer)
    router.route(["What does zip() do?"])

Cost: the trunk once plus (adapters + 1) branches, with the output layer on every scored token of every branch,
against a plain prefill's one pass with the output layer on the last token: ``prefill_cost`` measures the ratio.
"""

from __future__ import annotations

import copy
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..adapters import BaseFingerprint, scan_adapters
from ..adapters.bank import KERNELS, AdapterBank, RowLoRALinear, row_groups, row_masked, row_stacks
from ..adapters.fingerprint import unwrap
from ..chat import encode_prompt
from ..errors import ConfigError, DataError
from ..io import sha256_file
from ..model.modeling import _attention_mask
from .artifact import check_router_base, read_router_dir, router_base_fingerprint, save_router_dir
from .calibration import BASE, Calibration, CalibrationConfig, decide, fit_calibration, softmax
from .data import RouterSplit
from .decision import LogitsRouter, RouterArtifactError, check_labels, check_prompts
from .features import PROMPT_FORMATS, encode_prompts, pad_id_of, padded_batches
from .metrics import route_metrics

FIT_ON = ("train", "validation")
STATS = ("llr", "llr_max", "llr_surprisal", "llr_rare")  # per adapter, against the base (BranchScorer.statistics)


def block_features(stats: np.ndarray) -> np.ndarray:
    """One format's features from ``BranchScorer.statistics`` (N, 1 + 4K): the base's mean log-likelihood, each
    adapter's mean ratio to it, then the max, surprisal-weighted and rare-token ratios (N, 1 + 4K)."""
    k = (stats.shape[1] - 1) // 4
    return np.concatenate([stats[:, :1], stats[:, 1:1 + k] - stats[:, :1], stats[:, 1 + k:]], axis=1)


@dataclass
class LikelihoodTrainConfig:
    """How the likelihood router is fitted. ``zephyra router train --kind likelihood --set key=value``."""

    prompt_formats: list[str] = field(default_factory=lambda: ["chat", "raw"])  # each one more scoring pass
    head: bool = False  # add the trunk head's logits (an in-model head fitted on the train split) as features
    fit_on: str = "train"  # the split the combination is fitted on: "train" (``per_label`` prompts a label, C by
    # validation accuracy) or "validation" (C by 5-fold cross-validation; the validation metrics are out-of-fold)
    per_label: int = 300  # train prompts per label whose features are computed (0: all of them)
    c_grid: list[float] = field(default_factory=lambda: [0.01, 0.1, 1.0, 10.0])
    max_iter: int = 2000
    batch_size: int = 16  # prompts per scoring batch (each is (adapters + 1) rows through the branch)
    kernel: str = "grouped"  # the per-row LoRA layout (zephyra.adapters.bank): one group of rows per adapter
    seed: int = 0
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)

    def __post_init__(self):
        bad = [f for f in self.prompt_formats if f not in PROMPT_FORMATS]
        if not self.prompt_formats or bad or len(set(self.prompt_formats)) != len(self.prompt_formats):
            raise ConfigError(f"prompt_formats must be distinct values of {', '.join(PROMPT_FORMATS)}, "
                              f"got {self.prompt_formats!r}")
        if self.fit_on not in FIT_ON:
            raise ConfigError(f"fit_on must be one of {', '.join(FIT_ON)}, got {self.fit_on!r}")
        if self.kernel not in KERNELS:
            raise ConfigError(f"kernel must be one of {', '.join(KERNELS)}, got {self.kernel!r}")
        if not self.c_grid or any(c <= 0 for c in self.c_grid):
            raise ConfigError(f"c_grid must be positive numbers, got {self.c_grid!r}")
        for name in ("batch_size", "max_iter"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.per_label < 0:
            raise ConfigError(f"per_label must be >= 0, got {self.per_label!r}")
        if isinstance(self.calibration, dict):
            self.calibration = CalibrationConfig(**self.calibration)


# --- the batched pass ----------------------------------------------------------------------------------------------

def _plain_linear(lin: nn.Module) -> nn.Module:
    """The plain Linear under a PEFT wrapper or a runtime RowLoRALinear (sharing its Parameters)."""
    if hasattr(lin, "get_base_layer"):
        lin = lin.get_base_layer()
    if isinstance(lin, RowLoRALinear):
        plain = nn.Linear(lin.in_features, lin.out_features, bias=lin.bias is not None)
        plain.weight, plain.bias = lin.weight, lin.bias
        return plain
    return lin


def _shared_copy(layer: nn.Module) -> nn.Module:
    """A copy of ``layer`` whose modules are new but whose Parameters and buffers are the original's: the scorer can
    rewire its linears without touching the model that the runtime (or anyone) is running."""
    memo = {id(t): t for t in [*layer.parameters(), *layer.buffers()]}
    out = copy.deepcopy(layer, memo)
    for name, sub in list(out.named_modules()):
        if name and (isinstance(sub, RowLoRALinear) or hasattr(sub, "get_base_layer")):
            parent, _, attr = name.rpartition(".")
            setattr(out.get_submodule(parent) if parent else out, attr, _plain_linear(sub))
    return out


class BranchScorer:
    """Mean log-likelihood of each prompt's scored tokens under the base's branch and under every adapter's,
    from one trunk pass and one batched branch pass: rows ``r * B + i`` of the branch batch are prompt i through
    branch r (0: the base, r: adapter r). The model is never modified: the branch layers are copies sharing its
    weights, with the adapted linears replaced by per-row LoRA layers."""

    def __init__(self, model, bank: AdapterBank, kernel: str = "grouped"):
        base = unwrap(model)
        bank.check_fits(base)
        self.model, self.bank, self.kernel = base, bank, kernel
        self.names = bank.names
        n = base.config.num_trunk_layers
        self.layers = nn.ModuleList(_shared_copy(layer) for layer in base.model.layers[n:]).eval()
        self.linears: dict[str, RowLoRALinear] = {}
        for path in bank.module_paths():  # model.layers.<i>.<sub.path>, i in the branch (check_fits)
            parts = path.split(".")
            layer, sub = self.layers[int(parts[2]) - n], parts[3:]
            parent = layer.get_submodule(".".join(sub[:-1])) if len(sub) > 1 else layer
            self.linears[path] = RowLoRALinear(_plain_linear(getattr(parent, sub[-1])), kernel)
            setattr(parent, sub[-1], self.linears[path])
        self._rows: dict[int, dict] = {}  # batch size -> each layer's rows (laid out once per size)
        self._lock = threading.Lock()  # the rows live on the layers: one batch at a time

    @property
    def branches(self) -> list[str]:
        return [BASE, *self.names]

    def _set_rows(self, batch: int) -> None:
        if batch not in self._rows:
            mixes = [{} for _ in range(batch)] + [{n: 1.0} for n in self.names for _ in range(batch)]
            build = {"masked": row_masked, "bmm": row_stacks, "grouped": row_groups}[self.kernel]
            self._rows = {batch: {p: build(self.bank, p, mixes, lin) for p, lin in self.linears.items()}}
        for path, lin in self.linears.items():
            lin.rows = self._rows[batch][path]

    @torch.no_grad()
    def token_logprobs(self, ids: torch.Tensor, mask: torch.Tensor, scored: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """(logp (R, N), prompt (N,)): every branch's log-probability of each scored token (``scored`` (B, T) True;
        each token predicted from those before it; position 0 is never scored) and the prompt it belongs to.
        Row r is branch r (0: the base). Left padding, as generation pads."""
        B, T = ids.shape
        R = 1 + len(self.names)
        m = self.model.model
        x = self.model.trunk_states(ids, mask).repeat(R, 1, 1)  # (R*B, T, C): block r = branch r
        masks = mask.repeat(R, 1)
        attn, is_causal = _attention_mask(masks, R * B, T, 0, x.device)
        pos = (masks.long().cumsum(-1) - 1).clamp(min=0) if attn is not None else None
        cos, sin = m.rotary_emb(pos, 0, T)
        causal_bias = m._causal_bias(T, x) if is_causal else None
        with self._lock:
            self._set_rows(B)
            try:
                for layer in self.layers:
                    x = layer(x, cos, sin, attn, is_causal, None, causal_bias)
            finally:
                for lin in self.linears.values():
                    lin.rows = None
        sel = scored[:, 1:]  # (B, T-1): prediction t -> token t+1
        h = m.norm(x)[:, :-1][sel.repeat(R, 1)]  # (R*N, C) only the positions whose next token is scored
        target = ids[:, 1:][sel].repeat(R)  # (R*N,)
        logp = torch.empty(len(target))
        for s in range(0, len(target), 4096):  # bounded memory: 4096 rows of the (rows, V) logits at a time
            lp = torch.log_softmax(self.model.lm_head(h[s:s + 4096]).float(), dim=-1)
            logp[s:s + 4096] = lp.gather(1, target[s:s + 4096, None]).squeeze(1)
        prompt = torch.arange(B).unsqueeze(1).expand(-1, T - 1)[sel]
        return logp.view(R, -1), prompt

    def mean_logprobs(self, ids: torch.Tensor, mask: torch.Tensor, scored: torch.Tensor) -> torch.Tensor:
        """(B, 1 + adapters): per branch, the mean log-probability of the prompt's scored tokens."""
        return self.statistics(ids, mask, scored)[:, : 1 + len(self.names)]

    def statistics(self, ids: torch.Tensor, mask: torch.Tensor, scored: torch.Tensor) -> torch.Tensor:
        """(B, 1 + 4 * adapters): each branch's mean log-probability of the scored tokens (base first), then per
        adapter its token log-likelihood ratios to the base: their maximum, their mean weighted by the base's
        surprisal (rare words carry a domain, "What is the" does not) and their mean over the quarter of the
        prompt's tokens the base finds most surprising (at least one)."""
        logp, prompt = self.token_logprobs(ids, mask, scored)
        B, R = ids.shape[0], logp.shape[0]
        n = torch.zeros(B).index_add_(0, prompt, torch.ones(len(prompt))).clamp(min=1)
        mean = torch.zeros(R, B).index_add_(1, prompt, logp) / n  # (R, B)
        llr = logp[1:] - logp[:1]  # (K, N)
        top = torch.full((R - 1, B), -torch.inf).scatter_reduce(1, prompt.expand(R - 1, -1), llr, "amax")
        surprise = -logp[0]
        w = torch.zeros(B).index_add_(0, prompt, surprise).clamp(min=1e-6)
        weighted = torch.zeros(R - 1, B).index_add_(1, prompt, llr * surprise) / w
        rare = torch.zeros(len(prompt), dtype=torch.bool)
        for b in range(B):
            idx = (prompt == b).nonzero().squeeze(1)
            if len(idx):
                k = max(1, len(idx) // 4)
                rare[idx[surprise[idx].topk(k).indices]] = True
        rare_mean = torch.zeros(R - 1, B).index_add_(1, prompt[rare], llr[:, rare])
        rare_mean = rare_mean / torch.zeros(B).index_add_(0, prompt[rare], torch.ones(int(rare.sum()))).clamp(min=1)
        top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
        return torch.cat([mean, top, weighted, rare_mean]).T  # (B, R + 3K) = (B, 1 + 4K)


def scored_span(tokenizer, fmt: str) -> tuple[int, int]:
    """(tokens before a prompt's text, tokens after it that are not scored) in format ``fmt``: the template's
    fixed parts, found by encoding two different prompts. Chat scores the text and the user turn's end (eos), not
    the assistant header after it; raw scores everything after bos."""
    a, b = encode_prompt(tokenizer, "a", fmt), encode_prompt(tokenizer, "b c d", fmt)
    pre = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    post = next((i for i, (x, y) in enumerate(zip(a[::-1], b[::-1])) if x != y), 0)
    return max(pre, 1), max(post - 1, 0)


# --- the router -----------------------------------------------------------------------------------------------------

class LikelihoodRouter(LogitsRouter):
    """Routes by which adapter's branch gives the prompt the highest likelihood relative to the base's, through a
    calibrated logistic regression with a ``base`` class. Needs the base and the adapters it was fitted with
    (their files' hashes are recorded: retrained adapters need a refitted router, seconds)."""

    kind = "likelihood"

    def __init__(self, model, tokenizer, adapters: dict[str, str | os.PathLike], labels: Sequence[str],
                 weight: np.ndarray, bias: np.ndarray, mean: np.ndarray, scale: np.ndarray,
                 prompt_formats: Sequence[str] = ("chat", "raw"), head=None, calibration: Calibration | None = None,
                 batch_size: int = 16, kernel: str = "grouped", base: BaseFingerprint | None = None,
                 bank: AdapterBank | None = None):
        base_model = unwrap(model)
        if getattr(base_model.config, "model_type", None) != "zephyra":
            raise RouterArtifactError("the likelihood router reads a Zephyra trunk and branch")
        self.model, self.tokenizer = model, tokenizer
        self.adapters = {n: str(p) for n, p in adapters.items()}
        self.labels = check_labels(labels)
        if set(self.labels) != {BASE, *self.adapters}:
            raise RouterArtifactError(f"labels {self.labels} are not base + the adapters {sorted(self.adapters)}")
        self.prompt_formats, self.head = list(prompt_formats), head
        self.weight, self.bias = np.asarray(weight, np.float64), np.asarray(bias, np.float64)
        self.mean, self.scale = np.asarray(mean, np.float64), np.asarray(scale, np.float64)
        self.calibration = calibration or Calibration()
        self.batch_size = batch_size
        self.max_length: int = base_model.config.max_position_embeddings
        self.scorer = BranchScorer(model, bank or AdapterBank.from_dirs(base_model, self.adapters), kernel)
        self.spans = {f: scored_span(tokenizer, f) for f in self.prompt_formats}
        self._base = base

    @property
    def feature_names(self) -> list[str]:
        names = [f"{kind}:{f}:{a}" for f in self.prompt_formats
                 for kind, a in [("logp", BASE)] + [(k, n) for k in STATS for n in self.scorer.names]]
        return names + ([f"head:{label}" for label in self.head_labels] if self.head is not None else [])

    @property
    def head_labels(self) -> list[str]:
        return list(self.head.labels) if self.head is not None else []

    # --- features ---
    def branch_statistics(self, prompts: Sequence[str], fmt: str) -> np.ndarray:
        """(N, 1 + 4 * adapters) ``BranchScorer.statistics`` of every prompt in format ``fmt``: the mean
        log-likelihood of its own tokens under the base's branch and each adapter's (columns 0..K, base first),
        then per adapter the maximum, surprisal-weighted and rare-token ratios to the base."""
        encoded = encode_prompts(self.tokenizer, check_prompts(prompts), self.max_length, fmt)
        pre, post = self.spans[fmt]
        prefix = encode_prompt(self.tokenizer, "a", fmt)[:pre]
        K = len(self.scorer.names)
        out = torch.empty(len(encoded), 1 + 4 * K)
        for rows, ids, mask in padded_batches(encoded, self.batch_size, pad_id_of(self.tokenizer, unwrap(self.model))):
            scored = torch.zeros_like(mask, dtype=torch.bool)
            width = ids.shape[1]
            for r, i in enumerate(rows):
                n = len(encoded[i])
                start = pre if encoded[i][:pre] == prefix else 1  # a prompt cut from the left lost its prefix
                scored[r, width - n + start: width - post] = True
            out[rows] = self.scorer.statistics(ids, mask, scored)
        return out.numpy().astype(np.float64)

    def branch_logprobs(self, prompts: Sequence[str], fmt: str) -> np.ndarray:
        """(N, 1 + adapters) mean log-likelihood of each prompt's own tokens under the base's branch and each
        adapter's (columns: ``self.scorer.branches``)."""
        return self.branch_statistics(prompts, fmt)[:, : 1 + len(self.scorer.names)]

    def features(self, prompts: Sequence[str]) -> np.ndarray:
        """(N, F) raw features in ``feature_names``' order."""
        cols = [block_features(self.branch_statistics(prompts, fmt)) for fmt in self.prompt_formats]
        if self.head is not None:
            cols.append(self.head.logits(prompts).astype(np.float64))
        return np.concatenate(cols, axis=1)

    def logits_from_features(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.scale) @ self.weight.T + self.bias

    def logits(self, prompts: Sequence[str]) -> np.ndarray:
        """Raw (uncalibrated) logits (N, L) of the combination."""
        return self.logits_from_features(self.features(prompts))

    # --- artifact ---
    def save(self, out_dir: str | os.PathLike, *, config: dict | None = None, metrics: dict | None = None,
             inputs: dict | None = None) -> Path:
        spec = {"kind": self.kind, "labels": self.labels, "calibration": self.calibration.to_dict(),
                "prompt_formats": self.prompt_formats, "feature_names": self.feature_names,
                "kernel": self.scorer.kernel,
                "adapters": {n: {"path": str(Path(p).resolve()), "sha256": _adapter_hash(p)}
                             for n, p in self.adapters.items()},
                "head": None if self.head is None else {"labels": self.head_labels, "pooling": self.head.head.pooling,
                                                        "eps": self.head.head.eps,
                                                        "prompt_format": self.head.prompt_format}}
        tensors = {"weight": torch.from_numpy(self.weight), "bias": torch.from_numpy(self.bias),
                   "mean": torch.from_numpy(self.mean), "scale": torch.from_numpy(self.scale)}
        if self.head is not None:
            tensors.update({f"head.{k}": v for k, v in self.head.head.state_dict().items()})
        return save_router_dir(out_dir, spec, tensors, config=config, metrics=metrics, inputs=inputs,
                               base=self._base or router_base_fingerprint(self.model))

    @classmethod
    def load(cls, path: str | os.PathLike, model, tokenizer, adapters: str | os.PathLike | None = None,
             batch_size: int = 16) -> LikelihoodRouter:
        """A saved router on ``model``, with the adapters it was fitted with (by default from the paths it
        recorded; ``adapters``: a directory of them instead). Refused for another base, or for an adapter whose
        weights changed since (retrain the router: seconds)."""
        spec, tensors, manifest = read_router_dir(path, kind=cls.kind)
        check_router_base(path, manifest, model)
        found = {n: str(p) for n, p in scan_adapters(adapters).items()} if adapters is not None else {}
        dirs = {}
        for name, rec in spec["adapters"].items():
            if adapters is not None and name not in found:
                raise RouterArtifactError(f"{path}: adapter {name!r} is not under {adapters}")
            d = found[name] if adapters is not None else rec["path"]
            if not (Path(d) / "adapter_model.safetensors").is_file():
                raise RouterArtifactError(f"{path}: adapter {name!r} not found at {d} (pass its directory)")
            if _adapter_hash(d) != rec["sha256"]:
                raise RouterArtifactError(f"{path}: adapter {name!r} at {d} changed since the router was fitted; "
                                          "refit it (zephyra router train --kind likelihood)")
            dirs[name] = d
        head = None
        if spec.get("head"):
            from .inmodel import InModelRouter, RouterHead

            h = spec["head"]
            rh = RouterHead(unwrap(model).config.hidden_size, len(h["labels"]), h["eps"], h["pooling"])
            rh.load_state_dict({k.removeprefix("head."): v for k, v in tensors.items() if k.startswith("head.")})
            head = InModelRouter(model, tokenizer, h["labels"], rh, prompt_format=h["prompt_format"])
        fp = BaseFingerprint(**{k: v for k, v in manifest["base"].items() if k != "fingerprint"})
        t = {k: v.double().numpy() for k, v in tensors.items() if not k.startswith("head.")}
        return cls(model, tokenizer, dirs, spec["labels"], t["weight"], t["bias"], t["mean"], t["scale"],
                   spec["prompt_formats"], head, spec["calibration"], batch_size, spec.get("kernel", "grouped"), fp)


def _adapter_hash(adapter_dir: str | os.PathLike) -> str:
    return sha256_file(Path(adapter_dir) / "adapter_model.safetensors")


# --- training -------------------------------------------------------------------------------------------------------

def per_label_sample(split: RouterSplit, per_label: int, seed: int = 0) -> RouterSplit:
    """At most ``per_label`` prompts of each label (a seeded sample, in the split's order); 0: all of them."""
    if not per_label:
        return split
    rng = np.random.default_rng(seed)
    keep: list[int] = []
    for label in sorted(set(split.labels)):
        idx = [i for i, y in enumerate(split.labels) if y == label]
        keep += list(rng.choice(idx, size=per_label, replace=False)) if len(idx) > per_label else idx
    keep.sort()
    return RouterSplit([split.prompts[i] for i in keep], [split.labels[i] for i in keep],
                       [split.templates[i] for i in keep])


def _standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return x.mean(0), np.where(x.std(0) > 1e-8, x.std(0), 1.0)


def _lr(x, y, c: float, cfg: LikelihoodTrainConfig, labels: list[str]):
    """(weight (L, F), bias (L,)) of a multinomial logistic regression, rows in ``labels``' order."""
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=c, max_iter=cfg.max_iter).fit(x, y)
    missing = sorted(set(labels) - set(clf.classes_))
    if missing:
        raise DataError(f"no fitting prompts of label(s) {', '.join(missing)}")
    order = [list(clf.classes_).index(label) for label in labels]
    return clf.coef_[order], clf.intercept_[order]


def _nll_acc(logits: np.ndarray, y: list[str], labels: list[str]) -> tuple[float, float]:
    p = softmax(logits)
    idx = np.array([labels.index(t) for t in y])
    return float(-np.log(p[np.arange(len(idx)), idx] + 1e-12).mean()), float((p.argmax(1) == idx).mean())


def _fit_combination(x_fit, y_fit, x_va, y_va, labels, cfg: LikelihoodTrainConfig):
    """(weight, bias, mean, scale, C, validation logits): fitted on the ``fit`` rows, C by validation accuracy
    (ties: log-loss); with ``fit_on="validation"`` both are the validation rows and C is chosen, and the
    returned logits are, out-of-fold (5 folds), so that the calibration and the reported metrics stay honest."""
    mean, scale = _standardise(x_fit)
    z_fit, z_va = (x_fit - mean) / scale, (x_va - mean) / scale
    best = None
    for c in cfg.c_grid:
        if cfg.fit_on == "validation":
            logits = _out_of_fold(z_va, y_va, c, cfg, labels)
        else:
            w, b = _lr(z_fit, y_fit, c, cfg, labels)
            logits = z_va @ w.T + b
        nll, acc = _nll_acc(logits, y_va, labels)
        if best is None or (acc, -nll) > best[0]:
            best = ((acc, -nll), c, logits)
    _, c, logits = best
    w, b = _lr(z_fit, y_fit, c, cfg, labels)
    return w, b, mean, scale, c, logits


def _out_of_fold(z, y, c, cfg, labels, folds: int = 5) -> np.ndarray:
    from sklearn.model_selection import StratifiedKFold

    out = np.empty((len(y), len(labels)))
    y = np.asarray(y)
    for tr, te in StratifiedKFold(folds, shuffle=True, random_state=cfg.seed).split(z, y):
        w, b = _lr(z[tr], y[tr], c, cfg, labels)
        out[te] = z[te] @ w.T + b
    return out


def train_likelihood_router(model, tokenizer, adapters: str | os.PathLike | dict, train: RouterSplit,
                            validation: RouterSplit, cfg: LikelihoodTrainConfig | None = None
                            ) -> tuple[LikelihoodRouter, dict]:
    """Features for a per-label sample of ``train`` and all of ``validation`` (one batched pass per prompt and
    format), the combination fitted and calibrated. ``adapters``: a directory of them, or {name: directory}.
    The base is not changed. Returns the router and a report (timings, C, validation metrics) for the manifest."""
    cfg = cfg or LikelihoodTrainConfig()
    dirs = {n: str(p) for n, p in (scan_adapters(adapters) if not isinstance(adapters, dict) else adapters).items()}
    if not dirs:
        raise ConfigError(f"{adapters}: no adapters found, so no labels to route to")
    labels = [BASE, *dirs]
    train.check_labels(labels, "train")
    validation.check_labels(labels, "validation")
    unwrap(model).eval()
    fp = router_base_fingerprint(model)
    head, head_report = None, {}
    t0 = time.perf_counter()
    if cfg.head:
        from .inmodel import InModelTrainConfig, train_inmodel_router

        head, head_report = train_inmodel_router(model, tokenizer, train, validation,
                                                 InModelTrainConfig(labels=labels, seed=cfg.seed))
        head_report.pop("config", None)
    n_feat = len(cfg.prompt_formats) * (1 + len(STATS) * len(dirs)) + (len(labels) if head is not None else 0)
    zeros = np.zeros(n_feat)
    router = LikelihoodRouter(model, tokenizer, dirs, labels, np.zeros((len(labels), n_feat)), np.zeros(len(labels)),
                              zeros, zeros + 1, cfg.prompt_formats, head, batch_size=cfg.batch_size,
                              kernel=cfg.kernel, base=fp)
    fit = per_label_sample(train, cfg.per_label, cfg.seed) if cfg.fit_on == "train" else validation
    t1 = time.perf_counter()
    x_va = router.features(validation.prompts)
    x_fit = router.features(fit.prompts) if cfg.fit_on == "train" else x_va
    t2 = time.perf_counter()
    w, b, mean, scale, c, val_logits = _fit_combination(x_fit, fit.labels, x_va, validation.labels, labels, cfg)
    router.weight, router.bias, router.mean, router.scale = w, b, mean, scale
    router.calibration = fit_calibration(val_logits, labels, validation.labels, cfg.calibration)
    decided, _ = decide(softmax(val_logits, router.calibration.temperature), labels, router.calibration.threshold)
    report = {"C": c, "head_seconds": round(t1 - t0, 3), "feature_seconds": round(t2 - t1, 3),
              "fit_seconds": round(time.perf_counter() - t2, 3), "n_fit": len(fit), "n_validation": len(validation),
              "features": router.feature_names, **router.calibration.to_dict(),
              "validation": route_metrics(validation.labels, decided),
              "validation_out_of_fold": cfg.fit_on == "validation",
              "adapters": {n: {"path": d, "sha256": _adapter_hash(d)} for n, d in dirs.items()},
              "config": asdict(cfg)}
    if head_report:
        report["head"] = {k: head_report[k] for k in ("validation", "temperature", "threshold") if k in head_report}
    return router, report


# --- cost -----------------------------------------------------------------------------------------------------------

@torch.no_grad()
def prefill_cost(router: LikelihoodRouter, prompts: Sequence[str], repeats: int = 3) -> dict:
    """Seconds per prompt of ``router.route`` and of a plain prefill of the base on the same prompts (chat format,
    as the runtime prefills, in batches of the router's size, output layer on the last token only), interleaved
    ``repeats`` times in the same run; the fastest of each, and their ratio."""
    base = unwrap(router.model)
    encoded = encode_prompts(router.tokenizer, check_prompts(prompts), router.max_length, "chat")
    pad = pad_id_of(router.tokenizer, base)

    def prefill():
        for _, ids, mask in padded_batches(encoded, router.batch_size, pad):
            padded = not bool(mask.all())
            pos = (mask.cumsum(-1) - 1).clamp(min=0) if padded else None
            base(input_ids=ids, attention_mask=mask if padded else None, position_ids=pos, use_cache=True,
                 logits_to_keep=1)

    times: dict[str, list[float]] = {"prefill": [], "route": []}
    for _ in range(repeats):
        for name, fn in (("prefill", prefill), ("route", lambda: router.route(list(prompts)))):
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    n = len(prompts)
    best = {k: min(v) / n for k, v in times.items()}
    return {"prompts": n, "repeats": repeats, "prefill_ms_per_prompt": 1000 * best["prefill"],
            "route_ms_per_prompt": 1000 * best["route"], "ratio": best["route"] / best["prefill"],
            "threads": torch.get_num_threads()}
