"""The streaming engine: requests in, tokens out as they are made; concurrent requests with different adapters
share one batched decoding loop (continuous batching: a request joins and leaves the batch between steps).

    engine = Engine(model, tokenizer, AdapterBank.from_dirs(model, dirs), router=router)
    stream = engine.submit(Request([{"role": "user", "content": "What does zip() do?"}], adapter="auto",
                                   sampling=SamplingParams(max_tokens=48, stop=["\\n\\n"])))
    for event in stream:                      # or `async for event in stream` inside an asyncio server
        print(event.text, end="", flush=True)
    stream.result()                           # Completion: text, finish_reason, adapter, confidence, usage, timings
    stream.cancel()                           # from any thread: the request leaves the batch at the next step

How a step goes (one worker thread owns the model; callers only ever touch their own ``Stream``):
1. waiting requests join, up to ``max_batch`` rows: those routed by text (an external router, or a multi-turn
   chat) are routed first; then the group is prefilled in one left-padded batch, and rows routed by the in-model
   router are routed *inside* that prefill, from the trunk's states at the trunk/branch boundary, so the branch
   runs with their adapters and the trunk is never run twice; each row's first token is picked;
2. the group's KV cache joins the running batch's (``BatchCache.merge``);
3. one decoding step feeds every running row its last token, each row through its own adapter (or a weighted
   mix, or none: ``RowLoRALinear`` in multi.py), and picks each row's next token by its own sampling settings;
4. rows that ended (eos, a stop string, max_tokens, the context, a cancel) leave the batch.

Nothing about a request lives on a shared object: a request's state is its ``_Row`` (worker-only) and its
``Stream`` (thread-safe). ``submit`` checks a request in the caller's thread (messages, adapter, sampling,
length), so a bad request is a one-line ``RequestError`` there and never reaches the batch.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import itertools
import threading
import time
import warnings
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from ..chat import as_messages, encode_prompt, last_user_text
from ..errors import RequestError
from .cache import BatchCache
from .defaults import AUTO, BASE
from .lora import AdapterBank
from .multi import MultiLoRAEngine
from .sampling import SamplingParams, pick_tokens
from .text import TextStream

MODES = ("top1", "fused")  # top1: the router's adapter; fused: its best adapters, weighted by score


# --------------------------------------------------------------------------------------------------------------
# what goes in and what comes out
# --------------------------------------------------------------------------------------------------------------

@dataclass
class Request:
    messages: str | Sequence[Mapping]  # OpenAI-style messages, or one user message as a string
    adapter: str = AUTO  # "auto" (routed), "base", or an adapter's name
    sampling: SamplingParams = field(default_factory=SamplingParams)
    mode: str = "top1"  # with adapter "auto": "top1" or "fused"
    fmt: str = "chat"  # "chat": messages through the chat template; "raw": a string for the model to continue
    request_id: str | None = None  # None: one is made up
    route: Route | None = None  # decided before the request (a grounded request: routed, then retrieved for)


@dataclass(frozen=True)
class Route:
    """What served a request: the adapter (or "base"), and when routed, the router's confidence and scores and
    the adapters applied with their weights (one with weight 1 in top-1 mode)."""
    adapter: str
    confidence: float | None = None  # None when nothing was routed (a forced adapter, or the base)
    scores: dict[str, float] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)  # {} is the base

    @property
    def runner_up(self) -> str | None:
        ranked = sorted(self.scores, key=self.scores.__getitem__, reverse=True)
        return next((n for n in ranked if n != self.adapter), None)


@dataclass(frozen=True)
class Event:
    text: str  # new text ("" when a token completed nothing visible yet)
    tokens: tuple[int, ...]  # the token(s) this event adds
    finish_reason: str | None = None  # None while running; then stop | length | cancelled | error


@dataclass
class Completion:
    request_id: str
    text: str
    finish_reason: str  # "stop" (eos or a stop string), "length" (max_tokens or the context), "cancelled", "error"
    route: Route
    prompt_tokens: int
    completion_tokens: int
    truncated: bool  # the prompt was cut from the left to fit the context
    queued_s: float  # from submit to joining the batch
    first_token_s: float | None  # from submit to the first token (time to first token)
    total_s: float
    error: str | None = None


class Stream:
    """One request's handle: iterate it (or ``async for``) for its events; ``result()`` waits for the end;
    ``cancel()`` stops it. Thread-safe; the worker puts, one consumer takes."""

    def __init__(self, request_id: str, prompt_tokens: int, truncated: bool):
        self.request_id, self.prompt_tokens, self.truncated = request_id, prompt_tokens, truncated
        self.route: Route | None = None  # set when the request joins the batch, before its first event
        self.grounding = None  # set by System.submit_many: the sources in the prompt (resolve/grounding.py)
        self.completion: Completion | None = None
        self.submitted = time.perf_counter()
        self._items: collections.deque = collections.deque()
        self._cond = threading.Condition()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = []
        self._cancel = threading.Event()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def done(self) -> bool:
        return self.completion is not None

    # --- worker side ---
    def _put(self, event: Event) -> None:
        with self._cond:
            self._items.append(event)
            self._cond.notify_all()
            waiters, self._waiters = self._waiters, []
        for loop, fut in waiters:
            loop.call_soon_threadsafe(_resolve, fut)

    # --- consumer side ---
    def _get(self, timeout: float | None = None) -> Event:
        with self._cond:
            if not self._cond.wait_for(lambda: self._items, timeout):
                raise TimeoutError(f"request {self.request_id}: no event in {timeout} s")
            return self._items.popleft()

    def __iter__(self):
        while True:
            event = self._get()
            yield event
            if event.finish_reason is not None:
                return

    def __aiter__(self):
        return self._aiter()

    async def _aiter(self):
        loop = asyncio.get_running_loop()
        while True:
            with self._cond:
                event = self._items.popleft() if self._items else None
                if event is None:
                    fut = loop.create_future()
                    self._waiters.append((loop, fut))
            if event is None:
                await fut
                continue
            yield event
            if event.finish_reason is not None:
                return

    def result(self, timeout: float | None = None) -> Completion:
        """Wait for the end (draining the events) and return the completion."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.completion is None or self._items:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if self._get(left).finish_reason is not None:
                break
        return self.completion


def _resolve(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


# --------------------------------------------------------------------------------------------------------------
# routing decisions -> the adapters a row runs with
# --------------------------------------------------------------------------------------------------------------

def check_choice(adapter: str, mode: str, adapters: Sequence[str], no_router: str | None,
                 error: type[RequestError] = RequestError) -> None:
    """Refuse, in one line, what cannot be served: an unknown mode or adapter, ``auto`` without a router
    (``no_router`` says why there is none; None when there is one), ``fused`` with a forced adapter."""
    if mode not in MODES:
        raise error(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
    if adapter == AUTO:
        if no_router is not None:
            raise error(f"adapter 'auto' needs a router: {no_router}")
    elif adapter != BASE and adapter not in adapters:
        raise error(f"no adapter named {adapter!r}; known: {', '.join([AUTO, BASE, *adapters])}")
    if mode == "fused" and adapter != AUTO:
        raise error("mode 'fused' mixes what the router picks: use adapter 'auto'")


def fused_mix(scores: Mapping[str, float], top: int) -> dict[str, float]:
    """The ``top`` best-scored labels weighted by their scores, renormalised over those ``top``; "base" among them
    keeps its share of the weight but adds no update (so a doubtful router leans towards the base)."""
    if any(v < 0 for v in scores.values()):
        raise RequestError("fused mode needs router scores that are probabilities (non-negative)")
    best = sorted(scores.items(), key=lambda kv: kv[1], reverse=True)[:top]
    total = sum(v for _, v in best)
    if total <= 0:
        return {}
    return {name: v / total for name, v in best if name != BASE and v > 0}


def decided_route(request: Request) -> Route | None:
    """The route a request has before any router is asked: the one it carries (grounded requests), the base, or
    its forced adapter; None for "auto"."""
    if request.route is not None:
        return request.route
    if request.adapter == BASE:
        return Route(BASE)
    if request.adapter != AUTO:
        return Route(request.adapter, weights={request.adapter: 1.0})
    return None


def served_route(decision, loaded: set[str], mode: str, fuse_top: int) -> Route:
    """A router's decision as what the engine serves: a label with no adapter loaded is answered by the base
    (its confidence and scores stay visible); in fused mode such labels' scores go to "base"."""
    adapter, confidence, scores = decision.adapter, float(decision.confidence), dict(decision.scores)
    if mode == "fused":
        folded = {k: v for k, v in scores.items() if k in loaded}
        folded[BASE] = sum(v for k, v in scores.items() if k not in loaded)
        weights = fused_mix(folded, fuse_top)
        top = max(weights, key=weights.get) if weights else BASE
        return Route(adapter if adapter in weights else top, confidence, scores, weights)
    if adapter != BASE and adapter not in loaded:
        adapter = BASE
    return Route(adapter, confidence, scores, {} if adapter == BASE else {adapter: 1.0})


# --------------------------------------------------------------------------------------------------------------
# the engine
# --------------------------------------------------------------------------------------------------------------

@dataclass
class _Row:
    """A request in the batch (the worker thread's alone)."""
    request: Request
    stream: Stream
    ids: list[int]  # the prompt as prefilled
    route_text: str  # what a text router reads: the last user message (or the raw prompt)
    text: TextStream
    generator: torch.Generator | None
    route: Route | None = None
    length: int = 0  # real tokens in the cache: this row's next position
    last: int = 0  # the token to feed at the next step
    new_tokens: int = 0
    finish: str | None = None
    first_token_at: float | None = None
    joined_at: float = 0.0


class Engine:
    """Continuous batching over one base, its LoRA adapters and (optionally) a router. Installs per-row LoRA
    layers on ``model`` (sharing its weights) until ``close()``."""

    def __init__(self, model, tokenizer, bank: AdapterBank | None = None, router=None, *, max_batch: int = 32,
                 kernel: str = "masked", fuse_top: int = 2):
        if max_batch < 1:
            raise RequestError(f"max_batch must be positive, got {max_batch}")
        self.model, self.tokenizer, self.router = model.eval(), tokenizer, router
        self.lora = MultiLoRAEngine(model, bank or AdapterBank({}), kernel=kernel)
        self.max_batch, self.fuse_top = max_batch, fuse_top
        self.context = model.config.max_position_embeddings
        self.eos = tokenizer.eos_token_id
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._ids = itertools.count(1)
        self._waiting: collections.deque[_Row] = collections.deque()
        self._running: list[_Row] = []
        self._cache: BatchCache | None = None
        self._cond = threading.Condition()
        self._closed = False
        self._step_lock = threading.Lock()  # held by the worker for a step; adapters change between steps
        self._adapters_lock = threading.Lock()  # submits (check + queue) and adapter removals, one at a time
        self._worker: threading.Thread | None = None
        self._rows_changed = True  # the per-row LoRA layout must be rebuilt before the next decoding step
        self.steps = 0  # decoding steps run (all rows at once): for tests and benchmarks

    @property
    def adapters(self) -> list[str]:
        return self.lora.bank.names

    @property
    def choices(self) -> list[str]:
        return [AUTO, BASE, *self.adapters]

    # --- submitting (any thread) ---

    def check(self, adapter: str, mode: str = "top1") -> None:
        """A one-line RequestError unless ``adapter`` and ``mode`` can be served."""
        check_choice(adapter, mode, self.adapters, None if self.router is not None else "this system has none")

    def prepare(self, request: Request) -> tuple[list[int], bool, str]:
        """(prompt ids, truncated, route text) of a request, or a one-line RequestError."""
        self.check(request.adapter, request.mode)
        s = request.sampling
        if not isinstance(s, SamplingParams):
            raise RequestError(f"sampling must be SamplingParams, got {type(s).__name__}")
        vocab = self.model.config.vocab_size
        if any(t >= vocab for t in s.logit_bias):
            raise RequestError(f"logit_bias names token {max(s.logit_bias)}, past the vocabulary ({vocab} tokens)")
        if s.max_tokens >= self.context:
            raise RequestError(f"max_tokens {s.max_tokens} leaves no room for the prompt in the "
                               f"{self.context}-token context")
        if request.fmt == "chat":
            messages = as_messages(request.messages)
            text = last_user_text(messages)
            ids = encode_prompt(self.tokenizer, messages, "chat")
        else:  # raw (encode_prompt refuses anything else, and messages in the raw format)
            ids = encode_prompt(self.tokenizer, request.messages, request.fmt)
            text = request.messages
        limit = self.context - s.max_tokens
        truncated = len(ids) > limit
        if truncated:
            warnings.warn(f"prompt of {len(ids)} tokens cut to its last {limit} to fit the context", stacklevel=3)
            ids = ids[-limit:]
        return ids, truncated, text

    def submit(self, request: Request) -> Stream:
        """Queue a request; returns its Stream at once. Bad requests are refused here, in the caller's thread."""
        return self.submit_many([request])[0]

    def submit_many(self, requests: Sequence[Request]) -> list[Stream]:
        """Queue several requests at once (they join the batch together); every one is checked first, so a bad
        one queues none."""
        rows = []
        with self._adapters_lock:  # no adapter is removed between a request's check and its queueing
            for request in requests:
                ids, truncated, text = self.prepare(request)
                request_id = request.request_id or f"req-{next(self._ids)}"
                rows.append(_Row(request=request, stream=Stream(request_id, len(ids), truncated), ids=ids,
                                 route_text=text, text=TextStream(self.tokenizer, request.sampling.stop),
                                 generator=request.sampling.generator()))
            self._enqueue(rows)
        return [r.stream for r in rows]

    def _enqueue(self, rows: list[_Row]) -> None:
        with self._cond:
            if self._closed:
                raise RequestError("the engine is closed")
            self._waiting.extend(rows)
            self._cond.notify_all()
            if self._worker is None:
                self._worker = threading.Thread(target=self._loop, name="zephyra-engine", daemon=True)
                self._worker.start()
                # stop the worker before the interpreter tears torch down: a daemon thread still inside torch
                # at exit aborts the process ("terminate called without an active exception")
                atexit.register(_close_at_exit, weakref.ref(self))

    def run(self, requests: Sequence[Request]) -> list[Completion]:
        """Submit the requests together, then wait for all (in order)."""
        return [s.result() for s in self.submit_many(requests)]

    def add_adapter(self, name: str, updates) -> None:
        """Serve one more adapter (``{module path: LoRAUpdate}``: ``read_adapter_dir``) from the next step on;
        rows already running are not touched. Any thread: waits for the step in progress (milliseconds)."""
        with self._step_lock:
            self.lora.add(name, updates)

    @contextlib.contextmanager
    def exclusive(self, adapter: str | None = None):
        """The model alone, between two decoding steps, with ``adapter``'s LoRA applied (None or "base": the plain
        base), for work outside the batch (scoring a constrained tool call: resolve/tools.py). The running batch
        waits for the block; its per-row layout is rebuilt after it."""
        spec = None if adapter in (None, BASE) else adapter
        with self._step_lock, torch.no_grad():
            self.lora.set_rows(self.lora.mixes([spec]))
            try:
                yield self.model
            finally:
                self.lora.set_rows(None)
                self._rows_changed = True

    def remove_adapter(self, name: str) -> bool:
        """Stop serving ``name`` unless a queued or running request uses it (then False: try again later)."""
        with self._adapters_lock, self._step_lock, self._cond:
            busy = any(r.request.adapter == name or name in getattr(r.route or r.request.route, "weights", {})
                       for r in [*self._waiting, *self._running])
            if not busy:
                self.lora.drop(name)
            return not busy

    def close(self) -> None:
        """Stop the worker (requests still queued or running end as cancelled) and give the model back its
        plain Linear modules."""
        with self._cond:
            self._closed = True
            for row in [*self._waiting, *self._running]:
                row.stream.cancel()
            self._cond.notify_all()
            worker = self._worker
        if worker is not None:
            worker.join()
        self.lora.remove()

    # --- the worker ---

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._waiting or self._running or self._closed)
                if self._closed and not self._waiting and not self._running:
                    return
                room = self.max_batch - len(self._running)
                joining = [self._waiting.popleft() for _ in range(min(room, len(self._waiting)))]
            try:
                with self._step_lock, torch.no_grad():
                    self._step(joining)
            except Exception as e:  # noqa: BLE001  a bug must not hang every client: end their requests
                for row in [*joining, *self._running]:
                    if row.finish is None:
                        self._end(row, "error", error=f"{type(e).__name__}: {e}")
                self._running, self._cache, self._rows_changed = [], None, True

    def _step(self, joining: list[_Row]) -> None:
        joining = [r for r in joining if not self._ended_early(r)]
        if joining:
            self._join(joining)
        self._drop_finished()
        if self._running:
            self._decode()
            self._drop_finished()

    def _ended_early(self, row: _Row) -> bool:
        if row.finish is None and row.stream.cancelled:
            self._end(row, "cancelled")
        return row.finish is not None

    def _drop_finished(self) -> None:
        """Rows that ended (or were cancelled) leave the batch and its cache (whose rows are ``_running``'s)."""
        keep = [i for i, r in enumerate(self._running) if not self._ended_early(r)]
        if len(keep) == len(self._running):
            return
        self._running = [self._running[i] for i in keep]
        if self._running:
            self._cache.keep(keep)
        else:
            self._cache = None
        self._rows_changed = True

    # --- joining: routing by text, the prefill (routing from the trunk), first tokens ---

    def _join(self, rows: list[_Row]) -> None:
        self._rows_changed = True  # the layers are laid out for this group now; the batch's comes back later
        now = time.perf_counter()
        for r in rows:
            r.joined_at = now
        in_prefill = self._route_by_text(rows)
        width = max(len(r.ids) for r in rows)
        ids = torch.tensor([[self.pad] * (width - len(r.ids)) + r.ids for r in rows])
        mask = torch.tensor([[0] * (width - len(r.ids)) + [1] * len(r.ids) for r in rows])
        padded = not bool(mask.all())
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = BatchCache(self.model.config.num_hidden_layers, mask)
        chosen: list = []
        if in_prefill:
            def route(trunk_states, attention_mask):
                return self._route_in_prefill(rows, in_prefill, trunk_states, mask)
            prefill = self.lora.routing(route, mask, chosen)
        else:
            self.lora.set_rows([r.route.weights for r in rows])
            prefill = contextlib.nullcontext()
        with prefill:
            out = self.model(input_ids=ids, attention_mask=mask if padded else None, position_ids=pos,
                             past_key_values=cache, use_cache=True, logits_to_keep=1)
        for r in rows:
            r.length = len(r.ids)
            r.stream.route = r.route
        self._emit(rows, out.logits[:, -1])
        alive = [i for i, r in enumerate(rows) if r.finish is None]
        if not alive:
            return
        if len(alive) != len(rows):
            cache.keep(alive)
        self._cache = cache if self._cache is None else self._cache.merge(cache)
        self._running += [rows[i] for i in alive]

    def _route_by_text(self, rows: list[_Row]) -> list[int]:
        """Set the route of every row that is decided before the prefill (forced, base, text routers, multi-turn
        chats); returns the indices of the rows the in-model router routes inside the prefill."""
        loaded = set(self.adapters)
        by_text, in_prefill = [], []
        for i, r in enumerate(rows):
            req = r.request
            if (fixed := decided_route(req)) is not None:
                r.route = fixed
            elif self._routes_in_prefill(req):
                in_prefill.append(i)
            else:
                by_text.append(i)
        if by_text:
            decisions = self.router.route([rows[i].route_text for i in by_text])
            for i, d in zip(by_text, decisions):
                rows[i].route = served_route(d, loaded, rows[i].request.mode, self.fuse_top)
        return in_prefill

    def _routes_in_prefill(self, req: Request) -> bool:
        """The in-model router reads the prompt's own prefill when the prompt is what it was trained on: one
        user message through the chat template. A multi-turn chat is routed on its last user message instead
        (the router's own trunk-only pass), before the prefill."""
        return (getattr(self.router, "kind", None) == "inmodel" and req.fmt == "chat"
                and getattr(self.router, "prompt_format", "chat") == "chat" and _single_user(req.messages))

    def _route_in_prefill(self, rows, in_prefill: list[int], trunk_states, mask) -> list[dict]:
        idx = torch.tensor(in_prefill)
        decisions = self.router.route_trunk(trunk_states.index_select(0, idx), mask.index_select(0, idx),
                                            [rows[i].route_text for i in in_prefill],
                                            input_ids=[rows[i].ids for i in in_prefill])
        loaded = set(self.adapters)
        for i, d in zip(in_prefill, decisions):
            rows[i].route = served_route(d, loaded, rows[i].request.mode, self.fuse_top)
        return [r.route.weights for r in rows]

    # --- decoding ---

    def _decode(self) -> None:
        rows, cache = self._running, self._cache
        if self._rows_changed:
            self.lora.set_rows([r.route.weights for r in rows])
            self._rows_changed = False
        cache.grow()
        ids = torch.tensor([[r.last] for r in rows])
        pos = torch.tensor([[r.length] for r in rows])
        padded = not bool(cache.mask.all())
        out = self.model(input_ids=ids, attention_mask=cache.mask if padded else None, position_ids=pos,
                         past_key_values=cache, use_cache=True, logits_to_keep=1)
        self.steps += 1
        for r in rows:
            r.length += 1
        self._emit(rows, out.logits[:, -1])

    def _emit(self, rows: list[_Row], logits: torch.Tensor) -> None:
        """Pick each row's next token, stream its text, end the rows that are done."""
        tokens = pick_tokens(logits, [r.request.sampling for r in rows], [r.generator for r in rows]).tolist()
        now = time.perf_counter()
        for r, t in zip(rows, tokens):
            if r.first_token_at is None:
                r.first_token_at = now
            r.new_tokens += 1
            r.last = t
            if t == self.eos:
                self._end(r, "stop", tokens=(t,))
                continue
            piece = r.text.push(t)
            if r.text.stopped:
                self._end(r, "stop", tokens=(t,), text=piece)
            elif r.new_tokens >= r.request.sampling.max_tokens or r.length >= self.context:
                self._end(r, "length", tokens=(t,), text=piece)
            else:
                r.stream._put(Event(piece, (t,)))

    def _end(self, row: _Row, reason: str, tokens: tuple[int, ...] = (), text: str = "",
             error: str | None = None) -> None:
        text += row.text.finish() if reason in ("stop", "length") else ""
        row.finish = reason
        now = time.perf_counter()
        s = row.stream
        joined = row.joined_at or now
        s.completion = Completion(
            request_id=s.request_id, text=row.text.text, finish_reason=reason, route=row.route or Route(BASE),
            prompt_tokens=len(row.ids), completion_tokens=row.new_tokens, truncated=s.truncated,
            queued_s=joined - s.submitted,
            first_token_s=None if row.first_token_at is None else row.first_token_at - s.submitted,
            total_s=now - s.submitted, error=error)
        if s.route is None:
            s.route = s.completion.route
        s._put(Event(text, tokens, reason))


def _close_at_exit(ref: weakref.ref) -> None:
    engine = ref()
    if engine is not None and not engine._closed:
        engine.close()


def _single_user(messages) -> bool:
    return isinstance(messages, str) or (len(messages) == 1 and messages[0].get("role") == "user")
