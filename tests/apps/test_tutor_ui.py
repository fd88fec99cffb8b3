"""The tutor's Streamlit app (apps/tutor/ui.py) with a stub tutor (no model): the page, a turn and its steps, the
subject and reading options (streamlit's AppTest, in-process); the HTTP client's requests against the backend's
routes (httpx's mock transport); and once, the page in headless Chromium (streamlit run, Playwright)."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

UI = Path(__file__).resolve().parents[2] / "src" / "zephyra" / "apps" / "tutor" / "ui.py"
HOOK = "test_tutor_ui:make_stub"  # this module, on sys.path (pytest's rootdir insertion; PYTHONPATH in the browser test)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class StubTutor:
    """Answers every message with the same turn (the subject it was given, else math) and records the calls."""

    def __init__(self):
        self.calls, self.images = [], []

    def chat(self, message, subject, session, image_id):
        self.calls.append((message, subject, session, image_id))
        turn = {"text": "What do you get when you take 11 away from 44?", "subject": subject or "math",
                "adapter": "vision" if image_id else "rules", "session": "s-1",
                "sources": [{"id": "math-0001", "text": "Subtraction undoes addition.", "score": 0.8123}],
                "tool_calls": [{"name": "calculator", "arguments": {"expression": "4*11"}, "result": "44"}]}
        context = {"session": "s-1", "query": message, "subject": turn["subject"], "reason": "the subject given",
                   "check": "partial", "step": 1, "scores": [{"id": "math-0001", "score": 0.8123}]}
        return turn, context

    def upload(self, data):
        self.images.append(data)
        return f"img-{len(self.images)}"


STUB = StubTutor()


def make_stub():
    return STUB


@pytest.fixture
def app(monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("ZEPHYRA_TUTOR_UI_CLIENT", HOOK)
    STUB.calls.clear()
    at = AppTest.from_file(str(UI), default_timeout=30)
    return at.run()


def _css(at) -> str:
    return "".join(m.value for m in at.markdown if m.value.startswith("<style>"))


def test_the_page_renders_its_chat_and_options(app):
    assert not app.exception
    assert app.title[0].value == "Zephyra tutor"
    assert app.selectbox(key="subject").options == ["auto", "math", "science", "reading"]
    assert app.radio(key="font").value == "normal" and app.toggle(key="contrast").value is False
    assert len(app.chat_input) == 1 and not app.chat_message
    assert "font-size: 16px" in _css(app) and "#000" not in _css(app)


def test_a_message_makes_a_tutor_turn_with_its_steps(app):
    app.chat_input[0].set_value("What is 4 × 11 - 3?").run()
    assert not app.exception
    user, tutor = app.chat_message
    assert user.markdown[0].value == "What is 4 × 11 - 3?"
    assert tutor.markdown[0].value.startswith("What do you get")
    assert tutor.caption[0].value == "math · rules"
    labels = [e.label for e in tutor.expander]
    assert labels == ["Retrieved passages (1)", "Tool calls (1)", "Check of your step"]
    passages, calls, check = tutor.expander
    assert "math-0001" in passages.markdown[0].value and "0.812" in passages.markdown[0].value
    assert passages.text[0].value == "Subtraction undoes addition."
    assert json.loads(calls.json[0].value)[0]["name"] == "calculator"
    assert "partial" in check.markdown[0].value and "step** 2" in check.markdown[0].value
    assert STUB.calls[-1] == ("What is 4 × 11 - 3?", None, None, None)  # auto: no subject sent; a new session
    app.chat_input[0].set_value("40").run()  # the second turn goes on in the session the first one opened
    assert STUB.calls[-1][2] == "s-1" and len(app.chat_message) == 4


def test_subject_font_and_contrast_change_the_state(app):
    app.selectbox(key="subject").set_value("science").run()
    app.chat_input[0].set_value("Why is the sky blue?").run()
    assert STUB.calls[-1][1] == "science" and app.chat_message[1].caption[0].value == "science · rules"
    app.radio(key="font").set_value("large").run()
    assert app.session_state["font"] == "large" and "font-size: 20px" in _css(app)
    app.toggle(key="contrast").set_value(True).run()
    assert app.session_state["contrast"] is True and "background: #000" in _css(app)
    assert len(app.chat_message) == 2  # the options keep the conversation


def test_the_http_client_speaks_the_backends_routes():
    import httpx

    from zephyra.apps.tutor.subjects import SUBJECTS
    from zephyra.apps.tutor.ui import SUBJECTS as SHOWN
    from zephyra.apps.tutor.ui import HttpClient, UIError

    assert SHOWN == SUBJECTS
    seen = []

    def handler(request):
        seen.append(request)
        if request.url.path == "/tutor/chat":
            body = json.loads(request.content)
            if body["message"] == "bad":
                return httpx.Response(400, json={"error": {"message": "no such subject 'art'"}})
            return httpx.Response(200, json={"text": "Hm?", "subject": "math", "adapter": "rules", "sources": [],
                                             "tool_calls": [], "session": "abc"})
        if request.url.path == "/tutor/context":
            return httpx.Response(200, json={"session": request.url.params["session"], "check": "none"})
        return httpx.Response(200, json={"image_id": "img-9", "bytes": len(request.content)})

    client = HttpClient("http://tutor.test/", "sk-local", transport=httpx.MockTransport(handler))
    out, context = client.chat("2+2?", "math", None, None)
    assert out["session"] == "abc" and context == {"session": "abc", "check": "none"}
    assert json.loads(seen[0].content) == {"message": "2+2?", "subject": "math", "stream": False}
    assert all(r.headers["authorization"] == "Bearer sk-local" for r in seen)
    assert client.upload(b"\x89PNG") == "img-9" and seen[-1].url.path == "/tutor/upload_image"
    with pytest.raises(UIError, match="400: no such subject 'art'"):
        client.chat("bad", "art", None, None)


def test_the_http_client_streams_the_turn_as_its_pieces_come():
    import httpx

    from zephyra.apps.tutor.ui import HttpClient, UIError

    done = {"text": "Which step comes first?", "subject": "math", "adapter": "rules", "sources": [],
            "tool_calls": [], "session": "abc"}
    sse = ("event: context\r\ndata: {\"session\": \"abc\", \"sources\": []}\r\n\r\n: ping\r\n\r\n"
           + "".join(f"event: delta\r\ndata: {json.dumps({'text': t})}\r\n\r\n" for t in ("Which ", "step ", "comes ",
                                                                                          "first?"))
           + f"event: done\r\ndata: {json.dumps(done)}\r\n\r\n")
    seen = []

    def handler(request):
        seen.append(request)
        if request.url.path == "/tutor/context":
            return httpx.Response(200, json={"session": "abc", "check": "none"})
        if request.url.path == "/tutor/upload_image":
            return httpx.Response(200, json={"image_id": "img-1", "bytes": 4, "vision": False})
        body = json.loads(request.content)
        if body["message"] == "bad":
            return httpx.Response(400, json={"error": {"message": "no such subject 'art'"}})
        if body["message"] == "cut":
            return httpx.Response(200, text=sse.split("event: done")[0], headers={"content-type": "text/event-stream"})
        return httpx.Response(200, text=sse, headers={"content-type": "text/event-stream"})

    client = HttpClient("http://tutor.test", transport=httpx.MockTransport(handler))
    into = {}
    assert list(client.stream("2+2?", None, "abc", None, into)) == ["Which ", "step ", "comes ", "first?"]
    assert into == {"out": done, "context": {"session": "abc", "check": "none"}}
    assert json.loads(seen[0].content) == {"message": "2+2?", "session": "abc", "stream": True}
    with pytest.raises(UIError, match="400: no such subject 'art'"):
        list(client.stream("bad", "art", None, None, {}))
    with pytest.raises(UIError, match="before its 'done' event"):
        list(client.stream("cut", None, None, None, {}))
    assert client.serves_vision() is None and client.upload(b"\x89PNG") == "img-1" and client.serves_vision() is False

    def refused(request):
        raise httpx.ConnectError("connection refused")

    down = HttpClient("http://127.0.0.1:9", transport=httpx.MockTransport(refused))
    for call in (lambda: down.chat("x", None, None, None), lambda: list(down.stream("x", None, None, None, {})),
                 lambda: down.upload(b"x")):
        with pytest.raises(UIError, match="the server did not answer: connection refused"):
            call()


def test_the_command_refuses_a_server_that_is_not_a_url(tmp_path):
    from typer.testing import CliRunner

    from zephyra.cli import app

    r = CliRunner().invoke(app, ["tutor", "ui", "--server", "localhost:8000"])
    assert r.exit_code != 0 and "--server must be the backend's http(s) URL" in r.output
    r = CliRunner().invoke(app, ["tutor", "ui", "--base", str(tmp_path)])
    assert r.exit_code != 0 and "no model there" in r.output


def test_the_uploader_takes_what_the_backend_takes():
    from zephyra.apps.tutor.cli_ui import MAX_UPLOAD_MB, streamlit_command
    from zephyra.apps.tutor.vision import MAX_BYTES

    command = streamlit_command(8501)
    assert MAX_UPLOAD_MB * 1024 * 1024 == MAX_BYTES
    assert command[command.index("--server.maxUploadSize") + 1] == str(MAX_UPLOAD_MB)


def test_the_module_imports_neither_torch_nor_streamlit():
    code = "import sys, zephyra.apps.tutor.ui, zephyra.apps.tutor.cli_ui; print(sorted({'torch', 'streamlit'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _png() -> bytes:
    import io

    from PIL import Image, ImageDraw

    image = Image.new("RGB", (96, 96), "white")
    ImageDraw.Draw(image).ellipse((20, 20, 76, 76), fill="red")
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def test_in_process_the_backends_sessions_check_the_steps():
    from zephyra.apps.tutor.backend import Backend
    from zephyra.apps.tutor.tutor import Tutor
    from zephyra.apps.tutor.ui import LocalClient, UIError

    class Retrieving:  # the tutor's retrieval without an index or a model
        rules_turn = staticmethod(Tutor.rules_turn)

        def retrieved(self, message, subject=None):
            return subject or "reading", [{"id": "r-1", "text": "Plants make food from light. More.", "score": 0.5}]

    client = LocalClient(Backend(Retrieving()))
    out, context = client.chat("How do plants eat?", "science", None, None)
    assert out["subject"] == "science" and out["adapter"] == "rules" and "source [1]" in out["text"]
    assert "Plants make food" not in out["text"]  # the rules turn points at the passage, it does not quote it
    assert context["session"] == out["session"] and context["check"] == "none"
    assert context["scores"] == [{"id": "r-1", "score": 0.5}]
    again, _ = client.chat("And animals?", None, out["session"], None)
    assert again["session"] == out["session"] and len(client.backend.sessions) == 1
    with pytest.raises(UIError, match="no image"):
        client.chat("What colour?", None, out["session"], "img-missing")
    with pytest.raises(UIError):
        client.upload(b"not an image")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium (scripts/setup.sh installs Debian's)")
def test_the_page_in_a_browser(tmp_path):
    from playwright.sync_api import sync_playwright

    from zephyra.apps.tutor.cli_ui import streamlit_command, ui_env

    port = _free_port()
    env = ui_env(None, None, Path("unused"), Path("unused"))
    env.update({"ZEPHYRA_TUTOR_UI_CLIENT": HOOK, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).parent)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))})
    proc = subprocess.Popen(streamlit_command(port, "127.0.0.1"), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "streamlit did not open its port in 60 s"
                time.sleep(0.3)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"])
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 960})
                page.goto(f"http://127.0.0.1:{port}/")
                box = page.locator("[data-testid='stChatInputTextArea']")
                box.wait_for(timeout=60_000)
                page.set_input_files("input[type=file]", files=[{"name": "shapes.png", "mimeType": "image/png",
                                                                 "buffer": _png()}])
                page.get_by_text("questions go to the vision path").wait_for(timeout=30_000)
                box.fill("What is 4 × 11 - 3?")
                box.press("Enter")
                page.get_by_text("Check of your step").wait_for(timeout=30_000)
                page.get_by_text("Retrieved passages (1)").click()
                page.get_by_text("Subtraction undoes addition.").wait_for(timeout=10_000)
                assert page.get_by_text("math · vision").count() == 1  # the question went with the uploaded image
                page.wait_for_timeout(600)  # the expander's opening animation
                shot = tmp_path / "tutor_ui.png"
                page.screenshot(path=str(shot), full_page=True)
                assert shot.stat().st_size > 10_000  # the docs' picture comes from the real backend: test_tutor_ui_e2e
            finally:
                browser.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
