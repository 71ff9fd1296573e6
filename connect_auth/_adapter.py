"""What every ConnectAuth adapter shares: settings, where a token may go, tokens
from the one hit path, the refresh rule, and body replay.

The refusal flow itself is `connect_auth._refusal`; the client modules
(`connect_auth.httpx`, `.httpx2`, `.requests`, `.niquests`, `.aiohttp`) only bind
it to their library.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal
from urllib.parse import urlsplit

from . import _api
from ._api import default_client
from ._client import ConnectClient
from ._config import is_loopback_host
from ._models import SubjectLike, TokenRequest, TokenResponse, VercelToken, coerce_subject
from ._observe import refused
from ._oidc import credential_arg
from ._refusal import ReadBody, verdict

__all__ = [
    "Armed",
    "ConnectAuthBase",
    "Rewind",
    "may_attach",
    "no_rewind",
    "origin_of",
    "parse_hosts",
    "rewinder",
    "same_origin",
    "slack_invalid_auth",
]

log = logging.getLogger("connect_auth.adapters")

#: Decides from ``(status, body)`` that a response means "bad token" (opt-in).
RefreshPredicate = Callable[[int, bytes], bool]
#: Puts a request body back where it started; ``None`` when it cannot be resent.
Rewind = Callable[[], None]
#: What arming a request gave it: the token it carries, and how to rewind its body.
Armed = tuple[str, Rewind | None]


def origin_of(url: str) -> tuple[str, str, int | None]:
    """``(scheme, host, port)`` with default ports made explicit."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


def same_origin(a: str, b: str) -> bool:
    """Whether two URLs share scheme, host and port."""
    return a == b or origin_of(a) == origin_of(b)


def parse_hosts(hosts: Iterable[str] | None) -> frozenset[tuple[str, int | None]] | None:
    """``hosts=`` as ``(host, port)`` pairs; port ``None`` means the scheme's default."""
    if hosts is None:
        return None
    if isinstance(hosts, str):
        raise TypeError(f"hosts must be a collection of host names: write hosts=[{hosts!r}]")
    pairs = frozenset(_host_entry(h) for h in hosts)
    if not pairs:
        raise ValueError("hosts must be a non-empty collection of host names")
    return pairs


def _host_entry(entry: object) -> tuple[str, int | None]:
    hint = (
        f"hosts entries are host names with an optional port, like 'api.slack.com' or "
        f"'api.slack.com:8443', not {entry!r}"
    )
    if not isinstance(entry, str) or not entry.strip():
        raise ValueError(hint)
    text = entry.strip().lower()
    if "://" in text or any(c in text for c in "/?#@\\ "):
        raise ValueError(hint + ": write hosts=['api.slack.com']")
    if text.startswith("["):  # [::1]:8443
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else None
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:  # a name, an IPv4 address or a bare IPv6 address
        host, port_text = text, None
    if port_text is None:
        return host.rstrip("."), None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(hint)
    return host.rstrip("."), int(port_text)


def may_attach(
    scheme: str, host: str, port: int | None, hosts: frozenset[tuple[str, int | None]] | None
) -> bool:
    """The attach decision: a token travels over https, or plain http to loopback,
    and only to ``hosts`` when given."""
    if hosts is None and scheme == "https":
        return True  # the common case, decided first
    if not _safe_transport(scheme, host):
        return False
    if hosts is None:
        return True
    host = host.lower().rstrip(".")
    default = 443 if scheme == "https" else 80
    port = port or default
    return (host, port) in hosts or (port == default and (host, None) in hosts)


def _safe_transport(scheme: str, host: str) -> bool:
    return scheme == "https" or (scheme == "http" and _loopback(host.lower().rstrip(".")))


@functools.lru_cache(maxsize=256)
def _loopback(host: str) -> bool:
    """`is_loopback_host`, remembered: it parses IP addresses, and plain-http
    requests to the emulator ask on every request."""
    return is_loopback_host(host)


def rewinder(body: object) -> Rewind | None:
    """How to resend ``body`` byte for byte, or ``None`` for a one-shot stream.

    Bytes and str are resent as they are; a seekable file is rewound to the
    position it had now (call this before the first send); anything else
    (generators, iterators, async iterators, pipes) cannot be replayed.
    """
    if body is None or isinstance(body, bytes | bytearray | str | memoryview):
        return no_rewind
    seekable = getattr(body, "seekable", None)
    if callable(seekable) and hasattr(body, "tell") and hasattr(body, "seek"):
        try:
            if seekable():
                start = body.tell()
                return lambda: body.seek(start)
        except (OSError, ValueError):
            return None
    return None


def no_rewind() -> None:
    """The rewind of a body that needs none (bytes, str, empty)."""
    return None


def slack_invalid_auth(status: int, body: bytes) -> bool:
    """A ``refresh_if`` predicate for Slack, which reports a dead token as HTTP 200 with
    ``{"ok": false, "error": "invalid_auth"}`` (or ``token_expired``/``token_revoked``).

    Args:
        status: the response's HTTP status.
        body: the response body (JSON of at most 64 KiB).

    Returns:
        Whether the body says the token is dead.
    """
    # Every Slack answer is read on this path: skip the JSON parse unless it can match.
    if status != 200 or b'"ok"' not in body or b"false" not in body:
        return False
    try:
        data = json.loads(body)
    except ValueError:
        return False
    return (
        isinstance(data, dict)
        and data.get("ok") is False
        and data.get("error") in ("invalid_auth", "token_expired", "token_revoked")
    )


class ConnectAuthBase:
    """Settings and decisions shared by every ``ConnectAuth``; its arguments are
    described once, in `connect_auth._docs.ARGS`, and listed by each adapter class."""

    def __init__(
        self,
        connector: str,
        *,
        subject: SubjectLike,
        installation_id: str | None = None,
        audience: Sequence[str] | None = None,
        scopes: Sequence[str] | None = None,
        resources: Sequence[str] | None = None,
        authorization_details: Sequence[dict[str, Any]] | None = None,
        validity_buffer_ms: float | None = None,
        vercel_token: VercelToken | None = None,
        client: ConnectClient | None = None,
        refresh_on: Iterable[int] = (401,),
        hosts: Iterable[str] | None = None,
        refresh_if: RefreshPredicate | Literal["auto"] | None = "auto",
    ) -> None:
        if client is not None and not isinstance(client, ConnectClient):
            raise TypeError("client must be a connect_auth.ConnectClient or None")
        if validity_buffer_ms is None and client is not None:
            validity_buffer_ms = client.validity_buffer_ms
        # Built once: the cache-hit path only adds the credential digest.
        self.request = TokenRequest.build(
            connector,
            subject=coerce_subject(subject),
            installation_id=installation_id,
            audience=audience,
            scopes=scopes,
            resources=resources,
            authorization_details=authorization_details,
            validity_buffer_ms=validity_buffer_ms,
        )
        self.vercel_token = credential_arg(vercel_token)
        if isinstance(refresh_on, int | str):
            raise TypeError("refresh_on must be a collection of status codes, e.g. (401,)")
        codes = frozenset(refresh_on)
        if not all(
            isinstance(c, int) and not isinstance(c, bool) and 100 <= c <= 599 for c in codes
        ):
            raise ValueError("refresh_on must hold HTTP status codes between 100 and 599")
        allowed = parse_hosts(hosts)
        auto = isinstance(refresh_if, str) and refresh_if == "auto"
        if refresh_if is not None and not auto and not callable(refresh_if):
            raise TypeError("refresh_if must be a callable (status, body) -> bool, 'auto' or None")
        self._client = client
        self.refresh_on = codes
        self.hosts = allowed
        self.refresh_if: RefreshPredicate | None = None if auto else refresh_if  # type: ignore[assignment]
        # "auto" is settled by the first token's connector type (see _resolve_auto_rule).
        self._auto_rule = auto
        self._warned_plain_http = False

    def __repr__(self) -> str:
        return (
            f"ConnectAuth(connector={self.request.connector!r}, "
            f"subject={type(self.request.params.subject).__name__})"
        )

    @property
    def client(self) -> ConnectClient:
        """The client serving tokens (the process-wide default unless one was given)."""
        return self._client if self._client is not None else default_client()

    def attaches(self, scheme: str, host: str, port: int | None) -> bool:
        """Whether a request to this origin gets a token (`may_attach`); says once in
        the log when plain http keeps a token off a request."""
        if may_attach(scheme, host, port, self.hosts):
            return True
        if not self._warned_plain_http and not _safe_transport(scheme, host):
            self._warned_plain_http = True
            log.warning(
                "not attaching the %s token to a plain-http request to %s; use https",
                self.request.connector,
                host,
            )
        return False

    def token(self) -> str:
        """A valid token, from the cache or a shared fetch (blocks this thread)."""
        # Not the property, and the default client read directly: the hot path.
        client = self._client or _api._default or default_client()
        if not self._auto_rule:
            hit = client.cached(self.request, self.vercel_token)
            if hit is not None:
                return hit.token
        self._before_blocking_fetch()
        return self._resolve_auto_rule(client.token_for(self.request, self.vercel_token))

    def cached_token(self) -> str | None:
        """The cached token if fresh and the refresh rule is settled, else None; no I/O.
        For async callers: a refresh ahead of expiry starts on their event loop."""
        if self._auto_rule:
            return None
        client = self._client or _api._default or default_client()
        hit = client.cached(self.request, self.vercel_token, on_loop=True)
        return None if hit is None else hit.token

    async def atoken(self) -> str:
        """A valid token without blocking the event loop; a refresh ahead of expiry
        runs on this loop."""
        token = self.cached_token()
        if token is not None:
            return token
        client = self._client or _api._default or default_client()
        return self._resolve_auto_rule(await client.atoken_for(self.request, self.vercel_token))

    def _before_blocking_fetch(self) -> None:
        """Called when `token` may block this thread on a fetch (a hook for subclasses)."""

    def _resolve_auto_rule(self, response: TokenResponse) -> str:
        """Settle ``refresh_if="auto"`` from the connector type Connect reports (once)."""
        if self._auto_rule:
            self.refresh_if = slack_invalid_auth if response.connector.type == "slack" else None
            self._auto_rule = False
        return response.token

    def arm(self, request: Any) -> Armed | None:
        """Put a token on ``request`` if it gets one (the attach decision), remembering
        how to rewind its body; None when it goes out without a token."""
        if not self.attaches_to(request):
            return None
        rewind = self.rewinder(request)  # before the send moves a file's position
        token = self.token()
        self.set_token(request, token)
        return token, rewind

    async def aarm(self, request: Any) -> Armed | None:
        """`arm` without blocking the event loop."""
        if not self.attaches_to(request):
            return None
        rewind = self.rewinder(request)
        token = self.cached_token() or await self.atoken()
        self.set_token(request, token)
        return token, rewind

    def attaches_to(self, request: Any) -> bool:
        """Whether ``request`` gets a token: `attaches` on its origin. An https request
        with no ``hosts=`` needs only its scheme (`may_attach` says yes to it first),
        which spares reading its host and port on every request."""
        scheme = self.scheme_of(request)
        if scheme == "https" and self.hosts is None:
            return True
        return self.attaches(scheme, *self.host_and_port(request))

    def scheme_of(self, request: Any) -> str:
        """The request URL's scheme, lower case (each client's binding says)."""
        raise NotImplementedError

    def host_and_port(self, request: Any) -> tuple[str, int | None]:
        """The request URL's host and port (each client's binding says)."""
        raise NotImplementedError

    def rewinder(self, request: Any) -> Rewind | None:
        """How to send ``request``'s body again (each client's binding says)."""
        raise NotImplementedError

    def may_refuse(self, status: int) -> bool:
        """Whether an answer with this status can mean a refused token: its status is
        in ``refresh_on``, or ``refresh_if`` has a body to look at. When not, the
        answer goes to the caller as it is (the common case, decided first)."""
        return status in self.refresh_on or self.refresh_if is not None

    def refused(self, response: Any) -> bool:
        """Whether an answer that `may_refuse` is a refusal (`verdict`); when
        ``refresh_if`` needs the body, at most a bounded one is read in this thread."""
        found = verdict(self, response)
        if isinstance(found, bool):
            return found
        return self._judged(found, self.read_body(found))

    async def arefused(self, response: Any) -> bool:
        """`refused` without blocking the event loop."""
        found = verdict(self, response)
        if isinstance(found, bool):
            return found
        return self._judged(found, await self.aread_body(found))

    def _judged(self, read: ReadBody, body: bytes | None) -> bool:
        predicate = self.refresh_if
        return body is not None and predicate is not None and bool(predicate(read.status, body))

    def read_body(self, read: ReadBody) -> bytes | None:
        """The body ``read`` asks for, or None (each client's binding says)."""
        raise NotImplementedError

    async def aread_body(self, read: ReadBody) -> bytes | None:
        """`read_body` on an event loop (each client's binding says)."""
        raise NotImplementedError

    def discard(self, sent_token: str) -> None:
        """Forget ``sent_token`` if the cache still holds it (one refresh per bad token)."""
        self.client.invalidate(self.request, sent_token, self.vercel_token)
        refused(self.request.connector)
        log.info("provider refused the token for %s; refreshing", self.request.connector)

    # -- what most clients' bindings share (see connect_auth._refusal.Binding) ----------

    def set_token(self, request: Any, token: str) -> None:
        """Put ``Authorization: Bearer <token>`` on the request."""
        request.headers["Authorization"] = "Bearer " + token

    def status(self, response: Any) -> int:
        """The response's status code."""
        return int(response.status_code)

    def body_headers(self, response: Any) -> tuple[str | None, str | None]:
        """The response's ``Content-Type`` and ``Content-Length``, or None each."""
        headers = response.headers
        return headers.get("content-type"), headers.get("content-length")

    def not_resent(self, why: str) -> None:
        """Say in the log why a refused request is handed back instead of resent."""
        log.warning(
            "not resending the request to the %s provider after a "
            "refused token: %s; a fresh token is ready for the next request",
            self.request.connector,
            why,
        )
