"""ZephyraConfig: the Hugging Face config of the Zephyra architecture.

The standard attribute names (``vocab_size``, ``hidden_size``, ``num_hidden_layers``, ``num_attention_heads``,
``num_key_value_heads``, ``intermediate_size``, ``max_position_embeddings``, ``rms_norm_eps``, ``rope_theta``,
``tie_word_embeddings``) are kept so that PEFT, accelerate and the rest read the config as they read Llama's.
Zephyra's own attributes sit beside them: the trunk/branch split. The config knows no router labels or domains:
a router is its own artifact beside the base (zephyra.router), so adding an adapter never changes the base.
"""

from __future__ import annotations

from transformers import PreTrainedConfig

from ..errors import ConfigError


class ZephyraConfigError(ConfigError):
    """A Zephyra config that cannot build a model; the message is one line naming the problem."""


class ZephyraConfig(PreTrainedConfig):
    model_type = "zephyra"
    keys_to_ignore_at_inference = ["past_key_values"]

    vocab_size: int = 8192
    hidden_size: int = 256
    intermediate_size: int = 688
    num_hidden_layers: int = 6
    num_attention_heads: int = 4
    num_key_value_heads: int | None = None  # None: as many as query heads (no grouping)
    head_dim: int | None = None  # None: hidden_size // num_attention_heads
    max_position_embeddings: int = 512
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = True  # the output matrix is the embedding: fewer parameters, no loss at our sizes
    hidden_act: str = "silu"  # "silu": SwiGLU (3 matrices); "relu2": ReLU squared (2 matrices)
    qk_norm: bool = True  # RMSNorm on queries and keys per head: steadier training at higher learning rates
    initializer_range: float = 0.02
    use_cache: bool = True
    bos_token_id: int | None = 1
    eos_token_id: int | list[int] | None = 2
    pad_token_id: int | None = 0
    # --- Zephyra's own ---
    num_trunk_layers: int | None = None  # the first layers, shared and never adapted; None: half the stack
    loss_chunk_size: int = 256  # tokens per chunk of the fused linear + cross-entropy loss (cache-sized)
    matmul_attention_max_keys: int = 1024  # causal attention up to this length runs as matmuls, not flash SDPA

    def __post_init__(self, **kwargs):
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.num_trunk_layers is None:
            self.num_trunk_layers = self.num_hidden_layers // 2
        if self.head_dim is None and self.num_attention_heads and self.hidden_size % self.num_attention_heads == 0:
            self.head_dim = self.hidden_size // self.num_attention_heads
        super().__post_init__(**kwargs)
        self.validate_zephyra()

    def validate_zephyra(self) -> None:
        """Refuse, in one line, a config that cannot build a model."""
        def fail(msg: str) -> None:
            raise ZephyraConfigError(f"invalid ZephyraConfig: {msg}")

        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                     "num_attention_heads", "num_key_value_heads", "max_position_embeddings"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                fail(f"{name} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_attention_heads:
            fail(f"num_attention_heads ({self.num_attention_heads}) does not divide hidden_size ({self.hidden_size})")
        if self.num_attention_heads % self.num_key_value_heads:
            fail(f"num_key_value_heads ({self.num_key_value_heads}) does not divide "
                 f"num_attention_heads ({self.num_attention_heads})")
        if self.head_dim % 2:
            fail(f"head_dim ({self.head_dim}) must be even for rotary positions")
        if not isinstance(self.num_trunk_layers, int) or not 0 <= self.num_trunk_layers <= self.num_hidden_layers:
            fail(f"num_trunk_layers ({self.num_trunk_layers}) must be between 0 and "
                 f"num_hidden_layers ({self.num_hidden_layers}): the trunk cannot be deeper than the model")
        if self.hidden_act not in ("silu", "relu2"):
            fail(f"hidden_act must be 'silu' or 'relu2', got {self.hidden_act!r}")

    # --- the split, as the rest of the system reads it ---
    @property
    def trunk_layers(self) -> list[int]:
        """Indices of the shared trunk layers (never adapted)."""
        return list(range(self.num_trunk_layers))

    @property
    def branch_layers(self) -> list[int]:
        """Indices of the branch layers: the only ones adapters touch."""
        return list(range(self.num_trunk_layers, self.num_hidden_layers))
