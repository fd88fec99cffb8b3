"""The field's standard evaluator on our held-out sets: lm-evaluation-harness (``lm-eval``, its HF backend) runs
the Qwen3 export of the base and its adapters on local task files made from the data build, and our own loss
loop (``metrics.summed_nll``) scores the same documents on the Zephyra model itself; the report puts the two side
by side.

    zephyra eval harness --base runs/phase2/final --adapters runs/adapters --data runs/data --out runs/eval/harness

Tasks (``DIR/tasks/*.yaml`` + ``*.jsonl``, offline: ``dataset_path: json`` on local files):

- ``zephyra_general``: the general corpus's held-out documents (phase 2's validation split; those that fit the
  context), ``loglikelihood_rolling``: word and byte perplexity, bits per byte;
- ``zephyra_phase1``: phase 1's held-out word -> category questions as multiple choice (the right category and
  three others, seeded), the question through the chat template;
- ``zephyra_qa_<domain>``: each domain's held-out Q/A test split as multiple choice (the right answer and three
  answers to other questions of that domain), for the base and for the domain's adapter (lm-eval's ``peft=``).

Agreement is the point: the export is exact (docs/serving.md), both sides see the same token ids, so each metric
should match to float precision; a gap means one of the two evaluators counts differently.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
from pathlib import Path

from ..errors import ArtifactError, ConfigError
from ..io import atomic_write_json, atomic_write_text

CHOICES = 4


def _context(tokenizer, question: str) -> str:
    return tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                         tokenize=False)


def _mc_docs(rows: list[tuple[str, str]], tokenizer, pool: list[str], seed: int) -> list[dict]:
    rng = random.Random(seed)
    docs = []
    for question, answer in rows:
        others = sorted({p for p in pool if p != answer})
        if len(others) < CHOICES - 1:
            raise ConfigError(f"too few distinct answers ({len(others) + 1}) to make {CHOICES}-way choices")
        choices = rng.sample(others, CHOICES - 1)
        gold = rng.randrange(CHOICES)
        choices.insert(gold, answer)
        docs.append({"context": _context(tokenizer, question), "choices": choices, "gold": gold})
    return docs


def build_tasks(data_root: Path, tokenizer, out: Path, *, limit: int, max_len: int, domains: list[str],
                seed: int = 0) -> dict[str, list[dict]]:
    """Write the task YAMLs and JSONL files under ``out``; returns {task: docs}."""
    from datasets import load_from_disk

    tasks: dict[str, list[dict]] = {}
    general = load_from_disk(str(data_root / "phase2"))
    split = "test" if "test" in general else "validation"
    texts = [t for t in general[split]["text"] if t.strip() and len(tokenizer(t)["input_ids"]) < max_len]  # 1 window
    tasks["zephyra_general"] = [{"text": t} for t in texts[:limit]]
    phase1 = load_from_disk(str(data_root / "phase1"))["validation"]
    cats = [(r["prompt"], r["category"]) for r in phase1 if r["kind"] == "category"]
    tasks["zephyra_phase1"] = _mc_docs(cats[:limit], tokenizer, [c for _, c in cats], seed)
    for d in domains:
        qa = load_from_disk(str(data_root / "domains" / d / "qa"))["test"]
        pairs = [(q, a) for q, a in zip(qa["question"], qa["answer"]) if a.strip()]
        tasks[f"zephyra_qa_{d}"] = _mc_docs(pairs[:limit], tokenizer, [a for _, a in pairs], seed)
    if not tasks["zephyra_general"]:
        raise ConfigError(f"{data_root / 'phase2'}: no held-out document fits the context of {max_len} tokens")
    out.mkdir(parents=True, exist_ok=True)
    for name, docs in tasks.items():
        data = out / f"{name}.jsonl"
        atomic_write_text(data, "".join(json.dumps(d) + "\n" for d in docs))
        head = (f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {json.dumps(str(data))}\n"
                "test_split: test\n")
        if name == "zephyra_general":
            body = ("output_type: loglikelihood_rolling\ndoc_to_text: ''\ndoc_to_target: text\n"
                    "metric_list:\n  - metric: word_perplexity\n  - metric: byte_perplexity\n"
                    "  - metric: bits_per_byte\n")
        else:
            body = ("output_type: multiple_choice\ndoc_to_text: context\ndoc_to_choice: choices\n"
                    "doc_to_target: gold\ntarget_delimiter: ''\nmetric_list:\n  - metric: acc\n")
        atomic_write_text(out / f"{name}.yaml", head + body)
    return tasks


# --- our own evaluator on the same documents -----------------------------------------------------------------

def _pair_ids(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Context and continuation ids as lm-eval's HF backend splits them (the context's trailing whitespace moved to
    the continuation, the whole encoded, the context's ids cut off), so that both evaluators score the very same
    tokens. The contexts start with the template's bos, so neither adds special tokens."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
    whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    ctx = tokenizer(context, add_special_tokens=False)["input_ids"]
    return ctx, whole[len(ctx):]


def own_scores(model, tokenizer, tasks: dict[str, list[dict]], names: list[str]) -> dict[str, dict]:
    """The metrics lm-eval reports, from ``metrics.summed_nll`` on the Zephyra model (one row a batch)."""
    import torch

    from .metrics import summed_nll

    def nll(ids: list[int]) -> float:  # summed NLL of a full row: every token after the first predicted
        return summed_nll(model, [torch.tensor([ids])])[0] if len(ids) >= 2 else 0.0

    def loglik(prefix: list[int], cont: list[int]) -> float:
        # log p(cont | prefix) = NLL(prefix) - NLL(prefix + cont): causal, so the prefix's own predictions are the
        # same in both rows (summed_nll's (ids, labels) form is for right padding: it masks the -100 positions)
        return nll(prefix) - nll(prefix + cont)

    out = {}
    for name in names:
        docs = tasks[name]
        if name == "zephyra_general":
            ll = words = nbytes = 0.0
            for d in docs:
                # lm-eval's convention: the tokenizer's own special tokens, after one bos as the prefix
                ids = tokenizer(d["text"])["input_ids"]
                ll += loglik([tokenizer.bos_token_id], ids)
                words += len(re.split(r"\s+", d["text"]))
                nbytes += len(d["text"].encode("utf-8"))
            out[name] = {"word_perplexity": math.exp(-ll / words), "byte_perplexity": math.exp(-ll / nbytes),
                         "bits_per_byte": -ll / nbytes / math.log(2)}
        else:
            right = 0
            for d in docs:
                scores = [loglik(*_pair_ids(tokenizer, d["context"], c)) for c in d["choices"]]
                right += int(max(range(len(scores)), key=scores.__getitem__) == d["gold"])
            out[name] = {"acc": right / len(docs)}
    return out


def lm_eval_scores(model_dir: Path, tasks_dir: Path, names: list[str], peft: Path | None = None) -> dict[str, dict]:
    """lm-eval's simple_evaluate, HF backend, on the exported model (and adapter), fp32, batch size 1."""
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    try:
        import lm_eval
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise ArtifactError("lm-evaluation-harness is not installed: pip install lm-eval (scripts/setup.sh does)"
                            ) from None
    args = f"pretrained={model_dir},dtype=float32" + (f",peft={peft}" if peft else "")
    res = lm_eval.simple_evaluate(model="hf", model_args=args, tasks=names, batch_size=1, device="cpu",
                                  task_manager=TaskManager(include_path=str(tasks_dir)), log_samples=False)
    out = {}
    for name in names:
        r = res["results"][name]
        out[name] = {k.split(",")[0]: v for k, v in r.items() if k.endswith(",none") and "stderr" not in k}
    return out


def run_harness(base: Path, adapters: dict[str, Path], data_root: Path, out: Path, *, limit: int = 50,
                progress=None) -> dict:
    """Export, build the tasks, run lm-eval and our own evaluator; write ``out/harness.json`` and ``harness.md``."""
    from ..adapters import load_adapter
    from ..export.qwen3 import export_qwen3
    from ..loader import load_model_dir

    say = progress or (lambda s: None)
    md = load_model_dir(base)
    tokenizer, model = md.tokenizer, md.model
    max_len = int(model.config.max_position_embeddings)
    say(f"exporting {base} (+{len(adapters)} adapters) to Qwen3")
    export = export_qwen3(base, out / "export", adapters)
    tasks = build_tasks(data_root, tokenizer, out / "tasks", limit=limit, max_len=max_len, domains=sorted(adapters))
    base_names = ["zephyra_general", "zephyra_phase1"] + [f"zephyra_qa_{d}" for d in sorted(adapters)]
    rows = []

    def compare(system: str, theirs: dict, ours: dict):
        for task, metrics in ours.items():
            for metric, v in metrics.items():
                t = theirs.get(task, {}).get(metric)
                rows.append({"system": system, "task": task, "n": len(tasks[task]), "metric": metric,
                             "lm_eval": t, "ours": v, "abs_diff": None if t is None else abs(t - v)})

    say(f"lm-eval on the base: {', '.join(base_names)}")
    theirs = lm_eval_scores(Path(export), out / "tasks", base_names)
    say("our evaluator on the base")
    compare("base", theirs, own_scores(model, tokenizer, tasks, base_names))
    for d, path in sorted(adapters.items()):
        name = f"zephyra_qa_{d}"
        say(f"lm-eval on adapter {d}")
        theirs = lm_eval_scores(Path(export), out / "tasks", [name], peft=Path(export) / "adapters" / d)
        peft_model = load_adapter(load_model_dir(base).model, path)
        compare(f"adapter {d}", theirs, own_scores(peft_model, tokenizer, tasks, [name]))
    worst = max((r["abs_diff"] for r in rows if r["abs_diff"] is not None), default=None)
    report = {"base": str(base), "adapters": {k: str(v) for k, v in adapters.items()}, "data": str(data_root),
              "limit": limit, "rows": rows, "max_abs_diff": worst}
    atomic_write_json(out / "harness.json", report)
    atomic_write_text(out / "harness.md", markdown(report))
    return report


def markdown(report: dict) -> str:
    lines = ["| system | task | n | metric | lm-eval | ours | abs. difference |", "|---|---|---:|---|---:|---:|---:|"]
    for r in report["rows"]:
        t = "missing" if r["lm_eval"] is None else f"{r['lm_eval']:.6f}"
        diff = "-" if r["abs_diff"] is None else f"{r['abs_diff']:.2e}"
        lines.append(f"| {r['system']} | {r['task']} | {r['n']} | {r['metric']} | {t} | {r['ours']:.6f} | {diff} |")
    return "\n".join(lines)
