"""Merging adapters through PEFT: one adapter at weight 1 is that adapter; the methods agree where they must."""

import pytest
import torch
from resolve_helpers import VOCAB

from zephyra.adapters import switch_adapter
from zephyra.resolve.merge import merge_adapters


@pytest.fixture
def ids():
    return torch.randint(3, VOCAB, (2, 9), generator=torch.Generator().manual_seed(2))


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_linear_merge_of_one_adapter_is_that_adapter(base, adapter_dirs, peft_ref, ids):
    merged = merge_adapters(base, {"python": adapter_dirs["python"]}, method="linear", weights=[1.0])
    assert merged.active_adapter == "merged"
    want = _logits(switch_adapter(peft_ref, "python"), ids)
    torch.testing.assert_close(_logits(merged, ids), want, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(_logits(base, ids), want)  # the adapter does change the output


def test_merge_methods(base, adapter_dirs, peft_ref, ids):
    two = {n: adapter_dirs[n] for n in ("python", "chemistry")}
    linear = merge_adapters(base, two, method="linear", weights=[0.5, 0.5])
    # DARE keeping every entry (density 1) prunes nothing and rescales by 1: it is the linear merge
    dare = merge_adapters(base, two, method="dare_linear", weights=[0.5, 0.5], density=1.0)
    torch.testing.assert_close(_logits(dare, ids), _logits(linear, ids))
    ties = merge_adapters(base, two, method="ties", density=0.5)
    assert not torch.allclose(_logits(ties, ids), _logits(linear, ids))
    # adapters already loaded can be merged by name, and the source model is left as it was
    before = _logits(switch_adapter(peft_ref, "geography"), ids)
    by_name = merge_adapters(peft_ref, ["python", "chemistry"], method="linear", weights=[0.5, 0.5])
    torch.testing.assert_close(_logits(by_name, ids), _logits(linear, ids))
    assert "merged" not in peft_ref.peft_config
    torch.testing.assert_close(_logits(peft_ref, ids), before)
    with pytest.raises(ValueError, match="unknown merge method"):
        merge_adapters(base, two, method="average")
    with pytest.raises(ValueError, match="2 weights for 1"):
        merge_adapters(peft_ref, ["python"], weights=[1.0, 1.0])
