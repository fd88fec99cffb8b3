"""``zephyra serve``: an OpenAI-compatible HTTP server on the streaming engine, so the official ``openai`` client
works unchanged; many clients share one continuous-batching loop (resolve/engine.py).

    app = create_app(load_system(), api_keys=["sk-local"])
    uvicorn.run(app, host="127.0.0.1", port=8000)

    client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="sk-local")
    client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "Who is Polonius?"}])

Endpoints: ``POST /v1/chat/completions``, ``POST /v1/completions`` (both with ``stream``), ``GET /v1/models``,
``GET /v1/models/{id}``, ``GET /health`` (liveness), ``GET /ready`` (the system is loaded and taking requests),
``GET /metrics`` (Prometheus, serve/metrics.py). ``model`` is ``auto`` (routed by tiny ada), ``base``, an adapter's
name or ``NAME@VERSION``. Every answer says what served it: a ``zephyra`` object ``{"adapter", "version",
"confidence", "runner_up", "sources", "note"}`` and the headers ``x-zephyra-adapter``, ``x-zephyra-version``,
``x-request-id`` (the client's own when it sent one). With ``tools`` (and ``tool_choice``: auto, none, required or a
named function) a chat request may answer with ``message.tool_calls`` and ``finish_reason: "tool_calls"``, decoded
under each tool's schema (resolve/tools.py); the client runs the tool and sends its result as a ``tool`` message.

Refusals are OpenAI's error object with one line: 400 (a bad body: serve/schema.py; a prompt too long for the
context; ``max_tokens`` too large), 401 (no or a wrong key: keys are compared by SHA-256 digest), 403 (a model or an
endpoint outside the key's scopes: serve/auth.py), 404 (an unknown model or version), 413 (a body over
``max_body`` bytes), 429 with ``Retry-After`` (``max_pending`` requests already admitted: the queue is bounded, so a
burst is refused rather than slowing everyone; or the key's rate limit), 503 (shutting down).
``POST /v1/admin/purge {"user": ID}`` (the purge scope) removes a user's data from every store (serve/privacy.py).
A client that disconnects cancels its request (its row leaves the batch at the next step). On shutdown the engine stops; requests still running end.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import json
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from fastapi import FastAPI
from fastapi import Request as HTTPRequest
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sse_starlette import EventSourceResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import RequestError
from .auth import KeyRing
from ..resolve.engine import BASE, Request, Route
from .canary import CanaryController, Outcomes
from .deploy import canary_arm
from .images import image_response, wants_images
from .metrics import Metrics
from .schema import BadRequest, ServeRequest, chat_request, completion_request, error_body

AUTO = "auto"


# a send (a chunk or a heartbeat) that a client does not read for this long ends its stream and frees its slot
SEND_TIMEOUT_S = 30.0


def adapter_version(adapter_dir: str | Path) -> str:
    """An adapter's version: the first hex digits of the hash of its files (weights and config; not the manifest,
    which records when it was written): the registry's version string (registry/store.py)."""
    from ..registry.store import version_of

    return version_of(adapter_dir)


class Server:
    """What the routes share: the system, the keys' digests, the bounded admission count, the metrics."""

    def __init__(self, system, *, api_keys: Sequence[str] = (), max_pending: int = 64, max_tokens: int | None = None,
                 canaries: dict | None = None, registry=None, rules=None, registry_router: str | None = "router",
                 keyring: KeyRing | None = None, privacy=None, max_body: int = 1 << 20, guard=None):
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, got {max_pending}")
        self.system = system
        self.keys = keyring if keyring is not None else KeyRing(api_keys)  # hashed, scoped, rate-limited (auth.py)
        self.max_body = max_body  # bytes of a request body; more is a 413
        from ..guard.serving import ServeGuard

        self.guard = ServeGuard.of(guard)  # prompt-injection checks (guard/serving.py); None: off
        if self.guard is not None:
            self.guard.install(system)  # flagged retrieved passages never enter a prompt
            self.guard.warm()
        self._users: collections.OrderedDict[str, str] = collections.OrderedDict()  # request id -> its user
        from .privacy import MemoryStore, UserData

        self.privacy = privacy if privacy is not None else UserData()  # every store of user data (privacy.py)
        self.privacy.register(MemoryStore("recent answers (request -> adapter, version, user)", self._forget))
        self.max_pending, self.pending, self.closing = max_pending, 0, False
        self.max_tokens = max_tokens or max(1, system.context // 2)  # the rest of the context is the prompt's
        self.metrics = Metrics()
        # a registry's canaries are loaded beside their stable versions, as NAME@VERSION (serve/deploy.py)
        self.canaries = dict(canaries or {})
        canary_keys = {c.key(n): n for n, c in self.canaries.items()}
        self.versions = {name: adapter_version(d) for name, d in system.adapter_dirs.items() if name not in canary_keys}
        self.canary_versions = {n: c.version for n, c in self.canaries.items()}
        self.stable_key: dict[str, str] = {}  # a promoted canary serves as its name's stable version
        self.registry, self.rules = registry, rules
        self.outcomes = Outcomes()
        self.held: set[str] = set()  # canaries whose analysis was inconclusive: a person decides
        self._recent: collections.OrderedDict[str, tuple[str, str]] = collections.OrderedDict()  # feedback
        # (name, version) -> the key it is loaded under in the system ("python", "python@3f2a9c1b7d4e")
        self.loaded: dict[tuple[str, str], str] = {}
        for key, d in system.adapter_dirs.items():
            name, at, version = key.partition("@")
            self.loaded[(name, version if at else self.versions[name])] = key
        self.refused: set[tuple[str, str]] = set()  # versions that failed their checks (refused once, in the log)
        # the registry's router name to follow (None: the router given at start stays), and the served version
        self.router_name = registry_router if registry is not None else None
        self.router_version = adapter_version(system.paths["router"]) if system.paths.get("router") else None
        self._sync_lock = threading.Lock()
        self.unload_after = 10.0  # seconds a version no alias names stays loaded (for requests assigned to it)
        self._unwanted: dict[tuple[str, str], float] = {}
        self.shadowing, self._shadow_lock = 0, threading.Lock()  # shadow copies running (they share max_pending)
        self.base_name = str(system.paths.get("base") or "base")
        self.created = int(time.time())
        self._batcher = SubmitBatcher(system)
        self.image_models: dict = {}  # name -> answer(image bytes, question) -> text: an app's vision model (images.py)

    # --- checks ---
    def authorise(self, header: str | None, scope: str = "generate"):
        """The request's key (None on an open server) when it has ``scope``; else a 401 or 403 (auth.py)."""
        return self.keys.authorise(header, scope)

    def model_choice(self, model: str) -> str:
        """The adapter ``model`` names ("auto", "base", a name, NAME@VERSION), or a 404."""
        name, at, version = model.partition("@")
        known = [AUTO, BASE, *self.versions]
        if name not in known or (at and name in (AUTO, BASE)):
            raise BadRequest(f"the model {model!r} does not exist; known: {', '.join(known)}", status=404,
                             param="model", code="model_not_found")
        if name == AUTO and self.system.router is None:
            raise BadRequest("model 'auto' needs a router and this server has none", status=404, param="model",
                             code="model_not_found")
        if at and version == self.canary_versions.get(name):
            return self.canaries[name].key(name)
        if at and version != self.versions[name]:
            raise BadRequest(f"adapter {name!r} has no version {version!r}; serving {name}@{self.versions[name]}",
                             status=404, param="model", code="model_not_found")
        return name

    def assign(self, req: ServeRequest, adapter: str, request_id: str) -> tuple[str, Route | None, str | None]:
        """(the adapter to run, the router's decision when it was asked here, the canary arm): an adapter with a
        canary sends ``percent`` of its users (``user``, else the conversation's first message) to the canary.
        An ``auto`` request is routed here first, when any adapter has a canary, so its arm can be chosen."""
        from ..resolve.engine import served_route

        if (not self.canaries and not self.stable_key) or "@" in adapter or adapter == BASE:
            return adapter, None, None
        route = None
        if adapter == AUTO:
            from ..chat import last_user_text

            decision = self.system.route([last_user_text(req.prompt)])[0]
            route = served_route(decision, {k.partition("@")[0] for k in self.system.adapters}, "top1", 2)
            adapter = route.adapter
        canary = self.canaries.get(adapter)
        if canary is None:
            return self.stable_key.get(adapter, adapter), route, None
        first = req.prompt if isinstance(req.prompt, str) else next(
            (m["content"] for m in req.prompt if m["role"] == "user"), "")
        arm = canary_arm(adapter, canary, req.user or first or request_id)
        if canary.shadow and arm == "canary":
            arm = "shadow"  # the user gets stable's answer; a copy goes to the canary (Server.shadow)
        self.metrics.canary.labels(adapter, canary.version if arm != "stable"
                                   else self.versions.get(adapter, "-"), arm).inc()
        return (canary.key(adapter) if arm == "canary" else self.stable_key.get(adapter, adapter)), route, arm

    def route_within(self, req: ServeRequest, allowed: set[str]) -> Route:
        """The router's decision for ``req`` among ``allowed`` adapters only: its pick when allowed, else the base
        (a key limited to some adapters: auth.py)."""
        from ..chat import last_user_text
        from ..resolve.engine import served_route

        decision = self.system.route([last_user_text(req.prompt)])[0]
        return served_route(decision, set(allowed), "top1", 2)

    def shadow(self, req: ServeRequest, name: str, request_id: str) -> None:
        """A copy of a request for ``name``'s shadow canary: answered in the background and judged (status,
        latency, support) under the canary's version; never shown to the user. Skipped when the server is full."""
        canary = self.canaries.get(name)
        with self._shadow_lock:
            if canary is None or self.pending + self.shadowing >= self.max_pending:
                return
            self.shadowing += 1
        key, version = canary.key(name), canary.version
        request = Request(req.prompt, adapter=key, sampling=req.sampling, fmt=req.fmt,
                          request_id=request_id + "-shadow")
        started = time.perf_counter()

        def done(fut: concurrent.futures.Future) -> None:
            ok = True
            try:
                stream = fut.result()
                c = stream.result()
                ok = c.finish_reason != "error"
                g = stream.grounding
                support = 1.0 if g is not None and g.sources and _fixed_answer(stream) is not None else None
                self.metrics.completion_tokens.labels(name, version).inc(c.completion_tokens)
            except Exception:  # noqa: BLE001  a failing canary is what the rules are for
                ok, support = False, None
            finally:
                with self._shadow_lock:
                    self.shadowing -= 1
            self.outcomes.answer(name, version, ok, time.perf_counter() - started, support)
            self.metrics.requests.labels("shadow", name, version, "200" if ok else "500").inc()
            self.metrics.latency.labels("shadow", name, version).observe(time.perf_counter() - started)

        def run(fut: concurrent.futures.Future) -> None:  # wait in a thread of its own: never in the event loop
            threading.Thread(target=done, args=(fut,), daemon=True, name="zephyra-shadow").start()

        self._batcher.put(request).add_done_callback(run)

    # --- the canary's lifecycle ---
    def remember(self, request_id: str, adapter: str, version: str, user: str | None = None) -> None:
        self._recent[request_id] = (adapter, version)
        if user:
            self._users[request_id] = user
        while len(self._recent) > 10_000:
            self._users.pop(self._recent.popitem(last=False)[0], None)

    def _forget(self, user: str) -> int:
        """Drop the recent answers given to ``user`` (the purge: privacy.py)."""
        mine = [rid for rid, u in list(self._users.items()) if u == user]
        for rid in mine:
            self._users.pop(rid, None)
            self._recent.pop(rid, None)
        return len(mine)

    def feedback(self, body) -> dict:
        if not isinstance(body, dict) or not isinstance(body.get("request_id"), str):
            raise BadRequest("feedback is {'request_id': ID, 'rating': 'up' | 'down'}", param="request_id")
        rating = body.get("rating")
        if rating not in ("up", "down", 1, -1) or isinstance(rating, bool):
            raise BadRequest(f"rating must be 'up' or 'down', got {rating!r}", param="rating")
        served = self._recent.get(body["request_id"])
        if served is None:
            raise BadRequest(f"no recent answer with request id {body['request_id']!r}", status=404,
                             param="request_id")
        up = rating in ("up", 1)
        comment, user = body.get("comment"), body.get("user") or self._users.get(body["request_id"])
        if comment is not None and (not isinstance(comment, str) or len(comment) > 2000):
            raise BadRequest("comment is a string of at most 2000 characters", param="comment")
        if user is not None and not isinstance(user, str):
            raise BadRequest("user is a string", param="user")
        self.outcomes.rating(*served, up)
        self.metrics.feedback.labels(*served, "up" if up else "down").inc()
        if self.privacy.feedback is not None:  # the comment scrubbed of PII on the way in (privacy.RecordLog)
            self.privacy.feedback.append({"user": user, "request_id": body["request_id"], "adapter": served[0],
                                          "version": served[1], "rating": "up" if up else "down",
                                          "comment": comment})
        return {"request_id": body["request_id"], "adapter": served[0], "version": served[1],
                "rating": "up" if up else "down"}

    def decide(self, name: str, verdict: str, why: str) -> None:
        """Carry out a rule's verdict on ``name``'s canary: in the registry (by "rule"), then in what is served."""
        with self._sync_lock:  # not while the registry is being synced
            self._decide(name, verdict, why)

    def _decide(self, name: str, verdict: str, why: str) -> None:
        canary = self.canaries.get(name)
        if canary is None:
            return
        if verdict == "rollback":
            self.registry.rollback(name, why=why, who="rule")
            self.canaries.pop(name)
        elif verdict == "promote":
            self.registry.promote(name, canary.version, why=why, who="rule")
            self.stable_key[name] = canary.key(name)
            self.versions[name] = canary.version
            self.canaries.pop(name)
        else:
            self.registry.note(name, "hold", self.versions.get(name), canary.version,
                               f"inconclusive, held for a person: {why}", who="rule")
            self.held.add(name)
        self.canary_versions = {n: c.version for n, c in self.canaries.items()}

    # --- the registry, live ---
    def sync_registry(self) -> list[str]:
        """Serve what the registry says now (a push, canary, promote or rollback made while this server runs): a
        version not loaded yet is loaded and checked before it takes traffic (its files against its content hash,
        its base, its shapes); one that fails is refused, once, in the registry's log, and the version before
        it keeps serving. Versions no alias names any more are unloaded once no request uses them. Returns what
        changed, a line each."""
        from ..registry.store import RegistryError

        if self.registry is None:
            return []
        changes: list[str] = []
        with self._sync_lock:
            changes += self._sync_router()
            for name in self.registry.names():
                try:
                    versions = self.registry.versions(name)
                    aliases = self.registry.aliases(name)
                except (RegistryError, OSError, ValueError):  # a file being replaced: the next check reads it
                    continue
                if not versions or versions[0]["kind"] != "adapter" or aliases.stable is None:
                    continue
                if self.versions.get(name) != aliases.stable:
                    key = self._load(name, aliases.stable)
                    if key is not None:
                        before = self.versions.get(name)
                        self.versions[name] = aliases.stable
                        if key == name:
                            self.stable_key.pop(name, None)
                        else:
                            self.stable_key[name] = key
                        changes.append(f"{name}: stable {before or '-'} -> {aliases.stable}")
                want = None
                if aliases.canary is not None and aliases.canary_percent > 0:
                    from .deploy import Canary

                    want = Canary(aliases.canary, aliases.canary_percent, aliases.shadow)
                have = self.canaries.get(name)
                if want == have:
                    continue
                if want is None:
                    self.canaries.pop(name, None)
                    self.held.discard(name)
                    changes.append(f"{name}: canary {have.version} ended")
                elif self._load(name, want.version) is not None:
                    self.canaries[name] = want
                    if have is None or have.version != want.version:
                        self.held.discard(name)
                    changes.append(f"{name}: canary {want.version} at {want.percent:g}%"
                                   + (" (shadow)" if want.shadow else ""))
            self.canary_versions = {n: c.version for n, c in self.canaries.items()}
            self._unload_unused()
        return changes

    def _sync_router(self) -> list[str]:
        """Route with the registry's stable router version once it is loaded and checked (its hash, its base)."""
        from ..errors import ArtifactError
        from ..registry.store import RegistryError
        from ..router.artifact import load_router
        from .deploy import registry_router

        if self.router_name is None:
            return []
        try:
            found = registry_router(self.registry, self.router_name)
        except (RegistryError, OSError, ValueError):
            return []
        if found is None or found[0] == self.router_version or (self.router_name, found[0]) in self.refused:
            return []
        version, path = found
        try:
            router = load_router(self._verified(self.router_name, version), model=self.system.model,
                                 tokenizer=self.system.tokenizer, index_root=self.system.retriever.index_root)
        except (ArtifactError, OSError, ValueError, RuntimeError, KeyError) as e:
            self._refuse(self.router_name, version, e, self.router_version)
            return []
        before, self.router_version = self.router_version, version
        self.system.set_router(router)
        return [f"{self.router_name}: stable {before or '-'} -> {version}"]

    def _verified(self, name: str, version: str) -> Path:
        """The registry's directory of ``name@version``, if its files still hash to its version (a changed file
        is named: Registry.verify)."""
        return self.registry.verify(name, version)

    def _refuse(self, name: str, version: str, error: Exception, serving: str | None) -> None:
        import sys

        self.refused.add((name, version))
        why = f"not served: {' '.join(str(error).split())[:300]}; {name}@{serving or '-'} serves on"
        self.registry.note(name, "refused", serving, version, why, who="server")
        print(f"registry: {name}@{version} {why}", file=sys.stderr)

    def _load(self, name: str, version: str) -> str | None:
        """The key ``name@version`` serves under, loading and checking it first; None if it is refused."""
        from ..errors import ArtifactError

        if (name, version) in self.loaded:
            return self.loaded[(name, version)]
        if (name, version) in self.refused:
            return None
        try:
            key = f"{name}@{version}"
            self.system.add_adapter(key, self._verified(name, version))
        except (ArtifactError, OSError, ValueError, RuntimeError, KeyError) as e:
            self._refuse(name, version, e, self.versions.get(name))
            return None
        self.loaded[(name, version)] = key
        return key

    def _unload_unused(self) -> None:
        """Unload the versions no alias has named for ``unload_after`` seconds, once no request uses them (a
        request assigned to one just before the switch still finds it)."""
        wanted = {(n, v) for n, v in self.versions.items()} | {(n, c.version) for n, c in self.canaries.items()}
        now = time.monotonic()
        for key in list(self._unwanted):
            if key in wanted:
                del self._unwanted[key]
        for (name, version), key in list(self.loaded.items()):
            if (name, version) in wanted:
                continue
            since = self._unwanted.setdefault((name, version), now)
            if now - since >= self.unload_after and self.system.remove_adapter(key):
                del self.loaded[(name, version)]
                del self._unwanted[(name, version)]

    def analysed(self) -> dict[str, tuple[str, str]]:
        return {n: (self.versions[n], c.version) for n, c in self.canaries.items() if n not in self.held}

    def check_length(self, req: ServeRequest) -> None:
        from ..chat import encode_prompt

        try:
            n = len(encode_prompt(self.system.tokenizer, req.prompt, req.fmt))
        except RequestError as e:
            raise BadRequest(str(e)) from None
        room = self.system.context - req.sampling.max_tokens
        if n > room:
            raise BadRequest(f"the prompt is {n} tokens; with max_tokens {req.sampling.max_tokens} the "
                             f"{self.system.context}-token context leaves room for {room}", param="messages",
                             code="context_length_exceeded")

    def model_list(self) -> list[dict]:
        rows = [{"id": BASE, "object": "model", "created": self.created, "owned_by": "zephyra", "parent": None,
                 "version": None, "domain": None}]
        if self.system.router is not None:
            rows.insert(0, {"id": AUTO, "object": "model", "created": self.created, "owned_by": "zephyra",
                            "parent": self.base_name, "version": self.router_version, "domain": "routed"})
        for name, version in self.versions.items():
            row = {"id": name, "object": "model", "created": self.created, "owned_by": "zephyra",
                   "parent": self.base_name, "version": version, "domain": name}
            if name in self.canaries:
                row["canary"] = {"version": self.canaries[name].version, "percent": self.canaries[name].percent}
            rows.append(row)
        rows += [{"id": name, "object": "model", "created": self.created, "owned_by": "zephyra",
                  "parent": self.base_name, "version": None, "domain": "vision"} for name in self.image_models]
        return rows

    # --- function calling ---
    def decide_tool(self, req: ServeRequest, adapter: str):
        """Call a tool or answer in text (``resolve.tools.decode_call``: constrained, so a call always fits its
        schema), scored on the local model with ``adapter`` ("auto": the base), a forward at a time between
        the engine's decoding steps. The client runs the tool; its result comes back as a ``tool`` message.
        The call threshold is the served adapter's calibrated one when it carries one (``tools-calibrate``),
        else ``DEFAULT_THRESHOLD``."""
        from ..chat import encode_chat
        from ..resolve.tools import (DEFAULT_THRESHOLD, decode_call, model_scorer, points_at_values, read_threshold,
                                     sequence_scorer)

        engine = self.system.engine
        if not hasattr(engine, "exclusive"):
            raise BadRequest("tools need a local model; this server generates upstream", param="tools")
        key = adapter if adapter in engine.adapters else BASE

        def score(ids: list[int]):
            with engine.exclusive(key) as model:
                return model_scorer(model)(ids)

        def seq_score(seqs):  # for an adapter that points at its arguments' spans (resolve.tools.points_at_values)
            with engine.exclusive(key) as model:
                return sequence_scorer(model)(seqs)

        adapter_dir = (getattr(self.system, "adapter_dirs", None) or {}).get(key)
        threshold = read_threshold(adapter_dir)
        ids = encode_chat(self.system.tokenizer, req.prompt)
        return key, len(ids), decode_call(score, self.system.tokenizer, ids, req.extra["tools"],
                                          req.extra["tool_choice"],
                                          DEFAULT_THRESHOLD if threshold is None else threshold,
                                          seq_score=seq_score if points_at_values(adapter_dir) else None,
                                          parser=self.tool_parser(adapter_dir))

    def tool_parser(self, adapter_dir):
        """The tool parser the adapter keeps (``retrieval.parser.adapter_parser``), loaded once per directory;
        None when it has none. It decides for the tools it was trained on; the model for any others."""
        if not adapter_dir:
            return None
        cache = self.__dict__.setdefault("_tool_parsers", {})
        if adapter_dir not in cache:
            from ..retrieval.parser import adapter_parser

            cache[adapter_dir] = adapter_parser(adapter_dir)
        return cache[adapter_dir]

    # --- one request ---
    async def submit(self, req: ServeRequest, adapter: str, request_id: str):
        request = Request(req.prompt, adapter=adapter, sampling=req.sampling, fmt=req.fmt, request_id=request_id)
        return await asyncio.wrap_future(self._batcher.put(request))

    def served(self, stream, adapter: str, decided: Route | None = None, arm: str | None = None
               ) -> tuple[Route, dict]:
        """(route, the response's ``zephyra`` object). ``decided``: the router's decision made before submitting
        (a canary assignment); ``arm``: "stable" or "canary" when the adapter has a canary."""
        g = stream.grounding
        route = stream.route or (g.route if g is not None and g.route is not None else None) \
            or Route(g.adapter if g is not None else adapter)
        key = route.adapter
        name, _, canary_version = key.partition("@")
        version = canary_version or self.versions.get(name)
        shown = decided if decided is not None and route.adapter != BASE else route
        route = Route(name, shown.confidence, shown.scores, route.weights)
        info = {"adapter": name, "version": version, "confidence": shown.confidence,
                "runner_up": shown.runner_up, "sources": list(g.sources) if g is not None else [],
                "note": g.note if g is not None else None}
        if arm is not None:
            info["canary"] = arm
        return route, info


class SubmitBatcher:
    """Routing and retrieval for the requests that arrived together, in one call: a worker thread takes every
    request queued since its last call and hands them to ``system.submit_many`` (one router pass, one search per
    index for the lot), so concurrent clients do not wait behind each other's MiniLM and BM25 calls. A batch that
    is refused (``submit_many`` checks every request first) is retried one by one, so one bad request fails
    alone."""

    def __init__(self, system):
        self.system = system
        self._queue: list[tuple[Request, concurrent.futures.Future]] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="zephyra-serve-submit", daemon=True)
        self._thread.start()

    def put(self, request: Request) -> concurrent.futures.Future:
        fut: concurrent.futures.Future = concurrent.futures.Future()
        with self._cond:
            self._queue.append((request, fut))
            self._cond.notify()
        return fut

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue)
                batch, self._queue = self._queue, []
            try:
                streams = self.system.submit_many([r for r, _ in batch])
            except Exception:  # noqa: BLE001  find which one: each alone
                for request, fut in batch:
                    try:
                        fut.set_result(self.system.submit(request))
                    except Exception as e:  # noqa: BLE001  the caller turns it into a response
                        fut.set_exception(e)
                continue
            for (_, fut), stream in zip(batch, streams):
                fut.set_result(stream)


def _tool_call_response(server: Server, req: ServeRequest, adapter: str, n_prompt: int, decision, rid: str):
    """A decided call in OpenAI's shape: ``message.tool_calls`` and ``finish_reason: "tool_calls"`` (streamed: one
    delta with the whole call, then the finish)."""
    version = server.versions.get(adapter) or "-"
    server.metrics.requests.labels("chat", adapter, version, "200").inc()
    n_tokens = len(server.system.tokenizer(decision.text, add_special_tokens=False)["input_ids"])
    usage = {"prompt_tokens": n_prompt, "completion_tokens": n_tokens, "total_tokens": n_prompt + n_tokens}
    headers = {"x-zephyra-adapter": adapter, "x-zephyra-version": version, "x-request-id": rid}
    head = {"id": "chatcmpl-" + rid, "created": int(time.time()), "model": adapter}
    info = {"adapter": adapter, "version": None if version == "-" else version,
            "tool_call_probability": decision.p_call}
    if not req.stream:
        message = {"role": "assistant", "content": None, "tool_calls": [decision.call]}
        return JSONResponse({**head, "object": "chat.completion", "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": "tool_calls"}],
            "usage": usage, "zephyra": info}, headers=headers)

    async def sse():
        chunk = {**head, "object": "chat.completion.chunk"}
        delta = {"role": "assistant", "content": None, "tool_calls": [{"index": 0, **decision.call}]}
        yield {"data": json.dumps({**chunk, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                                          "finish_reason": None}], "zephyra": info})}
        yield {"data": json.dumps({**chunk, "choices": [{"index": 0, "delta": {}, "logprobs": None,
                                                          "finish_reason": "tool_calls"}]})}
        if req.include_usage:
            yield {"data": json.dumps({**chunk, "choices": [], "usage": usage})}
        yield {"data": "[DONE]"}

    return EventSourceResponse(sse(), headers=headers, ping=15, send_timeout=SEND_TIMEOUT_S)


def _fixed_answer(stream) -> str | None:
    """A grounded answer that does not depend on the generation (it says it does not know, or it quotes the best
    passage: resolve/grounding.py), else None."""
    g = stream.grounding
    if g is not None and (g.abstain is not None or (g.sources and g.answer_mode == "quote")):
        return g.final("")[0]
    return None


def _finish(reason: str | None) -> str:
    return "length" if reason == "length" else "stop"


def create_app(system, *, api_keys: Sequence[str] = (), max_pending: int = 64, max_tokens: int | None = None,
               canaries: dict | None = None, registry=None, rules=None, alerts=None, reload_interval: float = 2.0,
               registry_router: str | None = "router", extensions: Sequence = (), keyring: KeyRing | None = None,
               privacy=None, max_body: int = 1 << 20, output_guard=None, guard=None):
    """The FastAPI application serving ``system`` (resolve/system.py). ``system.close()`` runs at shutdown.
    ``canaries``: {adapter: serve.deploy.Canary}, each loaded in ``system`` as NAME@VERSION beside the stable one;
    with the ``registry`` they came from and ``rules`` (serve.canary.RulesConfig), the canaries are analysed on an
    interval and promoted or rolled back. ``alerts`` (serve.alerts.AlertsConfig): alert rules checked on their
    interval, to a JSONL log and a webhook. With a ``registry``, every ``reload_interval`` seconds (0: never) what
    it says is served (``Server.sync_registry``): a push, canary, promote or rollback takes effect without a
    restart; its router ``registry_router`` (a name; None: keep the router given), when it holds one, too.
    ``extensions``: callables ``(app, server)`` that add an application's routes (the Shakespeare viewer,
    apps/shakespeare/viewer.py), so that serve imports no application. ``keyring`` (serve.auth.KeyRing: hashed keys,
    scopes, rate limits; default: ``api_keys`` with every scope), ``privacy`` (serve.privacy.UserData: the stores of
    user data, their retention, the purge), ``max_body``: bytes a request body may hold (more: 413).
    ``output_guard`` (guard.toxicity.ToxicityPolicy): a generated text it flags is withheld or masked, and the
    response's ``zephyra.output_flagged`` says so; streamed answers are then sent whole, once checked.
    ``guard`` ("off" | "on" | "strip" | guard.serving.ServeGuard): the user's messages checked for prompt injection
    before generation (flagged: a 400 ``prompt_flagged``, or with "strip" the base answers without retrieved text;
    logged without the text), and flagged retrieved passages dropped from prompts."""
    server = Server(system, api_keys=api_keys, max_pending=max_pending, max_tokens=max_tokens, canaries=canaries,
                    keyring=keyring, privacy=privacy, max_body=max_body, guard=guard,
                    registry=registry, rules=rules, registry_router=registry_router)
    controller = CanaryController(rules, server.outcomes, server.decide) if rules and registry else None

    alerter = None
    if alerts is not None and alerts.rules:
        from .alerts import Alerter

        log = alerts.log or (Path(registry.root) / "alerts.jsonl" if registry is not None else "alerts.jsonl")
        alerter = Alerter(alerts, server.outcomes, log)

    def sync() -> None:
        import sys

        for line in server.sync_registry():
            print(f"registry: {line}", file=sys.stderr)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        tasks = ([asyncio.create_task(_every(rules.interval, lambda: controller.step(server.analysed()),
                                             "canary analysis"))] if controller is not None else []) + \
            ([asyncio.create_task(_every(alerts.interval, alerter.step, "alert check"))] if alerter is not None else [])
        if registry is not None and reload_interval > 0:
            tasks.append(asyncio.create_task(_every(reload_interval, sync, "registry check")))
        server.privacy.start()  # the retention limit, when one is set (privacy.py)
        yield
        for task in tasks:
            task.cancel()
        server.closing = True
        await asyncio.get_running_loop().run_in_executor(None, system.close)

    app = FastAPI(title="Zephyra", version="0.1", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.server = server

    def refuse(e: BadRequest, endpoint: str, request_id: str | None = None) -> JSONResponse:
        server.metrics.requests.labels(endpoint, "-", "-", str(e.status)).inc()
        headers = dict(e.headers)
        if request_id:
            headers["x-request-id"] = request_id
        return JSONResponse(e.body(), status_code=e.status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc):  # unknown paths and methods: OpenAI's error shape too
        return JSONResponse(error_body(str(exc.detail)), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def internal_error(request, exc):
        return JSONResponse(error_body(f"internal error: {type(exc).__name__}: {exc}"[:300], "server_error"),
                            status_code=500)

    @app.get("/")
    async def page():
        """The chat page: one HTML file, no build step (serve/page.html)."""
        return HTMLResponse((Path(__file__).parent / "page.html").read_text(encoding="utf-8"))

    @app.get("/v1/registry")
    async def registry_view(request: HTTPRequest):
        try:
            server.authorise(request.headers.get("authorization"), "registry")
            if server.registry is None:
                raise BadRequest("this server was started without --registry", status=404)
        except BadRequest as e:
            return refuse(e, "registry")
        reg = server.registry
        return {"names": reg.list(), "log": reg.log()[-200:]}

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/ready")
    async def ready():
        if server.closing:
            return JSONResponse({"status": "shutting down"}, status_code=503)
        return {"status": "ready", "adapters": list(server.versions), "router": system.router is not None,
                "pending": server.pending, "max_pending": server.max_pending}

    @app.get("/metrics")
    async def metrics():
        return Response(server.metrics.render(), media_type=server.metrics.content_type)

    @app.post("/v1/feedback")
    async def feedback(request: HTTPRequest):
        """A rating of an answer, by its request id (the x-request-id header): thumbs up or down, read by the
        canary's rules."""
        try:
            api_key = server.authorise(request.headers.get("authorization"))
            server.keys.limit(api_key, request.client.host if request.client else None)
            return server.feedback(await _json_body(request, server.max_body))
        except BadRequest as e:
            return refuse(e, "feedback")

    @app.post("/v1/admin/purge")
    async def purge(request: HTTPRequest):
        """``{"user": ID}``: the user's conversations, feedback and recent answers removed from every store the
        server and its applications registered (serve/privacy.py); a key with the purge (admin) scope only."""
        from ..errors import UnsafeNameError

        try:
            api_key = server.authorise(request.headers.get("authorization"), "purge")
            server.keys.limit(api_key, request.client.host if request.client else None)
            body = await _json_body(request, server.max_body)
            if not isinstance(body, dict) or not isinstance(body.get("user"), str):
                raise BadRequest("the body is {'user': ID}", param="user")
            try:
                removed = await asyncio.get_running_loop().run_in_executor(None, server.privacy.purge, body["user"])
            except UnsafeNameError as e:
                raise BadRequest(str(e), param="user") from None
        except BadRequest as e:
            return refuse(e, "purge")
        return {"object": "purge", "user": body["user"], "removed": removed, "total": sum(removed.values())}

    @app.get("/v1/models")
    async def models(request: HTTPRequest):
        try:
            server.authorise(request.headers.get("authorization"))
        except BadRequest as e:
            return refuse(e, "models")
        return {"object": "list", "data": server.model_list()}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str, request: HTTPRequest):
        try:
            server.authorise(request.headers.get("authorization"))
            name = model_id if model_id in server.image_models else server.model_choice(model_id)
        except BadRequest as e:
            return refuse(e, "models")
        return next(m for m in server.model_list() if m["id"] == name)

    async def serve(request: HTTPRequest, endpoint: str):
        rid = request.headers.get("x-request-id") or f"req-{uuid.uuid4().hex[:16]}"
        try:
            api_key = server.authorise(request.headers.get("authorization"))
            server.keys.limit(api_key, request.client.host if request.client else None)  # 429 + Retry-After
            if server.closing:
                raise BadRequest("the server is shutting down", status=503, type="server_error",
                                 headers={"Retry-After": "5"})
            body = await _json_body(request, server.max_body)
            parse = chat_request if endpoint == "chat" else completion_request
            req = parse(body, server.max_tokens)
            server.keys.check_model(api_key, req.model)  # 403: an adapter outside the key's scope
            if endpoint == "chat" and wants_images(server, req):  # image_url parts, or a vision model (images.py)
                return await image_response(server, req, endpoint, rid)
            adapter = server.model_choice(req.model)
            server.check_length(req)
            if server.pending >= server.max_pending:
                raise BadRequest(f"{server.pending} requests are already in progress (the limit); retry shortly",
                                 status=429, type="rate_limit_error", code="rate_limit_exceeded",
                                 headers={"Retry-After": "1"})
        except BadRequest as e:
            return refuse(e, endpoint, rid)
        except RequestError as e:  # what the sampling settings or the chat encoder refuse
            return refuse(BadRequest(str(e)), endpoint, rid)
        checked = None
        if server.guard is not None:  # the injection guard (guard/serving.py): refused, or the base alone answers
            checked = await asyncio.get_running_loop().run_in_executor(None, server.guard.check, req.prompt, rid)
            if checked["flagged"] and server.guard.mode == "on":
                return refuse(BadRequest(f"the request was flagged as a prompt injection or jailbreak attempt (kind "
                                         f"{checked['kind']}, score {checked['score']:.2f}) and refused",
                                         param="messages", code="prompt_flagged"), endpoint, rid)
            if checked["flagged"]:
                adapter = BASE
        if req.extra.get("tools") and req.extra.get("tool_choice") != "none":
            try:
                key, n_prompt, decision = await asyncio.get_running_loop().run_in_executor(
                    None, server.decide_tool, req, adapter)
            except BadRequest as e:
                return refuse(e, endpoint, rid)
            except RequestError as e:
                return refuse(BadRequest(str(e)), endpoint, rid)
            if decision.call is not None:
                return _tool_call_response(server, req, key, n_prompt, decision, rid)
        server.pending += 1
        server.metrics.pending.set(server.pending)
        started = time.perf_counter()
        requested = adapter
        restricted = None  # a key limited to some adapters: "auto" routes among those only, else to the base
        try:
            allowed = server.keys.allowed(api_key, server.versions)
            if adapter == AUTO and allowed is not None:
                restricted = await asyncio.get_running_loop().run_in_executor(None, server.route_within, req,
                                                                              allowed)
                adapter = restricted.adapter
            adapter, decided, arm = (await asyncio.get_running_loop().run_in_executor(
                None, server.assign, req, adapter, rid)) if server.canaries or server.stable_key \
                else (adapter, None, None)
            stream = await server.submit(req, adapter, rid)
            if arm == "shadow":
                server.shadow(req, adapter.partition("@")[0], rid)
        except RequestError as e:
            _release(server)
            return refuse(BadRequest(str(e)), endpoint, rid)
        except BaseException:
            _release(server)
            raise
        fixed = _fixed_answer(stream)
        if fixed is not None:
            stream.cancel()  # the answer is known: free the row
        events = stream.__aiter__()
        first = None
        if fixed is None:
            try:
                first = await events.__anext__()  # the route of an in-model router is decided in the prefill
            except BaseException:
                stream.cancel()
                _release(server)
                raise
        route, info = server.served(stream, adapter, decided or restricted, arm)
        if checked is not None:
            info["guard"] = {**checked, "passages_dropped": getattr(stream.grounding, "dropped", 0)}
        version = info["version"] or "-"
        server.remember(rid, route.adapter, version, req.user)
        labels = (route.adapter, version)
        if requested == AUTO:
            server.metrics.routed.labels(route.adapter).inc()
            if route.adapter == BASE:
                server.metrics.abstained.inc()
        headers = {"x-zephyra-adapter": route.adapter, "x-zephyra-version": version, "x-request-id": rid}
        model_id = route.adapter if info["version"] is None else f"{route.adapter}@{info['version']}"
        created = int(time.time())
        kind = "chat.completion" if endpoint == "chat" else "text_completion"
        prefix = "chatcmpl-" if endpoint == "chat" else "cmpl-"

        def choice(text: str | None, finish: str | None, delta: bool, role: bool = False) -> dict:
            if endpoint == "chat":
                if delta:
                    d = {"role": "assistant"} if role else {}
                    if text is not None:
                        d["content"] = text
                    return {"index": 0, "delta": d, "logprobs": None, "finish_reason": finish}
                return {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                        "finish_reason": finish}
            return {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}

        def usage(completion_tokens: int) -> dict:
            return {"prompt_tokens": stream.prompt_tokens, "completion_tokens": completion_tokens,
                    "total_tokens": stream.prompt_tokens + completion_tokens}

        def account(status: int, completion_tokens: int, first_token_at: float | None):
            server.outcomes.answer(route.adapter, version, status < 500, time.perf_counter() - started,
                                   1.0 if fixed is not None and info["sources"] else None)
            m = server.metrics
            m.requests.labels(endpoint, *labels, str(status)).inc()
            m.prompt_tokens.labels(*labels).inc(stream.prompt_tokens)
            m.completion_tokens.labels(*labels).inc(completion_tokens)
            if first_token_at is not None:
                m.ttft.labels(*labels).observe(first_token_at - started)
            m.latency.labels(endpoint, *labels).observe(time.perf_counter() - started)

        def guarded(text: str) -> str:
            """The generated text as ``output_guard`` lets it out (withheld or masked when flagged)."""
            if output_guard is None or not text:
                return text
            text, flagged = output_guard.apply(text)
            if flagged:
                info["output_flagged"] = "toxicity"
            return text

        def tokens_of(text: str) -> int:
            return len(system.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else 0

        async def generated():
            """(text piece, finish_reason, now) for each event, the first one included."""
            ev = first
            while ev is not None:
                yield ev
                if ev.finish_reason is not None:
                    return
                ev = await events.__anext__()

        if not req.stream:
            try:
                if fixed is not None:
                    text, finish, n_tokens, first_at = fixed, "stop", tokens_of(fixed), time.perf_counter()
                else:
                    watcher = asyncio.create_task(_watch_disconnect(request, stream))
                    try:
                        async for _ in generated():
                            pass
                    finally:
                        watcher.cancel()
                    c = stream.completion
                    if c.finish_reason == "error":  # a bug here (500), or an upstream that failed (502)
                        status = 502 if (c.error or "").startswith("upstream") else 500
                        account(status, c.completion_tokens, None)
                        return JSONResponse(error_body(f"generation failed: {c.error}"[:400], "server_error"),
                                            status_code=status, headers=headers)
                    g = stream.grounding
                    text = guarded(g.final(c.text)[0] if g is not None and g.sources else c.text)
                    finish, n_tokens = _finish(c.finish_reason), c.completion_tokens
                    first_at = started + c.first_token_s if c.first_token_s is not None else None
                account(200, n_tokens, first_at)
                body = {"id": prefix + rid, "object": kind, "created": created, "model": model_id,
                        "choices": [choice(text, finish, delta=False)], "usage": usage(n_tokens), "zephyra": info}
                return JSONResponse(body, headers=headers)
            finally:
                _release(server)

        async def sse():
            n_tokens, first_at, last_at = 0, None, None
            status = 200
            try:
                head = {"id": prefix + rid, "object": kind + (".chunk" if endpoint == "chat" else ""),
                        "created": created, "model": model_id}
                yield {"data": json.dumps({**head, "choices": [choice("" if endpoint == "chat" else None, None,
                                                                       True, role=True)], "zephyra": info})}
                g = stream.grounding
                buffered = (g is not None and bool(g.sources) or output_guard is not None) and fixed is None  # cited
                # / generate / checked by the output guard: the final text only
                if fixed is not None:
                    pieces = [w + " " for w in fixed.split(" ")[:-1]] + [fixed.split(" ")[-1]]
                    first_at = time.perf_counter()
                    for piece in pieces:
                        yield {"data": json.dumps({**head, "choices": [choice(piece, None, True)]})}
                    n_tokens, finish = tokens_of(fixed), "stop"
                else:
                    finish = "stop"
                    async for ev in generated():
                        now = time.perf_counter()
                        if ev.tokens:
                            if first_at is None:
                                first_at = now
                            elif last_at is not None:
                                server.metrics.inter_token.labels(*labels).observe(now - last_at)
                            last_at = now
                        if ev.text and not buffered:
                            yield {"data": json.dumps({**head, "choices": [choice(ev.text, None, True)]})}
                        if ev.finish_reason is not None:
                            finish = _finish(ev.finish_reason)
                    c = stream.completion
                    if c is not None and c.finish_reason == "error":
                        status = 502 if (c.error or "").startswith("upstream") else 500
                        yield {"data": json.dumps(error_body(f"generation failed: {c.error}", "server_error"))}
                        return
                    n_tokens = c.completion_tokens if c is not None else 0
                    if buffered and c is not None:
                        final = guarded(g.final(c.text)[0] if g is not None and g.sources else c.text)
                        yield {"data": json.dumps({**head, "choices": [choice(final, None, True)],
                                                   **({"zephyra": info} if "output_flagged" in info else {})})}
                yield {"data": json.dumps({**head, "choices": [choice(None, finish, True)]})}
                if req.include_usage:
                    yield {"data": json.dumps({**head, "choices": [], "usage": usage(n_tokens)})}
                yield {"data": "[DONE]"}
            except asyncio.CancelledError:  # the client went away
                status = 499
                raise
            finally:
                stream.cancel()
                account(status, n_tokens, first_at)
                _release(server)

        return EventSourceResponse(sse(), headers=headers, ping=15, send_timeout=SEND_TIMEOUT_S)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: HTTPRequest):
        return await serve(request, "chat")

    @app.post("/v1/completions")
    async def completions(request: HTTPRequest):
        return await serve(request, "completions")

    for extend in extensions:
        extend(app, server)
    return app


async def _json_body(request, limit: int | None = None):
    """The body as JSON; more than ``limit`` bytes (declared or sent) is a 413, read no further."""
    if limit is not None:
        declared = request.headers.get("content-length", "")
        too_large = BadRequest(f"the request body is larger than {limit} bytes (the server's limit)", status=413,
                               code="request_too_large")
        if declared.isdigit() and int(declared) > limit:
            raise too_large
        chunks, n = [], 0
        async for chunk in request.stream():
            n += len(chunk)
            if n > limit:
                raise too_large
            chunks.append(chunk)
        raw = b"".join(chunks)
    else:
        raw = await request.body()
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the request body is not valid JSON") from None


async def _every(seconds: float, step, what: str) -> None:
    """Run ``step`` in a worker thread every ``seconds``; a failure is said on stderr and the loop goes on (the
    canary's analysis and the alert checks must never stop serving)."""
    import sys

    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(seconds)
        try:
            await loop.run_in_executor(None, step)
        except Exception as e:  # noqa: BLE001
            print(f"{what} failed: {type(e).__name__}: {e}", file=sys.stderr)


def _release(server: Server) -> None:
    server.pending -= 1
    server.metrics.pending.set(server.pending)


async def _watch_disconnect(request, stream, every: float = 0.25) -> None:
    """Cancel ``stream`` when the client of a non-streaming request disconnects."""
    while not stream.done:
        if await request.is_disconnected():
            stream.cancel()
            return
        await asyncio.sleep(every)


@contextlib.contextmanager
def serve_in_thread(app, host: str = "127.0.0.1", port: int = 0, start_timeout: float = 60.0, **config):
    """Run ``app`` with uvicorn in a daemon thread (port 0: a free one): yields its base URL; stops it after.
    What the benches and the tests use to drive a real server on loopback."""
    import socket

    import uvicorn

    if port == 0:
        with socket.socket() as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=config.pop("log_level", "warning"),
                                           **config))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"the server on {host}:{port} did not start")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
