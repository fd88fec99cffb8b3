"""Fixtures: a tiny base, three saved LoRA adapters, and PEFT holding them (the reference)."""

import copy

import pytest
import torch
from resolve_helpers import VOCAB, make_base, peft_with, save_adapters


@pytest.fixture(scope="module")
def base():
    return make_base(0)


@pytest.fixture(scope="module")
def adapter_dirs(base, tmp_path_factory):
    return save_adapters(base, tmp_path_factory.mktemp("adapters"))


@pytest.fixture(scope="module")
def peft_ref(base, adapter_dirs):
    return peft_with(base, adapter_dirs)


@pytest.fixture
def fresh_base(base):
    """A copy of the base for an engine to adapt (the module-wide base stays untouched)."""
    return copy.deepcopy(base)


@pytest.fixture
def prompts():
    """Token-id prompts of different lengths, so a batch needs left padding."""
    g = torch.Generator().manual_seed(1)
    return [torch.randint(3, VOCAB, (n,), generator=g).tolist() for n in (7, 4, 9, 5, 6)]
