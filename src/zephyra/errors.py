"""The one error base class of the project, and the CLI's one exit-code policy.

Every error we raise for something the *user* can fix (bad input, a wrong config key, a missing or foreign
artifact, a request that cannot be served) is a ``ZephyraError``: its message is one line naming the problem.
The CLI prints ``error: <message>`` on stderr and exits with ``EXIT_USER`` (2, as click does for a bad option);
anything else is a bug and keeps its traceback (exit 1). A leaf module: it imports nothing, so every layer,
the model included, may use it.
"""

from __future__ import annotations

EXIT_USER = 2  # bad input, settings or artifacts: `error: ...` on stderr
EXIT_INTERRUPTED = 130  # Ctrl-C


class ZephyraError(Exception):
    """Something the user can fix; the message is one line naming the problem."""

    exit_code = EXIT_USER


class ConfigError(ZephyraError, ValueError):
    """A setting that does not fit its schema: unknown key, wrong type, value out of range."""


class DataError(ZephyraError, ValueError):
    """Missing or unusable data: a dataset, a split, a file, a line."""


class ArtifactError(ZephyraError, ValueError):
    """An artifact directory (model, adapter, router, checkpoint) missing, corrupt, or made for another base."""


class RequestError(ZephyraError, ValueError):
    """A request that cannot be served: an empty prompt, bad messages, an unknown adapter, bad sampling settings."""


class UnsafeNameError(ZephyraError, ValueError):
    """A name that would become a path outside its directory (``../``, an absolute path, NUL, a backslash):
    refused wherever a name (adapter, registry version, conversation id, user id) becomes a path (io.safe_name)."""


def one_line(e: BaseException) -> str:
    """The first line of an error's message (or its type when it has none)."""
    text = str(e).strip()
    if isinstance(e, OSError) and e.filename is not None and e.strerror:
        text = f"{e.filename}: {e.strerror.lower()}"  # "x.yaml: no such file or directory"
    return text.splitlines()[0] if text else type(e).__name__


def is_user_error(e: BaseException) -> bool:
    """What the CLI reports as ``error: ...`` (exit 2) rather than as a traceback: our errors, and the operating
    system's refusals of a path the user gave (no such file, permission denied, a directory, not one)."""
    return isinstance(e, (ZephyraError, FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError,
                          NotADirectoryError))
