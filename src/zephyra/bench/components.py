"""Micro-benchmarks of the two pieces Zephyra does differently, each against the plain version, interleaved.

    python -m zephyra.bench.components --threads 1

Loss: HF-style (all logits, fp32 upcast, cross-entropy) vs the fused chunked loss. Attention: SDPA's
is_causal kernel vs the matmul path Zephyra uses for short sequences. Forward + backward, bf16 autocast,
the `small` preset's shapes (batch 8 x 256 tokens, width 256, 4 heads of 64, vocab 8192).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F


def _loss_cases(N=2048, C=256, V=8192):
    h = torch.randn(N, C, requires_grad=True)
    w = (torch.randn(V, C) * 0.02).requires_grad_()
    y = torch.randint(0, V, (N,))
    from zephyra.model.loss import fused_linear_cross_entropy

    def plain():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = h @ w.T
        return F.cross_entropy(logits.float(), y)

    def fused(chunk):
        def f():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return fused_linear_cross_entropy(h, w, y, chunk)
        return f

    return {"loss: logits + cross-entropy": plain, "loss: fused, chunk 256": fused(256),
            "loss: fused, chunk 2048": fused(2048)}


def _attention_cases(B=8, H=4, T=256, D=64):
    q, k, v = (torch.randn(B, H, T, D, dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    bias = torch.full((T, T), float("-inf"), dtype=torch.bfloat16).triu(1)

    def sdpa():
        return F.scaled_dot_product_attention(q, k, v, is_causal=True).float().sum()

    def matmul():
        s = torch.baddbmm(bias, q.reshape(B * H, T, D), k.reshape(B * H, T, D).transpose(1, 2), alpha=D ** -0.5)
        return torch.bmm(torch.softmax(s, -1), v.reshape(B * H, T, D)).float().sum()

    return {"attention: SDPA is_causal": sdpa, "attention: baddbmm + softmax + bmm": matmul}


def run(threads: int = 2, repeats: int = 15, shapes: dict | None = None) -> list[dict]:
    """One row per case: median ms (forward + backward) and speed against the group's first (plain) case.
    ``shapes`` overrides the default sizes (loss: N, C, V; attention: B, H, T, D), for a quick run."""
    shapes = shapes or {}
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    rows = []
    for group in (_loss_cases(**shapes.get("loss", {})), _attention_cases(**shapes.get("attention", {}))):
        times = {name: [] for name in group}
        for i in range(repeats + 2):
            for name, fn in group.items():
                t0 = time.perf_counter()
                fn().backward()
                if i >= 2:
                    times[name].append(time.perf_counter() - t0)
        first = statistics.median(next(iter(times.values())))
        for name, t in times.items():
            med = statistics.median(t)
            rows.append({"case": name, "baseline": next(iter(times)), "ms": 1000 * med,
                         "speed_vs_baseline": first / med})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=15)
    a = p.parse_args()
    for r in run(a.threads, a.repeats):
        print(f"| {r['case']} | {r['ms']:.1f} ms | {r['speed_vs_baseline']:.2f}x |")


if __name__ == "__main__":
    main()
