"""Who may ask the server what: API keys stored hashed, per-key scopes (which adapters, which admin endpoints) and
per-key rate limits (token buckets), so that serve/app.py only asks ``keys.authorise(header, scope)``.

A key file (``zephyra serve --api-key-file keys.txt``) holds one key a line, ``#`` comments:

    sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08  name=alice  adapters=python,chemistry  scopes=generate  rpm=60
    sha256:...  name=ops  scopes=generate,admin
    sk-plain-key-still-works                                                # every adapter, every scope

    zephyra privacy hash-key sk-secret          # prints sha256:<hex>: what to write in the file instead of the key

The first field is the key itself or ``sha256:<hex>`` of it (hex of SHA-256 over its UTF-8 bytes); a request's
``Authorization: Bearer KEY`` is hashed and compared with every entry in constant time, so the file need not
hold a secret. Options, each ``key=value`` (unknown ones are an error naming the line):

    name=      what the logs and errors call the key (default key-<line>); never the key
    adapters=  the adapters (model names) the key may use, comma-separated; ``base`` is always allowed and
               ``auto`` routes only among these (or to the base). Absent: every adapter
    scopes=    generate (chat, completions, models, feedback, the apps' routes), registry (GET /v1/registry),
               purge (POST /v1/admin/purge); ``admin`` = registry,purge; ``all``. Absent: all (as a bare key
               always had)
    rpm=       requests a minute (a token bucket refilled at rpm/60 a second); absent: the server's --rate-limit
    burst=     the bucket's size (default: rpm, at least 1)

Refusals are OpenAI's error object with one line: 401 (no or an unknown key), 403 (a model or an endpoint
outside the key's scope: ``permission_error``), 429 with ``Retry-After`` (the key's bucket is empty).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from .schema import BadRequest

SCOPES = ("generate", "registry", "purge")
SCOPE_SETS = {"admin": ("registry", "purge"), "all": SCOPES}
OPTIONS = ("name", "adapters", "scopes", "rpm", "burst")
HASHED = re.compile(r"sha256:([0-9a-fA-F]{64})")
ALWAYS = ("base",)  # what every key may ask for, whatever its adapters


def hash_key(key: str) -> str:
    """What a key file stores instead of the key: ``sha256:<hex>``."""
    if not isinstance(key, str) or not key.strip() or any(c.isspace() for c in key):
        raise ConfigError("an API key is one word with no spaces")
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


@dataclass(frozen=True)
class ApiKey:
    digest: bytes
    name: str
    scopes: frozenset[str] = frozenset(SCOPES)
    adapters: frozenset[str] | None = None  # None: every adapter
    rpm: float | None = None  # None: the server's default
    burst: int | None = None

    def may_use(self, model: str) -> bool:
        """May this key ask for ``model`` (a name, NAME@VERSION; "auto" is routed within the key's adapters)?"""
        name = model.partition("@")[0]
        return self.adapters is None or name in ALWAYS or name == "auto" or name in self.adapters


def _scopes(value: str, where: str) -> frozenset[str]:
    out: set[str] = set()
    for s in filter(None, value.split(",")):
        if s in SCOPE_SETS:
            out.update(SCOPE_SETS[s])
        elif s in SCOPES:
            out.add(s)
        else:
            raise ConfigError(f"{where}: unknown scope {s!r}; known: {', '.join([*SCOPES, *SCOPE_SETS])}")
    return frozenset(out)


def parse_key_line(line: str, where: str, default_name: str) -> ApiKey:
    """One line of a key file (without its comment) as an ApiKey; a bad option is a one-line ConfigError."""
    first, *options = line.split()
    m = HASHED.fullmatch(first)
    if first.startswith("sha256:") and m is None:
        raise ConfigError(f"{where}: 'sha256:' is followed by 64 hex digits (zephyra privacy hash-key KEY)")
    digest = bytes.fromhex(m.group(1)) if m else _digest(first)
    fields: dict[str, str] = {}
    for opt in options:
        key, eq, value = opt.partition("=")
        if not eq or key not in OPTIONS:
            raise ConfigError(f"{where}: {opt!r} is not an option; options: {', '.join(o + '=' for o in OPTIONS)}")
        fields[key] = value
    rpm = burst = None
    try:
        if "rpm" in fields:
            rpm = float(fields["rpm"])
        if "burst" in fields:
            burst = int(fields["burst"])
    except ValueError:
        raise ConfigError(f"{where}: rpm is a number and burst an integer") from None
    if (rpm is not None and not rpm > 0) or (burst is not None and burst < 1):
        raise ConfigError(f"{where}: rpm must be > 0 and burst >= 1")
    adapters = frozenset(filter(None, fields["adapters"].split(","))) if "adapters" in fields else None
    scopes = _scopes(fields["scopes"], where) if "scopes" in fields else frozenset(SCOPES)
    return ApiKey(digest, fields.get("name") or default_name, scopes, adapters, rpm, burst)


def read_key_file(path: str | Path) -> list[ApiKey]:
    """Every key of a key file (module notes); a missing file or a bad line is a one-line ConfigError."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read the key file {path}: {getattr(e, 'strerror', None) or e}") from None
    keys = []
    for n, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if line:
            keys.append(parse_key_line(line, f"{path} line {n}", f"key-{n}"))
    return keys


class RateLimiter:
    """A token bucket per key: ``rpm`` requests a minute, up to ``burst`` at once; thread-safe."""

    def __init__(self, clock=time.monotonic):
        self._buckets: dict[str, tuple[float, float]] = {}  # who -> (tokens, at)
        self._lock = threading.Lock()
        self._clock = clock

    def take(self, who: str, rpm: float, burst: int | None = None) -> float:
        """0.0 when a request may go now (a token is taken), else the seconds until one may."""
        size = float(burst or max(1, math.floor(rpm)))
        rate = rpm / 60.0
        with self._lock:
            now = self._clock()
            tokens, at = self._buckets.get(who, (size, now))
            tokens = min(size, tokens + (now - at) * rate)
            if tokens >= 1.0:
                self._buckets[who] = (tokens - 1.0, now)
                return 0.0
            self._buckets[who] = (tokens, now)
            return (1.0 - tokens) / rate


class KeyRing:
    """The server's keys (hashed), their scopes and their buckets. No keys: an open server (every scope but
    ``purge``, which needs a key; the default rate limit, if any, per client address)."""

    def __init__(self, keys: Iterable[ApiKey | str] = (), rate_limit: float | None = None, burst: int | None = None):
        self.keys: list[ApiKey] = []
        for i, k in enumerate(keys, 1):
            if isinstance(k, ApiKey):
                self.keys.append(k)
            elif k:
                self.keys.append(parse_key_line(k, f"key {i}", f"key-{i}") if k.startswith("sha256:")
                                 else ApiKey(_digest(k), f"key-{i}"))
        if rate_limit is not None and not rate_limit > 0:
            raise ConfigError(f"the rate limit is requests a minute > 0, got {rate_limit}")
        self.rate_limit, self.burst = rate_limit, burst
        self.limiter = RateLimiter()

    @classmethod
    def from_args(cls, keys: Sequence[str] = (), key_file: str | Path | None = None, **options) -> KeyRing:
        return cls([*keys, *(read_key_file(key_file) if key_file is not None else [])], **options)

    def __bool__(self) -> bool:
        return bool(self.keys)

    def authorise(self, header: str | None, scope: str = "generate") -> ApiKey | None:
        """The key ``header`` ("Bearer KEY") carries (None on an open server), with ``scope``; else a 401 or 403."""
        if not self.keys:
            if scope == "purge":
                raise BadRequest("purging needs a key with the purge (admin) scope; this server was started with "
                                 "no key (zephyra serve --api-key-file)", status=403, type="permission_error",
                                 code="permission_denied")
            return None
        scheme, _, key = (header or "").partition(" ")
        given = _digest(key.strip()) if scheme.lower() == "bearer" and key.strip() else b""
        found = None
        for k in self.keys:  # every entry compared, in constant time each: no early exit on a match
            if hmac.compare_digest(given, k.digest) and found is None:
                found = k
        if found is None:
            raise BadRequest("invalid or missing API key: send 'Authorization: Bearer KEY'", status=401,
                             code="invalid_api_key")
        if scope not in found.scopes:
            raise BadRequest(f"the key {found.name!r} has no {scope!r} scope (it has: "
                             f"{', '.join(sorted(found.scopes)) or 'none'})", status=403, type="permission_error",
                             code="permission_denied")
        return found

    def check_model(self, key: ApiKey | None, model: str) -> None:
        """A 403 when ``key`` may not use ``model``."""
        if key is not None and not key.may_use(model):
            raise BadRequest(f"the key {key.name!r} may not use the model {model!r}; it may use: "
                             f"{', '.join(['auto', *ALWAYS, *sorted(key.adapters or ())])}", status=403,
                             type="permission_error", param="model", code="model_not_allowed")

    def allowed(self, key: ApiKey | None, names: Iterable[str]) -> set[str] | None:
        """The adapters of ``names`` the key may use (None: all of them)."""
        if key is None or key.adapters is None:
            return None
        return {n for n in names if n.partition("@")[0] in key.adapters}

    def limit(self, key: ApiKey | None, client: str | None = None) -> None:
        """Take a token from the key's bucket (an open server: the client address's), or a 429 with
        ``Retry-After`` (whole seconds, at least 1)."""
        rpm = (key.rpm if key is not None else None) or self.rate_limit
        if rpm is None:
            return
        who = key.name if key is not None else f"client {client or '-'}"
        wait = self.limiter.take(who, rpm, (key.burst if key is not None else None) or self.burst)
        if wait > 0:
            raise BadRequest(f"rate limit of {rpm:g} requests a minute reached for {who}; retry in {math.ceil(wait)} s",
                             status=429, type="rate_limit_error", code="rate_limit_exceeded",
                             headers={"Retry-After": str(max(1, math.ceil(wait)))})
