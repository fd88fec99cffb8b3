"""User data in the server: where it is kept, scrubbed of PII on the way in, kept for a limited time, and purged
per user, everywhere, on request.

    data = UserData(Retention(days=30, count=500))
    data.register(RecordLog("runs/serve/feedback.jsonl"))        # the server's feedback log
    data.register(TranscriptDir("runs/shakespeare/conversations"))  # an application registers its stores
    data.purge("user-42")      # {"feedback log ...": 3, "transcripts ...": 1, ...}: what was removed, per store
    purge_roots("user-42", ["runs"])  # offline, with no server: the documented layout below, walked

    zephyra privacy purge --user user-42 --root runs/serve --root runs/shakespeare/conversations
    curl -X POST -H "Authorization: Bearer $ADMIN_KEY" -d '{"user": "user-42"}' http://127.0.0.1:8000/v1/admin/purge

What is stored, and where (nothing else about a user is kept):

    feedback log        JSONL, one rating a line {"time", "user", "request_id", "adapter", "version", "rating",
                        "comment"}; the comment scrubbed (zephyra serve --feedback-log FILE)
    transcripts         a directory of ``<id>.jsonl`` (the Shakespeare viewer's conversations: a settings line, then
                        the turns; the scene scrubbed) and ``owners.jsonl`` ({"conversation", "user", "time"} lines)
    in memory           the server's recent answers (request id -> adapter, version and user: which version, canary
                        or stable, served the user, for feedback), the tutor's sessions; registered as MemoryStore
    logs                the request log (uvicorn's access log, the apps' loggers) passes through ScrubbingFilter:
                        an IP address, an email or a phone number in a log line is replaced; no prompt text is
                        logged; metrics are labelled by endpoint, adapter, version, status, arm and rating only
    canary assignments  not stored: the arm is a hash of the user id (serve/deploy.py canary_arm), so there is
                        nothing to purge beyond the recent answers above

The purge's layout on disk (``purge_roots``): under each root, every ``owners.jsonl`` names the transcripts of its
directory that are the user's (removed, then the lines); every other ``*.jsonl`` is a log of records, and a
record (a JSON object a line) whose ``"user"`` is the id is removed; a transcript whose settings line has that
``"user"`` is removed whole. Every rewrite is atomic (zephyra.io: temp file + rename), so a crash leaves the file
as it was or as it became.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ..retrieval.pii import PIIConfig, scrub_pii
from ..errors import ConfigError
from ..io import append_line, atomic_write_text, safe_name

# user data is scrubbed harder than training data: addresses and cued names too
USER_PII = PIIConfig(emails=True, phones=True, ips=True, cards=True, addresses=True, names=True)
OWNERS = "owners.jsonl"
IDS = ("user", "request_id", "conversation", "adapter", "version", "rating", "time")  # kept as they are
WRITING = 60.0  # seconds: a transcript written to this recently is running; retention by count leaves it


def scrub(text: str) -> str:
    """``text`` with emails, phone and card numbers, IPs, street addresses and cued names replaced
    (retrieval/pii.py scrub_pii, the one the data curation uses, with USER_PII)."""
    return scrub_pii(text, USER_PII) if isinstance(text, str) and text else text


def check_user(user) -> str:
    """A user id, or a one-line UnsafeNameError (io.safe_name: no '/', '..', NUL, backslash)."""
    return safe_name(user, "a user id")


class ScrubbingFilter(logging.Filter):
    """Scrubs every log record's message and string arguments (uvicorn's access log passes the client's address
    as an argument: "[IP]:54321")."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = scrub(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(scrub(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: scrub(v) if isinstance(v, str) else v for k, v in record.args.items()}
        return True


_FILTER = ScrubbingFilter()


def install_log_scrubber(names: Iterable[str] = ("uvicorn", "uvicorn.access", "uvicorn.error", "zephyra")) -> None:
    """Put ScrubbingFilter on the named loggers and on their handlers and the root's (a filter on a logger does
    not see what its children propagate; one on a handler does). Idempotent."""
    loggers = [logging.getLogger(n) for n in names] + [logging.getLogger()]
    for lg in loggers:
        if _FILTER not in lg.filters:
            lg.addFilter(_FILTER)
        for h in lg.handlers:
            if _FILTER not in h.filters:
                h.addFilter(_FILTER)


@dataclass
class Retention:
    """How long user data is kept: ``days`` (older is removed) and/or ``count`` (only the newest N transcripts
    of a directory are kept); None: no limit."""
    days: float | None = None
    count: int | None = None

    def __post_init__(self):
        if (self.days is not None and not self.days > 0) or (self.count is not None and self.count < 1):
            raise ConfigError("retention: days > 0 and count >= 1 (or none)")

    @property
    def cutoff(self) -> float | None:
        return time.time() - self.days * 86400 if self.days is not None else None


# --------------------------------------------------------------------------------------------------------------
# stores
# --------------------------------------------------------------------------------------------------------------

def _records(path: Path) -> list[tuple[str, object]]:
    """(raw line, parsed object or None) of a JSONL file."""
    out = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                out.append((line if line.endswith("\n") else line + "\n", json.loads(line)))
            except ValueError:
                out.append((line if line.endswith("\n") else line + "\n", None))
    return out


def _rewrite(path: Path, keep: Callable[[object], bool]) -> int:
    """Remove the records ``keep`` refuses, atomically; the number removed."""
    if not path.is_file():
        return 0
    rows = _records(path)
    kept = [raw for raw, obj in rows if keep(obj)]
    if len(kept) == len(rows):
        return 0
    atomic_write_text(path, "".join(kept))
    return len(rows) - len(kept)


def _owned(obj, user: str) -> bool:
    return isinstance(obj, dict) and obj.get("user") == user


def _when(obj) -> float | None:
    t = obj.get("time") if isinstance(obj, dict) else None
    if isinstance(t, (int, float)):
        return float(t)
    if isinstance(t, str):
        try:
            return time.mktime(time.strptime(t, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
        except ValueError:
            return None
    return None


class RecordLog:
    """A JSONL log of user records (feedback), appended a whole line at a time; each record scrubbed and
    stamped with its time."""

    def __init__(self, path: str | os.PathLike, name: str | None = None):
        self.path = Path(path)
        self.name = name or f"records {self.path}"
        self._lock = threading.Lock()

    def append(self, record: dict) -> dict:
        record = {"time": time.time(), **{k: v if k in IDS else scrub(v) for k, v in record.items()}}
        line = json.dumps(record) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            append_line(self.path, line)  # one whole line per write, or none (a full disk cuts it back)
        return record

    def purge(self, user: str) -> int:
        with self._lock:
            return _rewrite(self.path, lambda obj: not _owned(obj, user))

    def retain(self, policy: Retention) -> int:
        cutoff = policy.cutoff
        if cutoff is None:
            return 0
        with self._lock:
            return _rewrite(self.path, lambda obj: (_when(obj) or cutoff) >= cutoff)


class TranscriptDir:
    """A directory of conversation transcripts ``<id>.jsonl`` with ``owners.jsonl`` saying whose each is."""

    def __init__(self, root: str | os.PathLike, name: str | None = None):
        self.root = Path(root)
        self.name = name or f"transcripts {self.root}"
        self._lock = threading.Lock()

    def own(self, cid: str, user: str) -> None:
        """Record that conversation ``cid`` is ``user``'s (so that a purge finds it)."""
        RecordLog(self.root / OWNERS).append({"conversation": safe_name(cid, "a conversation id"),
                                              "user": check_user(user)})

    def _transcripts(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return [p for p in self.root.glob("*.jsonl") if p.name != OWNERS and not p.name.startswith(".")]

    def _remove(self, cids: set[str]) -> int:
        n = 0
        for cid in cids:
            p = self.root / f"{safe_name(cid, 'a conversation id')}.jsonl"
            if p.is_file():
                p.unlink()
                n += 1
        return n

    def purge(self, user: str) -> int:
        with self._lock:
            owners = self.root / OWNERS
            cids = {obj["conversation"] for _, obj in (_records(owners) if owners.is_file() else [])
                    if _owned(obj, user) and isinstance(obj.get("conversation"), str)}
            for p in self._transcripts():  # a transcript whose own settings name the user
                rows = _records(p)
                if rows and _owned(rows[0][1], user):
                    cids.add(p.stem)
            n = self._remove(cids)
            _rewrite(owners, lambda obj: not _owned(obj, user))
            return n

    def retain(self, policy: Retention) -> int:
        with self._lock:
            files = sorted(self._transcripts(), key=lambda p: p.stat().st_mtime, reverse=True)  # newest first
            cutoff, now = policy.cutoff, time.time()
            drop = set()
            for i, p in enumerate(files):
                mtime = p.stat().st_mtime
                if (cutoff is not None and mtime < cutoff) or (policy.count is not None and i >= policy.count
                                                                and now - mtime > WRITING):
                    drop.add(p.stem)
            n = self._remove(drop)
            if drop:
                _rewrite(self.root / OWNERS, lambda obj: not (isinstance(obj, dict)
                                                              and obj.get("conversation") in drop))
            return n


class MemoryStore:
    """User data held in memory by a component (the server's recent answers, the tutor's sessions): ``purge``
    is the component's own function (user -> how many removed)."""

    def __init__(self, name: str, purge: Callable[[str], int], retain: Callable[[Retention], int] | None = None):
        self.name, self._purge, self._retain = name, purge, retain

    def purge(self, user: str) -> int:
        return self._purge(user)

    def retain(self, policy: Retention) -> int:
        return self._retain(policy) if self._retain is not None else 0


# --------------------------------------------------------------------------------------------------------------
# the server's user data
# --------------------------------------------------------------------------------------------------------------

class UserData:
    """Every store of user data a server has (its own and its applications'), their retention and the purge."""

    def __init__(self, retention: Retention | None = None):
        self.retention = retention or Retention()
        self.stores: list = []
        self.feedback: RecordLog | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def register(self, store):
        """Add a store (RecordLog, TranscriptDir, MemoryStore or anything with ``name`` and ``purge(user)``)."""
        with self._lock:
            self.stores.append(store)
        return store

    def purge(self, user: str) -> dict[str, int]:
        """Remove everything of ``user``, store by store: {store name: records removed}."""
        check_user(user)
        with self._lock:
            stores = list(self.stores)
        return {s.name: s.purge(user) for s in stores}

    def retain(self) -> dict[str, int]:
        with self._lock:
            stores = list(self.stores)
        return {s.name: s.retain(self.retention) for s in stores if hasattr(s, "retain")}

    def start(self, interval: float = 3600.0) -> None:
        """Apply the retention now and every ``interval`` seconds in a daemon thread (when it limits anything)."""
        if (self.retention.days is None and self.retention.count is None) or self._thread is not None:
            return

        def loop():
            while True:
                try:
                    self.retain()
                except Exception as e:  # noqa: BLE001  retention must never stop serving
                    logging.getLogger("zephyra.privacy").warning("retention failed: %s", e)
                time.sleep(interval)

        self._thread = threading.Thread(target=loop, daemon=True, name="zephyra-retention")
        self._thread.start()


def purge_roots(user: str, roots: Iterable[str | os.PathLike]) -> dict[str, int]:
    """The purge over directories on disk, with no server (the module's layout): {file or directory: removed}."""
    check_user(user)
    out: dict[str, int] = {}
    for root in roots:
        root = Path(root)
        if not root.exists():
            raise ConfigError(f"--root {root}: no such file or directory")
        files = [root] if root.is_file() else sorted(root.rglob("*.jsonl"))
        owned_dirs = {p.parent for p in files if p.name == OWNERS}
        for d in sorted(owned_dirs):
            out[str(d)] = TranscriptDir(d).purge(user)
        for p in files:
            if p.name == OWNERS or not p.is_file():
                continue
            rows = _records(p)
            if rows and isinstance(rows[0][1], dict) and rows[0][1].get("kind") == "settings":
                if _owned(rows[0][1], user):
                    p.unlink()
                    out[str(p)] = len(rows)
                continue  # a transcript: whole, or not the user's
            n = _rewrite(p, lambda obj: not _owned(obj, user))
            if n:
                out[str(p)] = n
    return out


def retain_roots(policy: Retention, roots: Iterable[str | os.PathLike]) -> dict[str, int]:
    """Retention over directories on disk: transcript directories (an ``owners.jsonl``, or ``*.jsonl`` with a
    settings line) by age and count, record logs by age."""
    out: dict[str, int] = {}
    for root in roots:
        root = Path(root)
        if not root.exists():
            raise ConfigError(f"--root {root}: no such file or directory")
        files = [root] if root.is_file() else sorted(root.rglob("*.jsonl"))
        dirs = set()
        for p in files:
            rows = _records(p) if p.is_file() else []
            if p.name == OWNERS or (rows and isinstance(rows[0][1], dict) and rows[0][1].get("kind") == "settings"):
                dirs.add(p.parent)
            else:
                n = RecordLog(p).retain(policy)
                if n:
                    out[str(p)] = n
        for d in sorted(dirs):
            out[str(d)] = TranscriptDir(d).retain(policy)
    return out
