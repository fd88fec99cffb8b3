"""Fair to a busy machine: training and decoding with and without one competing CPU-bound process, under each
thread policy, in one run (each measurement in a fresh process, since OpenMP reads its wait policy once).

    python -m zephyra.bench.busy                       # the table in docs/benchmarks.md
    python -m zephyra.bench.busy --steps 6 --tokens 32 --json runs/bench/busy.json

Policies: ``spin2`` (2 threads, libgomp's default spinning wait: what the code did before), ``passive2`` (2
threads, OMP_WAIT_POLICY=PASSIVE), ``one`` (1 thread), ``auto`` (PASSIVE and zephyra.runtime.choose_threads():
the cores free when the work starts: what the code does now). The competitor is a pure-Python busy loop, one
core's worth of CPU, as a test run or a browser tab would be. Reported: seconds per unit idle and busy, the
slowdown busy / idle, and busy against the best idle time of any policy.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

POLICIES = {"spin2": {"threads": 2, "env": {}},  # libgomp's default: spin a while at each barrier, then sleep
            "passive2": {"threads": 2, "env": {"OMP_WAIT_POLICY": "PASSIVE"}},
            "one": {"threads": 1, "env": {"OMP_WAIT_POLICY": "PASSIVE"}},
            "auto": {"threads": 0, "env": {"OMP_WAIT_POLICY": "PASSIVE"}}}  # 0: choose_threads()

WORKER = r"""
import json, sys, time
import torch
from zephyra.runtime import choose_threads, resolve_precision
workload, threads, steps, tokens = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
threads = threads or choose_threads()
torch.set_num_threads(threads)
torch.manual_seed(0)
from zephyra.model import ZephyraForCausalLM, preset_config
if workload == "train":
    model = ZephyraForCausalLM(preset_config("mini", vocab_size=4096)).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randint(3, 4096, (16, 128))
    bf16 = resolve_precision("auto") == "bf16"  # as the recipes train: bf16 only where the CPU has it natively
    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=x, labels=x).loss
        loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
    for _ in range(2):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    unit = (time.perf_counter() - t0) / steps
else:
    from zephyra.resolve import Engine, Request, SamplingParams
    from zephyra.tokenizer import build_tokenizer
    tok = build_tokenizer([f"word{i} text{i % 7} more words here" for i in range(2000)], vocab_size=600)
    model = ZephyraForCausalLM(preset_config("mini", vocab_size=len(tok))).eval()
    engine = Engine(model, tok, max_batch=8)
    def run():
        reqs = [Request(f"word{i} text", adapter="base", sampling=SamplingParams(max_tokens=tokens,
                logit_bias={tok.eos_token_id: -100})) for i in range(4)]
        return sum(c.completion_tokens for c in engine.run(reqs))
    run()
    t0 = time.perf_counter()
    n = run()
    unit = (time.perf_counter() - t0) / n
    engine.close()
print(json.dumps({"unit_s": unit, "threads": threads}))
"""


# The competing process: a pure-Python loop (one core, as a browser tab), or another torch job with torch's
# defaults (2 threads spinning at every barrier, as a second training run or a test run would be).
COMPETITORS = {
    "python": "while True: pass",
    "torch": "import torch\nx = torch.randn(256, 256)\nwhile True:\n    (x @ x).sum()",
}


def _measure(workload: str, policy: str, busy: str | None, steps: int, tokens: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    clean = dict(env)
    env.update(POLICIES[policy]["env"])
    competitor = subprocess.Popen([sys.executable, "-c", COMPETITORS[busy]], env=clean) if busy else None
    try:
        time.sleep(0.5 if busy else 0)  # let the competitor take its core
        out = subprocess.run([sys.executable, "-c", WORKER, workload, str(POLICIES[policy]["threads"]),
                              str(steps), str(tokens)], env=env, capture_output=True, text=True, timeout=900)
    finally:
        if competitor is not None:
            competitor.kill()
            competitor.wait()
    if out.returncode != 0:
        raise RuntimeError(f"{workload}/{policy}: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(steps: int = 8, tokens: int = 48, repeats: int = 2, policies=tuple(POLICIES), workloads=("train", "decode"),
        competitors=tuple(COMPETITORS), progress=print) -> list[dict]:
    """One row per (workload, policy): seconds per unit idle and beside each competitor (medians of ``repeats``
    fresh processes, the conditions interleaved), and the slowdowns."""
    rows = []
    conditions = [None, *competitors]
    for workload in workloads:
        for policy in policies:
            row = {"workload": workload, "policy": policy, "threads": {}}
            times: dict = {c: [] for c in conditions}
            for _ in range(repeats):
                for c in conditions:
                    m = _measure(workload, policy, c, steps, tokens)
                    times[c].append(m["unit_s"])
                    row["threads"][c or "idle"] = m["threads"]
            for c in conditions:
                row[c or "idle"] = statistics.median(times[c])
                progress(f"{workload} {policy} {c or 'idle'}: {row[c or 'idle']:.4f} s "
                         f"({row['threads'][c or 'idle']} threads)")
            rows.append(row)
    for workload in workloads:
        best = min(r["idle"] for r in rows if r["workload"] == workload)
        for r in rows:
            if r["workload"] == workload:
                r["best_idle"] = best
    return rows


def markdown(rows: list[dict]) -> str:
    unit = {"train": "s/step", "decode": "s/token"}
    busy = [k for k in COMPETITORS if k in rows[0]]
    head = ["workload", "policy", "threads (idle / " + " / ".join(busy) + ")", "idle"]
    head += [f"beside {c}: time, vs own idle, vs best idle" for c in busy]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        threads = " / ".join(str(r["threads"][k]) for k in ["idle", *busy])
        cells = [f"{r['workload']} ({unit[r['workload']]})", r["policy"], threads, f"{r['idle']:.4f}"]
        cells += [f"{r[c]:.4f}, {r[c] / r['idle']:.2f}x, {r[c] / r['best_idle']:.2f}x" for c in busy]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=8, help="training steps timed per measurement")
    p.add_argument("--tokens", type=int, default=48, help="tokens per request (4 requests) per decode measurement")
    p.add_argument("--repeats", type=int, default=2, help="measurements per cell (the median is reported)")
    p.add_argument("--policies", default=",".join(POLICIES))
    p.add_argument("--workloads", default="train,decode")
    p.add_argument("--competitors", default=",".join(COMPETITORS))
    p.add_argument("--json", default=None, help="also write the rows here")
    a = p.parse_args(argv)
    rows = run(a.steps, a.tokens, a.repeats, a.policies.split(","), a.workloads.split(","),
               a.competitors.split(","), progress=lambda s: print(s, file=sys.stderr, flush=True))
    print(markdown(rows))
    if a.json:
        from ..io import atomic_write_json

        atomic_write_json(a.json, {"rows": rows, "argv": sys.argv[1:], "cpus": os.cpu_count()})


if __name__ == "__main__":
    main()
