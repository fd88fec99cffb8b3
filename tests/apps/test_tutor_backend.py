"""The tutor's backend in the server (apps/tutor/backend.py): a tiny base served on loopback with the tutor's
routes mounted as ``zephyra serve --tutor`` mounts them; a math problem over two turns of one session, the SSE
events' order, image uploads, the context endpoint, the key, the errors, and what the log holds."""

import io
import json
import logging
import sys
from pathlib import Path

import httpx
import pytest

sys.path[:0] = [str(Path(__file__).parents[1] / d) for d in ("router", "serve", "resolve")]
from resolve_helpers import save_adapters  # noqa: E402
from router_helpers import save_tiny_base  # noqa: E402
from serve_helpers import KEY, running  # noqa: E402

AUTH = {"authorization": f"Bearer {KEY}"}
PROBLEM = "What is 7 × 8 + 2?"  # steps: 7 × 8 = 56, then 56 + 2 = 58


def _serve(base: Path, root: Path):
    from zephyra.apps.tutor.backend import serve_tutor
    from zephyra.resolve.system import load_system
    from zephyra.serve.app import create_app

    system = load_system(base, None, None)
    return create_app(system, api_keys=[KEY], max_tokens=32, extensions=[serve_tutor(system, root)])


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tutor")
    model = save_tiny_base(tmp / "base")
    (tmp / "tutor").mkdir()
    save_adapters(model, tmp / "with-adapter" / "adapters", names=["math"])
    return tmp


@pytest.fixture(scope="module")
def url(dirs):
    with running(_serve(dirs / "base", dirs / "tutor")) as u:
        yield u


def _events(text: str) -> list[tuple[str, dict]]:
    out, event = [], None
    for line in text.splitlines():
        if line.startswith("event:"):
            event = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            out.append((event, json.loads(line.split(":", 1)[1].strip())))
    return out


def test_a_math_problem_over_two_turns(url, caplog):
    caplog.set_level(logging.INFO, logger="zephyra.tutor")
    with httpx.Client(base_url=url, headers=AUTH, timeout=60) as c:
        first = c.post("/tutor/chat", json={"message": PROBLEM, "session": "s1", "stream": False})
        assert first.status_code == 200, first.text
        out = first.json()
        assert list(out)[:5] == ["text", "subject", "adapter", "sources", "tool_calls"]
        assert out["subject"] == "math" and out["adapter"] == "rules" and out["session"] == "s1"
        assert "58" not in out["text"] and "7 × 8 = ?" in out["text"] and "?" in out["text"]  # a hint, no answer
        second = c.post("/tutor/chat", json={"message": "Is it 56?", "session": "s1", "stream": False}).json()
        assert "58" not in second["text"] and "56 + 2 = ?" in second["text"]  # the right step moves them on
        ctx = c.get("/tutor/context", params={"session": "s1"}).json()
        assert ctx["check"] == "right" and ctx["step"] == 1 and ctx["query"] == PROBLEM and ctx["subject"] == "math"
        assert isinstance(ctx["scores"], list) and "reason" in ctx
        wrong = c.post("/tutor/chat", json={"message": "50", "session": "s1", "stream": False}).json()
        assert "58" not in wrong["text"] and c.get("/tutor/context?session=s1").json()["check"] == "wrong"
        done = c.post("/tutor/chat", json={"message": "58", "session": "s1", "stream": False}).json()
        assert "58" in done["text"]  # said once the learner gave it
        other = c.post("/tutor/chat", json={"message": "Is it 56?", "stream": False}).json()  # a new session
        assert other["session"] != "s1" and "56 + 2" not in other["text"]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "tutor chat 200" in logged and "session=s1" in logged and "subject=math" in logged
    assert "Is it 56" not in logged and "7 × 8" not in logged  # ids, subject, lengths: never the learner's text


def test_the_stream_sends_context_then_pieces_then_the_whole(url):
    with httpx.Client(base_url=url, headers=AUTH, timeout=60) as c:
        r = c.post("/tutor/chat", json={"message": PROBLEM, "session": "s2"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = _events(r.text)
    kinds = [e for e, _ in events]
    assert kinds[0] == "context" and kinds[-1] == "done" and set(kinds[1:-1]) == {"delta"}
    assert events[0][1]["subject"] == "math" and events[0][1]["query"] == PROBLEM
    whole = events[-1][1]
    assert "".join(d["text"] for e, d in events if e == "delta") == whole["text"] and whole["session"] == "s2"


def test_uploads_and_the_errors(url):
    from PIL import Image

    png = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(png, format="PNG")
    with httpx.Client(base_url=url, headers=AUTH, timeout=60) as c:
        raw = c.post("/tutor/upload_image", content=png.getvalue(), headers={"content-type": "image/png"})
        assert raw.status_code == 200 and raw.json()["image_id"].startswith("img-")
        assert raw.json()["vision"] is False  # no vision artifact here: the UI says so and sends no image_id
        form = c.post("/tutor/upload_image", files={"file": ("red.png", png.getvalue(), "image/png")})
        assert form.status_code == 200 and form.json()["image_id"] != raw.json()["image_id"]
        bad = c.post("/tutor/upload_image", files={"file": ("notes.txt", b"not an image at all", "text/plain")})
        assert bad.status_code == 400 and "not an image" in bad.json()["error"]["message"]
        huge = c.post("/tutor/upload_image", content=b"\0" * (20 * 1024 * 1024 + 1))
        assert huge.status_code == 413
        # an image question on a server without a vision artifact: said, in one line
        novision = c.post("/tutor/chat", json={"message": "What digit is this?", "image_id": raw.json()["image_id"],
                                               "stream": False})
        assert novision.status_code == 400 and "no vision artifact" in novision.json()["error"]["message"]
        assert c.post("/tutor/chat", json={"message": "x", "image_id": "img-nope"}).status_code == 404
        subject = c.post("/tutor/chat", json={"message": "x", "subject": "history"})
        assert subject.status_code == 400 and "unknown subject 'history'" in subject.json()["error"]["message"]
        for body in ({"message": "  "}, {"message": 3}, {"message": "x", "session": "../x"}, [1]):
            assert c.post("/tutor/chat", json=body).status_code == 400
        assert c.get("/tutor/context", params={"session": "never"}).status_code == 404
        assert c.get("/tutor/context").status_code == 400
        assert c.get("/health").status_code == 200
    for method, path in (("POST", "/tutor/chat"), ("POST", "/tutor/upload_image"), ("GET", "/tutor/context?session=s1")):
        r = httpx.request(method, url + path, json={"message": PROBLEM}, timeout=30)
        assert r.status_code == 401 and "API key" in r.json()["error"]["message"]


def test_the_math_adapter_joins_the_servers_system(dirs):
    with running(_serve(dirs / "base", dirs / "with-adapter")) as u, httpx.Client(base_url=u, headers=AUTH,
                                                                                   timeout=60) as c:
        out = c.post("/tutor/chat", json={"message": PROBLEM, "session": "a", "stream": False}).json()
        assert out["adapter"] == "tutor/math" and "58" not in out["text"]  # a random adapter, behind the guard
        ids = [m["id"] for m in c.get("/v1/models").json()["data"]]
        assert "tutor/math" in ids
        again = c.post("/tutor/chat", json={"message": "56", "session": "a", "stream": False}).json()
        assert again["adapter"] == "tutor/math" and "58" not in again["text"]


@pytest.mark.skipif(not (Path("runs/tutor/vision") / "manifest.json").is_file() or not
                    (Path("runs/phase2/final") / "config.json").is_file(), reason="no trained vision artifact here")
def test_an_image_question_takes_the_vision_path():
    from PIL import Image

    png = io.BytesIO()
    Image.new("RGB", (64, 64), (220, 40, 40)).save(png, format="PNG")
    with running(_serve(Path("runs/phase2/final"), Path("runs/tutor"))) as u, httpx.Client(
            base_url=u, headers=AUTH, timeout=120) as c:
        iid = c.post("/tutor/upload_image", content=png.getvalue()).json()["image_id"]
        out = c.post("/tutor/chat", json={"message": "What colour is the shape?", "image_id": iid,
                                          "stream": False}).json()
        assert out["adapter"] == "vision" and out["text"].strip()
