"""The engine's KV cache: one batch whose rows come and go between decoding steps (continuous batching).

Per layer it holds keys and values (B, K, S, D), every row left-padded to one length S, and beside them the
attention mask (B, S) that says which columns are real. Rotary positions are baked into the keys per row (the
engine passes each row's own position ids), so padding on the left never moves a row's positions:

- ``merge(other)``: a freshly prefilled group joins; the shorter side is padded on the left to the longer;
- ``keep(rows)``: finished or cancelled rows leave; columns that are padding for every row left are dropped.

It implements the two calls Zephyra's attention makes of a cache (``get_seq_length`` and ``update``), so it is
passed to the model as ``past_key_values`` like transformers' own caches; transformers' ``DynamicCache`` has no
way to add or drop rows, which is what a server's batch needs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class BatchCache:
    def __init__(self, num_layers: int, mask: torch.Tensor):
        self.keys: list[torch.Tensor | None] = [None] * num_layers
        self.values: list[torch.Tensor | None] = [None] * num_layers
        self.mask = mask.long()  # (B, S): 1 where a column holds a real token of that row

    # --- what the model calls ---

    def get_seq_length(self, layer_idx: int = 0) -> int:
        k = self.keys[layer_idx]
        return 0 if k is None else k.shape[2]

    def update(self, keys: torch.Tensor, values: torch.Tensor, layer_idx: int, *args, **kwargs):
        """Append this step's keys and values (B, K, T, D); returns the whole (B, K, S + T, D) of the layer."""
        if self.keys[layer_idx] is None:
            self.keys[layer_idx], self.values[layer_idx] = keys, values
        else:
            self.keys[layer_idx] = torch.cat([self.keys[layer_idx], keys], dim=2)
            self.values[layer_idx] = torch.cat([self.values[layer_idx], values], dim=2)
        return self.keys[layer_idx], self.values[layer_idx]

    # --- what the engine calls ---

    @property
    def batch(self) -> int:
        return self.mask.shape[0]

    @property
    def length(self) -> int:
        return self.mask.shape[1]

    def grow(self) -> None:
        """One more real column for every row: call before a decoding step feeds each row one token."""
        self.mask = torch.cat([self.mask, self.mask.new_ones(self.batch, 1)], dim=1)

    def merge(self, other: BatchCache) -> BatchCache:
        """This batch's rows followed by ``other``'s, padded on the left to one length; returns self."""
        s = max(self.length, other.length)
        self.mask = torch.cat([_pad_left(self.mask, s), _pad_left(other.mask, s)], dim=0)
        for layer in range(len(self.keys)):
            self.keys[layer] = torch.cat([_pad_left(self.keys[layer], s), _pad_left(other.keys[layer], s)])
            self.values[layer] = torch.cat([_pad_left(self.values[layer], s), _pad_left(other.values[layer], s)])
        return self

    def keep(self, rows: list[int]) -> None:
        """Keep only ``rows`` (in that order), then drop the leading columns no kept row uses."""
        idx = torch.tensor(rows, dtype=torch.long)
        mask = self.mask.index_select(0, idx)
        used = mask.any(dim=0).nonzero()
        start = int(used[0]) if len(used) else mask.shape[1]
        self.mask = mask[:, start:]
        for layer in range(len(self.keys)):
            self.keys[layer] = self.keys[layer].index_select(0, idx)[:, :, start:]
            self.values[layer] = self.values[layer].index_select(0, idx)[:, :, start:]


def _pad_left(t: torch.Tensor, length: int) -> torch.Tensor:
    """Zeros on the left of the sequence axis (the last for a mask (B, S), the third for keys (B, K, S, D))."""
    missing = length - (t.shape[-1] if t.dim() == 2 else t.shape[2])
    if missing == 0:
        return t
    return F.pad(t, (missing, 0)) if t.dim() == 2 else F.pad(t, (0, 0, missing, 0))
