"""Every benchmark the project has, each against its baseline in the same run, one JSON file per benchmark and a
Markdown report with plots.

    zephyra bench all --quick --out runs/bench/quick      # a few minutes on 2 cores: small presets, few steps
    zephyra bench all --out runs/bench/full               # the settings the tables in docs/benchmarks.md use
    zephyra bench report runs/bench/full --docs docs/benchmarks.md   # the docs tables, from the JSON

Each benchmark is one of the modules beside this one, called as a function (``model`` runs its own subprocesses,
so that each architecture's peak memory is its own). Every ``DIR/<bench>.json`` holds the settings, the rows, the
machine, UTC timestamps, the load average before and after, the processes that were busy before it started, and
the peak RSS sampled while it ran. A benchmark that needs artifacts that are not there (the quickstart's trained
system under runs/, the knowledge indexes) is written as ``status: skipped`` with the reason, and the run goes on;
one that fails is written as ``status: failed`` with its error, and the run goes on.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import resource
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

from ..errors import ConfigError

LEVELS = ("tiny", "quick", "full")  # tiny: the tests' seconds-long run; quick: minutes; full: the docs' settings

# Settings per benchmark and level. "full" mirrors the commands in docs/benchmarks.md.
SETTINGS: dict[str, dict[str, dict]] = {
    "model": {
        "tiny": dict(preset="tiny", batch=2, seq=32, vocab=256, steps=2, warmup=1, rounds=1, dtypes=["fp32"],
                     archs=["zephyra", "llama", "gpt2"]),
        "quick": dict(preset="mini", batch=4, seq=128, vocab=4096, steps=3, warmup=1, rounds=1,
                      dtypes=["auto"], archs=["zephyra", "llama", "gpt2"]),  # auto: as the recipes train here
        "full": dict(preset="small", batch=8, seq=256, vocab=8192, steps=8, warmup=2, rounds=3,
                     dtypes=["fp32", "bf16"], archs=["zephyra", "llama", "gpt2"]),
    },
    "components": {
        "tiny": dict(repeats=2, shapes={"loss": dict(N=64, C=32, V=256), "attention": dict(B=2, H=2, T=32, D=16)}),
        "quick": dict(repeats=4, shapes={"loss": dict(N=512, C=128, V=4096),
                                         "attention": dict(B=4, H=4, T=128, D=32)}),
        "full": dict(repeats=15, shapes={}),
    },
    "adapters": {
        "tiny": dict(preset="tiny", batch=2, prompt_len=8, new_tokens=4, adapters=2, rank=4, rounds=1, step_rounds=1,
                     warmup=0, vocab=256, variants=["base", "peft_single", "ours_single", "peft_mixed", "ours_mixed"]),
        "quick": dict(preset="mini", batch=4, prompt_len=16, new_tokens=16, adapters=2, rank=8, rounds=2,
                      step_rounds=1, warmup=1, vocab=4096,
                      variants=["base_hf", "base", "peft_single", "ours_single", "merged_hf", "peft_mixed",
                                "ours_mixed"]),
        "full": dict(preset="small", batch=8, prompt_len=32, new_tokens=64, adapters=4, rank=8, rounds=15,
                     step_rounds=10, warmup=1, vocab=8192),
    },
    "engine": {
        "tiny": dict(preset="tiny", tokens=4, rounds=1, concurrency=[1, 4]),
        "quick": dict(preset="mini", tokens=16, rounds=1, concurrency=[1, 4]),
        "full": dict(preset="mini", tokens=48, rounds=3, concurrency=[1, 4, 16]),
    },
    "router": {
        "tiny": dict(batch_size=4, repeats=3, warmup=1),
        "quick": dict(batch_size=8, repeats=8, warmup=2),
        "full": dict(batch_size=8, repeats=30, warmup=5),
    },
    "retrieval": {
        "tiny": dict(max_questions=5),
        "quick": dict(max_questions=30),
        "full": dict(max_questions=200),
    },
    "serve": {
        "tiny": dict(requests=4, concurrency=2, max_tokens=4),
        "quick": dict(requests=8, concurrency=4, max_tokens=8),
        "full": dict(requests=48, concurrency=16, max_tokens=32),
    },
    "precision": {
        "tiny": dict(batches=[1], prompt_len=8, new_tokens=4, rounds=1, max_tokens=256, seq=32),
        "quick": dict(batches=[1, 4], prompt_len=16, new_tokens=16, rounds=1, max_tokens=2048, seq=128),
        "full": dict(batches=[1, 8], prompt_len=32, new_tokens=48, rounds=5, max_tokens=8192, seq=128),
    },
    "startup": {
        "tiny": dict(runs=1),
        "quick": dict(runs=1),
        "full": dict(runs=7),
    },
}
BENCHES = tuple(SETTINGS)

# What each benchmark measures and against what: the report's and the docs' description of it.
ABOUT: dict[str, dict[str, str]] = {
    "model": {"title": "Training step", "baseline": "HF Llama and GPT-2 of the same size, same process",
              "measures": "training-step tokens/s (forward + backward + AdamW) and peak RSS per architecture",
              "module": "zephyra.bench.model"},
    "components": {"title": "Loss and attention kernels", "baseline": "plain logits + cross-entropy; SDPA",
                   "measures": "forward + backward ms of the fused loss and the matmul attention",
                   "module": "zephyra.bench.components"},
    "adapters": {"title": "Multi-adapter decoding", "baseline": "PEFT (single, mixed adapter_names), the base, "
                 "a merged adapter", "measures": "generation tokens/s and decode-step ms, paired ratios",
                 "module": "zephyra.bench.adapters"},
    "engine": {"title": "Streaming engine", "baseline": "the same requests served one at a time",
               "measures": "tokens/s and time to first token at 1, 4, 16 concurrent mixed-adapter requests",
               "module": "zephyra.bench.engine"},
    "router": {"title": "Routing cost", "baseline": "the same prefill without the router head",
               "measures": "prefill ms with and without the in-model head; each saved router's ms per prompt",
               "module": "zephyra.router.bench"},
    "retrieval": {"title": "Retrieval", "baseline": "sparse (BM25) search against dense and hybrid",
                  "measures": "recall@k, MRR and ms per query on held-out questions",
                  "module": "zephyra.evaluation.retrieval"},
    "serve": {"title": "HTTP server under load", "baseline": "the same requests from one client",
              "measures": "requests/s, tokens/s, time to first token and end-to-end p50/p99 over loopback",
              "module": "zephyra.bench.serve_load"},
    "precision": {"title": "Inference precision", "baseline": "the same base in fp32",
                  "measures": "greedy decode tokens/s, weight size, held-out perplexity and next-token agreement "
                              "of the base in fp32, bf16 and dynamic int8", "module": "zephyra.bench.precision"},
    "startup": {"title": "CLI start", "baseline": "the interpreter alone; importing torch + transformers + PEFT",
                "measures": "wall seconds of whole processes", "module": "zephyra.bench.startup"},
}


class Skip(Exception):
    """A benchmark that cannot run here (an artifact it needs is absent): recorded with this reason."""


@dataclass
class BenchAllConfig:
    level: str = "full"  # tiny | quick | full (SETTINGS)
    only: list[str] | None = None  # a subset of BENCHES; None: every one
    threads: int = 2
    device: str = "cpu"  # the training-step benchmark's device (cuda where torch sees a GPU); the others run on CPU
    base: Path = Path("runs/phase2/final")  # the quickstart's trained system, for serve / router / retrieval
    adapters: Path = Path("runs/adapters")
    router: Path = Path("runs/router/active")
    routers: Path = Path("runs/router")  # every saved router under it is timed by the router benchmark
    index: Path = Path("runs/index")
    data: Path = Path("runs/data")
    overrides: dict = field(default_factory=dict)  # bench -> settings that win over SETTINGS[bench][level]

    def __post_init__(self):
        if self.level not in LEVELS:
            raise ConfigError(f"level must be one of {', '.join(LEVELS)}, got {self.level!r}")
        unknown = sorted(set(self.only or []) - set(BENCHES))
        if unknown:
            raise ConfigError(f"unknown benchmark(s) {unknown}; known: {', '.join(BENCHES)}")
        if self.device not in ("cpu", "cuda"):
            raise ConfigError(f"device must be cpu or cuda, got {self.device!r}")
        for k in ("base", "adapters", "router", "routers", "index", "data"):
            setattr(self, k, Path(getattr(self, k)))

    def settings(self, bench: str) -> dict:
        s = {**SETTINGS[bench][self.level], "threads": self.threads, **self.overrides.get(bench, {})}
        if bench == "model":
            s["device"] = self.device
        if "auto" in s.get("dtypes", []):  # bf16 where the CPU has it natively, else fp32 (runtime.py)
            from ..runtime import resolve_precision

            s["dtypes"] = list(dict.fromkeys(resolve_precision(d) for d in s["dtypes"]))
        return s


# --- the machine and its load ------------------------------------------------------------------------------------

def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine() -> dict:
    """CPU model, cores, memory, OS, Python and the versions of the libraries the benchmarks exercise."""
    cpu, flags = platform.processor() or platform.machine(), ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu == (platform.processor() or platform.machine()):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = line
    except OSError:
        pass
    mem = None
    try:
        mem = int(next(x for x in Path("/proc/meminfo").read_text().splitlines()
                       if x.startswith("MemTotal")).split()[1]) / 1024 / 1024
    except (OSError, StopIteration):
        pass
    libs = {d: _version(d) for d in ("torch", "transformers", "peft", "numpy", "tokenizers", "sentence-transformers",
                                     "fastapi", "uvicorn", "matplotlib")}
    return {"cpu": cpu, "cores": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)),
            "memory_gib": round(mem, 1) if mem else None, "avx512_bf16": "avx512_bf16" in flags,
            "amx": "amx_bf16" in flags, "os": platform.platform(), "python": platform.python_version(),
            "libraries": libs}


def load() -> dict:
    """The load averages and the other processes above 20% CPU: the rule of ../shared/tools/idle-check (idle: the
    1-minute load at most 0.5 and no such process)."""
    one, five, fifteen = os.getloadavg()
    me = {os.getpid()}
    try:
        out = subprocess.run(["ps", "-eo", "pid,ppid,pcpu,comm", "--sort=-pcpu", "--no-headers"], capture_output=True,
                             text=True, timeout=10).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        out = []
    busy = []
    for line in out:
        pid, ppid, pcpu, comm = (line.split(None, 3) + [""] * 4)[:4]
        if pid.isdigit() and int(pid) not in me and int(ppid) not in me and float(pcpu or 0) > 20:
            busy.append({"pid": int(pid), "pcpu": float(pcpu), "command": comm.strip()})
    return {"load1": one, "load5": five, "load15": fifteen, "busy": busy[:5], "idle": one <= 0.5 and not busy}


class RSSSampler:
    """Samples this process's resident memory every ``interval`` s while a benchmark runs (ru_maxrss would only
    give the process's peak since it started, not the benchmark's)."""

    def __init__(self, interval: float = 0.05):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()

    @staticmethod
    def rss_mib() -> float:
        try:
            return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        except (OSError, ValueError):
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def _loop(self):
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.rss_mib())

    def __enter__(self):
        self.start_mib = self.peak = self.rss_mib()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss_mib())


# --- the benchmarks ----------------------------------------------------------------------------------------------
# Each takes (its settings, the run's config, progress) and returns {"rows": [...], "baseline": str, ...}.

def _model(s: dict, cfg: BenchAllConfig, progress) -> dict:
    from .model import ModelBenchConfig, run

    rows = run(ModelBenchConfig(**s), progress=progress)
    return {"rows": rows, "baseline": "llama"}


def _components(s: dict, cfg: BenchAllConfig, progress) -> dict:
    from .components import run

    return {"rows": run(s["threads"], s["repeats"], s["shapes"]), "baseline": "the first case of each group"}


def _adapters(s: dict, cfg: BenchAllConfig, progress) -> dict:
    from .adapters import AdapterBenchConfig, run

    result = run(AdapterBenchConfig(**s), progress=progress)
    result.pop("config", None)
    result.pop("machine", None)
    return {**result, "baseline": "PEFT and the base model"}


def _engine(s: dict, cfg: BenchAllConfig, progress) -> dict:
    from .engine import run

    result = run(s["preset"], s["tokens"], s["rounds"], s["concurrency"], s["threads"], progress=progress)
    return {**result, "baseline": "one_at_a_time"}


def _synthetic_base():
    """A random-weight ``mini`` Zephyra and a small tokenizer: routing cost does not depend on trained weights."""
    import torch

    from ..model import ZephyraForCausalLM, preset_config
    from ..tokenizer import build_tokenizer
    from .engine import WORDS

    tok = build_tokenizer([" ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(12)) for i in range(2000)],
                          vocab_size=1024)
    torch.manual_seed(0)
    return ZephyraForCausalLM(preset_config("mini", vocab_size=len(tok))).eval(), tok


def _router(s: dict, cfg: BenchAllConfig, progress) -> dict:
    import torch

    from ..router.bench import bench_router_overhead
    from .serve_load import PROMPTS

    torch.set_num_threads(s["threads"])
    routers, notes = {}, []
    if (cfg.base / "config.json").is_file():
        from ..loader import load_model
        from ..router.artifact import load_router

        model, tok = load_model(cfg.base)
        model_name = str(cfg.base)
        saved = sorted(p for p in cfg.routers.iterdir() if (p / "router.json").is_file()) \
            if cfg.routers.is_dir() else []
        for d in saved:
            try:
                routers[d.name] = load_router(d, model=model, tokenizer=tok, index_root=cfg.index)
            except Exception as e:  # a router that does not load here is noted, the others still timed
                notes.append(f"router {d}: not loaded ({type(e).__name__}: {str(e)[:120]})")
    else:
        model, tok = _synthetic_base()
        model_name = "random-weight mini (no trained base at " + str(cfg.base) + ")"
    prompts = (PROMPTS * 4)[: max(s["batch_size"], len(PROMPTS))]
    r = bench_router_overhead(model, tok, prompts, batch_size=s["batch_size"], repeats=s["repeats"],
                              warmup=s["warmup"], routers=routers)
    return {**r.to_dict(), "model": model_name, "notes": notes, "baseline": "prefill, no router"}


def _retrieval(s: dict, cfg: BenchAllConfig, progress) -> dict:
    if not cfg.index.is_dir() or not any(cfg.index.iterdir()):
        raise Skip(f"no knowledge indexes at {cfg.index} (zephyra index build, after the quickstart)")
    if not (cfg.data / "domains").is_dir():
        raise Skip(f"no held-out questions at {cfg.data}/domains (zephyra data build)")
    from ..evaluation.retrieval import evaluate_retrieval

    result = evaluate_retrieval(cfg.index, cfg.data, max_questions=s["max_questions"])
    rows = [{"mode": mode, **m} for mode, m in result["overall"].items()]
    return {"rows": rows, "domains": result["domains"], "baseline": "sparse"}


def _serve(s: dict, cfg: BenchAllConfig, progress) -> dict:
    if not (cfg.base / "config.json").is_file():
        raise Skip(f"no trained system at {cfg.base} (run zephyra quickstart first)")
    import torch

    from .serve_load import run

    torch.set_num_threads(s["threads"])
    rows, models = run(cfg.base, cfg.adapters if cfg.adapters.is_dir() else None,
                       cfg.router if cfg.router.is_dir() else None, requests=s["requests"],
                       concurrency=s["concurrency"], max_tokens=s["max_tokens"])
    return {"rows": rows, "models": models, "baseline": "concurrency 1"}


def _precision(s: dict, cfg: BenchAllConfig, progress) -> dict:
    from .precision import run

    result = run(cfg.base, cfg.data, s["batches"], s["prompt_len"], s["new_tokens"], s["rounds"], s["threads"],
                 s["max_tokens"], s["seq"], progress=progress)
    return {**result, "baseline": "fp32"}


def _startup(s: dict, cfg: BenchAllConfig, progress) -> dict:
    import statistics

    from .startup import run

    times = run(s["runs"])
    floor = statistics.median(times["python -c pass (the interpreter alone)"])
    rows = [{"process": k, "median_s": statistics.median(t), "min_s": min(t), "max_s": max(t),
             "minus_interpreter_s": statistics.median(t) - floor} for k, t in times.items()]
    return {"rows": rows, "baseline": "python -c pass"}


RUNNERS: dict[str, Callable[[dict, BenchAllConfig, Callable], dict]] = {
    "model": _model, "components": _components, "adapters": _adapters, "engine": _engine, "router": _router,
    "retrieval": _retrieval, "serve": _serve, "precision": _precision, "startup": _startup}


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def run_one(name: str, cfg: BenchAllConfig, mach: dict, progress=None) -> dict:
    """One benchmark as a result dict (what ``DIR/<name>.json`` holds), whether it ran, was skipped or failed."""
    import torch

    settings = cfg.settings(name)
    progress = progress or (lambda s: None)
    before, started, t0 = load(), _now(), time.perf_counter()
    threads = torch.get_num_threads()
    status, reason, body = "ok", None, {}
    with RSSSampler() as rss:
        try:
            body = RUNNERS[name](settings, cfg, lambda m: progress(f"[{name}] {m}"))
        except Skip as e:
            status, reason = "skipped", str(e)
        except Exception as e:  # recorded, and the other benchmarks still run
            status, reason = "failed", f"{type(e).__name__}: {e}"
            body = {"traceback": traceback.format_exc(limit=8)}
        finally:
            torch.set_num_threads(threads)
    return {"bench": name, "status": status, "reason": reason, "level": cfg.level, "about": ABOUT[name],
            "config": settings, **body, "machine": mach, "started": started, "finished": _now(),
            "seconds": time.perf_counter() - t0, "load_before": before, "load_after": load(),
            "rss_start_mib": rss.start_mib, "peak_rss_mib": rss.peak,
            "children_peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


def run_all(cfg: BenchAllConfig, out: str | os.PathLike, progress=None) -> dict[str, dict]:
    """Every benchmark of ``cfg`` in turn; writes ``out/<bench>.json`` after each, then ``out/report.md``."""
    from ..io import atomic_write_json
    from .report import write_report

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    mach, results = machine(), {}
    t0 = time.perf_counter()
    for name in cfg.only or BENCHES:
        if progress:
            progress(f"[{name}] starting ({ABOUT[name]['title']}, {cfg.level})")
        results[name] = run_one(name, cfg, mach, progress)
        atomic_write_json(out / f"{name}.json", results[name])
        if progress:
            r = results[name]
            progress(f"[{name}] {r['status']}{': ' + r['reason'] if r['reason'] else ''} ({r['seconds']:.0f} s)")
    run_info = {"level": cfg.level, "benches": list(results), "config": {k: str(v) if isinstance(v, Path) else v
                                                                          for k, v in asdict(cfg).items()},
                "machine": mach, "seconds": time.perf_counter() - t0, "finished": _now(), "argv": sys.argv[1:]}
    atomic_write_json(out / "run.json", run_info)
    write_report(out)
    return results
