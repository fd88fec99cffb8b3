"""Atomic writes and content hashes: nothing we write is ever left half-written.

Every artifact is written to a temporary path beside its final one and renamed into place, so a crash, a
SIGKILL or a full disk leaves either the old artifact or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import glob
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
        os.fchmod(fd, 0o666 & ~_UMASK)  # the usual permissions, not mkstemp's 0600
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


def _read_umask() -> int:
    mask = os.umask(0)  # the only way to read it; done once, at import (not while threads write files)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def _exchange_function():
    """libc's ``renameat2`` when this system has it (Linux, glibc 2.28+), else None."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return fn


_RENAMEAT2 = _exchange_function()
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap ``a`` and ``b`` in one atomic step (renameat2 RENAME_EXCHANGE); False where the system or the file
    system cannot (the caller falls back to two renames)."""
    if _RENAMEAT2 is None:
        return False
    import ctypes

    if _RENAMEAT2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: not here
        return False
    raise OSError(err, os.strerror(err), str(b))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clean_leftovers(final: Path) -> None:
    """Remove the temporaries (and moved-aside old copies) a killed writer of ``final`` left beside it; a dead
    writer's old copy is put back first if ``final`` itself is missing (the two-rename fallback's window)."""
    for p in sorted(final.parent.glob(f".{glob.escape(final.name)}.*")):
        parts = p.name[len(final.name) + 2:].split(".")
        pid = parts[0].removeprefix("old-")
        if not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        if parts[0].startswith("old-") and not final.exists():
            os.replace(p, final)
        elif p.is_dir() and (parts[-1] == "tmp" or parts[0].startswith("old-")):
            shutil.rmtree(p, ignore_errors=True)


@contextlib.contextmanager
def atomic_directory(final: str | os.PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Yields a fresh temporary directory beside ``final``; on success it replaces ``final`` in one step: an
    atomic exchange where the system has one (Linux renameat2), so ``final`` is always the old or the new
    directory, never absent; elsewhere two renames (the old one moved aside first, put back by the next writer if
    a kill fell between them). The old copy is removed after. On any error the temporary is removed and ``final``
    is untouched; temporaries left by a killed writer are removed by the next one. The directory gets the
    usual permissions (umask), not mkdtemp's 0700."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    _clean_leftovers(final)
    if final.exists() and not overwrite:
        raise FileExistsError(f"{final} exists (pass overwrite to replace it)")
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.{os.getpid()}.", suffix=".tmp", dir=final.parent))
    try:
        os.chmod(tmp, 0o777 & ~_UMASK)
        yield tmp
        if final.exists() and _exchange(tmp, final):
            shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old directory
            return
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
