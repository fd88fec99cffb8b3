"""Router test fixtures: a tokenizer, synthetic splits and a tiny separable Zephyra with a trained router head,
built once per session (training takes a few seconds)."""

import pytest
import torch
from router_helpers import make_model, make_split, make_tokenizer

from zephyra.router import InModelTrainConfig, train_inmodel_router


@pytest.fixture(scope="session")
def tok():
    return make_tokenizer()


@pytest.fixture(scope="session")
def splits():
    return {s: make_split(s) for s in ("train", "validation", "test")}


@pytest.fixture(scope="session")
def trained(tok, splits):
    """(model, router, report): the in-model router fitted on the synthetic train split."""
    torch.manual_seed(0)
    model = make_model(tok)
    router, report = train_inmodel_router(model, tok, splits["train"], splits["validation"], InModelTrainConfig())
    return model, router, report
