"""``zephyra paper``: the IEEE-format paper, written from the results JSON and built offline with latexmk.

    zephyra paper --out runs/paper --results runs/bench/all          # --runs runs (the default)

Writes ``OUT/paper.tex`` (the shipped template), ``OUT/refs.bib``, ``OUT/macros.tex`` (one ``\\newcommand`` per
number the prose quotes, from the JSON), ``OUT/tables/*.tex`` and ``OUT/fig/*.png`` (from the JSON),
``OUT/missing.json`` (each source that was absent, and the command that writes it), then ``OUT/paper.pdf``
with ``latexmk -pdf``. No number in the paper is typed: the template refers to macros, tables and figures only,
and a number whose source is missing prints as "missing: run ...".
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from ..errors import ArtifactError
from .sources import Results

# --- LaTeX text --------------------------------------------------------------------------------------------------

_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
            "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}",
            ">": r"\textgreater{}", "×": r"$\times$"}


def tex_escape(text: object) -> str:
    """Any text made safe to print in LaTeX (the characters LaTeX treats specially, escaped)."""
    return "".join(_ESCAPES.get(c, c) for c in str(text))


def _missing(why: str) -> str:
    return r"\missing{" + tex_escape(why) + "}"


# --- the numbers the prose quotes: (macro, source, extractor) ---------------------------------------------------

def _x(v: float) -> str:
    return f"{v:.2f}" + r"$\times$"


def _pct(v: float) -> str:
    return f"{100 * v:.1f}" + r"\%"


def _find(rows: list[dict], **match) -> dict:
    for r in rows:
        if all(r.get(k) == v for k, v in match.items()):
            return r
    raise KeyError("no row with " + ", ".join(f"{k} {v}" for k, v in match.items()))


def _ratio(d: dict, name: str, key: str = "ratios") -> float:
    q = _find(d[key], ratio=name)
    return q["wall"]["paired"] if "wall" in q else q["paired"]


def _own_wins(d: dict) -> int:
    rows, cols, ppl = d["rows"], d["columns"], d["perplexity"]
    chars = [i for i, r in enumerate(rows) if r in cols]
    wins = 0
    for j, c in enumerate(cols):
        best = min(chars, key=lambda i: ppl[i][j])
        wins += rows[best] == c
    return wins


def _largest(d: dict) -> str:
    """The candidate with the most matmul parameters in a ``zephyra bench base`` result."""
    return max(d["rows"], key=lambda c: d["rows"][c]["matmul_params"])


def _routing_verdict(d: dict) -> str:
    """Whether the base choice changes without the routing metric, in words."""
    best = max(d["choice"]["score_no_routing"], key=d["choice"]["score_no_routing"].get)
    if best == d["choice"]["chosen"]:
        return "without the routing metric the choice is the same"
    return f"without the routing metric {best} scores highest, so the choice rests on routing inside the model"


def _first_ok(res: Results) -> dict:
    for name in ("bench.model", "bench.adapters", "bench.engine", "bench.router", "bench.serve", "bench.components",
                 "bench.retrieval", "bench.startup"):
        if res.get(name):
            return res.get(name)
    raise KeyError("no benchmark ran")


def _bench_load(res: Results) -> float:
    loads = [r[k]["load1"] for n in res.data if n.startswith("bench.") for r in [res.data[n]]
             for k in ("load_before", "load_after")]
    if not loads:
        raise KeyError("no benchmark ran")
    return max(loads)


MACROS: list[tuple[str, str | None, Callable]] = [
    # the machine and the benchmark run
    ("benchLevel", None, lambda r: tex_escape(_first_ok(r)["level"])),
    ("benchDate", None, lambda r: tex_escape(_first_ok(r)["started"][:10])),
    ("benchCPU", None, lambda r: tex_escape(_first_ok(r)["machine"]["cpu"])),
    ("benchCores", None, lambda r: str(_first_ok(r)["machine"]["cores"])),
    ("benchTorch", None, lambda r: tex_escape(_first_ok(r)["machine"]["libraries"]["torch"])),
    ("benchLoadMax", None, lambda r: f"{_bench_load(r):.2f}"),
    # training step
    ("trainPreset", "bench.model", lambda d: tex_escape(d["config"]["preset"])),
    ("trainBatch", "bench.model", lambda d: str(d["config"]["batch"])),
    ("trainSeq", "bench.model", lambda d: str(d["config"]["seq"])),
    ("trainThreads", "bench.model", lambda d: str(d["config"]["threads"])),
    ("trainRatioBf", "bench.model", lambda d: _x(_find(d["rows"], arch="zephyra", dtype="bf16")["speed_vs_llama"])),
    ("trainRatioFp", "bench.model", lambda d: _x(_find(d["rows"], arch="zephyra", dtype="fp32")["speed_vs_llama"])),
    ("trainDtypeMain", "bench.model", lambda d: tex_escape("bf16" if "bf16" in d["config"]["dtypes"] else
                                                          d["config"]["dtypes"][0])),
    ("trainRatioMain", "bench.model", lambda d: _x(_find(d["rows"], arch="zephyra", dtype="bf16" if "bf16" in
                                                         d["config"]["dtypes"] else d["config"]["dtypes"][0])
                                                  ["speed_vs_llama"])),
    ("trainRatioGpt", "bench.model", lambda d: _x(1 / _find(d["rows"], arch="gpt2", dtype=d["config"]["dtypes"][-1])
                                                  ["speed_vs_llama"] * _find(d["rows"], arch="zephyra",
                                                                              dtype=d["config"]["dtypes"][-1])
                                                  ["speed_vs_llama"])),
    ("trainMemRatio", "bench.model", lambda d: _x(_find(d["rows"], arch="zephyra", dtype=d["config"]["dtypes"][-1])
                                                  ["memory_vs_llama"])),
    # multi-adapter decoding, engine, routing cost, server
    ("mixedVsSingle", "bench.adapters", lambda d: _x(_ratio(d, "ours: mixed / single adapter"))),
    ("peftMixedVsSingle", "bench.adapters", lambda d: _x(_ratio(d, "PEFT: mixed / single adapter"))),
    ("oursVsPeftMixed", "bench.adapters", lambda d: _x(_ratio(d, "ours mixed / PEFT mixed"))),
    ("adapterBenchPreset", "bench.adapters", lambda d: tex_escape(d["config"]["preset"])),
    ("engineSpeedup", "bench.engine", lambda d: _x(d["rows"][-1]["speedup"])),
    ("engineRequests", "bench.engine", lambda d: str(d["rows"][-1]["requests"])),
    ("routerOverhead", "bench.router", lambda d: f"{d['overhead_pct']:+.1f}" + r"\%"),
    ("routerHeadMs", "bench.router", lambda d: f"{d['head_ms']:.2f}"),
    ("routerPrefillMs", "bench.router", lambda d: f"{d['prefill_ms']:.2f}"),
    ("serveClients", "bench.serve", lambda d: str(d["rows"][-1]["concurrency"])),
    ("serveRatio", "bench.serve", lambda d: _x(d["rows"][-1]["requests_per_s"] / d["rows"][0]["requests_per_s"])),
    ("serveTtft", "bench.serve", lambda d: f"{d['rows'][-1]['ttft_p50']:.2f}"),
    # the base
    ("baseHidden", "base.config", lambda d: str(d["hidden_size"])),
    ("baseLayers", "base.config", lambda d: str(d["num_hidden_layers"])),
    ("baseTrunk", "base.config", lambda d: str(d["num_trunk_layers"])),
    ("baseBranch", "base.config", lambda d: str(d["num_hidden_layers"] - d["num_trunk_layers"])),
    ("baseVocab", "base.config", lambda d: f"{d['vocab_size']:,}"),
    ("baseParams", "phase2", lambda d: f"{d['metrics']['params_matmul'] / 1e6:.2f}"),
    ("phaseOneSteps", "phase1", lambda d: str(d["metrics"]["step"])),
    ("phaseOneTokens", "phase1", lambda d: f"{d['metrics']['tokens'] / 1e6:.2f}"),
    ("phaseOneMinutes", "phase1", lambda d: f"{d['metrics']['train_seconds'] / 60:.1f}"),
    ("phaseOneTokS", "phase1", lambda d: f"{d['metrics']['tok_per_s']:,.0f}"),
    ("phaseOneCatTrain", "phase1", lambda d: _pct(d["metrics"]["phase1/category_acc_train"])),
    ("phaseOneCatHeld", "phase1", lambda d: _pct(d["metrics"]["phase1/category_acc_heldout"])),
    ("phaseOneGreet", "phase1", lambda d: _pct(d["metrics"]["phase1/greeting_known"])),
    ("phaseTwoSteps", "phase2", lambda d: str(d["metrics"]["step"])),
    ("phaseTwoTokens", "phase2", lambda d: f"{d['metrics']['tokens'] / 1e6:.2f}"),
    ("phaseTwoMinutes", "phase2", lambda d: f"{d['metrics']['train_seconds'] / 60:.1f}"),
    ("phaseTwoTokS", "phase2", lambda d: f"{d['metrics']['tok_per_s']:,.0f}"),
    ("phaseTwoLoss", "phase2", lambda d: f"{d['metrics']['loss']:.2f}"),
    # choosing the base (zephyra bench base)
    ("baseChosen", "bench.base", lambda d: tex_escape(d["choice"]["chosen"])),
    ("baseCandidates", "bench.base", lambda d: str(len(d["rows"]))),
    ("baseScale", "bench.base", lambda d: f"{d['settings']['scale']:g}"),
    ("baseReference", "bench.base", lambda d: tex_escape(d["settings"]["reference"])),
    ("baseAdapterSteps", "bench.base", lambda d: str(d["settings"]["adapter_steps"])),
    ("baseQuestions", "bench.base", lambda d: str(d["settings"]["max_questions"])),
    ("baseLargest", "bench.base", lambda d: tex_escape(_largest(d))),
    ("baseLargestTokenShare", "bench.base", lambda d: _pct(d["rows"][_largest(d)]["tokens"] /
                                                           d["rows"][d["settings"]["reference"]]["tokens"])),
    ("baseLargestPpl", "bench.base", lambda d: f"{d['rows'][_largest(d)]['metrics']['general_ppl']:.1f}"),
    ("baseReferencePpl", "bench.base", lambda d: f"{d['rows'][d['settings']['reference']]['metrics']['general_ppl']:.1f}"),
    ("baseLargestVerdict", "bench.base", lambda d: "the smaller model on more tokens has the lower perplexity" if
     d["rows"][_largest(d)]["metrics"]["general_ppl"] > d["rows"][d["settings"]["reference"]]["metrics"]["general_ppl"]
     else "the larger model has the lower perplexity even on fewer tokens"),
    ("baseRoutingVerdict", "bench.base", lambda d: tex_escape(_routing_verdict(d))),
    ("baseChosenScore", "bench.base", lambda d: f"{d['choice']['score'][d['choice']['chosen']]:.2f}"),
    # adapters and isolation
    ("adapterRank", "adapter.config", lambda d: str(d["r"])),
    ("adapterLayers", "adapter.config", lambda d: str(len(d["layers_to_transform"]))),
    ("adapterKiB", "adapter.manifest", lambda d: f"{d['metrics']['adapter_bytes_on_disk'] / 1024:,.0f}"),
    ("isoPplTokens", "eval.isolation", lambda d: f"{d['settings']['max_ppl_tokens']:,}"),
    ("isoOwnBest", "eval.isolation", lambda d: _x(min(v["own_ratio"] for k, v in d["variants"].items()
                                                      if "@" not in k))),
    ("isoOwnWorst", "eval.isolation", lambda d: _x(max(v["own_ratio"] for k, v in d["variants"].items()
                                                       if "@" not in k))),
    ("isoOtherWorst", "eval.isolation", lambda d: _x(max(v["mean_other"] for k, v in d["variants"].items()
                                                         if "@" not in k))),
    ("isoChemOther", "eval.isolation", lambda d: _x(d["variants"]["chemistry"]["mean_other"])),
    ("isoChemReplayOther", "eval.isolation", lambda d: _x(d["variants"]["chemistry@replay"]["mean_other"])),
    # routing and the system
    ("routerSelected", "router.selected", lambda d: tex_escape(d["selected"])),
    ("routerExternalAcc", "router.selected", lambda d: _pct(d["validation_accuracy"]["external"])),
    ("routerInmodelAcc", "router.selected", lambda d: _pct(d["validation_accuracy"]["inmodel"])),
    ("sysQuestions", "eval.system", lambda d: str(d["systems"]["routed"]["overall"]["n"])),
    ("sysDomains", "eval.system", lambda d: str(len(d["questions"]))),
    ("routingAcc", "eval.system", lambda d: _pct(d["routing"]["accuracy"])),
    ("routedRagAcc", "eval.system", lambda d: _pct(d["systems"]["routed+rag"]["overall"]["accuracy"])),
    ("oracleRagAcc", "eval.system", lambda d: _pct(d["systems"]["oracle+rag"]["overall"]["accuracy"])),
    ("routedAcc", "eval.system", lambda d: _pct(d["systems"]["routed"]["overall"]["accuracy"])),
    ("baseRagAcc", "eval.system", lambda d: _pct(d["systems"]["base+rag"]["overall"]["accuracy"])),
    # retrieval
    ("retrievalQuestions", "eval.retrieval", lambda d: f"{sum(v['questions'] for v in d['domains'].values()):,}"),
    ("denseRecallOne", "eval.retrieval", lambda d: f"{d['overall']['dense']['recall@1']:.3f}"),
    ("sparseRecallOne", "eval.retrieval", lambda d: f"{d['overall']['sparse']['recall@1']:.3f}"),
    ("hybridRecallTen", "eval.retrieval", lambda d: f"{d['overall']['hybrid']['recall@10']:.3f}"),
    # the applications
    ("numCharacters", "shakespeare.fidelity", lambda d: str(len(d["characters"]))),
    ("attrReal", "shakespeare.fidelity", lambda d: f"{d['attribution_macro_f1']['real']:.3f}"),
    ("attrGenerated", "shakespeare.fidelity", lambda d: f"{d['attribution_macro_f1']['generated']:.3f}"),
    ("attrChance", "shakespeare.fidelity", lambda d: f"{d['attribution_macro_f1']['chance']:.3f}"),
    ("pplOwnWins", "shakespeare.perplexity", lambda d: str(_own_wins(d))),
    ("pplColumns", "shakespeare.perplexity", lambda d: str(len(d["columns"]))),
    ("tutorConversations", "tutor.socratic", lambda d: str(d["rows"]["adapter, with sources"]["conversations"])),
    ("tutorLeak", "tutor.socratic", lambda d: _pct(d["rows"]["adapter, with sources"]["leak_rate"])),
    ("tutorLeakGuard", "tutor.socratic", lambda d: _pct(d["rows"]["adapter, with sources + answer guard"]
                                                        ["leak_rate"])),
    ("tutorSuccess", "tutor.socratic", lambda d: _pct(d["rows"]["adapter, with sources + answer guard"]
                                                      ["learner_success"])),
    ("tutorSuccessBase", "tutor.socratic", lambda d: _pct(d["rows"]["base, with sources"]["learner_success"])),
    ("tutorQuestionRate", "tutor.socratic", lambda d: _pct(d["rows"]["adapter, with sources"]["question_rate"])),
]


def macros(res: Results) -> tuple[str, dict[str, str]]:
    """(macros.tex, {macro: why it is missing}) for every entry of MACROS."""
    lines, why = [r"% generated by zephyra paper from the results JSON: do not edit"], {}
    for name, source, fn in MACROS:
        try:
            if source is None:
                value = fn(res)
            elif res.get(source) is None:
                raise LookupError(res.why(source))
            else:
                value = fn(res.get(source))
        except (LookupError, TypeError, ValueError, ZeroDivisionError) as e:
            why[name] = str(e).strip("'\"") or type(e).__name__
            value = _missing(why[name] if why[name].startswith(("missing", "benchmark", "unreadable"))
                             else f"missing from {source or 'the benchmark run'}: {why[name]}")
        lines.append(rf"\newcommand{{\{name}}}{{{value}}}")
    return "\n".join(lines) + "\n", why


# --- tables ------------------------------------------------------------------------------------------------------

def _tabular(cols: str, head: list[str], rows: list[list], caption: str, label: str, wide: bool = False) -> str:
    env = "table*" if wide else "table"
    body = "\n".join(" & ".join(tex_escape(c) for c in r) + r" \\" for r in rows)
    return (f"\\begin{{{env}}}[t]\n\\centering\\footnotesize\n\\caption{{{caption}}}\\label{{{label}}}\n"
            # shrunk to the column when wider than it, never enlarged
            "\\resizebox{\\ifdim\\width>\\columnwidth\\columnwidth\\else\\width\\fi}{!}{%\n"
            f"\\begin{{tabular}}{{{cols}}}\n\\toprule\n" + " & ".join(tex_escape(h) for h in head) +
            " \\\\\n\\midrule\n" + body + f"\n\\bottomrule\n\\end{{tabular}}}}\n\\end{{{env}}}\n")


def _na(caption: str, label: str, why: str) -> str:
    return (f"\\begin{{table}}[t]\n\\centering\\footnotesize\n\\caption{{{caption}}}\\label{{{label}}}\n"
            f"{_missing(why)}\n\\end{{table}}\n")


def _t_model(d):
    rows = [[r["dtype"], r["arch"], f"{r['params_non_embedding']:,}", f"{r['tokens_per_s']:,.0f}",
             f"{r['speed_vs_llama']:.2f}x", f"{r['peak_rss_mib']:,.0f}"] for r in d["rows"]]
    c = d["config"]
    return _tabular("llrrrr", ["dtype", "arch", "params (non-emb.)", "tokens/s", "vs Llama", "peak RSS MiB"], rows,
                    tex_escape(f"Training step (forward, backward, AdamW), preset {c['preset']}, batch {c['batch']} "
                               f"x {c['seq']} tokens, {c['threads']} threads; steps of the architectures alternate "
                               "in one process."), "tab:model")


def _t_adapters(d):
    rows = [[q["ratio"], f"{q['wall']['paired']:.2f}x", f"{q['cpu']['paired']:.2f}x"] for q in d["ratios"]]
    c = d["config"]
    return _tabular("lrr", ["ratio of generation tokens/s", "wall", "CPU time"], rows,
                    tex_escape(f"Multi-adapter generation, preset {c['preset']}, {c['adapters']} LoRA adapters of "
                               f"rank {c['rank']}, batch {c['batch']}, {c['new_tokens']} new tokens; medians of "
                               "paired per-round ratios."), "tab:adapters")


def _t_engine(d):
    rows = [[r["requests"], f"{r['one_at_a_time']['tok_per_s']:.0f}", f"{r['concurrent']['tok_per_s']:.0f}",
             f"{r['concurrent']['ttft_median_ms']:.0f}", f"{r['speedup']:.2f}x"] for r in d["rows"]]
    return _tabular("rrrrr", ["requests", "one at a time tok/s", "together tok/s", "TTFT ms", "speed-up"], rows,
                    tex_escape(f"The streaming engine: concurrent mixed-adapter requests against the same requests "
                               f"served one at a time (preset {d['preset']}, {d['tokens']} tokens each)."),
                    "tab:engine")


def _t_router(d):
    rows = [[r["what"], f"{r['ms_per_batch']:.2f}", f"{r['ms_per_prompt']:.3f}"] for r in d["rows"]]
    return _tabular("lrr", ["what", "ms/batch", "ms/prompt"], rows,
                    tex_escape(f"Routing cost beside the prefill of a batch of {d['batch_size']} prompts "
                               f"({d['prompt_tokens']} tokens); fastest of {d['repeats']} interleaved repeats."),
                    "tab:router")


def _t_serve(d):
    rows = [[r["concurrency"], r["requests"], r["answered"], f"{r['requests_per_s']:.2f}", f"{r['ttft_p50']:.3f}",
             f"{r['ttft_p99']:.3f}", f"{r['total_p50']:.2f}"] for r in d["rows"]]
    return _tabular("rrrrrrr", ["clients", "requests", "answered", "req/s", "TTFT p50 s", "TTFT p99 s", "e2e p50 s"],
                    rows, "The OpenAI-compatible server over loopback, streaming.", "tab:serve")


def _t_isolation(d):
    rows = [[k, f"{v['own_ratio']:.3f}", f"{v['mean_other']:.3f}", f"{v['worst_other']:.3f}"]
            for k, v in sorted(d["variants"].items())]
    s = d["settings"]
    return _tabular("lrrr", ["adapter", "own domain", "other domains, mean", "worst"], rows,
                    tex_escape(f"Held-out perplexity of each adapter, as a ratio to the base's ({s['held_out_split']} "
                               f"split, {s['max_ppl_tokens']:,} tokens per domain); variants of the chemistry "
                               "adapter after the @."), "tab:isolation")


def _t_system(d):
    rows = [[k, f"{v['overall']['accuracy']:.3f}", f"{v['overall']['f1']:.3f}", f"{v['overall']['rougeL']:.3f}"]
            for k, v in d["systems"].items()]
    return _tabular("lrrr", ["system", "answer accuracy", "token F1", "ROUGE-L"], rows,
                    tex_escape(f"The whole system on {d['systems']['routed']['overall']['n']} held-out questions "
                               f"({len(d['questions'])} domains), greedy, at most {d['config']['max_new_tokens']} "
                               "new tokens; +rag: with retrieved passages in the prompt."), "tab:system")


def _t_retrieval(d):
    ks = sorted(int(k.split("@")[1]) for k in next(iter(d["overall"].values())) if k.startswith("recall@"))
    rows = [[m, *[f"{v[f'recall@{k}']:.3f}" for k in ks], f"{v['mrr']:.3f}", f"{v['ms_per_query']:.2f}"]
            for m, v in d["overall"].items()]
    return _tabular("l" + "r" * (len(ks) + 2), ["mode", *[f"R@{k}" for k in ks], "MRR", "ms/query"], rows,
                    "Retrieval of the entry a held-out question was made from, over every domain's index.",
                    "tab:retrieval")


def _t_tutor(d):
    rows = [[k, f"{v['leak_rate']:.3f}", f"{v['question_rate']:.3f}", f"{v['learner_success']:.3f}"]
            for k, v in d["rows"].items()]
    return _tabular("lrrr", ["tutor", "answer leaks", "turns with a question", "learner success"], rows,
                    tex_escape(f"The Socratic math tutor against simulated learners ({d['learner']})."), "tab:tutor")


def _t_base(d):
    names = [m for m in d["choice"]["metrics"]]
    short = {"general_ppl": "gen. ppl", "phase1_category": "cat. acc.", "phase1_greeting": "greet.",
             "adapter_gain": "own ppl ratio", "isolation": "off-dom.", "grounded_qa": "cited QA",
             "grounded_f1": "gen. F1", "routing": "routing"}
    higher = {m["name"]: m["higher_is_better"] for m in d["metrics"]}

    def f(v, m):
        return "n/a" if v is None else (f"{v:.1f}" if m == "general_ppl" else f"{v:.3f}")

    rows = [[c + (" *" if c == d["choice"]["chosen"] else ""), f"{r['matmul_params'] / 1e6:.1f}M",
             f"{r['tokens'] / 1e6:.2f}M", f"{r['train_seconds']:.0f}", *[f(r["metrics"].get(m), m) for m in names],
             f"{d['choice']['score'][c]:.2f}"] for c, r in d["rows"].items()]
    head = ["candidate", "params", "tokens", "train s", *[short.get(m, m) + (" (+)" if higher[m] else " (-)")
                                                          for m in names], "score"]
    s = d["settings"]
    return _tabular("l" + "r" * (len(head) - 1), head, rows,
                    tex_escape(f"Candidate bases at equal training compute ({s['scale']:g} x the {s['reference']} "
                               f"recipes), the task suite on held-out data ((+) higher is better, (-) lower), and the "
                               f"rule's score; * the chosen base. Rule: {d['choice']['rule']}."), "tab:base", wide=True)


def _t_machine(res: Results):
    m = _first_ok(res)["machine"]
    rows = [["CPU", m["cpu"]], ["cores", m["cores"]], ["memory GiB", m["memory_gib"]], ["Python", m["python"]],
            *[[k, v] for k, v in m["libraries"].items() if v]]
    return _tabular("ll", ["", ""], rows, "The machine of the benchmark run.", "tab:machine")


TABLES: dict[str, tuple[str | None, Callable, str]] = {
    "machine": (None, _t_machine, "The machine"),
    "model": ("bench.model", _t_model, "Training step"),
    "adapters": ("bench.adapters", _t_adapters, "Multi-adapter generation"),
    "engine": ("bench.engine", _t_engine, "The streaming engine"),
    "router": ("bench.router", _t_router, "Routing cost"),
    "serve": ("bench.serve", _t_serve, "The server"),
    "base": ("bench.base", _t_base, "Choosing the base"),
    "isolation": ("eval.isolation", _t_isolation, "Isolation"),
    "system": ("eval.system", _t_system, "The whole system"),
    "retrieval": ("eval.retrieval", _t_retrieval, "Retrieval"),
    "tutor": ("tutor.socratic", _t_tutor, "The Socratic tutor"),
}


def tables(res: Results) -> dict[str, str]:
    out = {}
    for name, (source, fn, caption) in TABLES.items():
        try:
            if source is not None and res.get(source) is None:
                raise LookupError(res.why(source))
            out[name] = fn(res) if source is None else fn(res.get(source))
        except (LookupError, TypeError, ValueError) as e:
            out[name] = _na(caption, f"tab:{name}", f"{source or 'bench'}: {str(e).strip(chr(39))}")
    return out


# --- figures -----------------------------------------------------------------------------------------------------

def _fig_model(d, ax):
    archs = list(dict.fromkeys(r["arch"] for r in d["rows"]))
    dtypes = list(dict.fromkeys(r["dtype"] for r in d["rows"]))
    w = 0.8 / len(archs)
    for i, a in enumerate(archs):
        ax.bar([j + i * w for j in range(len(dtypes))],
               [_find(d["rows"], arch=a, dtype=t)["tokens_per_s"] for t in dtypes], w, label=a)
    ax.set_xticks([j + w * (len(archs) - 1) / 2 for j in range(len(dtypes))], dtypes)
    ax.set_ylabel("training tokens/s")
    ax.legend(fontsize=7)


def _fig_base(d, ax):
    for c, r in d["rows"].items():
        pts = r["curve"]
        ax.plot([p["seconds"] for p in pts], [p["val_perplexity"] for p in pts], marker="o", markersize=2,
                label=c, lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("training seconds (phase 1 + 2)")
    ax.set_ylabel("general val. perplexity")
    ax.legend(fontsize=5)


def _fig_isolation(d, ax):
    names = [k for k in sorted(d["variants"])]
    x = range(len(names))
    ax.bar([i - 0.2 for i in x], [d["variants"][k]["own_ratio"] for k in names], 0.4, label="own domain")
    ax.bar([i + 0.2 for i in x], [d["variants"][k]["mean_other"] for k in names], 0.4, label="other domains (mean)")
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_xticks(list(x), names, rotation=35, ha="right", fontsize=6)
    ax.set_ylabel("perplexity / base's")
    ax.legend(fontsize=7)


def _fig_system(d, ax):
    names = list(d["systems"])
    ax.bar(names, [d["systems"][k]["overall"]["accuracy"] for k in names], label="accuracy")
    ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=6)
    ax.set_ylabel("answer accuracy")


def _fig_shakespeare(d, ax):
    import numpy as np

    ppl = np.log(np.array(d["perplexity"]))
    im = ax.imshow(ppl, aspect="auto", cmap="viridis_r")
    ax.set_xticks(range(len(d["columns"])), d["columns"], rotation=45, ha="right", fontsize=6)
    ax.set_yticks(range(len(d["rows"])), d["rows"], fontsize=6)
    ax.set_xlabel("held-out replies of")
    ax.figure.colorbar(im, ax=ax, label="log perplexity")


FIGURES: dict[str, tuple[str, Callable, str]] = {
    "model": ("bench.model", _fig_model, "Training-step throughput per architecture and dtype "
                                         "(Table~\\ref{tab:model})."),
    "base": ("bench.base", _fig_base, "Quality against training time: each candidate's general validation "
                                      "perplexity during phase 2, at equal total compute (Table~\\ref{tab:base})."),
    "isolation": ("eval.isolation", _fig_isolation, "Each adapter's held-out perplexity on its own domain and on the "
                                                    "others, as a ratio to the base's."),
    "system": ("eval.system", _fig_system, "Answer accuracy of each system on the held-out questions."),
    "shakespeare": ("shakespeare.perplexity", _fig_shakespeare, "Reply perplexity of each character adapter (rows) "
                                                                "on each character's held-out replies (columns)."),
}


def figures(res: Results, out: Path) -> dict[str, str]:
    """{name: LaTeX figure}: the PNG under ``out/fig`` drawn from the JSON, or the missing note."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import atomic_write_figure

    code = {}
    for name, (source, fn, caption) in FIGURES.items():
        d = res.get(source)
        body = None
        if d is not None:
            fig, ax = plt.subplots(figsize=(3.5, 2.4))
            try:
                fn(d, ax)
                fig.tight_layout()
                atomic_write_figure(fig, out / "fig" / f"{name}.png", dpi=200)
                body = rf"\includegraphics[width=\columnwidth]{{fig/{name}.png}}"
            except (LookupError, TypeError, ValueError) as e:
                body = _missing(f"{source}: {e}")
            finally:
                plt.close(fig)
        else:
            body = _missing(res.why(source))
        code[name] = (f"\\begin{{figure}}[t]\n\\centering\n{body}\n\\caption{{{caption}}}\\label{{fig:{name}}}\n"
                      "\\end{figure}\n")
    return code


# --- building ----------------------------------------------------------------------------------------------------

def _template(name: str) -> str:
    return resources.files("zephyra.paper").joinpath(name).read_text(encoding="utf-8")


def check_latex() -> None:
    """latexmk and IEEEtran present, or one line saying which is not."""
    if shutil.which("latexmk") is None:
        raise ArtifactError("latexmk not found: apt-get install latexmk texlive-latex-recommended (scripts/setup.sh)")
    kpse = shutil.which("kpsewhich")
    found = kpse and subprocess.run([kpse, "IEEEtran.cls"], capture_output=True, text=True).stdout.strip()
    if not found:
        raise ArtifactError("IEEEtran.cls not found: apt-get install texlive-publishers (scripts/setup.sh)")


def fonts_tex() -> tuple[str, str | None]:
    """(fonts.tex, a note or None): IEEEtran sets Times, Helvetica and Courier, whose metrics come with Debian's
    texlive-fonts-recommended; without them the class cannot load, so their shapes are mapped to Computer Modern
    (texlive-base) and the note says so."""
    kpse = shutil.which("kpsewhich")
    if kpse and subprocess.run([kpse, "ptmr7t.tfm"], capture_output=True, text=True).stdout.strip():
        return "% Times is installed: IEEEtran's own fonts\n", None
    lines = ["% Times metrics absent (texlive-fonts-recommended): IEEEtran's fonts mapped to Computer Modern"]
    for fam, cm in (("ptm", "cmr"), ("phv", "cmss"), ("pcr", "cmtt")):
        lines.append(rf"\DeclareFontFamily{{OT1}}{{{fam}}}{{}}")
        for series in ("m", "b", "bx"):
            for shape in ("n", "it", "sl", "sc"):
                lines.append(rf"\DeclareFontShape{{OT1}}{{{fam}}}{{{series}}}{{{shape}}}"
                             rf"{{<->ssub * {cm}/{'m' if series == 'm' else 'bx'}/{shape}}}{{}}")
    return "\n".join(lines) + "\n", ("Times (texlive-fonts-recommended) not installed: built in Computer Modern, "
                                      "not IEEE's Times")


def write_sources(out: str | os.PathLike, results: str | os.PathLike | None, runs: str | os.PathLike | None
                  ) -> Results:
    """Everything latexmk needs under ``out``: paper.tex, refs.bib, macros.tex, tables/, fig/, missing.json."""
    from ..io import atomic_write_json, atomic_write_text

    out = Path(out)
    res = Results(Path(results) if results else None, Path(runs) if runs else None)
    tex, missing_macros = macros(res)
    atomic_write_text(out / "macros.tex", tex)
    for name, code in tables(res).items():
        atomic_write_text(out / "tables" / f"{name}.tex", code)
    for name, code in figures(res, out).items():
        atomic_write_text(out / "figures" / f"{name}.tex", code)
    fonts, font_note = fonts_tex()
    atomic_write_text(out / "fonts.tex", fonts)
    atomic_write_text(out / "paper.tex", _template("paper.tex"))
    atomic_write_text(out / "refs.bib", _template("refs.bib"))
    atomic_write_json(out / "missing.json", {"sources": res.missing, "macros": missing_macros,
                                             "fonts": font_note, "used": res.paths})
    return res


def _latex_error(log: Path, fallback: str) -> str:
    text = log.read_text(errors="replace") if log.is_file() else fallback
    for line in text.splitlines():
        if line.startswith("!") or re.match(r"^[^:\s]+\.tex:\d+:", line):
            return line.strip()
    return (fallback.strip().splitlines() or ["latexmk failed"])[-1]


def build_paper(out: str | os.PathLike, results: str | os.PathLike | None = None,
                runs: str | os.PathLike | None = "runs", timeout: float = 300) -> Path:
    """Writes the paper's sources under ``out`` and builds ``out/paper.pdf``; returns its path."""
    check_latex()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_sources(out, results, runs)
    proc = subprocess.run(["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error", "-file-line-error",
                           "paper.tex"], cwd=out, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "TEXMFOUTPUT": str(out)})
    pdf = out / "paper.pdf"
    if proc.returncode != 0 or not pdf.is_file():
        raise ArtifactError(f"latexmk failed: {_latex_error(out / 'paper.log', proc.stdout + proc.stderr)} "
                            f"(log: {out / 'paper.log'})")
    return pdf
