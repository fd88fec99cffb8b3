"""A soak test of ``zephyra serve`` on loopback: ``concurrency`` clients keep sending streaming chat requests (the
mixed models and prompts of bench/serve_load.py) for a fixed time, bounded in requests too, while this process's
resident memory (RSS) is sampled every second. A server that leaks shows a rising RSS curve.

    zephyra bench soak --minutes 3 --concurrency 4 --out runs/bench/soak

The server runs in this process (uvicorn in a thread, 127.0.0.1, a free port: serve_in_thread), so the RSS
sampled is this process's: the server, the engine and the model, plus the (small) load-generating client.
Writes DIR/soak.json (samples, answered / 429 / errors, latency p50/p99), DIR/soak.md (start, middle and end RSS,
the least-squares slope in MiB per minute) and DIR/soak.png (the RSS curve).
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from pathlib import Path

import numpy as np

from .serve_load import _one

MIB = 1 << 20


class RssSampler:
    """This process's RSS every ``interval`` seconds, in a daemon thread: ``samples`` is [(seconds since start,
    MiB)]."""

    def __init__(self, interval: float = 1.0):
        import psutil

        self.interval, self.proc = interval, psutil.Process()
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="zephyra-rss")

    def _loop(self) -> None:
        t0 = time.perf_counter()
        while True:
            self.samples.append((time.perf_counter() - t0, self.proc.memory_info().rss / MIB))
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)


def slope_mib_per_min(samples: list[tuple[float, float]]) -> float:
    """The least-squares slope of RSS over time, MiB per minute (nan with fewer than two samples)."""
    if len(samples) < 2:
        return float("nan")
    t, m = np.array(samples).T
    return float(np.polyfit(t / 60.0, m, 1)[0])


async def _load(url: str, seconds: float, concurrency: int, models: list[str], max_tokens: int, max_requests: int,
                log_every: float, log, think: float = 0.0) -> dict:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    results: list[dict] = []
    errors: list[str] = []
    counter = iter(range(max_requests))
    t0 = time.perf_counter()
    deadline = t0 + seconds

    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        async def worker() -> None:
            for i in counter:
                if time.perf_counter() >= deadline:
                    return
                try:
                    results.append(await _one(http, i, models, max_tokens))
                except (httpx.HTTPError, ValueError, KeyError) as e:  # a broken stream or a dropped connection
                    errors.append(f"{type(e).__name__}: {e}"[:200])
                    await asyncio.sleep(0.1)
                if think:  # a client's pause between requests: a steady rate rather than as fast as possible
                    await asyncio.sleep(min(think, max(0.0, deadline - time.perf_counter())))

        def say() -> None:
            ok = sum(r["status"] == 200 for r in results)
            log(f"soak: {time.perf_counter() - t0:6.1f}s  answered {ok}  429 "
                f"{sum(r['status'] == 429 for r in results)}  errors "
                f"{len(errors) + sum(r['status'] not in (200, 429) for r in results)}")

        async def reporter() -> None:
            while True:
                await asyncio.sleep(log_every)
                say()

        rep = asyncio.create_task(reporter())
        try:
            await asyncio.gather(*(worker() for _ in range(concurrency)))
        finally:
            rep.cancel()
        say()
    wall = time.perf_counter() - t0
    ok = [r for r in results if r["status"] == 200]
    total = [r["total"] for r in ok]
    ttft = [r["ttft"] for r in ok if r["ttft"] is not None]

    def pct(xs, q):
        return float(np.percentile(xs, q)) if xs else None

    return {"requests": len(results) + len(errors), "answered": len(ok),
            "refused_429": sum(r["status"] == 429 for r in results),
            "other_status": sorted({r["status"] for r in results if r["status"] not in (200, 429)}),
            "errors": len(errors) + sum(r["status"] not in (200, 429) for r in results),
            "error_examples": errors[:5], "wall_s": wall, "requests_per_s": len(ok) / wall if wall else 0.0,
            "latency_p50_s": pct(total, 50), "latency_p99_s": pct(total, 99), "ttft_p50_s": pct(ttft, 50),
            "ttft_p99_s": pct(ttft, 99)}


def soak(app, seconds: float, concurrency: int, models: list[str], *, max_tokens: int = 32,
         max_requests: int = 100_000, interval: float = 1.0, log_every: float = 5.0, log=None,
         warmup: int | None = None, think: float = 0.0) -> dict:
    """Serve ``app`` on loopback and hold ``concurrency`` streaming clients on it for ``seconds`` (at most
    ``max_requests`` requests; each client pauses ``think`` seconds between requests), sampling RSS every
    ``interval`` seconds: the numbers soak.json holds. ``warmup`` requests first (None: one per model, so every
    adapter is loaded before the curve starts)."""
    from ..serve.app import serve_in_thread

    if seconds <= 0 or concurrency < 1 or max_requests < 1:
        raise ValueError(f"soak needs seconds > 0, concurrency >= 1 and max_requests >= 1; got {seconds}, "
                         f"{concurrency}, {max_requests}")
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    with serve_in_thread(app) as url:
        warmup = len(models) if warmup is None else warmup
        if warmup:  # first-use loads (adapters, indexes) happen before the curve starts
            asyncio.run(_load(url, 600, 1, models, max_tokens, warmup, 1e9, lambda _: None))
        with RssSampler(interval) as sampler:
            numbers = asyncio.run(_load(url, seconds, concurrency, models, max_tokens, max_requests, log_every,
                                        log, think))
            time.sleep(min(interval, 1.0))  # one sample after the load stops
    samples = [(round(t, 3), round(m, 3)) for t, m in sampler.samples]
    return {**numbers, "seconds": seconds, "concurrency": concurrency, "max_tokens": max_tokens,
            "max_requests": max_requests, "think_s": think, "models": models,
            "rss_sampled": "this process (server in a thread)",
            "samples": samples, "rss_start_mib": samples[0][1], "rss_middle_mib": samples[len(samples) // 2][1],
            "rss_end_mib": samples[-1][1], "rss_max_mib": max(m for _, m in samples),
            "slope_mib_per_min": slope_mib_per_min(samples),
            "slope_second_half_mib_per_min": slope_mib_per_min(samples[len(samples) // 2:])}


def markdown(r: dict) -> str:
    def f(x, fmt):
        return "-" if x is None else format(x, fmt)

    return "\n".join([
        f"Soak: {r['concurrency']} clients for {r['wall_s']:.0f} s (asked {r['seconds']:.0f} s, at most "
        f"{r['max_requests']} requests), max_tokens {r['max_tokens']}, models {', '.join(r['models'])}; "
        f"RSS of {r['rss_sampled']}, {len(r['samples'])} samples.", "",
        "| requests | answered | 429 | errors | req/s | latency p50 s | p99 s | TTFT p50 s | p99 s |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {r['requests']} | {r['answered']} | {r['refused_429']} | {r['errors']} | {r['requests_per_s']:.2f} | "
        f"{f(r['latency_p50_s'], '.3f')} | {f(r['latency_p99_s'], '.3f')} | {f(r['ttft_p50_s'], '.3f')} | "
        f"{f(r['ttft_p99_s'], '.3f')} |", "",
        "| RSS start MiB | middle MiB | end MiB | max MiB | slope MiB/min (least squares) | second half MiB/min |",
        "|---|---|---|---|---|---|",
        f"| {r['rss_start_mib']:.1f} | {r['rss_middle_mib']:.1f} | {r['rss_end_mib']:.1f} | {r['rss_max_mib']:.1f} | "
        f"{r['slope_mib_per_min']:+.2f} | {r['slope_second_half_mib_per_min']:+.2f} |", ""])


def write(out: Path, r: dict) -> None:
    """DIR/soak.json, soak.md and soak.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import atomic_write_figure, atomic_write_json, atomic_write_text

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "soak.json", r)
    atomic_write_text(out / "soak.md", markdown(r))
    t, m = np.array(r["samples"]).T
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(t / 60.0, m, lw=1.2, label="RSS")
    if len(t) >= 2:
        a, b = np.polyfit(t / 60.0, m, 1)
        ax.plot(t / 60.0, a * t / 60.0 + b, "--", lw=1, label=f"fit {a:+.2f} MiB/min")
    ax.set_xlabel("minutes")
    ax.set_ylabel("RSS MiB")
    ax.set_title(f"zephyra serve soak: {r['concurrency']} clients, {r['answered']} answered")
    ax.legend()
    fig.tight_layout()
    atomic_write_figure(fig, out / "soak.png")
    plt.close(fig)


def run(base: Path, adapters: Path | None, router: Path | None, out: Path, minutes: float = 3.0,
        concurrency: int = 4, max_tokens: int = 32, max_pending: int = 64, answer: str | None = "generate",
        max_requests: int = 100_000, log_every: float = 5.0) -> dict:
    """Load the system (as serve_load does), soak it, write DIR/soak.{json,md,png}; the numbers."""
    from ..resolve.system import load_system
    from ..serve.app import create_app

    system = load_system(base, adapters, router, answer=answer)
    models = (["auto"] if system.router is not None else []) + ["base", *system.adapters]
    app = create_app(system, max_pending=max_pending, max_tokens=max_tokens)
    r = soak(app, minutes * 60.0, concurrency, models, max_tokens=max_tokens, max_requests=max_requests,
             log_every=log_every)
    write(out, r)
    return r
