"""Atomic writes and content hashes: nothing we write is ever left half-written.

Every artifact is written to a temporary path beside its final one and renamed into place, so a crash, a
SIGKILL or a full disk leaves either the old artifact or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import DataError, UnsafeNameError


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_write_figure(fig, path: str | os.PathLike, dpi: int = 110, **options) -> Path:
    """A matplotlib figure saved as PNG by ``atomic_write_bytes`` (rendered in memory, then renamed)."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, **options)
    return atomic_write_bytes(path, buf.getvalue())


@contextlib.contextmanager
def atomic_directory(final: str | os.PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Yields a fresh temporary directory beside ``final``; on success it replaces ``final`` in one rename
    (the old one, if any, is moved aside first and removed after). On any error the temporary is removed
    and ``final`` is untouched."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists() and not overwrite:
        raise FileExistsError(f"{final} exists (pass overwrite to replace it)")
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield tmp
        old = None
        if final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append one whole line (``line`` plus a newline if it lacks one) to a JSONL log and fsync it. A write that
    fails part-way (a full disk, a quota, a size limit) is cut back to the line before it, so the log never ends
    in a torn line; the OSError is re-raised."""
    path = Path(path)
    data = (line if line.endswith("\n") else line + "\n").encode("utf-8")
    with open(path, "ab") as f:
        start = f.seek(0, os.SEEK_END)
        try:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        except OSError:
            with contextlib.suppress(OSError):
                f.truncate(start)
            raise


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_dir(path: str | os.PathLike, exclude: tuple[str, ...] = ("manifest.json",)) -> str:
    """One hash over every file's relative path and content, in sorted order."""
    root = Path(path)
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file() and q.name not in exclude):
        h.update(str(p.relative_to(root)).encode())
        h.update(sha256_file(p).encode())
    return h.hexdigest()


def read_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, object]]:
    """(line number, parsed object) for every non-blank line of a JSONL file; a missing file, a line that is not
    UTF-8 or not JSON is a one-line DataError naming the file and line."""
    path = Path(path)
    if not path.exists() or path.is_dir():  # a pipe (`--file <(...)`, /dev/stdin) is fine
        raise DataError(f"{path}: no such file")
    with path.open("rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                raise DataError(f"{path} line {n}: not UTF-8 text") from None
            if not line:
                continue
            try:
                yield n, json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path} line {n}: not JSON ({e.msg})") from None


MAX_NAME = 200


def safe_name(name, what: str = "name", *, slash: bool = False) -> str:
    """``name`` when it cannot escape the directory it is joined to, else a one-line ``UnsafeNameError``: the one
    check for every name that becomes a path (registry names and versions, adapter names, conversation and user
    ids). Refused: empty, not a string, longer than MAX_NAME, NUL or another control character, a backslash, an
    absolute path, a drive (``C:``), a ``.`` or ``..`` component, a leading dot; ``/`` unless ``slash`` (then only
    between plain components, as in ``shakespeare/hamlet``)."""
    if not isinstance(name, str) or not name:
        raise UnsafeNameError(f"{what} must be a non-empty string, got {name!r}")
    shown = repr(name if len(name) <= 80 else name[:80] + "...")
    if len(name) > MAX_NAME:
        raise UnsafeNameError(f"{what} {shown} is longer than {MAX_NAME} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise UnsafeNameError(f"{what} {shown} holds a control character (NUL, newline, ...)")
    if "\\" in name:
        raise UnsafeNameError(f"{what} {shown} holds a backslash")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UnsafeNameError(f"{what} {shown} is an absolute path")
    parts = name.split("/")
    if len(parts) > 1 and not slash:
        raise UnsafeNameError(f"{what} {shown} holds a '/'")
    for part in parts:
        if part in ("", ".", "..") or part.startswith("."):
            raise UnsafeNameError(f"{what} {shown} holds an empty, '.', '..' or hidden path component")
    return name
