"""Optimisers and learning-rate schedules.

AdamW for everything, or ``torch.optim.Muon`` for the transformer blocks' weight matrices plus AdamW for the
rest (embeddings, output matrix, norms): Muon orthogonalises 2-D updates, which suits hidden
matrices but not embeddings or gains (Keller Jordan's recipe). Weight decay falls on matrices and embeddings only.
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR

from .config import OptimConfig, ScheduleConfig


def lr_multiplier(step: int, total: int, cfg: ScheduleConfig) -> float:
    """The share of the peak lr at optimizer step ``step`` (0-based) of ``total``."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.kind == "constant":
        return 1.0
    floor = cfg.min_lr_ratio
    if cfg.kind == "cosine":
        span = max(1, total - cfg.warmup_steps)
        progress = min(1.0, (step - cfg.warmup_steps) / span)
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    # wsd: hold the peak, then decay linearly over the last decay_fraction of the run
    decay = max(1, round(cfg.decay_fraction * total))
    start = total - decay
    if step < start:
        return 1.0
    return floor + (1.0 - floor) * max(0.0, 1.0 - (step - start + 1) / decay)


def _is_block_matrix(name: str, p: torch.nn.Parameter) -> bool:
    # the layers' own matrices: not embeddings, the output matrix or positions
    skip = ("embed", "lm_head", "wte", "wpe")
    return p.ndim == 2 and not any(s in name for s in skip)


def build_optimizers(model: torch.nn.Module, cfg: OptimConfig) -> list[torch.optim.Optimizer]:
    """One or two optimizers over disjoint parameters (tied parameters counted once)."""
    seen, decay, no_decay, matrices = set(), [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        if cfg.name == "muon" and _is_block_matrix(name, p):
            matrices.append(p)
        elif p.ndim >= 2:
            decay.append(p)
        else:
            no_decay.append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # fused: one kernel over all parameters; the default on CPU is a Python loop of several ops per tensor,
    # ~10x slower per step (147 vs 16 ms for the small preset)
    adamw = torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps,
                              fused=True)
    if cfg.name == "adamw":
        return [adamw]
    muon = torch.optim.Muon(matrices, lr=cfg.muon_lr, weight_decay=cfg.weight_decay, momentum=cfg.muon_momentum,
                            adjust_lr_fn=cfg.muon_adjust_lr_fn)
    return [muon, adamw]


def build_schedulers(optimizers, total_steps: int, cfg: ScheduleConfig) -> list[LambdaLR]:
    return [LambdaLR(o, lambda step: lr_multiplier(step, total_steps, cfg)) for o in optimizers]


def optim_state(optimizers, schedulers) -> dict:
    return {"optimizers": [o.state_dict() for o in optimizers], "schedulers": [s.state_dict() for s in schedulers]}


def load_optim_state(optimizers, schedulers, state: dict) -> None:
    if len(state["optimizers"]) != len(optimizers):
        raise ValueError(f"the checkpoint has {len(state['optimizers'])} optimizer(s), this recipe builds "
                         f"{len(optimizers)}: optim.name changed since the checkpoint")
    for o, s in zip(optimizers, state["optimizers"]):
        o.load_state_dict(s)
    for sch, s in zip(schedulers, state["schedulers"]):
        sch.load_state_dict(s)
