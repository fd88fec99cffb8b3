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
SYSTEMS_ORDER = ("routed", "routed+rag", "oracle", "oracle+rag", "base", "base+rag", "fused", "merged", "merged+rag")
LABELS = {"routed": "routed (top-1)", "oracle": "oracle routing", "base": "base model", "merged": "merged adapter",
          "routed+rag": "routed + retrieval", "fused": "router-weighted fusion (top 2)", "oracle+rag": "oracle + retrieval",
          "base+rag": "base + retrieval (oracle domain's passages)",
          "merged+rag": "merged + retrieval (oracle domain's passages)"}


def held_out_questions(data_root: str | os.PathLike, domains: list[str], max_questions: int = 50,
                       seed: int = 0) -> list[dict]:
    """[{domain, question, answer}] (and doc_id, the source entry, when the split has it): each domain's QA test
    split (``<data_root>/domains/<d>/qa``), at most ``max_questions`` per domain (0: all), drawn as ``zephyra eval
    adapters`` draws them (suite.py): with the same seed and cap, the same questions."""
    from .suite import _test_split, sample_indices

    out = []
    for d in domains:
        test = _test_split(Path(data_root) / "domains" / d / "qa", ("question", "answer"))
        rows = test.select(sample_indices(len(test), len(test) if max_questions <= 0 else max_questions, seed))
        docs = rows["doc_id"] if "doc_id" in rows.column_names else [None] * len(rows)
        out += [{"domain": d, "question": q, "answer": a, **({"doc_id": i} if i is not None else {})}
                for q, a, i in zip(rows["question"], rows["answer"], docs)]
    if not out:
        raise DataError("no test questions in any domain")
    return out


def score(predictions: list[str], references: list[str]) -> dict[str, float]:
    from .suite import score_answers

    if not predictions:
        return {"f1": float("nan"), "exact_match": float("nan"), "rougeL": float("nan"), "n": 0}
    scores = score_answers(predictions, references)
    return {"f1": scores["f1"], "exact_match": scores["exact_match"], "rougeL": scores["rougeL"], "n": len(predictions)}


def merged_answers(base_dir, adapter_dirs: dict, prompts: list, max_new_tokens: int, batch_size: int,
                   method: str = "linear", fmt: str = "chat", density: float | None = None) -> list:
    """Answers of one adapter merging all of ``adapter_dirs`` (on a fresh copy of the base), folded into the
    weights, so it runs at the base's speed."""
    from ..adapters import merge_adapter
    from ..loader import load_model
    from ..resolve.merge import merge_adapters
    from ..resolve.system import System

    model, tokenizer = load_model(base_dir)
    peft = merge_adapters(model, {n: str(p) for n, p in adapter_dirs.items()}, method=method, copy_model=False,
                          **({"density": density} if density is not None else {}))
    plain = merge_adapter(peft, "merged", copy_model=False).eval()
    system = System(plain, tokenizer, fmt=fmt, max_batch=batch_size)
    try:
        return system.resolve(prompts, adapter="base", max_new_tokens=max_new_tokens)
    finally:
        system.close()


def answer_key(question: str, answer: str) -> set[str]:
    """The reference answer's content words that the question does not already say: the fact asked for ("Paris"
    of "The capital of France is Paris.")."""
    from ..retrieval.grounding import content_words

    return content_words(answer) - content_words(question)


def answer_correct(prediction: str, question: str, answer: str, share: float = 0.8) -> bool:
    """Exact-answer accuracy: the prediction holds at least ``share`` of the reference's key words (all of them
    when there are fewer than five: "Paris", "Fe", "Hamlet"); a long reference (a verse) needs 80% of its words."""
    from ..retrieval.grounding import content_words, strip_citations

    key = answer_key(question, answer)
    if not key:
        return False
    got = content_words(strip_citations(prediction)) & key
    return len(got) >= (len(key) if len(key) < 5 else share * len(key))


def _scored(texts: list[str], questions: list[dict], domains: list[str], sources=None) -> dict:
    from ..retrieval.grounding import support

    def one(idx):
        if not idx:
            return {"f1": float("nan"), "exact_match": float("nan"), "rougeL": float("nan"), "accuracy": float("nan"),
                    "support": float("nan"), "n": 0}
        out = score([texts[i] for i in idx], [questions[i]["answer"] for i in idx])
        out["accuracy"] = sum(answer_correct(texts[i], questions[i]["question"], questions[i]["answer"])
                              for i in idx) / len(idx)
        if sources is not None:
            with_src = [i for i in idx if sources[i]]
            out["support"] = (sum(support(texts[i], sources[i]) for i in with_src) / len(with_src)
                              if with_src else float("nan"))
            out["grounded_share"] = len(with_src) / len(idx)
        return out

    return {"overall": one(list(range(len(texts)))),
            "by_domain": {d: one([i for i, q in enumerate(questions) if q["domain"] == d]) for d in domains}}


def compare_systems(base_dir: str | os.PathLike = DEFAULT_BASE, adapters_dir: str | os.PathLike = DEFAULT_ADAPTERS,
                    router_dir: str | os.PathLike = DEFAULT_ROUTER, data_root: str | os.PathLike = "runs/data",
                    max_questions: int = 50, max_new_tokens: int = 48, *, batch_size: int = 16,
                    merge_method: str = "linear", seed: int = 0, index_root: str | os.PathLike | None = None,
                    merge_methods: list[tuple[str, float | None]] | None = None) -> dict:
    """Routed vs oracle vs base vs merged on the domains' held-out questions (greedy decoding), each closed-book and,
    when the adapters are grounded, open-book (with retrieval): a dict with the scores by system (overall and by
    domain), the routing accuracy, and every answer. ``merge_methods`` [(method, density)]: more merged systems
    (closed-book), for the merging comparison. ``markdown(result)`` renders it."""
    from ..chat import grounded_messages
    from ..data import DOMAINS
    from ..resolve.system import load_system
    from ..retrieval.grounding import passages_for

    system = load_system(base_dir, adapters_dir, router_dir, max_batch=batch_size, index_root=index_root)
    if system.router is None or not system.adapters:
        raise ArtifactError(f"the comparison needs a router and adapters: {'; '.join(system.notes)}")
    domains = sorted(system.adapters, key=lambda d: (DOMAINS.index(d) if d in DOMAINS else len(DOMAINS), d))
    questions = held_out_questions(data_root, domains, max_questions, seed)
    prompts = [q["question"] for q in questions]
    gen = dict(max_new_tokens=max_new_tokens)
    open_book = bool(system.grounded)
    answers, seconds, sources = {}, {}, {}

    def timed(name, fn):
        t = time.perf_counter()
        answers[name] = fn()
        seconds[name] = time.perf_counter() - t

    def per_domain(fn):
        out = {}
        for d in domains:
            idx = [i for i, q in enumerate(questions) if q["domain"] == d]
            out.update(zip(idx, fn(d, idx)))
        return [out[i] for i in range(len(questions))]

    # the passages of each question's own domain (the oracle's retrieval), for the base and merged open-book rows
    passages: list[list[str]] = [[] for _ in questions]
    if open_book:
        for d in domains:
            if d not in system.grounded:
                continue
            cfg, index = system.retriever.config(d), system.retriever.index(d)
            idx = [i for i, q in enumerate(questions) if q["domain"] == d]
            for i, hits in zip(idx, index.search([prompts[i] for i in idx], k=cfg.k, mode=cfg.mode)):
                if hits and max(h.score for h in hits) >= cfg.min_score:
                    passages[i] = passages_for(prompts[i], [h.text for h in hits], cfg, system.tokenizer)
    with_passages = [grounded_messages(p, ps) for p, ps in zip(prompts, passages)]
    # --- the systems ---
    timed("routed", lambda: system.resolve(prompts, adapter="auto", mode="top1", retrieval=False, **gen))
    timed("oracle", lambda: per_domain(lambda d, idx: system.resolve([prompts[i] for i in idx], adapter=d,
                                                                      retrieval=False, **gen)))
    timed("base", lambda: system.resolve(prompts, adapter="base", **gen))
    timed("fused", lambda: system.resolve(prompts, adapter="auto", mode="fused", retrieval=False, **gen))
    if open_book:
        timed("routed+rag", lambda: system.resolve(prompts, adapter="auto", mode="top1", **gen))
        timed("oracle+rag", lambda: per_domain(lambda d, idx: system.resolve([prompts[i] for i in idx], adapter=d,
                                                                              **gen)))
        timed("base+rag", lambda: system.resolve(with_passages, adapter="base", **gen))
        for name in ("routed+rag", "oracle+rag"):
            sources[name] = [[s["text"] for s in a.sources] for a in answers[name]]
        sources["base+rag"] = passages
    system.close()
    merges = [(merge_method, None)] + [m for m in (merge_methods or []) if m != (merge_method, None)]
    merged_names = []
    for method, density in merges:
        name = "merged" if (method, density) == (merge_method, None) else f"merged:{method}" + (
            f"@{density}" if density is not None else "")
        merged_names.append(name)
        timed(name, lambda m=method, d=density: merged_answers(base_dir, system.adapter_dirs, prompts, max_new_tokens,
                                                               batch_size, m, system.fmt, density=d))
    if open_book:
        timed("merged+rag", lambda: merged_answers(base_dir, system.adapter_dirs, with_passages, max_new_tokens,
                                                   batch_size, merge_method, system.fmt))
        sources["merged+rag"] = passages
    # --- scores ---
    names = [n for n in SYSTEMS_ORDER if n in answers] + [n for n in merged_names if n != "merged"]
    systems = {}
    for name in names:
        texts = [a.text for a in answers[name]]
        systems[name] = {**_scored(texts, questions, domains, sources.get(name)), "seconds": round(seconds[name], 3)}
    fallback = [a.note for a in answers.get("routed+rag", []) if a.note]
    return {
        "config": {"base": str(base_dir), "adapters": str(adapters_dir), "router": str(router_dir),
                   "data": str(data_root), "split": "test", "max_questions": max_questions,
                   "max_new_tokens": max_new_tokens, "decoding": "greedy", "merge_method": merge_method,
                   "merge_methods": [list(m) for m in merges], "seed": seed,
                   "index": str(index_root) if index_root else ("recorded" if open_book else None)},
        "domains": domains,
        "questions": dict(Counter(q["domain"] for q in questions)),
        "routing": routing_accuracy(questions, answers["routed"]),
        "systems": systems,
        "retrieval_fallbacks": len(fallback),
        "answers": [{**q, "routed_adapter": r.adapter, "routed_confidence": r.confidence,
                     **{name: answers[name][i].text for name in names},
                     **({"sources": [s["id"] for s in answers["routed+rag"][i].sources]} if open_book else {})}
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


def _label(name: str, cfg: dict) -> str:
    if name.startswith("merged:"):
        return f"merged ({name.split(':', 1)[1]})"
    return LABELS[name] + (f" ({cfg['merge_method']})" if name == "merged" else "")


def _f(x) -> str:
    import math

    return "-" if x is None or math.isnan(x) else f"{x:.3f}"


def markdown(result: dict) -> str:
    """The comparison as Markdown: the overall table, accuracy and F1 by domain, and the routing."""
    cfg, sys_ = result["config"], result["systems"]
    n = sum(result["questions"].values())
    lines = ["# System comparison: routed vs oracle vs base vs merged, closed-book and with retrieval", "",
             f"{n} held-out questions ({cfg['split']} split of `{cfg['data']}/domains/<domain>/qa`, at most "
             f"{cfg['max_questions']} per domain), {cfg['decoding']} decoding, at most {cfg['max_new_tokens']} "
             f"new tokens. Routing accuracy on these questions: **{result['routing']['accuracy']:.3f}** "
             f"({result['routing']['to_base']:.3f} sent to the base). *accuracy*: the answer holds the reference's "
             "key words (those the question does not say; all of them, or 80% of a long one); *support*: share of "
             "the answer's words found in the passages it was given.", "",
             "| system | accuracy | token F1 | exact match | ROUGE-L | support | seconds |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name in sys_:
        o = sys_[name]["overall"]
        lines.append(f"| {_label(name, cfg)} | {_f(o.get('accuracy'))} | {_f(o['f1'])} | {_f(o['exact_match'])} | "
                     f"{_f(o['rougeL'])} | {_f(o.get('support'))} | {sys_[name]['seconds']:.1f} |")
    domains = result["domains"]
    for metric, title in (("accuracy", "Exact-answer accuracy"), ("f1", "Token F1")):
        lines += ["", f"{title} by domain (questions per domain in the header):", "",
                  "| system | " + " | ".join(f"{d} ({result['questions'].get(d, 0)})" for d in domains) + " |",
                  "|---|" + "---:|" * len(domains)]
        for name in sys_:
            lines.append(f"| {_label(name, cfg)} | " + " | ".join(_f(sys_[name]['by_domain'][d].get(metric))
                                                                 for d in domains) + " |")
    lines.append("| *routing accuracy* | " + " | ".join(f"{result['routing']['by_domain'].get(d, 0):.3f}"
                                                       for d in domains) + " |")
    extra = ""
    if len(cfg.get("merge_methods", [])) > 1:
        extra = " --merge-methods " + ",".join(f"{m}@{d}" if d is not None else m for m, d in cfg["merge_methods"][1:])
    lines += ["", f"Command: `zephyra eval system --base {cfg['base']} --adapters {cfg['adapters']} "
              f"--router {cfg['router']} --data {cfg['data']} --max-questions {cfg['max_questions']} "
              f"--max-new-tokens {cfg['max_new_tokens']}{extra}`", ""]
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
                            **{f"{name}_f1": v["overall"]["f1"] for name, v in result["systems"].items()},
                            **{f"{name}_accuracy": v["overall"]["accuracy"] for name, v in result["systems"].items()}},
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
    merge_methods: Annotated[str, typer.Option(help="more merged systems to compare, METHOD[@DENSITY],... e.g. "
                                               "ties@0.3,ties@0.7,svd (closed-book)")] = "",
    index: Annotated[Path | None, typer.Option(help="knowledge indexes of the grounded adapters")] = None,
) -> None:
    """Compare routed, oracle-routed, base and merged answers on the domains' held-out QA questions.

    python -m zephyra.evaluation.system --out runs/eval/system
    """
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    from ..errors import ConfigError
    from ..resolve.merge import METHODS

    extra = []
    for item in (m.strip() for m in merge_methods.split(",") if m.strip()):
        method, _, density = item.partition("@")
        if method not in METHODS:
            raise ConfigError(f"--merge-methods: unknown method {method!r}; known: {', '.join(METHODS)}")
        try:
            extra.append((method, float(density) if density else None))
        except ValueError:
            raise ConfigError(f"--merge-methods: density {density!r} of {method} is not a number") from None
    result = compare_systems(base, adapters, router, data, max_questions, max_new_tokens, batch_size=batch_size,
                             merge_method=merge_method, merge_methods=extra, index_root=index)
    write_report(result, out)
    typer.echo(markdown(result))
    typer.echo(f"report written to {out}")


if __name__ == "__main__":  # the same verb as `zephyra eval system`, with the CLI's error policy
    import sys

    from .cli import app

    app(["system", *sys.argv[1:]])
