"""Everything a run needs before its first step: the tokenizer (trained first if the recipe says how), the
model (a preset of an architecture, or a previous run's final model), and the packed training/validation data.

Work that writes shared files (training the tokenizer, packing the data) is done by rank 0 alone while the other
processes wait; an error there is sent to every process, so none waits forever.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from . import distributed
from .checkpoint import CheckpointError, verify
from .config import ModelSpec, RecipeError, TrainConfig
from .data import DataError, EpochPacker, iter_documents, load_documents
from .distributed import World


def on_main(world: World, fn: Callable[[], None]) -> None:
    """Run ``fn`` on rank 0; every process raises rank 0's error, if any, with the same message."""
    failure = None
    if world.main:
        try:
            fn()
        except (RecipeError, DataError, CheckpointError, FileNotFoundError, ValueError) as e:
            failure = (type(e).__name__, str(e))
    failure = distributed.broadcast_object(world, failure)
    if failure is not None:
        kinds = {cls.__name__: cls for cls in (RecipeError, DataError, CheckpointError, FileNotFoundError)}
        raise kinds.get(failure[0], ValueError)(failure[1])


# --------------------------------------------------------------------------------------------------------------
# tokenizer
# --------------------------------------------------------------------------------------------------------------

def _capped(texts: Iterator[str], max_chars: int) -> Iterator[str]:
    total = 0
    for text in texts:
        if total >= max_chars:
            return
        total += len(text)
        yield text


def prepare_tokenizer(cfg: TrainConfig, world: World):
    """Load ``cfg.tokenizer``, training it first on ``train_tokenizer_on`` if it does not exist."""
    from ..tokenizer import load_tokenizer, train_tokenizer

    path = Path(cfg.tokenizer)

    def build():
        if (path / "tokenizer.json").is_file():
            return
        if not cfg.train_tokenizer_on:
            raise RecipeError(f"tokenizer {path} does not exist and the recipe has no train_tokenizer_on to "
                              "train it from")
        texts = itertools.chain.from_iterable(iter_documents(s) for s in cfg.train_tokenizer_on)
        sources = {s.name: f"{s.path}:{s.split}" for s in cfg.train_tokenizer_on}
        train_tokenizer(_capped(texts, cfg.tokenizer_max_chars), path, vocab_size=cfg.tokenizer_vocab_size,
                        sources=sources)

    on_main(world, build)
    tokenizer = load_tokenizer(path)
    if tokenizer.bos_token_id is None or tokenizer.eos_token_id is None:
        raise RecipeError(f"tokenizer {path} has no bos or eos token: train it with zephyra.tokenizer")
    return tokenizer


# --------------------------------------------------------------------------------------------------------------
# model
# --------------------------------------------------------------------------------------------------------------

def hf_config(spec: ModelSpec, vocab_size: int):
    """The transformers config of ``spec``: Zephyra at a preset, or a baseline at the same sizes."""
    from ..model import ZephyraConfigError, preset_config
    from ..model.baselines import gpt2_config_like, llama_config_like

    tokens = {"vocab_size": vocab_size, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
    try:
        cfg = preset_config(spec.preset, **{**spec.overrides, **tokens})
    except (ZephyraConfigError, TypeError) as e:
        raise RecipeError(f"model.overrides: {e}") from None
    if spec.arch == "gpt2":
        return gpt2_config_like(cfg)
    if spec.arch == "llama":
        return llama_config_like(cfg)
    return cfg


def build_model(spec: ModelSpec, tokenizer, seed: int):
    """A fresh model (seeded), or the model exported by a previous run (``init_from``, verified first)."""
    from .. import model as _registers_zephyra  # noqa: F401  (the Zephyra Auto classes)
    from transformers import AutoModelForCausalLM

    if spec.init_from:
        src = Path(spec.init_from)
        if (src / "manifest.json").is_file():
            verify(src)  # a corrupt exported model is refused like a corrupt checkpoint
        elif not (src / "config.json").is_file():
            raise RecipeError(f"model.init_from {src}: not a model directory (no config.json)")
        model = AutoModelForCausalLM.from_pretrained(str(src), dtype=torch.float32)
        if model.config.vocab_size != len(tokenizer):
            raise RecipeError(f"model.init_from {src} has vocab_size {model.config.vocab_size} but the tokenizer "
                              f"has {len(tokenizer)} tokens: use the tokenizer saved with that model")
    else:
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(hf_config(spec, len(tokenizer)), dtype=torch.float32)
    gc = model.generation_config
    gc.bos_token_id, gc.eos_token_id, gc.pad_token_id = (tokenizer.bos_token_id, tokenizer.eos_token_id,
                                                         tokenizer.pad_token_id)
    return model


def context_length(model) -> int:
    c = model.config
    return getattr(c, "max_position_embeddings", None) or getattr(c, "n_positions")


def matmul_params(model) -> int:
    """Parameters that take part in a matrix multiply per token: all but the embeddings, plus the output
    matrix (tied to the embedding, but multiplied every token). 6 x this x tokens/s = training FLOP/s."""
    from ..model import non_embedding_params

    return non_embedding_params(model) + model.get_output_embeddings().weight.numel()


# --------------------------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------------------------

def prepare_data(cfg: TrainConfig, tokenizer, world: World):
    """(training packers, their mixture weights, {validation name: rows}); tokenized by rank 0 when not cached."""
    train_sources = [cfg.data.train, *cfg.data.replay]
    weights = [1.0 - sum(r.fraction for r in cfg.data.replay), *(r.fraction for r in cfg.data.replay)]
    names = [s.name for s in cfg.data.validation]
    if len(set(names)) != len(names):
        raise RecipeError(f"data.validation: names {names} repeat; give every source a distinct name")

    def tokenize_all():
        for s in [*train_sources, *cfg.data.validation]:
            load_documents(s, tokenizer, cfg.data.cache_dir)

    on_main(world, tokenize_all)
    seq = cfg.data.seq_len
    # each training source gets its own seed, so two sources never share an epoch order
    packers = [EpochPacker(load_documents(s, tokenizer, cfg.data.cache_dir), seq, cfg.seed * 1000 + i, s.name)
               for i, s in enumerate(train_sources)]
    val = {s.name: EpochPacker(load_documents(s, tokenizer, cfg.data.cache_dir), seq, 0, s.name).fixed_rows()
           for s in cfg.data.validation}
    return packers, weights, val
