"""The conversation benchmark (``zephyra converse bench``): conversations of two and of four characters, run with
several seeds (all at once: one mixed-adapter batch a turn), scored turn by turn, beside the same scores of real consecutive speeches of the held-out scenes:

- spoke for another: turns cut at another participant's speaker label;
- attribution by turn: the speaker classifier of fidelity.py names each turn's speaker (chance 1/9); read by turn
  number, a fall is the characters drifting into each other;
- echo: the share of a turn's words already in the two turns before it (a conversation that parrots itself);
- coherence: TF-IDF cosine of each turn with the one before (on topic, or not), against real replies' cosine;
- distinct-2 over each whole conversation.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from ...io import atomic_write_figure
from .characters import CHARACTERS, check_characters
from .fidelity import AttributionScorer, words
from .plays import load_play

DEFAULT_GROUPS = (("hamlet", "ophelia"), ("hamlet", "ophelia", "polonius", "gertrude"))


def _echo(text: str, before: Sequence[str]) -> float:
    w = words(text)
    seen = {x for t in before for x in words(t)}
    return sum(x in seen for x in w) / len(w) if w else 0.0


def _cosines(vectorizer, texts: Sequence[str]) -> list[float]:
    import numpy as np

    if len(texts) < 2:
        return []
    x = vectorizer.transform(list(texts))
    return [float(np.asarray(x[i].multiply(x[i - 1]).sum())) for i in range(1, len(texts))]


def real_reference(vectorizer, plays: Sequence[str]) -> dict:
    """Echo and coherence of real consecutive speeches in the held-out scenes of ``plays``."""
    from .characters import scene_split

    echoes, cos = [], []
    for play in plays:
        scenes = load_play(play)
        split = scene_split(scenes, [s for p, s in CHARACTERS.values() if p == play])
        for sc in scenes:
            if split[sc.id] != "test":
                continue
            texts = [s.text for s in sc.speeches if s.text]
            echoes += [_echo(t, texts[max(0, i - 2):i]) for i, t in enumerate(texts) if i]
            cos += _cosines(vectorizer, texts)
    return {"echo": sum(echoes) / max(len(echoes), 1), "coherence": sum(cos) / max(len(cos), 1)}


def conversation_bench(system, groups: Sequence[Sequence[str]] = DEFAULT_GROUPS, *, seeds: int = 4, turns: int = 8,
                       max_tokens: int = 40, temperature: float = 0.8, lockstep: bool = True,
                       echo: Callable[[str], None] = print) -> dict:
    """Run ``seeds`` conversations of ``turns`` for each group and score them (see the module's notes).
    ``lockstep`` False: one conversation after another (the baseline of the batched run; the same turns)."""
    import time

    from sklearn.feature_extraction.text import TfidfVectorizer

    from .converse import Conversation, converse_many

    groups = [check_characters(g) for g in groups]
    scorer = AttributionScorer(list(CHARACTERS))
    vec = TfidfVectorizer(sublinear_tf=True).fit([s.text for p in {CHARACTERS[c][0] for g in groups for c in g}
                                                  for sc in load_play(p) for s in sc.speeches if s.text])
    result = {"groups": {}, "turns": turns, "seeds": seeds, "temperature": temperature,
              "real": real_reference(vec, sorted({CHARACTERS[c][0] for g in groups for c in g}))}
    # every conversation of every group at once: one mixed-adapter batch a turn (converse_many)
    plan = [(group, seed) for group in groups for seed in range(seeds)]
    talking = [Conversation(system, g, turns=turns, seed=1000 * seed, temperature=temperature, max_tokens=max_tokens)
               for g, seed in plan]
    t0 = time.perf_counter()
    talks = converse_many(system, talking) if lockstep else [converse_many(system, [c])[0] for c in talking]
    result["seconds"], result["lockstep"] = round(time.perf_counter() - t0, 2), lockstep
    echo(f"  {len(plan)} conversations of {turns} turns, {len(groups)} groups, "
         f"{'in lockstep batches' if lockstep else 'one after another'}: {result['seconds']:.1f} s")
    for group in groups:
        name = "+".join(group)
        by_turn = [[] for _ in range(turns)]
        cut, echoes, cos, distinct = 0, [], [], []
        n = 0
        for talk in (t for (g, _), t in zip(plan, talks) if g == group):
            texts = [t["text"] for t in talk]
            predicted = scorer.model.predict(texts)
            for i, (t, p) in enumerate(zip(talk, predicted)):
                by_turn[i].append(float(p == t["adapter"]))
            cut += sum(t["spoke_for_another"] for t in talk)
            n += len(talk)
            echoes += [_echo(t, texts[max(0, i - 2):i]) for i, t in enumerate(texts) if i]
            cos += _cosines(vec, texts)
            pairs = [(a, b) for t in texts for a, b in zip(words(t), words(t)[1:])]
            distinct.append(len(set(pairs)) / max(len(pairs), 1))
        result["groups"][name] = {
            "size": len(group), "conversations": seeds, "spoke_for_another": cut / max(n, 1),
            "attribution_by_turn": [sum(v) / len(v) if v else 0.0 for v in by_turn],
            "echo": sum(echoes) / max(len(echoes), 1), "coherence": sum(cos) / max(len(cos), 1),
            "distinct_2": sum(distinct) / max(len(distinct), 1)}
    return result


def bench_markdown(r: dict) -> str:
    how = "" if "seconds" not in r else (f"; {r['seconds']:.1f} s, " + (
        "all at once (one mixed-adapter batch a turn)" if r.get("lockstep", True) else "one after another"))
    lines = [f"{r['seeds']} conversations of {r['turns']} turns per group, temperature {r['temperature']}{how}; real "
             f"held-out dialogue: echo {r['real']['echo']:.3f}, coherence {r['real']['coherence']:.3f}", "",
             "| group | spoke for another | attribution, turns 1-2 / last 2 (chance 0.111) | echo (real "
             f"{r['real']['echo']:.2f}) | coherence (real {r['real']['coherence']:.2f}) | distinct-2 |",
             "|---|---:|---|---:|---:|---:|"]
    for name, g in r["groups"].items():
        a = g["attribution_by_turn"]
        lines.append(f"| {name} | {g['spoke_for_another']:.0%} | {sum(a[:2]) / 2:.2f} / {sum(a[-2:]) / 2:.2f} | "
                     f"{g['echo']:.3f} | {g['coherence']:.3f} | {g['distinct_2']:.2f} |")
    return "\n".join(lines)


def plot_bench(r: dict, path: str | os.PathLike) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for name, g in r["groups"].items():
        ax.plot(range(1, len(g["attribution_by_turn"]) + 1), g["attribution_by_turn"], marker="o",
                label=f"{g['size']}-way: {name}")
    ax.axhline(1 / len(CHARACTERS), color="grey", ls="--", lw=1, label="chance")
    ax.set_xlabel("turn")
    ax.set_ylabel("turns attributed to their speaker")
    ax.set_ylim(0, 1)
    ax.set_title("does each character stay themselves?")
    ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_write_figure(fig, path, dpi=110)
    plt.close(fig)
