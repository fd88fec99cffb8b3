"""What the knowledge indexes say about a prompt, as router features: for every domain's index, its best BM25
score, whether (and by how long a name) the prompt names one of its entries, the share of the prompt's words it
knows and their mean IDF (``KnowledgeIndex.signals``). The indexes hold each domain's whole source, so these carry
what a sentence embedding of a short prompt does not: "What was the ARPANET?" names a FOLDOC entry, "Yourdon,
Inc." is a headword of computing, "Who was thrown into the lions' den?" is BM25's best match in scripture. On the
router's held-out phrasing families they raise the external router from 94.2% to 97.2% accuracy
(docs/results.md, "Index signals").

The features are standardised with the training prompts' mean and deviation and scaled by ``scale`` (with
``1/sqrt(n)`` for their count): the classifier's one L2 penalty then weighs them against the 384 embedding
dimensions as a group. A router records the indexes it was fitted on (path and chunk hash per domain); one loaded
against other indexes is refused in one line.

    signals, x_train = IndexSignals.fit(open_indexes("runs/index"), train_prompts, scale=3.0, root="runs/index")
    x = signals(["What was the ARPANET?"])      # (1, 6 * 5)
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..errors import ArtifactError


_TRAIN_RAW: dict[tuple, np.ndarray] = {}  # the last training prompts' raw signals (one entry)


ALL = ("bm25", "name_words", "named", "known_words", "mean_idf")  # KnowledgeIndex.SIGNALS


class IndexSignals:
    def __init__(self, indexes: dict, domains: Sequence[str], mean: np.ndarray, std: np.ndarray, scale: float,
                 root: str, which: Sequence[str] = ALL):
        self.indexes, self.domains = indexes, list(domains)
        self.which = tuple(which)  # the signals read per index (KnowledgeIndex.signals), in this order
        unknown = [w for w in self.which if w not in ALL]
        if unknown or not self.which:
            raise ArtifactError(f"index signals: unknown signal {unknown[0]!r}; known: {', '.join(ALL)}" if unknown
                                else "index signals: none chosen")
        self.mean, self.std = np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
        self.scale, self.root = float(scale), str(root)
        if self.mean.shape != (self.dim,) or self.std.shape != (self.dim,):
            raise ArtifactError(f"index signals: {self.mean.shape[0]} means for {len(self.domains)} domains "
                                f"x {self.per_domain} signals")

    @property
    def per_domain(self) -> int:
        return len(self.which)

    @property
    def dim(self) -> int:
        return len(self.domains) * self.per_domain

    def raw(self, prompts: Sequence[str], log: Callable[[str], None] | None = None) -> np.ndarray:
        """(N, domains x signals), unstandardised, domain by domain (``log``: a line per domain)."""
        from ..retrieval.index import query_names, query_words

        parts = []
        names = [query_names(p) for p in prompts]  # the same for every index: computed once
        words = [query_words(p) for p in prompts]
        for d in self.domains:
            t = time.perf_counter()
            parts.append(self.indexes[d].signals(prompts, self.which, names, words))
            if log is not None:
                log(f"  router signals: {len(prompts):,} prompts looked up in the {d} index in "
                    f"{time.perf_counter() - t:.1f} s")
        return np.concatenate(parts, axis=1).astype(np.float64)

    def scaled(self, raw: np.ndarray) -> np.ndarray:
        return self.scale * (raw - self.mean) / self.std / np.sqrt(self.dim)

    def __call__(self, prompts: Sequence[str]) -> np.ndarray:
        return self.scaled(self.raw(prompts))

    @classmethod
    def fit(cls, indexes: dict, prompts: Sequence[str], *, scale: float, root: str | os.PathLike,
            domains: Sequence[str] | None = None, log: Callable[[str], None] | None = print,
            which: Sequence[str] = ALL) -> tuple[IndexSignals, np.ndarray]:
        """Signals over ``domains`` (default: every index given), standardised on ``prompts``: (the signals,
        the prompts' features), so the training prompts are looked up once."""
        domains = sorted(indexes) if domains is None else [d for d in domains if d in indexes]
        if not domains:
            raise ArtifactError(f"{root}: no knowledge index for any of the router's labels")
        n = len(domains) * len(which)
        signals = cls(indexes, domains, np.zeros(n), np.ones(n), scale, str(root), which)
        key = (tuple((d, indexes[d].manifest.get("chunks_sha256")) for d in domains),
               hashlib.sha256("\n".join(prompts).encode()).hexdigest())
        cached = _TRAIN_RAW.get(key)
        if cached is None or not set(which) <= set(cached[0]):
            # the quickstart fits two routers on the same prompts: look them up once, every signal either needs
            every = tuple(dict.fromkeys([*(cached[0] if cached else ()), *which]))
            full = cls(indexes, domains, np.zeros(len(domains) * len(every)), np.ones(len(domains) * len(every)),
                       scale, str(root), every)
            _TRAIN_RAW.clear()
            _TRAIN_RAW[key] = cached = (every, full.raw(prompts, log))
        every, raw = cached
        cols = [i * len(every) + every.index(w) for i in range(len(domains)) for w in which]
        x = raw[:, cols]
        signals.mean, signals.std = x.mean(0), x.std(0) + 1e-6
        return signals, signals.scaled(x)

    def spec(self) -> dict:
        return {"root": self.root, "domains": self.domains, "scale": self.scale, "which": list(self.which),
                "indexes": {d: self.indexes[d].manifest.get("chunks_sha256") for d in self.domains},
                "mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_spec(cls, spec: dict, root: str | os.PathLike | None = None) -> IndexSignals:
        """Open the indexes a router was fitted on: under ``root`` if given, else where they were at fitting
        time; each must hold the same chunks."""
        from ..retrieval.index import load_index

        base = Path(root) if root is not None else Path(spec["root"])
        indexes = {}
        for d in spec["domains"]:
            path = base / d
            if not (path / "manifest.json").is_file():
                raise ArtifactError(f"the router reads the knowledge index {path}, which is missing; build it "
                                    f"(zephyra index build) or pass the index root (--index)")
            idx = load_index(path)
            want = spec["indexes"].get(d)
            if want and idx.manifest.get("chunks_sha256") != want:
                raise ArtifactError(f"{path}: not the index the router was fitted on (other chunks); retrain the "
                                    f"router (zephyra router train --index {base})")
            indexes[d] = idx
        return cls(indexes, spec["domains"], np.asarray(spec["mean"]), np.asarray(spec["std"]), spec["scale"],
                   str(base), spec.get("which", ALL))


def fit_signals(root: str | os.PathLike, labels: Sequence[str], prompts: Sequence[str], scale: float,
                which: Sequence[str] = ALL) -> tuple[IndexSignals, np.ndarray]:
    """The signals of the indexes under ``root`` for the router's ``labels`` that have one, standardised on the
    training ``prompts``: (signals, the prompts' features). A missing root or no index for any label: DataError."""
    from ..errors import DataError
    from ..retrieval.index import open_indexes
    from .calibration import BASE
    from .decision import check_prompts

    try:
        indexes = open_indexes(root, [d for d in labels if d != BASE and (Path(root) / d).is_dir()])
        return IndexSignals.fit(indexes, check_prompts(prompts), scale=scale, root=root, which=which)
    except ArtifactError as e:
        raise DataError(f"the router's index signals: {e}") from None
