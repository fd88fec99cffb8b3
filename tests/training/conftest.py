"""Tiny datasets shaped like the data layer's (phase 1: greetings, small talk, word -> category; phase 2: text),
a tokenizer trained on them, and a recipe writer for 2-layer, 32-wide models. Everything lives in tmp dirs."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml

GREETINGS = [("hello", "hi there!"), ("hi", "hello!"), ("good morning", "good morning to you!"),
             ("hey", "hey, how are you?"), ("good evening", "good evening!"), ("howdy", "hello there!")]
SMALLTALK = [("how are you?", "i am well, thank you."), ("what is your name?", "i am zephyra."),
             ("thank you", "you are welcome.")]
CATEGORIES = {
    "fruit": ["apple", "banana", "cherry", "grape", "lemon", "mango", "melon", "peach", "pear", "plum"],
    "animal": ["cat", "dog", "horse", "mouse", "tiger", "zebra", "sheep", "goat", "camel", "otter"],
    "colour": ["red", "blue", "green", "yellow", "purple", "orange", "brown", "black", "white", "pink"],
}
WORDS = ("the a of and to in is was he she it that for on with as his her they at by this had from "
         "river stone light house field winter summer green old young king queen road city").split()


def _phase1_rows(rng: random.Random, heldout: bool) -> list[dict]:
    rows = []
    for cat, words in CATEGORIES.items():
        picked = words[8:] if heldout else words[:8]
        rows += [{"prompt": w, "response": cat, "kind": "category", "word": w, "category": cat} for w in picked]
    rows += [{"prompt": p, "response": r, "kind": "greeting", "word": "", "category": ""} for p, r in GREETINGS]
    rows += [{"prompt": p, "response": r, "kind": "smalltalk", "word": "", "category": ""} for p, r in SMALLTALK]
    rng.shuffle(rows)
    return rows


def make_phase1(path: Path, repeat: int = 6) -> Path:
    from datasets import Dataset, DatasetDict

    rng = random.Random(0)
    train = [r for _ in range(repeat) for r in _phase1_rows(rng, heldout=False)]
    val = _phase1_rows(rng, heldout=True)
    DatasetDict({"train": Dataset.from_list(train), "validation": Dataset.from_list(val)}).save_to_disk(str(path))
    return path


def make_text(path: Path, docs: int = 300, seed: int = 1) -> Path:
    from datasets import Dataset, DatasetDict

    rng = random.Random(seed)
    text = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 40))) + "." for _ in range(docs)]
    DatasetDict({"train": Dataset.from_dict({"text": text[: docs * 9 // 10]}),
                 "validation": Dataset.from_dict({"text": text[docs * 9 // 10:]})}).save_to_disk(str(path))
    return path


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    """runs/data-like tree: phase1/, phase2/ and a tokenizer trained on both."""
    from zephyra.tokenizer import train_tokenizer
    from zephyra.training.data import iter_documents
    from zephyra.training.config import DataSource

    root = tmp_path_factory.mktemp("data")
    make_phase1(root / "phase1")
    make_text(root / "phase2")
    texts = [*iter_documents(DataSource(str(root / "phase1"), formatter="phase1")),
             *iter_documents(DataSource(str(root / "phase2"), formatter="text"))]
    train_tokenizer(texts, root / "tokenizer", vocab_size=400)
    return root


def recipe_dict(data_root: Path, out_dir: Path, **top) -> dict:
    """A tiny, fast, deterministic recipe: tiny preset, fp32, one thread, eager."""
    d = {
        "name": "test", "out_dir": str(out_dir), "seed": 7, "tokenizer": str(data_root / "tokenizer"),
        "model": {"arch": "zephyra", "preset": "tiny"},
        "data": {"train": {"path": str(data_root / "phase2"), "split": "train", "formatter": "text"},
                 "validation": [{"path": str(data_root / "phase2"), "split": "validation", "formatter": "text"}],
                 "seq_len": 32, "cache_dir": str(out_dir.parent / "cache")},
        "optim": {"lr": 3e-3}, "schedule": {"warmup_steps": 3},
        "batch_size": 8, "micro_batch_size": 4, "max_steps": 12, "precision": "fp32", "compile": False,
        "threads": 1, "log_every": 1, "eval_every": 4, "eval_batches": 2, "save_every": 4, "keep_last": 2,
        "progress": False,
    }
    for k, v in top.items():
        d[k] = v
    return d


def write_recipe(path: Path, d: dict) -> Path:
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    return path


def read_metrics(out_dir: Path) -> list[dict]:
    import json

    return [json.loads(line) for line in (Path(out_dir) / "metrics.jsonl").read_text().splitlines()]


def losses(out_dir: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(out_dir) if "loss" in r}
