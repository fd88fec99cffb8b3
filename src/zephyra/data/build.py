"""``zephyra data build``: every dataset, from the installed packages, in one pass.

    zephyra data build --out runs/data                      # full build (a few minutes on 2 cores)
    zephyra data build --out /tmp/small --max-records 200   # a small build in well under a minute

Stages: read every source (records and Q/A pairs) -> per domain: curate, split by document, save raw and Q/A
-> phase 2: curate the general records, remove every paragraph that shares a 13-gram with any domain text,
save -> phase 1 -> router -> the root manifest. Everything is written into a temporary directory beside ROOT
and renamed into place at the end, so a failed build leaves no partial output.
"""

from __future__ import annotations

import dataclasses
import resource
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from ..io import atomic_directory
from ..manifest import write_manifest
from .augment import augment_records, paraphrase_qa
from ..config import ConfigError, to_dict
from .config import BuildConfig, CurateConfig
from .curate import curate, merge_stats, tidy
from .ngrams import NgramIndex, decontaminate
from .phase1 import build_phase1
from .records import DOMAINS, GENERAL, SourceMissing, split_of, stable_unit
from .router import build_router, domain_pools
from .sources import SOURCE_NAMES, get_source
from .store import save_splits

SPLITS = ("train", "validation", "test")
# Per-domain exceptions to the quality filters, and why.
DOMAIN_QUALITY: dict[str, dict] = {
    "python": {"max_symbol_ratio": 0.5, "language": False},  # code samples and signatures are not prose
    "computing": {"max_symbol_ratio": 0.4},  # FOLDOC quotes code and URLs
    "chemistry": {"max_symbol_ratio": 0.35},  # formulas
    "geography": {"language": False},  # tables rendered as sentences are short on function words
}


def peak_rss_mb() -> float:
    """Peak resident memory of this process and its finished children (the ``bible`` program), in MB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024.0  # Linux reports KiB


def domain_curate_config(base: CurateConfig, domain: str) -> CurateConfig:
    quality = dataclasses.replace(base.quality, **DOMAIN_QUALITY.get(domain, {}))
    return dataclasses.replace(base, quality=quality)


class _Run:
    """State of one build: the config, collected inputs, stats, timings."""

    def __init__(self, cfg: BuildConfig, log: Callable[[str], None]):
        self.cfg, self.log, self.t0 = cfg, log, time.time()
        self.records: list[dict] = []
        self.qa: list[dict] = []
        self.lineage: dict[str, dict] = {}
        self.missing: dict[str, str] = {}
        self.qa_by_source: dict[str, int] = defaultdict(int)
        self.curation: list[dict] = []
        self.decontam: dict = {}
        self.timings: dict[str, float] = {}
        self.datasets: dict[str, dict] = {}
        self.ngrams = NgramIndex(cfg.decontaminate_ngram)
        self.test_questions: set[str] = set()
        self.pools: dict[str, dict[str, dict[str, list[str]]]] = {}  # router entities: label -> pool -> split

    def stage(self, name: str, started: float) -> None:
        self.timings[name] = round(time.time() - started, 2)
        self.log(f"[{time.time() - self.t0:6.1f}s] {name} done ({self.timings[name]:.1f}s, "
                 f"peak RSS {peak_rss_mb():.0f} MB)")

    def manifest_common(self, sources: list[str]) -> dict:
        return {"config": to_dict(self.cfg), "inputs": {s: self.lineage[s] for s in sources if s in self.lineage}}


# --- collect -------------------------------------------------------------------------------------------------

def _collect(run: _Run) -> None:
    names = run.cfg.sources or list(SOURCE_NAMES)
    unknown = [n for n in names if n not in SOURCE_NAMES]
    if unknown:
        raise ConfigError(f"sources: unknown {', '.join(unknown)} (known: {', '.join(SOURCE_NAMES)})")
    limit = run.cfg.max_records_per_source
    for name in names:
        src, t = get_source(name), time.time()
        try:
            src.check()
        except SourceMissing as e:
            if run.cfg.on_error == "fail":
                raise
            run.missing[name] = str(e)
            run.log(f"skipping: {e}")
            continue
        recs, qas = list(src.records(limit)), list(src.qa(limit))
        run.records += recs
        run.qa += qas
        run.qa_by_source[name] += len(qas)
        run.lineage[name] = {**src.describe(), "records": len(recs), "qa": len(qas),
                             "seconds": round(time.time() - t, 2)}
        run.log(f"  {name}: {len(recs)} records, {len(qas)} questions ({time.time() - t:.1f}s)")


# --- domains -------------------------------------------------------------------------------------------------

def _assign(groups: list[set[str]], cfg) -> dict[str, str]:
    """doc_id -> split by hash. Within each group of documents (the raw texts', the questions'), validation
    and test are never left empty when the group has three or more documents."""
    s = cfg.split
    assign = {d: split_of(d, s.salt, s.validation, s.test) for g in groups for d in g}
    for group in groups:
        ranked = sorted(group, key=lambda d: stable_unit(s.salt, d))  # the documents nearest to test first
        for split in ("test", "validation"):
            if len(ranked) >= 3 and all(assign[d] != split for d in ranked):
                trains = [d for d in ranked if assign[d] == "train"]
                if len(trains) > 1:
                    assign[trains[0]] = split
    return assign


def _qa_rows(qas: list[dict]) -> list[dict]:
    out, seen = [], set()
    for q in qas:
        question, answer = tidy(q["question"]), tidy(q["answer"])
        key = question.casefold()
        if question and answer and key not in seen:
            seen.add(key)
            out.append({**q, "question": question, "answer": answer})
    return out


def _prepare_domain(run: _Run, domain: str) -> dict:
    """Curate the domain's records and split records and questions by document (nothing saved yet)."""
    cfg, t = run.cfg, time.time()
    recs = [r for r in run.records if r["domain"] == domain]
    qas = _qa_rows([q for q in run.qa if q["domain"] == domain])
    for r in recs:
        run.ngrams.add(r["text"])  # before curation too: a record curation drops is still domain text
    ccfg = domain_curate_config(cfg.curate, domain)
    kept, cstats = curate(recs, ccfg)
    run.curation.append(cstats)
    assign = _assign([{q["doc_id"] for q in qas}, {r["doc_id"] for r in kept}], cfg)
    raw = {s: [r for r in kept if assign[r["doc_id"]] == s] for s in SPLITS}
    qa = {s: [q for q in qas if assign[q["doc_id"]] == s] for s in SPLITS}
    run.test_questions |= {q["question"] for q in qa["test"]}
    for rows in qa.values():
        for q in rows:
            run.ngrams.add(f"{q['question']}\n{q['answer']}")
    for r in kept:
        run.ngrams.add(r["text"])
    run.stage(f"domain {domain}: curate and split", t)
    return {"domain": domain, "raw": raw, "qa": qa, "curate_config": ccfg, "curation": cstats,
            "sources": sorted({r["source"] for r in recs} | {q["source"] for q in qas})}


def _save_domain(run: _Run, root: Path, prep: dict) -> None:
    """Drop training questions that any domain tests ("What is Delphi?" is geography and computing), augment,
    save raw and Q/A."""
    domain, raw, qa, t = prep["domain"], prep["raw"], prep["qa"], time.time()
    test_qs = {q.casefold() for q in run.test_questions}
    overlap = 0
    for s in ("train", "validation"):
        before = len(qa[s])
        qa[s] = [q for q in qa[s] if q["question"].casefold() not in test_qs]
        overlap += before - len(qa[s])
    aug_stats = _augment_domain(run, raw, qa, test_qs)
    run.pools[domain] = domain_pools(domain, qa, raw)
    common = run.manifest_common(prep["sources"])
    base = Path(root) / "domains" / domain
    run.datasets[f"domains/{domain}/raw"] = save_splits(
        base / "raw", "raw", raw, name=f"domains/{domain}/raw", domain=domain,
        curate_config=to_dict(prep["curate_config"]), curation=prep["curation"],
        augmentation=aug_stats.get("raw", {}), **common)
    run.datasets[f"domains/{domain}/qa"] = save_splits(
        base / "qa", "qa", qa, name=f"domains/{domain}/qa", domain=domain,
        metrics={"dropped_test_overlap": overlap, "paraphrased": aug_stats.get("qa", 0)},
        parents=[f"domains/{domain}/raw"], **common)
    run.stage(f"domain {domain}: save", t)


def _augment_domain(run: _Run, raw: dict, qa: dict, test_qs: set[str]) -> dict:
    cfg = run.cfg.augment
    out: dict = {}
    if cfg.paraphrase_questions:
        have = {q["question"].casefold() for q in qa["train"]} | test_qs | \
               {q["question"].casefold() for q in qa["validation"]}
        extra = [q for q in paraphrase_qa(qa["train"]) if q["question"].casefold() not in have]
        qa["train"] += extra
        out["qa"] = len(extra)
    if cfg.synonym_fraction or cfg.noise_fraction or cfg.backtranslate_fraction:
        wordnet = None
        if cfg.synonym_fraction and get_source("wordnet").available():
            wordnet = get_source("wordnet").reader()
        extra, stats = augment_records(raw["train"], cfg, wordnet)
        raw["train"] += extra
        out["raw"] = stats
        for r in extra:
            run.ngrams.add(r["text"])
    return out


# --- phase 2, phase 1, router --------------------------------------------------------------------------------

def _build_phase2(run: _Run, root: Path) -> None:
    t = time.time()
    general = [r for r in run.records if r["domain"] == GENERAL]
    kept, cstats = curate(general, run.cfg.curate)
    run.log(f"  phase2: curated {cstats['in']} -> {cstats['out']}; {len(run.ngrams)} domain "
            f"{run.cfg.decontaminate_ngram}-grams to check against")
    kept, run.decontam = decontaminate(kept, run.ngrams)
    run.curation.append(cstats)
    s = run.cfg.split
    splits = {"train": [], "validation": []}
    for r in kept:
        in_val = stable_unit(s.salt, "phase2", r["doc_id"]) < s.phase2_validation
        splits["validation" if in_val else "train"].append(r)
    if not splits["validation"] and len(splits["train"]) > 1:
        splits["validation"].append(splits["train"].pop())
    sources = sorted({r["source"] for r in general})
    run.datasets["phase2"] = save_splits(
        root / "phase2", "phase2", splits, name="phase2", curation=cstats, decontamination=run.decontam,
        held_out_domains=list(DOMAINS), **run.manifest_common(sources))
    run.stage("phase2", t)


def _build_phase1(run: _Run, root: Path) -> None:
    t = time.time()
    wordnet = get_source("wordnet")
    if "wordnet" in run.lineage:
        splits, info = build_phase1(wordnet, run.cfg.phase1, limit=run.cfg.max_records_per_source)
    else:  # WordNet skipped (on_error=skip): greetings and small talk only
        from .phase1 import conversation_examples

        splits, info = conversation_examples(), {"note": "no WordNet: no category examples"}
    run.datasets["phase1"] = save_splits(root / "phase1", "phase1", splits, name="phase1", metrics=info,
                                         **run.manifest_common(["wordnet"]))
    run.stage("phase1", t)


def _base_entities(run: _Run) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    if "wordnet" not in run.lineage:
        return out
    src = get_source("wordnet")
    for syn in src.index(run.cfg.max_records_per_source):
        word = syn.lemmas[0]
        if syn.pos == "n" and word.isalpha() and word.islower() and src.domain_of(syn) == GENERAL:
            u = stable_unit("router-base", word)
            out["test" if u < 0.15 else "validation" if u < 0.3 else "train"].append(word)
    return out


def _build_router(run: _Run, root: Path) -> None:
    t = time.time()
    pools = {**run.pools, "base": {"x": _base_entities(run)}}
    splits, info = build_router(pools, run.cfg.router, seed=run.cfg.seed, forbidden=run.test_questions)
    run.datasets["router"] = save_splits(root / "router", "router", splits, name="router", metrics=info,
                                         parents=[f"domains/{d}/qa" for d in DOMAINS],
                                         **run.manifest_common(sorted(run.lineage)))
    run.stage("router", t)


# --- summary -------------------------------------------------------------------------------------------------

def source_table(run: _Run) -> dict[str, dict]:
    """Per source: MB in and out, records in and out, drops per step (the `zephyra data stats` table)."""
    merged = merge_stats(run.curation)["by_source"]
    table = {}
    for name, st in merged.items():
        dropped = dict(st["dropped"])
        dec = run.decontam.get("by_source", {}).get(name, 0)
        if dec:
            dropped["decontaminate"] = dec
        info = run.lineage.get(name, {})
        table[name] = {"package": info.get("package", ""), "version": info.get("version", ""),
                       "licence": info.get("licence", ""), "records_in": st["in"], "records_out": st["out"] - dec,
                       "mb_in": round(st["bytes_in"] / 1e6, 3), "mb_out": round(st["bytes_out"] / 1e6, 3),
                       "qa": run.qa_by_source.get(name, 0), "dropped": dropped}
    return table


def build_all(root: str | Path = "runs/data", config: BuildConfig | None = None,
              log: Callable[[str], None] | None = None) -> dict:
    """Build phase1, phase2, domains/<d>/{raw,qa} and router under ``root``; returns the root manifest.

    Command: ``zephyra data build --out runs/data`` (add ``--max-records 200`` for a small, fast build).
    """
    import datasets

    cfg = config or BuildConfig()
    run = _Run(cfg, log or (lambda msg: print(msg, file=sys.stderr)))
    datasets.disable_progress_bars()
    root = Path(root)
    with atomic_directory(root) as tmp:
        t = time.time()
        _collect(run)
        run.stage("read sources", t)
        prepared = [_prepare_domain(run, domain) for domain in DOMAINS]
        for prep in prepared:
            _save_domain(run, tmp, prep)
        del prepared
        _build_phase2(run, tmp)
        _build_phase1(run, tmp)
        _build_router(run, tmp)
        summary = {"datasets": run.datasets, "sources": source_table(run), "missing_sources": run.missing,
                   "curation": merge_stats(run.curation), "decontamination": run.decontam,
                   "timings": run.timings, "seconds": round(time.time() - run.t0, 1),
                   "peak_rss_mb": round(peak_rss_mb(), 1)}
        write_manifest(tmp, "data-build", config=to_dict(cfg), inputs=run.lineage,
                       parents=sorted(run.datasets), metrics={"seconds": summary["seconds"],
                                                              "peak_rss_mb": summary["peak_rss_mb"]},
                       **{k: v for k, v in summary.items() if k not in ("seconds", "peak_rss_mb")})
    return summary
