"""Fitting the machine: how many threads torch gets, how its OpenMP threads wait, and which precision to train in.

On 2 cores, one other CPU-bound process (a browser, a test run) made adapter training 10-15x slower: torch's
OpenMP (libgomp) threads *spin* at every barrier, so the thread that shares a core with the other process holds
up every op, and the spinning one takes cycles from both. Two measures, benchmarked in docs/benchmarks.md
(``python -m zephyra.bench.busy``):

- ``configure_threads()`` sets ``OMP_WAIT_POLICY=PASSIVE`` (waiting threads sleep at once) unless the user
  chose a policy; libgomp reads it once, when torch loads, so the CLI calls it before importing torch;
- ``choose_threads()`` gives torch the cores that are free now (all of this process's cores minus the load of
  the others, measured over a tenth of a second), never fewer than one.

    from zephyra.runtime import choose_threads
    torch.set_num_threads(choose_threads())       # or an explicit `threads:` in a recipe
"""

from __future__ import annotations

import os
import time

WAIT_POLICY_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def configure_threads() -> None:
    """Make idle OpenMP threads sleep instead of spin, unless the user set a policy already. Must run before torch
    is imported (libgomp reads its settings once); later calls change nothing for this process."""
    if not any(v in os.environ for v in WAIT_POLICY_VARS):
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


def usable_cpus() -> int:
    """The cores this process may run on (its affinity mask, e.g. a container's share)."""
    return len(os.sched_getaffinity(0))


def _cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies over all cores since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _own_ticks() -> int:
    """This process's user + system jiffies (every thread), from /proc/self/stat."""
    with open("/proc/self/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return int(parts[11]) + int(parts[12])


def others_load(sample_s: float = 0.1) -> float:
    """How many cores other processes keep busy right now (0.0 .. cores), measured over ``sample_s``."""
    try:
        busy0, total0 = _cpu_ticks()
        own0 = _own_ticks()
        time.sleep(sample_s)
        busy1, total1 = _cpu_ticks()
        own1 = _own_ticks()
    except (OSError, ValueError, IndexError):  # not Linux: assume an idle machine
        return 0.0
    cores = os.cpu_count() or 1
    if total1 <= total0:
        return 0.0
    share = max(0.0, (busy1 - busy0) - (own1 - own0)) / (total1 - total0)  # of all cores' time
    return share * cores


def choose_threads(requested: int | None = None, sample_s: float = 0.1) -> int:
    """``requested`` when given; else this process's cores minus those other processes keep busy now (rounded
    to the nearest core), at least one."""
    if requested:
        return requested
    return max(1, min(usable_cpus(), round(usable_cpus() - others_load(sample_s))))


# --------------------------------------------------------------------------------------------------------------
# precision
# --------------------------------------------------------------------------------------------------------------

BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # CPUs that compute bf16 matmuls natively


def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AMX or AVX-512 BF16). Without it torch emulates bf16, and a bf16
    training step of the mini preset ran at 339 tok/s against fp32's 6,610 (AMD EPYC, AVX2 only; `zephyra bench
    model --preset mini --dtypes fp32,bf16`, docs/benchmarks.md)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return any(flag in flags for flag in BF16_FLAGS)


def resolve_precision(precision: str) -> str:
    """"auto" -> "bf16" where the CPU computes it natively, else "fp32"; "bf16" and "fp32" as they are."""
    return ("bf16" if native_bf16() else "fp32") if precision == "auto" else precision
