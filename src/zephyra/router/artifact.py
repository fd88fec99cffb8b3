"""Router directories: what a router is (``router.json``), its tensors (``router.safetensors``) and what produced
it (``manifest.json``: command, config, versions, data hashes, metrics and, for routers that read a Zephyra
model, the fingerprint of the base they were fitted on). Written atomically; ``load_router`` reads any kind.

    router = load_router("runs/router/inmodel", model=model, tokenizer=tokenizer)
    [d.to_json() for d in router.route(["What is a compiler?"])]
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..adapters import BaseFingerprint, base_fingerprint
from ..adapters.fingerprint import unwrap
from ..io import atomic_directory
from ..manifest import file_table, verify_files, write_manifest
from .calibration import Calibration
from .decision import RouterArtifactError

ROUTER_JSON = "router.json"
WEIGHTS = "router.safetensors"
KINDS = ("inmodel", "external", "arrow", "likelihood")


def router_base_fingerprint(model) -> BaseFingerprint:
    """The fingerprint of the base a router reads (adapters attached to it are ignored): a router is refused by
    any other base. The router's own head and labels are not in it: they live in the router's directory."""
    return base_fingerprint(unwrap(model))


def save_router_dir(out_dir: str | os.PathLike, spec: dict, tensors: dict[str, torch.Tensor], *,
                    config: dict | None = None, metrics: dict | None = None, inputs: dict | None = None,
                    base: BaseFingerprint | None = None) -> Path:
    """Write a router directory atomically. ``spec`` must hold ``kind``, ``labels`` and ``calibration``."""
    missing = [k for k in ("kind", "labels", "calibration") if k not in spec]
    if missing:
        raise ValueError(f"router spec lacks {', '.join(missing)}")
    with atomic_directory(out_dir) as tmp:
        (tmp / ROUTER_JSON).write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")
        save_file({k: v.detach().float().contiguous().cpu() for k, v in tensors.items()}, str(tmp / WEIGHTS))
        write_manifest(tmp, "router", config=config or {}, inputs=inputs or {}, metrics=metrics or {},
                       router_kind=spec["kind"], labels=spec["labels"],
                       base=base.to_dict() if base is not None else None, files=file_table(tmp))
    return Path(out_dir)


def read_router_dir(path: str | os.PathLike, kind: str | None = None) -> tuple[dict, dict[str, torch.Tensor], dict]:
    """(spec, tensors, manifest) of a router directory, or a one-line RouterArtifactError."""
    path = Path(path)
    if not (path / ROUTER_JSON).is_file() or not (path / WEIGHTS).is_file():
        raise RouterArtifactError(f"{path}: not a router directory (needs {ROUTER_JSON} and {WEIGHTS}); "
                                  "train one with `zephyra router train`")
    try:
        manifest = verify_files(path)  # a router.json or weights file changed since training is refused by name
        spec = json.loads((path / ROUTER_JSON).read_text())
    except (FileNotFoundError, ValueError) as e:
        raise RouterArtifactError(str(e).splitlines()[0]) from None
    if kind is not None and spec.get("kind") != kind:
        raise RouterArtifactError(f"{path}: a {spec.get('kind')!r} router, not {kind!r}")
    spec["calibration"] = Calibration(**spec["calibration"])
    return spec, load_file(str(path / WEIGHTS)), manifest


def check_router_base(path: str | os.PathLike, manifest: dict, model) -> None:
    """Refuse, in one line, a router fitted on another base than ``model``."""
    recorded = manifest.get("base") or {}
    fp = router_base_fingerprint(model)
    if recorded.get("fingerprint") != fp.digest:
        raise RouterArtifactError(
            f"{path}: router was fitted on base {str(recorded.get('fingerprint'))[:12]}, not on this base "
            f"{fp.digest[:12]} ({fp.difference(recorded)}); refusing to load it")


def router_kind(path: str | os.PathLike) -> str:
    path = Path(path)
    try:
        return json.loads((path / ROUTER_JSON).read_text())["kind"]
    except (OSError, ValueError, KeyError):
        raise RouterArtifactError(f"{path}: not a router directory (no readable {ROUTER_JSON})") from None


def load_router(path: str | os.PathLike, model=None, tokenizer=None, index_root: str | os.PathLike | None = None,
                **options):
    """Any saved router. ``inmodel``, ``arrow`` and ``likelihood`` routers need the base ``model`` (and its
    ``tokenizer``) they were fitted on (``likelihood`` also its adapters: the paths it recorded, or
    ``adapters=``); ``external`` needs neither (``options`` go to its loader, e.g. ``encoder=``). An external or
    in-model router fitted with the knowledge indexes' signals reads them under ``index_root`` (default: where
    they were)."""
    kind = router_kind(path)
    if kind == "external":
        from .external import ExternalRouter
        return ExternalRouter.load(path, index_root=index_root, **options)
    if kind not in KINDS:
        raise RouterArtifactError(f"{path}: unknown router kind {kind!r} (known: {', '.join(KINDS)})")
    if model is None or tokenizer is None:
        raise RouterArtifactError(f"{path}: an {kind!r} router needs the base model and its tokenizer")
    if kind == "inmodel":
        from .inmodel import InModelRouter
        return InModelRouter.load(path, model, tokenizer, index_root=index_root, **options)
    if kind == "likelihood":
        from .likelihood import LikelihoodRouter
        return LikelihoodRouter.load(path, model, tokenizer, **options)
    from .arrow import ArrowRouter
    return ArrowRouter.load(path, model, tokenizer, **options)


def open_router(router_dir: str | os.PathLike, model_dir: str | os.PathLike | None = None,
                tokenizer_dir: str | os.PathLike | None = None, model=None, tokenizer=None):
    """A ready router from its directory, loading the base from ``model_dir`` when the router needs one and
    none is passed: what ``zephyra route`` calls.

        router = open_router("runs/router/inmodel", "runs/base")
        for d in router.route(prompts): print(json.dumps(d.to_json()))
    """
    if router_kind(router_dir) != "external" and model is None:
        if model_dir is None:
            raise RouterArtifactError(f"{router_dir}: a {router_kind(router_dir)!r} router needs its base model "
                                      "(--model DIR)")
        from ..loader import load_model

        model, tokenizer = load_model(model_dir, tokenizer_dir=tokenizer_dir)
    return load_router(router_dir, model=model, tokenizer=tokenizer)
