"""Images in ``POST /v1/chat/completions`` (serve/images.py, serve/schema.py): a tiny base and a tiny vision
projection trained on it here, served on loopback as ``zephyra serve --tutor DIR`` serves them, driven by the
official ``openai`` client: the image reaches ``tutor/vision`` intact and its answer comes back, streamed or not;
not an image, too large, a remote URL, an image for a text model: a 400, one line, OpenAI's error shape."""

import base64
import io
import sys
from pathlib import Path

import openai
import pytest
import torch
from PIL import Image

sys.path[:0] = [str(Path(__file__).parents[1] / d) for d in ("router", "serve")]
from router_helpers import save_tiny_base  # noqa: E402
from serve_helpers import KEY, running  # noqa: E402

from zephyra.apps.tutor import vision as V  # noqa: E402
from zephyra.serve.schema import MAX_IMAGE_BYTES  # noqa: E402

QUESTION = "What colour is the circle?"


def _png(colour=(220, 40, 40)) -> bytes:
    buf = io.BytesIO()
    image = Image.new("RGB", (64, 64))
    image.paste(colour, (16, 16, 48, 48))
    image.save(buf, format="PNG")
    return buf.getvalue()


def _url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def _ask(url: str, text: str = QUESTION) -> list[dict]:
    return [{"role": "user", "content": [{"type": "text", "text": text},
                                         {"type": "image_url", "image_url": {"url": url}}]}]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(client, the tutor's backend, base dir, root) of a server with the tutor and its vision artifact."""
    from zephyra.apps.tutor.backend import serve_tutor
    from zephyra.resolve.system import load_system
    from zephyra.serve.app import create_app

    torch.manual_seed(0)
    tmp = tmp_path_factory.mktemp("vision-server")
    save_tiny_base(tmp / "base")
    (tmp / "tutor").mkdir()
    cfg = V.VisionConfig(steps=4, batch=8, image_size=64, hidden=32, tokens=2,
                         per_family={"train": 4, "validation": 2, "test": 2})
    V.train_vision(tmp / "base", tmp / "tutor" / "vision", cfg, cache_dir=None)
    system = load_system(tmp / "base", None, None)
    app = create_app(system, api_keys=[KEY], max_tokens=32, extensions=[serve_tutor(system, tmp / "tutor")])
    with running(app) as url:
        yield (openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0, timeout=60), app.state.tutor,
               tmp / "base", tmp / "tutor")


def test_an_image_part_reaches_the_vision_model_and_its_answer_comes_back(served):
    client, backend, base, root = served
    assert "tutor/vision" in [m.id for m in client.models.list()]
    assert client.models.retrieve("tutor/vision").id == "tutor/vision"  # by name too, as OpenAI serves a model
    seen, answerer, png = [], backend.vision, _png()
    original = answerer.answer

    def spy(data, question):  # what the served model was given
        seen.append((data, question))
        return original(data, question)

    answerer.answer = spy
    try:
        out = client.chat.completions.create(model="tutor/vision", messages=_ask(_url(png)))
        chunks = list(client.chat.completions.create(model="tutor/vision", messages=_ask(_url(png)), stream=True,
                                                     stream_options={"include_usage": True}))
    finally:
        answerer.answer = original
    assert seen == [(png, QUESTION)] * 2  # the bytes, decoded from the data URL, and the text part as the question
    expected = V.VisionAnswerer.load(root / "vision", base).answer(png, QUESTION)  # the same model, in this process
    assert out.choices[0].message.content == expected and out.model == "tutor/vision"
    assert out.choices[0].finish_reason == "stop" and out.usage.completion_tokens >= 0
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == expected and chunks[-1].usage is not None


@pytest.mark.parametrize("messages, model, match", [
    (_ask(_url(b"this is not a picture")), "tutor/vision", "not an image"),
    (_ask(_url(bytes(MAX_IMAGE_BYTES + 10))), "tutor/vision", "at most"),
    (_ask("https://example.com/cat.png"), "tutor/vision", "not fetched"),
    (_ask("data:image/png;base64,@@not base64@@"), "tutor/vision", "not valid base64"),
    (_ask(_url(_png(), "text/plain")), "tutor/vision", "base64 data URL of an image"),
    (_ask(_url(_png())), "base", "does not read images"),
    ([{"role": "user", "content": QUESTION}], "tutor/vision", "one image"),
    (_ask(_url(_png()), " "), "tutor/vision", "the prompt is empty"),
    ([{"role": "system", "content": "Be kind."}, *_ask(_url(_png()), " ")], "tutor/vision", "no question"),
])
def test_bad_images_are_one_line_400s(served, messages, model, match):
    client = served[0]
    with pytest.raises(openai.BadRequestError, match=match) as caught:
        client.chat.completions.create(model=model, messages=messages)
    error = caught.value.response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert "\n" not in error["message"] and len(error["message"]) < 300


def test_text_requests_still_go_to_the_base(served):
    out = served[0].chat.completions.create(model="base", messages=[{"role": "user", "content": [
        {"type": "text", "text": "Hello"}]}], max_tokens=3)
    assert out.choices[0].message.content is not None and out.model != "tutor/vision"
