"""Several LoRA adapters on one Zephyra base, applied per row of a batch: the weights (``AdapterBank``) and the
layer that applies them (``RowLoRALinear``).

PEFT applies one adapter to a whole batch, or mixes adapters through ``adapter_names`` by slicing the batch per
adapter in every layer, with Python work per layer and per call (0.44x-0.65x a single-adapter batch here). What
we add: the rows' updates are laid out once per batch, so an adapted linear costs the base's matmul plus two small
ones (and one elementwise product in a mixed batch), whatever adapters the batch mixes; a row may also hold a
weighted mix of adapters, which PEFT cannot. Three layouts ("kernels") are kept, as docs/multi_adapter.md
measures them: ``masked`` (the default), ``bmm`` and ``grouped`` (PEFT's strategy).

    bank = AdapterBank.from_dirs(model, {"python": "runs/adapters/python", "chemistry": "runs/adapters/chemistry"})

It lives in ``adapters/`` (not the runtime) so that routers can score a prompt under every adapter in one batch
too (``zephyra.router.likelihood``); ``zephyra.resolve.lora`` re-exports it for the runtime.

The bank reads PEFT's own files (``adapter_config.json`` + ``adapter_model.safetensors``), whether saved by
``zephyra.adapters.save_adapter`` (whose manifest's base fingerprint is checked) or by plain PEFT.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from peft.utils.other import get_pattern_key
from safetensors.torch import load_file
from torch import nn

from ..errors import ArtifactError
from .fingerprint import base_fingerprint
from .store import check_adapter_base

Mix = dict[str, float]  # one row's adapters and their weights; {} is the base model
KERNELS = ("masked", "bmm", "grouped")


class AdapterBankError(ArtifactError):
    """An adapter the multi-adapter runtime cannot apply; the message is one line."""


@dataclass(frozen=True)
class LoRAUpdate:
    """One adapter's low-rank update of one linear module: delta(x) = (x @ A) @ B."""

    A: torch.Tensor  # (in, r): PEFT's lora_A.weight transposed
    B: torch.Tensor  # (r, out): PEFT's lora_B.weight transposed, times PEFT's scaling


# --- reading adapters ---------------------------------------------------------------------------------------------

def _check_config(cfg: dict, where: str) -> None:
    """Refuse, in one line, what the runtime does not apply: everything but plain LoRA on linear layers."""
    if cfg.get("peft_type") != "LORA":
        raise AdapterBankError(f"{where}: a {cfg.get('peft_type')} adapter; the multi-adapter runtime applies "
                               "LoRA only")
    for key, why in (("use_dora", "DoRA rescales the whole weight per adapter, not a low-rank update"),
                     ("fan_in_fan_out", "Conv1D-style weights are not Zephyra's"),
                     ("lora_bias", "a LoRA bias is not a low-rank update"),
                     ("modules_to_save", "whole-module copies are not a low-rank update")):
        if cfg.get(key):
            raise AdapterBankError(f"{where}: {key} is set ({why}); the multi-adapter runtime cannot apply it")


def _scaling(cfg: dict, module: str, rank: int) -> float:
    """PEFT's scaling for ``module``: lora_alpha / r (or / sqrt(r) with rsLoRA), with alpha_pattern honoured."""
    alpha = cfg.get("lora_alpha", 8)
    pattern = cfg.get("alpha_pattern") or {}
    if pattern:
        key = get_pattern_key(list(pattern), module)
        alpha = pattern.get(key, alpha)
    return alpha / (math.sqrt(rank) if cfg.get("use_rslora") else rank)


def _updates_from_tensors(tensors: Mapping[str, torch.Tensor], cfg: dict, where: str) -> dict[str, LoRAUpdate]:
    """{module path: update} from PEFT's saved keys (``base_model.model.<path>.lora_A.weight``)."""
    paths: dict[str, dict[str, torch.Tensor]] = {}
    for key, t in tensors.items():
        for part in ("lora_A", "lora_B"):
            suffix = f".{part}.weight"
            if key.endswith(suffix):
                path = key[: -len(suffix)].removeprefix("base_model.model.")
                paths.setdefault(path, {})[part] = t
                break
        else:
            raise AdapterBankError(f"{where}: unexpected tensor {key!r}; the runtime applies plain LoRA A/B only")
    out = {}
    for path, ab in sorted(paths.items()):
        if set(ab) != {"lora_A", "lora_B"}:
            raise AdapterBankError(f"{where}: {path} lacks {({'lora_A', 'lora_B'} - set(ab)).pop()}")
        a, b = ab["lora_A"].float(), ab["lora_B"].float()  # (r, in), (out, r)
        s = _scaling(cfg, path, a.shape[0])
        out[path] = LoRAUpdate(A=a.t().contiguous(), B=(b * s).t().contiguous())
    return out


def read_adapter_dir(adapter_dir: str | os.PathLike) -> dict[str, LoRAUpdate]:
    """One saved LoRA adapter as {module path: update}."""
    d = Path(adapter_dir)
    cfg = json.loads((d / "adapter_config.json").read_text())
    _check_config(cfg, str(d))
    return _updates_from_tensors(load_file(str(d / "adapter_model.safetensors")), cfg, str(d))


def _peft_updates(peft_model, name: str) -> dict[str, LoRAUpdate]:
    """Adapter ``name`` of a live PeftModel as {module path: update} (copies, so the PeftModel may change)."""
    from peft.tuners.lora import LoraLayer

    cfg = peft_model.peft_config[name].to_dict()
    cfg["peft_type"] = getattr(cfg["peft_type"], "value", cfg["peft_type"])
    _check_config(cfg, f"adapter {name!r}")
    out = {}
    for path, module in peft_model.base_model.model.named_modules():
        if isinstance(module, LoraLayer) and name in module.lora_A:
            a, b = module.lora_A[name].weight.detach().float(), module.lora_B[name].weight.detach().float()
            out[path] = LoRAUpdate(A=a.t().contiguous().clone(), B=(b * module.scaling[name]).t().contiguous())
    return out


# --- the bank -----------------------------------------------------------------------------------------------------

class AdapterBank:
    """LoRA adapters by name, each {module path: LoRAUpdate}, all on the branch of one base."""

    def __init__(self, adapters: Mapping[str, Mapping[str, LoRAUpdate]]):
        bad = [n for n in adapters if n == "base" or not n]
        if bad:
            raise AdapterBankError(f"adapter name {bad[0]!r} is reserved for the base model")
        self.adapters = {name: dict(updates) for name, updates in adapters.items()}

    @property
    def names(self) -> list[str]:
        return list(self.adapters)

    def module_paths(self) -> list[str]:
        """Every module some adapter updates."""
        return sorted({p for updates in self.adapters.values() for p in updates})

    @classmethod
    def from_dirs(cls, model: nn.Module, adapters: Mapping[str, str | os.PathLike]) -> AdapterBank:
        """Read saved adapters. Those with our manifest must have been trained on ``model`` (fingerprint check);
        plain PEFT directories carry no fingerprint and are checked by shape only (``check_fits``)."""
        fingerprint = None
        out = {}
        for name, path in adapters.items():
            if (Path(path) / "manifest.json").is_file():
                fingerprint = fingerprint or base_fingerprint(model)
                check_adapter_base(path, fingerprint)
            out[name] = read_adapter_dir(path)
        bank = cls(out)
        bank.check_fits(model)
        return bank

    @classmethod
    def from_peft(cls, peft_model, names: Iterable[str] | None = None) -> AdapterBank:
        """The LoRA adapters held by a live PeftModel (all of them by default)."""
        names = list(peft_model.peft_config) if names is None else list(names)
        bank = cls({n: _peft_updates(peft_model, n) for n in names})
        bank.check_fits(peft_model.get_base_model())
        return bank

    def check_fits(self, model: nn.Module) -> None:
        """Every update targets a Linear of ``model``'s branch, with matching shapes: the trunk is shared by every
        row of a batch, so an adapter that touched it could not share it."""
        branch = set(model.config.branch_layers)
        modules = dict(model.named_modules())
        for name, updates in self.adapters.items():
            for path, u in updates.items():
                parts = path.split(".")
                layer = int(parts[2]) if parts[:2] == ["model", "layers"] and parts[2].isdigit() else None
                if layer not in branch:
                    raise AdapterBankError(f"adapter {name!r} updates {path}, outside the branch layers "
                                           f"{sorted(branch)}: the trunk is shared and never adapted")
                lin = modules.get(path)
                lin = lin.get_base_layer() if hasattr(lin, "get_base_layer") else lin  # see through PEFT's wrapper
                if type(lin) not in (nn.Linear, RowLoRALinear):  # e.g. bitsandbytes' Linear4bit (a subclass)
                    raise AdapterBankError(f"adapter {name!r}: {path} is a {type(lin).__name__}, not a plain Linear "
                                           "(a quantised base? apply adapters, QLoRA's too, to the full-precision "
                                           "base)")
                if (lin.in_features, lin.out_features) != (u.A.shape[0], u.B.shape[1]):
                    raise AdapterBankError(f"adapter {name!r}: {path} is not a Linear of shape "
                                           f"({u.A.shape[0]} -> {u.B.shape[1]}) in this model")


# --- per-row stacks -----------------------------------------------------------------------------------------------

def _mix_update(bank: AdapterBank, path: str, mix: Mix) -> tuple[torch.Tensor, torch.Tensor] | None:
    """One row's update of one module as a single low-rank pair: a weighted mix of adapters is their ranks side
    by side (A's columns concatenated, each B scaled by its weight), which is exact."""
    parts = [(bank.adapters[n][path], w) for n, w in mix.items() if w != 0 and path in bank.adapters[n]]
    if not parts:
        return None
    return torch.cat([u.A for u, _ in parts], 1), torch.cat([u.B * w for u, w in parts], 0)  # (in, R), (R, out)


def _pad_rank(pair, in_f: int, out_f: int, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad a pair to ``rank`` (a base row is all zeros): rows of different ranks then stack into one bmm."""
    a, b = pair if pair is not None else (torch.zeros(in_f, 0), torch.zeros(0, out_f))
    return F.pad(a, (0, rank - a.shape[1])), F.pad(b, (0, 0, 0, rank - b.shape[0]))


def row_stacks(bank: AdapterBank, path: str, mixes: list[Mix], lin: nn.Linear):
    """(A_rows (B, in, R), B_rows (B, R, out)) for the bmm kernel, or None when no row updates this module."""
    pairs = [_mix_update(bank, path, m) for m in mixes]
    if all(p is None for p in pairs):
        return None
    rank = max(p[0].shape[1] for p in pairs if p is not None)
    padded = [_pad_rank(p, lin.in_features, lin.out_features, rank) for p in pairs]
    dtype, device = lin.weight.dtype, lin.weight.device
    a_rows, b_rows = torch.stack([a for a, _ in padded]), torch.stack([b for _, b in padded])
    return a_rows.to(device, dtype), b_rows.to(device, dtype)


def row_groups(bank: AdapterBank, path: str, mixes: list[Mix], lin: nn.Linear):
    """[(row indices, A (in, R), B (R, out))] per distinct mix, for the grouped kernel (PEFT's strategy)."""
    groups: dict[tuple, list[int]] = {}
    for i, m in enumerate(mixes):
        groups.setdefault(tuple(sorted(m.items())), []).append(i)
    out = []
    for key, rows in groups.items():
        pair = _mix_update(bank, path, dict(key))
        if pair is not None:
            a, b = (t.to(lin.weight.device, lin.weight.dtype) for t in pair)
            out.append((torch.tensor(rows, device=lin.weight.device), a, b))
    return out or None


def row_masked(bank: AdapterBank, path: str, mixes: list[Mix], lin: nn.Linear):
    """(A (in, R), B (R, out), weights (B, 1, R) or None) for the masked kernel: the used adapters' matrices side
    by side, shared by every row, and each row's weight on every rank column (0 where a row does not use that
    adapter). When every row has the same mix the weights are folded into B and no mask is needed."""
    used = [n for n in dict.fromkeys(n for m in mixes for n in m) if path in bank.adapters[n]]
    if not used:
        return None
    ups = [bank.adapters[n][path] for n in used]
    ranks = torch.tensor([u.A.shape[1] for u in ups])
    w = torch.tensor([[m.get(n, 0.0) for n in used] for m in mixes])  # (B, adapters)
    a, b = torch.cat([u.A for u in ups], 1), torch.cat([u.B for u in ups], 0)  # (in, R), (R, out)
    dev, dt = lin.weight.device, lin.weight.dtype
    if bool((w == w[:1]).all()):
        return a.to(dev, dt), (b * w[0].repeat_interleave(ranks)[:, None]).to(dev, dt), None
    return a.to(dev, dt), b.to(dev, dt), w.repeat_interleave(ranks, dim=1)[:, None, :].to(dev, dt)


class RowLoRALinear(nn.Linear):
    """An nn.Linear that adds, to each row of the batch, that row's own low-rank update.

    It shares the Parameters of the Linear it replaces, so state_dict keys, the base fingerprint and the weights
    are unchanged. ``rows`` is set per batch by the engine: None (the base), or what ``row_masked``,
    ``row_stacks`` or ``row_groups`` laid out for the layer's kernel."""

    def __init__(self, base: nn.Linear, kernel: str = "masked"):
        nn.Module.__init__(self)
        if kernel not in KERNELS:
            raise ValueError(f"unknown kernel {kernel!r}; known: {', '.join(KERNELS)}")
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight, self.bias = base.weight, base.bias
        self.kernel = kernel
        self.rows = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x (B, T, in)
        if self.rows is None:
            return F.linear(x, self.weight, self.bias)
        if self.kernel == "masked":
            return self._masked(x)
        y = F.linear(x, self.weight, self.bias)  # (B, T, out)
        if self.kernel == "bmm":
            a, b = self.rows  # (B, in, R), (B, R, out)
            return torch.baddbmm(y, torch.bmm(x, a), b)
        for idx, a, b in self.rows:  # one group of rows per distinct mix, as PEFT's adapter_names does
            y.index_add_(0, idx, x.index_select(0, idx) @ a @ b)
        return y

    def _masked(self, x: torch.Tensor) -> torch.Tensor:
        """Every row through every used adapter's A (R is small), each row's own columns kept and weighted, then
        one addmm with the shared B. In 2-D throughout: plain mm/addmm, the fewest dispatches."""
        a, b, w = self.rows  # (in, R), (R, out), (B, 1, R) or None
        B, T, _ = x.shape
        x2 = x.reshape(B * T, -1)
        xa = x2 @ a  # (B * T, R)
        if w is not None:
            xa = (xa.view(B, T, -1) * w).view(B * T, -1)
        return torch.addmm(F.linear(x2, self.weight, self.bias), xa, b).view(B, T, -1)
