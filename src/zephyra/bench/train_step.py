"""One training-step throughput measurement, in its own process so that peak memory is its own.

    python -m zephyra.bench.train_step --arch zephyra --preset small --batch 8 --seq 256 --dtype bf16

Prints one JSON line: tokens/s (forward + backward + AdamW step), seconds per step, peak RSS.
With ``--interleave zephyra,llama`` it measures several architectures in one process, steps alternating.
``--device cuda`` runs the same step on a GPU (timed after ``torch.cuda.synchronize``; peak memory is then the
GPU's, ``torch.cuda.max_memory_allocated``); the default is the CPU.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch


def build(arch: str, preset: str, vocab: int, seq: int, attn: str | None):
    from zephyra.model import ZephyraForCausalLM, non_embedding_params, preset_config
    from zephyra.model.baselines import gpt2_config_like, llama_config_like

    cfg = preset_config(preset, vocab_size=vocab, max_position_embeddings=max(seq, 128))
    if arch == "zephyra":
        model = ZephyraForCausalLM(cfg)
    elif arch == "llama":
        from transformers import LlamaForCausalLM
        lcfg = llama_config_like(cfg)
        if attn:
            lcfg._attn_implementation = attn
        model = LlamaForCausalLM(lcfg)
    elif arch == "gpt2":
        from transformers import GPT2LMHeadModel
        model = GPT2LMHeadModel(gpt2_config_like(cfg))
    else:
        raise SystemExit(f"unknown arch {arch!r}")
    return model, non_embedding_params(model)


def check_device(device: str) -> torch.device:
    """``cpu`` or ``cuda`` (the latter only where torch sees a GPU), else a one-line SystemExit."""
    if device not in ("cpu", "cuda"):
        raise SystemExit(f"device must be cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device here (torch " + torch.__version__ + ")")
    return torch.device(device)


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU), so a timer reads finished steps."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def training_step(fn, opt, x: torch.Tensor, bf16: bool) -> torch.Tensor:
    """One forward + backward + optimizer step on ``x`` as its own labels (bf16 autocast or not, on ``x``'s
    device); the loss."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        loss = fn(input_ids=x, labels=x).loss
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss


def peak_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(arch: str, preset: str, batch: int, seq: int, dtype: str, steps: int, warmup: int, vocab: int,
            threads: int, compile_: bool, attn: str | None, device: str = "cpu") -> dict:
    dev = check_device(device)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model, n_params = build(arch, preset, vocab, seq, attn)
    model.to(dev).train()
    step_fn = model
    if compile_:
        step_fn = torch.compile(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randint(3, vocab, (batch, seq), device=dev)
    use_bf16 = dtype == "bf16"

    def step():
        return training_step(step_fn, opt, x, use_bf16)

    for _ in range(warmup):
        step()
    sync(dev)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        sync(dev)
        times.append(time.perf_counter() - t0)
    times.sort()
    median = times[len(times) // 2]
    return {"arch": arch, "preset": preset, "dtype": dtype, "batch": batch, "seq": seq, "threads": threads,
            "compile": compile_, "device": dev.type, "params_non_embedding": n_params,
            "params_total": sum(p.numel() for p in model.parameters()),
            "step_s": median, "tokens_per_s": batch * seq / median,
            "peak_rss_mib": peak_mib(dev)}


def interleaved(archs: list[str], preset: str, batch: int, seq: int, dtype: str, steps: int, warmup: int,
                vocab: int, threads: int, compile_: bool, device: str = "cpu") -> dict[str, list[float]]:
    """Tokens/s of several architectures in one process, their steps alternating (A, B, A, B, ...), so a busy
    moment of the machine slows both alike; returns every step's tokens/s per arch."""
    dev = check_device(device)
    torch.set_num_threads(threads)
    runners = {}
    x = torch.randint(3, vocab, (batch, seq), device=dev)
    for arch in archs:
        torch.manual_seed(0)
        model, _ = build(arch, preset, vocab, seq, None)
        model.to(dev).train()
        fn = torch.compile(model) if compile_ else model
        runners[arch] = (fn, torch.optim.AdamW(model.parameters(), lr=1e-4))

    def step(arch):
        training_step(*runners[arch], x, dtype == "bf16")

    out = {a: [] for a in archs}
    for i in range(warmup + steps):
        order = archs if i % 2 == 0 else archs[::-1]
        for arch in order:
            sync(dev)
            t0 = time.perf_counter()
            step(arch)
            sync(dev)
            if i >= warmup:
                out[arch].append(batch * seq / (time.perf_counter() - t0))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="zephyra", choices=["zephyra", "llama", "gpt2"])
    p.add_argument("--preset", default="small")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--vocab", type=int, default=8192)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--attn", default=None, help="HF attention implementation for llama (sdpa, eager)")
    p.add_argument("--interleave", default=None, help="comma-separated archs measured alternately in this process")
    p.add_argument("--device", default="cpu", help="cpu or cuda (where torch sees a GPU)")
    a = p.parse_args()
    if a.interleave:
        print(json.dumps(interleaved(a.interleave.split(","), a.preset, a.batch, a.seq, a.dtype, a.steps, a.warmup,
                                     a.vocab, a.threads, a.compile, a.device)))
        return
    print(json.dumps(measure(a.arch, a.preset, a.batch, a.seq, a.dtype, a.steps, a.warmup, a.vocab, a.threads,
                             a.compile, a.attn, a.device)))


if __name__ == "__main__":
    main()
