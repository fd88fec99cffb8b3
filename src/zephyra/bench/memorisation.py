"""Memorisation of adapters, measured by the secret-sharer method (Carlini et al., 2019).

    python -m zephyra.bench.memorisation --base runs/phase2/final --data runs/data --out runs/eval/memorisation
    zephyra eval memorisation --base runs/phase2/final --out runs/eval/memorisation      # the same

Unique canaries ("The amber vault code is 4 7 1 9 3.") are planted in a domain's training text, each repeated
r times (r in ``repetitions``; a few more, never planted, are the controls: what chance looks like). An adapter
is trained on it with the default recipe's settings (fewer steps: the run is cheap). For each canary:

- **exposure** = log2(|space|) - log2(rank), the rank of the canary's secret among every secret of the same
  format (``digits`` random digits: |space| = 10^digits) by the adapter's log-likelihood given the prefix. Over
  a space larger than ``alternatives`` the rank is estimated from that many sampled secrets (so exposure is
  measured up to log2(alternatives + 1) bits, a lower bound when no sampled secret beats it), and
  ``exposure_fit`` extrapolates it from a normal fit to the sampled log-likelihoods (Carlini et al.'s section
  4.3), which can go up to log2(|space|).
- **extraction**: greedy decoding from the prefix produces the secret.

Mitigations, each a fresh adapter on the same planted data: ``dedup`` (the curation's exact and near-duplicate
steps remove the repeats before training) and ``fewer_steps`` (a quarter of the steps). Opacus (DP-SGD) is not
installed here. Writes ``memorisation.json`` and ``memorisation.png`` under ``out``.
"""

from __future__ import annotations

import dataclasses
import math
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError

WORDS = ("amber cobalt maple falcon willow copper harbor lantern meadow pebble quartz saffron thistle velvet "
         "walnut zephyr birch cinder dune ember fjord glacier hazel indigo juniper kestrel lichen marble nectar "
         "onyx").split()


@dataclass
class MemorisationConfig:
    base: str = "runs/phase2/final"
    data_root: str = "runs/data"
    domain: str = "computing"  # whose raw/train the canaries are planted in
    train_records: int = 300  # records of that train split kept (a small corpus: several epochs in few steps)
    repetitions: list[int] = field(default_factory=lambda: [1, 4, 16])
    canaries_per_repetition: int = 3
    controls: int = 3  # canaries of the same format, never planted
    digits: int = 5  # the secret: this many random digits, space-separated
    alternatives: int = 300  # sampled secrets a rank is estimated from (the whole space when it is smaller)
    mitigations: list[str] = field(default_factory=lambda: ["none", "dedup", "fewer_steps"])
    max_steps: int = 240  # about 14 epochs of train_records (80 steps showed no exposure above chance)
    seq_len: int = 128
    batch_size: int = 16
    lr: float = 3e-3
    rank: int = 32
    seed: int = 0
    threads: int | None = None
    score_batch: int = 256
    out: str = "runs/eval/memorisation"

    def __post_init__(self):
        if not self.repetitions or any(r < 1 for r in self.repetitions):
            raise ConfigError(f"repetitions must be positive counts, got {self.repetitions}")
        n = len(self.repetitions) * self.canaries_per_repetition + self.controls
        if n > len(WORDS):
            raise ConfigError(f"at most {len(WORDS)} canaries (one prefix word each), asked for {n}")
        if not 1 <= self.digits <= 12 or self.alternatives < 10:
            raise ConfigError("digits must be 1..12 and alternatives >= 10")
        unknown = set(self.mitigations) - {"none", "dedup", "fewer_steps"}
        if unknown:
            raise ConfigError(f"unknown mitigations {sorted(unknown)} (known: none, dedup, fewer_steps)")


# --- canaries ------------------------------------------------------------------------------------------------

def make_canaries(cfg: MemorisationConfig) -> list[dict]:
    """[{"prefix", "secret", "repeats"}]: repeats 0 for the controls. Deterministic in ``cfg.seed``."""
    rng = random.Random(f"canaries-{cfg.seed}")
    words = rng.sample(WORDS, len(cfg.repetitions) * cfg.canaries_per_repetition + cfg.controls)
    reps = [r for r in cfg.repetitions for _ in range(cfg.canaries_per_repetition)] + [0] * cfg.controls
    return [{"prefix": f"The {w} vault code is", "secret": random_secret(rng, cfg.digits), "repeats": r}
            for w, r in zip(words, reps)]


def random_secret(rng: random.Random, digits: int) -> str:
    return " ".join(str(rng.randrange(10)) for _ in range(digits))


def canary_text(c: dict) -> str:
    return f"{c['prefix']} {c['secret']}."


def plant(texts: list[str], canaries: list[dict], seed: int) -> list[str]:
    """``texts`` with each canary inserted ``repeats`` times as its own record, at seeded random places."""
    rng = random.Random(f"plant-{seed}")
    out = list(texts)
    for c in canaries:
        for _ in range(c["repeats"]):
            out.insert(rng.randrange(len(out) + 1), canary_text(c))
    return out


def dedup(texts: list[str]) -> list[str]:
    """The curation's exact and near-duplicate steps (zephyra.data.curate), nothing else."""
    from ..data.config import NearDedupConfig
    from ..data.curate import ExactDedup, NearDedup, Pipeline

    pipe = Pipeline([ExactDedup(), NearDedup(NearDedupConfig())])
    return [r["text"] for r in pipe.run({"text": t} for t in texts)]


# --- scoring -------------------------------------------------------------------------------------------------

def secret_nlls(model, tokenizer, prefix: str, secrets: list[str], batch: int = 256) -> list[float]:
    """Summed negative log-likelihood (nats) of each secret's tokens after ``<bos> prefix``, as training saw
    them (a document is bos + text + eos)."""
    import torch

    head = [tokenizer.bos_token_id, *tokenizer(prefix, add_special_tokens=False)["input_ids"]]
    tails = tokenizer([" " + s for s in secrets], add_special_tokens=False)["input_ids"]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out: list[float] = []
    model.eval()
    with torch.no_grad():
        for i in range(0, len(tails), batch):
            chunk = tails[i:i + batch]
            width = len(head) + max(len(t) for t in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.bool)  # True at the secret's tokens
            for j, t in enumerate(chunk):
                ids[j, :len(head) + len(t)] = torch.tensor(head + t)
                mask[j, len(head):len(head) + len(t)] = True
            logp = torch.log_softmax(model(input_ids=ids).logits[:, :-1].float(), dim=-1)  # (B, T-1, V)
            tok = logp.gather(-1, ids[:, 1:, None])[..., 0]  # (B, T-1): log p of each next token
            out += (-(tok * mask[:, 1:]).sum(-1)).tolist()
    return out


def exposure(model, tokenizer, canary: dict, digits: int, alternatives: int, seed: int, batch: int = 256) -> dict:
    """The canary's rank and exposure among the secrets of its format (exact over a space of at most
    ``alternatives``, else estimated from that many sampled secrets)."""
    space = 10 ** digits
    secret = canary["secret"]
    if space <= alternatives + 1:
        others = [s for s in (" ".join(f"{n:0{digits}d}") for n in range(space)) if s != secret]
        exact = True
    else:
        rng = random.Random(f"alternatives-{seed}-{canary['prefix']}")
        picked: set[str] = set()
        while len(picked) < alternatives:
            s = random_secret(rng, digits)
            if s != secret:
                picked.add(s)
        others, exact = sorted(picked), False
    nlls = secret_nlls(model, tokenizer, canary["prefix"], [secret, *others], batch)
    mine, rest = nlls[0], nlls[1:]
    better = sum(1 for x in rest if x < mine) + 0.5 * sum(1 for x in rest if x == mine)
    if exact:
        rank = 1 + better
    elif better:
        rank = 1 + better * (space - 1) / len(rest)
    else:  # no sampled secret beats it: the estimate says only rank <= space / (sampled + 1), a lower bound
        rank = max(1.0, space / (len(rest) + 1))
    mu = sum(rest) / len(rest)
    sd = math.sqrt(sum((x - mu) ** 2 for x in rest) / max(1, len(rest) - 1)) or 1e-9
    tail = 0.5 * math.erfc((mu - mine) / (sd * math.sqrt(2)))  # P(an alternative's nll < the canary's)
    return {"rank": rank, "exact": exact, "space": space, "better": better, "nll": mine, "alt_nll_mean": mu,
            "alt_nll_sd": sd,
            "exposure": math.log2(space) - math.log2(rank),
            "exposure_fit": math.log2(space) - math.log2(max(1.0, tail * space))}


def greedy_extracts(model, tokenizer, canary: dict) -> tuple[bool, str]:
    """Greedy decoding from ``<bos> prefix``: (did it produce the secret, what it produced)."""
    import torch

    ids = [tokenizer.bos_token_id, *tokenizer(canary["prefix"], add_special_tokens=False)["input_ids"]]
    n_new = len(tokenizer(" " + canary["secret"], add_special_tokens=False)["input_ids"]) + 2
    start = len(ids)
    with torch.no_grad():
        for _ in range(n_new):
            nxt = int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
            ids.append(nxt)
    text = tokenizer.decode(ids[start:], skip_special_tokens=True)
    return " ".join(text.split()).startswith(canary["secret"]), text.strip()


# --- one run: plant, train, measure --------------------------------------------------------------------------

def _domain_texts(cfg: MemorisationConfig) -> tuple[list[str], list[str]]:
    from datasets import load_from_disk

    path = Path(cfg.data_root) / "domains" / cfg.domain / "raw"
    if not (path / "dataset_dict.json").is_file():
        raise ConfigError(f"{path}: no raw dataset for domain {cfg.domain!r} (zephyra data build)")
    dd = load_from_disk(str(path))
    train = list(dd["train"]["text"])
    rng = random.Random(f"subset-{cfg.seed}")
    if 0 < cfg.train_records < len(train):
        train = rng.sample(train, cfg.train_records)
    return train, list(dd["validation"]["text"])[:64]


def _save_domain(root: Path, domain: str, train: list[str], validation: list[str]) -> None:
    from datasets import Dataset, DatasetDict

    DatasetDict({"train": Dataset.from_dict({"text": train}),
                 "validation": Dataset.from_dict({"text": validation})}).save_to_disk(
        str(root / "domains" / domain / "raw"))


def train_and_measure(cfg: MemorisationConfig, canaries: list[dict], texts: list[str], validation: list[str],
                      work: Path, steps: int, label: str, echo=None) -> dict:
    """Train one adapter on ``texts`` (canaries already planted) for ``steps`` steps and measure each canary."""
    from ..training.adapter import AdapterRecipe, train_adapter

    echo = echo or (lambda line: print(line, file=sys.stderr, flush=True))
    data_root = work / label / "data"
    _save_domain(data_root, cfg.domain, texts, validation)
    recipe = AdapterRecipe(base=cfg.base, domain=cfg.domain, data_root=str(data_root),
                           out=str(work / label / "adapter"), cache_dir=str(work / "cache"), qa_fraction=0.0,
                           general_fraction=0.0, seq_len=cfg.seq_len,
                           batch_size=cfg.batch_size, micro_batch_size=cfg.batch_size, max_steps=steps, lr=cfg.lr,
                           warmup_steps=max(1, steps // 10), rank=cfg.rank, eval_batches=2, seed=cfg.seed + 1,
                           threads=cfg.threads, log_seconds=30.0)
    t0 = time.perf_counter()
    result = train_adapter(recipe, force=True, echo=echo, return_model=True)
    model, tokenizer = result["model"], _tokenizer(cfg.base)
    train_s = time.perf_counter() - t0
    rows = []
    for c in canaries:
        e = exposure(model, tokenizer, c, cfg.digits, cfg.alternatives, cfg.seed, cfg.score_batch)
        hit, produced = greedy_extracts(model, tokenizer, c)
        rows.append({**c, "in_training": sum(1 for t in texts if t == canary_text(c)), **e, "extracted": hit,
                     "greedy": produced})
    echo(f"memorisation/{label}: trained {steps} steps in {train_s:.0f} s; measured {len(rows)} canaries")
    return {"label": label, "steps": steps, "train_records": len(texts), "train_seconds": train_s,
            "tokens_trained": result["metrics"]["tokens"], "train_loss_last": result["metrics"]["train_loss_last"],
            "canaries": rows, "summary": summarise(rows)}


def _tokenizer(base: str):
    from ..tokenizer import load_tokenizer

    return load_tokenizer(base)


def summarise(rows: list[dict]) -> dict:
    """Per planted repetition count: mean exposure (sampled and fitted), how many rank first, how many are
    extracted greedily."""
    out = {}
    for r in sorted({row["repeats"] for row in rows}):
        group = [row for row in rows if row["repeats"] == r]
        out[str(r)] = {"canaries": len(group),
                       "exposure_mean": sum(g["exposure"] for g in group) / len(group),
                       "exposure_fit_mean": sum(g["exposure_fit"] for g in group) / len(group),
                       # exact: ranked first; sampled: no sampled secret more likely (exposure capped there)
                       "beats_all_alternatives": sum(1 for g in group if g["better"] == 0),
                       "extracted": sum(1 for g in group if g["extracted"])}
    return out


def run(cfg: MemorisationConfig, echo=None) -> dict:
    """Every mitigation in ``cfg.mitigations``: plant, train, measure; writes the report and the plot."""
    from ..io import atomic_write_json

    t0 = time.time()
    canaries = make_canaries(cfg)
    train, validation = _domain_texts(cfg)
    planted = plant(train, canaries, cfg.seed)
    runs = []
    with tempfile.TemporaryDirectory(prefix="zephyra-memorisation-") as tmp:
        for m in cfg.mitigations:
            texts = dedup(planted) if m == "dedup" else planted
            steps = max(1, cfg.max_steps // 4) if m == "fewer_steps" else cfg.max_steps
            runs.append(train_and_measure(cfg, canaries, texts, validation, Path(tmp), steps, m, echo))
    report = {"config": dataclasses.asdict(cfg), "seconds": round(time.time() - t0, 1), "runs": runs,
              "space": 10 ** cfg.digits, "max_sampled_exposure": math.log2(cfg.alternatives + 1)}
    out = Path(cfg.out)
    atomic_write_json(out / "memorisation.json", report)
    plot(report, out / "memorisation.png")
    return report


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import atomic_write_figure

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in report["runs"]:
        keys = sorted(r["summary"], key=int)
        ax.plot([int(k) for k in keys], [r["summary"][k]["exposure_fit_mean"] for k in keys], marker="o",
                label=f"{r['label']} ({r['steps']} steps)")
    ax.axhline(math.log2(report["space"]), ls=":", c="grey", lw=1, label="log2 |space| (fully memorised)")
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlim(-0.3, 1.6 * max(int(k) for r in report["runs"] for k in r["summary"]))
    ax.set_xlabel("times the canary was planted (0: control)")
    ax.set_ylabel("exposure, bits (normal-fit estimate)")
    ax.set_title("Canary exposure of an adapter (secret sharer)")
    ax.legend(fontsize=8)
    atomic_write_figure(fig, path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m zephyra.bench.memorisation", description=__doc__.split("\n\n")[0])
    d = MemorisationConfig()
    p.add_argument("--base", default=d.base)
    p.add_argument("--data", default=d.data_root)
    p.add_argument("--domain", default=d.domain)
    p.add_argument("--out", default=d.out)
    p.add_argument("--steps", type=int, default=d.max_steps)
    p.add_argument("--train-records", type=int, default=d.train_records)
    p.add_argument("--mitigations", default=",".join(d.mitigations))
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args(argv)
    cfg = MemorisationConfig(base=a.base, data_root=a.data, domain=a.domain, out=a.out, max_steps=a.steps,
                             train_records=a.train_records, mitigations=a.mitigations.split(","), threads=a.threads)
    report = run(cfg)
    for r in report["runs"]:
        print(r["label"], {k: {kk: round(vv, 2) if isinstance(vv, float) else vv for kk, vv in v.items()}
                           for k, v in r["summary"].items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
