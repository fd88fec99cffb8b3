"""Phase-1 evaluation pieces: the category check, and batched greedy replies equal to one prompt at a time."""

import pytest
import torch

from zephyra.training.phase1_eval import category_correct, greedy_replies
from zephyra.training.throughput import matmul_peak


@pytest.mark.parametrize("reply, category, ok", [
    ("fruit", "fruit", True), ("Fruit.", "fruit", True), ("fruit salad", "fruit", True),
    ("fruity", "fruit", False), ("", "fruit", False), ("musical instrument", "musical instrument", True),
    ("musical", "musical instrument", False), ("animal", "", False),
])
def test_category_correct(reply, category, ok):
    assert category_correct(reply, category) is ok


@pytest.mark.parametrize("arch", ["zephyra", "gpt2"])
def test_batched_greedy_replies_equal_one_at_a_time(arch):
    import zephyra.model  # noqa: F401  (registers the Auto classes)
    from transformers import AutoModelForCausalLM

    from zephyra.model import preset_config
    from zephyra.model.baselines import gpt2_config_like

    torch.manual_seed(0)
    cfg = preset_config("tiny", vocab_size=64)
    model = AutoModelForCausalLM.from_config(cfg if arch == "zephyra" else gpt2_config_like(cfg))
    g = torch.Generator().manual_seed(1)
    prompts = [[1, *torch.randint(3, 64, (n,), generator=g).tolist()] for n in (3, 5, 3, 4, 5, 3)]
    batched = greedy_replies(model, prompts, eos_id=2, pad_id=0, max_new_tokens=6, batch_size=2)
    single = [greedy_replies(model, [p], eos_id=2, pad_id=0, max_new_tokens=6)[0] for p in prompts]
    assert batched == single
    assert all(len(ids) <= 6 for ids, _ in batched)


def test_matmul_peak_is_measured():
    assert matmul_peak(torch.float32, n=128, seconds=0.05) > 1e8
