"""The likelihood router measured on a trained system, beside the trunk head and any saved router: every variant
(prompt formats, with or without the trunk head's logits, the combination fitted on train or on validation) from
one cache of features, the one with the best validation accuracy saved as a router, and each router's cost per
prompt against a plain prefill of the base on the same prompts, in the same run.

    python -m zephyra.bench.likelihood_router --model runs/phase2/final --adapters runs/adapters \\
        --data runs/data/router --out /tmp/lik/report --router external=runs/router/external

Writes ``OUT/table.md``, ``OUT/results.json``, ``OUT/features.npz`` and the routers ``OUT/likelihood`` (the selected
variant) and ``OUT/inmodel`` (the trunk head fitted on the same data). A variant's test numbers are computed from
the cached features exactly as its router's ``route`` computes them (same logits, same calibration).
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np


def _features(lp: dict, split: str, formats, head: bool) -> np.ndarray:
    from ..router.likelihood import block_features

    cols = [block_features(lp[f"{split}:{fmt}"]) for fmt in formats]
    if head:
        cols.append(lp[f"{split}:head"])
    return np.concatenate(cols, axis=1)


def _scores(labels, y, logits, cal) -> dict:
    from ..router.calibration import decide, expected_calibration_error, softmax
    from ..router.metrics import route_metrics

    p = softmax(logits, cal.temperature)
    decided, conf = decide(p, labels, cal.threshold)
    m = route_metrics(list(y), decided)
    m["ece"] = expected_calibration_error(conf, np.array(labels)[p.argmax(1)] == np.asarray(y))
    return m


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--adapters", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--per-label", type=int, default=100, help="train prompts per label for a train-fitted variant")
    ap.add_argument("--cost-prompts", type=int, default=128, help="test prompts timed for the cost")
    ap.add_argument("--router", action="append", default=[], help="NAME=DIR of a saved router to compare")
    ap.add_argument("--limit", type=int, default=0, help="at most this many validation and test prompts "
                                                         "per label (0: all; for a quick run)")
    args = ap.parse_args(argv)

    from ..adapters import scan_adapters
    from ..loader import load_model
    from ..router.artifact import load_router
    from ..router.calibration import fit_calibration
    from ..router.data import for_labels, load_router_data
    from ..router.evaluate import evaluate_router
    from ..router.inmodel import InModelTrainConfig, train_inmodel_router
    from ..router.likelihood import (
        LikelihoodRouter, LikelihoodTrainConfig, _fit_combination, per_label_sample, prefill_cost,
    )

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model, tok = load_model(args.model)
    model.eval()
    dirs = {n: str(p) for n, p in scan_adapters(args.adapters).items()}
    labels = ["base", *dirs]
    splits = for_labels(load_router_data(args.data), list(dirs), Path(args.data).parent)
    splits.update({k: per_label_sample(splits[k], args.limit) for k in ("validation", "test")})
    fit = per_label_sample(splits["train"], args.per_label)
    log = lambda *a: print(*a, flush=True)  # noqa: E731

    # --- the trunk head (the in-model router), on the full train split ---
    t0 = time.perf_counter()
    head, head_report = train_inmodel_router(model, tok, splits["train"], splits["validation"],
                                             InModelTrainConfig(labels=labels))
    head.save(out / "inmodel", config=head_report.pop("config"), metrics=head_report)
    log(f"trunk head: {time.perf_counter() - t0:.0f} s, validation {head_report['validation']['accuracy']:.3f}")

    # --- features, once ---
    n = len(labels)
    probe = LikelihoodRouter(model, tok, dirs, labels, np.zeros((n, n)), np.zeros(n), np.zeros(n), np.ones(n),
                             ["chat", "raw"])
    cache: dict[str, np.ndarray] = {}
    ys = {"fit": fit.labels, "validation": splits["validation"].labels, "test": splits["test"].labels}
    timing = {}
    for name, sp in (("validation", splits["validation"]), ("fit", fit), ("test", splits["test"])):
        cache[f"{name}:head"] = head.logits(sp.prompts)
        for fmt in ("chat", "raw"):
            t0 = time.perf_counter()
            cache[f"{name}:{fmt}"] = probe.branch_statistics(sp.prompts, fmt)
            timing[f"{name}:{fmt}"] = time.perf_counter() - t0
            log(f"features {name}/{fmt}: {len(sp)} prompts, {timing[f'{name}:{fmt}']:.0f} s")
    np.savez(out / "features.npz", **{k.replace(":", "__"): v for k, v in cache.items()})

    # --- variants ---
    rows, best = [], None
    for fmt in ("chat", "raw"):  # no fitting at all: the highest ratio, base when none is above 0
        x = cache[f"test:{fmt}"][:, :n]
        from ..router.metrics import route_metrics
        m = route_metrics(list(ys["test"]), list(np.array(labels)[(x - x[:, :1]).argmax(1)]))
        rows.append({"variant": f"argmax of the ratios, {fmt}, no fit", "validation_accuracy": None, **m, "ece": None})
    for formats, use_head, fit_on in itertools.product([["chat"], ["raw"], ["chat", "raw"]], [False, True],
                                                       ["train", "validation"]):
        cfg = LikelihoodTrainConfig(prompt_formats=formats, head=use_head, fit_on=fit_on, per_label=args.per_label)
        xv = _features(cache, "validation", formats, use_head)
        xf, yf = (_features(cache, "fit", formats, use_head), ys["fit"]) if fit_on == "train" else (xv,
                                                                                                    ys["validation"])
        w, b, mean, scale, c, val_logits = _fit_combination(xf, yf, xv, ys["validation"], labels, cfg)
        cal = fit_calibration(val_logits, labels, ys["validation"], cfg.calibration)
        vm = _scores(labels, ys["validation"], val_logits, cal)
        tm = _scores(labels, ys["test"], ((_features(cache, "test", formats, use_head) - mean) / scale) @ w.T + b,
                     cal)
        name = f"{'+'.join(formats)}{' + head' if use_head else ''}, fit on {fit_on}"
        rows.append({"variant": name, "C": c, "validation_accuracy": vm["accuracy"], **tm,
                     "temperature": cal.temperature, "threshold": cal.threshold})
        log(f"{name}: validation {vm['accuracy']:.3f}, test {tm['accuracy']:.3f}")
        if best is None or vm["accuracy"] > best[0]:
            best = (vm["accuracy"], cfg, (w, b, mean, scale, c, cal), vm, name)

    # --- the selected variant as a router ---
    _, cfg, (w, b, mean, scale, c, cal), vm, name = best
    router = LikelihoodRouter(model, tok, dirs, labels, w, b, mean, scale, cfg.prompt_formats,
                              head if cfg.head else None, cal)
    router.save(out / "likelihood", config=asdict(cfg),
                metrics={"C": c, "validation": vm, "validation_out_of_fold": cfg.fit_on == "validation",
                         "selected_from": [r["variant"] for r in rows], **cal.to_dict()})
    log(f"selected: {name}")

    # --- cost against a plain prefill, same prompts, same run ---
    prompts = splits["test"].prompts[: args.cost_prompts]
    cost = {"likelihood": prefill_cost(router, prompts)}
    for fmts in (["chat"], ["raw"]):
        if fmts != cfg.prompt_formats:
            nf = 1 + 4 * len(dirs)  # one format's features (likelihood.block_features)
            r1 = LikelihoodRouter(model, tok, dirs, labels, np.zeros((n, nf)), np.zeros(n), np.zeros(nf),
                                  np.ones(nf), fmts)
            cost["likelihood, " + fmts[0] + " only"] = prefill_cost(r1, prompts)
    others = {"inmodel (trunk head)": head}
    for spec in args.router:
        key, _, d = spec.partition("=")
        others[key] = load_router(d, model=model, tokenizer=tok)
    evals = {}
    for key, r in others.items():
        e = evaluate_router(r, splits["test"], name=key)
        evals[key] = e.row()
        pc = prefill_cost(_Timed(r, router), prompts)
        cost[key] = {**pc, "note": "route() of this router against the same prefill"}
        log(f"{key}: test {e.accuracy:.3f}, ratio {pc['ratio']:.2f}")
    result = {"labels": labels, "n": {k: len(v) for k, v in ys.items()}, "variants": rows, "selected": name,
              "others": evals, "cost": cost, "feature_seconds": timing}
    (out / "results.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
    (out / "table.md").write_text(_table(result))
    print(_table(result))
    return result


class _Timed:
    """Another router timed by ``prefill_cost``: its route, with the likelihood router's batching and prefill."""

    def __init__(self, router, like):
        self.inner, self.model, self.tokenizer = router, like.model, like.tokenizer
        self.batch_size, self.max_length = like.batch_size, like.max_length

    def route(self, prompts):
        return self.inner.route(prompts)


def _pct(x):
    return "-" if x is None else f"{100 * x:.1f}%"


def _table(result: dict) -> str:
    lines = ["| router / variant | validation acc. | test acc. | test abstention recall | test ECE |",
             "|---|---|---|---|---|"]
    for r in result["variants"]:
        ece = "-" if r.get("ece") is None else f"{r['ece']:.3f}"
        lines.append(f"| likelihood: {r['variant']} | {_pct(r['validation_accuracy'])} | {_pct(r['accuracy'])} | "
                     f"{_pct(r['abstention_recall'])} | {ece} |")
    for k, e in result["others"].items():
        lines.append(f"| {k} | | {_pct(e['accuracy'])} | {_pct(e['abstention_recall'])} | {e['ece']:.3f} |")
    lines += ["", "| cost (same prompts, same run) | ms/prompt | plain prefill ms/prompt | ratio |", "|---|---|---|---|"]
    for k, c in result["cost"].items():
        lines.append(f"| {k} | {c['route_ms_per_prompt']:.2f} | {c['prefill_ms_per_prompt']:.2f} | {c['ratio']:.2f}x |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
