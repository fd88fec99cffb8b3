"""Checkpoints: written atomically, verified by hash before anything is loaded, rotated (last N + best).

    out_dir/checkpoints/step-0000200/
        config.json, model.safetensors      the model (save_pretrained)
        optimizer.pt                        optimizer and scheduler state dicts (torch.save, tensors only)
        rng.pt                              torch RNG state of every process
        state.json                          step, tokens, data position, python/numpy RNG, best val loss, metrics
        manifest.json                       the resolved config and the sha256 and size of every file above

A checkpoint whose manifest is missing, or any of whose files is missing, truncated or altered, is refused with
a ``CheckpointError`` before a single byte of it is deserialised.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import torch

from ..io import atomic_directory, atomic_write_json, sha256_file
from ..errors import ArtifactError
from ..manifest import MANIFEST, file_table, read_manifest, write_manifest  # noqa: F401  (file_table: re-exported)

STEP_DIR = re.compile(r"^step-(\d{7,})$")


class CheckpointError(ArtifactError):
    """A checkpoint that must not be loaded; one line saying which and why."""


def step_dir(root: Path, step: int) -> Path:
    return root / f"step-{step:07d}"


def list_checkpoints(root: Path) -> list[tuple[int, Path]]:
    """(step, path) of every checkpoint directory under ``root``, oldest first (temporaries are skipped)."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := STEP_DIR.match(p.name))]
    return sorted(found)


def verify(directory: str | os.PathLike) -> dict:
    """The manifest of ``directory`` once every file it lists is present with its recorded size and hash."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint {directory} does not exist")
    try:
        manifest = read_manifest(directory)
    except (FileNotFoundError, ValueError) as e:
        raise CheckpointError(f"refusing checkpoint {directory}: {e}") from None
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise CheckpointError(f"refusing checkpoint {directory}: its manifest lists no files")
    for name, rec in files.items():
        path = directory / name
        if not path.is_file():
            raise CheckpointError(f"refusing checkpoint {directory}: {name} is missing")
        size = path.stat().st_size
        if size != rec["bytes"]:
            raise CheckpointError(f"refusing checkpoint {directory}: {name} is {size} bytes, the manifest says "
                                  f"{rec['bytes']} (truncated or overwritten)")
        if sha256_file(path) != rec["sha256"]:
            raise CheckpointError(f"refusing checkpoint {directory}: {name} does not match its sha256 (corrupt)")
    return manifest


def seal(directory: Path, kind: str, config: dict, metrics: dict, **extra) -> None:
    """Write the manifest that makes ``directory`` a verifiable artifact (call last, inside the temporary)."""
    write_manifest(directory, kind, config=config, metrics=metrics, files=file_table(directory), **extra)


def save_checkpoint(root: Path, step: int, model, optim_state: dict, rng_states: list, state: dict,
                    config: dict, metrics: dict) -> Path:
    """Write ``root/step-XXXXXXX`` in one atomic rename."""
    final = step_dir(root, step)
    with atomic_directory(final) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        torch.save(optim_state, tmp / "optimizer.pt")
        torch.save(rng_states, tmp / "rng.pt")
        atomic_write_json(tmp / "state.json", state)
        seal(tmp, "checkpoint", config, metrics, step=step)
    return final


def load_checkpoint(directory: Path) -> tuple[dict, dict, list, dict]:
    """(manifest, optimizer state, RNG states, trainer state) of a verified checkpoint; the model weights are
    loaded by the caller from the same directory (``load_weights``)."""
    manifest = verify(directory)
    optim_state = torch.load(directory / "optimizer.pt", map_location="cpu", weights_only=True)
    rng_states = torch.load(directory / "rng.pt", map_location="cpu", weights_only=True)
    state = json.loads((directory / "state.json").read_text())
    return manifest, optim_state, rng_states, state


def load_weights(model, directory: Path) -> None:
    """Copy the checkpoint's safetensors weights into ``model`` (strict: every tensor must match)."""
    model.load_state_dict(checkpoint_tensors(model, directory), strict=True)


def checkpoint_tensors(model, directory: Path) -> dict:
    """The checkpoint's safetensors weights, one for every key of ``model``'s state dict (tied aliases filled)."""
    from safetensors.torch import load_file

    tensors = load_file(str(directory / "model.safetensors"))
    own = model.state_dict()
    # tied weights are stored once by save_pretrained; fill the alias from its source
    for key in own:
        if key not in tensors:
            tied = getattr(model, "_tied_weights_keys", None) or {}
            src = tied.get(key) if isinstance(tied, dict) else None
            if src is None or src not in tensors:
                raise CheckpointError(f"refusing checkpoint {directory}: model.safetensors has no {key}")
            tensors[key] = tensors[src]
    extra = sorted(set(tensors) - set(own))
    if extra:
        raise CheckpointError(f"refusing checkpoint {directory}: weights {extra[:3]} do not belong to this model")
    return tensors


def latest(root: Path) -> Path | None:
    found = list_checkpoints(root)
    return found[-1][1] if found else None


def rotate(root: Path, keep_last: int) -> dict | None:
    """Delete all but the newest ``keep_last`` checkpoints and the best one (lowest recorded val_loss).
    Returns {"step", "val_loss", "path"} of the best, or None when no checkpoint has a val_loss."""
    found = list_checkpoints(root)
    best = None
    for step, path in found:
        try:
            val = json.loads((path / "state.json").read_text()).get("val_loss")
        except (OSError, ValueError):
            continue
        if val is not None and (best is None or val < best["val_loss"]):
            best = {"step": step, "val_loss": val, "path": str(path)}
    keep = {p for _, p in found[-keep_last:]} if keep_last else set()
    if best is not None:
        keep.add(Path(best["path"]))
    for _, path in found:
        if path not in keep:
            shutil.rmtree(path, ignore_errors=True)
    if best is not None:
        atomic_write_json(root / "best.json", best)
    return best
