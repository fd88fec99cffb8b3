"""The OpenAI-compatible server on a real loopback port: the official ``openai`` client unchanged (chat,
completions, streaming, models, 401, 404, 400, 429), raw HTTP for what the client hides, metrics, a client that
disconnects, and fuzzed bodies that must never produce a 500."""

import json
import time

import httpx
import openai
import pytest
from serve_helpers import KEY

from zephyra.data import DOMAINS

AUTH = {"Authorization": f"Bearer {KEY}"}
ASK = [{"role": "user", "content": "Tell me about Polonius."}]


def test_chat_completion_says_what_served_it(client, served):
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=ASK, max_tokens=6,
                                                           extra_headers={"x-request-id": "my-id-1"})
    r = raw.parse()
    assert raw.headers["x-request-id"] == "my-id-1"
    assert raw.headers["x-zephyra-adapter"] == "shakespeare"  # the tiny router's known route
    z = r.model_extra["zephyra"]
    assert z["adapter"] == "shakespeare" and z["version"] == served[1].versions["shakespeare"]
    assert raw.headers["x-zephyra-version"] == z["version"] and 0 < z["confidence"] <= 1 and z["runner_up"]
    assert r.model == f"shakespeare@{z['version']}" and r.object == "chat.completion"
    assert isinstance(r.choices[0].message.content, str) and r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.completion_tokens <= 6 and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_streaming_gives_the_same_text_then_usage_then_done(client):
    whole = client.chat.completions.create(model="python", messages=ASK, max_tokens=8).choices[0].message.content
    chunks = list(client.chat.completions.create(model="python", messages=ASK, max_tokens=8, stream=True,
                                                 stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].model_extra["zephyra"]["adapter"] == "python"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens >= 1


def test_completions_and_a_pinned_version(client, served):
    version = served[1].versions["chemistry"]
    r = client.completions.create(model=f"chemistry@{version}", prompt="benzene is", max_tokens=5)
    assert r.object == "text_completion" and isinstance(r.choices[0].text, str)
    assert r.model_extra["zephyra"]["adapter"] == "chemistry" and r.usage.completion_tokens <= 5
    streamed = list(client.completions.create(model="base", prompt="benzene is", max_tokens=5, stream=True))
    assert streamed and all(c.object == "text_completion" for c in streamed)


def test_models_list_auto_base_and_every_adapter(client):
    models = {m.id: m for m in client.models.list()}
    assert set(models) == {"auto", "base", *DOMAINS}
    assert models["python"].model_extra["parent"].endswith("base") and len(models["python"].model_extra["version"]) == 12
    assert client.models.retrieve("geography").id == "geography"


def test_keys_are_required_and_refused_in_openai_shape(served):
    url = served[0]
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0).models.list()
    r = httpx.post(url + "/v1/chat/completions", json={"model": "auto", "messages": ASK})
    assert r.status_code == 401 and set(r.json()["error"]) == {"message", "type", "param", "code"}
    assert httpx.get(url + "/health").json() == {"status": "ok"} and httpx.get(url + "/ready").status_code == 200


def test_unknown_models_are_404(client):
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.chat.completions.create(model="astronomy", messages=ASK)
    with pytest.raises(openai.NotFoundError, match="no version"):
        client.chat.completions.create(model="python@000000000000", messages=ASK)


@pytest.mark.parametrize("body, match", [
    ({"model": "auto", "messages": ASK, "max_tokens": 10_000}, "max_tokens must be between"),
    ({"model": "auto", "messages": "hello"}, "messages must be a non-empty list"),
    ({"model": "auto", "messages": [{"role": "robot", "content": "hi"}]}, "role must be"),
    ({"model": "auto", "messages": ASK, "n": 2}, "n must be between 1 and 1"),
    ({"model": "auto", "messages": ASK, "temperature": "hot"}, "temperature must be a number"),
    ({"model": "auto", "messages": [{"role": "user", "content": "word " * 500}]}, "context leaves room"),
    ({"messages": ASK}, "model is required"),
])
def test_bad_bodies_are_400_with_one_line(served, body, match):
    r = httpx.post(served[0] + "/v1/chat/completions", json=body, headers=AUTH)
    assert r.status_code == 400, r.text
    message = r.json()["error"]["message"]
    assert match in message and "\n" not in message


def test_malformed_json_is_400(served):
    r = httpx.post(served[0] + "/v1/chat/completions", content=b"{not json", headers=AUTH)
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]
    with pytest.raises(openai.BadRequestError):
        openai.OpenAI(base_url=served[0] + "/v1", api_key=KEY, max_retries=0).chat.completions.create(
            model="auto", messages=[{"role": "user", "content": ""}])


def test_a_full_queue_answers_429_with_retry_after(served, client):
    server = served[1]
    saved = server.pending
    server.pending = server.max_pending  # as if max_pending requests were running
    try:
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="auto", messages=ASK, max_tokens=2)
        r = httpx.post(served[0] + "/v1/chat/completions", json={"model": "auto", "messages": ASK}, headers=AUTH)
        assert r.status_code == 429 and r.headers["retry-after"] == "1"
    finally:
        server.pending = saved
    assert client.chat.completions.create(model="auto", messages=ASK, max_tokens=2).choices


def test_a_client_that_disconnects_frees_its_slot(served):
    url, server = served
    body = {"model": "base", "messages": ASK, "max_tokens": 32, "stream": True}
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, headers=AUTH) as r:
        assert r.status_code == 200
        next(r.iter_lines())  # the first event, then hang up
    deadline = time.monotonic() + 10
    while server.pending and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.pending == 0


def test_metrics_count_by_adapter_and_version(client, served):
    client.chat.completions.create(model="geography", messages=ASK, max_tokens=3)
    text = httpx.get(served[0] + "/metrics").text
    version = served[1].versions["geography"]
    assert f'zephyra_requests_total{{adapter="geography",endpoint="chat",status="200",version="{version}"}}' in text
    assert "zephyra_time_to_first_token_seconds_bucket" in text and "zephyra_routing_decisions_total" in text
    assert "Polonius" not in text  # labels never carry prompt text


def test_concurrent_clients_share_the_batch_and_all_are_answered(served):
    import concurrent.futures as cf

    def ask(i):
        body = {"model": ["auto", "base", "python", "scripture"][i % 4], "messages": ASK, "max_tokens": 6}
        return httpx.post(served[0] + "/v1/chat/completions", json=body, headers=AUTH, timeout=60).status_code

    with cf.ThreadPoolExecutor(8) as pool:
        assert list(pool.map(ask, range(16))) == [200] * 16


def test_fuzzed_bodies_never_produce_a_500(served):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=True),
                        st.text(max_size=20))
    values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.text(max_size=8), inner, max_size=3), max_leaves=6)
    message = st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant", "x", 3]),
                                     "content": st.one_of(st.text(max_size=40), values)})
    body = st.fixed_dictionaries(
        {"model": st.sampled_from(["auto", "base", "python", "nope", "python@x", 7, ""])},
        optional={"messages": st.one_of(st.lists(message, max_size=3), values),
                  "max_tokens": st.one_of(st.integers(-3, 40), values), "temperature": values,
                  "top_p": values, "stop": values, "seed": values, "n": values, "logit_bias": values,
                  "stream": values, "stream_options": values, "prompt": values})

    with httpx.Client(base_url=served[0], headers=AUTH, timeout=60) as http:
        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(body=body, endpoint=st.sampled_from(["/v1/chat/completions", "/v1/completions"]))
        def check(body, endpoint):
            r = http.post(endpoint, content=json.dumps(body, allow_nan=True))
            assert r.status_code in (200, 400, 404), (r.status_code, r.text[:300])
            if r.status_code != 200:
                assert "\n" not in r.json()["error"]["message"]

        check()
