"""Item 5 of issue 15: the HTTP API fuzzed with hypothesis against the real app on loopback (uvicorn in a thread,
the tiny system of tests/serve): random JSON bodies, wrong types, huge values, unicode, missing fields, bad
headers, wrong methods and paths. Never a 500, never a hang; every refusal in OpenAI's error shape
``{"error": {"message", "type", "param", "code"}}`` with a one-line message.

    .venv/bin/python -m pytest tests/security/test_fuzz_http.py -q
    ZEPHYRA_FUZZ=1000 ZEPHYRA_FUZZ_RANDOM=1 .venv/bin/python -m pytest tests/security/test_fuzz_http.py -q

``tiny_system`` and ``tiny_app`` here are shared with test_load.py and test_faults.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

sys.path[:0] = [str(Path(__file__).parents[1] / d) for d in ("router", "resolve", "cli", "serve")]
from test_fuzz_parsers import FUZZ, _dumps, body, json_values, time_limit, weird_text  # noqa: E402

KEY = "sk-fuzz-key"
MAX_TOKENS = 4  # the server's cap: valid bodies generate at most this many tokens


def tiny_system_dirs(root: Path) -> dict[str, Path]:
    """base/, adapters/<domain>/, router/ (the quickstart's layout; tests/cli/test_route.py's build_system)."""
    from test_route import build_system

    return build_system(root)


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory):
    return tiny_system_dirs(tmp_path_factory.mktemp("tiny-system"))


@pytest.fixture(scope="module")
def fuzz_server(tiny_dirs):
    from zephyra.resolve.system import load_system
    from zephyra.serve.app import create_app, serve_in_thread

    system = load_system(tiny_dirs["base"], tiny_dirs["adapters"], tiny_dirs["router"])
    app = create_app(system, api_keys=[KEY], max_pending=8, max_tokens=MAX_TOKENS)
    with serve_in_thread(app, timeout_graceful_shutdown=5) as url:
        yield url


@pytest.fixture(scope="module")
def http(fuzz_server):
    import httpx

    with httpx.Client(base_url=fuzz_server, timeout=30) as c:
        yield c


def check(r, *, allow_ok: bool = True) -> None:
    """No 500, and any refusal is OpenAI's error object with a one-line message."""
    assert r.status_code < 500 or r.status_code == 503, (r.status_code, r.text[:300])
    if r.status_code >= 400:
        err = r.json()["error"]
        assert set(err) >= {"message", "type", "param", "code"}, err
        assert isinstance(err["message"], str) and err["message"].strip() and "\n" not in err["message"].strip()
    else:
        assert allow_ok, r.status_code
        if r.headers.get("content-type", "").startswith("text/event-stream"):
            events = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
            assert events and events[-1] == "[DONE]", r.text[-300:]
            for e in events[:-1]:
                assert "error" not in json.loads(e), e  # no failure in the middle of a stream


AUTH = {"Authorization": f"Bearer {KEY}"}
PATHS = ["/v1/chat/completions", "/v1/completions"]


@FUZZ
@given(b=body | json_values, path=st.sampled_from(PATHS))
def test_random_json_bodies(http, b, path):
    with time_limit(60):
        r = http.post(path, content=_dumps(b), headers={**AUTH, "content-type": "application/json"})
    check(r)


@FUZZ
@given(raw=st.binary(max_size=300) | weird_text.map(lambda t: t.encode("utf-8", "surrogatepass")),
       path=st.sampled_from(PATHS + ["/v1/feedback"]),
       ctype=st.sampled_from(["application/json", "text/plain", "", "application/x-www-form-urlencoded",
                              "multipart/form-data; boundary=x"]))
def test_bytes_that_are_not_json(http, raw, path, ctype):
    with time_limit(60):
        r = http.post(path, content=raw, headers={**AUTH, "content-type": ctype})
    check(r, allow_ok=False)
    assert r.status_code == 400


@FUZZ
@given(content=weird_text, model=st.sampled_from(["auto", "base"]), stream=st.booleans(),
       n_msgs=st.integers(1, 3), huge=st.sampled_from([0, 10**6, 2**63, 2**64, -1, 1e308]),
       field=st.sampled_from(["max_tokens", "seed", "temperature", "top_p", "n", "max_completion_tokens"]))
def test_well_formed_requests_with_odd_values(http, content, model, stream, n_msgs, huge, field):
    """Mostly valid requests (unicode, long or empty text, huge numbers in one field): answered, or a 400."""
    b = {"model": model, "messages": [{"role": "user", "content": content}] * n_msgs, "stream": stream,
         "max_tokens": MAX_TOKENS, field: huge}
    with time_limit(60):
        r = http.post("/v1/chat/completions", json=b, headers=AUTH)
    check(r)


@FUZZ
@given(auth=st.sampled_from(["", "Bearer", "Bearer ", "bearer sk-fuzz-key", "Basic c2s6", f"Bearer {KEY} x",
                             "Bearer " + "a" * 10_000, "Bearer \u00e9\u00e9", "Token sk-fuzz-key"]) | weird_text,
       rid=st.none() | st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=300),
       path=st.sampled_from(PATHS + ["/v1/models", "/v1/models/base", "/v1/feedback", "/v1/registry"]))
def test_bad_headers(http, auth, rid, path):
    import httpx
    from hypothesis import assume

    headers = {b"Authorization": auth.encode("utf-8", "surrogatepass")}  # raw bytes: non-ASCII keys too
    if rid is not None:
        headers[b"x-request-id"] = rid.encode()
    body = {"model": "base", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    try:
        with time_limit(60):
            r = http.request("GET" if "models" in path or "registry" in path else "POST", path, json=body,
                             headers=headers)
    except httpx.LocalProtocolError:  # a header the client itself will not send (a newline in it)
        assume(False)
    check(r)
    key_ok = auth.strip().lower().startswith("bearer ") and auth.split(" ", 1)[1].strip() == KEY
    if not key_ok:
        assert r.status_code == 401, (auth, r.status_code)


@FUZZ
@given(method=st.sampled_from(["GET", "PUT", "DELETE", "PATCH", "POST", "OPTIONS"]),
       path=st.sampled_from(["/v1/chat/completions", "/v1/completions", "/v1/models", "/v1/nope", "/v2/x",
                             "/v1/models/../../etc/passwd", "/v1/models/%00", "/" + "a" * 3000, "/metrics",
                             "/health", "/ready", "/v1/feedback"])
       | st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=60).map(lambda t: "/" + t))
def test_wrong_methods_and_paths(http, method, path):
    with time_limit(60):
        r = http.request(method, path, headers=AUTH)
    assert r.status_code < 500, (method, path, r.status_code, r.text[:200])
    if r.status_code >= 400 and r.headers.get("content-type", "").startswith("application/json"):
        check(r)


@FUZZ
@given(b=json_values | st.fixed_dictionaries({}, optional={"request_id": weird_text | json_values,
                                                          "rating": st.sampled_from(["up", "down", 1, -1, True, 0])
                                                          | json_values}))
def test_feedback_bodies(http, b):
    with time_limit(60):
        r = http.post("/v1/feedback", content=_dumps(b), headers={**AUTH, "content-type": "application/json"})
    check(r, allow_ok=False)


@FUZZ
@given(model=weird_text.filter(lambda t: "/" not in t and "?" not in t and "#" not in t))
def test_model_ids(http, model):
    import urllib.parse

    with time_limit(60):
        r = http.get("/v1/models/" + urllib.parse.quote(model, safe=""), headers=AUTH)
    check(r)
