"""Baselines built from the same sizes as a Zephyra config, for every comparison we make.

- ``gpt2_config_like``: the GPT-2 style baseline DESIGN.md asks for (learned positions, LayerNorm, GELU, full
  multi-head attention), its MLP width solved so that the non-embedding parameter count matches Zephyra's.
- ``llama_config_like``: HF's Llama at the same shapes (SwiGLU, GQA, tied embeddings): the same parameter
  count to within the QK-norm weights, used by the throughput benchmark.
"""

from __future__ import annotations

from transformers import GPT2Config, LlamaConfig

from .configuration import ZephyraConfig


def _zephyra_block_params(c: ZephyraConfig) -> int:
    C, D = c.hidden_size, c.head_dim
    attn = C * (c.num_attention_heads + 2 * c.num_key_value_heads) * D + c.num_attention_heads * D * C
    mlp = (3 if c.hidden_act == "silu" else 2) * C * c.intermediate_size
    norms = 2 * C + (2 * D if c.qk_norm else 0)
    return attn + mlp + norms


def gpt2_config_like(c: ZephyraConfig) -> GPT2Config:
    """GPT-2 with Zephyra's width, depth, heads, context and vocabulary; n_inner chosen to match parameters."""
    C = c.hidden_size
    # GPT-2 block: c_attn 3C^2+3C, c_proj C^2+C, mlp 2*C*I + I + C, two LayerNorms 4C
    fixed = 4 * C * C + 4 * C + C + 4 * C
    n_inner = max(1, round((_zephyra_block_params(c) - fixed) / (2 * C + 1)))
    return GPT2Config(vocab_size=c.vocab_size, n_positions=c.max_position_embeddings, n_embd=C,
                      n_layer=c.num_hidden_layers, n_head=c.num_attention_heads, n_inner=n_inner,
                      activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                      layer_norm_epsilon=1e-5, bos_token_id=c.bos_token_id, eos_token_id=c.eos_token_id,
                      pad_token_id=c.pad_token_id, tie_word_embeddings=True)


def llama_config_like(c: ZephyraConfig) -> LlamaConfig:
    """HF Llama with exactly Zephyra's shapes."""
    return LlamaConfig(vocab_size=c.vocab_size, hidden_size=c.hidden_size, intermediate_size=c.intermediate_size,
                       num_hidden_layers=c.num_hidden_layers, num_attention_heads=c.num_attention_heads,
                       num_key_value_heads=c.num_key_value_heads, head_dim=c.head_dim,
                       max_position_embeddings=c.max_position_embeddings, rms_norm_eps=c.rms_norm_eps,
                       rope_parameters={"rope_type": "default", "rope_theta": c.rope_theta},
                       hidden_act="silu", tie_word_embeddings=True, bos_token_id=c.bos_token_id,
                       eos_token_id=c.eos_token_id, pad_token_id=c.pad_token_id)
