"""Named size presets: from a test-sized model up to ones that train in minutes and in hours on 2 cores.

Sizes are counted without the (tied) embedding matrix, as DESIGN.md's throughput table counts them. A preset is
an architecture only: no router labels, no domains (those live in the router's own artifact).
"""

from __future__ import annotations

from ..errors import ConfigError
from .configuration import ZephyraConfig

# name: (hidden, layers, trunk, heads, kv heads, intermediate, context)
PRESETS: dict[str, dict] = {
    # tests: builds in milliseconds
    "tiny": dict(hidden_size=32, num_hidden_layers=2, num_trunk_layers=1, num_attention_heads=4,
                 num_key_value_heads=2, intermediate_size=64, max_position_embeddings=128),
    # ~1M non-embedding params: the quickstart; trains in minutes
    "mini": dict(hidden_size=128, num_hidden_layers=4, num_trunk_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, intermediate_size=384, max_position_embeddings=256),
    # ~5M: minutes to tens of minutes
    "small": dict(hidden_size=256, num_hidden_layers=6, num_trunk_layers=3, num_attention_heads=4,
                  num_key_value_heads=2, intermediate_size=688, max_position_embeddings=512),
    # ~20M: hours
    "base": dict(hidden_size=384, num_hidden_layers=12, num_trunk_layers=6, num_attention_heads=6,
                 num_key_value_heads=2, intermediate_size=1024, max_position_embeddings=512),
    # ~50M: many hours
    "large": dict(hidden_size=512, num_hidden_layers=16, num_trunk_layers=8, num_attention_heads=8,
                  num_key_value_heads=4, intermediate_size=1408, max_position_embeddings=1024),
}


def preset_config(name: str, **overrides) -> ZephyraConfig:
    """A ZephyraConfig from a named preset; ``overrides`` win (vocab_size, token ids, ...)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    kwargs = dict(PRESETS[name])
    kwargs.update(overrides)
    return ZephyraConfig(**kwargs)


def non_embedding_params(model) -> int:
    """Parameters outside the token embedding (tied to the output matrix)."""
    return sum(p.numel() for n, p in model.named_parameters()
               if "embed" not in n and "lm_head" not in n and "wte" not in n and "wpe" not in n)
