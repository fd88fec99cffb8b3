"""Generation forwarded to another OpenAI-compatible server (vLLM's multi-LoRA server over the Qwen3 export, or a
second ``zephyra serve``), with routing, retrieval, the registry, canaries and metrics kept here: what
``zephyra serve --upstream URL`` runs instead of the local engine. Same interface as ``Engine`` (``submit_many``
returns ``Stream`` objects), so the server and ``System`` do not know which one they have.

    engine = UpstreamEngine("http://10.0.0.5:8000/v1", tokenizer, router, ["python", "chemistry"])
    stream = engine.submit(Request("What does zip() do?", adapter="auto"))   # routed here, generated there
    stream.result().text

The request goes out with ``model`` = the adapter chosen here (its registry key: ``python`` or, for a canary,
``python@3f2a9c1b7d4e``; the base as ``base_model``), the chat messages as this server would prefill them
(retrieved passages included) and the sampling settings; the answer streams back token by token. A request the
upstream refuses or cannot take (down, timed out, 4xx/5xx) ends with ``finish_reason="error"`` and a one-line
error starting with "upstream".
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Sequence

from ..chat import as_messages, encode_prompt, last_user_text
from ..errors import RequestError
from .defaults import BASE
from .engine import Completion, Event, Request, Route, Stream, check_choice, decided_route, served_route


class UpstreamEngine:
    def __init__(self, url: str, tokenizer, router=None, adapters: Sequence[str] = (), *, context: int,
                 api_key: str | None = None, base_model: str = BASE, timeout: float = 300.0, fuse_top: int = 2):
        import httpx

        if not url.startswith(("http://", "https://")):
            raise RequestError(f"--upstream must be an http(s) URL of an OpenAI-compatible API, got {url!r}")
        self.url = url.rstrip("/")
        if not self.url.endswith("/v1"):
            self.url += "/v1"
        self.tokenizer, self.router, self.context = tokenizer, router, context
        self.base_model, self.fuse_top = base_model, fuse_top
        self._names = list(adapters)
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(headers=headers, timeout=httpx.Timeout(timeout, connect=10.0))
        self._ids = itertools.count(1)
        self._closed = False
        self._threads: set[threading.Thread] = set()

    @property
    def adapters(self) -> list[str]:
        return list(self._names)

    def add_adapter(self, name: str, updates=None) -> None:
        """Forward ``name`` too (the upstream must serve an adapter of that name)."""
        if name not in self._names:
            self._names.append(name)

    def remove_adapter(self, name: str) -> bool:
        if name in self._names:
            self._names.remove(name)
        return True

    # --- submitting ---
    def _route(self, request: Request, text: str) -> Route:
        if (fixed := decided_route(request)) is not None:
            return fixed
        decision = self.router.route([text])[0]
        return served_route(decision, set(self._names), "top1", self.fuse_top)

    def submit(self, request: Request) -> Stream:
        return self.submit_many([request])[0]

    def submit_many(self, requests: Sequence[Request]) -> list[Stream]:
        if self._closed:
            raise RequestError("the engine is closed")
        prepared = []
        for request in requests:
            check_choice(request.adapter, request.mode, self._names,
                         None if self.router is not None else "this system has none")
            if request.mode != "top1":
                raise RequestError("an upstream engine serves one adapter a request: mode 'fused' needs the local "
                                   "engine")
            if request.fmt == "chat":
                messages = as_messages(request.messages)
                text = last_user_text(messages)
            else:
                messages, text = request.messages, request.messages
            n = len(encode_prompt(self.tokenizer, messages, request.fmt))
            if n + request.sampling.max_tokens > self.context:
                raise RequestError(f"the prompt is {n} tokens; with max_tokens {request.sampling.max_tokens} it "
                                   f"does not fit the {self.context}-token context")
            prepared.append((request, messages, n, text))
        streams = []
        for request, messages, n, text in prepared:
            route = self._route(request, text)
            stream = Stream(request.request_id or f"req-{next(self._ids)}", n, False)
            stream.route = route
            t = threading.Thread(target=self._forward, args=(request, messages, route, stream), daemon=True,
                                 name="zephyra-upstream")
            self._threads.add(t)
            t.start()
            streams.append(stream)
        return streams

    def run(self, requests: Sequence[Request]) -> list[Completion]:
        return [s.result() for s in self.submit_many(requests)]

    # --- one request, in its own thread ---
    def _body(self, request: Request, messages, route: Route) -> tuple[str, dict]:
        s = request.sampling
        model = self.base_model if route.adapter == BASE else route.adapter
        body = {"model": model, "stream": True, "stream_options": {"include_usage": True},
                "max_tokens": s.max_tokens, "temperature": s.temperature, "top_p": s.top_p}
        if s.stop:
            body["stop"] = list(s.stop)
        if s.seed is not None:
            body["seed"] = s.seed
        if s.logit_bias:
            body["logit_bias"] = {str(k): v for k, v in s.logit_bias.items()}
        if request.fmt == "chat":
            return "/chat/completions", {**body, "messages": [dict(m) for m in messages]}
        return "/completions", {**body, "prompt": messages}

    def _forward(self, request: Request, messages, route: Route, stream: Stream) -> None:
        import httpx

        path, body = self._body(request, messages, route)
        pieces: list[str] = []
        usage, finish, error, first = None, None, None, None
        try:
            with self._client.stream("POST", self.url + path, json=body) as r:
                if r.status_code != 200:
                    r.read()
                    error = f"upstream {self.url} answered {r.status_code}: {_message(r.text)}"
                else:
                    for line in r.iter_lines():
                        if stream.cancelled or self._closed:
                            finish = "cancelled"
                            break
                        if not line.startswith("data:"):
                            continue
                        data = line[5:].strip()
                        if data == "[DONE]":
                            break
                        chunk = json.loads(data)
                        if "error" in chunk:
                            error = f"upstream {self.url}: {_message(json.dumps(chunk))}"
                            break
                        usage = chunk.get("usage") or usage
                        for choice in chunk.get("choices") or []:
                            delta = choice.get("delta") or {}
                            piece = delta.get("content") if "delta" in choice else choice.get("text")
                            if piece:
                                first = first or time.perf_counter()
                                pieces.append(piece)
                                ids = tuple(self.tokenizer(piece, add_special_tokens=False)["input_ids"])
                                stream._put(Event(piece, ids))
                            finish = choice.get("finish_reason") or finish
        except (httpx.HTTPError, OSError, ValueError) as e:
            error = f"upstream {self.url} failed: {type(e).__name__}: {' '.join(str(e).split())[:200]}"
        text = "".join(pieces)
        reason = "error" if error else ("length" if finish == "length" else (finish if finish == "cancelled"
                                                                              else "stop"))
        n_out = (usage or {}).get("completion_tokens")
        if n_out is None:
            n_out = len(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else 0
        now = time.perf_counter()
        stream.completion = Completion(
            request_id=stream.request_id, text=text, finish_reason=reason, route=route,
            prompt_tokens=stream.prompt_tokens, completion_tokens=n_out, truncated=False, queued_s=0.0,
            first_token_s=None if first is None else first - stream.submitted, total_s=now - stream.submitted,
            error=error)
        stream._put(Event("", (), reason))
        self._threads.discard(threading.current_thread())

    def close(self) -> None:
        """Cancel what is in flight and close the connections."""
        self._closed = True
        for t in list(self._threads):
            t.join(5)
        self._client.close()


def _message(text: str) -> str:
    """The one line of an OpenAI-style error body (or the start of whatever came back)."""
    try:
        body = json.loads(text)
        msg = (body.get("error") or {}).get("message") if isinstance(body, dict) else None
    except ValueError:
        msg = None
    return " ".join(str(msg or text).split())[:200]
