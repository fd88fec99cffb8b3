"""The conversation viewer in the server (apps/shakespeare/viewer.py): a tiny base with random character adapters
served as ``shakespeare/<slug>`` beside a domain adapter named ``hamlet``, on a free loopback port; the official
``openai`` client, the JSON API (a conversation started, polled to its end, listed and read; every bad request a
one-line 400 or 404) and the page in a real headless browser (Debian's chromium, driven by Playwright)."""

import json
import os
import re
import sys
import time
from pathlib import Path

import pytest

sys.path[:0] = [str(Path(__file__).parents[1] / d) for d in ("router", "resolve", "serve")]
from resolve_helpers import save_adapters  # noqa: E402
from router_helpers import make_model, make_tokenizer  # noqa: E402
from serve_helpers import KEY, running  # noqa: E402

CAST = ("hamlet", "ophelia", "polonius")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(base URL, the app's Server, the tiny system's root): the characters under their shakespeare/ ids, and
    the ``hamlet`` adapter also as a domain adapter (``zephyra serve --adapters runs/shakespeare/adapters``)."""
    from zephyra.apps.shakespeare.viewer import serve_characters
    from zephyra.resolve.system import load_system
    from zephyra.serve.app import create_app

    root = tmp_path_factory.mktemp("viewer")
    tok = make_tokenizer()
    model = make_model(tok)
    model.save_pretrained(root / "base")
    tok.save_pretrained(root / "base")
    save_adapters(model, root / "adapters", names=CAST)
    system = load_system(root / "base", None, None, adapter_dirs={"hamlet": root / "adapters" / "hamlet"})
    extension = serve_characters(system, root / "adapters", root / "conversations")
    app = create_app(system, api_keys=[KEY], max_tokens=8, extensions=[extension])
    with running(app) as url:
        yield url, app.state.server, root


def _http(url):
    import httpx

    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30)


def _finished(http, cid: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        c = http.get(f"/v1/shakespeare/conversations/{cid}").json()
        if c["state"] != "running" or time.monotonic() > deadline:
            return c
        time.sleep(0.1)


def test_characters_answer_as_shakespeare_models_beside_a_domain_adapter_of_the_same_name(served):
    from openai import NotFoundError, OpenAI

    from zephyra.registry.store import version_of

    url, server, root = served
    client = OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0, timeout=30)
    ids = [m.id for m in client.models.list().data]
    assert {"hamlet", *(f"shakespeare/{s}" for s in CAST)} <= set(ids)
    assert client.models.retrieve("shakespeare/ophelia").id == "shakespeare/ophelia"
    version = version_of(root / "adapters" / "hamlet")
    raw = client.chat.completions.with_raw_response.create(
        model="shakespeare/hamlet", messages=[{"role": "user", "content": "Ophelia: My lord?"}], max_tokens=4,
        temperature=0)
    reply = raw.parse()
    assert reply.model == f"shakespeare/hamlet@{version}"
    assert reply.model_extra["zephyra"]["adapter"] == "shakespeare/hamlet"
    assert raw.headers["x-zephyra-adapter"] == "shakespeare/hamlet" and raw.headers["x-zephyra-version"] == version
    pinned = client.completions.create(model=f"shakespeare/polonius@{version_of(root / 'adapters' / 'polonius')}",
                                       prompt="Hamlet: Words, words, words.", max_tokens=3, temperature=0)
    assert pinned.model.startswith("shakespeare/polonius@")
    plain = client.chat.completions.create(model="hamlet", messages=[{"role": "user", "content": "Who are you?"}],
                                           max_tokens=3, temperature=0)
    assert plain.model == f"hamlet@{version}"  # the domain adapter's id is unchanged
    with pytest.raises(NotFoundError, match="shakespeare/macbeth"):
        client.chat.completions.create(model="shakespeare/macbeth", messages=[{"role": "user", "content": "Hail"}])


def test_a_conversation_started_by_the_api_is_written_listed_and_read_with_its_scores(served):
    url, server, root = served
    with _http(url) as http:
        chars = http.get("/v1/shakespeare/characters").json()
        assert [c["model"] for c in chars["data"]] == [f"shakespeare/{s}" for s in CAST]
        r = http.post("/v1/shakespeare/conversations", json={
            "characters": ["Hamlet", "ophelia"], "turns": 3, "max_tokens": 4, "temperature": 0, "seed": 7,
            "scene": "A room in the castle."})
        assert r.status_code == 202, r.text
        cid = r.json()["id"]
        c = _finished(http, cid)
        assert c["state"] == "finished", c
        listed = {x["id"]: x for x in http.get("/v1/shakespeare/conversations").json()["data"]}
    assert listed[cid]["characters"] == ["hamlet", "ophelia"] and listed[cid]["made"] == listed[cid]["turns"] == 3
    assert listed[cid]["state"] == "finished" and listed[cid]["started"]
    assert c["settings"]["scene"] == "A room in the castle." and c["settings"]["seed"] == 7
    assert [t["turn"] for t in c["data"]] == [1, 2, 3] and c["data"][0]["speaker"] == "Hamlet"
    for t in c["data"]:
        assert t["adapter"] in ("shakespeare/hamlet", "shakespeare/ophelia")
        assert t["version"] == server.versions[t["adapter"]]
        assert set(t["scores"]) >= {"attribution", "echo", "repetition", "named"}
        assert 0 <= t["scores"]["attribution"] <= 1
    lines = [json.loads(x) for x in (root / "conversations" / f"{cid}.jsonl").read_text().splitlines()]
    assert lines[0]["kind"] == "settings" and lines[1:] == c["data"]  # what the page shows is the transcript


@pytest.mark.parametrize("body, message", [
    ({"characters": ["hamlet", "yorick"]}, "unknown character 'yorick'; known: hamlet, ophelia"),
    ({"characters": ["hamlet", "Hamlet"]}, "character 'hamlet' is given twice"),
    ({"characters": ["hamlet"]}, "two to four characters, got 1"),
    ({"characters": ["hamlet", "ophelia", "polonius", "claudius", "gertrude"]}, "two to four characters, got 5"),
    ({"characters": ["hamlet", "macbeth"]}, "serves no adapter for 'macbeth'; it serves: hamlet, ophelia, polonius"),
    ({"characters": "hamlet,ophelia"}, "characters is a list"),
    ({"characters": ["hamlet", "ophelia"], "turns": 0}, "turns must be between 1 and 40, got 0"),
    ({"characters": ["hamlet", "ophelia"], "turns": 41}, "turns must be between 1 and 40, got 41"),
    ({"characters": ["hamlet", "ophelia"], "turns": "3"}, "turns must be an integer"),
    ({"characters": ["hamlet", "ophelia"], "max_tokens": 9}, "max_tokens must be between 1 and 8"),
    ({"characters": ["hamlet", "ophelia"], "temperature": -1}, "temperature must be between 0.0 and 2.0"),
    ({"characters": ["hamlet", "ophelia"], "scene": "x" * 301}, "scene is 301 characters; at most 300"),
    ({"characters": ["hamlet", "ophelia"], "speed": 2}, "unknown field 'speed'; known: characters, turns"),
    (["hamlet", "ophelia"], "the body is a JSON object"),
    ("{not json", "not valid JSON"),
])
def test_a_bad_conversation_request_is_a_one_line_400(served, body, message):
    url = served[0]
    with _http(url) as http:
        before = len(http.get("/v1/shakespeare/conversations").json()["data"])
        r = http.post("/v1/shakespeare/conversations", content=body if isinstance(body, str) else json.dumps(body))
        after = len(http.get("/v1/shakespeare/conversations").json()["data"])
    error = r.json()["error"]
    assert r.status_code == 400 and message in error["message"] and "\n" not in error["message"], r.text
    assert error["type"] == "invalid_request_error" and after == before  # nothing started, nothing written


def test_only_the_directorys_own_transcripts_are_read_and_only_with_a_key(served):
    import httpx

    url, server, root = served
    (root / "secret.jsonl").write_text('{"kind": "settings", "characters": ["hamlet"]}\n')
    (root / "conversations").mkdir(exist_ok=True)
    (root / "conversations" / "link.jsonl").symlink_to(root / "secret.jsonl")
    with _http(url) as http:
        for cid in ("..%2Fsecret", "../secret", "..%2F..%2Fetc%2Fpasswd", "link", "nothing-here", "%2Fetc%2Fpasswd"):
            r = http.get(f"/v1/shakespeare/conversations/{cid}")
            assert r.status_code == 404 and "\n" not in r.json()["error"]["message"], (cid, r.text)
        assert "link" not in {x["id"] for x in http.get("/v1/shakespeare/conversations").json()["data"]}
        # a transcript another process writes (zephyra converse --log): running while it grows, then stopped
        other = root / "conversations" / "elsewhere.jsonl"
        other.write_text('{"kind": "settings", "characters": ["hamlet", "ophelia"], "turns": 3}\n'
                         '{"kind": "turn", "turn": 1, "speaker": "Hamlet", "text": "Words."}\n{"kind": "tu')
        c = http.get("/v1/shakespeare/conversations/elsewhere").json()
        assert (c["state"], c["made"], c["turns"]) == ("running", 1, 3)  # the line being written is not read
        os.utime(other, (time.time() - 120, time.time() - 120))
        assert http.get("/v1/shakespeare/conversations/elsewhere").json()["state"] == "stopped"
    for method, path in (("GET", "/v1/shakespeare/conversations"), ("POST", "/v1/shakespeare/conversations"),
                         ("GET", "/v1/shakespeare/characters")):
        r = httpx.request(method, url + path, json={"characters": ["hamlet", "ophelia"]})
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


def test_zephyra_serve_characters_mounts_them_and_the_viewer(served, tmp_path, monkeypatch):
    import uvicorn
    from typer.testing import CliRunner

    from zephyra.cli import app

    root = served[2]
    runner = CliRunner()
    r = runner.invoke(app, ["serve", "--characters", str(tmp_path / "none"), "--base", str(root / "base")])
    assert r.exit_code == 2 and "error: --characters" in r.output and "no such directory" in r.output, r.output
    (tmp_path / "empty").mkdir()
    r = runner.invoke(app, ["serve", "--characters", str(tmp_path / "empty"), "--base", str(root / "base")])
    assert r.exit_code == 2 and "no character adapter under" in r.output, r.output
    apps = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self: apps.append(self.config.app))  # built, not started
    r = runner.invoke(app, ["serve", "--base", str(root / "base"), "--adapters", str(root / "adapters"),
                            "--characters", str(root / "adapters"), "--conversations", str(tmp_path / "talks")])
    assert r.exit_code == 0, r.output
    server = apps[0].state.server
    try:
        assert {*CAST, *(f"shakespeare/{s}" for s in CAST)} <= set(server.versions)
        assert apps[0].state.shakespeare.root == tmp_path / "talks"
        assert "/shakespeare" in {route.path for route in apps[0].routes}
    finally:
        server.system.close()


# the browser: tests/conftest.py's fixture (Debian's chromium through Playwright)


def test_the_page_starts_a_conversation_and_shows_its_turns_and_their_attribution(served, browser, tmp_path):
    url = served[0]
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.add_init_script(f"localStorage.setItem('zephyra-key', {KEY!r})")
    page.goto(url + "/shakespeare")
    page.wait_for_selector("#cast input[value=polonius]", state="attached", timeout=20_000)
    page.check("#cast input[value=polonius]")  # hamlet and ophelia are ticked already: a three-way conversation
    page.fill("#turns-n", "3")
    page.fill("#max-tokens", "4")
    page.fill("#temperature", "0")
    page.fill("#seed", "3")
    page.fill("#scene", "The platform before the castle.")
    page.click("#go")
    mine = "document.body.dataset.open.includes('hamlet-ophelia-polonius') && document.body.dataset.state"
    page.wait_for_function(mine, timeout=30_000)  # the new conversation is open (running, or done already)
    page.wait_for_function(mine + " === 'finished'", timeout=30_000)  # polled until its last turn was shown
    assert page.locator(".turn").count() == 3
    assert page.locator(".turn .speaker").first.inner_text() == "Hamlet"
    for label in page.locator(".turn .adapter").all_inner_texts():
        assert re.fullmatch(r"shakespeare/(hamlet|ophelia|polonius)@[0-9a-f]{6,}", label), label
    assert "attribution" in page.locator(".turn .scores").first.inner_text()
    assert page.locator("#plot circle.point").count() == 3  # a point a turn
    cid = page.evaluate("document.body.dataset.open")
    assert "hamlet-ophelia-polonius" in cid
    page.wait_for_selector(f'#list div[data-id="{cid}"]', state="attached", timeout=10_000)
    page.screenshot(path=str(tmp_path / "viewer.png"))
    # a bad start is said on the page, in one line
    page.uncheck("#cast input[value=ophelia]")
    page.uncheck("#cast input[value=polonius]")
    page.click("#go")
    page.wait_for_function("document.getElementById('formerr').textContent.length > 0", timeout=10_000)
    assert "two to four characters, got 1" in page.inner_text("#formerr")
