"""The system comparison (issue 6): on every domain's held-out QA test questions, how well do we answer with

  (a) routed   -- the router picks the adapter from the prompt's own prefill (the engine, mode top1),
  (b) oracle   -- the right domain's adapter forced (what perfect routing would give),
  (c) base     -- the base model alone,
  (d) merged   -- all adapters merged into one (PEFT's linear merge, folded into the weights),

scored by SQuAD token F1 / exact match and ROUGE-L, with the routing accuracy on the same questions.

    python -m zephyra.evaluation.system --out runs/eval/system
    python -m zephyra.evaluation.system --max-questions 20 --max-new-tokens 32 --out runs/eval/system-small

Writes ``system.md`` (the tables), ``system.json`` (every number and every answer) and ``manifest.json``.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer

from ..errors import ArtifactError, DataError
from ..resolve.defaults import DEFAULT_ADAPTERS, DEFAULT_BASE, DEFAULT_ROUTER

SYSTEMS = ("routed", "oracle", "base", "merged")
LABELS = {"routed": "routed (top-1)", "oracle": "oracle routing", "base": "base model", "merged": "merged adapter"}


def held_out_questions(data_root: str | os.PathLike, domains: list[str], max_questions: int = 50,
                       seed: int = 0) -> list[dict]:
    """[{domain, question, answer}]: each domain's QA test split (``<data_root>/domains/<d>/qa``), at most
    ``max_questions`` per domain (0: all), drawn as ``zephyra eval adapters`` draws them (suite.py): with the
    same seed and cap, the same questions."""
    from .suite import _test_split, sample_indices

    out = []
    for d in domains:
        test = _test_split(Path(data_root) / "domains" / d / "qa", ("question", "answer"))
        rows = test.select(sample_indices(len(test), len(test) if max_questions <= 0 else max_questions, seed))
        out += [{"domain": d, "question": q, "answer": a} for q, a in zip(rows["question"], rows["answer"])]
    if not out:
        raise DataError("no test questions in any domain")
    return out


def score(predictions: list[str], references: list[str]) -> dict[str, float]:
    from .suite import score_answers

    if not predictions:
        return {"f1": float("nan"), "exact_match": float("nan"), "rougeL": float("nan"), "n": 0}
    scores = score_answers(predictions, references)
    return {"f1": scores["f1"], "exact_match": scores["exact_match"], "rougeL": scores["rougeL"], "n": len(predictions)}


def merged_answers(base_dir, adapter_dirs: dict, prompts: list[str], max_new_tokens: int, batch_size: int,
                   method: str = "linear", fmt: str = "chat") -> list:
    """Answers of one adapter merging all of ``adapter_dirs`` (on a fresh copy of the base), folded into the
    weights, so it runs at the base's speed."""
    from ..adapters import merge_adapter
    from ..loader import load_model
    from ..resolve.merge import merge_adapters
    from ..resolve.system import System

    model, tokenizer = load_model(base_dir)
    peft = merge_adapters(model, {n: str(p) for n, p in adapter_dirs.items()}, method=method, copy_model=False)
    plain = merge_adapter(peft, "merged", copy_model=False).eval()
    system = System(plain, tokenizer, fmt=fmt, max_batch=batch_size)
    try:
        return system.resolve(prompts, adapter="base", max_new_tokens=max_new_tokens)
    finally:
        system.close()


def compare_systems(base_dir: str | os.PathLike = DEFAULT_BASE, adapters_dir: str | os.PathLike = DEFAULT_ADAPTERS,
                    router_dir: str | os.PathLike = DEFAULT_ROUTER, data_root: str | os.PathLike = "runs/data",
                    max_questions: int = 50, max_new_tokens: int = 48, *, batch_size: int = 16,
                    merge_method: str = "linear", seed: int = 0) -> dict:
    """Routed vs oracle vs base vs merged on the domains' held-out questions (greedy decoding): a dict with the
    scores by system (overall and by domain), the routing accuracy, and every answer. ``markdown(result)``
    renders it."""
    from ..data import DOMAINS
    from ..resolve.system import load_system

    system = load_system(base_dir, adapters_dir, router_dir, max_batch=batch_size)
    if system.router is None or not system.adapters:
        raise ArtifactError(f"the comparison needs a router and adapters: {'; '.join(system.notes)}")
    domains = sorted(system.adapters, key=lambda d: (DOMAINS.index(d) if d in DOMAINS else len(DOMAINS), d))
    questions = held_out_questions(data_root, domains, max_questions, seed)
    prompts = [q["question"] for q in questions]
    gen = dict(max_new_tokens=max_new_tokens)
    answers, seconds = {}, {}
    # --- the four systems ---
    t = time.perf_counter()
    answers["routed"] = system.resolve(prompts, adapter="auto", mode="top1", **gen)
    seconds["routed"] = time.perf_counter() - t
    t = time.perf_counter()
    oracle = {}
    for d in domains:
        idx = [i for i, q in enumerate(questions) if q["domain"] == d]
        oracle.update(zip(idx, system.resolve([prompts[i] for i in idx], adapter=d, **gen)))
    answers["oracle"] = [oracle[i] for i in range(len(questions))]
    seconds["oracle"] = time.perf_counter() - t
    t = time.perf_counter()
    answers["base"] = system.resolve(prompts, adapter="base", **gen)
    seconds["base"] = time.perf_counter() - t
    system.close()
    t = time.perf_counter()
    answers["merged"] = merged_answers(base_dir, system.adapter_dirs, prompts, max_new_tokens, batch_size,
                                       merge_method, system.fmt)
    seconds["merged"] = time.perf_counter() - t
    # --- scores ---
    refs = [q["answer"] for q in questions]
    systems = {}
    for name in SYSTEMS:
        texts = [a.text for a in answers[name]]
        by_domain = {d: score([x for x, q in zip(texts, questions) if q["domain"] == d],
                              [q["answer"] for q in questions if q["domain"] == d]) for d in domains}
        systems[name] = {"overall": score(texts, refs), "by_domain": by_domain, "seconds": round(seconds[name], 3)}
    return {
        "config": {"base": str(base_dir), "adapters": str(adapters_dir), "router": str(router_dir),
                   "data": str(data_root), "split": "test", "max_questions": max_questions,
                   "max_new_tokens": max_new_tokens, "decoding": "greedy", "merge_method": merge_method,
                   "seed": seed},
        "domains": domains,
        "questions": dict(Counter(q["domain"] for q in questions)),
        "routing": routing_accuracy(questions, answers["routed"]),
        "systems": systems,
        "answers": [{**q, "routed_adapter": r.adapter, "routed_confidence": r.confidence,
                     **{name: answers[name][i].text for name in SYSTEMS}}
                    for i, (q, r) in enumerate(zip(questions, answers["routed"]))],
    }


def routing_accuracy(questions: list[dict], routed: list) -> dict:
    """How often the routed system answered a question with its own domain's adapter; where the rest went."""
    confusion: dict[str, Counter] = {}
    for q, r in zip(questions, routed):
        confusion.setdefault(q["domain"], Counter())[r.adapter] += 1
    by_domain = {d: c[d] / sum(c.values()) for d, c in confusion.items()}
    n = len(questions)
    return {"accuracy": sum(c[d] for d, c in confusion.items()) / n,
            "to_base": sum(c["base"] for c in confusion.values()) / n,
            "by_domain": by_domain, "confusion": {d: dict(c) for d, c in confusion.items()}}


def markdown(result: dict) -> str:
    """The comparison as Markdown: the overall table, F1 by domain, and the routing."""
    cfg, sys_ = result["config"], result["systems"]
    n = sum(result["questions"].values())
    lines = ["# System comparison: routed vs oracle vs base vs merged", "",
             f"{n} held-out questions ({cfg['split']} split of `{cfg['data']}/domains/<domain>/qa`, at most "
             f"{cfg['max_questions']} per domain), {cfg['decoding']} decoding, at most {cfg['max_new_tokens']} "
             f"new tokens. Routing accuracy on these questions: **{result['routing']['accuracy']:.3f}** "
             f"({result['routing']['to_base']:.3f} sent to the base).", "",
             "| system | token F1 | exact match | ROUGE-L | seconds |", "|---|---:|---:|---:|---:|"]
    for name in SYSTEMS:
        o = sys_[name]["overall"]
        label = LABELS[name] + (f" ({cfg['merge_method']})" if name == "merged" else "")
        lines.append(f"| {label} | {o['f1']:.3f} | {o['exact_match']:.3f} | {o['rougeL']:.3f} | "
                     f"{sys_[name]['seconds']:.1f} |")
    domains = result["domains"]
    lines += ["", "Token F1 by domain (questions per domain in the header):", "",
              "| system | " + " | ".join(f"{d} ({result['questions'].get(d, 0)})" for d in domains) + " |",
              "|---|" + "---:|" * len(domains)]
    for name in SYSTEMS:
        lines.append(f"| {LABELS[name]} | " + " | ".join(f"{sys_[name]['by_domain'][d]['f1']:.3f}"
                                                          for d in domains) + " |")
    lines.append("| *routing accuracy* | " + " | ".join(f"{result['routing']['by_domain'].get(d, 0):.3f}"
                                                       for d in domains) + " |")
    lines += ["", f"Command: `python -m zephyra.evaluation.system --base {cfg['base']} --adapters {cfg['adapters']} "
              f"--router {cfg['router']} --data {cfg['data']} --max-questions {cfg['max_questions']} "
              f"--max-new-tokens {cfg['max_new_tokens']}`", ""]
    return "\n".join(lines)


def write_report(result: dict, out: str | os.PathLike) -> Path:
    """``system.md``, ``system.json`` and ``manifest.json`` under ``out``, each written atomically."""
    from ..io import atomic_write_json, atomic_write_text, sha256_bytes
    from ..manifest import write_manifest

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "system.json", result)
    atomic_write_text(out / "system.md", markdown(result))
    questions = json.dumps([(a["domain"], a["question"]) for a in result["answers"]]).encode()
    write_manifest(out, "report", config=result["config"],
                   inputs={"questions_sha256": sha256_bytes(questions)},
                   metrics={"routing_accuracy": result["routing"]["accuracy"],
                            **{f"{name}_f1": result["systems"][name]["overall"]["f1"] for name in SYSTEMS}},
                   report="system")
    return out


def system_command(
    out: Annotated[Path, typer.Option(help="report directory")] = Path("runs/eval/system"),
    base: Annotated[Path, typer.Option(help="base model directory")] = DEFAULT_BASE,
    adapters: Annotated[Path, typer.Option(help="directory of LoRA adapters, one per domain")] = DEFAULT_ADAPTERS,
    router: Annotated[Path, typer.Option(help="router directory (in-model or external)")] = DEFAULT_ROUTER,
    data: Annotated[Path, typer.Option(help="data root holding domains/<d>/qa")] = Path("runs/data"),
    max_questions: Annotated[int, typer.Option(help="test questions per domain (0: all)")] = 50,
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 48,
    batch_size: Annotated[int, typer.Option(min=1, help="prompts per generation batch")] = 16,
    merge_method: Annotated[str, typer.Option(help="how the merged system merges: linear | ties | cat ...")
                            ] = "linear",
) -> None:
    """Compare routed, oracle-routed, base and merged answers on the domains' held-out QA questions.

    python -m zephyra.evaluation.system --out runs/eval/system
    """
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    result = compare_systems(base, adapters, router, data, max_questions, max_new_tokens, batch_size=batch_size,
                             merge_method=merge_method)
    write_report(result, out)
    typer.echo(markdown(result))
    typer.echo(f"report written to {out}")


if __name__ == "__main__":  # the same verb as `zephyra eval system`, with the CLI's error policy
    import sys

    from .cli import app

    app(["system", *sys.argv[1:]])
