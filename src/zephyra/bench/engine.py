"""The streaming engine under load: 1, 4 and 16 concurrent mixed-adapter requests against serving the same
requests one at a time, in one run.

    python -m zephyra.bench.engine                                  # the table in docs/benchmarks.md
    python -m zephyra.bench.engine --preset mini --tokens 48 --rounds 3 --threads 2 --json runs/bench/engine.json

The system is a ``--preset`` Zephyra with six rank-32 LoRA adapters (random weights, non-identity: every adapter
costs what a trained one costs), or a trained one (``--base`` and ``--adapters``). Every request asks for exactly
``--tokens`` new tokens (eos is banned through logit_bias), with prompts of different lengths, cycling through the
six adapters and the base, so every mode does the same work. Per mode: tokens/s over the whole set, time to first
token from each request's arrival (median and worst), and the slowest request against the median one (a starved
request would stand out). "one at a time" serves the same requests sequentially: each waits for the one before.
"arriving" spreads the arrivals over the time one request takes alone, so each joins a batch already decoding.
The modes are interleaved round by round, so drift in machine load hits all alike.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ADAPTERS = ("computing", "python", "shakespeare", "scripture", "chemistry", "geography")
WORDS = ("what is the of a compiler kernel verse element capital city king river function list how does "
         "where who why tell me about explain define").split()


def build(preset: str, root: Path, base: Path | None = None, adapters: Path | None = None):
    """(model, tokenizer, {name: adapter dir}): a trained system, or a synthetic one built under ``root``."""
    import copy

    import torch

    from ..adapters import attach_adapter, save_adapter, scan_adapters
    from ..loader import load_model
    from ..model import ZephyraForCausalLM, preset_config
    from ..tokenizer import build_tokenizer

    if base is not None:
        model, tok = load_model(base)
        return model, tok, scan_adapters(adapters)
    tok = build_tokenizer([" ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(12)) for i in range(3000)],
                          vocab_size=4096)
    torch.manual_seed(0)
    model = ZephyraForCausalLM(preset_config(preset, vocab_size=len(tok))).eval()
    dirs = {}
    for i, name in enumerate(ADAPTERS):
        torch.manual_seed(100 + i)
        peft = attach_adapter(copy.deepcopy(model), "lora", name=name, rank=32, identity_init=False)
        dirs[name] = save_adapter(peft, root / name)
    return model, tok, dirs


def requests(n: int, tokens: int, eos: int, offset: int = 0):
    from ..resolve import Request, SamplingParams

    out = []
    for i in range(offset, offset + n):
        prompt = " ".join(WORDS[(i * 5 + j) % len(WORDS)] for j in range(4 + (i * 3) % 12)) + "?"
        adapter = [*ADAPTERS, "base"][i % (len(ADAPTERS) + 1)]
        out.append(Request(prompt, adapter=adapter, sampling=SamplingParams(max_tokens=tokens,
                                                                            logit_bias={eos: -100.0})))
    return out


def serve_concurrently(engine, reqs) -> dict:
    """Every request arrives at once; they share the batch."""
    t0 = time.perf_counter()
    streams = engine.submit_many(reqs)
    done = [s.result() for s in streams]
    return _summary(done, time.perf_counter() - t0, [c.first_token_s for c in done], [c.total_s for c in done])


def serve_arriving(engine, reqs, gap_s: float) -> dict:
    """Requests arrive one every ``gap_s`` while earlier ones are decoding: each joins the running batch at the
    next step (continuous batching), none waits for the batch to drain."""
    t0 = time.perf_counter()
    streams = []
    for i, r in enumerate(reqs):
        time.sleep(max(0.0, t0 + i * gap_s - time.perf_counter()))
        streams.append(engine.submit(r))
    done = [s.result() for s in streams]
    return _summary(done, time.perf_counter() - t0, [c.first_token_s for c in done], [c.total_s for c in done])


def serve_one_at_a_time(engine, reqs) -> dict:
    """The same requests, all arrived at the start, served one after the other."""
    t0 = time.perf_counter()
    done, ttft, total = [], [], []
    for r in reqs:
        c = engine.run([r])[0]
        done.append(c)
        ttft.append(time.perf_counter() - t0 - c.total_s + c.first_token_s)  # from the common arrival
        total.append(time.perf_counter() - t0)
    return _summary(done, time.perf_counter() - t0, ttft, total)


def _summary(done, seconds: float, ttft: list[float], total: list[float]) -> dict:
    tokens = sum(c.completion_tokens for c in done)
    return {"tokens": tokens, "seconds": seconds, "tok_per_s": tokens / seconds,
            "ttft_median_ms": 1000 * statistics.median(ttft), "ttft_max_ms": 1000 * max(ttft),
            "slowest_vs_median": max(total) / statistics.median(total),
            "complete": all(c.completion_tokens == done[0].completion_tokens for c in done)}


def run(preset: str = "mini", tokens: int = 48, rounds: int = 3, concurrency=(1, 4, 16), threads: int = 2,
        base: Path | None = None, adapters: Path | None = None, progress=print) -> dict:
    import tempfile

    import torch

    from ..resolve import AdapterBank, Engine

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        model, tok, dirs = build(preset, Path(tmp), base, adapters)
        engine = Engine(model, tok, AdapterBank.from_dirs(model, dirs), max_batch=max(concurrency))
        engine.run(requests(4, 4, tok.eos_token_id))  # warm-up
        results: dict = {c: {"concurrent": [], "one_at_a_time": [], "arriving": []} for c in concurrency}
        for r in range(rounds):
            for c in concurrency:
                reqs = requests(c, tokens, tok.eos_token_id, offset=r * 100)
                results[c]["one_at_a_time"].append(serve_one_at_a_time(engine, reqs))
                results[c]["concurrent"].append(serve_concurrently(engine, reqs))
                if c > 1:  # arrivals spread over the time one request takes alone
                    gap = results[c]["one_at_a_time"][-1]["seconds"] / c / c
                    results[c]["arriving"].append(serve_arriving(engine, reqs, gap))
                progress(f"round {r + 1}/{rounds}, {c} requests: "
                         f"{results[c]['concurrent'][-1]['tok_per_s']:.0f} tok/s together, "
                         f"{results[c]['one_at_a_time'][-1]['tok_per_s']:.0f} one at a time")
        engine.close()
    rows = []
    for c in concurrency:
        row = {"requests": c}
        for mode in ("one_at_a_time", "concurrent", "arriving"):
            runs = results[c][mode]
            if not runs:
                continue
            row[mode] = {k: statistics.median(x[k] for x in runs) for k in runs[0] if k != "complete"}
            row[mode]["complete"] = all(x["complete"] for x in runs)
        row["speedup"] = row["concurrent"]["tok_per_s"] / row["one_at_a_time"]["tok_per_s"]
        rows.append(row)
    return {"rows": rows, "preset": preset, "tokens": tokens, "rounds": rounds, "threads": threads,
            "params": sum(p.numel() for p in model.parameters())}


def markdown(result: dict) -> str:
    lines = ["| requests | mode | tok/s | time to first token, median / worst (ms) | slowest / median request | "
             "all complete | tok/s vs one at a time |", "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        for mode, label in (("one_at_a_time", "one at a time"), ("concurrent", "together (one batch)"),
                            ("arriving", "arriving while others decode")):
            if mode not in r:
                continue
            m = r[mode]
            ratio = f"{m['tok_per_s'] / r['one_at_a_time']['tok_per_s']:.2f}x"
            lines.append(f"| {r['requests']} | {label} | {m['tok_per_s']:.0f} | {m['ttft_median_ms']:.0f} / "
                         f"{m['ttft_max_ms']:.0f} | {m['slowest_vs_median']:.2f} | {'yes' if m['complete'] else 'NO'} "
                         f"| {ratio} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="mini")
    p.add_argument("--tokens", type=int, default=48, help="new tokens per request")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--concurrency", default="1,4,16")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--base", type=Path, default=None, help="a trained base (with --adapters) instead of a synthetic one")
    p.add_argument("--adapters", type=Path, default=None)
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    result = run(a.preset, a.tokens, a.rounds, [int(c) for c in a.concurrency.split(",")], a.threads, a.base,
                 a.adapters, progress=lambda s: print(s, file=sys.stderr, flush=True))
    print(f"{a.preset} ({result['params'] / 1e6:.2f}M params), {a.tokens} tokens per request, {a.threads} threads, "
          f"median of {a.rounds} rounds")
    print(markdown(result))
    if a.json:
        from ..io import atomic_write_json

        atomic_write_json(a.json, {**result, "argv": sys.argv[1:]})
        Path(a.json).with_suffix(".md").write_text(markdown(result))


if __name__ == "__main__":
    main()
