"""QLoRA's frozen 4-bit base on CPU: bitsandbytes NF4 weights under PEFT LoRA.

transformers quantises only while loading (``from_pretrained(quantization_config=BitsAndBytesConfig(...))``);
we quantise a model already in memory, so the fingerprint of its full-precision weights can be taken first.
PEFT wraps bitsandbytes' ``Linear4bit`` itself (peft/tuners/lora/bnb.py).

Tried here (torch 2.13 CPU, PEFT 0.21): bitsandbytes 0.50.2 NF4 trains (LoRA weights get gradients) and
generates. torchao 0.18 int8 weight-only also trained under PEFT, but several times slower per step and it
cannot merge without a TorchAoConfig-loaded base; torchao int4 asks for the ``mslk`` package, and PEFT's torchao
LoRA layer refuses int4 weights anyway. So bitsandbytes it is.
"""

from __future__ import annotations

import torch
from torch import nn

from .fingerprint import FINGERPRINT_ATTR, base_fingerprint


def _linears(model: nn.Module, skip: tuple[str, ...]):
    """(parent, child name, linear) for every plain nn.Linear inside the layer stack, minus ``skip``."""
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            if type(child) is nn.Linear and ".layers." in f".{full}" and not any(s in full for s in skip):
                yield module, child_name, child


def quantize_base_(model: nn.Module, *, compute_dtype: torch.dtype = torch.float32,
                   skip: tuple[str, ...] = ()) -> nn.Module:
    """Replace, in place, every linear layer of the decoder layers by a frozen bitsandbytes NF4 ``Linear4bit``
    (double-quantised statistics, as in QLoRA). Embeddings, the output matrix and the router head stay in full
    precision. The model keeps the fingerprint of its full-precision weights, so adapters trained on it are
    recorded against (and load onto) the unquantised base. Returns the model.

        model = quantize_base_(ZephyraForCausalLM.from_pretrained(path))
        peft_model = attach_adapter(model, "qlora", name="python")
    """
    try:
        from bitsandbytes.nn import Linear4bit, Params4bit
    except ImportError as e:
        raise RuntimeError(f"qlora needs bitsandbytes (pip install 'bitsandbytes>=0.50,<1'): {e}") from None
    fingerprint = base_fingerprint(model)  # before quantisation: the packed weights are not the base's
    count = 0
    for parent, name, lin in _linears(model, skip):
        q = Linear4bit(lin.in_features, lin.out_features, bias=lin.bias is not None, compute_dtype=compute_dtype,
                       compress_statistics=True, quant_type="nf4", device="meta")
        q.weight = Params4bit(lin.weight.data, requires_grad=False, compress_statistics=True, quant_type="nf4",
                              module=q)
        if lin.bias is not None:
            q.bias = nn.Parameter(lin.bias.data, requires_grad=False)
        q = q.to(lin.weight.device)  # bitsandbytes quantises on .to(device)
        # bitsandbytes 0.50's AVX512-bf16 inference path repacks weights in place on the first eval forward,
        # fails when in_features is not a multiple of its block size (64; e.g. the tiny/small presets) and
        # casts scales to bf16, so eval and training would see different weights: keep the one portable path.
        q.support_avx512bf16_for_cpu = False
        setattr(parent, name, q)
        count += 1
    if count == 0:
        raise ValueError("quantize_base_: no linear layer found inside the model's decoder layers")
    setattr(model, FINGERPRINT_ATTR, fingerprint)
    return model
