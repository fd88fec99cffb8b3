"""Domain adapter training: one base, one domain, one PEFT method -> an adapter directory with its manifest.

    zephyra train adapter --domain python --method lora --base runs/phase2/final
    zephyra train adapters --domains all --method lora --base runs/phase2/final

    from zephyra.training.adapter import AdapterRecipe, train_adapter
    result = train_adapter(AdapterRecipe(base="runs/phase2/final", domain="python"))

A flat recipe (``setup -> train -> evaluate -> save``): the base is loaded and its held-out perplexity measured,
the adapter attached (on Zephyra's branch layers only), trained on the domain's train splits (its raw text plus a
share of its question/answer pairs through the chat template), measured again on the same held-out rows, and
saved with ``save_adapter`` (PEFT's files + manifest, atomically). The data pipeline (tokenise, cache, pack,
mix) and the optimiser/schedule are the base trainer's; this file adds only what adapters need.
"""

from __future__ import annotations

import dataclasses
import math
import os
import resource
import sys
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from ..adapters import (
    AdapterConfigError,
    AdapterSpec,
    attach_adapter,
    base_fingerprint,
    save_adapter,
)
from ..config import RECIPES, find_recipe, load_config
from ..errors import ConfigError, DataError
from ..evaluation.metrics import summed_nll
from ..io import sha256_dir
from ..loader import load_model_dir
from ..retrieval.grounding import GroundingConfig
from ..runtime import choose_threads, resolve_precision
from .config import DataSource, OptimConfig, RecipeError, ScheduleConfig
from .data import EpochPacker, MixtureSampler, eval_batches, load_documents
from .optim import build_optimizers, build_schedulers

DEFAULT_RECIPE = RECIPES / "adapters" / "default.yaml"


# --------------------------------------------------------------------------------------------------------------
# the recipe
# --------------------------------------------------------------------------------------------------------------

@dataclass
class AdapterRecipe:
    """One adapter training run. ``recipes/adapters/default.yaml`` mirrors these fields and defaults, which are
    sized for the quickstart: a LoRA adapter on the ``mini`` base in about a minute on 2 cores."""
    base: str  # an HF causal-LM directory holding its tokenizer (a Zephyra final/, or any saved Llama/GPT-2)
    domain: str  # a directory under <data_root>/domains/ with raw/ (and qa/ when qa_fraction > 0)
    method: Literal["lora", "dora", "qlora", "ia3", "prefix"] = "lora"
    # --- the adapter: AdapterSpec's fields (see adapters/methods.py) ---
    rank: int = 32  # at lr 3e-3, rank 16 left chemistry at 0.51x its base perplexity, 32 at 0.46x (docs/adapters.md)
    alpha: float | None = None  # None: 2 * rank
    dropout: float = 0.0
    num_virtual_tokens: int = 16  # prefix tuning only
    target_modules: list[str] | None = None  # None: all of the layers' linears (Zephyra), PEFT's default (others)
    layers: list[int] | None = None  # None: Zephyra's branch, or the last half of another model's layers
    identity_init: bool = True
    init_from: str | None = None  # start from this saved adapter's weights (same method, rank and modules, the
    # same base): a shared layer (a play's dialogue) that a character's adapter refines; None: a fresh adapter
    # --- data ---
    data_root: str = "runs/data"
    qa_fraction: float = 0.25  # share of training sequences from qa/train (chat template); 0: raw text only
    general_fraction: float = 0.3  # share replayed from the base's general corpus (<data_root>/<general_data>)
    general_data: str = "phase2"  # so the adapter keeps the base's behaviour off its domain
    # --- retrieval (grounded adapters): Q/A pairs with the passages the domain's knowledge index finds ---
    index_root: str | None = None  # knowledge indexes, one directory per domain (zephyra index build); None: none
    grounded_fraction: float = 0.0  # share of training sequences from grounded Q/A documents (needs index_root)
    retrieval: dict = dataclasses.field(default_factory=dict)  # GroundingConfig: k, mode, passage_tokens, min_score
    seq_len: int = 256
    whole_documents: bool = False  # pack raw/train whole (WholePacker: no row starts inside a document, padding
    # masked; documents longer than seq_len dropped), for short conversations whose end needs their start
    cache_dir: str = "runs/cache/tokens"  # shared with base training: keyed by data, tokenizer and formatter
    # --- optimisation: AdamW, warmup then cosine (or wsd, constant) ---
    batch_size: int = 16  # sequences per optimizer step
    micro_batch_size: int = 16  # at most this many per forward pass
    max_steps: int = 200
    lr: float = 3e-3  # LoRA on small models likes 1e-3..3e-3
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # 0 turns clipping off
    warmup_steps: int = 20
    schedule: Literal["cosine", "wsd", "constant"] = "cosine"
    min_lr_ratio: float = 0.1
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # bf16: autocast, fp32 adapter weights; auto: bf16 where
    # the CPU computes it natively, else fp32 (zephyra.runtime.resolve_precision)
    # --- the run ---
    eval_batches: int = 16  # held-out micro-batches measured, base and adapter alike; 0: the whole split
    seed: int = 1337
    threads: int | None = None  # torch threads; None: the cores free at the start (zephyra.runtime)
    log_seconds: float = 5.0  # a progress line at most this often
    out: str | None = None  # None: <out_root>/<domain> for lora, <out_root>/<method>/<domain> for the others
    out_root: str = "runs/adapters"

    def __post_init__(self):
        for key in ("batch_size", "micro_batch_size", "max_steps", "seq_len"):
            if getattr(self, key) <= 0:
                raise RecipeError(f"{key} must be positive, got {getattr(self, key)}")
        if self.batch_size % self.micro_batch_size:
            raise RecipeError(f"batch_size ({self.batch_size}) must be a multiple of micro_batch_size "
                              f"({self.micro_batch_size})")
        if not 0.0 <= self.qa_fraction < 1.0:
            raise RecipeError(f"qa_fraction must be in [0, 1), got {self.qa_fraction}")
        if not 0.0 <= self.grounded_fraction < 1.0:
            raise RecipeError(f"grounded_fraction must be in [0, 1), got {self.grounded_fraction}")
        if self.grounded_fraction > 0 and not self.index_root:
            raise RecipeError("grounded_fraction > 0 needs index_root (the knowledge indexes: zephyra index build)")
        shares = self.qa_fraction + self.general_fraction + self.grounded_fraction
        if not 0.0 <= self.general_fraction < 1.0 or shares >= 1.0:
            raise RecipeError(f"general_fraction must be in [0, 1) and leave room for the domain's raw text "
                              f"(qa_fraction {self.qa_fraction} + general_fraction {self.general_fraction} + "
                              f"grounded_fraction {self.grounded_fraction} >= 1)")
        try:
            self.grounding()
        except ConfigError as e:
            raise RecipeError(str(e)) from None
        if self.eval_batches < 0 or self.warmup_steps < 0:
            raise RecipeError("eval_batches and warmup_steps must be >= 0")
        if self.threads is not None and self.threads <= 0:
            raise RecipeError(f"threads must be positive, got {self.threads}")
        try:
            self.spec()
        except AdapterConfigError as e:
            raise RecipeError(str(e)) from None
        self.optim(), self.schedule_config()  # their own checks, as RecipeErrors

    def grounding(self) -> GroundingConfig:
        return GroundingConfig.from_dict(self.retrieval)

    def index_dir(self) -> Path | None:
        return Path(self.index_root) / self.domain if self.index_root and self.grounded_fraction > 0 else None

    def spec(self) -> AdapterSpec:
        names = [f.name for f in dataclasses.fields(AdapterSpec)]
        return AdapterSpec(**{n: getattr(self, n) for n in names})

    def optim(self) -> OptimConfig:
        return OptimConfig(name="adamw", lr=self.lr, weight_decay=self.weight_decay, grad_clip=self.grad_clip)

    def schedule_config(self) -> ScheduleConfig:
        return ScheduleConfig(kind=self.schedule, warmup_steps=self.warmup_steps, min_lr_ratio=self.min_lr_ratio)

    def out_dir(self) -> Path:
        if self.out:
            return Path(self.out)
        root = Path(self.out_root)
        return root / self.domain if self.method == "lora" else root / self.method / self.domain

    def domain_dir(self) -> Path:
        return Path(self.data_root) / "domains" / self.domain

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def replay_overrides(general) -> list[str]:
    """The recipe override that replays the base's general corpus at ``general`` (a saved DatasetDict), or none
    when it is not there (no replay): what an application's adapters pass."""
    if general is not None and (Path(general) / "dataset_dict.json").is_file():
        return [f"general_data={Path(general).resolve()}"]
    return ["general_fraction=0.0"]


def load_adapter_recipe(path: str | os.PathLike | None = None, overrides: list[str] | None = None,
                        **fields) -> AdapterRecipe:
    """The recipe at ``path`` (None: ``recipes/adapters/default.yaml`` when it exists, else the defaults), with
    ``fields`` (from CLI options: domain, base, method) and then ``key=value`` overrides applied."""
    return load_config(AdapterRecipe, DEFAULT_RECIPE if path is None else find_recipe(path), overrides, **fields)


def available_domains(data_root: str | os.PathLike) -> list[str]:
    """The domains built under ``<data_root>/domains`` (those with a raw/ dataset)."""
    root = Path(data_root) / "domains"
    if not root.is_dir():
        raise DataError(f"{root}: no such directory; build the data first (zephyra data build)")
    return sorted(p.name for p in root.iterdir() if (p / "raw" / "dataset_dict.json").is_file())


def check_domain(recipe: AdapterRecipe) -> None:
    known = available_domains(recipe.data_root)
    if recipe.domain not in known:
        raise RecipeError(f"unknown domain {recipe.domain!r}; built under {Path(recipe.data_root) / 'domains'}: "
                          f"{', '.join(known) or 'none'}")


# --------------------------------------------------------------------------------------------------------------
# set-up: base, data
# --------------------------------------------------------------------------------------------------------------

@dataclass
class DomainData:
    sampler: MixtureSampler
    val: dict[str, list]  # {"raw": micro-batches, "qa": ..., "grounded": (ids, labels) pairs}, held out
    hashes: dict[str, str]  # {"<domain>/raw/train": sha256 of the split directory, ...}
    grounded: dict = dataclasses.field(default_factory=dict)  # what grounded training read (index, counts)
    # {"python/raw": {"path", "version"}}: each dataset read, by its registry version (zephyra.registry), so that
    # the adapters trained on a changed or poisoned corpus can be found (Registry.trained_on)
    datasets: dict = dataclasses.field(default_factory=dict)


def prepare_domain_data(recipe: AdapterRecipe, tokenizer) -> DomainData:
    """Train mixture (raw/train + qa/train at qa_fraction + the general corpus at general_fraction) and held-out
    rows (raw/validation, qa/validation)."""
    d = recipe.domain_dir()
    train = [DataSource(str(d / "raw"), "train", "text", name=f"{recipe.domain}/raw/train")]
    val = {"raw": DataSource(str(d / "raw"), "validation", "text", name=f"{recipe.domain}/raw/validation")}
    weights = [1.0]
    if recipe.qa_fraction > 0:
        train.append(DataSource(str(d / "qa"), "train", "qa", fraction=recipe.qa_fraction,
                                name=f"{recipe.domain}/qa/train"))
        val["qa"] = DataSource(str(d / "qa"), "validation", "qa", name=f"{recipe.domain}/qa/validation")
        weights = [1.0 - recipe.qa_fraction, recipe.qa_fraction]
    if recipe.general_fraction > 0:
        general = Path(recipe.data_root) / recipe.general_data
        train.append(DataSource(str(general), "train", "text", fraction=recipe.general_fraction,
                                name=f"{recipe.general_data}/train"))
        weights = [weights[0] - recipe.general_fraction, *weights[1:], recipe.general_fraction]
    hashes = {}
    for s in [*train, *val.values()]:
        split_dir = Path(s.path) / s.split
        if not split_dir.is_dir():
            raise DataError(f"{s.path}: no split {s.split!r}; build the domain data first (zephyra data build)")
        hashes[s.name] = sha256_dir(split_dir)
    packers = [EpochPacker(load_documents(s, tokenizer, recipe.cache_dir), recipe.seq_len, recipe.seed * 1000 + i,
                           s.name) for i, s in enumerate(train)]
    if recipe.whole_documents:
        from .grounded import WholePacker

        packers[0] = WholePacker(load_documents(train[0], tokenizer, recipe.cache_dir), recipe.seq_len,
                                 recipe.seed * 1000, train[0].name, tokenizer.pad_token_id)
    rows = {k: EpochPacker(load_documents(s, tokenizer, recipe.cache_dir), recipe.seq_len, 0, s.name).fixed_rows()
            for k, s in val.items()}
    micro = recipe.micro_batch_size
    val_batches = {k: eval_batches(r, micro, recipe.eval_batches) for k, r in rows.items()}
    grounded = {}
    if recipe.index_dir() is not None:
        packer, val_batches["grounded"], grounded = _grounded_sources(recipe, tokenizer)
        packers.append(packer)
        weights = [weights[0] - recipe.grounded_fraction, *weights[1:], recipe.grounded_fraction]
        hashes[f"{recipe.domain}/index"] = grounded["chunks_sha256"]
    from ..registry.store import version_of

    datasets = {s.name.rsplit("/", 1)[0]: {"path": str(Path(s.path).resolve()), "version": version_of(s.path)}
                for s in [*train, *val.values()]}
    return DomainData(sampler=MixtureSampler(packers, weights, recipe.seed), val=val_batches, hashes=hashes,
                      grounded=grounded, datasets=datasets)


def _grounded_sources(recipe: AdapterRecipe, tokenizer):
    """The grounded Q/A documents (train: packed whole; validation: held-out (ids, labels) batches)."""
    from ..retrieval.index import KnowledgeIndex
    from .grounded import WholePacker, load_grounded, masked

    index_dir = recipe.index_dir()
    if not (index_dir / "manifest.json").is_file():
        raise DataError(f"{index_dir}: no knowledge index for {recipe.domain!r}; build it with zephyra index build")
    index = KnowledgeIndex.load(index_dir)
    cfg, qa, pad = recipe.grounding(), recipe.domain_dir() / "qa", tokenizer.pad_token_id
    train_docs, train_stats = load_grounded(qa, "train", index, cfg, tokenizer, recipe.cache_dir, recipe.seed,
                                            recipe.seq_len)
    val_docs, val_stats = load_grounded(qa, "validation", index, cfg, tokenizer, recipe.cache_dir, recipe.seed + 1,
                                        recipe.seq_len)
    packer = WholePacker(train_docs, recipe.seq_len, recipe.seed * 1000 + 7, f"{recipe.domain}/grounded/train", pad)
    rows = WholePacker(val_docs, recipe.seq_len, 0, f"{recipe.domain}/grounded/validation", pad).fixed_rows()
    val = [masked(b, pad) for b in eval_batches(rows, recipe.micro_batch_size, recipe.eval_batches)]
    info = {"index": str(index_dir.resolve()), "chunks": len(index), "chunks_sha256": index.manifest.get(
        "chunks_sha256", ""), **cfg.to_dict(), "train": train_stats, "validation": val_stats}
    return packer, val, info


def _autocast(recipe: AdapterRecipe):
    bf16 = resolve_precision(recipe.precision) == "bf16"
    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()


def _perplexities(model, data: DomainData, recipe: AdapterRecipe, prefix: str = "") -> dict[str, float]:
    out = {}
    for key, batches in data.val.items():
        name = "val_perplexity" if key == "raw" else f"val_{key}_perplexity"
        total, tokens = summed_nll(model, batches, lambda: _autocast(recipe))
        out[prefix + name] = math.exp(min(total / tokens, 50.0))
    return out


# --------------------------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------------------------

def _trainable(model) -> list[torch.nn.Parameter]:
    seen, out = set(), []
    for p in model.parameters():
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


def _fmt_s(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}:{s:02d}"


def _train_loop(model, data: DomainData, recipe: AdapterRecipe, echo, pad_id: int | None = None) -> dict:
    """AdamW + schedule over the adapter's parameters; returns what it measured."""
    params = _trainable(model)
    optimizers = build_optimizers(model, recipe.optim())
    schedulers = build_schedulers(optimizers, recipe.max_steps, recipe.schedule_config())
    accum = recipe.batch_size // recipe.micro_batch_size
    max_norm = recipe.grad_clip if recipe.grad_clip > 0 else math.inf
    tokens_per_step = recipe.batch_size * recipe.seq_len
    model.train()
    seconds, first_loss, window, last_log = 0.0, None, [], time.perf_counter()
    for step in range(1, recipe.max_steps + 1):
        t0 = time.perf_counter()
        batch = torch.from_numpy(data.sampler.next_batch(recipe.batch_size))  # (B, T)
        total = 0.0
        for m in range(accum):
            x = batch[m * recipe.micro_batch_size:(m + 1) * recipe.micro_batch_size]
            labels = x
            if pad_id is not None and bool((x == pad_id).any()):  # whole-document rows: padding is no target
                labels = x.masked_fill(x == pad_id, -100)
            with _autocast(recipe):
                loss = model(input_ids=x, labels=labels).loss
            (loss / accum).backward()
            total += float(loss.detach()) / accum
        torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)
        for o in optimizers:
            o.step()
            o.zero_grad(set_to_none=True)
        for s in schedulers:
            s.step()
        seconds += time.perf_counter() - t0
        first_loss = total if first_loss is None else first_loss
        window.append(total)
        if time.perf_counter() - last_log >= recipe.log_seconds or step == recipe.max_steps:
            tps = step * tokens_per_step / seconds
            echo(f"{recipe.domain}/{recipe.method}: step {step}/{recipe.max_steps}  loss {np.mean(window):.4f}  "
                 f"lr {schedulers[0].get_last_lr()[0]:.2e}  {tps:,.0f} tok/s  "
                 f"ETA {_fmt_s((recipe.max_steps - step) * seconds / step)}")
            window, last_log = [], time.perf_counter()
    tokens = recipe.max_steps * tokens_per_step
    return {"train_seconds": seconds, "tokens": tokens, "tok_per_s": tokens / seconds,
            "train_loss_first": first_loss, "train_loss_last": total}


def _init_from(model, recipe: AdapterRecipe, fingerprint) -> None:
    """Load ``recipe.init_from``'s weights into the freshly attached adapter, or a one-line RecipeError (another
    base, another method or shape)."""
    import json

    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    from ..adapters.store import check_adapter_base

    src = Path(recipe.init_from)
    if not (src / "adapter_model.safetensors").is_file():
        raise RecipeError(f"init_from {src}: not a saved adapter (no adapter_model.safetensors)")
    if (src / "manifest.json").is_file():
        check_adapter_base(src, fingerprint)
    cfg = json.loads((src / "adapter_config.json").read_text())
    if cfg.get("r") != recipe.rank or str(cfg.get("peft_type", "")).lower() != (
            "lora" if recipe.method in ("lora", "qlora", "dora") else recipe.method):
        raise RecipeError(f"init_from {src}: a {cfg.get('peft_type')} adapter of rank {cfg.get('r')}, not "
                          f"{recipe.method} of rank {recipe.rank}")
    try:
        result = set_peft_model_state_dict(model, load_file(str(src / "adapter_model.safetensors")),
                                           adapter_name=recipe.domain)
    except RuntimeError as e:
        raise RecipeError(f"init_from {src}: its weights do not fit ({str(e).splitlines()[0][:160]})") from None
    missing = [k for k in getattr(result, "missing_keys", []) if "lora_" in k]
    if missing:
        raise RecipeError(f"init_from {src}: no weights for {missing[0]} (other target modules or layers)")


def _adapter_bytes(model, name: str) -> int:
    """Bytes PEFT writes for the adapter (weights + adapter_config.json), measured by a throw-away save, so the
    number can go in the manifest of the one atomic save."""
    with tempfile.TemporaryDirectory() as d:
        model.save_pretrained(d, selected_adapters=[name])
        return sum(p.stat().st_size for p in Path(d).rglob("*")
                   if p.name in ("adapter_model.safetensors", "adapter_config.json"))


def _finished(out: Path) -> dict | None:
    """The manifest of a finished adapter in ``out``, None when ``out`` is free; refuses to replace anything
    else (an ``out=`` typo must not wipe a directory)."""
    from ..manifest import read_manifest

    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return None
    if (out / "manifest.json").is_file():
        manifest = read_manifest(out)
        if manifest.get("kind") == "adapter":
            return manifest
    raise RecipeError(f"out {out} exists and is not an adapter directory: refusing to replace it")


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def train_adapter(recipe: AdapterRecipe, *, force: bool = False, echo=_stderr, return_model: bool = False) -> dict:
    """Train, evaluate and save one adapter; returns ``{"domain", "method", "out", "metrics", "skipped"}`` (and
    the trained PeftModel as "model" with ``return_model``). A finished adapter already in the out directory is
    kept (skipped) unless ``force``. ``echo`` receives the progress lines (default: stderr)."""
    out = recipe.out_dir()
    done = _finished(out)
    if done is not None and not force:
        echo(f"{out}: adapter already trained, kept (force to retrain)")
        return {"domain": recipe.domain, "method": recipe.method, "out": str(out), "metrics": done["metrics"],
                "skipped": True}
    check_domain(recipe)
    threads = torch.get_num_threads()
    torch.set_num_threads(recipe.threads or choose_threads())  # the cores free now (runtime.py)
    try:
        result = _train_adapter(recipe, out, echo)
        if not return_model:
            result.pop("model")
        return result
    finally:
        torch.set_num_threads(threads)


def _train_adapter(recipe: AdapterRecipe, out: Path, echo) -> dict:
    # --- set up: base, data, the base's held-out perplexity ----------------------------------------------------
    started = time.perf_counter()
    md = load_model_dir(recipe.base)
    model, tokenizer = md.model.float(), md.tokenizer
    if recipe.seq_len > md.context:
        raise RecipeError(f"seq_len ({recipe.seq_len}) is longer than the base's context ({md.context})")
    data = prepare_domain_data(recipe, tokenizer)
    fingerprint = base_fingerprint(model)  # of the full-precision base, before qlora packs it
    base_ppl = _perplexities(model, data, recipe, prefix="base_")
    # --- attach and train ----------------------------------------------------------------------------------------
    torch.manual_seed(recipe.seed)  # non-identity and prefix initialisations
    model = attach_adapter(model, recipe.spec(), name=recipe.domain)
    if recipe.init_from:
        _init_from(model, recipe, fingerprint)
    trainable = sum(p.numel() for p in _trainable(model))
    echo(f"{recipe.domain}/{recipe.method}: {trainable:,} trainable parameters; base val perplexity "
         f"{base_ppl['base_val_perplexity']:.2f}")
    metrics = _train_loop(model, data, recipe, echo,
                          tokenizer.pad_token_id if data.grounded or recipe.whole_documents else None)
    # --- evaluate and save ---------------------------------------------------------------------------------------
    metrics.update(_perplexities(model, data, recipe))
    metrics.update(base_ppl)
    metrics["trainable_params"] = trainable
    metrics["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    metrics["adapter_bytes_on_disk"] = _adapter_bytes(model, recipe.domain)
    metrics["wall_seconds"] = time.perf_counter() - started  # loading, tokenising, both evaluations, training
    model.eval()
    run = {**recipe.to_dict(), "out": str(out), "base": str(Path(recipe.base).resolve()), "datasets": data.datasets}
    if data.grounded:  # the runtime reads this: the adapter answers from these passages, retrieved like this
        run["grounding"] = {k: data.grounded[k] for k in ("index", "k", "mode", "passage_tokens", "min_score")}
        metrics["grounded_documents"] = {s: data.grounded[s]["documents"] for s in ("train", "validation")}
    save_adapter(model, out, name=recipe.domain, domain=recipe.domain, data_hashes=data.hashes, metrics=metrics,
                 config=run, base=fingerprint)
    echo(f"{recipe.domain}/{recipe.method}: val perplexity {metrics['base_val_perplexity']:.2f} (base) -> "
         f"{metrics['val_perplexity']:.2f} (adapter) in {metrics['train_seconds']:.0f} s; saved to {out}")
    return {"domain": recipe.domain, "method": recipe.method, "out": str(out), "metrics": metrics, "skipped": False,
            "model": model}
