"""zephyra.runtime: the thread count from the cores free now, the OpenMP wait policy, the training precision."""

import os
import subprocess
import sys
import time

from zephyra import runtime


def test_threads_follow_the_free_cores():
    assert runtime.choose_threads(3) == 3  # asked for: as asked
    idle = runtime.choose_threads()
    assert 1 <= idle <= runtime.usable_cpus()
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        load = runtime.others_load(0.3)
        busy = runtime.choose_threads(sample_s=0.3)
    finally:
        spinner.kill()
        spinner.wait()
    assert load > 0.5  # the other process's core is seen as taken
    if runtime.usable_cpus() == 2:
        assert busy == 1  # so on 2 cores the work takes the one left
    assert busy <= idle or idle == 1


def test_the_cli_makes_openmp_threads_wait_passively_unless_told_otherwise():
    code = ("import os; from zephyra.runtime import configure_threads; configure_threads(); "
            "print(os.environ.get('OMP_WAIT_POLICY'))")
    env = {k: v for k, v in os.environ.items() if k not in runtime.WAIT_POLICY_VARS}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "PASSIVE"
    out = subprocess.run([sys.executable, "-c", code], env={**env, "OMP_WAIT_POLICY": "ACTIVE"},
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ACTIVE"  # the user's choice stands


def test_auto_precision_is_bf16_only_with_native_bf16(monkeypatch):
    monkeypatch.setattr(runtime, "native_bf16", lambda: False)
    assert runtime.resolve_precision("auto") == "fp32" and runtime.resolve_precision("bf16") == "bf16"
    monkeypatch.setattr(runtime, "native_bf16", lambda: True)
    assert runtime.resolve_precision("auto") == "bf16" and runtime.resolve_precision("fp32") == "fp32"
