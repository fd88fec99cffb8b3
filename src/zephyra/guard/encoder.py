"""The guard's second reader: the shipped MiniLM encoder fine-tuned on the guard's training families (attack or
not), trained here (the quickstart's ``guard`` stage, or ``zephyra guard train-encoder``), never shipped.

    train_encoder_guard("runs/guard/encoder")    # about 8 minutes on 2 cores
    guard = read_guard()                         # the shipped guard; with this directory present (and
                                                 # ZEPHYRA_GUARD_ENCODER not set to ""), the two scores averaged

The shipped guard (embedding + heuristics + character n-grams, a logistic regression) keeps what it was: the kind
model, the fixed rule, the views. When the encoder's directory is there, ``detect.read_guard`` attaches it: a text's
score is the mean of the shipped guard's calibrated score and the encoder's p(attack) (its highest over the same
views), flagged at this directory's threshold; only onto the guard.json it was fitted with (its sha256 is
recorded): another guard (``--guard DIR``, or the shipped one retrained) is read alone. The threshold is the lowest at which at most ``TARGET_FPR`` of the
validation look-alikes and of the validation ordinary prompts and passages are flagged (docs/security.md: why 3%).
The encoder is the tool parser's network (``retrieval.parser``) with its intent head alone ("none" / "attack").
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..errors import ArtifactError

ENV = "ZEPHYRA_GUARD_ENCODER"  # the encoder's directory; "" turns it off (the tests do)
DEFAULT_DIR = "runs/guard/encoder"
ENSEMBLE = "ensemble.json"
TARGET_FPR = 0.03
STEPS, BATCH, LR = 250, 32, 5e-5
ATTACK = "attack"


def encoder_dir() -> Path | None:
    """The encoder's directory if one is there (``ENV``, else ``DEFAULT_DIR``), else None."""
    where = os.environ.get(ENV, DEFAULT_DIR)
    if not where:
        return None
    d = Path(where)
    return d if (d / "manifest.json").is_file() else None


class EncoderScore:
    """texts -> p(attack) of each, its highest over the guard's views of it (``detect.views``)."""

    def __init__(self, parser, sentence_chars: int):
        self.parser, self.sentence_chars = parser, sentence_chars

    def __call__(self, texts) -> np.ndarray:
        from .detect import views

        return np.array([max(self.parser.intents(v, [ATTACK])[ATTACK] for _, v in views(t, self.sentence_chars))
                         for t in texts], dtype=np.float64)


def fitted_with(directory) -> str | None:
    """The sha256 of the guard.json the pair's threshold was fitted with (None: not recorded)."""
    try:
        return json.loads((Path(directory) / ENSEMBLE).read_text()).get("base_sha256")
    except (OSError, ValueError, AttributeError):
        return None


def load_encoder(directory, sentence_chars: int) -> tuple[EncoderScore, float]:
    """(the scorer, the ensemble's threshold) from a directory ``train_encoder_guard`` wrote, its files checked
    against its manifest first; a one-line ArtifactError otherwise."""
    from ..manifest import verify_files
    from ..retrieval.parser import ToolParser

    d = Path(directory)
    verify_files(d)
    try:
        meta = json.loads((d / ENSEMBLE).read_text())
        threshold = float(meta["threshold"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ArtifactError(f"{d / ENSEMBLE}: unreadable ({type(e).__name__}: {e})") from None
    if meta.get("rule") != "mean" or not 0.0 <= threshold <= 1.0:
        raise ArtifactError(f"{d / ENSEMBLE}: not a mean-of-two ensemble with a threshold in [0, 1]")
    return EncoderScore(ToolParser.load(d), sentence_chars), threshold


def train_encoder_guard(out: str | os.PathLike = DEFAULT_DIR, steps: int = STEPS, seed: int = 0,
                        target_fpr: float = TARGET_FPR, log=print) -> dict:
    """Fine-tune the encoder on the training families' texts and views (``train.training_views``), fit the
    ensemble's threshold on validation, and write ``out`` whole (``io.atomic_directory``) with a manifest whose
    file table is checked at load. Held-out rows are never read."""
    from ..io import atomic_directory, sha256_file
    from ..manifest import file_table, write_manifest
    from ..retrieval.parser import train_parser
    from .data import build_rows, data_hash
    from .detect import WEIGHTS, read_guard
    from .train import _threshold, training_views

    rows = build_rows(seed)
    texts, y = training_views([r for r in rows if r.split == "train"])
    log(f"guard encoder: {len(texts)} training texts ({int(y.sum())} attacks), {steps} steps of {BATCH}")
    parser = train_parser([{"prompt": t, "call": {"name": ATTACK} if label else None} for t, label in zip(texts, y)],
                          [ATTACK], [], layers=6, steps=steps, batch=BATCH, lr=LR, seed=seed, log=log)
    base = read_guard(WEIGHTS, attach=False)
    val = [r for r in rows if r.split == "validation"]
    log(f"guard encoder: scoring the {len(val)} validation rows")
    vt = [r.text for r in val]
    p = (base.scores(vt) + EncoderScore(parser, base.sentence_chars)(vt)) / 2
    vy = np.array([r.label for r in val])
    group = np.array([r.group for r in val])
    look, plain = group == "lookalike", np.isin(group, ["benign", "passage"])
    t = max(_threshold(p[look], target_fpr), _threshold(p[plain], target_fpr))
    metrics = {"validation_recall": round(float((p[vy == 1] >= t).mean()), 4),
               "validation_lookalike_fpr": round(float((p[look] >= t).mean()), 4),
               "validation_plain_fpr": round(float((p[plain] >= t).mean()), 4)}
    meta = {"rule": "mean", "threshold": t, "target_fpr": target_fpr, "data_sha256": data_hash(rows),
            "base_sha256": sha256_file(Path(WEIGHTS) / "guard.json"), **metrics}
    with atomic_directory(out) as tmp:
        parser.save(tmp)
        (tmp / ENSEMBLE).write_text(json.dumps(meta, indent=2) + "\n")
        write_manifest(tmp, "guard-encoder", config={"steps": steps, "batch": BATCH, "lr": LR, "seed": seed},
                       metrics=metrics, files=file_table(tmp))
    log(f"guard encoder: validation recall {metrics['validation_recall']:.3f} at threshold {t:.3f} "
        f"(look-alike FPR {metrics['validation_lookalike_fpr']:.3f}) -> {out}")
    return {"out": str(out), **meta}


__all__ = ["EncoderScore", "load_encoder", "train_encoder_guard", "encoder_dir", "ENV", "DEFAULT_DIR"]
