"""The report of ``zephyra bench all`` and the docs tables, both generated from its JSON files (nothing typed).

    zephyra bench report runs/bench/full                               # (re)writes runs/bench/full/report.md
    zephyra bench report runs/bench/full --docs docs/benchmarks.md     # and the tables between the docs' markers

In a docs file, ``<!-- bench:model -->`` ... ``<!-- /bench:model -->`` marks where the ``model`` table goes;
only what lies between a pair of markers is replaced, the prose around them is left as it is.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path

from ..errors import DataError

ORDER = ("model", "components", "adapters", "engine", "router", "retrieval", "serve", "precision", "startup", "base")


def load_results(d: str | os.PathLike) -> dict[str, dict]:
    """{bench: result} of every ``<bench>.json`` in ``d`` that ``zephyra bench all`` wrote."""
    d = Path(d)
    if not d.is_dir():
        raise DataError(f"{d}: no such results directory (zephyra bench all --out {d})")
    out = {}
    for p in sorted(d.glob("*.json")):
        try:
            r = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise DataError(f"{p}: not JSON ({e.msg} at line {e.lineno})") from None
        if isinstance(r, dict) and "bench" in r and "status" in r:
            out[r["bench"]] = r
    if not out:
        raise DataError(f"{d}: no benchmark results (*.json from zephyra bench all)")
    return dict(sorted(out.items(), key=lambda kv: ORDER.index(kv[0]) if kv[0] in ORDER else len(ORDER)))


# --- one table per benchmark -------------------------------------------------------------------------------------

def _t(head: list[str], rows: list[list]) -> str:
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] +
                     ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


def _model(r: dict) -> str:
    rows = sorted(r["rows"], key=lambda x: (x["dtype"], ["zephyra", "llama", "gpt2"].index(x["arch"])
                                            if x["arch"] in ("zephyra", "llama", "gpt2") else 9))
    return _t(["dtype", "arch", "params (non-emb)", "tokens/s", "vs Llama", "peak RSS MiB", "memory vs Llama"],
              [[x["dtype"], x["arch"], f"{x['params_non_embedding']:,}", f"{x['tokens_per_s']:,.0f}",
                f"{x['speed_vs_llama']:.2f}x", f"{x['peak_rss_mib']:,.0f}", f"{x['memory_vs_llama']:.2f}x"]
               for x in rows])


def _components(r: dict) -> str:
    return _t(["case", "ms (fwd + bwd)", "speed vs the plain case"],
              [[x["case"], f"{x['ms']:.2f}", f"{x['speed_vs_baseline']:.2f}x"] for x in r["rows"]])


def _adapters(r: dict) -> str:
    out = _t(["variant", "tokens/s (wall)", "tokens/s (CPU time)"],
             [[x["label"], f"{x['tokens_per_s']:,.0f}", f"{x['tokens_per_s_cpu']:,.0f}"] for x in r["rows"]])
    out += "\n\n" + _t(["ratio (generation)", "wall, median of paired", "CPU time, median of paired", "target"],
                       [[q["ratio"], f"{q['wall']['paired']:.2f}x", f"{q['cpu']['paired']:.2f}x",
                         "" if q["target"] is None else (f">= {q['target']}: " +
                                                         ("met" if q["wall"]["paired"] >= q["target"] else "not met"))]
                        for q in r["ratios"]])
    if r.get("step_ratios"):
        out += "\n\n" + _t(["ratio (decode step)", "median of paired", "of medians"],
                           [[q["ratio"], f"{q['paired']:.2f}x", f"{q['of_medians']:.2f}x"] for q in r["step_ratios"]])
    return out


def _engine(r: dict) -> str:
    rows = []
    for x in r["rows"]:
        for mode in ("one_at_a_time", "concurrent", "arriving"):
            if mode in x:
                m = x[mode]
                rows.append([x["requests"], mode.replace("_", " "), f"{m['tok_per_s']:.0f}",
                             f"{m['ttft_median_ms']:.0f} / {m['ttft_max_ms']:.0f}", f"{m['slowest_vs_median']:.2f}",
                             f"{m['tok_per_s'] / x['one_at_a_time']['tok_per_s']:.2f}x"])
    return _t(["requests", "mode", "tok/s", "TTFT median / worst ms", "slowest / median", "vs one at a time"], rows)


def _router(r: dict) -> str:
    out = _t(["what", "ms/batch", "ms/prompt", "vs prefill"],
             [[x["what"], f"{x['ms_per_batch']:.2f}", f"{x['ms_per_prompt']:.3f}", x["vs_prefill"]] for x in r["rows"]])
    return out + f"\n\nModel: {r['model']}; batch {r['batch_size']} x {r['prompt_tokens']} tokens, fastest of " \
                 f"{r['repeats']} interleaved repeats." + "".join(f"\n{n}" for n in r.get("notes", []))


def _retrieval(r: dict) -> str:
    ks = sorted(int(k.split("@")[1]) for k in r["rows"][0] if k.startswith("recall@"))
    return _t(["mode", *[f"recall@{k}" for k in ks], "MRR", "ms/query"],
              [[x["mode"], *[f"{x[f'recall@{k}']:.3f}" for k in ks], f"{x['mrr']:.3f}", f"{x['ms_per_query']:.2f}"]
               for x in r["rows"]])


def _serve(r: dict) -> str:
    out = _t(["clients", "requests", "answered", "429", "other", "req/s", "tokens/s", "TTFT p50 s", "TTFT p99 s",
              "end-to-end p50 s", "p99 s"],
             [[x["concurrency"], x["requests"], x["answered"], x["refused_429"], x["other"],
               f"{x['requests_per_s']:.2f}", f"{x['chunks_per_s']:.1f}", f"{x['ttft_p50']:.3f}", f"{x['ttft_p99']:.3f}",
               f"{x['total_p50']:.2f}", f"{x['total_p99']:.2f}"] for x in r["rows"]])
    if len(r["rows"]) == 2:
        a, b = r["rows"]
        out += f"\n\nThroughput {b['requests_per_s'] / a['requests_per_s']:.2f}x one client."
    return out


def _precision(r: dict) -> str:
    def q(v, fmt):
        return "n/a" if v is None else format(v, fmt)

    return _t(["variant", "batch", "decode tokens/s", "vs fp32", "weights MiB", "size vs fp32", "held-out perplexity",
               "next-token agreement with fp32"],
              [[x["variant"], x["batch"], f"{x['tokens_per_s']:,.0f}", f"{x['speed_vs_fp32']:.2f}x",
                f"{x['weights_mib']:.1f}", f"{x['size_vs_fp32']:.2f}x", q(x["perplexity"], ".2f"),
                q(x["agreement_with_fp32"], ".3f")] for x in r["rows"]]) + f"\n\nModel: {r['model']}."


def _startup(r: dict) -> str:
    return _t(["process", "median s", "min s", "max s", "minus the interpreter"],
              [[x["process"], f"{x['median_s']:.3f}", f"{x['min_s']:.3f}", f"{x['max_s']:.3f}",
                f"{x['minus_interpreter_s']:+.3f}"] for x in r["rows"]])


def _base(r: dict) -> str:
    from .base_choice import table as base_table

    c = r["choice"]
    return f"{base_table(r)}\nRule: {c['rule']}. **Chosen: {c['chosen']}.**"


TABLES: dict[str, Callable[[dict], str]] = {"model": _model, "components": _components, "adapters": _adapters,
                                            "engine": _engine, "router": _router, "retrieval": _retrieval,
                                            "serve": _serve, "precision": _precision, "startup": _startup,
                                            "base": _base}


def provenance(r: dict) -> str:
    m, lb, la = r["machine"], r["load_before"], r["load_after"]
    busy = ", ".join(f"{b['command']} {b['pcpu']:.0f}%" for b in lb.get("busy", [])) or "none above 20% CPU"
    return (f"`{r['about']['module']}` at level `{r['level']}`, {r['started']}, {r['seconds']:.0f} s; {m['cpu']}, "
            f"{m['cores']} cores, torch {m['libraries'].get('torch')}; load {lb['load1']:.2f} before, "
            f"{la['load1']:.2f} after ({'idle' if lb['idle'] else 'NOT idle'} at the start; other processes: {busy}); "
            f"peak RSS {r['peak_rss_mib']:,.0f} MiB.")


def table(r: dict) -> str:
    """The benchmark's table, or the line saying why there is none."""
    if r["status"] != "ok":
        return f"*{r['status']}*: {r['reason']}"
    return TABLES[r["bench"]](r)


# --- plots -------------------------------------------------------------------------------------------------------

def _bars(path: Path, title: str, labels: list[str], series: dict[str, list[float]], ylabel: str,
          log: bool = False) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import atomic_write_figure

    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    width = 0.8 / max(len(series), 1)
    for i, (name, values) in enumerate(series.items()):
        ax.bar([j + i * width for j in range(len(labels))], values, width, label=name)
    ax.set_xticks([j + width * (len(series) - 1) / 2 for j in range(len(labels))], labels, rotation=20, ha="right",
                  fontsize=7)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    if log:
        ax.set_yscale("log")
    if len(series) > 1:
        ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_write_figure(fig, path)
    plt.close(fig)
    return path


def plot(r: dict, d: Path) -> Path | None:
    """A figure of the benchmark's main comparison, ``d/<bench>.png``; None for those without one."""
    if r["status"] != "ok":
        return None
    name, rows, path = r["bench"], r.get("rows", []), d / f"{r['bench']}.png"
    if name == "base":  # zephyra bench base draws its own (quality against training time)
        return path if path.is_file() else None
    if name == "model":
        archs = list(dict.fromkeys(x["arch"] for x in rows))
        dtypes = list(dict.fromkeys(x["dtype"] for x in rows))
        val = {(x["dtype"], x["arch"]): x["tokens_per_s"] for x in rows}
        return _bars(path, "Training step (higher is better)", dtypes,
                     {a: [val.get((t, a), 0) for t in dtypes] for a in archs}, "tokens/s")
    if name == "adapters":
        return _bars(path, "Generation, prefill included", [x["variant"] for x in rows],
                     {"wall": [x["tokens_per_s"] for x in rows], "CPU time": [x["tokens_per_s_cpu"] for x in rows]},
                     "tokens/s")
    if name == "engine":
        modes = ["one_at_a_time", "concurrent"]
        return _bars(path, "Streaming engine", [f"{x['requests']} requests" for x in rows],
                     {m.replace("_", " "): [x[m]["tok_per_s"] for x in rows] for m in modes}, "tokens/s")
    if name == "retrieval":
        return _bars(path, "Retrieval on held-out questions", [x["mode"] for x in rows],
                     {k: [x[k] for x in rows] for k in rows[0] if k.startswith("recall@")}, "recall")
    if name == "serve":
        return _bars(path, "Server over loopback", [f"{x['concurrency']} clients" for x in rows],
                     {"TTFT p50": [x["ttft_p50"] for x in rows], "TTFT p99": [x["ttft_p99"] for x in rows],
                      "end-to-end p50": [x["total_p50"] for x in rows]}, "seconds")
    if name == "router":
        return _bars(path, "Routing cost per prompt", [x["what"][:40] for x in rows],
                     {"ms/prompt": [x["ms_per_prompt"] for x in rows]}, "ms", log=True)
    if name == "precision":
        batches = list(dict.fromkeys(x["batch"] for x in rows))
        val = {(x["variant"], x["batch"]): x["tokens_per_s"] for x in rows}
        return _bars(path, "Greedy decode by weight precision", [f"batch {b}" for b in batches],
                     {v: [val[(v, b)] for b in batches] for v in dict.fromkeys(x["variant"] for x in rows)},
                     "tokens/s")
    if name == "components":
        return _bars(path, "Loss and attention, forward + backward", [x["case"] for x in rows],
                     {"ms": [x["ms"] for x in rows]}, "ms")
    return None


# --- the report and the docs -------------------------------------------------------------------------------------

def _machine_md(m: dict) -> str:
    libs = ", ".join(f"{k} {v}" for k, v in m["libraries"].items() if v)
    return (f"- CPU: {m['cpu']}, {m['cores']} cores ({m['affinity']} usable), {m['memory_gib']} GiB; "
            f"AVX-512 bf16: {m['avx512_bf16']}, AMX: {m['amx']}\n- {m['os']}, Python {m['python']}\n- {libs}")


def render(d: str | os.PathLike, plots: bool = True) -> str:
    d = Path(d)
    results = load_results(d)
    first = next(iter(results.values()))
    lines = [f"# Benchmarks: `zephyra bench all` at level `{first['level']}`", "",
             "Generated from the JSON files beside this report by `zephyra bench report`; each benchmark ran "
             "against its baseline in the same run.", "", "## Machine", "", _machine_md(first["machine"]), "",
             "## Summary", "",
             _t(["benchmark", "status", "baseline", "seconds", "load before / after", "idle at start", "peak RSS MiB"],
                [[r["about"]["title"], r["status"] + (f" ({r['reason'][:80]})" if r["reason"] else ""),
                  r["about"]["baseline"], f"{r['seconds']:.0f}",
                  f"{r['load_before']['load1']:.2f} / {r['load_after']['load1']:.2f}",
                  "yes" if r["load_before"]["idle"] else "no", f"{r['peak_rss_mib']:,.0f}"] for r in results.values()]),
             "", "Peak RSS: this process's resident memory sampled every 50 ms while the benchmark ran (the "
             "training-step benchmark measures each architecture in its own process: its table has their peaks).",
             ""]
    for name, r in results.items():
        lines += [f"## {r['about']['title']} (`{name}`)", "", f"Measures: {r['about']['measures']}. Baseline: "
                  f"{r['about']['baseline']}.", "", provenance(r), "", table(r), ""]
        png = plot(r, d) if plots else None
        if png:
            lines += [f"![{name}]({png.name})", ""]
    return "\n".join(lines)


def write_report(d: str | os.PathLike, plots: bool = True) -> Path:
    from ..io import atomic_write_text

    return atomic_write_text(Path(d) / "report.md", render(d, plots))


MARKER = re.compile(r"(<!-- bench:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /bench:(?P=name) -->)", re.S)


def update_docs(doc: str | os.PathLike, d: str | os.PathLike) -> list[str]:
    """Replaces what lies between each ``<!-- bench:NAME -->`` / ``<!-- /bench:NAME -->`` pair of ``doc`` with
    NAME's table from the results in ``d`` (with its provenance line); returns the names replaced. Markers whose
    benchmark has no result there are left as they are."""
    from ..io import atomic_write_text

    doc = Path(doc)
    if not doc.is_file():
        raise DataError(f"{doc}: no such file")
    text, results, done = doc.read_text(encoding="utf-8"), load_results(d), []
    opened = set(re.findall(r"<!-- bench:([\w-]+) -->", text))
    closed = set(re.findall(r"<!-- /bench:([\w-]+) -->", text))
    if opened != closed:
        raise DataError(f"{doc}: unpaired bench markers: {sorted(opened ^ closed)}")

    def sub(m: re.Match) -> str:
        r = results.get(m["name"])
        if r is None:
            return m.group(0)
        done.append(m["name"])
        return f"{m.group(1)}{table(r)}\n\n{provenance(r)}\n{m.group(4)}"

    new = MARKER.sub(sub, text)
    if new != text:
        atomic_write_text(doc, new)
    return done
