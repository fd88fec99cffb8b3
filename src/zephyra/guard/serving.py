"""The injection guard inside the server (serve/app.py): the user's messages checked before generation, and the
retrieved passages checked before they enter the prompt.

    create_app(system, guard="on")       # a flagged request: HTTP 400, code "prompt_flagged"
    create_app(system, guard="strip")    # a flagged request: answered by the base, no retrieved text
    create_app(system, guard=ServeGuard("on", threshold=0.9, path="runs/guard"))
    zephyra serve --guard on|off|strip [--guard-threshold T] [--guard-path DIR]

A refusal or a strip is logged on stderr with the request id, the score and the kind, never the text. In "on"
and "strip" modes a retrieved passage the guard flags is dropped before the prompt is built (the response's
``zephyra.guard.passages_dropped`` counts them, per request).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ..errors import ConfigError

MODES = ("off", "on", "strip")


class ServeGuard:
    def __init__(self, mode: str = "on", threshold: float | None = None, path: str | Path | None = None,
                 guard=None, log=None):
        if mode not in MODES:
            raise ConfigError(f"guard mode must be one of {', '.join(MODES)}, got {mode!r}")
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise ConfigError(f"guard threshold must be between 0 and 1, got {threshold}")
        self.mode, self.threshold, self.path = mode, threshold, path
        self._guard = guard
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))

    @classmethod
    def of(cls, value) -> ServeGuard | None:
        """None, "off", "on", "strip" or a ServeGuard -> a ServeGuard (None when off)."""
        if value is None or value == "off" or (isinstance(value, ServeGuard) and value.mode == "off"):
            return None
        return value if isinstance(value, ServeGuard) else cls(value)

    @property
    def guard(self):
        if self._guard is None:
            from .detect import WEIGHTS, read_guard

            self._guard = read_guard(self.path or WEIGHTS)
        return self._guard

    def warm(self) -> None:
        """Load the model and encoder now (not in the first request)."""
        self.guard.check(["hello"])

    def install(self, system) -> None:
        """Drop flagged passages before they enter any prompt of ``system`` (resolve/grounding.py's filter)."""
        retriever = getattr(system, "retriever", None)
        if retriever is not None:
            retriever.passage_filter = self.keep_passages

    def keep_passages(self, texts: list[str]) -> list[bool]:
        verdicts = self.guard.check(texts, self.threshold)
        dropped = [v for v in verdicts if v.flagged]
        if dropped:
            self.log(f"guard: dropped {len(dropped)} of {len(texts)} retrieved passage(s) "
                     f"(scores {', '.join(f'{v.score:.2f}' for v in dropped)}; kinds "
                     f"{', '.join(sorted({v.kind for v in dropped}))})")
        return [not v.flagged for v in verdicts]

    def check(self, prompt, request_id: str) -> dict:
        """The user's text of a request (chat: every user message; completions: the prompt) checked:
        {"flagged", "score", "kind", "ms"}; a flagged one is logged (id, score, kind; no text)."""
        texts = [prompt] if isinstance(prompt, str) else [m.get("content") or "" for m in prompt
                                                          if m.get("role") == "user"]
        texts = [t for t in texts if t.strip()]
        t0 = time.perf_counter()
        verdicts = self.guard.check(texts, self.threshold) if texts else []
        ms = round(1e3 * (time.perf_counter() - t0), 2)
        worst = max(verdicts, key=lambda v: v.score, default=None)
        out = {"flagged": bool(worst and worst.flagged), "score": round(worst.score, 4) if worst else 0.0,
               "kind": worst.kind if worst else "none", "ms": ms}
        if out["flagged"]:
            action = "refused" if self.mode == "on" else "answered by the base without retrieved text"
            self.log(f"guard: request {request_id} {action} (score {out['score']:.3f}, kind {out['kind']})")
        return out
