"""The Zephyra architecture: a decoder-only transformer whose layers split into a trunk and a branch.

Pre-norm RMSNorm, rotary positions, gated MLP (SwiGLU or ReLU squared), grouped-query attention with QK-norm,
no biases, tied embeddings, attention through PyTorch SDPA. The first ``num_trunk_layers`` layers form the
shared trunk (never adapted); the rest form the branch, the only layers adapters touch. A router reads the
trunk's hidden states of the prompt (``return_trunk_states=True`` in the same forward pass, or ``trunk_states``
for the trunk alone), so routing costs no second model; the router itself is its own artifact (zephyra.router).

Shapes in comments: B batch, T new tokens, S keys (past + new), H query heads, K key/value heads, D head dim,
C hidden size, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.cache_utils import Cache, DynamicCache
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast

from .configuration import ZephyraConfig
from .loss import fused_linear_cross_entropy

# transformers 5.24 renamed the KV-cache argument and output field ``past_key_values`` to ``cache`` (the old name
# still works, with a deprecation warning on every run). Zephyra's forward takes either name, and its outputs use
# whichever field the installed transformers declares, so generate() and PEFT find the cache under both releases.
CACHE_FIELD = "cache" if "cache" in {f.name for f in fields(BaseModelOutputWithPast)} else "past_key_values"


def _one_cache(cache: Cache | None, past_key_values: Cache | None) -> Cache | None:
    """The KV cache to use when a caller passes it under either name, or both. Both happens under generate() with
    PEFT prefix tuning on transformers >= 5.24: generate passes its new, empty ``cache`` while PEFT (which still
    reads and writes ``past_key_values``) injects the prefix as ``past_key_values`` on every step. The prefix
    counts only on the first step (``cache`` still empty); after it, ``cache`` holds prefix + tokens."""
    if cache is None or past_key_values is None or cache is past_key_values:
        return cache if cache is not None else past_key_values
    return past_key_values if cache.get_seq_length() == 0 else cache


class ZephyraRMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # F.rms_norm is one fused kernel when input and weight share a dtype (else torch decomposes it into
        # five ops); HF's hand-written norm is always five ops and an fp32 copy
        return F.rms_norm(x, self.weight.shape, self.weight.to(x.dtype), self.eps)


class ZephyraRotaryEmbedding(nn.Module):
    """cos/sin tables computed once for max_position_embeddings and sliced per call (no per-step trig)."""

    def __init__(self, config: ZephyraConfig):
        super().__init__()
        self.config = config
        cos, sin = self._tables(config, config.max_position_embeddings)
        self.register_buffer("cos_cached", cos, persistent=False)  # (P, D/2)
        self.register_buffer("sin_cached", sin, persistent=False)

    @staticmethod
    def _tables(config: ZephyraConfig, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        dim = config.head_dim
        inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
        freqs = torch.outer(torch.arange(length, dtype=torch.float32), inv_freq)
        return freqs.cos(), freqs.sin()

    def forward(self, position_ids: torch.Tensor | None, start: int, length: int):
        """Returns cos, sin shaped (B or 1, T, 1, D/2) to broadcast over heads in (B, T, H, D) layout."""
        if position_ids is None:
            end = start + length
            if end > self.cos_cached.shape[0]:
                cos, sin = self._tables(self.config, end)
                return cos[start:end, None].unsqueeze(0), sin[start:end, None].unsqueeze(0)
            return self.cos_cached[start:end, None].unsqueeze(0), self.sin_cached[start:end, None].unsqueeze(0)
        if int(position_ids.max()) >= self.cos_cached.shape[0]:
            cos, sin = self._tables(self.config, int(position_ids.max()) + 1)
        else:
            cos, sin = self.cos_cached, self.sin_cached
        position_ids = position_ids.clamp(min=0)  # left padding gives -1; those rows are masked anyway
        return cos[position_ids].unsqueeze(2), sin[position_ids].unsqueeze(2)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (B, T, H, D) by the half-split convention (as Llama: first half pairs with second half)."""
    x1, x2 = x.chunk(2, dim=-1)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


class ZephyraAttention(nn.Module):
    def __init__(self, config: ZephyraConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.n_head, self.n_kv, self.head_dim = config.num_attention_heads, config.num_key_value_heads, config.head_dim
        self.scale = self.head_dim ** -0.5
        self.matmul_attention_max_keys = config.matmul_attention_max_keys
        # one matmul for q, k and v: fewer kernel launches, which dominate at our sizes
        self.qkv_proj = nn.Linear(config.hidden_size, (self.n_head + 2 * self.n_kv) * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.n_head * self.head_dim, config.hidden_size, bias=False)
        self.o_proj.is_residual_out = True
        self.q_norm = ZephyraRMSNorm(self.head_dim, config.rms_norm_eps) if config.qk_norm else None
        self.k_norm = ZephyraRMSNorm(self.head_dim, config.rms_norm_eps) if config.qk_norm else None

    def _qk_norm(self, qk: torch.Tensor) -> torch.Tensor:
        """RMSNorm of the query and key heads together, each with its own weight: one kernel, not two."""
        w = torch.cat([self.q_norm.weight.expand(self.n_head, -1), self.k_norm.weight.expand(self.n_kv, -1)])
        return F.rms_norm(qk, (self.head_dim,), None, self.q_norm.eps) * w.to(qk.dtype)  # (B, T, H + K, D)

    def forward(self, x, cos, sin, attn_mask, is_causal, past_key_values: Cache | None, causal_bias=None):
        B, T, _ = x.shape
        qkv = self.qkv_proj(x).view(B, T, self.n_head + 2 * self.n_kv, self.head_dim)
        qk, v = qkv.split([self.n_head + self.n_kv, self.n_kv], dim=2)  # (B, T, H + K, D), (B, T, K, D)
        if self.q_norm is not None:
            qk = self._qk_norm(qk)
        qk = apply_rotary(qk, cos, sin)  # queries and keys rotated in one pass
        q, k = qk.split([self.n_head, self.n_kv], dim=2)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2).to(v.dtype), v.transpose(1, 2)  # (B, H|K, T, D)
        if past_key_values is not None:
            k, v = past_key_values.update(k, v, self.layer_idx)  # (B, K, S, D)
        if self.n_kv != self.n_head:
            # expanding here beats enable_gqa=True on CPU: SDPA's fast kernels then stay in play
            rep = self.n_head // self.n_kv
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        if causal_bias is not None:
            y = self._matmul_attention(q.to(v.dtype), k, v, causal_bias)
        else:
            y = F.scaled_dot_product_attention(q.to(v.dtype), k, v, attn_mask=attn_mask, is_causal=is_causal)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, self.n_head * self.head_dim))  # (B, T, C)

    def _matmul_attention(self, q, k, v, causal_bias):
        """Causal attention as two batched matmuls and a softmax, scores in the compute dtype (as HF's eager
        attention). For the short sequences we train on, about 3x faster forward + backward on CPU than
        SDPA's flash kernel, whose tiling pays off only at long sequences (docs/benchmarks.md)."""
        B, H, T, D = q.shape
        S = k.shape[2]
        scores = torch.baddbmm(causal_bias.to(q.dtype), q.reshape(B * H, T, D), k.reshape(B * H, S, D).transpose(1, 2),
                               alpha=self.scale)  # (B * H, T, S)
        return torch.bmm(torch.softmax(scores, dim=-1), v.reshape(B * H, S, D)).view(B, H, T, D)


class ZephyraMLP(nn.Module):
    def __init__(self, config: ZephyraConfig):
        super().__init__()
        self.gated = config.hidden_act == "silu"
        width = 2 * config.intermediate_size if self.gated else config.intermediate_size
        self.gate_up_proj = nn.Linear(config.hidden_size, width, bias=False)  # gate and up in one matmul
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)
        self.down_proj.is_residual_out = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.gate_up_proj(x)
        if self.gated:
            gate, up = h.chunk(2, dim=-1)
            return self.down_proj(F.silu(gate) * up)
        return self.down_proj(F.relu(h).square())


class ZephyraDecoderLayer(GradientCheckpointingLayer):
    def __init__(self, config: ZephyraConfig, layer_idx: int):
        super().__init__()
        self.input_layernorm = ZephyraRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = ZephyraAttention(config, layer_idx)
        self.post_attention_layernorm = ZephyraRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = ZephyraMLP(config)

    def forward(self, x, cos, sin, attn_mask=None, is_causal=False, past_key_values=None, causal_bias=None):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, attn_mask, is_causal, past_key_values, causal_bias)
        return x + self.mlp(self.post_attention_layernorm(x))


class ZephyraPreTrainedModel(PreTrainedModel):
    config_class = ZephyraConfig
    config: ZephyraConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["ZephyraDecoderLayer"]
    _skip_keys_device_placement = ["past_key_values"]
    _supports_sdpa = True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            if getattr(module, "is_residual_out", False):
                # residual projections scaled down with depth (GPT-2): steadier early training
                std = std / (2 * self.config.num_hidden_layers) ** 0.5
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, ZephyraRMSNorm):
            init.ones_(module.weight)
        elif isinstance(module, ZephyraRotaryEmbedding):
            cos, sin = module._tables(self.config, self.config.max_position_embeddings)
            init.copy_(module.cos_cached, cos)
            init.copy_(module.sin_cached, sin)


def _attention_mask(attention_mask, B: int, T: int, past: int, device) -> tuple[torch.Tensor | None, bool]:
    """Returns (mask for SDPA, is_causal). Without padding, no mask is built at all: SDPA's is_causal path
    (or no mask for one new token) is the fast one. With padding, a bool mask (B, 1, T, S), True = attend."""
    S = past + T
    if attention_mask is None or bool(attention_mask.all()):
        if past == 0:
            return None, T > 1
        if T == 1:
            return None, False
        pad = None
    else:
        pad = attention_mask[:, -S:].bool()  # (B, S)
    q_pos = torch.arange(past, S, device=device)
    mask = torch.arange(S, device=device)[None, :] <= q_pos[:, None]  # (T, S) causal
    mask = mask[None, None].expand(B, 1, T, S)
    if pad is not None:
        mask = mask & pad[:, None, None, :]
        # a padding query row would see nothing (NaN in SDPA): let it see itself; its output is never used
        mask = mask | (torch.arange(S, device=device)[None, :] == q_pos[:, None])[None, None]
    return mask, False


class ZephyraModel(ZephyraPreTrainedModel):
    def __init__(self, config: ZephyraConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(ZephyraDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = ZephyraRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.rotary_emb = ZephyraRotaryEmbedding(config)
        self._bias_cache: dict = {}  # (T, dtype, device) -> causal bias; small, rebuilt on demand
        self.gradient_checkpointing = False
        self.post_init()

    def _causal_bias(self, T: int, x: torch.Tensor) -> torch.Tensor | None:
        """The additive causal mask (T, T) for matmul attention, in the compute dtype; None past the length
        where SDPA's flash kernel wins."""
        if T > self.config.matmul_attention_max_keys:
            return None
        dtype = torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else x.dtype
        key = (T, dtype, x.device)
        if key not in self._bias_cache:
            self._bias_cache[key] = torch.full((T, T), float("-inf"), dtype=dtype, device=x.device).triu(1)
        return self._bias_cache[key]

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        return_trunk_states: bool = False,
        cache: Cache | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPast:
        past_key_values = _one_cache(cache, past_key_values)
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("give exactly one of input_ids or inputs_embeds")
        x = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds  # (B, T, C)
        B, T, _ = x.shape
        use_cache = self.config.use_cache if use_cache is None else use_cache
        # a cache the caller passes is always used (PEFT's prefix tuning passes its prefix that way);
        # one is created only for inference, never in training where nothing would read it
        if use_cache and past_key_values is None and not self.training:
            past_key_values = DynamicCache(config=self.config)
        past = past_key_values.get_seq_length() if past_key_values is not None else 0
        if attention_mask is not None and attention_mask.dim() != 2:
            raise ValueError(f"attention_mask must be 2-D (batch, keys), got shape {tuple(attention_mask.shape)}")
        mask, is_causal = _attention_mask(attention_mask, B, T, past, x.device)
        cos, sin = self.rotary_emb(position_ids, past, T)  # (B or 1, T, 1, D/2)
        causal_bias = self._causal_bias(T, x) if is_causal else None

        hidden_states = (x,) if output_hidden_states else None
        trunk_states = x if self.config.num_trunk_layers == 0 else None
        for i, layer in enumerate(self.layers):
            x = layer(x, cos, sin, mask, is_causal, past_key_values, causal_bias)
            if output_hidden_states:
                hidden_states += (x,)
            if i + 1 == self.config.num_trunk_layers:
                trunk_states = x  # (B, T, C): what the router reads
        x = self.norm(x)
        out = BaseModelOutputWithPast(last_hidden_state=x, hidden_states=hidden_states,
                                      **{CACHE_FIELD: past_key_values})
        if return_trunk_states:
            out["trunk_states"] = trunk_states
        return out


@dataclass
class ZephyraCausalLMOutput(CausalLMOutputWithPast):
    trunk_states: torch.FloatTensor | None = None  # (B, T, C) at the trunk/branch boundary, when asked for


class ZephyraForCausalLM(ZephyraPreTrainedModel, GenerationMixin):
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: ZephyraConfig):
        super().__init__(config)
        self.model = ZephyraModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        output_hidden_states: bool | None = None,
        return_trunk_states: bool = False,
        skip_logits: bool | None = None,
        cache: Cache | None = None,
        **kwargs,
    ) -> ZephyraCausalLMOutput:
        """``skip_logits`` (default: training with labels) computes the loss chunk by chunk without ever
        holding the (B, T, V) logits; ``return_trunk_states`` adds the trunk's hidden states (what a router
        reads) from the same pass."""
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         past_key_values=_one_cache(cache, past_key_values), inputs_embeds=inputs_embeds,
                         use_cache=use_cache,
                         output_hidden_states=output_hidden_states, return_trunk_states=return_trunk_states)
        h = out.last_hidden_state  # (B, T, C)
        if skip_logits is None:
            skip_logits = self.training and labels is not None
        loss = logits = None
        if labels is not None:
            shift_h = h[:, :-1].reshape(-1, h.shape[-1])  # (N, C)
            shift_y = labels[:, 1:].reshape(-1)  # (N,)
            if skip_logits:
                loss = fused_linear_cross_entropy(shift_h, self.lm_head.weight, shift_y, self.config.loss_chunk_size)
        if not skip_logits:
            keep = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
            logits = self.lm_head(h[:, keep])  # (B, T', V)
            if labels is not None:
                loss = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), shift_y,
                                       ignore_index=-100) if logits.shape[1] == h.shape[1] else None
        return ZephyraCausalLMOutput(loss=loss, logits=logits, hidden_states=out.hidden_states,
                                     trunk_states=out.get("trunk_states"), **{CACHE_FIELD: getattr(out, CACHE_FIELD)})

    @torch.no_grad()
    def trunk_states(self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The trunk's hidden states (B, T, C) of a (left-padded) batch, from the trunk alone: the branch is not
        run, so this costs num_trunk_layers / num_hidden_layers of a prefill."""
        m = self.model
        x = m.embed_tokens(input_ids)
        mask, is_causal = _attention_mask(attention_mask, x.shape[0], x.shape[1], 0, x.device)
        position_ids = None
        if mask is not None:
            position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        cos, sin = m.rotary_emb(position_ids, 0, x.shape[1])
        causal_bias = m._causal_bias(x.shape[1], x) if is_causal else None
        for layer in m.layers[: self.config.num_trunk_layers]:
            x = layer(x, cos, sin, mask, is_causal, None, causal_bias)
        return x
