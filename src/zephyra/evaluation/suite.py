"""The evaluation suite: the isolation matrix (the base and every adapter x every domain's held-out data), the
isolation verdict per adapter, and the comparison of adapter methods.

    zephyra eval adapters --base runs/phase2/final --adapters runs/adapters --data runs/data --out runs/eval
    zephyra eval methods --base runs/phase2/final --adapters runs/methods/lora runs/methods/ia3 --out runs/eval-methods

Held out means each domain's **test** splits, which no training run reads:
- perplexity on ``domains/<d>/raw`` test text: documents in a seeded order, each ``bos ids eos`` as the trainer
  packs them, laid end to end, capped at ``max_ppl_tokens`` and cut into rows of the model's context (at most
  ``seq_len``); every predicted token counts once (a row's first token is context only);
- QA on ``domains/<d>/qa`` test pairs: a seeded sample of ``max_questions``, asked through the chat template
  (as adapters are trained), answered greedily, scored with BLEU, ROUGE-1/2/L, SQuAD token F1 and exact match.

The base is loaded once; every adapter is loaded onto it once with PEFT and made active in turn (adapters of
another PEFT type go onto one copy of the base per type, PEFT keeping one type per model); the "base" row is the
same model with adapters disabled. What PEFT and transformers lack and we add: the held-out selection, batched
token-weighted perplexity over packed rows, left-padded batched greedy answering, and the verdict.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import ZephyraError
from .metrics import _batches, bleu, rouge, squad_scores, summed_nll

SEED = 0  # the held-out sample; fixed, so every run and every row sees the same tokens and questions


class EvalError(ZephyraError, ValueError):
    """Bad input to the suite (missing data, unknown domain, no adapters); the message is one line."""


# --- settings, results ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EvalConfig:
    max_ppl_tokens: int = 32768  # held-out tokens per domain for perplexity
    max_questions: int = 100  # QA test questions per domain
    max_new_tokens: int = 48  # greedy answer length cap
    batch_size: int = 16  # perplexity rows per forward pass; prompts per PEFT generate call
    seq_len: int = 256  # perplexity row length (capped at the model's context)
    gen_batch_size: int = 64  # (question, adapter) rows per shared decoding batch of the multi-adapter engine

    def __post_init__(self):
        for name in ("max_ppl_tokens", "max_questions", "max_new_tokens", "batch_size", "seq_len",
                     "gen_batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise EvalError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class Goals:
    """The isolation goals: an adapter halves its own domain's perplexity and moves no other by more than 10%."""
    own_ppl_ratio_max: float = 0.5
    other_ppl_tolerance: float = 0.10


@dataclass
class Cell:
    """One (row, domain) cell: held-out perplexity and QA scores (F1, EM, ROUGE: 0-1; BLEU: 0-100)."""
    perplexity: float
    mean_nll: float  # nats per predicted token
    ppl_tokens: int  # predicted tokens
    questions: int
    f1: float
    exact_match: float
    bleu: float
    rouge1: float
    rouge2: float
    rougeL: float  # noqa: N815 (rouge-score's name)


@dataclass
class AdapterInfo:
    name: str
    path: str
    domain: str
    method: str
    peft_type: str
    bytes_on_disk: int  # measured: every file of the adapter directory but manifest.json
    trainable_params: int  # from the manifest when recorded, else counted from the weights file
    metrics: dict = field(default_factory=dict)  # the manifest's training metrics, as recorded


@dataclass
class Verdict:
    """The isolation verdict of one adapter, measured. A check is None when it cannot be made (own domain not
    evaluated, or no other domain)."""
    adapter: str
    domain: str
    own_ppl_ratio: float | None
    own_f1: float | None
    base_f1: float | None
    other_ratios: dict[str, float]
    own_ppl_pass: bool | None
    own_f1_pass: bool | None  # the adapter's F1 on its own domain beats the base's
    others_pass: bool | None  # every other domain's perplexity ratio within 1 +- tolerance

    @property
    def passed(self) -> bool | None:
        """All checks pass; None (no verdict) when the adapter's own domain was not evaluated."""
        if self.own_ppl_pass is None:
            return None
        return all(c for c in (self.own_ppl_pass, self.own_f1_pass, self.others_pass) if c is not None)

    @property
    def worst_other(self) -> tuple[str, float] | None:
        if not self.other_ratios:
            return None
        return max(self.other_ratios.items(), key=lambda kv: abs(kv[1] - 1.0))


@dataclass
class MatrixResult:
    rows: list[str]  # "base", then the adapters
    domains: list[str]
    cells: dict[str, dict[str, Cell]]  # row -> domain -> cell
    adapters: dict[str, AdapterInfo]
    settings: dict
    answers: dict[str, dict[str, list[dict]]] = field(default_factory=dict)  # row -> domain -> [{q, ref, answer}]
    goals: Goals = field(default_factory=Goals)

    def value(self, row: str, domain: str, metric: str) -> float:
        return getattr(self.cells[row][domain], metric)

    def ratio(self, row: str, domain: str) -> float:
        """Perplexity relative to the base on the same held-out tokens (1.0: unchanged)."""
        return self.value(row, domain, "perplexity") / self.value("base", domain, "perplexity")

    def table(self, metric: str) -> list[list[float]]:
        get = self.ratio if metric == "ratio" else lambda r, d: self.value(r, d, metric)
        return [[get(r, d) for d in self.domains] for r in self.rows]

    @property
    def verdicts(self) -> list[Verdict]:
        return [verdict(self, name) for name in self.rows if name != "base"]

    def to_dict(self) -> dict:
        return {"rows": self.rows, "domains": self.domains, "settings": self.settings, "goals": asdict(self.goals),
                "cells": {r: {d: asdict(c) for d, c in ds.items()} for r, ds in self.cells.items()},
                "ratio_to_base": {r: {d: self.ratio(r, d) for d in self.domains} for r in self.rows},
                "adapters": {n: asdict(a) for n, a in self.adapters.items()},
                "verdicts": [{**asdict(v), "passed": v.passed} for v in self.verdicts]}


def verdict(result: MatrixResult, name: str) -> Verdict:
    """Adapter ``name``'s isolation verdict from the measured matrix; nothing here is assumed."""
    goals, domain = result.goals, result.adapters[name].domain
    others = {d: result.ratio(name, d) for d in result.domains if d != domain}
    own = domain in result.domains
    ratio = result.ratio(name, domain) if own else None
    f1 = result.value(name, domain, "f1") if own else None
    base_f1 = result.value("base", domain, "f1") if own else None
    return Verdict(adapter=name, domain=domain, own_ppl_ratio=ratio, own_f1=f1, base_f1=base_f1, other_ratios=others,
                   own_ppl_pass=None if ratio is None else ratio <= goals.own_ppl_ratio_max,
                   own_f1_pass=None if f1 is None else f1 > base_f1,
                   others_pass=None if not others else all(abs(r - 1.0) <= goals.other_ppl_tolerance
                                                           for r in others.values()))


# --- held-out data ----------------------------------------------------------------------------------------------

@dataclass
class DomainData:
    name: str
    rows: list[list[int]]  # perplexity rows of token ids
    questions: list[str]
    references: list[str]


def known_domains(data_root: str | os.PathLike) -> list[str]:
    root = Path(data_root) / "domains"
    if not root.is_dir():
        raise EvalError(f"{data_root}: no domains/ directory (build it with `zephyra data build`)")
    return sorted(p.name for p in root.iterdir() if (p / "raw").is_dir() and (p / "qa").is_dir())


def check_domains(data_root: str | os.PathLike, domains: Sequence[str] | None) -> list[str]:
    known = known_domains(data_root)
    if not domains:
        if not known:
            raise EvalError(f"{data_root}/domains: no domain with both raw/ and qa/ datasets")
        return known
    unknown = [d for d in domains if d not in known]
    if unknown:
        raise EvalError(f"unknown domain {unknown[0]!r}; {data_root}/domains has: {', '.join(known) or 'none'}")
    return list(dict.fromkeys(domains))


def _test_split(path: Path, columns: tuple[str, ...]):
    from datasets import load_from_disk

    if not (path / "dataset_dict.json").is_file():
        raise FileNotFoundError(f"{path}: no dataset here (zephyra data build writes the domains' datasets)")
    ds = load_from_disk(str(path))
    if "test" not in ds:
        raise EvalError(f"{path}: no test split (has {', '.join(ds)})")
    missing = [c for c in columns if c not in ds["test"].column_names]
    if missing:
        raise EvalError(f"{path}: test split lacks column {missing[0]!r}")
    return ds["test"]


def perplexity_rows(texts: Sequence[str], tokenizer, max_tokens: int, seq_len: int, seed: int = SEED
                    ) -> list[list[int]]:
    """Documents in a seeded order as ``bos ids eos`` end to end, the first ``max_tokens`` tokens, cut into rows
    of ``seq_len`` (the last one may be shorter)."""
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    stream: list[int] = []
    for i in np.random.default_rng(seed).permutation(len(texts)):
        stream += [bos, *tokenizer(texts[int(i)], add_special_tokens=False)["input_ids"], eos]
        if len(stream) >= max_tokens:
            break
    stream = stream[:max_tokens]
    rows = [stream[s:s + seq_len] for s in range(0, len(stream), seq_len)]
    return [r for r in rows if len(r) >= 2]


def sample_indices(n: int, k: int, seed: int = SEED) -> list[int]:
    """``k`` of ``n`` indices drawn with a fixed seed, in stored order."""
    return sorted(int(i) for i in np.random.default_rng(seed).permutation(n)[:k])


def load_domain(data_root: str | os.PathLike, domain: str, tokenizer, cfg: EvalConfig, seq_len: int) -> DomainData:
    root = Path(data_root) / "domains" / domain
    raw = _test_split(root / "raw", ("text",))
    rows = perplexity_rows(raw["text"], tokenizer, cfg.max_ppl_tokens, seq_len)
    if not rows:
        raise EvalError(f"{root}/raw: the test split has no text to score")
    qa = _test_split(root / "qa", ("question", "answer"))
    picked = qa.select(sample_indices(len(qa), cfg.max_questions))
    if len(picked) == 0:
        raise EvalError(f"{root}/qa: the test split has no questions")
    return DomainData(domain, rows, list(picked["question"]), list(picked["answer"]))


# --- adapters -------------------------------------------------------------------------------------------------

def find_adapters(root: str | os.PathLike) -> dict[str, Path]:
    """The adapters at or under ``root`` (``scan_adapters``' rules), or a one-line EvalError when there are none."""
    from ..adapters import scan_adapters

    if not Path(root).is_dir():
        raise EvalError(f"{root}: no such adapters directory")
    found = scan_adapters(root)
    if not found:
        raise EvalError(f"{root}: no adapters found (no subdirectory holds adapter_config.json)")
    return found


def adapter_info(name: str, path: str | os.PathLike, fingerprint) -> AdapterInfo:
    """What the adapter's manifest says, checked against this base (a one-line error for another base), plus
    its size on disk and parameter count measured from its files."""
    from ..adapters import check_adapter_base

    path = Path(path)
    if not (path / "adapter_config.json").is_file():
        raise EvalError(f"{path}: not an adapter directory (no adapter_config.json)")
    manifest = check_adapter_base(path, fingerprint)
    peft_type = json.loads((path / "adapter_config.json").read_text()).get("peft_type", "?")
    files = [p for p in path.rglob("*") if p.is_file() and p.name != "manifest.json"]
    metrics = dict(manifest.get("metrics") or {})
    params = metrics.get("trainable_params")
    return AdapterInfo(name=name, path=str(path), domain=manifest.get("domain") or name,
                       method=manifest.get("method") or str(peft_type).lower(), peft_type=str(peft_type),
                       bytes_on_disk=sum(p.stat().st_size for p in files),
                       trainable_params=int(params) if params is not None else count_params(path), metrics=metrics)


def count_params(path: Path) -> int:
    """Parameters stored in the adapter's weights file (0 when there is no safetensors file)."""
    from safetensors import safe_open

    weights = path / "adapter_model.safetensors"
    if not weights.is_file():
        return 0
    with safe_open(str(weights), framework="pt") as f:
        return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())


# --- progress -------------------------------------------------------------------------------------------------

class Ticker:
    """A progress line at most every ``every`` seconds (and at the end): done/total, elapsed, estimate left."""

    def __init__(self, total: int, echo: Callable[[str], None] | None, every: float = 5.0):
        self.total, self.echo, self.every = max(total, 1), echo, every
        self.done, self.start, self.last = 0, time.monotonic(), time.monotonic()

    def __call__(self, what: str, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if self.echo is None or (now - self.last < self.every and self.done < self.total):
            return
        self.last, elapsed = now, now - self.start
        left = elapsed / self.done * (self.total - self.done)
        self.echo(f"eval {self.done}/{self.total} batches ({100 * self.done / self.total:.0f}%), {what}, "
                  f"{elapsed:.0f}s elapsed, ~{left:.0f}s left")


def stderr_echo(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# --- one model on the held-out data -----------------------------------------------------------------------------

def rows_nll(model, rows: list[list[int]], batch_size: int, pad_id: int, tick=None) -> tuple[float, int]:
    """(summed NLL in nats, predicted tokens) over ``rows``, batched with right padding."""
    return summed_nll(model, _batches(rows, batch_size, pad_id), tick=(lambda: tick("perplexity")) if tick else None)


def encode_questions(tokenizer, questions: Sequence[str], context: int, max_new_tokens: int) -> list[list[int]]:
    """Questions through the chat template (generation prompt added); a prompt too long for the context keeps
    its end."""
    from ..chat import encode_prompt

    limit = context - max_new_tokens
    if limit < 1:
        raise EvalError(f"max_new_tokens {max_new_tokens} leaves no room in the {context}-token context")
    return [encode_prompt(tokenizer, q, fmt="chat")[-limit:] for q in questions]


def left_pad(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, rows))
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    return ids, mask


@torch.no_grad()
def answer(model, tokenizer, questions: Sequence[str], max_new_tokens: int, batch_size: int, tick=None) -> list[str]:
    """Greedy answers by ``model.generate`` (any PEFT method), left-padded batches of similar length."""
    encoded = encode_questions(tokenizer, questions, model.config.max_position_embeddings, max_new_tokens)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    out = [""] * len(encoded)
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        ids, mask = left_pad([encoded[i] for i in idx], pad)
        gen = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                             eos_token_id=tokenizer.eos_token_id, pad_token_id=pad)
        for j, i in enumerate(idx):
            out[i] = tokenizer.decode(gen[j, ids.shape[1]:], skip_special_tokens=True).strip()
        if tick:
            tick("answers")
    return out


def score_answers(answers: list[str], references: list[str]) -> dict[str, float]:
    squad, rg = squad_scores(answers, references), rouge(answers, references)
    return {"f1": squad["f1"], "exact_match": squad["exact_match"], "bleu": bleu(answers, references),
            "rouge1": rg["rouge1"], "rouge2": rg["rouge2"], "rougeL": rg["rougeL"]}


# --- the base and its adapters, loaded once ---------------------------------------------------------------------

class Evaluator:
    """The base model loaded once and every adapter loaded onto it once. ``answers(data, rows)`` answers one
    domain's questions for many rows at once; ``perplexity(row, data)`` scores one row ("base" or an adapter).

    Answers of the base and of plain-LoRA adapters share batches through the multi-adapter engine (a row per
    (question, adapter), each with its own LoRA: one decoding loop for all of them, on a plain copy of the base
    holding the same weights); other methods (DoRA, IA3, prefix) answer through PEFT's ``generate``."""

    def __init__(self, base_dir: str | os.PathLike, adapters: Mapping[str, str | os.PathLike], cfg: EvalConfig):
        from ..adapters import base_fingerprint
        from ..loader import load_model

        if not (Path(base_dir) / "config.json").is_file():
            raise EvalError(f"{base_dir}: not a model directory (no config.json)")
        if "base" in adapters:
            raise EvalError("an adapter may not be named 'base': that is the base model's row")
        model, self.tokenizer = load_model(base_dir)
        self.cfg = cfg
        self.seq_len = min(cfg.seq_len, model.config.max_position_embeddings)
        self.context = model.config.max_position_embeddings
        fingerprint = base_fingerprint(model)
        self.adapters = {n: adapter_info(n, p, fingerprint) for n, p in adapters.items()}  # all checked first
        plain = copy.deepcopy(model)  # the engine's base: PEFT wraps ``model`` in place below
        self.base_model, self.holders = self._load(model, fingerprint)
        self.engine = self._engine(plain)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

    def _load(self, model, fingerprint):
        """PEFT keeps one adapter type per model: one copy of the base per type, every adapter loaded once."""
        from ..adapters import load_adapter

        groups: dict[str, list[str]] = {}
        for name, info in self.adapters.items():
            groups.setdefault(info.peft_type, []).append(name)
        bases = [model] + [copy.deepcopy(model) for _ in list(groups)[1:]]  # copies before any wrapping
        holders = {}
        for i, names in enumerate(groups.values()):
            m = bases[i]
            for name in names:
                m = load_adapter(m, self.adapters[name].path, name=name, fingerprint=fingerprint)
            holders.update({name: m.eval() for name in names})
        first = next(iter(holders.values()), model)
        return first, holders

    def _engine(self, plain):
        """The multi-adapter engine over every adapter it can apply (plain LoRA), read from the PeftModels; None
        for a base that is not a Zephyra (no trunk and branch: PEFT's generate answers every row)."""
        from ..resolve.lora import AdapterBank, AdapterBankError
        from ..resolve.multi import MultiLoRAEngine

        if getattr(plain.config, "model_type", None) != "zephyra":
            return None
        updates = {}
        for name, holder in self.holders.items():
            try:
                updates[name] = AdapterBank.from_peft(holder, [name]).adapters[name]
            except AdapterBankError:  # DoRA, IA3, prefix: PEFT's generate answers for these
                pass
        return MultiLoRAEngine(plain.eval(), AdapterBank(updates))

    @contextlib.contextmanager
    def active(self, row: str):
        """The PEFT model that computes ``row``: an adapter made active, or the base with adapters disabled."""
        from peft import PeftModel

        from ..adapters import switch_adapter

        if row == "base":
            m = self.base_model
            with m.disable_adapter() if isinstance(m, PeftModel) else contextlib.nullcontext():
                yield m
        else:
            yield switch_adapter(self.holders[row], row)

    def load_domains(self, data_root, domains: Sequence[str]) -> dict[str, DomainData]:
        return {d: load_domain(data_root, d, self.tokenizer, self.cfg, self.seq_len) for d in domains}

    def _shared_rows(self, rows: Sequence[str]) -> list[str]:
        """The rows the shared engine answers side by side (none without an engine: a non-Zephyra base)."""
        if self.engine is None:
            return []
        return [r for r in rows if r == "base" or r in self.engine.bank.names]

    def batches(self, data: DomainData, rows: Sequence[str]) -> int:
        """Progress units for ``rows`` on one domain: perplexity batches plus answer batches."""
        ppl = -(-len(data.rows) // self.cfg.batch_size) * len(rows)
        shared = len(self._shared_rows(rows))
        gen = -(-len(data.questions) * shared // self.cfg.gen_batch_size)
        gen += -(-len(data.questions) // self.cfg.batch_size) * (len(rows) - shared)
        return ppl + gen

    def perplexity(self, row: str, data: DomainData, tick=None) -> tuple[float, int]:
        """(mean NLL in nats, predicted tokens) of ``row`` on the domain's held-out rows."""
        with self.active(row) as model:
            nll, tokens = rows_nll(model, data.rows, self.cfg.batch_size, self.pad_id,
                                   tick and (lambda w: tick(f"{row} on {data.name} {w}")))
        return nll / tokens, tokens

    def answers(self, data: DomainData, rows: Sequence[str], tick=None) -> dict[str, list[str]]:
        """Greedy answers of every row to the domain's questions."""
        shared = self._shared_rows(rows)
        out = self._shared_answers(data, shared, tick) if shared else {}
        for row in rows:
            if row not in out:
                with self.active(row) as model:
                    out[row] = answer(model, self.tokenizer, data.questions, self.cfg.max_new_tokens,
                                      self.cfg.batch_size, tick and (lambda w, r=row: tick(f"{r} on {data.name} {w}")))
        return out

    def _shared_answers(self, data: DomainData, rows: list[str], tick) -> dict[str, list[str]]:
        """One job per (question, row), a question's rows side by side (same length: no padding between them)."""
        encoded = encode_questions(self.tokenizer, data.questions, self.context, self.cfg.max_new_tokens)
        jobs = [(q, r) for q in sorted(range(len(encoded)), key=lambda i: len(encoded[i])) for r in rows]
        out = {r: [""] * len(encoded) for r in rows}
        for s in range(0, len(jobs), self.cfg.gen_batch_size):
            batch = jobs[s:s + self.cfg.gen_batch_size]
            ids, mask = left_pad([encoded[q] for q, _ in batch], self.pad_id)
            gen = self.engine.generate(ids, mask, adapters=[r for _, r in batch],
                                       max_new_tokens=self.cfg.max_new_tokens,
                                       eos_token_id=self.tokenizer.eos_token_id, pad_token_id=self.pad_id)
            for j, (q, r) in enumerate(batch):
                out[r][q] = self.tokenizer.decode(gen.tokens[j], skip_special_tokens=True).strip()
            if tick:
                tick(f"answers on {data.name}")
        return out

    def cell(self, row: str, data: DomainData, answers: list[str], tick=None) -> Cell:
        mean, tokens = self.perplexity(row, data, tick)
        return Cell(perplexity=math.exp(mean), mean_nll=mean, ppl_tokens=tokens, questions=len(answers),
                    **score_answers(answers, data.references))


def _settings(base_dir, data_root, cfg: EvalConfig, seq_len: int, domains) -> dict:
    return {"base": str(base_dir), "data": str(data_root), "domains": list(domains), "held_out_split": "test",
            "seed": SEED, **asdict(cfg), "seq_len": seq_len, "prompt_format": "chat", "decoding": "greedy"}


def _run(ev: Evaluator, data: dict[str, DomainData], plan: dict[str, list[str]], progress, every: float):
    """Cells of every (row, domain) in ``plan`` (domain -> rows), domain by domain (so one domain's questions
    are answered by all its rows in shared batches); returns (cells, answers, seconds)."""
    tick = Ticker(sum(ev.batches(data[d], rows) for d, rows in plan.items()), progress, every)
    t0 = time.perf_counter()
    cells: dict[str, dict[str, Cell]] = {}
    answers: dict[str, dict[str, list[dict]]] = {}
    for d, rows in plan.items():
        said = ev.answers(data[d], rows, tick)
        for row in rows:
            cells.setdefault(row, {})[d] = ev.cell(row, data[d], said[row], tick)
            answers.setdefault(row, {})[d] = [{"question": q, "reference": r, "answer": a} for q, r, a in
                                              zip(data[d].questions, data[d].references, said[row], strict=True)]
    return cells, answers, time.perf_counter() - t0


def evaluate_matrix(base_dir: str | os.PathLike, adapters: Mapping[str, str | os.PathLike],
                    data_root: str | os.PathLike, domains: Sequence[str] | None = None, *,
                    max_ppl_tokens: int = 32768, max_questions: int = 100, max_new_tokens: int = 48,
                    batch_size: int = 16, seq_len: int = 256, gen_batch_size: int = 64, goals: Goals | None = None,
                    progress: Callable[[str], None] | None = stderr_echo, progress_every: float = 5.0
                    ) -> MatrixResult:
    """The isolation matrix: rows "base" and every adapter, a column per domain, each cell held-out perplexity
    and QA scores; ``result.verdicts`` judges each adapter against ``goals``.

    zephyra eval adapters --base runs/phase2/final --adapters runs/adapters --data runs/data --out runs/eval
    """
    cfg = EvalConfig(max_ppl_tokens, max_questions, max_new_tokens, batch_size, seq_len, gen_batch_size)
    domains = check_domains(data_root, domains)
    ev = Evaluator(base_dir, adapters, cfg)
    data = ev.load_domains(data_root, domains)
    rows = ["base", *ev.adapters]
    cells, answers, seconds = _run(ev, data, {d: rows for d in domains}, progress, progress_every)
    cells = {r: {d: cells[r][d] for d in domains} for r in rows}
    settings = {**_settings(base_dir, data_root, cfg, ev.seq_len, domains), "seconds": round(seconds, 1)}
    return MatrixResult(rows=rows, domains=domains, cells=cells, adapters=ev.adapters, answers=answers,
                        settings=settings, goals=goals or Goals())


# --- methods compared -----------------------------------------------------------------------------------------

@dataclass
class MethodRow:
    name: str
    method: str
    domain: str
    perplexity: float  # own domain, held out
    base_perplexity: float
    f1: float  # own domain QA
    base_f1: float
    trainable_params: int
    train_seconds: float | None  # from the manifest (None: not recorded)
    peak_rss_mb: float | None
    bytes_on_disk: int  # measured from the files
    path: str

    @property
    def ppl_ratio(self) -> float:
        return self.perplexity / self.base_perplexity


@dataclass
class MethodComparison:
    rows: list[MethodRow]
    base_cells: dict[str, Cell]  # domain -> the base's cell
    settings: dict

    def to_dict(self) -> dict:
        return {"settings": self.settings, "base": {d: asdict(c) for d, c in self.base_cells.items()},
                "rows": [{**asdict(r), "ppl_ratio": r.ppl_ratio} for r in self.rows]}


def _method_names(dirs: Sequence[Path]) -> dict[str, Path]:
    """``<domain>-<method>`` from each manifest; the directory name when that is taken or unknown."""
    from ..manifest import read_manifest

    out: dict[str, Path] = {}
    for d in dirs:
        try:
            m = read_manifest(d)
            name = f"{m.get('domain') or d.name}-{m.get('method') or 'adapter'}"
        except (FileNotFoundError, ValueError):
            name = d.name
        out[d.name if name in out or name == "base" else name] = d
    return out


def compare_methods(base_dir: str | os.PathLike, adapter_dirs: Sequence[str | os.PathLike],
                    data_root: str | os.PathLike, *, max_ppl_tokens: int = 32768, max_questions: int = 100,
                    max_new_tokens: int = 48, batch_size: int = 16, seq_len: int = 256, gen_batch_size: int = 64,
                    progress: Callable[[str], None] | None = stderr_echo, progress_every: float = 5.0
                    ) -> MethodComparison:
    """Each adapter (any PEFT method) on its own domain's held-out data, beside the base on the same data, with
    its cost: trainable parameters, training time and peak memory (as its manifest records them) and its size
    on disk (measured).

    zephyra eval methods --base runs/phase2/final --adapters runs/methods/lora runs/methods/ia3 --out runs/eval-methods
    """
    if not adapter_dirs:
        raise EvalError("no adapters given")
    cfg = EvalConfig(max_ppl_tokens, max_questions, max_new_tokens, batch_size, seq_len, gen_batch_size)
    ev = Evaluator(base_dir, _method_names([Path(p) for p in adapter_dirs]), cfg)
    domains = check_domains(data_root, list(dict.fromkeys(a.domain for a in ev.adapters.values())))
    data = ev.load_domains(data_root, domains)
    plan = {d: ["base", *(n for n, a in ev.adapters.items() if a.domain == d)] for d in domains}
    cells, _, seconds = _run(ev, data, plan, progress, progress_every)
    rows = []
    for name, info in ev.adapters.items():
        cell, base, m = cells[name][info.domain], cells["base"][info.domain], info.metrics
        rows.append(MethodRow(name=name, method=info.method, domain=info.domain, perplexity=cell.perplexity,
                              base_perplexity=base.perplexity, f1=cell.f1, base_f1=base.f1,
                              trainable_params=info.trainable_params, train_seconds=m.get("train_seconds"),
                              peak_rss_mb=m.get("peak_rss_mb"), bytes_on_disk=info.bytes_on_disk, path=info.path))
    settings = {**_settings(base_dir, data_root, cfg, ev.seq_len, domains), "seconds": round(seconds, 1)}
    return MethodComparison(rows=rows, base_cells=cells["base"], settings=settings)
