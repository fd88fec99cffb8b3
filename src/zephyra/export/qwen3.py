"""Export a Zephyra base and its LoRA adapters to the Qwen3 architecture, so engines that serve Qwen3 (vLLM's
multi-LoRA server, tensor-parallel and multi-node; llama.cpp after its own conversion; transformers) serve them.

Zephyra with SwiGLU and QK-norm is, layer for layer, the Qwen3 design: pre-norm RMSNorm, rotary positions by the
half-split convention, grouped-query attention with RMSNorm on each head's queries and keys, SwiGLU, no biases,
tied embeddings. Zephyra fuses the query/key/value projections (``qkv_proj``) and the gate/up projections
(``gate_up_proj``) into one matmul each; Qwen3 keeps them apart. So the export splits those weights by rows, and a
LoRA update on a fused module, ``delta W = B A``, splits the same way: each part keeps ``A`` and takes its rows of
``B`` (exact: ``B_q A`` is the query rows of ``B A``). The trunk/branch split is Zephyra's own; in Qwen3 the branch
is just the layers the adapters name (``layers_to_transform``).

    out = export_qwen3("runs/phase2/final", "exports/qwen3", adapters={"python": "runs/adapters/python"})
    Qwen3ForCausalLM.from_pretrained(out)          # logits equal to Zephyra's (tests/export)
    PeftModel.from_pretrained(qwen3, out / "adapters" / "python")

Refused, in one line: a base with ReLU-squared MLPs or without QK-norm (no Qwen3 equivalent), an adapter that is
not plain LoRA, an adapter trained on another base.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from ..errors import ArtifactError, ConfigError

QWEN3_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def qwen3_config(cfg):
    """The ``Qwen3Config`` equal to a ``ZephyraConfig``."""
    from transformers import Qwen3Config

    if cfg.hidden_act != "silu":
        raise ConfigError(f"cannot export a {cfg.hidden_act!r} MLP to Qwen3 (SwiGLU only)")
    if not cfg.qk_norm:
        raise ConfigError("cannot export a base without QK-norm to Qwen3 (its attention always normalises q and k)")
    return Qwen3Config(
        vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers, num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads, head_dim=cfg.head_dim,
        max_position_embeddings=cfg.max_position_embeddings, rms_norm_eps=cfg.rms_norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
        tie_word_embeddings=cfg.tie_word_embeddings, hidden_act="silu", attention_bias=False,
        attention_dropout=0.0, use_sliding_window=False, bos_token_id=cfg.bos_token_id,
        eos_token_id=cfg.eos_token_id, pad_token_id=cfg.pad_token_id)


def _splits(cfg) -> dict[str, list[tuple[str, int]]]:
    """Fused Zephyra module -> [(Qwen3 module, rows)] in row order."""
    q, kv = cfg.num_attention_heads * cfg.head_dim, cfg.num_key_value_heads * cfg.head_dim
    return {"self_attn.qkv_proj": [("self_attn.q_proj", q), ("self_attn.k_proj", kv), ("self_attn.v_proj", kv)],
            "mlp.gate_up_proj": [("mlp.gate_proj", cfg.intermediate_size), ("mlp.up_proj", cfg.intermediate_size)]}


def qwen3_state_dict(model) -> dict[str, torch.Tensor]:
    """A Zephyra model's weights under Qwen3's names (the router head, which is not the base's, is left out)."""
    cfg, splits = model.config, _splits(model.config)
    out = {}
    for name, t in model.state_dict().items():
        if not name.startswith(("model.", "lm_head.")):
            continue
        if name == "lm_head.weight" and cfg.tie_word_embeddings:
            continue  # tied: Qwen3 reads the embedding
        for fused, parts in splits.items():
            if name.endswith(f".{fused}.weight"):
                prefix = name[: -len(f"{fused}.weight")]
                for (part, _), w in zip(parts, t.split([n for _, n in parts], dim=0)):
                    out[f"{prefix}{part}.weight"] = w.contiguous().clone()
                break
        else:
            out[name] = t.contiguous().clone()
    return out


def qwen3_adapter(adapter_dir: str | os.PathLike, cfg) -> tuple[dict, dict[str, torch.Tensor]]:
    """(adapter_config.json for Qwen3, tensors) of a saved Zephyra LoRA adapter."""
    from safetensors.torch import load_file

    d = Path(adapter_dir)
    conf = json.loads((d / "adapter_config.json").read_text())
    if conf.get("peft_type") != "LORA" or conf.get("use_dora") or conf.get("lora_bias") or conf.get("modules_to_save"):
        raise ArtifactError(f"{d}: only plain LoRA adapters export to Qwen3 (this one is "
                            f"{conf.get('peft_type')}{' with DoRA' if conf.get('use_dora') else ''})")
    splits = _splits(cfg)
    tensors = load_file(str(d / "adapter_model.safetensors"))
    out = {}
    for key, t in tensors.items():
        for fused, parts in splits.items():
            if f".{fused}.lora_" in key:
                head, tail = key.split(f".{fused}.", 1)  # tail: lora_A.weight | lora_B.weight
                pieces = ([t] * len(parts) if tail.startswith("lora_A")
                          else t.split([n for _, n in parts], dim=0))
                for (part, _), w in zip(parts, pieces):
                    out[f"{head}.{part}.{tail}"] = w.contiguous().clone()
                break
        else:
            out[key] = t.contiguous().clone()
    targets = set()
    for module in conf.get("target_modules") or []:
        targets |= {p.split(".")[-1] for p, _ in splits.get(f"self_attn.{module}", splits.get(f"mlp.{module}", []))} \
            or {module}
    new = dict(conf)
    new["target_modules"] = sorted(targets)
    new["base_model_name_or_path"] = None
    for pattern in ("rank_pattern", "alpha_pattern"):
        if new.get(pattern):
            raise ArtifactError(f"{d}: a LoRA {pattern} does not export yet (set per fused module)")
    return new, out


def export_qwen3(base_dir: str | os.PathLike, out: str | os.PathLike,
                 adapters: dict[str, str | os.PathLike] | None = None) -> Path:
    """Write ``out`` (atomically): a Qwen3 ``save_pretrained`` directory with the base's tokenizer, and
    ``out/adapters/<name>/`` for each adapter, PEFT LoRA on Qwen3's module names."""
    from transformers import Qwen3ForCausalLM

    from ..adapters import base_fingerprint
    from ..io import atomic_directory
    from ..loader import load_model

    model, tokenizer = load_model(base_dir)
    if getattr(model.config, "model_type", None) != "zephyra":
        raise ConfigError(f"{base_dir}: not a Zephyra model ({model.config.model_type!r})")
    qcfg = qwen3_config(model.config)
    fingerprint = base_fingerprint(model).digest
    exported = {}
    for name, path in (adapters or {}).items():
        manifest = Path(path) / "manifest.json"
        if manifest.is_file():
            recorded = (json.loads(manifest.read_text()).get("base") or {}).get("fingerprint")
            if recorded and recorded != fingerprint:
                raise ArtifactError(f"adapter {name!r} ({path}) was trained on another base, not {base_dir}")
        exported[name] = qwen3_adapter(path, model.config)
    with atomic_directory(out) as tmp:
        qwen = Qwen3ForCausalLM(qcfg)
        missing, unexpected = qwen.load_state_dict(qwen3_state_dict(model), strict=False)
        missing = [k for k in missing if not (k == "lm_head.weight" and qcfg.tie_word_embeddings)]
        if missing or unexpected:
            raise ArtifactError(f"the Qwen3 export does not fit: missing {missing[:3]}, unexpected {unexpected[:3]}")
        if qcfg.tie_word_embeddings:
            qwen.tie_weights()
        qwen.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        from safetensors.torch import save_file

        for name, (conf, tensors) in exported.items():
            d = tmp / "adapters" / name
            d.mkdir(parents=True)
            conf["base_model_name_or_path"] = str(Path(out).resolve())
            (d / "adapter_config.json").write_text(json.dumps(conf, indent=2))
            save_file(tensors, str(d / "adapter_model.safetensors"))
            src = Path((adapters or {})[name])
            if (src / "manifest.json").is_file():  # what trained it, kept beside (PEFT ignores the file)
                shutil.copy(src / "manifest.json", d / "zephyra-manifest.json")
        (tmp / "zephyra-export.json").write_text(json.dumps(
            {"format": "qwen3", "base": str(base_dir), "base_fingerprint": fingerprint,
             "adapters": {n: str(p) for n, p in (adapters or {}).items()}}, indent=2))
    return Path(out)
