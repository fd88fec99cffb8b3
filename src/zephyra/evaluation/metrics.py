"""Evaluation metrics: BLEU (sacrebleu), ROUGE (rouge-score), SQuAD-style exact match and token F1, and the
perplexity of a causal LM over texts.

BLEU and ROUGE are the reference libraries, wrapped; what we write by hand is what they lack: SQuAD's answer
normalisation and token F1 (a dozen lines of the official evaluation script, with SQuAD v2's rule for empty
answers) and a batched, token-weighted perplexity for any causal LM.

    from zephyra.evaluation.metrics import bleu, rouge, squad_scores, perplexity
    bleu(["the cat sat"], [["the cat sat down"]])          # 0-100, corpus level
    squad_scores(["the cat sat"], [["a cat sat down"]])    # {"exact_match": 0.0, "f1": 0.8}
    perplexity(model, tokenizer, texts).perplexity
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

References = Sequence[str | Sequence[str]]  # per hypothesis: one reference, or several


def _ref_lists(hypotheses: Sequence[str], references: References) -> list[list[str]]:
    if isinstance(hypotheses, str):
        raise TypeError("hypotheses must be a list of strings, not one string")
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference entries")
    out = [[r] if isinstance(r, str) else list(r) for r in references]
    if any(not refs for refs in out):
        raise ValueError("every hypothesis needs at least one reference")
    return out


# --- BLEU, ROUGE --------------------------------------------------------------------------------------------

def bleu(hypotheses: Sequence[str], references: References, **sacrebleu_options) -> float:
    """Corpus BLEU (0-100) by sacrebleu with its default 13a tokenisation. Hypotheses may have different numbers
    of references; ``sacrebleu_options`` go to ``sacrebleu.metrics.BLEU`` (e.g. lowercase=True)."""
    from sacrebleu.metrics import BLEU

    refs = _ref_lists(hypotheses, references)
    width = max(len(r) for r in refs)
    # sacrebleu wants reference *streams* (one list per reference position); None marks a missing reference
    streams = [[r[i] if i < len(r) else None for r in refs] for i in range(width)]
    return BLEU(**sacrebleu_options).corpus_score(list(hypotheses), streams).score


def rouge(hypotheses: Sequence[str], references: References, *, use_stemmer: bool = False) -> dict[str, float]:
    """Mean ROUGE-1, ROUGE-2 and ROUGE-L F-measures (0-1) by rouge-score; with several references, the best
    one per hypothesis. Note rouge-score's tokenizer keeps only ASCII letters and digits."""
    from rouge_score import rouge_scorer

    types = ["rouge1", "rouge2", "rougeL"]
    scorer = rouge_scorer.RougeScorer(types, use_stemmer=use_stemmer)
    refs = _ref_lists(hypotheses, references)
    totals = dict.fromkeys(types, 0.0)
    for hyp, rs in zip(hypotheses, refs, strict=True):
        scores = scorer.score_multi(rs, hyp)
        for t in types:
            totals[t] += scores[t].fmeasure
    n = max(len(refs), 1)
    return {t: totals[t] / n for t in types}


# --- SQuAD exact match and token F1 -------------------------------------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)


def normalize_answer(s: str) -> str:
    """SQuAD's normalisation: lower-case, drop punctuation, drop articles (a, an, the), collapse whitespace."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", s).split())


def _f1(prediction: str, reference: str) -> float:
    pred, gold = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not pred or not gold:
        return float(pred == gold)  # SQuAD v2: both empty is a match, one empty is not
    same = sum((Counter(pred) & Counter(gold)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, references: str | Sequence[str]) -> float:
    """1.0 if the normalised prediction equals any normalised reference, else 0.0."""
    refs = [references] if isinstance(references, str) else references
    return float(any(normalize_answer(prediction) == normalize_answer(r) for r in refs))


def token_f1(prediction: str, references: str | Sequence[str]) -> float:
    """SQuAD token F1 (bag of normalised words), the best over the references."""
    refs = [references] if isinstance(references, str) else references
    return max(_f1(prediction, r) for r in refs)


def squad_scores(predictions: Sequence[str], references: References) -> dict[str, float]:
    """Mean exact match and token F1 (0-1) over a corpus."""
    refs = _ref_lists(predictions, references)
    n = max(len(refs), 1)
    return {"exact_match": sum(exact_match(p, r) for p, r in zip(predictions, refs, strict=True)) / n,
            "f1": sum(token_f1(p, r) for p, r in zip(predictions, refs, strict=True)) / n}


# --- perplexity ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Perplexity:
    perplexity: float  # exp(mean_loss)
    mean_loss: float  # nats per predicted token, averaged over every token of every text
    tokens: int  # predicted tokens (a text's first token is context, not predicted)


def _batches(encoded: list[list[int]], batch_size: int, pad_id: int):
    """Right-padded (ids, labels) batches, texts sorted by length so that padding stays small."""
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    for s in range(0, len(order), batch_size):
        rows = [encoded[i] for i in order[s:s + batch_size]]
        width = len(rows[0])
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        for r, row in enumerate(rows):
            ids[r, :len(row)] = torch.tensor(row)
            labels[r, :len(row)] = torch.tensor(row)
        yield ids, labels


@torch.no_grad()
def summed_nll(model, batches, autocast=None, tick=None) -> tuple[float, int]:
    """(summed token NLL in nats, predicted tokens) of a causal LM over ``batches``: the one held-out loss loop
    of the project (training's validation, adapters' held-out perplexity, the evaluation suite, ``perplexity``).

    A batch is a (B, T) array or tensor of full rows (every token predicted from the one before it), or an
    ``(ids, labels)`` pair with -100 in ``labels`` wherever nothing is predicted (right padding). Full rows on a
    Zephyra model take the fused loss, which never holds the (B, T, V) logits. ``autocast`` is a context-manager
    factory (e.g. bf16 autocast); ``tick()`` is called after each batch. The model is scored in eval mode and
    put back as it was."""
    import contextlib

    import numpy as np

    autocast = autocast or contextlib.nullcontext
    base = model.get_base_model() if callable(getattr(model, "get_base_model", None)) else model
    fused = getattr(base.config, "model_type", None) == "zephyra"
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for batch in batches:
            if isinstance(batch, tuple):
                ids, labels = (t.to(device) for t in batch)
            else:
                ids = torch.from_numpy(batch) if isinstance(batch, np.ndarray) else batch
                ids = labels = ids.to(device)
            target = labels[:, 1:]  # (B, T-1): the token each position predicts
            n = int((target != -100).sum())
            with autocast():
                if fused and labels is ids:
                    loss = float(model(input_ids=ids, labels=ids, skip_logits=True, use_cache=False).loss) * n
                else:
                    logits = model(input_ids=ids, attention_mask=(labels != -100).long(), use_cache=False).logits
                    loss = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), target.reshape(-1),
                                           ignore_index=-100, reduction="sum").item()
            total, count = total + loss, count + n
            if tick:
                tick()
    finally:
        model.train(was_training)
    return total, count


def perplexity(model, tokenizer, texts: Sequence[str], *, batch_size: int = 8, max_length: int | None = None,
               add_special_tokens: bool = True) -> Perplexity:
    """Token-weighted perplexity of a causal LM over ``texts``: every predicted token counts once, whatever
    text it is in. Texts are tokenised one by one, truncated to ``max_length`` (default: the model's context),
    batched with right padding and scored without gradients in eval mode."""
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, not one string")
    if max_length is None:
        cfg = model.config  # Llama-style name, else GPT-2's
        max_length = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)
    encoded = [tokenizer(t, add_special_tokens=add_special_tokens)["input_ids"][:max_length] for t in texts]
    encoded = [e for e in encoded if len(e) >= 2]
    if not encoded:
        raise ValueError("perplexity: no text has two or more tokens, so no token is predicted")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0  # masked: any id will do
    total, count = summed_nll(model, _batches(encoded, batch_size, pad_id))
    mean = total / count
    return Perplexity(perplexity=math.exp(mean), mean_loss=mean, tokens=count)
