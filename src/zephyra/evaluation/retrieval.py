"""Retrieval quality on held-out questions whose source entry is known: recall@1/3/10 and MRR for dense, sparse and
hybrid search over each domain's knowledge index, with the latency per query.

    zephyra eval retrieval --index runs/index --data runs/data --out runs/eval/retrieval
    zephyra eval retrieval --max-questions 100 --domains geography,chemistry

A question's relevant chunks are its Q/A pair's source entry (``doc_id``) narrowed to the chunks that share the most
words with the question and answer (``zephyra.data.knowledge.gold_chunks``): the verse of a verse question, the
speech of a "who says" question, the cast line of a "who is" question. Questions come from the test split, which no
adapter or router trained on. Writes ``retrieval.md``, ``retrieval.json``, ``recall.png`` and ``manifest.json``.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from pathlib import Path

from ..errors import DataError

KS = (1, 3, 10)


def _questions(data_root: Path, domain: str, max_questions: int, seed: int) -> list[dict]:
    from .system import held_out_questions

    qs = held_out_questions(data_root, [domain], max_questions, seed)
    if "doc_id" not in qs[0]:
        raise DataError(f"{data_root}/domains/{domain}/qa has no doc_id column: rebuild the data (zephyra data build)")
    return qs


def evaluate_retrieval(index_root: str | os.PathLike, data_root: str | os.PathLike, domains: list[str] | None = None,
                       max_questions: int = 200, seed: int = 0,
                       modes=("dense", "sparse", "hybrid", "sparse, no names")) -> dict:
    from ..data.knowledge import gold_chunks
    from ..retrieval.index import open_indexes

    indexes = open_indexes(index_root, domains)
    result: dict = {"config": {"index": str(index_root), "data": str(data_root), "split": "test",
                               "max_questions": max_questions, "seed": seed, "ks": list(KS)},
                    "domains": {}}
    for domain, index in indexes.items():
        by_doc = defaultdict(list)
        for c in index.chunks:
            by_doc[c.get("doc_id", "")].append(c)
        qs = [q for q in _questions(Path(data_root), domain, max_questions, seed)]
        gold = [set(gold_chunks(q, by_doc)) for q in qs]
        keep = [i for i, g in enumerate(gold) if g]
        qs, gold = [qs[i] for i in keep], [gold[i] for i in keep]
        if not qs:
            continue
        texts = [q["question"] for q in qs]
        vecs = index.embed(texts) if index.has_dense else None  # once, shared by dense and hybrid
        row = {"questions": len(qs), "chunks": len(index)}
        for mode in modes:
            base_mode, _, plain = mode.partition(", ")
            if base_mode != "sparse" and not index.has_dense:
                continue
            t = time.perf_counter()
            hits = index.search(texts, k=max(KS), mode=base_mode, query_vectors=vecs, cosine=False,
                                names=not plain)
            seconds = time.perf_counter() - t
            ranks = [next((r for r, h in enumerate(hs, 1) if h.id in g), None) for hs, g in zip(hits, gold)]
            row[mode] = {**{f"recall@{k}": sum(1 for r in ranks if r and r <= k) / len(ranks) for k in KS},
                         "mrr": sum(1 / r for r in ranks if r) / len(ranks),
                         "ms_per_query": 1000 * seconds / len(ranks)}
        t = time.perf_counter()
        index.embed(texts[:64])
        row["embed_ms_per_query"] = 1000 * (time.perf_counter() - t) / min(64, len(texts)) if index.has_dense else 0
        result["domains"][domain] = row
    if not result["domains"]:
        raise DataError("no held-out question has its source entry in the indexes")
    result["overall"] = _overall(result["domains"], modes)
    return result


def _overall(domains: dict, modes) -> dict:
    out = {}
    for mode in modes:
        rows = [(r["questions"], r[mode]) for r in domains.values() if mode in r]
        n = sum(q for q, _ in rows)
        if n:
            out[mode] = {k: sum(q * m[k] for q, m in rows) / n for k in rows[0][1]}
    return out


def markdown(result: dict) -> str:
    cfg = result["config"]
    modes = list(result["overall"])
    lines = ["# Retrieval: dense vs sparse vs hybrid", "",
             f"Held-out questions ({cfg['split']} split, at most {cfg['max_questions']} per domain) whose source entry "
             "is known; a hit is relevant when it is that entry. Search latency excludes the query embedding "
             "(one MiniLM pass, shown apart: retrieval and the external router can share it). Every mode puts the "
             "entries the question names first (a verse reference, a Python name, a headword, a quoted line); "
             "\"sparse, no names\" is BM25 alone. Dense and hybrid exist where the index has a dense side "
             "(domains of at most 10,000 chunks), so the all-domains rows average different domain sets.", "",
             "| domain | questions | chunks | mode | R@1 | R@3 | R@10 | MRR | search ms/q | embed ms/q |",
             "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for d, r in result["domains"].items():
        for mode in modes:
            if mode in r:
                m = r[mode]
                lines.append(f"| {d} | {r['questions']} | {r['chunks']:,} | {mode} | {m['recall@1']:.3f} | "
                             f"{m['recall@3']:.3f} | {m['recall@10']:.3f} | {m['mrr']:.3f} | {m['ms_per_query']:.1f} | "
                             f"{r['embed_ms_per_query']:.1f} |")
    lines += ["", "| all domains | mode | R@1 | R@3 | R@10 | MRR |", "|---|---|---:|---:|---:|---:|"]
    for mode, m in result["overall"].items():
        lines.append(f"| | {mode} | {m['recall@1']:.3f} | {m['recall@3']:.3f} | {m['recall@10']:.3f} | {m['mrr']:.3f} |")
    lines += ["", f"Command: `zephyra eval retrieval --index {cfg['index']} --data {cfg['data']} "
              f"--max-questions {cfg['max_questions']}`", ""]
    return "\n".join(lines)


def plot(result: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    domains, modes = list(result["domains"]), list(result["overall"])
    fig, ax = plt.subplots(figsize=(8, 3.5))
    width = 0.8 / len(modes)
    for j, mode in enumerate(modes):
        vals = [result["domains"][d].get(mode, {}).get("recall@3", 0) for d in domains]
        ax.bar([i + j * width for i in range(len(domains))], vals, width, label=mode)
    ax.set_xticks([i + width * (len(modes) - 1) / 2 for i in range(len(domains))], domains)
    ax.set_ylabel("recall@3")
    ax.set_ylim(0, 1)
    ax.legend()
    ax.set_title("held-out questions: is the source entry in the top 3?")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(result: dict, out: str | os.PathLike) -> Path:
    from ..io import atomic_write_json, atomic_write_text
    from ..manifest import write_manifest

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "retrieval.json", result)
    atomic_write_text(out / "retrieval.md", markdown(result))
    plot(result, out / "recall.png")
    write_manifest(out, "report", config=result["config"], report="retrieval",
                   metrics={f"{mode}_{k}": v for mode, m in result["overall"].items() for k, v in m.items()})
    return out
