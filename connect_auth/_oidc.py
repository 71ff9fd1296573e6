"""Finding the caller's Vercel credential.

Order: explicit argument (call, then client) > request-scoped value (set by
`oidc_token_scope` or the middlewares from ``x-vercel-oidc-token``) > the file
``VERCEL_OIDC_TOKEN_FILE`` names (re-read when it changes) >
``VERCEL_OIDC_TOKEN`` > ``VERCEL_OIDC_TOKEN`` in the nearest ``.env.local``.
The credential is never cached across lookups (it rotates on Vercel); only its
digest and expiry are memoized, keyed by the token string itself.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime
import hashlib
import inspect
import io
import json
import os
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, NamedTuple

from ._errors import OidcTokenError
from ._protocol import header_safe

__all__ = [
    "Credential",
    "SecretStr",
    "TokenSource",
    "asend_value",
    "credential_arg",
    "dotenv_folders",
    "hidden",
    "jwt_claims",
    "jwt_exp",
    "jwt_segment",
    "oidc_token_scope",
    "parse_dotenv",
    "recent_credential",
    "resolve_credential",
    "send_value",
]

_ENV = "VERCEL_OIDC_TOKEN"
_FILE_ENV = "VERCEL_OIDC_TOKEN_FILE"
_SCOPED = "the x-vercel-oidc-token request header"
_scoped: ContextVar[str | None] = ContextVar("connect_auth_oidc_token", default=None)
_credentials_by_value: dict[str, tuple[Credential, float | None]] = {}
_CREDENTIALS_MAX = 256
_dotenv_cache: dict[Path, tuple[int, str | None]] = {}


class SecretStr(str):
    """A credential as a ``str`` whose ``repr`` never shows it: captured traceback
    locals (pytest ``--showlocals``, Sentry) and debuggers print ``repr``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'<hidden credential>'"


def hidden(value: str | None) -> str | None:
    """``value`` as a `SecretStr` (``None`` stays ``None``)."""
    return value if value is None or type(value) is SecretStr else SecretStr(value)


class TokenSource(SecretStr):
    """A ``vercel_token`` given as a function, standing in for its credential.

    It is a string, unique per function, so the cache keys its tokens under it and
    the cache-hit path treats it like any explicit credential without calling the
    function; `send_value` calls the function when a request to Connect is sent.
    """

    source: Callable[[], object]  # (a str subclass cannot have slots of its own)

    def __new__(cls, source: Callable[[], object]) -> TokenSource:
        made = super().__new__(cls, f"connect_auth-token-source:{uuid.uuid4().hex}")
        made.source = source
        return made

    def __repr__(self) -> str:
        return "<vercel_token function>"


_sources: dict[Callable[[], object], TokenSource] = {}
_SOURCES_MAX = 256


def credential_arg(value: object, name: str = "vercel_token") -> str | None:
    """A ``vercel_token`` argument checked: None, a `SecretStr`, or the `TokenSource`
    of a function (one per function: equal bound methods share theirs)."""
    if value is None or type(value) is TokenSource:
        return value
    if isinstance(value, str):
        if not value:
            raise ValueError(f"{name} must be a non-empty string, a function or None")
        return hidden(value)
    if callable(value):
        found = _sources.get(value)
        if found is None:
            if len(_sources) >= _SOURCES_MAX:
                _sources.clear()
            found = _sources[value] = TokenSource(value)
        return found
    raise TypeError(
        f"{name} must be a string, a function returning one, or None, not {type(value).__name__}"
    )


def send_value(cred: Credential, *, now: float) -> Credential:
    """The credential to put on a request: a `TokenSource`'s function is called now
    (it must be a sync function here) and its answer checked like any credential."""
    if type(cred.value) is not TokenSource:
        return cred
    value = cred.value.source()
    if inspect.isawaitable(value):
        close = getattr(value, "close", None)
        if callable(close):
            close()  # a coroutine never awaited warns
        raise TypeError(
            "vercel_token is an async function: call the async API (aget_token, "
            "arevoke_token, ...) or pass a sync function"
        )
    return _sent(value, cred.digest, now)


async def asend_value(cred: Credential, *, now: float) -> Credential:
    """`send_value` for async calls: the function may be sync or async."""
    if type(cred.value) is not TokenSource:
        return cred
    value = cred.value.source()
    if inspect.isawaitable(value):
        value = await value
    return _sent(value, cred.digest, now)


def _sent(value: object, digest: str, now: float) -> Credential:
    source = "the vercel_token function"
    if not isinstance(value, str) or not value.strip():
        raise OidcTokenError(
            f"{source} returned {type(value).__name__}, not a non-empty string",
            code="oidc_token_missing",
        )
    value = SecretStr(value.strip())
    _check_credential(value, source)
    exp = jwt_exp(value)
    if exp is not None and exp <= now:
        raise OidcTokenError(f"{source} returned an expired token", code="oidc_token_expired")
    return Credential(value, digest)


class Credential(NamedTuple):
    """A Vercel credential and the digest that scopes cache entries to it."""

    value: str
    digest: str

    def __repr__(self) -> str:
        return f"Credential(digest={self.digest[:12]!r}...)"


_last_seen: tuple[str, tuple[Credential, float | None]] = ("", (Credential("", ""), None))


@contextlib.contextmanager
def oidc_token_scope(token: str | None) -> Iterator[None]:
    """Use ``token`` as the Vercel OIDC token for calls made inside this block.

    Scoped to the current thread or task (a ``ContextVar``), as Vercel's runtime
    scopes the ``x-vercel-oidc-token`` header to one incoming request.

    Args:
        token: the request's Vercel OIDC token (its ``x-vercel-oidc-token`` header);
            ``None`` hides any scoped token for the block.
    """
    if token is not None and (not isinstance(token, str) or not token.strip()):
        raise ValueError("the scoped OIDC token must be a non-empty string or None")
    reset = _scoped.set(hidden(token))
    try:
        yield
    finally:
        _scoped.reset(reset)


def recent_credential(explicit: str | None, now: float) -> Credential | None:
    """The credential if it is the one seen last and still unexpired, else None.

    The cache-hit path of the adapters: one env read and one comparison. Any
    other case (a new token, an expired one, nothing set) returns None and is
    left to `resolve_credential`.
    """
    if explicit is not None:
        value: str | None = explicit
    elif (value := _scoped.get()) is None:
        value = _env_token()
    last = _last_seen
    if value is None or value != last[0]:
        return None
    cred, exp = last[1]
    return cred if exp is None or exp > now else None


#: Renews a credential from the environment that is missing or expired (local
#: development, see `_local_refresh`): given the time and the lookup's own error, which
#: it raises when it does not apply.
Refresh = Callable[[float, OidcTokenError], str]


def resolve_credential(
    explicit: str | None, *, now: float, refresh: Refresh | None = None
) -> Credential:
    """The credential to send, or `OidcTokenError` saying how to get one. ``refresh``
    renews one from the environment, the token file or ``.env.local`` that is missing
    or expired (never an explicit or request-scoped one)."""
    source: str | None  # None: the environment, named only when a message needs it
    if explicit is None:
        scoped = _scoped.get()
        # The common case inline: this runs on every cached call.
        value = scoped if scoped is not None else _env_token()
        source = _SCOPED if scoped is not None else None
        if not value:
            try:
                value, source = _lookup(None, fresh_file=False)
            except OidcTokenError as missing:
                if refresh is None:
                    raise
                return _refreshed(refresh, now, missing)
    elif type(explicit) is TokenSource:
        return _credential_of(explicit)[0]  # its function is called when a request is sent
    else:
        value, source = explicit, "the vercel_token argument"
    last = _last_seen
    if value == last[0]:
        cred, exp = last[1]
    else:
        _check_credential(value, source or _env_source())
        cred, exp = _credential_of(value)
    if exp is not None and exp <= now:
        if source in (None, ".env.local"):
            # The file may have been re-pulled, or the env var replaced: look once more.
            value, source = _lookup(explicit, fresh_file=True)
            _check_credential(value, source)
            cred, exp = _credential_of(value)
        if exp is not None and exp <= now:
            when = datetime.datetime.fromtimestamp(exp, datetime.UTC).isoformat()
            expired = OidcTokenError(
                f"the Vercel OIDC token from {source or _env_source()} expired at {when}; "
                "run `vercel env pull` to get a fresh one (development tokens last ~12 h)",
                code="oidc_token_expired",
            )
            if refresh is None or explicit is not None or source == _SCOPED:
                raise expired
            return _refreshed(refresh, now, expired)
    return cred


def _refreshed(refresh: Refresh, now: float, why: OidcTokenError) -> Credential:
    value = refresh(now, why)
    _check_credential(value, "the refreshed Vercel OIDC token")
    return _credential_of(value)[0]


# os.environ decodes a fresh copy of the ~1 kB JWT on every read. Where the
# environment is bytes (POSIX), os.environb returns the same bytes object until the
# variable changes, so the decoded string is remembered per bytes object: the same
# answer as os.environ.get, without the copy.
_environb: Mapping[bytes, bytes] | None = os.environb if os.supports_bytes_environ else None
_ENV_BYTES = os.fsencode(_ENV)
_FILE_ENV_BYTES = os.fsencode(_FILE_ENV)
_env_seen: tuple[object, str | None] = (object(), None)
_file_seen: tuple[str, int, int, str] = ("", 0, 0, "")


def _env_source() -> str:
    return _FILE_ENV if os.environ.get(_FILE_ENV, "").strip() else _ENV


def _file_token() -> str | None:
    """The token in the file ``VERCEL_OIDC_TOKEN_FILE`` names, read again whenever the
    file changes (a mounted token is rotated in place); None when the variable is unset.
    A named file that cannot be read, or is empty, is refused rather than skipped."""
    global _file_seen
    path = os.environ.get(_FILE_ENV, "").strip()
    if not path:
        return None
    try:
        stat = os.stat(path)
        seen = _file_seen
        if seen[0] == path and seen[1] == stat.st_mtime_ns and seen[2] == stat.st_size:
            return seen[3]
        value = _stripped(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise OidcTokenError(
            f"{_FILE_ENV} names {path}, which cannot be read ({type(exc).__name__}); "
            "point it at the file holding the Vercel OIDC token, or unset it",
            code="oidc_token_missing",
        ) from None
    if not value:
        raise OidcTokenError(
            f"{_FILE_ENV} names {path}, which is empty; it must hold the Vercel OIDC token",
            code="oidc_token_missing",
        )
    _file_seen = (path, stat.st_mtime_ns, stat.st_size, value)
    return value


def _env_token() -> str | None:
    """The token the environment gives: ``VERCEL_OIDC_TOKEN_FILE``, else ``VERCEL_OIDC_TOKEN``."""
    global _env_seen
    environb = _environb
    if environb is None:  # Windows: the environment is text already
        return _file_token() or _stripped(os.environ.get(_ENV))
    if environb.get(_FILE_ENV_BYTES) is not None:
        from_file = _file_token()
        if from_file is not None:
            return from_file
    raw = environb.get(_ENV_BYTES)
    seen = _env_seen
    if raw is seen[0] and raw is not None:
        return seen[1]
    value = _stripped(os.environ.get(_ENV))
    _env_seen = (raw, value)
    return value


def _stripped(value: str | None) -> str | None:
    """An env or file value without the whitespace a paste or an editor leaves around it."""
    return None if value is None else SecretStr(value.strip())


def _check_credential(value: str, source: str) -> None:
    """Refuse a credential that cannot travel in an HTTP header, or is not a JWT (as
    Vercel's SDK does: Connect would refuse it anyway), naming where it came from and
    never what it holds."""
    if not header_safe(value):
        raise OidcTokenError(
            f"the Vercel OIDC token from {source} contains spaces, line breaks, control or "
            "non-ASCII characters; set it to the token alone (run `vercel env pull` again)",
            code="oidc_token_invalid",
        )
    if jwt_segment(value, 1) is None:
        raise OidcTokenError(
            f"the Vercel OIDC token from {source} is not a JWT (three base64url parts, "
            "the second a JSON object); use the token `vercel env pull` writes or "
            "Vercel's runtime provides",
            code="oidc_token_invalid",
        )


def parse_dotenv(text: str) -> dict[str, str]:
    """``KEY=value`` lines as ``vercel env pull`` writes them, read by python-dotenv
    (quotes, escapes, inline comments, ``export``); keys without a value are left out."""
    import dotenv  # only when a .env.local is read

    values = dotenv.dotenv_values(stream=io.StringIO(text.removeprefix("\ufeff")))
    return {k: v for k, v in values.items() if v is not None}


_ROOT_MARKERS = (".vercel", ".git", "pyproject.toml")


def dotenv_folders(start: Path, home: Path, is_root: Callable[[Path], bool]) -> list[Path]:
    """The folders whose ``.env.local`` may hold the credential, nearest first.

    ``start`` and its parents up to the project root (the nearest folder that
    ``is_root``: it has ``.vercel/``, ``.git/`` or ``pyproject.toml``), never above
    ``home``. With no project root in reach, ``start`` alone: a file planted in a
    shared parent such as ``/tmp`` is never read.
    """
    walked: list[Path] = []
    for folder in (start, *start.parents):
        walked.append(folder)
        if is_root(folder):
            return walked
        if folder == home:
            break
    return [start]


def _is_project_root(folder: Path) -> bool:
    return any((folder / marker).exists() for marker in _ROOT_MARKERS)


def _lookup(explicit: str | None, *, fresh_file: bool) -> tuple[str, str]:
    if explicit is not None:
        return explicit, "the vercel_token argument"
    scoped = _scoped.get()
    if scoped is not None:
        return scoped, _SCOPED
    env = _env_token()
    if env:
        return env, _env_source()
    found = _from_dotenv(Path.cwd(), fresh=fresh_file)
    if found:
        return found, ".env.local"
    raise OidcTokenError(
        "no Vercel OIDC token found: set VERCEL_OIDC_TOKEN, pass vercel_token=, "
        "or run `vercel link` then `vercel env pull` to write it to .env.local",
        code="oidc_token_missing",
    )


def _from_dotenv(start: Path, *, fresh: bool) -> str | None:
    for folder in dotenv_folders(start, Path.home(), _is_project_root):
        path = folder / ".env.local"
        try:
            stamp = path.stat().st_mtime_ns
        except OSError:
            continue
        cached = _dotenv_cache.get(path)
        if cached is None or cached[0] != stamp or fresh:
            try:
                text = path.read_text(encoding="utf-8")
                value = _stripped(parse_dotenv(text).get(_ENV)) or None
            except (OSError, UnicodeDecodeError):
                value = None
            cached = (stamp, value)
            _dotenv_cache[path] = cached
        return cached[1]
    return None


def _credential_of(token: str) -> tuple[Credential, float | None]:
    """``(credential, exp)`` for a token, memoized; ``exp`` is None for non-JWTs."""
    global _last_seen
    last = _last_seen
    # os.environ hands out a new string each time: comparing with the last one
    # is cheaper than hashing a ~1 kB JWT for the dict lookup.
    if token == last[0]:
        return last[1]
    facts = _credentials_by_value.get(token)
    if facts is None:
        if len(_credentials_by_value) >= _CREDENTIALS_MAX:
            _credentials_by_value.clear()
        facts = (Credential(token, hashlib.sha256(token.encode()).hexdigest()), jwt_exp(token))
        _credentials_by_value[token] = facts
    _last_seen = (token, facts)
    return facts


def jwt_segment(token: str, index: int) -> dict[str, Any] | None:
    """Segment ``index`` of a compact JWT (0: header, 1: payload) as a JSON object,
    unverified; None when ``token`` is not three segments or that one is not an object."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    part = parts[index]
    try:
        value = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (ValueError, binascii.Error, RecursionError):  # deep nesting: not a JWT of ours
        return None
    return value if isinstance(value, dict) else None


def jwt_claims(token: str) -> Mapping[str, Any]:
    """The payload of a compact JWT, unverified (for its expiry and team, never for a
    security decision); empty when ``token`` is not a JWT."""
    return jwt_segment(token, 1) or {}


def jwt_exp(token: str) -> float | None:
    """A compact JWT's ``exp`` (seconds since the epoch), unverified; None when it has
    none or is not a JWT."""
    exp = jwt_claims(token).get("exp")
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None
