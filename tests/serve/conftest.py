"""A tiny system on disk (base + six adapters + an in-model router, the quickstart's layout: tests/cli's
``build_system``) and a real server on a free loopback port, driven by the official ``openai`` client and by raw
HTTP."""

import sys
from pathlib import Path

import pytest

sys.path[:0] = [str(Path(__file__).parents[1] / d) for d in ("router", "resolve", "cli")]
from serve_helpers import KEY, running  # noqa: E402
from test_route import build_system  # noqa: E402


@pytest.fixture(scope="session")
def system_dirs(tmp_path_factory):
    return build_system(tmp_path_factory.mktemp("served"))


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
