"""How long ``zephyra --help`` and an argument error take, as whole processes, beside the interpreter's own start
and beside importing torch + transformers + PEFT (what ``--help`` paid before the CLI stopped importing them),
interleaved run by run.

    python -m zephyra.bench.startup --runs 7
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "python -c pass (the interpreter alone)": [sys.executable, "-c", "pass"],
    "zephyra --help": [sys.executable, "-m", "zephyra", "--help"],
    "zephyra generate --bogus (an argument error)": [sys.executable, "-m", "zephyra", "generate", "--bogus"],
    "zephyra train base --help": [sys.executable, "-m", "zephyra", "train", "base", "--help"],
    "import torch, transformers, peft": [sys.executable, "-c", "import torch, transformers, peft"],
}


def run(runs: int = 7) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(runs + 1):  # the first round warms the page cache and is dropped
        for name, argv in COMMANDS.items():
            t0 = time.perf_counter()
            subprocess.run(argv, capture_output=True, timeout=300)
            times[name].append(time.perf_counter() - t0)
    return {name: t[1:] for name, t in times.items()}


def markdown(times: dict[str, list[float]]) -> str:
    floor = statistics.median(times["python -c pass (the interpreter alone)"])
    lines = ["| process | median s | min s | max s | minus the interpreter's start |", "|---|---|---|---|---|"]
    for name, t in times.items():
        med = statistics.median(t)
        lines.append(f"| {name} | {med:.3f} | {min(t):.3f} | {max(t):.3f} | {med - floor:+.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=7)
    a = p.parse_args(argv)
    print(markdown(run(a.runs)))


if __name__ == "__main__":
    main()
