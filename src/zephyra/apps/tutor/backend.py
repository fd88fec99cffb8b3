"""The Socratic tutor's backend in the server: ``zephyra serve --tutor runs/tutor`` adds the tutor's routes,
behind the server's keys, on the server's own system (the math adapter joins it as ``tutor/math``).

    zephyra serve --tutor runs/tutor --api-key sk-local

    POST /tutor/chat          {"message", "subject"?, "session"?, "image_id"?, "stream"?, "user"?}: the turn as SSE
                              events ``context`` (the passages), ``delta`` (the turn's text in pieces), ``done`` (the
                              whole JSON: text, subject, adapter, sources, tool_calls, session); "stream": false: one
                              JSON. A session keeps the conversation: a learner's reply to a math problem is checked
                              against its steps (socratic.check) and the next turn made from the grounded prompt
    POST /tutor/upload_image  an image (multipart form or raw bytes): {"image_id", "bytes", "vision"} (vision: whether
                              this server answers image questions); not an image 400, too large 413
    GET  /tutor/context?session=ID   what the last turn retrieved and why: query, subject, reason, scores

The turn is made whole before any of it is sent: the answer guard (socratic.guard) must see all of it, so the
``delta`` events replay the guarded text in pieces. Requests are logged with ids, subject and lengths, never the
learner's text. A session with a ``user`` is removed by the server's purge (POST /v1/admin/purge). Serve
imports no application (tests/core/test_architecture.py): ``serve_tutor`` returns what
``create_app(..., extensions=[...])`` calls with the app and the server.
"""

# no ``from __future__ import annotations``: FastAPI reads the routes' annotations as objects
import collections
import functools
import json
import logging
import os
import re
import secrets
import threading
import time
from pathlib import Path

from ...errors import DataError, ZephyraError, one_line

log = logging.getLogger("zephyra.tutor")
MAX_SESSIONS = 1000  # conversations kept in memory; the least recently used goes first
MAX_SAID = 20  # messages kept a session (the prompt uses the last exchanges only)
MAX_IMAGES = 32  # uploaded images kept; the oldest goes first
MAX_MESSAGE = 4000  # characters
ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def serve_tutor(system, root: str | os.PathLike = "runs/tutor"):
    """The tutor on ``system`` (its adapters under ``root/adapters`` added to it, the vision artifact at
    ``root/vision`` loaded when there); returns the extension for ``create_app``."""
    from .tutor import Tutor

    root = Path(root)
    if not root.is_dir():
        raise DataError(f"--tutor {root}: no such directory (zephyra tutor data / build write runs/tutor)")
    vision = None
    if (root / "vision" / "manifest.json").is_file():  # before the engine wraps the base's layers (its fingerprint)
        from .vision import VisionAnswerer

        vision = VisionAnswerer.load(root / "vision", (system.model, system.tokenizer))
    return functools.partial(add_routes, backend=Backend(Tutor.from_system(system, root), vision))


# --------------------------------------------------------------------------------------------------------------
# sessions and turns
# --------------------------------------------------------------------------------------------------------------

# a learner's message that asks something new (not a reply to the session's question: "Is it a comet?")
_NEW_QUESTION = re.compile(r"^\W*(?:what|who|whom|whose|which|where|when|why|how|define|explain|describe)\b", re.I)


def new_question(message: str) -> bool:
    return bool(_NEW_QUESTION.match(message)) and message.rstrip().endswith("?")


class Session:
    def __init__(self, sid: str):
        self.id, self.lock = sid, threading.Lock()
        self.task, self.step, self.solved = None, 0, False  # the problem or passage question being worked through
        self.subject: str | None = None
        self.user: str | None = None  # whose session it is (the request's "user"): the purge removes it
        self.said: list[tuple[str, str]] = []
        self.context: dict | None = None  # what the last turn retrieved and why


class Backend:
    """The tutor, its sessions (in memory, bounded) and the uploaded images."""

    def __init__(self, tutor, vision=None):
        self.tutor, self.vision = tutor, vision
        self.sessions: collections.OrderedDict[str, Session] = collections.OrderedDict()
        self.images: collections.OrderedDict[str, bytes] = collections.OrderedDict()
        self._lock = threading.Lock()

    def session(self, sid: str | None, create: bool = True) -> Session | None:
        with self._lock:
            if sid is None:
                sid = secrets.token_hex(8)
            s = self.sessions.get(sid)
            if s is None and create:
                s = self.sessions[sid] = Session(sid)
                while len(self.sessions) > MAX_SESSIONS:
                    self.sessions.popitem(last=False)
            if s is not None:
                self.sessions.move_to_end(sid)
            return s

    def forget(self, user: str) -> int:
        """Drop ``user``'s sessions (the purge: serve/privacy.py); how many."""
        with self._lock:
            mine = [sid for sid, s in self.sessions.items() if s.user == user]
            for sid in mine:
                del self.sessions[sid]
        return len(mine)

    def add_image(self, data: bytes) -> str:
        from .vision import load_image

        load_image(data)  # not an image, too many pixels: a one-line DataError
        iid = "img-" + secrets.token_hex(8)
        with self._lock:
            self.images[iid] = data
            while len(self.images) > MAX_IMAGES:
                self.images.popitem(last=False)
        return iid

    def turn(self, s: Session, message: str, subject: str | None, image_id: str | None) -> dict:
        """One tutor turn in session ``s`` (its lock held by the caller)."""
        if image_id is not None:
            return self._vision_turn(s, message, subject, image_id)
        from .passages import mask, passage_task
        from .problems import parse_problem, says_answer
        from .socratic import task_of

        fresh = parse_problem(message)
        calls, lead = [], ""  # tools for a fresh message (tutor.socratic_tools), not for a reply to a task
        if (s.task is not None and not s.solved and fresh is None and subject in (None, s.subject)
                and not (s.task.label != "Problem" and new_question(message))):
            status, s.step = s.task.check(s.step, message)  # the learner's reply, against the task's steps
            s.solved = status == "solved"
            subject, what = s.subject, ("problem" if s.task.label == "Problem" else "question")
            query, why = s.task.question, f"the session's {what} (step {s.step + 1}, {status})"
            _, sources = self.tutor.retrieved(query, subject)
        else:
            why = "the subject given" if subject else "the subject picked (arithmetic, else the best index)"
            subject, sources = self.tutor.retrieved(message, subject)
            calls, lead = self.tutor.tool_step(message) if hasattr(self.tutor, "tool_step") else ([], "")
            query, status = message, "none"
            problem = fresh if subject == "math" else None
            s.task, s.step, s.solved, s.said = (task_of(problem) if problem else None), 0, False, []
            if s.task is None and subject != "math" and subject in getattr(self.tutor, "adapters", {}) and sources:
                s.task = passage_task(message, sources[0]["text"])  # science, reading: the top passage's task
        if s.task is not None and s.task.label == "Problem":
            sources = [x for x in sources if not says_answer(s.task.problem, x["text"])]
        elif s.task is not None:  # the passages show the answer's words as gaps, as the hints do
            sources = [{**x, "text": mask(x["text"], s.task.keys)} for x in sources]
        s.said.append(("Learner", message))
        if s.task is not None:
            text, adapter = self.tutor.task_turn(subject, s.task, s.step, status, s.said)
        else:
            text, adapter = self.tutor.rules_turn(subject, sources)
        text = f"{lead} {text}" if lead else text
        s.said = (s.said + [("Tutor", text)])[-MAX_SAID:]
        s.subject = subject
        s.context = {"session": s.id, "query": query, "subject": subject, "reason": why, "check": status,
                     "step": s.step if s.task is not None else None,
                     "scores": [{"id": x["id"], "score": x["score"]} for x in sources], "tool_calls": calls}
        return {"text": text, "subject": subject, "adapter": adapter, "sources": sources, "tool_calls": calls}

    def see(self, data: bytes, question: str) -> str:
        """The vision model's answer to ``question`` about the image ``data``: on the plain base, between two of
        the engine's decoding steps (also ``tutor/vision`` of /v1/chat/completions: serve/images.py)."""
        with self.tutor.system.engine.exclusive(None):
            return self.vision.answer(data, question)

    def _vision_turn(self, s: Session, message: str, subject: str | None, image_id: str) -> dict:
        from ...serve.schema import BadRequest
        from .subjects import check_subject

        subject = check_subject(subject) if subject else None
        with self._lock:
            data = self.images.get(image_id)
        if data is None:
            raise BadRequest(f"no image {image_id!r} (upload it first: POST /tutor/upload_image)", status=404,
                             param="image_id")
        if self.vision is None:
            raise BadRequest("this server has no vision artifact (zephyra tutor vision writes runs/tutor/vision)",
                             param="image_id")
        text = self.see(data, message)
        s.said = (s.said + [("Learner", message), ("Tutor", text)])[-MAX_SAID:]
        s.context = {"session": s.id, "query": message, "subject": subject, "reason": "an image question: the "
                     "vision path", "image_id": image_id, "check": None, "step": None, "scores": []}
        return {"text": text, "subject": subject, "adapter": "vision", "sources": [], "tool_calls": []}


def _pieces(text: str) -> list[str]:
    words = text.split(" ")
    return [w + " " for w in words[:-1]] + [words[-1]]


def _multipart_file(body: bytes, content_type: str) -> bytes:
    """The first file part (else the first part) of a multipart/form-data body (the stdlib's MIME parser:
    python-multipart is not a dependency)."""
    from email import policy
    from email.parser import BytesParser

    msg = BytesParser(policy=policy.HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    parts = [p for p in msg.iter_parts()] if msg.is_multipart() else []
    if not parts:
        raise DataError("the multipart body holds no part")
    part = next((p for p in parts if p.get_filename()), parts[0])
    return part.get_payload(decode=True) or b""


# --------------------------------------------------------------------------------------------------------------
# the routes
# --------------------------------------------------------------------------------------------------------------

def add_routes(app, server, *, backend: Backend) -> Backend:
    """The tutor's routes on ``app`` (serve/app.py's FastAPI app) over ``server``."""
    import asyncio

    from fastapi import Request as HTTPRequest
    from fastapi.responses import JSONResponse
    from sse_starlette import EventSourceResponse

    from ...serve.schema import BadRequest
    from .vision import MAX_BYTES

    app.state.tutor = backend
    if backend.vision is not None and hasattr(server, "image_models"):  # images in /v1/chat/completions
        server.image_models["tutor/vision"] = backend.see
    if getattr(server, "privacy", None) is not None:  # the sessions hold the learners' text: purged per user
        from ...serve.privacy import MemoryStore

        server.privacy.register(MemoryStore("tutor sessions", backend.forget))

    def refuse(e: BadRequest, what: str, started: float, **fields) -> JSONResponse:
        _log(what, e.status, started, **fields)
        return JSONResponse(e.body(), status_code=e.status, headers=dict(e.headers))

    def _log(what: str, status: int, started: float, **fields) -> None:
        extra = " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
        log.info("tutor %s %d %.0fms %s", what, status, 1000 * (time.perf_counter() - started), extra)

    def fields_of(body) -> tuple[str, str | None, str | None, str | None, bool]:
        if not isinstance(body, dict):
            raise BadRequest("the request body must be a JSON object")
        message, subject, sid, image_id = (body.get(k) for k in ("message", "subject", "session", "image_id"))
        if not isinstance(message, str) or not message.strip():
            raise BadRequest("message must be a non-empty string", param="message")
        if len(message) > MAX_MESSAGE:
            raise BadRequest(f"message is {len(message)} characters, at most {MAX_MESSAGE}", param="message")
        for key, value in (("subject", subject), ("session", sid), ("image_id", image_id)):
            if value is not None and not isinstance(value, str):
                raise BadRequest(f"{key} must be a string", param=key)
        if sid is not None and not ID.fullmatch(sid):
            raise BadRequest("session must be letters, digits, '_', '.', '-' (at most 100)", param="session")
        user = body.get("user")
        if user is not None and not (isinstance(user, str) and ID.fullmatch(user)):
            raise BadRequest("user must be letters, digits, '_', '.', '-' (at most 100)", param="user")
        stream = body.get("stream", True)
        if not isinstance(stream, bool):
            raise BadRequest("stream must be true or false", param="stream")
        return message, subject, sid, image_id, stream

    @app.post("/tutor/chat")
    async def chat(request: HTTPRequest):
        started, sid, subject, n = time.perf_counter(), None, None, None
        try:
            server.authorise(request.headers.get("authorization"))
            try:
                body = json.loads(await request.body())
            except (ValueError, UnicodeDecodeError):
                raise BadRequest("the request body is not valid JSON") from None
            message, subject, sid, image_id, stream = fields_of(body)
            n = len(message)
            s = backend.session(sid)
            sid = s.id
            if body.get("user"):
                s.user = body["user"]

            def work():
                with s.lock:  # one turn at a time in a session
                    return backend.turn(s, message, subject, image_id), dict(s.context or {})

            try:
                out, context = await asyncio.get_running_loop().run_in_executor(None, work)
            except ZephyraError as e:
                raise BadRequest(one_line(e)[:300]) from None
        except BadRequest as e:
            return refuse(e, "chat", started, session=sid, subject=subject, chars=n)
        out = {**out, "session": sid}
        _log("chat", 200, started, session=sid, subject=out["subject"], adapter=out["adapter"], chars=n,
             reply_chars=len(out["text"]), sources=len(out["sources"]))
        headers = {"x-zephyra-session": sid}
        if not stream:
            return JSONResponse(out, headers=headers)

        async def sse():
            yield {"event": "context", "data": json.dumps({"session": sid, "query": context.get("query"),
                                                           "subject": out["subject"], "sources": out["sources"]})}
            for piece in _pieces(out["text"]):
                yield {"event": "delta", "data": json.dumps({"text": piece})}
            yield {"event": "done", "data": json.dumps(out)}

        return EventSourceResponse(sse(), headers=headers, ping=15)

    @app.post("/tutor/upload_image")
    async def upload_image(request: HTTPRequest):
        started = time.perf_counter()
        try:
            server.authorise(request.headers.get("authorization"))
            declared = request.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > MAX_BYTES + 64 * 1024:  # + the form's framing
                raise BadRequest(f"{declared} bytes is too large (an image of at most {MAX_BYTES})", status=413)
            raw = await request.body()
            ctype = request.headers.get("content-type", "")
            try:
                data = _multipart_file(raw, ctype) if ctype.startswith("multipart/") else raw
                if len(data) > MAX_BYTES:
                    raise BadRequest(f"{len(data)} bytes is too large (an image of at most {MAX_BYTES})", status=413)
                iid = await asyncio.get_running_loop().run_in_executor(None, backend.add_image, data)
            except ZephyraError as e:
                raise BadRequest(one_line(e)[:300], param="image") from None
        except BadRequest as e:
            return refuse(e, "upload_image", started)
        _log("upload_image", 200, started, image_id=iid, bytes=len(data))
        return JSONResponse({"image_id": iid, "bytes": len(data), "vision": backend.vision is not None})

    @app.get("/tutor/context")
    async def context(request: HTTPRequest, session: str | None = None):
        started = time.perf_counter()
        try:
            server.authorise(request.headers.get("authorization"))
            if not session:
                raise BadRequest("pass ?session=ID (the id /tutor/chat returned)", param="session")
            s = backend.session(session, create=False)
            if s is None or s.context is None:
                raise BadRequest(f"no session {session!r} with a turn (sessions are kept in memory, the last "
                                 f"{MAX_SESSIONS})", status=404, param="session")
        except BadRequest as e:
            return refuse(e, "context", started, session=session)
        _log("context", 200, started, session=session)
        return JSONResponse(s.context)

    return backend
