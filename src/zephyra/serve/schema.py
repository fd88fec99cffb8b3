"""The OpenAI wire format, read by hand: a request body -> a checked ``ServeRequest``, and the response and error
objects. Every problem is a ``BadRequest`` with one line naming the field (an HTTP 400 in OpenAI's error shape),
never a 422 listing a schema or a 500: the body is parsed here, not by a model class, so that the message is ours
and fuzzed input cannot reach the engine.

    req = chat_request(json_body)      # ServeRequest(model, messages, sampling, stream, include_usage, user)
    req.extra                          # {"tools": [Tool], "tool_choice": "auto" | "required" | a name} with tools
                                       # {"images": [(message index, bytes)]} with image_url parts (data URLs)

With ``tools``, the messages come out already rendered for the chat encoder (resolve/tools.py: the tools as a
system message, assistant ``tool_calls`` as ``<tool_call>`` text, ``role: tool`` results as user turns).
"""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass, field

from ..errors import RequestError
from ..resolve.sampling import SamplingParams
from ..resolve.tools import ToolError, check_choice, check_tools, tool_messages

MAX_STOP = 4  # OpenAI's limit on stop sequences
MAX_IMAGE_BYTES = 512 * 1024  # one image part, decoded: under the default 1 MiB body (base64 is 4/3), so an image
# too large is a 400 naming it rather than the body's 413


class BadRequest(ValueError):
    """A request the API refuses: ``status`` (400, 401, 404, 429, 503), one-line ``message``, OpenAI ``type`` and
    ``param``."""

    def __init__(self, message: str, *, status: int = 400, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.message, self.status, self.type, self.param, self.code = message, status, type, param, code
        self.headers = headers or {}

    def body(self) -> dict:
        return error_body(self.message, self.type, self.param, self.code)


def error_body(message: str, type: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict:
    """OpenAI's error object: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


@dataclass
class ServeRequest:
    model: str
    prompt: list[dict] | str  # chat: checked messages; completions: the text to continue
    sampling: SamplingParams
    stream: bool = False
    include_usage: bool = False
    user: str | None = None
    fmt: str = "chat"
    extra: dict = field(default_factory=dict)


def _number(body: dict, name: str, lo: float, hi: float, default, integer: bool = False):
    value = body.get(name)
    if value is None:
        return default
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or (isinstance(value, float) and not math.isfinite(value)):
        kind = "an integer" if integer else "a number"
        raise BadRequest(f"{name} must be {kind}, got {type(value).__name__}", param=name)
    if not lo <= value <= hi:
        raise BadRequest(f"{name} must be between {lo} and {hi}, got {value}", param=name)
    return value


def _text_content(content, where: str, images: list | None = None) -> str:
    """A message's content: a string, or OpenAI's list of parts: text parts, and with ``images`` (a user message)
    ``image_url`` parts too, whose decoded bytes are appended to ``images``."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for i, part in enumerate(content):
            if images is not None and isinstance(part, dict) and part.get("type") == "image_url":
                images.append(_image_part(part.get("image_url"), f"{where}.content[{i}]"))
                continue
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                kinds = "a text part {'type': 'text', 'text': ...}" + (" or an image_url part" if images is not None
                                                                       else "")
                raise BadRequest(f"{where}.content[{i}] must be {kinds}", param=f"{where}.content")
            texts.append(part["text"])
        return "".join(texts)
    raise BadRequest(f"{where}.content must be a string or a list of text parts, got {type(content).__name__}",
                     param=f"{where}.content")


def _image_part(image_url, where: str) -> bytes:
    """An ``image_url`` part's image, from a ``data:image/...;base64,...`` URL only: the server fetches nothing."""
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    param = where.partition(".")[0] + ".content"
    if not isinstance(url, str) or not url:
        raise BadRequest(f"{where}.image_url must be {{'url': 'data:image/png;base64,...'}}", param=param)
    if not url.startswith("data:"):
        scheme = url.split(":", 1)[0][:20] if ":" in url else "a URL without a scheme"
        raise BadRequest(f"{where}.image_url: {scheme} URLs are not fetched (this server has no network); send the "
                         "image inline as data:image/png;base64,...", param=param, code="image_url_not_data")
    head, comma, payload = url[5:].partition(",")
    if not comma or not head.endswith(";base64") or not head.lower().startswith("image/"):
        raise BadRequest(f"{where}.image_url must be a base64 data URL of an image (data:image/png;base64,...), "
                         f"got data:{head[:40]}", param=param)
    if len(payload) > MAX_IMAGE_BYTES * 4 // 3 + 4:
        raise BadRequest(f"{where}: the image is about {len(payload) * 3 // 4} bytes, at most {MAX_IMAGE_BYTES}",
                         param=param, code="image_too_large")
    try:
        data = base64.b64decode(payload, validate=True)
    except (ValueError, binascii.Error):
        raise BadRequest(f"{where}.image_url: the data URL is not valid base64", param=param) from None
    if not data:
        raise BadRequest(f"{where}.image_url: the image is empty", param=param)
    return data


def _common(body, max_tokens_cap: int) -> tuple[str, SamplingParams, bool, bool, str | None]:
    if not isinstance(body, dict):
        raise BadRequest(f"the request body must be a JSON object, got {type(body).__name__}")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("model is required: 'auto', 'base', an adapter name or NAME@VERSION", param="model")
    _number(body, "n", 1, 1, 1, integer=True)  # one choice per request: OpenAI's n > 1 is refused
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    max_tokens = _number({"max_tokens": max_tokens}, "max_tokens", 1, max_tokens_cap, min(64, max_tokens_cap),
                         integer=True)
    stop = body.get("stop")
    if stop is None:
        stop = []
    elif isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or len(stop) > MAX_STOP or not all(isinstance(s, str) and s for s in stop):
        raise BadRequest(f"stop must be a non-empty string or a list of up to {MAX_STOP} of them", param="stop")
    bias = body.get("logit_bias") or {}
    if not isinstance(bias, dict):
        raise BadRequest("logit_bias must be an object {token id: bias}", param="logit_bias")
    logit_bias = {}
    for k, v in bias.items():
        if not (isinstance(k, str) and k.isascii() and k.isdigit() and len(k) <= 12) or isinstance(v, bool) \
                or not isinstance(v, (int, float)) \
                or not -100 <= v <= 100:
            raise BadRequest(f"logit_bias maps token ids to numbers in [-100, 100], got {k!r}: {v!r}",
                             param="logit_bias")
        logit_bias[int(k)] = float(v)
    seed = _number(body, "seed", -(2**63), 2**63 - 1, None, integer=True)
    sampling = SamplingParams(max_tokens=max_tokens, temperature=float(_number(body, "temperature", 0, 2, 0.0)),
                              top_p=max(float(_number(body, "top_p", 0, 1, 1.0)), 1e-9), stop=stop,
                              seed=None if seed is None else seed % 2**63, logit_bias=logit_bias)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest("stream must be true or false", param="stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict) or not isinstance(options.get("include_usage", False), bool):
        raise BadRequest("stream_options must be an object like {'include_usage': true}", param="stream_options")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise BadRequest("user must be a string", param="user")
    return model, sampling, stream, bool(options.get("include_usage", False)), user


def chat_request(body, max_tokens_cap: int) -> ServeRequest:
    """``POST /v1/chat/completions``'s body, checked."""
    model, sampling, stream, usage, user = _common(body, max_tokens_cap)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages must be a non-empty list of {'role', 'content'} objects", param="messages")
    tools, choice = _tools(body)
    out, images = [], []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise BadRequest(f"messages[{i}] must be an object with 'role' and 'content'", param="messages")
        role = m.get("role")
        if role == "developer":  # OpenAI's newer name for the system role
            role = "system"
        if role not in ("system", "user", "assistant", "tool"):
            raise BadRequest(f"messages[{i}].role must be system, user, assistant or tool, got {role!r}",
                             param="messages")
        if role == "assistant" and m.get("tool_calls"):
            if not isinstance(m["tool_calls"], list):
                raise BadRequest(f"messages[{i}].tool_calls must be a list", param="messages")
            content = m.get("content")
            out.append({"role": role, "content": "" if content is None else _text_content(content, f"messages[{i}]"),
                        "tool_calls": m["tool_calls"]})
            continue
        found = [] if role == "user" else None  # a user message's image_url parts
        item = {"role": role, "content": _text_content(m.get("content"), f"messages[{i}]", found)}
        if role == "tool":
            item["tool_call_id"] = m.get("tool_call_id")
        images += [(len(out), data) for data in found or ()]
        out.append(item)
    if any(m["role"] == "tool" or "tool_calls" in m for m in out) or tools:
        try:  # the calls and results as the chat encoder's text (resolve/tools.py), the tools listed first
            out = tool_messages(out, tools if choice != "none" else None)
        except RequestError as e:
            raise BadRequest(str(e), param="messages") from None
    if not any(m["content"].strip() for m in out if m["role"] != "assistant"):
        raise BadRequest("the prompt is empty", param="messages")
    extra = {"tools": tools, "tool_choice": choice} if tools else {}
    if images:  # [(index in the messages, bytes)]: only a vision model reads them (serve/images.py)
        extra["images"] = images
    return ServeRequest(model, out, sampling, stream, usage, user, "chat", extra)


def _tools(body: dict):
    """``tools`` and ``tool_choice``, checked: (the tools or None, "auto" | "none" | "required" | a name)."""
    if body.get("tools") is None:
        if body.get("tool_choice") not in (None, "none", "auto"):
            raise BadRequest("tool_choice needs tools", param="tool_choice")
        return None, "none"
    try:
        tools = check_tools(body["tools"])
        return tools, check_choice(body.get("tool_choice"), tools)
    except ToolError as e:
        raise BadRequest(str(e), param="tool_choice" if str(e).startswith("tool_choice") else "tools") from None


def completion_request(body, max_tokens_cap: int) -> ServeRequest:
    """``POST /v1/completions``'s body, checked: ``prompt`` is one string (or a list of one)."""
    model, sampling, stream, usage, user = _common(body, max_tokens_cap)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str) or not prompt.strip():
        raise BadRequest("prompt must be a non-empty string (one prompt per request)", param="prompt")
    return ServeRequest(model, prompt, sampling, stream, usage, user, "raw")
