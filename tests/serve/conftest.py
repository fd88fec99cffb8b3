"""A tiny system on disk (base + six adapters + an in-model router, the quickstart's layout) and a real server on a
free loopback port, driven by the official ``openai`` client and by raw HTTP."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "router"))
sys.path.insert(0, str(Path(__file__).parents[1] / "resolve"))
from resolve_helpers import save_adapters  # noqa: E402
from router_helpers import make_model, make_split, make_tokenizer  # noqa: E402
from serve_helpers import KEY, running  # noqa: E402


@pytest.fixture(scope="session")
def system_dirs(tmp_path_factory):
    from zephyra.data import DOMAINS
    from zephyra.router import InModelTrainConfig, train_inmodel_router

    root = tmp_path_factory.mktemp("served")
    tok = make_tokenizer()
    torch.manual_seed(0)
    model = make_model(tok)
    router, _ = train_inmodel_router(model, tok, make_split("train"), make_split("validation"), InModelTrainConfig())
    model.save_pretrained(root / "base")
    tok.save_pretrained(root / "base")
    router.save(root / "router")
    save_adapters(model, root / "adapters", names=DOMAINS)
    return {k: root / k for k in ("base", "adapters", "router")}


@pytest.fixture(scope="module")
def served(system_dirs):
    """(base URL, the app's Server) of a server with one API key."""
    from zephyra.resolve.system import load_system
    from zephyra.serve.app import create_app

    system = load_system(system_dirs["base"], system_dirs["adapters"], system_dirs["router"])
    app = create_app(system, api_keys=[KEY], max_pending=8, max_tokens=32)
    with running(app) as url:
        yield url, app.state.server


@pytest.fixture
def client(served):
    from openai import OpenAI

    return OpenAI(base_url=served[0] + "/v1", api_key=KEY, max_retries=0, timeout=30)
