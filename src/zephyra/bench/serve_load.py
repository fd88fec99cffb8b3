"""A bounded load test of ``zephyra serve`` on loopback: a fixed number of streaming chat requests over mixed models
(auto, base, each adapter), sent by C concurrent clients, against the same requests one at a time, in one run and
on one server. Reports throughput and the p50/p99 time to first token and end-to-end latency, and checks that
every request was answered or cleanly refused (429), none lost.

    python -m zephyra.bench.serve_load --requests 48 --concurrency 16 --max-tokens 32

The server runs in this process (uvicorn in a thread, 127.0.0.1, a free port) on the quickstart's system (or
``--base/--adapters/--router``). ``--answer generate`` (the default here) makes grounded adapters write their own
answer instead of quoting the best passage, so every request exercises the engine's batched decoding.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import numpy as np

PROMPTS = ["What is the capital of Peru?", "Who is Polonius?", "What does zip() do?", "What is a compiler?",
           "What does Genesis 1:1 say?", "What is the symbol for iron?", "Tell me a joke.", "hello there",
           "Which river flows through Cairo?", "What is a mutex?", "Who says 'To be, or not to be'?",
           "What does str.join do?"]


async def _one(http, i: int, models: list[str], max_tokens: int) -> dict:
    body = {"model": models[i % len(models)], "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
            "max_tokens": max_tokens, "stream": True}
    t0 = time.perf_counter()
    first, chunks = None, 0
    async with http.stream("POST", "/v1/chat/completions", json=body) as r:
        if r.status_code != 200:
            await r.aread()
            return {"status": r.status_code, "ttft": None, "total": time.perf_counter() - t0, "chunks": 0}
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("choices") and chunk["choices"][0]["delta"].get("content"):
                chunks += 1
                if first is None:
                    first = time.perf_counter() - t0
    return {"status": 200, "ttft": first, "total": time.perf_counter() - t0, "chunks": chunks}


async def _run(url: str, n: int, concurrency: int, models: list[str], max_tokens: int) -> dict:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as http:
        gate = asyncio.Semaphore(concurrency)

        async def bounded(i):
            async with gate:
                return await _one(http, i, models, max_tokens)

        t0 = time.perf_counter()
        results = await asyncio.gather(*(bounded(i) for i in range(n)))
        wall = time.perf_counter() - t0
    ok = [r for r in results if r["status"] == 200]
    ttft = [r["ttft"] for r in ok if r["ttft"] is not None]
    total = [r["total"] for r in ok]

    def pct(xs, q):
        return float(np.percentile(xs, q)) if xs else float("nan")

    return {"concurrency": concurrency, "requests": n, "answered": len(ok),
            "refused_429": sum(r["status"] == 429 for r in results),
            "other": sum(r["status"] not in (200, 429) for r in results), "wall_s": wall,
            "requests_per_s": len(ok) / wall, "chunks_per_s": sum(r["chunks"] for r in ok) / wall,
            "ttft_p50": pct(ttft, 50), "ttft_p99": pct(ttft, 99), "total_p50": pct(total, 50),
            "total_p99": pct(total, 99)}


def markdown(rows: list[dict]) -> str:
    out = ["| clients | requests | answered | 429 | other | wall s | req/s | tokens/s | TTFT p50 s | TTFT p99 s | "
           "end-to-end p50 s | p99 s |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['concurrency']} | {r['requests']} | {r['answered']} | {r['refused_429']} | {r['other']} | "
                   f"{r['wall_s']:.1f} | {r['requests_per_s']:.2f} | {r['chunks_per_s']:.1f} | {r['ttft_p50']:.3f} | "
                   f"{r['ttft_p99']:.3f} | {r['total_p50']:.2f} | {r['total_p99']:.2f} |")
    if len(rows) == 2:
        a, b = rows
        out.append(f"\nthroughput {b['requests_per_s'] / a['requests_per_s']:.2f}x one-at-a-time; "
                   f"TTFT p50 {b['ttft_p50'] / a['ttft_p50']:.2f}x")
    return "\n".join(out)


def run(base: Path, adapters: Path | None, router: Path | None, requests: int = 48, concurrency: int = 16,
        max_tokens: int = 32, max_pending: int = 64, answer: str | None = "generate") -> tuple[list[dict], list[str]]:
    """(rows: one client, then ``concurrency`` clients, the models asked for): one server on loopback, a warm-up
    first (first-use loads), then the same requests at each concurrency."""
    from ..resolve.system import load_system
    from ..serve.app import create_app, serve_in_thread

    system = load_system(base, adapters, router, answer=answer)
    models = ["auto", "base", *system.adapters]
    app = create_app(system, max_pending=max_pending, max_tokens=max_tokens)
    with serve_in_thread(app) as url:
        asyncio.run(_run(url, min(8, requests), 4, models, max_tokens))  # warm-up: first-use loads
        rows = [asyncio.run(_run(url, requests, c, models, max_tokens)) for c in (1, concurrency)]
    return rows, models


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=48)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--max-pending", type=int, default=64)
    p.add_argument("--answer", default="generate", help="grounded adapters: quote | cited | generate")
    p.add_argument("--base", type=Path)
    p.add_argument("--adapters", type=Path)
    p.add_argument("--router", type=Path)
    p.add_argument("--json", type=Path, help="also write the numbers here")
    a = p.parse_args(argv)

    from ..resolve.defaults import DEFAULT_ADAPTERS, DEFAULT_BASE, DEFAULT_ROUTER

    rows, models = run(a.base or DEFAULT_BASE, a.adapters or DEFAULT_ADAPTERS, a.router or DEFAULT_ROUTER,
                       requests=a.requests, concurrency=a.concurrency, max_tokens=a.max_tokens,
                       max_pending=a.max_pending, answer=a.answer)
    print(markdown(rows))
    if a.json:
        from ..io import atomic_write_json

        atomic_write_json(a.json, {"rows": rows, "models": models, "max_tokens": a.max_tokens})


if __name__ == "__main__":
    main()
