"""Inference precision on this machine: the same base decoding in fp32, bf16 and int8, against fp32.

    python -m zephyra.bench.precision --base runs/phase2/final --data runs/data --batch 1,8 --new-tokens 48

Variants (every one from the same weights):
- ``fp32``: the base as trained (the baseline);
- ``bf16``: its weights cast to bfloat16 (``model.to(torch.bfloat16)``), every op in bf16;
- ``int8``: PyTorch's dynamic quantization (``torch.ao.quantization.quantize_dynamic``): each linear layer of the
  decoder stack stored as int8 (per-tensor scale), activations quantized per batch at run time, the int8 GEMM of
  fbgemm; the embedding and the tied output matrix stay fp32. (PyTorch marks its quantized tensors deprecated
  in favour of torchao; with torch pinned at 2.13 they run, and torchao is not in the lock.)

Measured per variant: greedy decode tokens/s with the KV cache (``generate``, a fixed number of new tokens, the
variants' rounds interleaved so a busy moment slows all alike), the serialized size of the weights, and -- with a
trained base and its data -- perplexity on held-out general text and the share of next-token argmaxes that agree
with fp32's. Without a trained base a random-weight ``mini`` is timed and the quality columns are n/a.
"""

from __future__ import annotations

import copy
import io
import statistics
import time
from pathlib import Path

import torch

VARIANTS = ("fp32", "bf16", "int8")


def variants(model) -> dict[str, torch.nn.Module]:
    """{name: model}: fp32, bf16 and dynamic-int8 copies of ``model`` (an fp32 model in eval mode)."""
    import warnings

    from torch.ao.quantization import quantize_dynamic

    fp32 = model.float().eval()
    names = {n for n, m in fp32.named_modules() if isinstance(m, torch.nn.Linear) and ".layers." in f".{n}"}
    with warnings.catch_warnings():  # the deprecation notice of quantized tensors, once per layer
        warnings.simplefilter("ignore")
        int8 = quantize_dynamic(copy.deepcopy(fp32), names, dtype=torch.qint8).eval()
    return {"fp32": fp32, "bf16": copy.deepcopy(fp32).to(torch.bfloat16).eval(), "int8": int8}


def weight_bytes(model) -> int:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.tell()


@torch.no_grad()
def decode_tokens_per_s(model, prompts: torch.Tensor, new_tokens: int, pad_id: int) -> float:
    t0 = time.perf_counter()
    model.generate(input_ids=prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=new_tokens,
                   min_new_tokens=new_tokens, do_sample=False, pad_token_id=pad_id)
    return prompts.shape[0] * new_tokens / (time.perf_counter() - t0)


@torch.no_grad()
def quality(models: dict, rows: list[list[int]], pad_id: int) -> dict[str, dict]:
    """Perplexity on ``rows`` and next-token argmax agreement with fp32, per variant."""
    import math

    ids = torch.tensor(rows)
    ref = None
    out = {}
    for name, m in models.items():
        logits = m(input_ids=ids).logits.float()
        logp = torch.log_softmax(logits[:, :-1], -1)
        nll = -logp.gather(-1, ids[:, 1:, None]).squeeze(-1)
        top = logits.argmax(-1)
        ref = top if ref is None else ref
        out[name] = {"perplexity": math.exp(nll.mean().item()),
                     "agreement_with_fp32": (top == ref).float().mean().item()}
    return out


def _trained(base: Path | None, data: Path | None, max_tokens: int, seq: int):
    """(model, tokenizer, held-out rows or None, what): the trained base and its general validation text."""
    from ..loader import load_model

    model, tok = load_model(base)
    rows = None
    if data is not None and (data / "phase2").is_dir():
        from ..evaluation.suite import perplexity_rows
        from ..training.data import load_split

        texts = load_split(data / "phase2", "validation")["text"]
        rows = perplexity_rows(texts, tok, max_tokens, seq)
        rows = [r for r in rows if len(r) == seq] or None
    return model, tok, rows, str(base)


def run(base: Path | None = None, data: Path | None = None, batches=(1, 8), prompt_len: int = 32,
        new_tokens: int = 48, rounds: int = 3, threads: int = 2, max_tokens: int = 4096, seq: int = 128,
        progress=None) -> dict:
    torch.set_num_threads(threads)
    if base is not None and (Path(base) / "config.json").is_file():
        model, tok, rows, what = _trained(Path(base), Path(data) if data else None, max_tokens, seq)
    else:
        from .all import _synthetic_base

        model, tok = _synthetic_base()
        rows, what = None, "random-weight mini (no trained base)"
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    models = variants(model)
    g = torch.Generator().manual_seed(0)
    speeds = {(v, b): [] for v in models for b in batches}
    for r in range(rounds):
        for b in batches:
            prompts = torch.randint(5, len(tok), (b, prompt_len), generator=g)
            order = list(models) if r % 2 == 0 else list(models)[::-1]
            for v in order:
                speeds[(v, b)].append(decode_tokens_per_s(models[v], prompts, new_tokens, pad))
        if progress:
            progress(f"round {r + 1}/{rounds}: " + ", ".join(f"{v}@{b} {statistics.median(s):.0f} tok/s"
                                                             for (v, b), s in speeds.items()))
    q = quality(models, rows, pad) if rows else {}
    sizes = {v: weight_bytes(m) for v, m in models.items()}
    out_rows = []
    for (v, b), s in speeds.items():
        ref = statistics.median(speeds[("fp32", b)])
        out_rows.append({"variant": v, "batch": b, "tokens_per_s": statistics.median(s), "rounds": len(s),
                         "speed_vs_fp32": statistics.median(s) / ref, "weights_mib": sizes[v] / 2**20,
                         "size_vs_fp32": sizes[v] / sizes["fp32"],
                         "perplexity": q.get(v, {}).get("perplexity"),
                         "agreement_with_fp32": q.get(v, {}).get("agreement_with_fp32")})
    return {"rows": out_rows, "model": what, "quality_tokens": (len(rows) * (seq - 1)) if rows else 0}


def main() -> None:
    import argparse
    import json

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", type=Path, default=Path("runs/phase2/final"))
    p.add_argument("--data", type=Path, default=Path("runs/data"))
    p.add_argument("--batch", default="1,8")
    p.add_argument("--prompt-len", type=int, default=32)
    p.add_argument("--new-tokens", type=int, default=48)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    res = run(a.base, a.data, [int(x) for x in a.batch.split(",")], a.prompt_len, a.new_tokens, a.rounds, a.threads,
              progress=print)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
