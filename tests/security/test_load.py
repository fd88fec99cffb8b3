"""Item 8 of issue 15: load and backpressure against the real app on loopback (uvicorn in a thread, the tiny
system of tests/serve): an overload is refused with 429 + Retry-After and never a 5xx, and the server answers
afterwards; a client that disconnects mid-stream frees its slot; a client that reads nothing does not hold its
slot once the answer is generated; a short soak (bench/soak.py) gives sane RSS samples and files.

    .venv/bin/python -m pytest tests/security/test_load.py -q

About 60 requests in all.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import sys
import time
from pathlib import Path

import pytest

sys.path[:0] = [str(Path(__file__).parent)]
from test_fuzz_http import tiny_system_dirs  # noqa: E402

LONG = 96  # tokens a "long" answer may take (the tiny model seldom stops early)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    return tiny_system_dirs(tmp_path_factory.mktemp("load-system"))


def _app(dirs, max_pending: int, max_tokens: int = LONG):
    from zephyra.resolve.system import load_system
    from zephyra.serve.app import create_app

    system = load_system(dirs["base"], dirs["adapters"], dirs["router"])
    return create_app(system, max_pending=max_pending, max_tokens=max_tokens)


@pytest.fixture(scope="module")
def one_slot(dirs):
    """A server that admits one request at a time."""
    from zephyra.serve.app import serve_in_thread

    with serve_in_thread(_app(dirs, max_pending=1), timeout_graceful_shutdown=5) as url:
        yield url


def _body(max_tokens: int = LONG, stream: bool = True) -> dict:
    return {"model": "base", "messages": [{"role": "user", "content": "Tell me a long story."}],
            "max_tokens": max_tokens, "stream": stream}


def _pending(url: str) -> int:
    import httpx

    return httpx.get(url + "/ready", timeout=10).json()["pending"]


def _wait_free(url: str, limit: float = 20.0) -> float:
    """Seconds until the server has nothing in progress (fails after ``limit``)."""
    t0 = time.perf_counter()
    while _pending(url) != 0:
        assert time.perf_counter() - t0 < limit, f"a slot was still held after {limit} s"
        time.sleep(0.05)
    return time.perf_counter() - t0


def _status_count(url: str, status: str) -> float:
    import httpx

    text = httpx.get(url + "/metrics", timeout=10).text
    return sum(float(m.group(1)) for m in re.finditer(
        r'^zephyra_requests_total\{[^}]*status="' + status + r'"[^}]*\} (\S+)$', text, re.M))


def _answered(url: str) -> None:
    import httpx

    r = httpx.post(url + "/v1/chat/completions", json=_body(4, stream=False), timeout=60)
    assert r.status_code == 200, (r.status_code, r.text[:300])
    assert r.json()["choices"][0]["message"]["content"] is not None


def test_overload_is_refused_with_429_and_retry_after(one_slot):
    import httpx

    async def burst(n: int):
        async with httpx.AsyncClient(base_url=one_slot, timeout=60) as http:
            async def one():
                async with http.stream("POST", "/v1/chat/completions", json=_body()) as r:
                    text = (await r.aread()).decode()
                    return r.status_code, r.headers.get("retry-after"), text
            return await asyncio.gather(*(one() for _ in range(n)))

    _wait_free(one_slot)
    results = asyncio.run(burst(16))
    statuses = [s for s, _, _ in results]
    assert all(s < 500 for s in statuses), statuses
    assert set(statuses) <= {200, 429}, statuses
    assert statuses.count(200) >= 1 and statuses.count(429) >= 1, statuses
    for s, retry, text in results:
        if s == 429:
            assert retry is not None and int(retry) >= 1, retry
            assert json.loads(text)["error"]["code"] == "rate_limit_exceeded"
        else:
            assert text.rstrip().endswith("data: [DONE]"), text[-200:]
    _wait_free(one_slot)
    _answered(one_slot)  # still serving after the burst


def test_a_client_that_disconnects_frees_its_slot(one_slot):
    import httpx

    _wait_free(one_slot)
    went_away = _status_count(one_slot, "499")
    with httpx.Client(base_url=one_slot, timeout=60) as http:
        with http.stream("POST", "/v1/chat/completions", json=_body()) as r:
            assert r.status_code == 200
            next(r.iter_lines())  # the first event, then hang up mid-stream
    _wait_free(one_slot)
    # the request was ended as "client went away" (499), not run to its end
    deadline = time.perf_counter() + 10
    while _status_count(one_slot, "499") <= went_away:
        assert time.perf_counter() < deadline, "the disconnected request was not recorded as 499"
        time.sleep(0.05)
    _answered(one_slot)  # the next request is admitted (max_pending is 1)


def test_a_client_that_reads_nothing_does_not_hold_its_slot(one_slot):
    """A stalled reader: the answer (bounded by max_tokens) fits the socket buffers, so generation ends and the
    slot is freed while the client has read nothing; the next request is admitted."""
    host, port = one_slot.removeprefix("http://").split(":")
    payload = json.dumps(_body()).encode()
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window: the server cannot push far ahead
    s.connect((host, int(port)))
    try:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload)
        deadline = time.perf_counter() + 10
        while _pending(one_slot) == 0:  # admitted...
            if time.perf_counter() > deadline:
                break  # (or already done)
            time.sleep(0.01)
        _wait_free(one_slot, limit=30)  # ...and freed, though nothing has been read
        _answered(one_slot)
        s.settimeout(10)
        got = b""
        while b"[DONE]" not in got:  # the stalled client still gets its whole answer when it reads
            chunk = s.recv(65536)
            assert chunk, got[-200:]
            got += chunk
        assert got.startswith(b"HTTP/1.1 200")
    finally:
        s.close()


def test_a_short_soak_gives_sane_samples(dirs, tmp_path):
    from zephyra.bench.soak import soak, write

    lines: list[str] = []
    r = soak(_app(dirs, max_pending=8, max_tokens=8), 10.0, 2, ["auto", "base"], max_tokens=8, max_requests=30,
             log_every=3.0, log=lines.append, warmup=2, think=0.8)  # 2 clients, 0.8 s apart: < 30 in 10 s
    assert 4 <= r["requests"] < 30  # the time bound stopped it
    assert r["answered"] >= 1 and r["errors"] == 0
    assert r["answered"] + r["refused_429"] == r["requests"]
    t = [s[0] for s in r["samples"]]
    assert len(t) >= 3 and t == sorted(t) and t[0] < 1.5
    assert 9.5 <= r["wall_s"] < 20.0 and len(t) >= 8
    assert all(100 < m < 64_000 for _, m in r["samples"])  # MiB: a Python process with torch loaded
    assert r["latency_p50_s"] <= r["latency_p99_s"]
    assert r["slope_mib_per_min"] == r["slope_mib_per_min"]  # not nan
    assert len([line for line in lines if line.startswith("soak:")]) >= 3  # every 3 s, and once at the end
    write(tmp_path, r)
    assert json.loads((tmp_path / "soak.json").read_text())["answered"] == r["answered"]
    md = (tmp_path / "soak.md").read_text()
    assert "MiB/min" in md and f"{r['rss_end_mib']:.1f}" in md
    assert (tmp_path / "soak.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
