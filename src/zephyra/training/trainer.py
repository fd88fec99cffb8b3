"""The training loop: one recipe, one process or many, resumable to the exact step.

    zephyra train base recipes/phase1.yaml max_steps=200
    torchrun --standalone --nproc_per_node 2 -m zephyra.training base recipes/phase1.yaml

Each optimizer step reads ``batch_size`` sequences from the data stream; process r of n takes its share and
splits it into micro-batches, gradients are averaged over all of them, clipped, and the optimizer steps. So the
same recipe gives the same losses on one process or many (to rounding), and a resumed run continues the stream
where the checkpoint left it.
"""

from __future__ import annotations

import copy
import math
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml

from ..io import atomic_directory, atomic_write_json, atomic_write_text
from ..runtime import choose_threads, resolve_precision
from . import distributed
from .checkpoint import CheckpointError, checkpoint_tensors, latest, list_checkpoints, load_checkpoint, load_weights, \
    rotate, save_checkpoint, seal
from .config import RecipeError, TrainConfig
from .data import MixtureSampler, eval_batches
from .distributed import World
from .optim import build_optimizers, build_schedulers, load_optim_state, optim_state
from .prepare import build_model, context_length, matmul_params, prepare_data, prepare_tokenizer
from .runlog import RunLog


@dataclass
class Run:
    """What every step needs, built once by ``_setup``."""
    cfg: TrainConfig
    world: World
    tokenizer: object
    model: torch.nn.Module  # the module itself: saved, evaluated
    forward: object  # what the training step calls: the model, or its torch.compile'd wrapper
    params: list
    optimizers: list
    schedulers: list
    sampler: MixtureSampler
    val: dict[str, list[np.ndarray]]
    micro: int  # sequences per forward pass in this process
    accum: int  # forward passes per optimizer step in this process
    flops_per_token: int
    step: int = 0
    tokens: int = 0
    train_seconds: float = 0.0
    last_eval: dict = field(default_factory=dict)
    sharded: bool = False  # parallel=fsdp over several processes: ``model`` holds this process's shards
    whole: torch.nn.Module | None = None  # then, on rank 0, an unsharded copy the gathered weights are loaded into

    @property
    def saved_model(self) -> torch.nn.Module:
        """What is saved, exported and given to the phase tasks (on rank 0): the model, or its gathered copy."""
        return self.whole if self.sharded else self.model

    @property
    def ckpt_root(self) -> Path:
        return Path(self.cfg.out_dir) / "checkpoints"

    def autocast(self):
        if resolve_precision(self.cfg.precision) == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return nullcontext()


def train(cfg: TrainConfig) -> dict:
    """Train ``cfg`` in this process (or in each of torchrun's processes); returns
    ``{"metrics": {...}, "paths": {...}}`` (identical on every process)."""
    world = distributed.init()
    threads = torch.get_num_threads()
    try:
        # the cores free now, shared by this machine's processes of the run (runtime.py: fair to a busy machine)
        torch.set_num_threads(cfg.threads or max(1, choose_threads() // world.size))
        return _train(cfg, world)
    finally:
        torch.set_num_threads(threads)
        distributed.cleanup(world)


def _lock(out: Path, world: World):
    """Hold ``out/.lock`` for the whole run (rank 0): a second run into the same out_dir would interleave its
    checkpoints and metrics with this one's. The kernel drops the lock when the process dies, even by SIGKILL."""
    if not world.main:
        return None
    import fcntl

    out.mkdir(parents=True, exist_ok=True)
    f = open(out / ".lock", "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise RecipeError(f"another training run is using {out}: wait for it, or choose another out_dir") from None
    return f


def _train(cfg: TrainConfig, world: World) -> dict:
    out = Path(cfg.out_dir)
    lock = _lock(out, world)
    try:
        return _train_locked(cfg, world, out)
    finally:
        if lock is not None:
            lock.close()


def _train_locked(cfg: TrainConfig, world: World, out: Path) -> dict:
    # --- set up: tokenizer, data, model, optimizer; then the checkpoint, if resuming -------------------------
    run = _setup(cfg, world)
    resume_from = _resume_dir(cfg, run.ckpt_root)
    if resume_from is not None:
        _restore(run, resume_from)
    if world.main:
        atomic_write_text(out / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    log = RunLog(out, world.main, run.step, cfg.max_steps, cfg.progress and world.main, cfg.name)
    try:
        # --- the loop ----------------------------------------------------------------------------------------
        window_s, window_tokens = 0.0, 0  # training time and tokens since the last log line
        while run.step < cfg.max_steps:
            t0 = time.perf_counter()
            loss, grad_norm = _train_step(run)
            dt = time.perf_counter() - t0
            run.train_seconds += dt
            window_s += dt
            window_tokens += cfg.batch_size * cfg.data.seq_len
            if run.step % cfg.log_every == 0 or run.step == cfg.max_steps:
                tps = window_tokens / window_s
                log.record({"step": run.step, "tokens": run.tokens, "loss": loss,
                            "lr": run.schedulers[-1].get_last_lr()[0], "grad_norm": grad_norm, "tok_per_s": tps,
                            "flops_per_s": 6.0 * run.flops_per_token * tps})
                window_s, window_tokens = 0.0, 0
            log.advance(run.step, loss)
            due_save = cfg.save_every and run.step % cfg.save_every == 0 and run.step < cfg.max_steps
            due_eval = cfg.eval_every and run.step % cfg.eval_every == 0 and run.step < cfg.max_steps
            if due_eval or due_save:  # every checkpoint carries its validation loss, to rank it for "best"
                _record_eval(run, log)
            if due_save:
                _save(run)
        # --- the end: evaluate, checkpoint, phase tasks, export ------------------------------------------------
        if run.last_eval.get("step") != run.step:
            _record_eval(run, log)
        ckpt = _save(run)
        metrics = _final_metrics(run, log)
        metrics.update(_eval_tasks(run, out))
        final = _export(run, metrics, out) if world.main else out / "final"
        best = (rotate(run.ckpt_root, cfg.keep_last) if world.main else None)
        paths = {"out_dir": str(out), "final": str(final), "checkpoint": str(ckpt), "metrics": str(log.metrics_path),
                 "tensorboard": str(out / "tb"), "best": best["path"] if best else None}
        result = {"metrics": metrics, "paths": paths}
        if world.main:
            atomic_write_json(out / "results.json", result)
            val = f", val_loss {metrics['val_loss']:.4f}" if "val_loss" in metrics else ""
            log.message(f"done: step {run.step}{val}; final model in {final}")
        return distributed.broadcast_object(world, result)
    finally:
        log.close()


# --------------------------------------------------------------------------------------------------------------
# set-up and resume
# --------------------------------------------------------------------------------------------------------------

def _setup(cfg: TrainConfig, world: World) -> Run:
    micro, accum = cfg.micro_batches(world.size)
    tokenizer = prepare_tokenizer(cfg, world)
    arrays, weights, val_arrays = prepare_data(cfg, tokenizer, world)
    model = build_model(cfg.model, tokenizer, cfg.seed)
    if cfg.data.seq_len > context_length(model):
        raise RecipeError(f"data.seq_len ({cfg.data.seq_len}) is longer than the model's context "
                          f"({context_length(model)}): lower it or raise max_position_embeddings")
    distributed.broadcast_model(world, model)
    model.train()
    flops = matmul_params(model)
    sharded, whole = cfg.parallel == "fsdp" and world.distributed, None
    if sharded:
        from . import sharding

        whole = copy.deepcopy(model) if world.main else None
        sharding.shard(model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizers = build_optimizers(model, cfg.optim)
    schedulers = build_schedulers(optimizers, cfg.max_steps, cfg.schedule)
    _seed_all(cfg.seed + world.rank)
    forward = torch.compile(model) if cfg.compile else model
    val = {name: eval_batches(a, micro, cfg.eval_batches) for name, a in val_arrays.items()}
    return Run(cfg=cfg, world=world, tokenizer=tokenizer, model=model, forward=forward, params=params,
               optimizers=optimizers, schedulers=schedulers, sampler=MixtureSampler(arrays, weights, cfg.seed),
               val=val, micro=micro, accum=accum, flops_per_token=flops, sharded=sharded, whole=whole)


def _resume_dir(cfg: TrainConfig, root: Path) -> Path | None:
    if cfg.resume == "never":
        if list_checkpoints(root):
            raise CheckpointError(f"{root} already holds checkpoints and resume=never: pass resume=auto to "
                                  "continue them, or choose another out_dir")
        return None
    if cfg.resume == "auto":
        return latest(root)
    path = Path(cfg.resume)
    if not path.is_dir():
        raise CheckpointError(f"resume: checkpoint {path} does not exist")
    return path


def _restore(run: Run, directory: Path) -> None:
    """Model, optimizer, scheduler, RNG and data position from a verified checkpoint."""
    _, opt_state, rng_states, state = load_checkpoint(directory)  # raises CheckpointError before loading anything
    saved_parallel = opt_state.get("parallel", "ddp")
    if saved_parallel != ("fsdp" if run.sharded else "ddp"):
        raise CheckpointError(f"cannot resume from {directory}: it was saved by a {saved_parallel} run and this one "
                              f"is {'fsdp' if run.sharded else 'ddp'} (parallel=fsdp over one process is ddp): "
                              "resume with the same parallel and process count, or start a new out_dir")
    try:
        if run.sharded:
            from . import sharding

            sharding.load_full(run.model, run.optimizers, checkpoint_tensors(run.model, directory),
                               opt_state["optimizers"])
            for sch, s in zip(run.schedulers, opt_state["schedulers"]):
                sch.load_state_dict(s)
        else:
            load_weights(run.model, directory)
            load_optim_state(run.optimizers, run.schedulers, opt_state)
    except (ValueError, KeyError) as e:
        raise CheckpointError(f"cannot resume from {directory}: {e}") from None
    run.sampler.load_state_dict(state["data"])
    _set_rng_state(rng_states[run.world.rank % len(rng_states)])
    run.step, run.tokens = int(state["step"]), int(state["tokens"])
    run.train_seconds = float(state.get("train_seconds", 0.0))
    if state.get("val_loss") is not None:
        run.last_eval = {"step": run.step, "val_loss": state["val_loss"], **state.get("eval", {})}


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict:
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                      "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])}}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))


# --------------------------------------------------------------------------------------------------------------
# one step, evaluation, checkpoints
# --------------------------------------------------------------------------------------------------------------

def _train_step(run: Run) -> tuple[float, float]:
    """One optimizer step over the next global batch; returns (mean loss over it, gradient norm)."""
    cfg, world = run.cfg, run.world
    batch = run.sampler.next_batch(cfg.batch_size)  # every process draws the whole batch and keeps its share
    share = cfg.batch_size // world.size
    local = torch.from_numpy(batch[world.rank * share:(world.rank + 1) * share])
    mb = run.micro
    total = torch.zeros((), dtype=torch.float64)
    for m in range(run.accum):
        x = local[m * mb:(m + 1) * mb]  # (mb, T)
        with run.autocast():
            loss = run.forward(input_ids=x, labels=x).loss
        (loss / run.accum).backward()
        total += loss.detach().double()
    if not run.sharded:  # FSDP has reduce-scattered the averaged gradients already
        distributed.average_gradients(world, run.params)
    total = distributed.all_reduce_sum(world, total) / (run.accum * world.size)
    max_norm = cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else math.inf
    grad_norm = torch.nn.utils.clip_grad_norm_(run.params, max_norm, foreach=True)
    if run.sharded:
        from .sharding import grad_norm_value

        grad_norm = grad_norm_value(grad_norm)
    for o in run.optimizers:
        o.step()
    for s in run.schedulers:
        s.step()
    for o in run.optimizers:
        o.zero_grad(set_to_none=True)
    run.step += 1
    run.tokens += cfg.batch_size * cfg.data.seq_len
    return float(total), float(grad_norm)


@torch.no_grad()
def evaluate(run: Run) -> dict[str, float]:
    """Mean held-out loss per validation set, over the same batches every time (split over the processes)."""
    from ..evaluation.metrics import summed_nll

    world = run.world
    out = {}
    for name, batches in run.val.items():
        if run.sharded:  # every process takes part in every sharded forward: each evaluates all batches
            total, tokens = summed_nll(run.model, batches, run.autocast)
            out[name] = total / tokens
            continue
        total, tokens = summed_nll(run.model, batches[world.rank::world.size], run.autocast)
        acc = distributed.all_reduce_sum(world, torch.tensor([total, tokens], dtype=torch.float64))
        out[name] = float(acc[0] / acc[1])
    return out


def _record_eval(run: Run, log: RunLog) -> None:
    if not run.val:
        return
    losses = evaluate(run)
    first = next(iter(losses.values()))
    record = {"step": run.step, "tokens": run.tokens, "val_loss": first, "val_perplexity": math.exp(min(first, 50))}
    record.update({f"val/{k}": v for k, v in losses.items()})
    run.last_eval = record
    log.record(record)


def _save(run: Run) -> Path:
    """A checkpoint of this step (rank 0 writes; every process contributes its RNG state); then rotation."""
    from transformers.utils import logging as hf_logging

    rng = distributed.gather(run.world, _rng_state())
    path = run.ckpt_root / f"step-{run.step:07d}"
    if run.sharded:  # gather the shards into rank 0's whole copy (every process takes part)
        from . import sharding

        tensors, optims = sharding.full_state(run.model, run.optimizers)
        if run.world.main:
            sharding.load_into_whole(run.whole, tensors)
            opt_saved = {"optimizers": optims, "schedulers": [s.state_dict() for s in run.schedulers],
                         "parallel": "fsdp"}
    else:
        opt_saved = optim_state(run.optimizers, run.schedulers) if run.world.main else None
    if run.world.main:
        ev = run.last_eval if run.last_eval.get("step") == run.step else {}
        state = {"step": run.step, "tokens": run.tokens, "data": run.sampler.state_dict(),
                 "val_loss": ev.get("val_loss"), "eval": {k: v for k, v in ev.items() if k.startswith("val")},
                 "train_seconds": run.train_seconds}
        hf_logging.disable_progress_bar()  # save_pretrained's "Writing model shards" bar
        save_checkpoint(run.ckpt_root, run.step, run.saved_model, opt_saved, rng,
                        state, run.cfg.to_dict(), {k: v for k, v in state.items() if k != "data"})
        rotate(run.ckpt_root, run.cfg.keep_last)
    distributed.barrier(run.world)
    return path


# --------------------------------------------------------------------------------------------------------------
# the end of a run
# --------------------------------------------------------------------------------------------------------------

def _final_metrics(run: Run, log: RunLog) -> dict:
    m = {"step": run.step, "tokens": run.tokens, "loss": log.last_loss, "train_seconds": run.train_seconds,
         "params_matmul": run.flops_per_token, "world_size": run.world.size}
    m.update({k: v for k, v in run.last_eval.items() if k.startswith("val")})
    tps = log.median_tok_per_s()
    if tps:
        m["tok_per_s"] = tps
        m["flops_per_s"] = 6.0 * run.flops_per_token * tps
    return m


def _eval_tasks(run: Run, out: Path) -> dict:
    metrics: dict = {}
    if "phase1" in run.cfg.eval_tasks:
        def task():
            from .phase1_eval import evaluate_phase1

            m, details = evaluate_phase1(run.saved_model, run.tokenizer, run.cfg.phase1_eval)
            atomic_write_json(out / "phase1_eval.json", {"metrics": m, **details})
            return m

        metrics.update(distributed.broadcast_object(run.world, task() if run.world.main else None))
    return metrics


def _export(run: Run, metrics: dict, out: Path) -> Path:
    """``out/final``: an HF model directory with the tokenizer saved into it and a verifiable manifest."""
    final = out / "final"
    with atomic_directory(final) as tmp:
        run.saved_model.save_pretrained(tmp, safe_serialization=True)
        run.tokenizer.save_pretrained(tmp)
        parents = [run.cfg.model.init_from] if run.cfg.model.init_from else []
        seal(tmp, "model", run.cfg.to_dict(), metrics, parents=parents, architecture=run.cfg.model.arch,
             step=run.step)
    return final
