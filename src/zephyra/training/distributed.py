"""Data parallelism over processes started by ``torchrun`` (gloo, CPU); one process needs no set-up at all.

Gradients are averaged with one flat all-reduce per optimizer step, after every micro-batch of the step has
been accumulated locally. DistributedDataParallel would overlap the reduction with the backward pass through
per-bucket hooks; on a 2-core CPU there is nothing to overlap with, and one collective per step is both the
fewest messages and indifferent to ``torch.compile``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def init() -> World:
    """Join the process group torchrun describes in the environment (WORLD_SIZE, RANK, MASTER_ADDR...)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    if not dist.is_initialized():
        dist.init_process_group("gloo")
    return World(rank=dist.get_rank(), size=dist.get_world_size())


def cleanup(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def all_reduce_sum(world: World, tensor: torch.Tensor) -> torch.Tensor:
    if world.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def average_gradients(world: World, params: list[torch.nn.Parameter]) -> None:
    """Replace every gradient by its mean over the processes, in one collective."""
    if not world.distributed:
        return
    grads = [p.grad for p in params if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= world.size
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def broadcast_model(world: World, model: torch.nn.Module) -> None:
    """Every process starts from rank 0's weights (same seed gives the same init; this makes it certain)."""
    if world.distributed:
        for t in model.state_dict().values():
            dist.broadcast(t, src=0)


def gather(world: World, obj) -> list:
    """``obj`` of every process, indexed by rank (every process gets the list)."""
    if not world.distributed:
        return [obj]
    out = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(world: World, obj):
    """Rank 0's ``obj`` on every process (for an error raised on rank 0 only, for instance)."""
    if not world.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
