"""Phase-1 skills: does the model answer a greeting, and does it know a word's category?

- greetings: the validation set's greeting prompts through the chat template, greedy replies reported; scored
  by the share of replies that are non-empty and end with eos (``greeting_complete``) and the share that are
  exactly one of the greeting replies in the data (``greeting_known``).
- categories: greedy completion of ``"watermelon:"``; correct when the reply's first word(s) are the category.
  Measured on words seen in training (``category_acc_train``) and on held-out validation words never seen in
  training (``category_acc_heldout``).

Prompts are batched by token length, so no padding is ever needed: the same answers as one prompt at a time,
for every architecture.
"""

from __future__ import annotations

import random
import string
from collections import defaultdict

import torch

from ..chat import encode_chat
from .config import Phase1EvalConfig
from .data import load_split

_PUNCT = string.punctuation + "“”‘’"


@torch.no_grad()
def greedy_replies(model, prompts: list[list[int]], eos_id: int, pad_id: int, max_new_tokens: int,
                   batch_size: int = 32) -> list[tuple[list[int], bool]]:
    """For each prompt (token ids), the greedy continuation up to eos and whether eos was reached."""
    by_len: dict[int, list[int]] = defaultdict(list)
    for i, p in enumerate(prompts):
        by_len[len(p)].append(i)
    out: list[tuple[list[int], bool]] = [([], False)] * len(prompts)
    was_training = model.training
    model.eval()
    for idx in by_len.values():
        for s in range(0, len(idx), batch_size):
            chunk = idx[s:s + batch_size]
            x = torch.tensor([prompts[i] for i in chunk], dtype=torch.long)
            gen = model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=max_new_tokens,
                                 do_sample=False, num_beams=1, eos_token_id=eos_id, pad_token_id=pad_id)
            for i, row in zip(chunk, gen[:, x.shape[1]:].tolist()):
                ended = eos_id in row
                out[i] = (row[:row.index(eos_id)] if ended else row, ended)
    model.train(was_training)
    return out


def _words(text: str) -> list[str]:
    return [w.strip(_PUNCT).lower() for w in text.split() if w.strip(_PUNCT)]


def category_correct(reply: str, category: str) -> bool:
    """The reply's first words are the category's words (case and punctuation aside)."""
    want = _words(category)
    return bool(want) and _words(reply)[:len(want)] == want


def _category_rows(ds) -> dict[str, str]:
    rows = {}
    for kind, word, cat in zip(ds["kind"], ds["prompt"], ds["response"]):
        if kind == "category":
            rows.setdefault(word, cat)
    return rows


def _sample(items: list, n: int, seed: int) -> list:
    items = sorted(items)
    random.Random(seed).shuffle(items)
    return items[:n]


def category_accuracy(model, tokenizer, pairs: list[tuple[str, str]], cfg: Phase1EvalConfig) -> tuple[float, list]:
    prompts = [[tokenizer.bos_token_id, *tokenizer(f"{w}:", add_special_tokens=False)["input_ids"]]
               for w, _ in pairs]
    replies = greedy_replies(model, prompts, tokenizer.eos_token_id, tokenizer.pad_token_id, cfg.max_new_tokens,
                             cfg.batch_size)
    results = []
    for (word, cat), (ids, _) in zip(pairs, replies):
        reply = tokenizer.decode(ids, skip_special_tokens=True).strip()
        results.append({"word": word, "category": cat, "reply": reply, "correct": category_correct(reply, cat)})
    acc = sum(r["correct"] for r in results) / len(results) if results else float("nan")
    return acc, results


def greeting_replies(model, tokenizer, prompts: list[str], known: set[str], cfg: Phase1EvalConfig):
    ids = [encode_chat(tokenizer, p) for p in prompts]  # the one chat encoder, as the runtime prefills
    replies = greedy_replies(model, ids, tokenizer.eos_token_id, tokenizer.pad_token_id, cfg.max_new_tokens,
                             cfg.batch_size)
    results = []
    for p, (reply_ids, ended) in zip(prompts, replies):
        reply = tokenizer.decode(reply_ids, skip_special_tokens=True).strip()
        results.append({"prompt": p, "reply": reply, "complete": bool(reply) and ended,
                        "known": reply.lower() in known})
    n = max(1, len(results))
    return (sum(r["complete"] for r in results) / n, sum(r["known"] for r in results) / n, results)


def evaluate_phase1(model, tokenizer, cfg: Phase1EvalConfig) -> tuple[dict, dict]:
    """(metrics, details): greeting scores and category accuracy on training and held-out words. The words and
    greetings are sampled with ``cfg.seed``, the same for every model, so two models' scores are paired."""
    seed = cfg.seed
    train, val = load_split(cfg.data, "train"), load_split(cfg.data, "validation")
    seen = _category_rows(train)
    heldout = {w: c for w, c in _category_rows(val).items() if w not in seen}
    acc_train, res_train = category_accuracy(model, tokenizer, _sample(list(seen.items()), cfg.max_words, seed), cfg)
    acc_held, res_held = category_accuracy(model, tokenizer, _sample(list(heldout.items()), cfg.max_words, seed), cfg)

    known = {r.strip().lower() for ds in (train, val) for k, r in zip(ds["kind"], ds["response"]) if k == "greeting"}
    prompts = sorted({p for k, p in zip(val["kind"], val["prompt"]) if k == "greeting"})
    prompts = _sample(prompts, cfg.max_greetings, seed)
    complete, known_share, res_greet = greeting_replies(model, tokenizer, prompts, known, cfg)
    metrics = {
        "phase1/category_acc_train": acc_train, "phase1/category_acc_heldout": acc_held,
        "phase1/category_words_train": len(res_train), "phase1/category_words_heldout": len(res_held),
        "phase1/greeting_complete": complete, "phase1/greeting_known": known_share,
        "phase1/greetings": len(res_greet),
    }
    details = {"greetings": res_greet, "categories_train": res_train, "categories_heldout": res_held}
    return metrics, details
