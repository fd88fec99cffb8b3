"""Attach, save, load, switch and merge named adapters on one base model.

On disk an adapter directory is PEFT's own format (``adapter_config.json`` + ``adapter_model.safetensors``, which
plain ``PeftModel.from_pretrained`` and vLLM read) plus our ``manifest.json``: the base's fingerprint, domain,
method, data hashes, metrics and the resolved config. What PEFT lacks and we add: the fingerprint check on load
(an adapter is refused by any base but its own), the manifest, and atomic saving.

    peft_model = attach_adapter(base, "lora", name="python", rank=8)       # then train it
    save_adapter(peft_model, "runs/adapters/python", domain="python", data_hashes={...}, metrics={...})
    model = load_adapter(base, "runs/adapters/python")                     # refuses another base
    model = load_adapter(model, "runs/adapters/chemistry")                 # a second adapter, same base
    switch_adapter(model, "python")
"""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path

from peft import PeftConfig, PeftModel, get_peft_model
from torch import nn

from ..errors import ArtifactError
from ..io import atomic_directory
from ..manifest import file_table, read_manifest, verify_files, write_manifest
from .fingerprint import FINGERPRINT_ATTR, BaseFingerprint, base_fingerprint, unwrap
from .methods import AdapterConfigError, AdapterSpec, peft_config
from .quant import quantize_base_

SPECS_ATTR = "zephyra_adapter_specs"  # {adapter name: AdapterSpec}, kept on the PeftModel for save_adapter


class AdapterMismatchError(ArtifactError):
    """An adapter that does not belong to this base (or this model); the message is one line."""


def _specs(model: PeftModel) -> dict[str, AdapterSpec]:
    if SPECS_ATTR not in model.__dict__:
        model.__dict__[SPECS_ATTR] = {}
    return model.__dict__[SPECS_ATTR]


def _check_can_add(model: PeftModel, name: str, peft_type) -> None:
    if name in model.peft_config:
        raise AdapterMismatchError(f"an adapter named {name!r} is already loaded; pick another name")
    if model.peft_type != peft_type:
        raise AdapterMismatchError(f"cannot add a {peft_type.value} adapter to a model holding {model.peft_type.value} "
                                   "adapters: PEFT keeps one method per model (use another copy of the base)")


def attach_adapter(model: nn.Module, method: str | AdapterSpec = "lora", *, name: str = "default",
                   **options) -> PeftModel:
    """A new trainable adapter ``name`` on ``model`` (a transformers model, or a PeftModel that already holds
    adapters of the same method), made active. ``options`` are AdapterSpec fields. "qlora" first quantises the
    base to NF4 in place (``quantize_base_``), unless it is quantised already."""
    if isinstance(method, AdapterSpec) and options:
        raise AdapterConfigError(f"give either an AdapterSpec or options, not both (got {', '.join(options)})")
    spec = method if isinstance(method, AdapterSpec) else AdapterSpec.from_dict({"method": method, **options})
    base = unwrap(model)
    if spec.method == "qlora" and getattr(base, FINGERPRINT_ATTR, None) is None:
        if isinstance(model, PeftModel):
            raise AdapterConfigError("qlora must be the first adapter on a base: it quantises the base in place")
        quantize_base_(base)
    cfg = peft_config(spec, base.config, model=base)
    if isinstance(model, PeftModel):
        _check_can_add(model, name, cfg.peft_type)
        model.add_adapter(name, cfg)
        model.set_adapter(name)
    else:
        model = get_peft_model(model, cfg, adapter_name=name)
    _specs(model)[name] = spec
    return model


def _jsonable(obj):
    """PEFT configs hold sets and enums; manifests want lists and strings."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (set, frozenset)):
        return sorted(_jsonable(v) for v in obj)
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return getattr(obj, "value", str(obj))


def _spec_of(model: PeftModel, name: str) -> AdapterSpec:
    """The spec recorded by attach_adapter/load_adapter, or one read back from the PEFT config."""
    if name in _specs(model):
        return _specs(model)[name]
    cfg = model.peft_config[name]
    method = {"LORA": "dora" if getattr(cfg, "use_dora", False) else "lora", "IA3": "ia3",
              "PREFIX_TUNING": "prefix"}.get(cfg.peft_type.value, cfg.peft_type.value.lower())
    return AdapterSpec(method=method, rank=getattr(cfg, "r", 8) or 8)


def save_adapter(model: PeftModel, adapter_dir: str | os.PathLike, *, name: str | None = None,
                 domain: str | None = None, data_hashes: dict | None = None, metrics: dict | None = None,
                 config: dict | None = None, base: BaseFingerprint | None = None) -> Path:
    """Write adapter ``name`` (default: the active one) to ``adapter_dir`` atomically: PEFT's files at the top
    level (so ``PeftModel.from_pretrained(base, adapter_dir)`` loads it) and ``manifest.json``. ``config`` is
    the caller's resolved run config (training settings); ``base`` a fingerprint computed earlier."""
    if not isinstance(model, PeftModel):
        raise TypeError(f"save_adapter needs a PeftModel, got {type(model).__name__}")
    name = name or model.active_adapter
    if name not in model.peft_config:
        raise AdapterMismatchError(f"no adapter named {name!r}; loaded: {', '.join(model.peft_config)}")
    spec = _spec_of(model, name)
    fingerprint = base or base_fingerprint(model)
    with atomic_directory(adapter_dir) as tmp:
        model.save_pretrained(str(tmp), selected_adapters=[name])
        if name != "default":  # PEFT writes non-default adapters one level down, in <dir>/<name>/
            for f in (tmp / name).iterdir():
                shutil.move(str(f), tmp / f.name)
            (tmp / name).rmdir()
        write_manifest(tmp, "adapter", config={"adapter": spec.to_dict(), "peft": _jsonable(
            model.peft_config[name].to_dict()), "run": config or {}}, inputs=data_hashes or {},
            metrics=metrics or {}, name=name, domain=domain or name, method=spec.method,
            base=fingerprint.to_dict(), files=file_table(tmp))
    return Path(adapter_dir)


def check_adapter_base(adapter_dir: str | os.PathLike, fingerprint: BaseFingerprint) -> dict:
    """The adapter's manifest, if it was trained on the base with this fingerprint and its files are the ones it
    recorded (manifest.verify_files; older adapters without the table are not checked); else a one-line error."""
    manifest = read_manifest(adapter_dir)
    if manifest.get("kind") != "adapter":
        raise AdapterMismatchError(f"{adapter_dir}: not an adapter (manifest kind {manifest.get('kind')!r})")
    verify_files(adapter_dir, manifest)
    recorded = manifest.get("base") or {}
    if recorded.get("fingerprint") != fingerprint.digest:
        raise AdapterMismatchError(
            f"{adapter_dir}: adapter {manifest.get('name')!r} was trained on base "
            f"{str(recorded.get('fingerprint'))[:12]}, not on this base {fingerprint.digest[:12]} "
            f"({fingerprint.difference(recorded)}); refusing to load it")
    return manifest


def load_adapter(model: nn.Module, adapter_dir: str | os.PathLike, *, name: str | None = None,
                 fingerprint: BaseFingerprint | None = None, is_trainable: bool = False) -> PeftModel:
    """Load a saved adapter onto ``model`` (a base, or a PeftModel holding adapters of the same method) as
    ``name`` (default: the name it was saved under) and make it active. Refuses an adapter trained on another
    base. Pass ``fingerprint`` (from ``base_fingerprint``) when loading many adapters to hash the base once."""
    manifest = check_adapter_base(adapter_dir, fingerprint or base_fingerprint(model))
    name = name or manifest.get("name") or "default"
    if isinstance(model, PeftModel):
        _check_can_add(model, name, PeftConfig.from_pretrained(str(adapter_dir)).peft_type)
        model.load_adapter(str(adapter_dir), adapter_name=name, is_trainable=is_trainable)
        model.set_adapter(name, inference_mode=not is_trainable)
    else:
        model = PeftModel.from_pretrained(model, str(adapter_dir), adapter_name=name, is_trainable=is_trainable)
    _specs(model)[name] = AdapterSpec.from_dict(manifest["config"]["adapter"])
    return model


def adapter_names(model: nn.Module) -> list[str]:
    return list(model.peft_config) if isinstance(model, PeftModel) else []


def switch_adapter(model: PeftModel, name: str, *, trainable: bool = False) -> PeftModel:
    """Make ``name`` the active adapter (frozen unless ``trainable``). For the bare base, use PEFT's
    ``with model.disable_adapter(): ...``."""
    if name not in adapter_names(model):
        raise AdapterMismatchError(f"no adapter named {name!r}; loaded: {', '.join(adapter_names(model)) or 'none'}")
    model.set_adapter(name, inference_mode=not trainable)
    return model


def merge_adapter(model: PeftModel, name: str | None = None, *, copy_model: bool = True) -> nn.Module:
    """The base with adapter ``name`` (default: the active one) merged into its weights, as a plain
    transformers model (PEFT's ``merge_and_unload``): no adapter overhead at evaluation time. By default the
    PeftModel is deep-copied first and stays usable. A QLoRA adapter merges into requantised NF4 weights (lossy):
    to evaluate one at full precision, load it onto the unquantised base and merge there."""
    name = name or model.active_adapter
    if name not in adapter_names(model):
        raise AdapterMismatchError(f"no adapter named {name!r}; loaded: {', '.join(adapter_names(model)) or 'none'}")
    if model.peft_config[name].is_prompt_learning:
        raise AdapterConfigError(f"adapter {name!r} is {model.peft_config[name].peft_type.value}: prompt-learning "
                                 "adapters live in the input, not in weights, and cannot be merged")
    target = copy.deepcopy(model) if copy_model else model
    target.set_adapter(name, inference_mode=True)
    return target.merge_and_unload(adapter_names=[name])
