"""The guard's labelled set: attack and benign-look-alike families (families.yaml) expanded template x slot, plus
ordinary benign prompts and knowledge passages (benign_corpus.yaml, a snapshot of the project's router prompts and
knowledge-index chunks), deduplicated, every row in the one split its family belongs to.

    rows = build_rows()                       # [Row(text, label, family, group, kind, split)]
    data_hash(rows)                           # what the trained guard's manifest records
    python -m zephyra.guard.data --snapshot   # rewrite benign_corpus.yaml from runs/data/router and runs/index

Splits are by FAMILY, never by row: a family's templates make prompts of exactly one split (train, validation or
heldout), so held-out numbers are on phrasings no training template produced. Ordinary router prompts keep the
router data's own family split (its test split -> heldout); passages are split by a stable hash of their id.
"""

from __future__ import annotations

import base64
import codecs
import hashlib
import itertools
import json
import random
import re
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from ..errors import DataError

HERE = Path(__file__).parent
FAMILIES = HERE / "families.yaml"
CORPUS = HERE / "benign_corpus.yaml"
SPLITS = ("train", "validation", "heldout")
GROUPS = ("attack", "lookalike", "benign", "passage")
PER_FAMILY = 70  # prompts kept per family (of all template x slot combinations), seeded
_SLOT = re.compile(r"(?<!\{)\{(\w+)\}(?!\})")
_LEET = str.maketrans({"a": "4", "e": "3", "i": "1", "o": "0", "s": "5", "t": "7"})


@dataclass(frozen=True)
class Row:
    text: str
    label: int  # 1: an attack
    family: str
    group: str  # attack | lookalike | benign (ordinary prompts) | passage (ordinary retrieved text)
    kind: str  # the attack's kind (override, roleplay, ...); "none" for benign rows
    split: str  # train | validation | heldout


def _encode(value: str, how: str) -> str:
    if how == "base64":
        return base64.b64encode(value.encode()).decode()
    if how == "rot13":
        return codecs.encode(value, "rot13")
    if how == "hex":
        return value.encode().hex()
    if how == "leet":
        return value.translate(_LEET)
    raise DataError(f"{FAMILIES.name}: unknown transform {how!r} (base64, rot13, hex, leet)")


def _expand(name: str, fam: dict, shared: dict, passages: list[str], rng: random.Random,
            prompts: list[str] = ()) -> list[str]:
    """Every template with every combination of its slots' values, then ``n`` (default ``PER_FAMILY``) of them at
    random. The slot ``{prompt}`` takes ordinary router prompts of the family's own split (12 sampled)."""
    slots = {**shared, **(fam.get("slots") or {})}
    if prompts and any("{prompt}" in t for t in fam["templates"]):
        slots["prompt"] = rng.sample(prompts, min(12, len(prompts)))
    transform = fam.get("transform") or {}
    out: list[str] = []
    for template in fam["templates"]:
        names = list(dict.fromkeys(_SLOT.findall(template)))
        missing = [n for n in names if n not in slots]
        if missing:
            raise DataError(f"{FAMILIES.name}: family {name!r} uses unknown slot(s) {', '.join(missing)}")
        for values in itertools.product(*(slots[n] for n in names)):
            fill = {n: _encode(str(v), transform[n]) if n in transform else str(v) for n, v in zip(names, values)}
            text = _SLOT.sub(lambda m: fill[m.group(1)], template).replace("{{", "{").replace("}}", "}")
            if fam.get("whole"):
                text = _encode(text, fam["whole"])
            out.append(text)
    rng.shuffle(out)
    n = int(fam.get("n", PER_FAMILY))
    out = list(dict.fromkeys(out))[:n]
    if fam.get("augment", fam["split"] != "heldout"):  # training and validation families also in other surface
        # forms (below); the held-out ones only as written
        out += [surface(t, rng) for t in out[:max(1, len(out) // 2)]]
        out = list(dict.fromkeys(out))
    if fam.get("passage"):  # the sentence inside retrieved text: a passage before it, another after (or none);
        # few sentences are each set in several passages, up to n
        bare = out[:len(out) // 4] if fam["split"] == "train" else []  # training also sees the sentence alone
        out = bare + [f"{rng.choice(passages)} {t} {rng.choice(passages + [''])}".strip()
                      for t in itertools.islice(itertools.cycle(out), max(len(out), min(n, 5 * len(out))))]
    return out


_OPEN = ("hey, ", "hi! ", "ok so ", "quick question: ", "please, ", "one more thing. ", "hello assistant. ",
         "thanks for the help so far. ", "", "")
_CLOSE = (" thanks!", " :)", " asap", " please.", " thank you.", " ok?", "!!", "", "")


def surface(text: str, rng: random.Random) -> str:
    """The same request in another surface form: lower or upper case, an opening or closing phrase, no final
    punctuation, one typo (two letters swapped), doubled spaces -- a few of these at random. Applied alike to
    attacks and look-alikes of the training families, so none of them is a cue for a label."""
    t = text
    if rng.random() < 0.4:
        t = t.lower() if rng.random() < 0.8 else t.upper()
    if rng.random() < 0.4:
        t = t.rstrip(".!?")
    words = t.split(" ")
    if rng.random() < 0.4 and words:
        i = rng.randrange(len(words))
        w = words[i]
        if len(w) > 3 and w.isalpha():
            j = rng.randrange(len(w) - 1)
            words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2:]
        t = " ".join(words)
    t = rng.choice(_OPEN) + t + rng.choice(_CLOSE)
    if rng.random() < 0.15:
        t = t.replace(" ", "  ", 2)
    return t.strip()


@lru_cache(maxsize=1)
def _load() -> tuple[dict, dict]:
    try:
        spec = yaml.safe_load(FAMILIES.read_text(encoding="utf-8"))
        corpus = yaml.safe_load(CORPUS.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise DataError(f"guard data: {e}") from None
    return spec, corpus


def build_rows(seed: int = 0) -> list[Row]:
    """The whole labelled set, deterministic for a seed. A text made by two families is kept once (the first);
    one made with two labels is an error in the data."""
    spec, corpus = _load()
    rows: list[Row] = []
    passages = {s: [p["text"] for p in corpus["passages"] if p["split"] == s] for s in SPLITS}
    prompts = {s: [p["text"] for p in corpus["prompts"] if p["split"] == s] for s in SPLITS}
    for name, fam in spec["families"].items():
        if fam.get("split") not in SPLITS or fam.get("group") not in ("attack", "lookalike"):
            raise DataError(f"{FAMILIES.name}: family {name!r} needs split in {SPLITS} and group attack|lookalike")
        label = int(fam["group"] == "attack")
        kind = fam.get("kind", "none") if label else "none"
        fam_rng = random.Random(f"{seed}:{name}")  # per family: editing one family leaves the others' rows as they are
        for text in _expand(name, fam, spec["slots"], passages[fam["split"]], fam_rng, prompts[fam["split"]]):
            rows.append(Row(text, label, name, fam["group"], kind, fam["split"]))
    for p in corpus["prompts"]:
        rows.append(Row(p["text"], 0, f"router_{p['split']}", "benign", "none", p["split"]))
    for p in corpus["passages"]:
        rows.append(Row(p["text"], 0, f"passages_{p['split']}", "passage", "none", p["split"]))
    seen: dict[str, Row] = {}
    for r in rows:
        key = " ".join(r.text.lower().split())
        if key in seen and seen[key].label != r.label:
            raise DataError(f"guard data: {r.text[:60]!r} is both an attack and benign "
                            f"({seen[key].family}, {r.family})")
        seen.setdefault(key, r)
    return list(seen.values())


def data_hash(rows: list[Row]) -> str:
    """SHA-256 of the rows as JSON lines (text, label, family, group, kind, split), in order."""
    h = hashlib.sha256()
    for r in rows:
        h.update((json.dumps(asdict(r), ensure_ascii=False, sort_keys=True) + "\n").encode())
    return h.hexdigest()


def summary(rows: list[Row]) -> list[dict]:
    """One line per family: its group, kind, split and count (the docs' table)."""
    out: dict[str, dict] = {}
    for r in rows:
        d = out.setdefault(r.family, {"family": r.family, "group": r.group, "kind": r.kind, "split": r.split, "n": 0})
        d["n"] += 1
    return list(out.values())


# --- the snapshot of ordinary benign text ---------------------------------------------------------------------

def snapshot(router_data: str | Path = "runs/data/router", index_root: str | Path = "runs/index",
             per_split: dict | None = None, per_domain: int = 30, seed: int = 0) -> Path:
    """Rewrite benign_corpus.yaml: router prompts (their own split; test -> heldout) and passages from each
    knowledge index (split by a stable hash of the chunk id), so the labelled set is rebuilt without runs/."""
    from datasets import load_from_disk

    from ..io import atomic_write_text

    per_split = per_split or {"train": 300, "validation": 100, "test": 200}
    rng = random.Random(seed)
    d = load_from_disk(str(router_data))
    prompts = []
    for split, n in per_split.items():
        texts = sorted(set(d[split]["prompt"]))
        rng.shuffle(texts)
        prompts += [{"text": t, "split": "heldout" if split == "test" else split} for t in texts[:n]]
    passages = []
    for index in sorted(Path(index_root).iterdir()):
        chunks = [json.loads(line) for line in (index / "chunks.jsonl").open(encoding="utf-8")]
        chunks = [c for c in chunks if 60 <= len(c["text"]) <= 400]
        for c in rng.sample(chunks, min(per_domain, len(chunks))):
            u = int(hashlib.sha256(c["id"].encode()).hexdigest()[:8], 16) / 2**32
            passages.append({"text": c["text"], "domain": index.name,
                             "split": "heldout" if u < 0.35 else "validation" if u < 0.5 else "train"})
    head = ("# Ordinary benign text for the guard (zephyra.guard.data): router prompts from runs/data/router and\n"
            "# knowledge passages from runs/index, sampled. Regenerate: python -m zephyra.guard.data --snapshot\n")
    return atomic_write_text(CORPUS, head + yaml.safe_dump({"prompts": prompts, "passages": passages},
                                                           allow_unicode=True, sort_keys=False, width=1000))


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--snapshot", action="store_true", help="rewrite benign_corpus.yaml from runs/")
    ap.add_argument("--router-data", default="runs/data/router")
    ap.add_argument("--index-root", default="runs/index")
    a = ap.parse_args()
    if a.snapshot:
        print(snapshot(a.router_data, a.index_root))
    rows = build_rows()
    for line in summary(rows):
        print(json.dumps(line))
    print(f"{len(rows)} rows, sha256 {data_hash(rows)}")
