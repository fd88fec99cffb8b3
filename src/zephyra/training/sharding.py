"""Fully sharded data parallelism (``parallel: fsdp``): each process holds 1/N of the parameters, gradients and
optimizer state, through PyTorch's FSDP2 (``torch.distributed.fsdp.fully_shard``) on gloo, CPU.

Every decoder layer is its own shard group (its parameters are gathered for its forward and backward, then freed),
and the root holds the embeddings, the final norm and the (tied) output matrix. FSDP reduce-scatters the averaged
gradients itself, so the trainer's own all-reduce is skipped. Checkpoints and the final export are whole: the
shards are gathered into full state dicts on rank 0 (``full_state``), which loads them into an unsharded copy of
the model (``Run.whole``) for ``save_pretrained``, the phase tasks and the export; so an fsdp checkpoint is an
ordinary checkpoint and loads anywhere. Resuming loads the full state back into the shards (``load_full``).
"""

from __future__ import annotations

import torch
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

_FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


def _layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The decoder layers of any of the trainer's architectures (Zephyra, HF Llama, HF GPT-2)."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    return [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]


def shard(model: torch.nn.Module) -> int:
    """Shard ``model`` in place over the process group; returns the number of layer groups."""
    from torch.distributed.fsdp import fully_shard

    layers = _layers(model)
    for layer in layers:
        fully_shard(layer)
    fully_shard(model)
    return len(layers)


def local_numel(model: torch.nn.Module) -> int:
    """Parameter elements this process holds (its shards)."""
    total = 0
    for p in model.parameters():
        local = p.to_local() if hasattr(p, "to_local") else p
        total += local.numel()
    return total


def full_state(model: torch.nn.Module, optimizers: list) -> tuple[dict, list[dict]]:
    """The whole model's and optimizers' state dicts on rank 0 (empty elsewhere). A collective: every process
    calls it."""
    tensors = get_model_state_dict(model, options=_FULL)
    optims = [get_optimizer_state_dict(model, o, options=_FULL) for o in optimizers]
    return tensors, optims


def load_into_whole(whole: torch.nn.Module, tensors: dict) -> None:
    """Rank 0: the gathered weights into the unsharded copy; only tied aliases (stored once) may be absent."""
    tied = getattr(whole, "_tied_weights_keys", None) or {}
    tied = tied if isinstance(tied, dict) else {}
    missing = [k for k in whole.state_dict() if k not in tensors and tied.get(k) not in tensors]
    if missing:
        raise RuntimeError(f"gathered state lacks {missing[:3]}")
    full = {k: tensors[k] if k in tensors else tensors[tied[k]] for k in whole.state_dict()}
    whole.load_state_dict(full, strict=True)


def load_full(model: torch.nn.Module, optimizers: list, tensors: dict, optim_states: list[dict]) -> None:
    """Load whole state dicts (read from a checkpoint by every process) into the shards."""
    opts = StateDictOptions(full_state_dict=True)
    set_model_state_dict(model, tensors, options=opts)
    for o, s in zip(optimizers, optim_states):
        set_optimizer_state_dict(model, o, s, options=opts)


def grad_norm_value(norm) -> float:
    """clip_grad_norm_ over sharded parameters returns a DTensor: its full value."""
    return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
