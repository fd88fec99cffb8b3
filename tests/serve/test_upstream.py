"""``zephyra serve --upstream URL``: routing, retrieval, the registry and the metrics here, generation on another
OpenAI-compatible server (here a second zephyra server on loopback): the answers are the upstream's, token for
token, streamed or not; an upstream that is down or refuses is a 502 in one line, never a hang."""

import socket

import httpx
import pytest
from serve_helpers import running

UP_KEY = "sk-upstream"
ASK = [{"role": "user", "content": "What does zip() do?"}]


def _system(system_dirs, upstream=None):
    from zephyra.resolve.system import load_system

    return load_system(system_dirs["base"], system_dirs["adapters"], system_dirs["router"], upstream=upstream)


@pytest.fixture(scope="module")
def pair(system_dirs):
    """(upstream URL, front URL, the front's Server)."""
    from zephyra.serve.app import create_app

    with running(create_app(_system(system_dirs), api_keys=[UP_KEY], max_tokens=16)) as up:
        front = create_app(_system(system_dirs, {"url": up + "/v1", "api_key": UP_KEY}), max_tokens=16)
        with running(front) as url:
            yield up, url, front.state.server


def _client(url, key="none"):
    from openai import OpenAI

    return OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=60)


def _chat(url, key, model, **kw):
    return _client(url, key).chat.completions.with_raw_response.create(model=model, messages=ASK, max_tokens=8,
                                                                       temperature=0, **kw)


def test_the_front_answers_with_the_upstreams_tokens(pair):
    up, url, _ = pair
    for model in ("python", "base"):
        direct, via = _chat(up, UP_KEY, model), _chat(url, "none", model)
        assert via.headers["x-zephyra-adapter"] == model
        assert via.parse().choices[0].message.content == direct.parse().choices[0].message.content
        assert via.parse().usage.completion_tokens == direct.parse().usage.completion_tokens
    text = httpx.get(up + "/metrics").text  # the upstream served the adapter the front chose
    assert 'zephyra_requests_total{adapter="python",endpoint="chat",status="200"' in text


def test_auto_is_routed_by_the_front_and_streams_through(pair):
    up, url, server = pair
    expected = server.system.route([ASK[0]["content"]])[0].adapter
    raw = _chat(url, "none", "auto")
    assert raw.headers["x-zephyra-adapter"] == expected
    whole = raw.parse().choices[0].message.content
    pieces = [c.choices[0].delta.content or "" for c in _client(url).chat.completions.create(
        model="auto", messages=ASK, max_tokens=8, temperature=0, stream=True) if c.choices]
    assert "".join(pieces) == whole and len([p for p in pieces if p]) >= 2
    front = httpx.get(url + "/metrics").text
    assert f'zephyra_routing_decisions_total{{adapter="{expected}"}}' in front
    done = _client(url).completions.create(model="python", prompt="def f(x):", max_tokens=6, temperature=0)
    assert done.choices[0].text == _client(up, UP_KEY).completions.create(
        model="python", prompt="def f(x):", max_tokens=6, temperature=0).choices[0].text


def test_an_upstream_that_is_down_or_refuses_is_a_502_in_one_line(system_dirs, pair):
    from openai import APIStatusError

    from zephyra.serve.app import create_app

    up, _, _ = pair
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"  # nothing listens there once the socket closes
    for target, key, why in ((dead, None, "ConnectError"), (up + "/v1", "sk-wrong", "answered 401")):
        with running(create_app(_system(system_dirs, {"url": target, "api_key": key}), max_tokens=16)) as url:
            with pytest.raises(APIStatusError) as e:
                _chat(url, "none", "python")
            assert e.value.status_code == 502 and why in e.value.message and "\n" not in e.value.message
            r = httpx.post(url + "/v1/chat/completions", json={"model": "python", "messages": ASK, "stream": True},
                           timeout=30)
            assert r.status_code == 200 and "generation failed: upstream" in r.text  # the stream ends with it
            assert httpx.get(url + "/health").status_code == 200
