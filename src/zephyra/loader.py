"""The one loader of a model directory: the model, its tokenizer and its manifest, as training exports them
(``runs/phase2/final``: ``config.json`` + safetensors + ``tokenizer.json`` + ``manifest.json``). Every part that
needs a base (the runtime, the router, adapter training, evaluation, benchmarks) loads it here.

    md = load_model_dir("runs/phase2/final")
    md.model, md.tokenizer, md.manifest
    model, tokenizer = load_model("runs/phase2/final")   # the same, without the manifest

A directory that is not a model (no ``config.json``), has no tokenizer, or a tokenizer without the bos/eos
tokens the runtime needs, or a file that no longer matches the hash its manifest records (manifest.verify_files),
is a one-line ``ArtifactError``; the model comes back in eval mode.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ArtifactError


@dataclass
class ModelDir:
    path: Path
    model: object  # a transformers PreTrainedModel (ZephyraForCausalLM, or a Llama / GPT-2 baseline)
    tokenizer: object  # a PreTrainedTokenizerFast
    manifest: dict = field(default_factory=dict)  # {} for a directory saved by other tools

    @property
    def context(self) -> int:
        cfg = self.model.config.get_text_config()
        return getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions")


def load_model_dir(path: str | os.PathLike, *, dtype=None, tokenizer_dir: str | os.PathLike | None = None
                   ) -> ModelDir:
    """Load the model (``dtype``: None keeps the saved one, e.g. ``torch.float32``) and its tokenizer (by default
    from the same directory)."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    from . import model as _registers_zephyra  # noqa: F401  (the Zephyra Auto classes)
    from .manifest import verify_files
    from .tokenizer import load_tokenizer

    path = Path(path)
    if not (path / "config.json").is_file():
        raise ArtifactError(f"{path}: not a model directory (no config.json)")
    tokenizer_path = Path(tokenizer_dir) if tokenizer_dir is not None else path
    if not (tokenizer_path / "tokenizer.json").is_file():
        raise ArtifactError(f"{tokenizer_path}: no tokenizer.json (a model directory holds its tokenizer)")
    try:  # the weights and the tokenizer checked against the manifest's hashes before anything is read
        manifest = verify_files(path)
    except FileNotFoundError:
        manifest = {}
    hf_logging.disable_progress_bar()  # "Loading weights" bars would bury our progress lines
    kwargs = {"dtype": dtype} if dtype is not None else {}
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path), **kwargs).eval()
    except Exception as e:  # noqa: BLE001  a config.json that is not a model's: HF raises OSError, ValueError,
        # TypeError (a list where a string goes), KeyError, its strict-dataclass errors
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise ArtifactError(f"{path}: cannot load the model ({type(e).__name__}: {first})") from None
    tokenizer = load_tokenizer(tokenizer_path)
    if tokenizer.bos_token_id is None or tokenizer.eos_token_id is None:
        raise ArtifactError(f"{tokenizer_path}: its tokenizer has no bos or eos token")
    return ModelDir(path=path, model=model, tokenizer=tokenizer, manifest=manifest)


def load_model(path: str | os.PathLike, **options):
    """(model, tokenizer) of a model directory; ``options`` as ``load_model_dir``'s."""
    md = load_model_dir(path, **options)
    return md.model, md.tokenizer
