"""The conversation viewer in the server: the character adapters served beside the domain adapters as
``shakespeare/<slug>`` (OpenAI's ``model``), a page at ``/shakespeare`` (viewer.html, one file, no build step) and a
small JSON API, behind the server's keys, to list, read and start conversations.

    zephyra serve --characters runs/shakespeare/adapters     # then open http://127.0.0.1:8000/shakespeare

    GET  /v1/shakespeare/characters          the characters served: slug, name, model id, version
    GET  /v1/shakespeare/conversations       the transcripts under --conversations: id, characters, turns, state
    GET  /v1/shakespeare/conversations/ID    one: its settings line and its turns (as written so far)
    POST /v1/shakespeare/conversations       {"characters": [...], "turns": N, "scene", "seed", "temperature",
                                             "max_tokens", "user"}: starts one in a thread of the server, returns
                                             its id; the scene is scrubbed of PII, the user recorded as its owner
                                             (owners.jsonl: zephyra privacy purge, POST /v1/admin/purge)

A conversation runs on the server's own system (the engine that answers the API's requests; its turns join their
batches) with per-turn scores (fidelity.AttributionScorer over every character, as ``zephyra converse`` scores),
and its transcript is written under the conversations directory as it goes, so the page polls the file. Serve
imports no application (tests/core/test_architecture.py): ``serve_characters`` returns what ``create_app(...,
extensions=[...])`` calls with the app and the server.
"""

# no ``from __future__ import annotations``: FastAPI reads the routes' annotations (``HTTPRequest``, imported
# inside ``add_routes`` so that the command line does not load FastAPI) as objects
import functools
import json
import os
import re
import secrets
import threading
import time
from pathlib import Path

from ...errors import DataError, ZephyraError, one_line
from .characters import CHARACTERS, check_characters, display

PREFIX = "shakespeare/"  # a character's model id: shakespeare/hamlet (a plain "hamlet" stays a domain adapter's)
CONVERSATIONS = Path("runs/shakespeare/conversations")
MAX_TURNS = 40
MAX_RUNNING = 4  # conversations running at once; one more is a 429
MAX_SCENE = 300  # characters
WRITING = 60.0  # seconds: an unfinished transcript written to this recently is running (in another process)
ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")  # a transcript's file name without .jsonl: no path in it
FIELDS = ("characters", "turns", "scene", "seed", "temperature", "max_tokens", "user")  # user: whose (the purge)


def find_characters(root: str | os.PathLike) -> dict[str, Path]:
    """{slug: adapter dir} of every character adapter under ``root`` (a directory named as a known character,
    with adapter_config.json: what ``zephyra shakespeare build`` writes), in CHARACTERS' order."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"--characters {root}: no such directory (zephyra shakespeare build writes "
                        "runs/shakespeare/adapters)")
    found = {s: root / s for s in CHARACTERS if (root / s / "adapter_config.json").is_file()}
    if not found:
        raise DataError(f"no character adapter under {root} (a directory named as a character, e.g. hamlet, with "
                        "adapter_config.json); train them: zephyra shakespeare build")
    return found


def serve_characters(system, characters: str | os.PathLike, conversations: str | os.PathLike = CONVERSATIONS):
    """Load every character adapter under ``characters`` into ``system`` as ``shakespeare/<slug>`` (checked as
    any adapter loaded while serving: its base, its shapes); returns the extension for ``create_app``."""
    names = {}
    for slug, path in find_characters(characters).items():
        system.add_adapter(PREFIX + slug, path)
        names[slug] = PREFIX + slug
    return functools.partial(add_routes, names=names, conversations=Path(conversations))


# --------------------------------------------------------------------------------------------------------------
# transcripts on disk
# --------------------------------------------------------------------------------------------------------------

def read_transcript(path: Path) -> tuple[dict, list[dict]]:
    """(settings, turns) of a transcript; a line being written (the last, not yet whole) is skipped."""
    settings, turns = {}, []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if not isinstance(record, dict):
                continue
            if record.get("kind") == "settings" and not settings:
                settings = record
            elif record.get("kind") == "turn":
                turns.append(record)
    return settings, turns


class Viewer:
    """The conversations the server runs (threads), and the transcripts of its directory."""

    def __init__(self, server, names: dict[str, str], root: Path):
        self.server, self.system, self.names, self.root = server, server.system, names, root
        self.running: dict[str, threading.Thread] = {}
        self.errors: dict[str, str] = {}  # id -> why it stopped early
        self._lock = threading.Lock()
        self._scorer, self._scorer_lock = None, threading.Lock()
        self._warming, self._warm_lock = False, threading.Lock()
        from ...serve.privacy import TranscriptDir

        self.store = TranscriptDir(root, f"conversations {root}")  # purged per user, kept as the retention says

    def path(self, cid: str) -> Path:
        """The transcript of id ``cid``, or a 404: only a plain file name of the directory (no path tricks)."""
        from ...serve.schema import BadRequest

        from ...errors import UnsafeNameError
        from ...io import safe_name

        try:
            safe_name(cid, "a conversation id")
        except UnsafeNameError as e:
            raise BadRequest(str(e), status=404, param="id", code="conversation_not_found") from None
        path = self.root / f"{cid}.jsonl"
        if not ID.fullmatch(cid) or not self._inside(path):
            raise BadRequest(f"no conversation {cid!r}", status=404, param="id", code="conversation_not_found")
        return path

    def _inside(self, path: Path) -> bool:
        """A file of the directory itself (a link out of it is not)."""
        return path.is_file() and path.resolve().parent == self.root.resolve()

    def state(self, cid: str, settings: dict, made: int) -> str:
        """running (here, or written to in the last WRITING seconds: ``zephyra converse --log`` into the same
        directory), finished (every turn written) or stopped (it ended early)."""
        if cid in self.running:
            return "running"
        if made >= settings.get("turns", 0) > 0:
            return "finished"
        recent = time.time() - (self.root / f"{cid}.jsonl").stat().st_mtime < WRITING
        return "running" if recent and cid not in self.errors else "stopped"

    def summary(self, cid: str, settings: dict, turns: list[dict]) -> dict:
        return {"id": cid, "characters": settings.get("characters", []), "turns": settings.get("turns"),
                "made": len(turns), "scene": settings.get("scene"), "started": settings.get("started"),
                "state": self.state(cid, settings, len(turns)), "error": self.errors.get(cid)}

    def list(self) -> list[dict]:
        rows = []
        files = sorted(self.root.glob("*.jsonl"), key=lambda p: p.stat().st_mtime, reverse=True) \
            if self.root.is_dir() else []
        for path in files:
            if ID.fullmatch(path.stem) and self._inside(path):
                rows.append(self.summary(path.stem, *read_transcript(path)))
        return rows

    def get(self, cid: str) -> dict:
        settings, turns = read_transcript(self.path(cid))
        return {**self.summary(cid, settings, turns), "settings": settings, "data": turns}

    # --- starting one ---
    def check(self, body) -> dict:
        """The settings of a new conversation from a request's body, or a one-line 400."""
        from ...serve.schema import BadRequest

        if not isinstance(body, dict):
            raise BadRequest("the body is a JSON object: {'characters': [...], 'turns': N, 'scene': ...}")
        unknown = sorted(set(body) - set(FIELDS))
        if unknown:
            raise BadRequest(f"unknown field {unknown[0]!r}; known: {', '.join(FIELDS)}", param=unknown[0])
        chars = body.get("characters")
        if not isinstance(chars, list) or not all(isinstance(c, str) for c in chars):
            raise BadRequest("characters is a list of two to four names, e.g. ['hamlet', 'ophelia']",
                             param="characters")
        try:
            slugs = check_characters(chars)
        except DataError as e:
            raise BadRequest(str(e), param="characters") from None
        if not 2 <= len(slugs) <= 4:
            raise BadRequest(f"a conversation has two to four characters, got {len(slugs)}", param="characters")
        unserved = [s for s in slugs if s not in self.names]
        if unserved:
            raise BadRequest(f"this server serves no adapter for {unserved[0]!r}; it serves: "
                             f"{', '.join(self.names)}", param="characters")
        cap = self.server.max_tokens
        out = {"slugs": slugs,
               "turns": _number(body, "turns", 6, 1, MAX_TURNS, int),
               "max_tokens": _number(body, "max_tokens", min(48, cap), 1, cap, int),
               "temperature": _number(body, "temperature", 0.8, 0.0, 2.0, float),
               "seed": _number(body, "seed", None, 0, 2**31 - 1, int)}
        if out["seed"] is None:
            out["seed"] = secrets.randbelow(2**31)  # the transcript records it: the conversation can be rerun
        scene = body.get("scene")
        if scene is not None and not isinstance(scene, str):
            raise BadRequest("scene is a string (the setting the first speaker answers)", param="scene")
        from ...serve.privacy import check_user, scrub

        scene = scrub(" ".join((scene or "").split()))  # the transcript keeps no email, phone, address, ... (PII)
        user = body.get("user")
        if user is not None:
            try:
                out["user"] = check_user(user)
            except ZephyraError as e:
                raise BadRequest(str(e), param="user") from None
        if len(scene) > MAX_SCENE:
            raise BadRequest(f"scene is {len(scene)} characters; at most {MAX_SCENE}", param="scene")
        out["scene"] = scene or None
        return out

    def start(self, body) -> dict:
        """Check ``body``, write the transcript's settings line and run the conversation in a thread."""
        from ...serve.schema import BadRequest
        from .converse import Conversation

        if self.server.closing:
            raise BadRequest("the server is shutting down", status=503, type="server_error")
        s = self.check(body)
        with self._lock:
            if len(self.running) >= MAX_RUNNING:
                raise BadRequest(f"{len(self.running)} conversations are already running (the limit); retry when "
                                 "one ends", status=429, type="rate_limit_error", code="rate_limit_exceeded",
                                 headers={"Retry-After": "5"})
            cid = ""
            while not cid or (self.root / f"{cid}.jsonl").exists():  # a new file: the transcript is appended to
                cid = f"{time.strftime('%Y%m%d-%H%M%S')}-{'-'.join(s['slugs'])}-{secrets.token_hex(2)}"
            try:
                talk = Conversation(self.system, s["slugs"], turns=s["turns"], scene=s["scene"],
                                    max_tokens=s["max_tokens"], temperature=s["temperature"], seed=s["seed"],
                                    log=self.root / f"{cid}.jsonl", names=self.names)
            except DataError as e:
                raise BadRequest(str(e)) from None
            if s.get("user"):
                self.store.own(cid, s["user"])  # whose it is, so that the purge finds it (serve/privacy.py)
            thread = threading.Thread(target=self._run, args=(cid, talk), daemon=True, name=f"zephyra-talk-{cid}")
            self.running[cid] = thread
        thread.start()
        return {"id": cid, "object": "shakespeare.conversation", "state": "running", "characters": s["slugs"],
                "turns": s["turns"], "seed": s["seed"]}

    def scorer(self):
        """One AttributionScorer over every character (fitted once), as ``zephyra converse`` scores, so that scores
        compare across casts."""
        from .fidelity import AttributionScorer

        with self._scorer_lock:
            if self._scorer is None:
                self._scorer = AttributionScorer(list(CHARACTERS))
            return self._scorer

    def warm(self) -> None:
        """Fit the scorer in a thread (seconds: the plays parsed, a classifier over every character) at the
        viewer's first request (the page's, mostly), so that the first conversation need not wait for it."""
        def fit():
            try:
                self.scorer()
            except Exception:  # noqa: BLE001  the conversation that needs it says why, in one line
                pass

        with self._warm_lock:
            if not self._warming:
                self._warming = True
                threading.Thread(target=fit, daemon=True, name="zephyra-talk-scorer").start()

    def _run(self, cid: str, talk) -> None:
        try:
            talk.scorer = self.scorer()  # set here, not in start: the POST answers before the fit
            while not talk.done and not self.server.closing:
                completion = self.system.engine.run([talk.request()])[0]
                if self.server.closing:  # cancelled by the shutdown: not a turn
                    break
                talk.take(completion)
        except Exception as e:  # noqa: BLE001  said in the list and the transcript's view; the server goes on
            self.errors[cid] = one_line(e)[:300]
        finally:
            with self._lock:
                self.running.pop(cid, None)


def _json(raw: bytes):
    from ...serve.schema import BadRequest

    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the request body is not valid JSON") from None


def _number(body: dict, key: str, default, low, high, kind):
    from ...serve.schema import BadRequest

    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise BadRequest(f"{key} must be {'an integer' if kind is int else 'a number'}, got {value!r}", param=key)
    if not low <= value <= high:
        raise BadRequest(f"{key} must be between {low} and {high}, got {value}", param=key)
    return kind(value)


# --------------------------------------------------------------------------------------------------------------
# the routes
# --------------------------------------------------------------------------------------------------------------

def add_routes(app, server, *, names: dict[str, str], conversations: Path) -> Viewer:
    """The page and the API on ``app`` (serve/app.py's FastAPI app) over ``server``; ``names``: {slug: the
    system's adapter name}."""
    import asyncio

    from fastapi import Request as HTTPRequest
    from fastapi.responses import HTMLResponse, JSONResponse

    from ...serve.schema import BadRequest

    viewer = Viewer(server, names, conversations)
    app.state.shakespeare = viewer
    if getattr(server, "privacy", None) is not None:
        server.privacy.register(viewer.store)

    def refuse(e: BadRequest) -> JSONResponse:
        return JSONResponse(e.body(), status_code=e.status, headers=dict(e.headers))

    async def answer(request: HTTPRequest, work, *args, status: int = 200):
        """Authorised, ``work(*args)`` in a worker thread (it reads files and hashes adapters), as JSON."""
        try:
            server.authorise(request.headers.get("authorization"))
            viewer.warm()
            return JSONResponse(await asyncio.get_running_loop().run_in_executor(None, work, *args),
                                status_code=status)
        except BadRequest as e:
            return refuse(e)

    @app.get("/shakespeare")
    async def page():
        """The viewer: one HTML file, no build step (viewer.html)."""
        viewer.warm()
        return HTMLResponse((Path(__file__).parent / "viewer.html").read_text(encoding="utf-8"))

    def characters() -> dict:
        return {"object": "list", "max_turns": MAX_TURNS, "max_tokens": server.max_tokens,
                "attribution_chance": round(1 / len(CHARACTERS), 4),
                "data": [{"slug": s, "name": display(s), "model": n, "version": server.versions.get(n)}
                         for s, n in names.items()]}

    @app.get("/v1/shakespeare/characters")
    async def served(request: HTTPRequest):
        return await answer(request, characters)

    @app.get("/v1/shakespeare/conversations")
    async def listed(request: HTTPRequest):
        return await answer(request, lambda: {"object": "list", "data": viewer.list()})

    @app.get("/v1/shakespeare/conversations/{cid:path}")
    async def one(cid: str, request: HTTPRequest):
        return await answer(request, viewer.get, cid)

    @app.post("/v1/shakespeare/conversations")
    async def start(request: HTTPRequest):
        return await answer(request, lambda raw: viewer.start(_json(raw)), await request.body(), status=202)

    return viewer
