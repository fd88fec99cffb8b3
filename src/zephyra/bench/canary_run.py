"""A scripted canary run on a trained system: push a stable and a candidate version of one adapter into a fresh
registry, gate the candidate on its domain's held-out text, give it a share of the traffic, serve with live
rules, send traffic whose answers from the candidate are rated ``--feedback`` (stable's always up), and print
the deployment log and the canary's metrics: with ``down`` the rules roll it back, with ``up`` they promote it.

    python -m zephyra.bench.canary_run --name chemistry --stable runs/adapters/chemistry \\
        --candidate runs/isolation/chemistry-replay --margin 0.10 --percent 20 --feedback down
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--name", required=True)
    p.add_argument("--stable", type=Path, required=True)
    p.add_argument("--candidate", type=Path, required=True)
    p.add_argument("--percent", type=float, default=20.0)
    p.add_argument("--margin", type=float, default=0.05)
    p.add_argument("--feedback", choices=("up", "down"), default="down")
    p.add_argument("--base", type=Path, default=Path("runs/phase2/final"))
    p.add_argument("--router", type=Path, default=Path("runs/router/active"))
    p.add_argument("--data", type=Path, default=Path("runs/data"))
    p.add_argument("--registry", type=Path, help="default: a fresh temporary directory")
    p.add_argument("--seconds", type=float, default=120, help="give up after this long")
    a = p.parse_args(argv)

    import httpx

    from ..evaluation.gate import gate_and_canary
    from ..registry import Registry
    from ..resolve.system import load_system
    from ..serve.app import create_app
    from ..serve.canary import RulesConfig
    from ..serve.deploy import registry_adapters

    reg = Registry(a.registry or Path(tempfile.mkdtemp(prefix="zephyra-canary-")) / "registry")
    stable = reg.push(a.stable, a.name, why="the serving version")
    candidate = reg.push(a.candidate, a.name, why="a new version")
    print(f"$ zephyra registry push {a.stable} --name {a.name}    -> {a.name}@{stable} (stable)")
    print(f"$ zephyra registry push {a.candidate} --name {a.name}    -> {a.name}@{candidate}")
    result = gate_and_canary(reg, a.name, candidate, a.percent, a.base, a.data, margin=a.margin)
    print(f"$ zephyra eval gate {a.name}@{candidate} --percent {a.percent:g} --margin {a.margin:g}\n{result.line()}")
    if not result.passed:
        _print_log(reg, a.name)
        return
    rules = RulesConfig(interval=5, count=3, failure_limit=0, inconclusive_limit=10, min_requests=3,
                        rules=[{"metric": "error_rate", "max": 0.05}, {"metric": "thumbs_down_rate", "max": 0.3}])
    print(f"$ zephyra serve --registry {reg.root} --rules rules.yaml    # {rules}")
    dirs, canaries = registry_adapters(reg)
    system = load_system(a.base, None, a.router if a.router.exists() else None, adapter_dirs=dirs)
    app = create_app(system, canaries=canaries, registry=reg, rules=rules, max_tokens=16)

    from ..serve.app import serve_in_thread

    live = serve_in_thread(app)
    url = live.__enter__()
    questions = [f"What is {w}?" for w in ("sodium", "argon", "benzene", "ethanol", "iron", "an isotope", "neon",
                                           "ozone", "methane", "a catalyst")]
    served = {"stable": 0, "canary": 0}
    t0, i = time.monotonic(), 0
    try:
        while reg.aliases(a.name).canary is not None and time.monotonic() - t0 < a.seconds:
            r = httpx.post(url + "/v1/chat/completions", timeout=120, json={
                "model": a.name, "user": f"user-{i}", "max_tokens": 8,
                "messages": [{"role": "user", "content": questions[i % len(questions)]}]})
            z = r.json()["zephyra"]
            arm = z.get("canary", "stable")
            served[arm] += 1
            httpx.post(url + "/v1/feedback", json={"request_id": r.headers["x-request-id"],
                                                   "rating": a.feedback if arm == "canary" else "up"})
            i += 1
        print(f"{i} requests in {time.monotonic() - t0:.0f} s: {served['stable']} stable, {served['canary']} canary "
              f"(its answers rated {a.feedback}, stable's up)")
        metrics = httpx.get(url + "/metrics").text
        print("\n".join(line for line in metrics.splitlines()
                        if line.startswith(("zephyra_canary_assignments_total", "zephyra_feedback_total"))))
    finally:
        live.__exit__(None, None, None)
    _print_log(reg, a.name)


def _print_log(reg, name: str) -> None:
    print(f"$ zephyra registry log {name}")
    for e in reg.log(name):
        print(f"{e['time']}  {e['who']:<5} {e['action']:<13} {e['from'] or '-'} -> {e['to']}"
              + (f"  ({e['why'][:160]})" if e.get("why") else ""))


if __name__ == "__main__":
    main()
