"""Method presets: one typed spec -> the PEFT config for LoRA, DoRA, QLoRA, IA3 or prefix tuning.

On a Zephyra model every method except prefix tuning touches only the branch layers (DESIGN.md: the trunk is
shared by every adapter and never adapted). On any other Hugging Face causal LM (Llama, GPT-2, ...) adapters go
on the last half of the layers, with PEFT's per-architecture default targets.

    from zephyra.adapters import peft_config
    cfg = peft_config("lora", model.config, rank=8)
    peft_model = peft.get_peft_model(model, cfg)
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from peft import IA3Config, LoraConfig, PeftConfig, PrefixTuningConfig, TaskType
from peft.utils.constants import (
    TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING,
    TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING,
    TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING,
)
from torch import nn

from ..errors import ConfigError

METHODS = ("lora", "dora", "qlora", "ia3", "prefix")

# The names under which transformers models keep their layer list (PEFT's own COMMON_LAYERS_PATTERN).
LAYER_LISTS = ("layers", "h", "block", "blocks", "layer")

# Architectures whose layers are transformers' Conv1D (weights stored transposed): PEFT must know.
CONV1D_MODEL_TYPES = ("gpt2",)

# Zephyra's linear layers: attention (fused q/k/v, output) and MLP (fused gate/up, down).
ZEPHYRA_LINEARS = ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]
# IA3 as in its paper: rescale keys/values (here the fused q/k/v output: q's scale is one spare vector) and the
# MLP's hidden activations (the input of down_proj, hence "feedforward").
ZEPHYRA_IA3 = (["qkv_proj", "down_proj"], ["down_proj"])


class AdapterConfigError(ConfigError):
    """An adapter spec that cannot build a PEFT config; the message is one line."""


@dataclass
class AdapterSpec:
    """What an adapter is, independent of any model. YAML recipes mirror these fields."""

    method: str = "lora"  # one of METHODS
    rank: int = 8  # LoRA/DoRA/QLoRA rank
    alpha: float | None = None  # LoRA scaling numerator; None: 2 * rank (scale 2, a common choice)
    dropout: float = 0.0  # LoRA dropout; 0 keeps training deterministic and is fine for small adapters
    num_virtual_tokens: int = 16  # prefix tuning: prefix length (per layer key/value pairs)
    target_modules: list[str] | None = None  # None: the architecture's default (see module docstring)
    layers: list[int] | None = None  # None: Zephyra's branch, or the last half of another model's layers
    identity_init: bool = True  # False: non-zero init, so "the adapter changes the output" tests can fail

    def __post_init__(self):
        if self.method not in METHODS:
            raise AdapterConfigError(f"unknown adapter method {self.method!r}; known: {', '.join(METHODS)}")
        for name in ("rank", "num_virtual_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise AdapterConfigError(f"{name} must be a positive integer, got {value!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise AdapterConfigError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.alpha is not None and self.alpha <= 0:
            raise AdapterConfigError(f"alpha must be positive, got {self.alpha!r}")

    @classmethod
    def from_dict(cls, d: dict) -> AdapterSpec:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise AdapterConfigError(f"unknown adapter option(s) {', '.join(unknown)}; "
                                     f"known: {', '.join(sorted(known))}")
        return cls(**d)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def is_zephyra(model_config) -> bool:
    return getattr(model_config, "model_type", None) == "zephyra"


def adapter_layers(spec: AdapterSpec, model_config) -> list[int]:
    """The layer indices an adapter may touch: Zephyra's branch (never its trunk), else the last half."""
    n = model_config.get_text_config().num_hidden_layers
    if is_zephyra(model_config):
        branch = list(model_config.branch_layers)
        if not branch:
            raise AdapterConfigError("this Zephyra model has no branch layers (num_trunk_layers == num_hidden_layers)")
        if spec.layers is None:
            return branch
        trunk = sorted(set(spec.layers) - set(branch))
        if trunk:
            raise AdapterConfigError(f"layers {trunk} are not branch layers {branch}: adapters never touch the trunk")
        return sorted(spec.layers)
    layers = list(range(n // 2, n)) if spec.layers is None else sorted(spec.layers)
    bad = [i for i in layers if not 0 <= i < n]
    if bad:
        raise AdapterConfigError(f"layers {bad} out of range for a {n}-layer model")
    return layers


def _linear_suffixes(model: nn.Module) -> list[str]:
    """Last name of every Linear/Conv1D inside a numbered layer: all-linear, limited to the layer stack
    (PEFT's "all-linear" cannot be combined with layers_to_transform)."""
    out = set()
    for name, module in model.named_modules():
        if type(module).__name__ in ("Linear", "Conv1D") and re.search(r"\.\d+\.", f".{name}"):
            out.add(name.rsplit(".", 1)[-1])
    return sorted(out)


def default_targets(spec: AdapterSpec, model_config, model: nn.Module | None = None) -> tuple[list[str], list[str]]:
    """(target modules, IA3 feed-forward modules) for this method and architecture."""
    if spec.target_modules is not None:
        return list(spec.target_modules), []
    if is_zephyra(model_config):
        return (list(ZEPHYRA_IA3[0]), list(ZEPHYRA_IA3[1])) if spec.method == "ia3" else (list(ZEPHYRA_LINEARS), [])
    model_type = model_config.model_type
    table = TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING if spec.method == "ia3" else \
        TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING
    if model_type in table:
        ff = TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING.get(model_type, []) if spec.method == "ia3" else []
        return list(table[model_type]), list(ff)
    if model is not None and (found := _linear_suffixes(model)):
        return found, []
    raise AdapterConfigError(f"no default adapter targets for model_type {model_type!r}: "
                             "set target_modules (or pass the model so its linear layers can be found)")


def _layer_regex(layers: list[int], suffixes: list[str]) -> str:
    """A full-match regex for the named modules inside the given layers (IA3 has no layers_to_transform)."""
    return (rf"(.*\.)?({'|'.join(LAYER_LISTS)})\.({'|'.join(map(str, layers))})\.(.*\.)?"
            rf"({'|'.join(map(re.escape, suffixes))})")


def _lora(spec: AdapterSpec, model_config, model) -> LoraConfig:
    targets, _ = default_targets(spec, model_config, model)
    return LoraConfig(
        task_type=TaskType.CAUSAL_LM, r=spec.rank, lora_alpha=spec.alpha or 2 * spec.rank,
        lora_dropout=spec.dropout, target_modules=targets, use_dora=spec.method == "dora",
        layers_to_transform=adapter_layers(spec, model_config),
        layers_pattern="layers" if is_zephyra(model_config) else list(LAYER_LISTS),
        init_lora_weights=spec.identity_init, fan_in_fan_out=model_config.model_type in CONV1D_MODEL_TYPES,
    )


def _ia3(spec: AdapterSpec, model_config, model) -> IA3Config:
    targets, ff = default_targets(spec, model_config, model)
    layers = adapter_layers(spec, model_config)
    return IA3Config(
        task_type=TaskType.CAUSAL_LM, target_modules=_layer_regex(layers, targets),
        feedforward_modules=_layer_regex(layers, ff) if ff else [],
        fan_in_fan_out=model_config.model_type in CONV1D_MODEL_TYPES,
        init_ia3_weights=spec.identity_init,  # False: random vectors (PEFT draws them from N(0, 1))
    )


def _prefix(spec: AdapterSpec, model_config, model) -> PrefixTuningConfig:
    """Prefix tuning cannot be limited to the branch: PEFT's prefix encoder emits key/value prefixes for every
    layer (num_layers is the model's depth, and the cache it builds is indexed from layer 0), so on Zephyra
    it also changes the trunk's states and with them what the router reads. ``layers`` is therefore refused."""
    if spec.layers is not None:
        raise AdapterConfigError("prefix tuning cannot be limited to some layers: PEFT prefixes every layer")
    # PEFT's default prefix init is random; identity_init has no meaning here (a zero prefix still
    # takes attention mass), so there is no exactly-identity prefix to offer.
    return PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=spec.num_virtual_tokens)


def peft_config(method: str | AdapterSpec, model_config, *, model: nn.Module | None = None, **options) -> PeftConfig:
    """The PEFT config for ``method`` on a model with ``model_config``.

    ``options`` are AdapterSpec fields (rank, alpha, dropout, num_virtual_tokens, target_modules, layers,
    identity_init). ``model`` is needed only for architectures PEFT has no default targets for.
    "qlora" gives the same LoraConfig as "lora": the quantisation is of the base (see ``quantize_base_``).
    """
    if isinstance(method, AdapterSpec) and options:
        raise AdapterConfigError(f"give either an AdapterSpec or options, not both (got {', '.join(options)})")
    spec = method if isinstance(method, AdapterSpec) else AdapterSpec.from_dict({"method": method, **options})
    build = {"lora": _lora, "dora": _lora, "qlora": _lora, "ia3": _ia3, "prefix": _prefix}[spec.method]
    return build(spec, model_config, model)
