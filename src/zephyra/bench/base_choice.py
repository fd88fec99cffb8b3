"""Choosing the base (issue 16, item 5): candidate bases trained at equal compute, evaluated on the task suite, and
one chosen by a stated rule.

    zephyra bench base --out runs/bench/base                  # full: about an hour on 2 cores, after the quickstart
    zephyra bench base --level quick --out runs/bench/base-quick
    zephyra bench base --candidates zephyra:mini,llama:mini --scale 0.5

**Candidates** (``arch:preset``): Zephyra ``mini`` (the quickstart's), ``small`` and ``base`` (a larger preset), and
the GPT-2-style and Llama-style baselines at the mini's size (model/baselines.py). Each goes through the
quickstart's two phases (recipes phase1.yaml and phase2.yaml: the same tokenizer, data, order, batch, optimiser
and schedule shape; only model.arch / model.preset and the step counts differ).

**Equal compute**: the reference is the mini's recipe step counts times ``scale``; a candidate trains
``steps = reference steps x F(mini) / F(candidate)`` where F is the training FLOPs per token,
``6 x matmul parameters + 6 x layers x seq_len x hidden`` (the weights, and attention's two T x T products,
forward and backward). So a base with 4x the FLOPs per token sees a quarter of the tokens. Warm-up is scaled with
the steps (at most the recipe's, at most a tenth of the run).

**The suite** (held-out data only: the validation split of the general corpus, the domains' test splits):

- ``general_ppl``: phase 2's validation perplexity on the general corpus (lower is better);
- ``phase1_category``: category accuracy on held-out words, ``phase1_greeting``: greetings answered with a known
  reply (phase 1's skills after phase 2, training/phase1_eval.py);
- ``adapter_gain``: a grounded LoRA per adapter domain (recipes/adapters/grounded.yaml, the same steps for every
  base) -- its own domain's test perplexity over the base's (lower is better);
- ``isolation``: the same adapters on every other domain's test text: mean |ratio - 1| (lower is better);
- ``grounded_qa`` and ``grounded_f1``: the adapter domains' held-out test questions, answered with retrieval by
  their own adapter (the ``oracle+rag`` system of evaluation/system.py): the answer accuracy of the passage the
  adapter cites (the runtime's ``cited`` mode; the default ``quote`` mode serves retrieval's first passage,
  which no base changes, recorded beside as the reference) and the token F1 of its generated words;
- ``routing``: the in-model router head fitted on the base's trunk as the quickstart fits it (validation accuracy
  over every domain). A baseline has no trunk: it cannot route in-model and scores 0 here (it could be served with
  the external router, which does not depend on the base); the score without routing is reported beside.

**The rule**: each metric is scaled over the candidates to [0, 1] (best 1, worst 0; a metric a candidate cannot
do enters as accuracy 0); a candidate's score is the mean over the metrics; the highest score is chosen, and a
score within ``TIE`` of it goes to a candidate at least ``CHEAPER`` cheaper in training FLOPs per token. Written: ``DIR/base.json`` (every number, the settings, the
machine and its load), ``DIR/base.md`` (the table and the choice), ``DIR/base.png`` (quality against training
time). A candidate already trained under DIR is kept (delete its directory to retrain).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import ConfigError

ABOUT = {"title": "Choosing the base", "baseline": "the quickstart's Zephyra mini, at its recipes' compute",
         "measures": "candidates at equal training FLOPs: general perplexity, phase-1 skills, adapters' gain and "
                     "isolation, grounded QA, in-model routing; a rule's choice", "module": "zephyra.bench.base_choice"}
TIE = 0.02  # scores this close to the best count as a tie, won by a base CHEAPER cheaper to train and serve
CHEAPER = 0.10
FLOOR = {"routing": 0.0}  # a candidate that cannot route in-model: accuracy 0 in the scaling
ARCHS = ("zephyra", "gpt2", "llama")
REFERENCE = "zephyra:mini"  # the quickstart's base: its recipes' step counts define the budget

# (metric, higher is better, what it is)
METRICS: list[tuple[str, bool, str]] = [
    ("general_ppl", False, "general validation perplexity"),
    ("phase1_category", True, "phase-1 category accuracy, held-out words"),
    ("phase1_greeting", True, "phase-1 greetings answered with a known reply"),
    ("adapter_gain", False, "adapters' own-domain test perplexity / base's"),
    ("isolation", False, "adapters' mean |ratio - 1| on the other domains"),
    ("grounded_qa", True, "grounded QA accuracy: the passage the own adapter cites (cited mode)"),
    ("grounded_f1", True, "grounded QA token F1 of the own adapter's generated answer"),
    ("routing", True, "in-model routing, validation accuracy"),
]

LEVELS: dict[str, dict] = {
    # the tests' seconds-long run (tiny presets, a handful of steps, one adapter domain)
    "tiny": dict(candidates=["zephyra:tiny", "llama:tiny"], reference="zephyra:tiny", scale=0.01, adapter_steps=2,
                 domains=["python"], max_questions=4, max_new_tokens=8, max_ppl_tokens=512, router=False,
                 overrides=["data.seq_len=32", "batch_size=4", "micro_batch_size=4", "eval_batches=2",
                            "phase1_eval.max_words=4", "phase1_eval.max_greetings=2", "phase1_eval.max_new_tokens=4"],
                 adapter_overrides=["seq_len=128", "retrieval.k=2", "retrieval.passage_tokens=24", "batch_size=4", "micro_batch_size=4", "eval_batches=2",
                                    "retrieval.mode=sparse", "retrieval.min_score=0.0"]),
    "quick": dict(candidates=["zephyra:mini", "zephyra:small", "gpt2:mini", "llama:mini"], reference=REFERENCE,
                  scale=0.1, adapter_steps=10, domains=["python", "chemistry"], max_questions=10, max_new_tokens=24,
                  max_ppl_tokens=2048, router=True, overrides=[], adapter_overrides=[]),
    "full": dict(candidates=["zephyra:mini", "zephyra:small", "zephyra:base", "gpt2:mini", "llama:mini"],
                 reference=REFERENCE, scale=1.0, adapter_steps=40, domains=["python", "chemistry"], max_questions=40,
                 max_new_tokens=32, max_ppl_tokens=8192, router=True, overrides=[], adapter_overrides=[]),
}


@dataclass
class BaseChoiceConfig:
    level: str = "full"
    candidates: list[str] | None = None  # arch:preset; None: the level's
    reference: str | None = None
    scale: float | None = None  # the budget: the reference's recipe steps times this
    adapter_steps: int | None = None
    domains: list[str] | None = None  # adapter domains (isolation is measured on every domain)
    max_questions: int | None = None
    max_new_tokens: int | None = None
    max_ppl_tokens: int | None = None
    router: bool | None = None
    overrides: list[str] | None = None  # recipe overrides for both phases of every candidate (the tests' sizes)
    adapter_overrides: list[str] | None = None
    data: Path = Path("runs/data")
    tokenizer: Path = Path("runs/tokenizer")
    index: Path = Path("runs/index")
    cache: Path = Path("runs/cache/tokens")
    settings: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.level not in LEVELS:
            raise ConfigError(f"level must be one of {', '.join(LEVELS)}, got {self.level!r}")
        s = dict(LEVELS[self.level])
        for k in s:
            if getattr(self, k) is not None:
                s[k] = getattr(self, k)
        for c in [*s["candidates"], s["reference"]]:
            parse_candidate(c)
        if len(set(s["candidates"])) != len(s["candidates"]) or len(s["candidates"]) < 2:
            raise ConfigError(f"candidates must be two or more distinct arch:preset, got {s['candidates']}")
        if not s["scale"] > 0 or s["adapter_steps"] < 1:
            raise ConfigError("scale must be positive and adapter_steps at least 1")
        from ..data import DOMAINS

        bad = [d for d in s["domains"] if d not in DOMAINS]
        if bad or not s["domains"]:
            raise ConfigError(f"domains must be some of {', '.join(DOMAINS)}, got {s['domains']}")
        self.settings = s
        for k in ("data", "tokenizer", "index", "cache"):
            setattr(self, k, Path(getattr(self, k)))


def parse_candidate(name: str) -> tuple[str, str]:
    from ..model.presets import PRESETS

    arch, _, preset = name.partition(":")
    if arch not in ARCHS or preset not in PRESETS:
        raise ConfigError(f"candidate {name!r}: use arch:preset with arch one of {', '.join(ARCHS)} and preset one "
                          f"of {', '.join(PRESETS)}")
    return arch, preset


def build_candidate(name: str, vocab_size: int):
    """A fresh (untrained) model of the candidate, for counting its FLOPs (``bench.train_step.build``'s)."""
    from .train_step import build

    arch, preset = parse_candidate(name)
    return build(arch, preset, vocab_size, 128, None)[0]


def flops_per_token(model, seq_len: int) -> float:
    """Training FLOPs per token: 6 x matmul parameters (forward and backward) + 6 x layers x seq_len x hidden
    (the attention scores and their weighted sum)."""
    from ..training.prepare import matmul_params

    c = model.config  # GPT2Config maps num_hidden_layers / hidden_size onto n_layer / n_embd
    return 6.0 * matmul_params(model) + 6.0 * c.num_hidden_layers * seq_len * c.hidden_size


def _recipe_phase(phase: str, overrides: list[str]):
    from ..config import RECIPES
    from ..training import load_recipe

    return load_recipe(RECIPES / f"{phase}.yaml", overrides)


def plan(cfg: BaseChoiceConfig, vocab_size: int) -> dict[str, dict]:
    """{candidate: {phase: {steps, warmup, flops_per_token, tokens, flops}}}: the equal-compute step counts."""
    from ..training.prepare import matmul_params

    s = cfg.settings
    ref_cfg = {p: _recipe_phase(p, s["overrides"]) for p in ("phase1", "phase2")}
    models = {c: build_candidate(c, vocab_size) for c in dict.fromkeys([s["reference"], *s["candidates"]])}
    out: dict[str, dict] = {}
    for c in s["candidates"]:
        out[c] = {}
        for p, rc in ref_cfg.items():
            seq, batch = rc.data.seq_len, rc.batch_size
            ref_steps = max(1, round(rc.max_steps * s["scale"]))
            budget = ref_steps * batch * seq * flops_per_token(models[s["reference"]], seq)
            f = flops_per_token(models[c], seq)
            steps = max(2, round(budget / (batch * seq * f)))
            out[c][p] = {"steps": steps, "warmup": max(1, min(rc.schedule.warmup_steps, steps // 10)),
                         "flops_per_token": f, "tokens": steps * batch * seq, "flops": steps * batch * seq * f,
                         "budget_flops": budget, "reference_steps": ref_steps}
        out[c]["matmul_params"] = int(matmul_params(models[c]))
    return out


# --- one candidate -------------------------------------------------------------------------------------------------

def _slug(name: str) -> str:
    return name.replace(":", "-")


def _train_phases(c: str, p: dict, root: Path, cfg: BaseChoiceConfig, echo) -> dict:
    """Phase 1 then phase 2 of candidate ``c`` under ``root``; a finished phase is read, not retrained."""
    from ..training import train

    arch, preset = parse_candidate(c)
    out = {}
    for phase in ("phase1", "phase2"):
        run = root / phase
        done = run / "results.json"
        if not (done.is_file() and (run / "final" / "manifest.json").is_file()):
            steps = p[phase]["steps"]
            o = [f"out_dir={run}", f"max_steps={steps}", f"schedule.warmup_steps={p[phase]['warmup']}",
                 f"eval_every={max(1, steps // 5)}", f"save_every={steps}", f"log_every={max(1, min(10, steps // 4))}",
                 f"data.cache_dir={cfg.cache}", f"name={_slug(c)}-{phase}"]
            if phase == "phase1":
                o += [f"model.arch={arch}", f"model.preset={preset}", f"tokenizer={cfg.tokenizer}"]
            else:
                o += [f"model.init_from={root / 'phase1' / 'final'}", f"tokenizer={root / 'phase1' / 'final'}"]
            o += _data_overrides(phase, cfg.data) + list(cfg.settings["overrides"])
            echo(f"{c}: {phase}, {steps} steps ({p[phase]['tokens']:,} tokens)")
            train(_recipe_phase(phase, o))
        out[phase] = json.loads(done.read_text())
    return out


def _data_overrides(phase: str, data_root: Path) -> list[str]:
    """The recipe's data sources read from ``data_root`` (the recipes name runs/data/<set>)."""
    from ..config import RECIPES, read_yaml

    d = read_yaml(RECIPES / f"{phase}.yaml")["data"]

    def moved(src: dict) -> dict:
        return {**src, "path": str(data_root / Path(src["path"]).name)}

    o = [f"data.train={json.dumps(moved(d['train']))}",
         f"data.validation={json.dumps([moved(v) for v in d.get('validation') or []])}",
         f"phase1_eval.data={data_root / 'phase1'}"]
    if d.get("replay"):
        o.append(f"data.replay={json.dumps([moved(v) for v in d['replay']])}")
    return o


def _curve(run: Path, offset_s: float, train_s: float, tokens_per_step: int) -> list[dict]:
    """The run's validation evaluations (``training.compare.read_curve``: its first validation set, phase 2's
    general corpus) with the training seconds they were reached at (steps evenly timed over the run's total)."""
    from ..training.compare import read_curve

    curve = read_curve(run)
    total = curve.tokens[-1]
    return [{"step": t // tokens_per_step, "tokens": t, "seconds": offset_s + train_s * t / total,
             "val_perplexity": math.exp(min(loss, 50))} for t, loss in zip(curve.tokens, curve.val_loss)]


def _adapters(c: str, base: Path, root: Path, cfg: BaseChoiceConfig, echo) -> tuple[dict[str, Path], dict]:
    """A grounded LoRA per adapter domain on the candidate (kept when already trained): ({domain: dir},
    {domain: its GroundingConfig})."""
    from ..config import RECIPES
    from ..training.adapter import load_adapter_recipe, train_adapter

    s, out, grounding = cfg.settings, {}, {}
    for d in s["domains"]:
        fields = dict(base=str(base), domain=d, data_root=str(cfg.data), out_root=str(root / "adapters"),
                      cache_dir=str(cfg.cache), index_root=str(cfg.index))
        recipe = load_adapter_recipe(RECIPES / "adapters" / "grounded.yaml",
                                     [f"max_steps={s['adapter_steps']}",
                                      f"warmup_steps={max(1, min(8, s['adapter_steps'] // 10))}",
                                      *s["adapter_overrides"]], **fields)
        echo(f"{c}: adapter {d}, {s['adapter_steps']} steps")
        train_adapter(recipe)
        out[d], grounding[d] = root / "adapters" / d, recipe.grounding()
    return out, grounding


def _grounded_qa(base: Path, adapters: dict[str, Path], grounding: dict, cfg: BaseChoiceConfig) -> dict:
    """The adapter domains' held-out questions with their own domain's passages in the prompt (retrieved as the
    runtime retrieves them: the adapter's k, mode and min_score), answered greedily by their own adapter, through
    PEFT's generate for every candidate alike (the runtime's engine serves Zephyra bases only). Scored three ways,
    as the runtime's three answer modes serve them (``resolve.grounding.Grounding.final``): ``cited`` -- the whole passage
    the generation cites ([n]; none: the first), ``generate`` -- the generated words, and ``quote`` -- retrieval's
    first passage, which no base changes (the reference)."""
    from ..adapters import base_fingerprint, load_adapter, switch_adapter
    from ..chat import grounded_messages
    from ..evaluation.suite import answer
    from ..evaluation.system import _scored, held_out_questions
    from ..loader import load_model
    from ..resolve.grounding import Grounding
    from ..retrieval.grounding import cited, passages_for
    from ..retrieval.index import KnowledgeIndex

    s = cfg.settings
    model, tok = load_model(base)
    fingerprint = base_fingerprint(model)
    for d, path in adapters.items():
        model = load_adapter(model, path, name=d, fingerprint=fingerprint)
    questions = held_out_questions(cfg.data, list(adapters), s["max_questions"])
    n = len(questions)
    generated, passages, entries = [""] * n, [[] for _ in questions], [[] for _ in questions]
    for d in adapters:
        g, index = grounding[d], KnowledgeIndex.load(cfg.index / d)
        idx = [i for i, q in enumerate(questions) if q["domain"] == d]
        prompts = [questions[i]["question"] for i in idx]
        for i, p, hits in zip(idx, prompts, index.search(prompts, k=g.k, mode=g.mode)):
            if hits and max(h.score for h in hits) >= g.min_score:
                entries[i] = [h.text for h in hits]
                passages[i] = passages_for(p, entries[i], g, tok)
        m = switch_adapter(model, d).eval()
        for i, a in zip(idx, answer(m, tok, [grounded_messages(questions[i]["question"], passages[i]) for i in idx],
                                    s["max_new_tokens"], 16)):
            generated[i] = a

    def served(i: int, mode: str) -> str:
        sources = [{"id": str(k), "text": t} for k, t in enumerate(entries[i], 1)]
        return Grounding(questions[i]["domain"], None, sources, answer_mode=mode).final(generated[i])[0]

    modes = {mode: _scored([served(i, mode) for i in range(n)], questions, list(adapters), passages)
             for mode in ("cited", "generate", "quote")}
    cites = [cited(generated[i], len(entries[i])) for i in range(n) if entries[i]]
    return {"modes": modes, "citing_share": sum(bool(c) for c in cites) / len(cites) if cites else 0.0,
            "answers": [{**q, "generated": t} for q, t in zip(questions, generated)]}


def _routing(base: Path, cfg: BaseChoiceConfig) -> dict:
    from ..router.fit import fit_router

    index = cfg.index if cfg.index.is_dir() else None
    _, report = fit_router("inmodel", cfg.data / "router", model=base, index=index)
    return {"validation_accuracy": float(report.get("validation", {}).get("accuracy", float("nan"))),
            "index_signals": index is not None}


def evaluate_candidate(c: str, root: Path, trained: dict, cfg: BaseChoiceConfig, echo) -> dict:
    """The suite on candidate ``c``'s phase-2 base: {metric: value (None where it cannot run)} and the details."""
    from ..evaluation.suite import evaluate_matrix, known_domains

    s = cfg.settings
    base = root / "phase2" / "final"
    m2 = trained["phase2"]["metrics"]
    metrics = {"general_ppl": math.exp(min(float(m2.get("val/general", m2["val_loss"])), 50)),
               "phase1_category": m2.get("phase1/category_acc_heldout"),
               "phase1_greeting": m2.get("phase1/greeting_known")}
    details: dict = {"seconds": {}}
    t = time.perf_counter()
    adapters, grounding = _adapters(c, base, root, cfg, echo)
    details["seconds"]["adapters"] = time.perf_counter() - t
    t = time.perf_counter()
    domains = known_domains(cfg.data)
    echo(f"{c}: isolation matrix ({len(adapters)} adapters x {len(domains)} domains)")
    matrix = evaluate_matrix(base, {d: str(p) for d, p in adapters.items()}, cfg.data, domains,
                             max_ppl_tokens=s["max_ppl_tokens"], max_questions=1, max_new_tokens=1, progress=None)
    own = {d: matrix.ratio(d, d) for d in adapters}
    others = {d: {o: matrix.ratio(d, o) for o in matrix.domains if o != d} for d in adapters}
    metrics["adapter_gain"] = sum(own.values()) / len(own)
    metrics["isolation"] = sum(abs(r - 1) for row in others.values() for r in row.values()) / sum(
        len(row) for row in others.values())
    details["adapters"] = {"own_ratio": own, "other_ratios": others,
                           "base_ppl": {d: matrix.value("base", d, "perplexity") for d in matrix.domains}}
    details["seconds"]["isolation"] = time.perf_counter() - t
    t = time.perf_counter()
    echo(f"{c}: grounded QA ({s['max_questions']} questions per adapter domain)")
    qa = _grounded_qa(base, adapters, grounding, cfg)
    metrics["grounded_qa"] = qa["modes"]["cited"]["overall"]["accuracy"]
    metrics["grounded_f1"] = qa["modes"]["generate"]["overall"]["f1"]
    details["grounded_qa"] = qa
    details["seconds"]["grounded_qa"] = time.perf_counter() - t
    arch, _ = parse_candidate(c)
    if s["router"] and arch == "zephyra":
        t = time.perf_counter()
        echo(f"{c}: in-model router")
        details["routing"] = _routing(base, cfg)
        metrics["routing"] = details["routing"]["validation_accuracy"]
        details["seconds"]["routing"] = time.perf_counter() - t
    elif s["router"]:
        metrics["routing"] = None
        details["routing"] = {"note": f"{arch} has no trunk: no in-model router (the external router serves it)"}
    return {"metrics": metrics, "details": details}


# --- the rule ------------------------------------------------------------------------------------------------------

def scores(rows: dict[str, dict], metrics: list[tuple[str, bool, str]] = METRICS, tie: float = TIE,
           cheaper: float = CHEAPER) -> dict:
    """Min-max scaled metrics, the mean score, the mean without routing, and the choice:
    {"scaled": {c: {m: x}}, "score": {c: x}, "score_no_routing": {c: x}, "chosen": c, "tied": [c], "rule": str}.

    A metric a candidate cannot do (None: a baseline's in-model routing) enters the scaling at ``FLOOR[m]`` (an
    accuracy of 0), so every candidate that can do it scores above every one that cannot. A tie (within ``tie`` of
    the best score) goes to a tied candidate only if it is at least ``cheaper`` (a share) cheaper in training FLOPs
    per token than the best-scoring one; else the best score wins."""
    names = [m for m, _, _ in metrics if any(rows[c]["metrics"].get(m) is not None for c in rows)]
    higher = {m: h for m, h, _ in metrics}
    scaled: dict[str, dict] = {c: {} for c in rows}
    for m in names:
        vals = {c: rows[c]["metrics"].get(m) for c in rows}
        vals = {c: FLOOR.get(m) if v is None or (isinstance(v, float) and math.isnan(v)) else v
                for c, v in vals.items()}
        got = [v for v in vals.values() if v is not None]
        lo, hi = (min(got), max(got)) if got else (0.0, 0.0)
        for c, v in vals.items():
            if v is None:
                scaled[c][m] = 0.0
            elif hi == lo:
                scaled[c][m] = 1.0
            else:
                scaled[c][m] = (v - lo) / (hi - lo) if higher[m] else (hi - v) / (hi - lo)
    score = {c: sum(scaled[c].values()) / len(names) for c in rows}
    rest = [m for m in names if m != "routing"]
    no_routing = {c: sum(scaled[c][m] for m in rest) / len(rest) for c in rows} if rest else score
    top = max(rows, key=lambda c: score[c])
    tied = [c for c in rows if score[c] >= score[top] - tie]
    cost = {c: rows[c].get("flops_per_token", 0.0) for c in rows}
    cheap = [c for c in tied if cost[c] <= (1 - cheaper) * cost[top]]
    chosen = min(cheap, key=lambda c: (cost[c], -score[c])) if cheap else top
    rule = (f"mean of the min-max scaled metrics ({', '.join(names)}; a metric a candidate cannot do counts as "
            f"accuracy 0); the highest wins; a score within {tie} of it goes to a candidate at least "
            f"{cheaper:.0%} cheaper in training FLOPs per token")
    return {"scaled": scaled, "score": score, "score_no_routing": no_routing, "chosen": chosen, "tied": tied,
            "rule": rule, "metrics": names}


# --- the run -------------------------------------------------------------------------------------------------------

def _check_inputs(cfg: BaseChoiceConfig) -> None:
    need = {"the phase-1 set": cfg.data / "phase1", "the general corpus": cfg.data / "phase2",
            "the domains": cfg.data / "domains", "the tokenizer": cfg.tokenizer / "tokenizer.json",
            "the knowledge indexes": cfg.index}
    if cfg.settings["router"]:
        need["the router data"] = cfg.data / "router"
    missing = [f"{what} ({path})" for what, path in need.items() if not path.exists()]
    if missing:
        raise ConfigError(f"bench base needs the quickstart's outputs; missing: {', '.join(missing)} "
                          "(run zephyra quickstart first)")


def _run_candidates(cfg: BaseChoiceConfig, out: Path, echo) -> dict[str, dict]:
    """Every candidate trained (or read, when already trained under ``out``) and evaluated: {candidate: row}."""
    from ..io import atomic_write_json
    from ..tokenizer import load_tokenizer

    s = cfg.settings
    vocab = len(load_tokenizer(cfg.tokenizer))
    budget = plan(cfg, vocab)
    rows: dict[str, dict] = {}
    for c in s["candidates"]:
        root = out / _slug(c)
        p = budget[c]
        t = time.perf_counter()
        trained = _train_phases(c, p, root, cfg, echo)
        wall_train = time.perf_counter() - t
        s1 = float(trained["phase1"]["metrics"].get("train_seconds", 0.0))
        s2 = float(trained["phase2"]["metrics"].get("train_seconds", 0.0))
        curve = _curve(root / "phase2", s1, s2, p["phase2"]["tokens"] // p["phase2"]["steps"])
        ev = evaluate_candidate(c, root, trained, cfg, echo)
        rows[c] = {**ev, "plan": {k: v for k, v in p.items() if k.startswith("phase")},
                   "matmul_params": p["matmul_params"], "flops_per_token": p["phase2"]["flops_per_token"],
                   "train_seconds": s1 + s2, "train_wall_seconds_this_run": wall_train,
                   "tokens": p["phase1"]["tokens"] + p["phase2"]["tokens"],
                   "flops": p["phase1"]["flops"] + p["phase2"]["flops"], "curve": curve,
                   "tok_per_s": trained["phase2"]["metrics"].get("tok_per_s")}
        echo(f"{c}: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                  for k, v in ev["metrics"].items()))
        atomic_write_json(out / "base.partial.json", rows)
    return rows


def run(cfg: BaseChoiceConfig, out: str | os.PathLike, progress: Callable[[str], None] | None = None) -> dict:
    """Train, evaluate and choose; writes ``out/base.json``, ``out/base.md`` and ``out/base.png``; the result."""
    from ..io import atomic_write_json, atomic_write_text
    from .all import RSSSampler, _now, load, machine

    echo = progress or (lambda m: None)
    _check_inputs(cfg)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    s = cfg.settings
    before, t0, started = load(), time.perf_counter(), _now()
    with RSSSampler() as rss:
        rows = _run_candidates(cfg, out, echo)
    choice = scores(rows)
    result = {"bench": "base", "status": "ok", "reason": None, "level": cfg.level, "about": ABOUT,
              "started": started, "finished": _now(), "settings": s,
              "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items() if k != "settings"},
              "metrics": [{"name": m, "higher_is_better": h, "about": a} for m, h, a in METRICS],
              "rows": rows, "choice": choice, "machine": machine(), "load_before": before, "load_after": load(),
              "seconds": time.perf_counter() - t0, "rss_start_mib": rss.start_mib, "peak_rss_mib": rss.peak}
    atomic_write_json(out / "base.json", result)
    atomic_write_text(out / "base.md", markdown(result))
    plot(result, out / "base.png")
    (out / "base.partial.json").unlink(missing_ok=True)
    return result


# --- the report ----------------------------------------------------------------------------------------------------

def _f(v, digits=3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def table(result: dict) -> str:
    """The candidates' table (Markdown): size, compute, time and every metric, the score and the choice."""
    rows, choice = result["rows"], result["choice"]
    names = [m["name"] for m in result["metrics"] if m["name"] in choice["metrics"]]
    arrows = {m["name"]: ("↑" if m["higher_is_better"] else "↓") for m in result["metrics"]}
    head = ["candidate", "matmul params", "tokens", "train s", *[f"{n} {arrows[n]}" for n in names], "score",
            "score w/o routing"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c, r in rows.items():
        mark = " **(chosen)**" if c == choice["chosen"] else ""
        cells = [f"{c}{mark}", f"{r['matmul_params'] / 1e6:.2f}M", f"{r['tokens'] / 1e6:.2f}M", f"{r['train_seconds']:.0f}",
                 *[_f(r["metrics"].get(n), 2 if n == "general_ppl" else 3) for n in names],
                 f"{choice['score'][c]:.3f}", f"{choice['score_no_routing'][c]:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def markdown(result: dict) -> str:
    s, choice, mach = result["settings"], result["choice"], result["machine"]
    ref = s["reference"]
    lb, la = result["load_before"], result["load_after"]
    return (f"# Choosing the base ({result['level']})\n\n"
            f"Candidates trained at equal compute: {s['scale']:g} x the {ref} recipes' steps "
            f"(phase 1 and phase 2), each candidate's steps scaled by its training FLOPs per token; adapters "
            f"{s['adapter_steps']} steps on {', '.join(s['domains'])}; {s['max_questions']} grounded questions per "
            f"adapter domain.\n\n{table(result)}\n"
            f"**Rule:** {choice['rule']}.\n\n**Chosen:** {choice['chosen']}.\n\n"
            f"Machine: {mach['cpu']}, {mach['cores']} cores, torch {mach['libraries'].get('torch')}; load average "
            f"{lb['load1']:.2f} before, {la['load1']:.2f} after; {result['seconds']:.0f} s in all.\n")


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import atomic_write_figure

    rows, choice = result["rows"], result["choice"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for c, r in rows.items():
        pts = r["curve"]
        if pts:
            a.plot([p["seconds"] for p in pts], [p["val_perplexity"] for p in pts], marker="o", markersize=3, label=c)
        b.scatter([r["train_seconds"]], [choice["score"][c]], s=40)
        b.annotate(c, (r["train_seconds"], choice["score"][c]), fontsize=8, xytext=(4, 4), textcoords="offset points")
    a.set_xlabel("training seconds (phase 1 + phase 2)")
    a.set_ylabel("general validation perplexity")
    a.set_yscale("log")
    a.set_title("quality against training time (phase 2)")
    a.grid(alpha=0.3)
    a.legend(fontsize=8)
    b.set_xlabel("training seconds (phase 1 + phase 2)")
    b.set_ylabel("suite score (0-1)")
    b.set_title(f"task-suite score at equal compute; chosen: {choice['chosen']}")
    b.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write_figure(fig, path, dpi=120)
    plt.close(fig)
