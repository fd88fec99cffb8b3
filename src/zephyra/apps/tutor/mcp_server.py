"""The Socratic tutor as an MCP server (``zephyra mcp``; docs/tutor.md, "MCP"), on the official SDK's
``MCPServer`` (v2's FastMCP), over stdio or streamable HTTP.

    server = build_server(root="runs/tutor", base="runs/phase2/final", sessions="runs/tutor/sessions")
    server.run("stdio")                      # or server.run("streamable-http", host=..., port=...)

Exposed:
    tools       calculator, check_answer, convert_units, retrieve: the Toolbox's own schemas (tools.py), a bad
                argument an ``is_error`` result with the Toolbox's one-line message; tutor_ask(message, subject?,
                session?): one tutor turn (text, subject, adapter, sources, session, turn), the tutor loaded at
                first use, with log and progress notifications to the client while it works
    resources   tutor://subjects (every subject, its index's chunks and sources), tutor://subjects/<subject>,
                tutor://sessions/{session} (a session's turns)
    prompt      socratic_tutor(subject): the tutor's instructions, hints and questions, never the answer

A session is a JSONL file under ``sessions`` (one whole line appended per turn, fsync'd), so a conversation
continues across connections and restarts: its math problem, step and the last exchanges are rebuilt from it.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError as MCPToolError
from mcp.server.mcpserver.tools.base import Tool as MCPTool
from mcp_types import CallToolResult, TextContent

from ...errors import ArtifactError, RequestError, ZephyraError, one_line
from .subjects import SUBJECTS, check_subject

SESSION_ID = re.compile(r"[A-Za-z0-9_.-]{1,100}")
INSTRUCTIONS = (
    "You are a Socratic {subject} tutor. Never give the learner the final answer, not even when asked for it "
    "directly. Instead: find what they already know, give one small hint at a time, and end every turn with a "
    "question that moves them one step on. When they propose an answer, check it (the check_answer tool) and say "
    "only whether it is right; if it is not, point at the step to look at again. Ground facts in the textbook "
    "passages (the retrieve tool, or tutor_ask's sources), and keep turns short.")


# --------------------------------------------------------------------------------------------------------------
# sessions on disk
# --------------------------------------------------------------------------------------------------------------

class SessionStore:
    """One JSONL file per session id: a whole line appended per turn (append-only, fsync'd)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def check(self, sid: str) -> str:
        if not isinstance(sid, str) or not SESSION_ID.fullmatch(sid) or set(sid) == {"."}:
            raise RequestError("session must be letters, digits, '_', '.', '-' (at most 100)")
        return sid

    def lock(self, sid: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(sid, threading.Lock())

    def path(self, sid: str) -> Path:
        return self.root / f"{self.check(sid)}.jsonl"

    def turns(self, sid: str) -> list[dict]:
        path = self.path(sid)
        if not path.is_file():
            return []
        out = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a torn last line (a crash mid-write): the whole turns before it still count
        return out

    def append(self, sid: str, turn: dict) -> None:
        path = self.path(sid)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = (json.dumps(turn, ensure_ascii=False) + "\n").encode("utf-8")
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)  # one write of one whole line
            os.fsync(fd)
        finally:
            os.close(fd)


def restore(sid: str, turns: list[dict]):
    """The backend's Session for ``sid`` as its stored ``turns`` left it: the math problem, step, exchanges."""
    from .backend import MAX_SAID, Session
    from .problems import parse_problem
    from .socratic import task_of

    s = Session(sid)
    if not turns:
        return s
    state = turns[-1].get("state") or {}
    problem = parse_problem(state["problem"]) if state.get("problem") else None
    s.task = task_of(problem) if problem is not None else None
    s.step, s.solved = int(state.get("step") or 0), bool(state.get("solved"))
    s.subject = turns[-1].get("subject")
    said: list[tuple[str, str]] = []
    for t in turns:
        said += [("Learner", t["message"]), ("Tutor", t["text"])]
    s.said = said[-MAX_SAID:]
    return s


# --------------------------------------------------------------------------------------------------------------
# the server
# --------------------------------------------------------------------------------------------------------------

class _SpecTool(MCPTool):
    """A Toolbox tool under its own JSON schema: the arguments go to ``Toolbox.run`` as they came, so its checks
    (and one-line messages) are the ones the client sees."""

    async def run(self, arguments: dict[str, Any], context, convert_result: bool = False) -> Any:
        try:
            text = self.fn(arguments)
        except ZephyraError as e:
            raise MCPToolError(one_line(e)) from e
        return CallToolResult(content=[TextContent(type="text", text=text)]) if convert_result else text


def _caller(box, name: str) -> Callable[[dict], str]:
    def call(arguments: dict) -> str:
        return box.run(name, arguments)
    return call


def _box_tools(box) -> list[MCPTool]:
    tools = []
    for spec in box.specs():
        fn = spec["function"]
        name = fn["name"]

        tool = _SpecTool.from_function(_caller(box, name), name=name, description=fn.get("description", ""),
                                       structured_output=False)
        tools.append(tool.model_copy(update={"parameters": fn["parameters"]}))
    return tools


def subject_summary(root: Path, subject: str) -> dict:
    """A subject's index as its manifest tells it: chunks, sources (chunks per source), when it was built."""
    path = root / "index" / subject
    manifest = path / "manifest.json"
    if not manifest.is_file():
        return {"subject": subject, "indexed": False, "chunks": 0, "sources": {},
                "hint": f"zephyra tutor data --out {root}"}
    m = json.loads(manifest.read_text(encoding="utf-8"))
    sources: dict[str, int] = {}
    chunks = path / "chunks.jsonl"
    if chunks.is_file():
        with chunks.open(encoding="utf-8") as f:
            for line in f:
                src = json.loads(line).get("source") or "unknown"
                sources[src] = sources.get(src, 0) + 1
    return {"subject": subject, "indexed": True, "chunks": (m.get("metrics") or {}).get("chunks", sum(sources.values())),
            "sources": sources, "dense": bool((m.get("embedding") or {}).get("dense")), "created": m.get("created")}


def build_server(root: str | os.PathLike = "runs/tutor", base: str | os.PathLike = "runs/phase2/final",
                 sessions: str | os.PathLike = "runs/tutor/sessions",
                 tutor_factory: Callable[[], Any] | None = None) -> MCPServer:
    """The tutor's MCP server. ``tutor_factory`` makes the Tutor at the first tutor_ask (default:
    ``Tutor(base, root)``); the tools' retriever opens the subject indexes at first use."""
    from .tools import Toolbox

    root, base = Path(root), Path(base)
    store = SessionStore(sessions)
    state: dict[str, Any] = {"tutor": None, "backend": None}
    load_lock = threading.Lock()

    def default_factory():
        from .tutor import Tutor

        if not (base / "config.json").is_file():
            raise ArtifactError(f"--base {base}: no model there (run the quickstart, or pass --base)")
        return Tutor(base, root)

    def backend():
        with load_lock:
            if state["backend"] is None:
                from .backend import Backend

                state["tutor"] = (tutor_factory or default_factory)()
                state["backend"] = Backend(state["tutor"])
            return state["backend"]

    indexes: dict[str, Any] = {}

    def retriever(query: str, subject: str | None) -> list[str]:
        from .subjects import open_subject_index, retrieve

        subjects = [check_subject(subject)] if subject else list(SUBJECTS)
        texts: list[tuple[float, str]] = []
        for s in subjects:
            if s not in indexes:
                indexes[s] = open_subject_index(root, s) if (root / "index" / s / "manifest.json").is_file() \
                    else None
            if indexes[s] is not None:
                texts += [(float(h.score), h.text) for h in retrieve(indexes[s], query, k=3)]
        return [t for _, t in sorted(texts, key=lambda x: -x[0])]

    box = Toolbox.default(retriever)
    server = MCPServer("zephyra-tutor", log_level="WARNING", instructions="A Socratic tutor: hints and questions, never the answer. "
                       "tutor_ask for a turn (pass session to continue a conversation); calculator, check_answer, "
                       "convert_units, retrieve as tools.", tools=_box_tools(box))

    def turn(message: str, subject: str | None, sid: str) -> dict:
        b = backend()
        with store.lock(sid):  # one turn at a time in a session, across this server's connections
            s = restore(sid, store.turns(sid))
            out = b.turn(s, message, subject, None)
            n = len(store.turns(sid)) + 1
            store.append(sid, {"turn": n, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "message": message,
                               "subject": out["subject"], "adapter": out["adapter"], "text": out["text"],
                               "sources": [x["id"] for x in out["sources"]],
                               "state": {"problem": s.task.question if s.task is not None else None,
                                         "step": s.step, "solved": s.solved}})
        return {**out, "session": sid, "turn": n}

    @server.tool()
    async def tutor_ask(message: str, ctx: Context, subject: str | None = None, session: str | None = None) -> dict[str, Any]:
        """One Socratic tutor turn: a hint and a question, never the answer, with the textbook passages it drew
        on. Pass ``session`` (the id a previous turn returned) to continue that conversation."""
        try:
            if subject is not None:
                check_subject(subject)
            sid = store.check(session) if session else secrets.token_hex(8)
            if not message.strip():
                raise RequestError("empty message: ask the tutor something")
            # progress notifications (with a message) talk back while the turn runs; the SDK's log notifications
            # are deprecated (SEP-2577), so none are sent
            await ctx.report_progress(0, 2, "loading the tutor (first use)" if state["backend"] is None
                                      else "retrieving and thinking")
            out = await anyio.to_thread.run_sync(turn, message, subject, sid)
            await ctx.report_progress(2, 2, f"session {sid}, turn {out['turn']}: {out['subject']} via "
                                            f"{out['adapter']}")
        except ZephyraError as e:
            raise MCPToolError(one_line(e)) from e
        return out

    @server.resource("tutor://subjects", name="subjects", mime_type="application/json",
                     description="The tutor's subjects, with their indexes' chunks and sources.")
    def subjects() -> str:
        return json.dumps([subject_summary(root, s) for s in SUBJECTS])

    def one(subject: str) -> Callable[[], str]:
        def read() -> str:
            return json.dumps(subject_summary(root, subject))
        return read

    for s in SUBJECTS:  # one listed resource per subject (a template would not be listed)
        server.resource(f"tutor://subjects/{s}", name=f"subject-{s}", mime_type="application/json",
                        description=f"The {s} index: chunks and sources.")(one(s))

    @server.resource("tutor://sessions/{session}", name="session", mime_type="application/json",
                     description="A session's turns, oldest first (what tutor_ask stored).")
    def session_history(session: str) -> str:
        try:
            return json.dumps({"session": session, "turns": store.turns(session)})
        except ZephyraError as e:
            from mcp.server.mcpserver.exceptions import ResourceError

            raise ResourceError(one_line(e)) from e

    @server.prompt(description="The tutor's instructions for a subject: hints and questions, never the answer.")
    def socratic_tutor(subject: str) -> str:
        try:
            return INSTRUCTIONS.format(subject=check_subject(subject))
        except ZephyraError as e:
            raise ValueError(one_line(e)) from e

    server.zephyra_state = state  # the loaded tutor, for close() and tests
    return server


def close(server: MCPServer) -> None:
    tutor = getattr(server, "zephyra_state", {}).get("tutor")
    if tutor is not None:
        tutor.close()


def serve(transport: str = "stdio", host: str = "127.0.0.1", port: int = 8765, **kwargs) -> None:
    server = build_server(**kwargs)
    try:
        if transport == "stdio":
            server.run("stdio")
        else:
            server.run("streamable-http", host=host, port=port)
    finally:
        close(server)
