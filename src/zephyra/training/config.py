"""Typed training recipes: dataclasses are the schema, YAML recipes mirror them, ``key=value`` overrides win.

    cfg = load_recipe("recipes/phase1.yaml", ["optim.lr=1e-3", "max_steps=200"])

Loading is zephyra.config's (the same rules for every config of the project): unknown keys and wrong types are
one-line ``ConfigError``s naming the key (``RecipeError`` is the same class). The resolved config is saved
beside every checkpoint and the final model (``to_dict``), and ``config_from_dict`` reads it back.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..config import ConfigError, find_recipe, from_dict, load_config

RecipeError = ConfigError  # a recipe that cannot be run; the message is one line naming the key


# --------------------------------------------------------------------------------------------------------------
# the schema
# --------------------------------------------------------------------------------------------------------------

@dataclass
class DataSource:
    """One dataset split, formatted into documents: ``path`` is a ``save_to_disk`` DatasetDict."""
    path: str
    split: str = "train"
    formatter: Literal["text", "phase1", "qa"] = "text"
    fraction: float = 1.0  # replay only: the share of training sequences drawn from this source
    name: str | None = None  # how metrics call it; None: "<dir name>/<split>"

    def __post_init__(self):
        if not 0.0 < self.fraction <= 1.0:
            raise RecipeError(f"fraction must be in (0, 1], got {self.fraction}")
        if self.name is None:
            self.name = f"{Path(self.path).name}/{self.split}"


@dataclass
class ModelSpec:
    arch: Literal["zephyra", "gpt2", "llama"] = "zephyra"  # gpt2/llama: the baselines at the preset's size
    preset: Literal["tiny", "mini", "small", "base", "large"] = "mini"
    overrides: dict[str, Any] = field(default_factory=dict)  # ZephyraConfig fields, e.g. {hidden_act: relu2}
    init_from: str | None = None  # a previous run's final/ directory; arch, preset and overrides are then ignored


@dataclass
class DataConfig:
    train: DataSource | None = None
    replay: list[DataSource] = field(default_factory=list)  # mixed into training at their `fraction`
    validation: list[DataSource] = field(default_factory=list)  # the first one ranks checkpoints ("best")
    seq_len: int = 256  # tokens per packed training sequence
    cache_dir: str = "runs/cache/tokens"  # packed token ids, keyed by data + tokenizer + formatter + seq_len


@dataclass
class OptimConfig:
    name: Literal["adamw", "muon"] = "adamw"  # muon: torch.optim.Muon for the blocks' matrices, AdamW for the rest
    lr: float = 3e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    weight_decay: float = 0.1  # matrices and embeddings only; norms and biases are not decayed
    grad_clip: float = 1.0  # max global gradient norm; 0 turns clipping off
    muon_lr: float = 0.02
    muon_momentum: float = 0.95
    muon_adjust_lr_fn: Literal["original", "match_rms_adamw"] = "original"

    def __post_init__(self):
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise RecipeError(f"optim.betas must be two numbers in [0, 1), got {self.betas}")
        if self.lr <= 0 or self.muon_lr <= 0:
            raise RecipeError("optim.lr and optim.muon_lr must be positive")


@dataclass
class ScheduleConfig:
    kind: Literal["cosine", "wsd", "constant"] = "cosine"  # wsd: warmup, stable, then a linear decay
    warmup_steps: int = 100
    decay_fraction: float = 0.2  # wsd: the share of steps spent decaying at the end
    min_lr_ratio: float = 0.1  # the final lr as a share of the peak

    def __post_init__(self):
        if self.warmup_steps < 0 or not 0.0 <= self.min_lr_ratio <= 1.0 or not 0.0 < self.decay_fraction <= 1.0:
            raise RecipeError("schedule: warmup_steps >= 0, min_lr_ratio in [0, 1], decay_fraction in (0, 1]")


@dataclass
class Phase1EvalConfig:
    """Greeting replies and word -> category accuracy (``eval_tasks: [phase1]``)."""
    data: str = "runs/data/phase1"
    max_words: int = 200  # per split (training words, held-out words)
    max_greetings: int = 32
    max_new_tokens: int = 24  # greeting replies run to ~15 tokens with a 4096 vocabulary
    batch_size: int = 32
    seed: int = 0  # which words and greetings are sampled: fixed, so phase 1 and phase 2 are scored on the same


@dataclass
class TrainConfig:
    """One training run. Each optimizer step takes batch_size sequences, split evenly over the processes and, in
    each, into forward passes of at most micro_batch_size sequences whose gradients are accumulated."""
    out_dir: str
    name: str = "run"
    seed: int = 1337
    resume: str = "auto"  # auto: the latest checkpoint in out_dir if any; never; or a checkpoint directory
    # --- tokenizer ---
    tokenizer: str = "runs/tokenizer"
    train_tokenizer_on: list[DataSource] = field(default_factory=list)  # trained first if `tokenizer` is missing
    tokenizer_vocab_size: int = 4096
    tokenizer_max_chars: int = 50_000_000  # stop feeding the BPE trainer after this many characters
    # --- what is trained, on what ---
    model: ModelSpec = field(default_factory=ModelSpec)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    # --- the loop ---
    batch_size: int = 32  # sequences per optimizer step, over all processes
    micro_batch_size: int = 16  # at most this many sequences per forward pass (bounds memory, not the maths)
    max_steps: int = 1000
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # bf16: autocast, fp32 master weights; auto: bf16 where
    # the CPU computes it natively (AMX, AVX-512 BF16), else fp32 (emulated bf16 was 19x slower: docs/benchmarks.md)
    compile: bool = False  # torch.compile the model (about 1.5-2x on small models, after ~30 s of compiling)
    threads: int | None = None  # torch threads per process; None: the cores free at the start (runtime.py),
    # divided by the processes
    parallel: Literal["ddp", "fsdp"] = "ddp"  # over torchrun's processes: ddp, a whole model in each and one
    # all-reduce of the gradients per step; fsdp, each process holds 1/N of the parameters, gradients and optimizer
    # state (FSDP2 fully_shard per decoder layer), for models that do not fit one device
    log_every: int = 10
    eval_every: int = 100  # also at every checkpoint and at the end; 0: only at the end
    eval_batches: int = 8  # micro-batches of each validation set per evaluation; 0: all of it
    save_every: int = 200  # 0: only the final checkpoint
    keep_last: int = 2  # the newest checkpoints kept (at least 1, to resume from), besides the best one
    progress: bool = True  # a rich progress bar (rank 0 only)
    eval_tasks: list[Literal["phase1"]] = field(default_factory=list)  # run at the end; numbers go in metrics
    phase1_eval: Phase1EvalConfig = field(default_factory=Phase1EvalConfig)

    def __post_init__(self):
        for key in ("batch_size", "micro_batch_size", "max_steps", "log_every", "tokenizer_vocab_size", "keep_last"):
            if getattr(self, key) <= 0:
                raise RecipeError(f"{key} must be positive, got {getattr(self, key)}")
        for key in ("eval_every", "eval_batches", "save_every"):
            if getattr(self, key) < 0:
                raise RecipeError(f"{key} must be >= 0, got {getattr(self, key)}")
        if self.batch_size % self.micro_batch_size:
            raise RecipeError(f"batch_size ({self.batch_size}) must be a multiple of micro_batch_size "
                              f"({self.micro_batch_size})")
        if self.data.train is None:
            raise RecipeError("data.train is required: the dataset to train on")
        if sum(r.fraction for r in self.data.replay) >= 1.0:
            raise RecipeError("data.replay fractions must add up to less than 1 (the rest is data.train)")
        if self.parallel not in ("ddp", "fsdp"):
            raise RecipeError(f"parallel must be 'ddp' or 'fsdp', got {self.parallel!r}")
        if self.parallel == "fsdp" and self.optim.name == "muon":
            raise RecipeError("parallel=fsdp shards every matrix over the processes, and Muon orthogonalises whole "
                              "matrices: use optim.name=adamw with fsdp")
        if self.parallel == "fsdp" and self.compile:
            raise RecipeError("parallel=fsdp with compile=true is not supported here: set compile=false")
        if self.resume not in ("auto", "never") and not self.resume:
            raise RecipeError("resume must be 'auto', 'never' or a checkpoint directory")

    def micro_batches(self, world_size: int) -> tuple[int, int]:
        """(sequences per forward pass, forward passes per step) in each of ``world_size`` processes: each takes
        batch_size / world_size sequences of every step, in micro-batches of at most micro_batch_size. So one
        recipe runs unchanged on 1, 2 or 4 processes, with the same global batch."""
        share, rest = divmod(self.batch_size, world_size)
        if rest:
            raise RecipeError(f"batch_size ({self.batch_size}) must divide evenly over {world_size} processes")
        micro = min(self.micro_batch_size, share)
        if share % micro:
            raise RecipeError(f"each of {world_size} processes takes {share} sequences per step, which is not a "
                              f"multiple of micro_batch_size ({self.micro_batch_size})")
        return micro, share // micro

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------------------------------------------
# loading (zephyra.config: the one typed-config loader)
# --------------------------------------------------------------------------------------------------------------

def load_recipe(path: str | os.PathLike, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML recipe (a path, or a shipped recipe's name: ``phase1``), apply ``key=value`` overrides, and
    check it against the schema."""
    return load_config(TrainConfig, find_recipe(path), overrides)


def config_from_dict(data: dict) -> TrainConfig:
    """The inverse of ``TrainConfig.to_dict`` (a saved resolved config)."""
    return from_dict(TrainConfig, data)
