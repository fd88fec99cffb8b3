"""Chat requests with images (OpenAI's ``image_url`` parts, data URLs only: serve/schema.py decodes them), answered
by a vision model an application registered on the server: ``server.image_models[name] = answer`` with
``answer(image bytes, question) -> text`` (the tutor's, ``zephyra serve --tutor DIR`` with a vision artifact, is
``tutor/vision``: apps/tutor/backend.py). Serve imports no application; this is the whole of the path.

    client.chat.completions.create(model="tutor/vision", messages=[{"role": "user", "content": [
        {"type": "text", "text": "What colour is the circle?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0..."}}]}])

One image a request, in a user message whose text is the question. An image for another model, a vision model
without an image, tools, not an image (the model's loader says so): a 400 in OpenAI's error shape, one line.
"""

from __future__ import annotations

import asyncio
import json
import time

from ..errors import ZephyraError, one_line
from .schema import BadRequest, ServeRequest


def wants_images(server, req: ServeRequest) -> bool:
    """Whether ``req`` goes down the image path: it holds an image, or names a vision model."""
    return bool(req.extra.get("images")) or req.model in server.image_models


def _question(server, req: ServeRequest) -> tuple[bytes, str]:
    models = server.image_models
    if req.model not in models:
        where = f"this server's vision models: {', '.join(sorted(models))}" if models else \
            "this server has none (zephyra serve --tutor DIR with a vision artifact in DIR/vision)"
        raise BadRequest(f"model {req.model!r} does not read images; {where}", param="model",
                         code="images_not_supported")
    images = req.extra.get("images") or []
    if len(images) != 1:
        raise BadRequest(f"{req.model} answers a question about one image: send one image_url part "
                         f"(data:image/png;base64,...) in a user message, got {len(images)}", param="messages")
    if req.extra.get("tools"):
        raise BadRequest(f"{req.model} takes no tools", param="tools")
    index, data = images[0]
    question = req.prompt[index]["content"].strip()
    if not question:
        raise BadRequest(f"messages[{index}] holds the image but no question (add a text part)", param="messages")
    return data, question


async def image_response(server, req: ServeRequest, endpoint: str, rid: str):
    """The chat completion (JSON, or SSE with ``stream``) of the vision model ``req.model``; refusals raise
    ``BadRequest``."""
    from fastapi.responses import JSONResponse
    from sse_starlette import EventSourceResponse

    data, question = _question(server, req)
    started = time.perf_counter()
    try:
        text = await asyncio.get_running_loop().run_in_executor(None, server.image_models[req.model], data, question)
    except ZephyraError as e:  # not an image, too many pixels: the loader's one line
        raise BadRequest(f"messages: {one_line(e)}"[:300], param="messages", code="invalid_image") from None
    server.metrics.requests.labels(endpoint, req.model, "-", "200").inc()
    server.metrics.latency.labels(endpoint, req.model, "-").observe(time.perf_counter() - started)
    tok = server.system.tokenizer
    n_prompt = len(tok(question, add_special_tokens=False)["input_ids"]) if question else 0
    n_out = len(tok(text, add_special_tokens=False)["input_ids"]) if text else 0
    head = {"id": "chatcmpl-" + rid, "created": int(time.time()), "model": req.model}
    usage = {"prompt_tokens": n_prompt, "completion_tokens": n_out, "total_tokens": n_prompt + n_out}
    headers = {"x-zephyra-adapter": req.model, "x-request-id": rid}
    info = {"adapter": req.model, "images": 1}
    if not req.stream:
        message = {"role": "assistant", "content": text}
        return JSONResponse({**head, "object": "chat.completion", "usage": usage, "zephyra": info, "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}]}, headers=headers)

    def chunk(delta: dict, finish: str | None = None, **more) -> dict:
        return {"data": json.dumps({**head, "object": "chat.completion.chunk", **more, "choices": [
            {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]})}

    async def sse():
        yield chunk({"role": "assistant", "content": ""}, zephyra=info)
        if text:
            yield chunk({"content": text})
        yield chunk({}, "stop")
        if req.include_usage:
            yield {"data": json.dumps({**head, "object": "chat.completion.chunk", "choices": [], "usage": usage})}
        yield {"data": "[DONE]"}

    from .app import SEND_TIMEOUT_S  # every stream of the server: a client that stops reading is let go

    return EventSourceResponse(sse(), headers=headers, ping=15, send_timeout=SEND_TIMEOUT_S)

