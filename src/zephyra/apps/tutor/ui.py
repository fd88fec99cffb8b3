"""The tutor's Streamlit app: the chat on the left; the subject, an image and the reading options on the right; under
each tutor turn, what it was made from (the passages retrieved with their scores, the tool calls, the check of the
learner's step) in expanders.

    zephyra tutor ui --server http://127.0.0.1:8000 --api-key sk-local   # over HTTP: zephyra serve --tutor runs/tutor
    zephyra tutor ui --base runs/phase2/final --root runs/tutor          # the tutor in this process (loads the model)

``zephyra tutor ui`` runs ``streamlit run`` on this file and passes its settings in the environment (``ZEPHYRA_TUTOR_UI_*``,
so that the API key is not on a command line). ``ZEPHYRA_TUTOR_UI_CLIENT=module:factory`` replaces the tutor with
``factory()`` (the tests' stub: a page without a model). The module imports no torch: the in-process tutor is built
on the first run that needs it, and kept (``st.cache_resource``). Imports are absolute: Streamlit runs this file as
``__main__``.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
from collections.abc import Iterable, Iterator

SUBJECTS = ("math", "science", "reading")  # subjects.SUBJECTS (a test holds them equal)
FONT_SIZES = {"small": 14, "normal": 16, "large": 20}  # px, the root size the page's rem sizes follow
ENV = "ZEPHYRA_TUTOR_UI_"  # SERVER, API_KEY, BASE, ROOT, CLIENT


class UIError(Exception):
    """A turn or an upload the tutor refused, in one line for the page."""


# --------------------------------------------------------------------------------------------------------------
# the two ways to reach the tutor: over HTTP (the backend's routes), or in this process (the same Backend)
# --------------------------------------------------------------------------------------------------------------

class HttpClient:
    """The backend of ``zephyra serve --tutor`` (backend.py): ``POST /tutor/chat`` (its SSE stream for the page,
    one JSON for ``chat``), then ``GET /tutor/context`` for what the turn retrieved and the check of the step."""

    def __init__(self, server: str, api_key: str | None = None, transport=None, timeout: float = 300.0):
        import httpx

        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=server.rstrip("/"), headers=headers, timeout=timeout, transport=transport)
        self.vision: bool | None = None  # whether the server has a vision artifact: its upload answer says

    def _json(self, r) -> dict:
        try:
            body = r.json()
        except ValueError:
            body = {}
        if r.status_code != 200:
            msg = (body.get("error") or {}).get("message") if isinstance(body, dict) else None
            raise UIError(f"the server said {r.status_code}: {msg or r.text[:200]}")
        return body

    @staticmethod
    def _body(message: str, subject: str | None, session: str | None, image_id: str | None, stream: bool) -> dict:
        body = {"message": message, "subject": subject, "session": session, "image_id": image_id, "stream": stream}
        return {k: v for k, v in body.items() if v is not None}

    def _request(self, method: str, path: str, **kwargs) -> dict:
        import httpx

        try:
            return self._json(self.http.request(method, path, **kwargs))
        except httpx.HTTPError as e:  # refused, timed out: one line on the page, not a traceback
            raise UIError(f"the server did not answer: {e}") from None

    def _context(self, out: dict) -> dict:
        return self._request("GET", "/tutor/context", params={"session": out["session"]})

    def chat(self, message: str, subject: str | None, session: str | None, image_id: str | None) -> tuple[dict, dict]:
        out = self._request("POST", "/tutor/chat", json=self._body(message, subject, session, image_id, False))
        return out, self._context(out)

    def stream(self, message: str, subject: str | None, session: str | None, image_id: str | None,
               into: dict) -> Iterator[str]:
        """The turn's text in the pieces the server's ``delta`` events bring, as they come; ``into`` gets the
        ``done`` event's whole turn (``"out"``) and then its context (``"context"``)."""
        import httpx

        body = self._body(message, subject, session, image_id, True)
        try:
            with self.http.stream("POST", "/tutor/chat", json=body) as r:
                if r.status_code != 200:
                    r.read()
                    self._json(r)  # raises the server's one line
                for event, data in sse_events(r.iter_lines()):
                    if event == "delta":
                        yield data["text"]
                    elif event == "done":
                        into["out"] = data
        except httpx.HTTPError as e:
            raise UIError(f"the server did not answer: {e}") from None
        if "out" not in into:
            raise UIError("the server's stream ended before its 'done' event")
        into["context"] = self._context(into["out"])

    def upload(self, data: bytes) -> str:
        body = self._request("POST", "/tutor/upload_image", content=data)
        self.vision = body.get("vision")
        return body["image_id"]

    def serves_vision(self) -> bool | None:
        """Whether an image question can be answered (known after an upload; None before)."""
        return self.vision


def sse_events(lines: Iterable[str]) -> Iterator[tuple[str, dict]]:
    """(event, JSON data) of each event in a ``text/event-stream``'s lines (comments such as pings skipped)."""
    event, data = "message", []
    for line in lines:
        if not line:
            if data:
                yield event, json.loads("\n".join(data))
            event, data = "message", []
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)
    if data:
        yield event, json.loads("\n".join(data))


class LocalClient:
    """The tutor in this process, behind the backend's own sessions (the step checks, the vision path)."""

    def __init__(self, backend):
        self.backend = backend

    @classmethod
    def load(cls, base: str, root: str) -> LocalClient:
        """The base, the vision artifact at ``root/vision`` when there (loaded before the subject adapters wrap the
        base's layers: its fingerprint), then the tutor on the same system, as ``serve_tutor`` does."""
        from pathlib import Path

        from zephyra.apps.tutor.backend import Backend
        from zephyra.apps.tutor.tutor import Tutor
        from zephyra.resolve.system import load_system

        system = load_system(base, None, None)
        vision = None
        if (Path(root) / "vision" / "manifest.json").is_file():
            from zephyra.apps.tutor.vision import VisionAnswerer

            vision = VisionAnswerer.load(Path(root) / "vision", (system.model, system.tokenizer))
        tutor = Tutor.from_system(system, root, prefix="")
        tutor.owned = True
        return cls(Backend(tutor, vision))

    def chat(self, message: str, subject: str | None, session: str | None, image_id: str | None) -> tuple[dict, dict]:
        from zephyra.errors import ZephyraError, one_line
        from zephyra.serve.schema import BadRequest

        s = self.backend.session(session)
        try:
            with s.lock:
                out = self.backend.turn(s, message, subject, image_id)
                context = dict(s.context or {})
        except BadRequest as e:
            raise UIError(e.message) from None
        except ZephyraError as e:
            raise UIError(one_line(e)) from None
        return {**out, "session": s.id}, context

    def upload(self, data: bytes) -> str:
        from zephyra.errors import ZephyraError, one_line

        try:
            return self.backend.add_image(data)
        except ZephyraError as e:
            raise UIError(one_line(e)) from None

    def serves_vision(self) -> bool:
        return self.backend.vision is not None


def make_client(server: str | None, api_key: str | None, base: str, root: str, hook: str | None):
    """The client the settings ask for: the hook's factory, else HTTP with a server, else the tutor in-process."""
    if hook:
        module, _, name = hook.partition(":")
        return getattr(importlib.import_module(module), name or "make_client")()
    if server:
        return HttpClient(server, api_key)
    return LocalClient.load(base, root)


# --------------------------------------------------------------------------------------------------------------
# the page
# --------------------------------------------------------------------------------------------------------------

def css(font: str, contrast: bool) -> str:
    """The page's style for the reading options: the root font size (Streamlit sizes in rem) and high contrast."""
    rules = [f"html, body, .stApp {{ font-size: {FONT_SIZES.get(font, 16)}px; }}"]
    if contrast:
        rules += [".stApp, [data-testid='stHeader'], [data-testid='stBottomBlockContainer'] "
                  "{ background: #000 !important; color: #fff !important; }",
                  ".stApp p, .stApp li, .stApp label, .stApp span, .stApp h1, .stApp h2, .stApp h3, .stApp code "
                  "{ color: #fff !important; }",
                  ".stApp [data-testid='stExpander'] details, .stApp textarea, .stApp input "
                  "{ border: 2px solid #ff0 !important; background: #000 !important; color: #fff !important; }",
                  ".stApp a { color: #ff0 !important; }  .stApp *:focus { outline: 3px solid #ff0 !important; }"]
    return "<style>\n" + "\n".join(rules) + "\n</style>"


def steps(st, turn: dict, context: dict) -> None:
    """The turn's intermediate steps, each in an expander (closed)."""
    sources = turn.get("sources") or []
    with st.expander(f"Retrieved passages ({len(sources)})"):
        if not sources:
            st.caption("no passage (no index for this subject, or none that does not give the answer away)")
        for n, x in enumerate(sources, 1):
            st.markdown(f"**{n}. `{x.get('id', '?')}`** · score {x.get('score', 0):.3f}")
            st.text(x.get("text", ""))
    calls = turn.get("tool_calls") or []
    with st.expander(f"Tool calls ({len(calls)})"):
        if calls:
            st.json(calls)
        else:
            st.caption("no tool was called")
    with st.expander("Check of your step"):
        check, step = context.get("check"), context.get("step")
        st.markdown(f"**check**: {check or '—'}" + (f" · **step** {step + 1}" if step is not None else ""))
        st.caption(f"subject {context.get('subject') or turn.get('subject')}: {context.get('reason') or ''}")
        if context.get("query"):
            st.caption(f"retrieved for: {context['query']}")


def show_turn(st, m: dict) -> None:
    with st.chat_message("user" if m["role"] == "user" else "assistant"):
        if m["role"] == "user":
            st.markdown(m["text"])
            return
        if m.get("error"):
            st.error(m["error"])
            return
        st.markdown(m["text"])
        show_about(st, m)


def show_about(st, m: dict) -> None:
    """Under a tutor turn's text: its subject and adapter, and its steps."""
    st.caption(f"{m.get('subject') or 'no subject'} · {m.get('adapter')}")
    steps(st, m, m.get("context") or {})


def pieces(client, message: str, subject: str | None, session: str | None, image_id: str | None,
           into: dict) -> Iterator[str]:
    """The turn's text as it comes (the client's stream when it has one, else its whole turn at once); ``into``
    gets the turn (``"out"``) and its context (``"context"``)."""
    if hasattr(client, "stream"):
        yield from client.stream(message, subject, session, image_id, into)
        return
    into["out"], into["context"] = client.chat(message, subject, session, image_id)
    yield into["out"]["text"]


def new_turn(st, client, prompt: str, subject: str | None, image_id: str | None) -> None:
    """The learner's message and the tutor's answer, streamed into the chat as it comes, then kept."""
    state = st.session_state
    state["messages"].append({"role": "user", "text": prompt})
    show_turn(st, state["messages"][-1])
    got: dict = {}
    with st.chat_message("assistant"):
        slot = st.empty()
        try:
            with slot:
                st.write_stream(pieces(client, prompt, subject, state["session"], image_id, got))
            m = {"role": "tutor", **got["out"], "context": got.get("context") or {}}
            state["session"] = m.get("session") or state["session"]
            show_about(st, m)
        except UIError as e:
            m = {"role": "tutor", "error": str(e), "text": ""}
            slot.error(m["error"])
    state["messages"].append(m)


def main() -> None:
    import streamlit as st

    st.set_page_config(page_title="Zephyra tutor", layout="wide")
    settings = tuple(os.environ.get(ENV + k) for k in ("SERVER", "API_KEY", "BASE", "ROOT", "CLIENT"))
    server, api_key, base, root, hook = settings
    base, root = base or "runs/phase2/final", root or "runs/tutor"
    client = st.cache_resource(show_spinner="loading the tutor")(make_client)(server, api_key, base, root, hook)
    state = st.session_state
    state.setdefault("messages", [])
    state.setdefault("session", None)

    chat, side = st.columns([3, 1], gap="large")
    with side:
        st.subheader("Options")
        subject = st.selectbox("Subject", ("auto",) + SUBJECTS, key="subject",
                               help="auto: math for arithmetic, else the subject whose index answers best")
        upload = st.file_uploader("An image to ask about", type=["png", "jpg", "jpeg", "gif", "bmp", "webp"],
                                  key="image")
        image_id = None
        if upload is not None:
            data = upload.getvalue()
            digest = hashlib.sha256(data).hexdigest()
            if state.get("image_digest") != digest:
                try:
                    state["image_id"], state["image_digest"] = client.upload(data), digest
                except UIError as e:
                    st.error(str(e))
                    state["image_id"], state["image_digest"] = None, None
            vision = getattr(client, "serves_vision", lambda: True)()
            if vision is False:  # the image would make every question a 400: the text tutor answers instead
                st.image(data)
                st.warning("this tutor has no vision model (zephyra tutor vision-train): questions go to the text "
                           "tutor, without the image")
            else:
                image_id = state.get("image_id")
                st.image(data, caption="questions go to the vision path while this image is here")
        st.radio("Font size", tuple(FONT_SIZES), index=1, key="font", horizontal=True)
        st.toggle("High contrast", key="contrast")
        session_note = st.empty()
    st.markdown(css(state["font"], state["contrast"]), unsafe_allow_html=True)

    with chat:
        st.title("Zephyra tutor")
        where = server or (f"a stub ({hook})" if hook else "in-process")
        st.caption(f"hints and questions, never the answer · {where}")
        history = st.container()
        prompt = st.chat_input("Ask the tutor, or answer its question")
        with history:
            for m in state["messages"]:
                show_turn(st, m)
            if prompt:
                new_turn(st, client, prompt, None if subject == "auto" else subject, image_id)
    if state["session"]:
        session_note.caption(f"session {state['session']}")


if __name__ == "__main__":
    main()
