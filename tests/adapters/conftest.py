"""Fixtures: tiny Zephyra bases built in memory."""

import copy

import pytest
import torch
from adapter_helpers import VOCAB, make_base


@pytest.fixture
def base():
    return make_base(0)


@pytest.fixture
def twin(base):
    """An independent copy of ``base`` (same weights), for comparing against the untouched base."""
    return copy.deepcopy(base)


@pytest.fixture
def ids():
    g = torch.Generator().manual_seed(1)
    return torch.randint(3, VOCAB, (2, 10), generator=g)
