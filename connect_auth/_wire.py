"""The calls to the Connect API: one attempt bounded as a whole, retried within a deadline.

Sync calls share one ``httpx.Client`` per process; async calls share one
``httpx.AsyncClient`` per event loop (asyncio or trio, see `_pools`). After
``os.fork()`` the child opens connections of its own: the parent's are never used
or closed there, since both would talk on one socket.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import ssl
import threading
import time
from collections.abc import Callable, Generator, Iterable
from contextvars import ContextVar
from typing import Any, TypeVar

import anyio
import httpx

from ._errors import ConnectError, ConnectResponseError
from ._models import TokenResponse
from ._observe import Report, current_report, reporting
from ._oidc import Credential, asend_value, send_value
from ._pools import LoopPools
from ._protocol import (
    TRANSIENT_STATUSES,
    error_from_response,
    parse_retry_after,
    parse_token_response,
)
from ._retry import RetryPolicy, TransientFailure
from ._version import __version__

__all__ = ["Bearer", "CallPlan", "ConnectWire", "accept_any", "parse_token"]

log = logging.getLogger("connect_auth.tokens")

T = TypeVar("T")
OnSuccess = Callable[[httpx.Response], T]
#: Everything one call sends, how its answer is read, what reports it and where it goes
#: (None: the client's base URL): the arguments of `ConnectWire.call`.
CallPlan = tuple[str, str, dict[str, Any] | None, Credential, OnSuccess[T], str, Report, str | None]

# Objects a fork left behind in the child: kept referenced so that garbage
# collection never closes them (a TLS close would write on the parent's socket).
_kept_from_parent: list[object] = []


class ConnectWire:
    """Sends Connect API calls; holds the HTTP clients, nothing about tokens."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float,
        retry: RetryPolicy,
        transport: httpx.BaseTransport | None,
        async_transport: httpx.AsyncBaseTransport | None,
    ) -> None:
        self.base_url = base_url
        self._timeout = timeout
        self._retry = retry
        self._transport = transport
        self._async_transport = async_transport
        self._random = random.Random()
        self._ssl: ssl.SSLContext | None = None
        self._lock = threading.Lock()
        self._http: httpx.Client | None = None
        self._pools = LoopPools(lambda: httpx.AsyncClient(**self._settings()))
        self._closed = False

    # -- calls ----------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        cred: Credential,
        ok: OnSuccess[T],
        fallback: str = "Failed to get token",
        report: Report | None = None,
        base_url: str | None = None,
    ) -> T:
        """Send one call with retries, blocking this thread; ``ok`` reads a 2xx answer.

        ``body`` None sends no body (a GET); ``fallback`` starts the message of an
        error that Connect sent without one. ``report``: what reports the call; None
        for a token fetch, which the engine reports. ``base_url``: another origin
        than the client's (a call's own region).
        """
        url = (base_url or self.base_url) + path
        with reporting(report):
            http = self._client()
            content, headers, auth = _encode(body, send_value(cred, now=time.time()))
            counted = _counting()

            def attempt(seconds_left: float) -> T:
                counted()
                limit = _attempt_limit(self._timeout, seconds_left)
                token = attempt_deadline.set(time.monotonic() + limit)
                try:
                    with http.stream(
                        method, url, content=content, headers=headers, auth=auth,
                        timeout=limit,
                    ) as streamed:  # fmt: skip
                        r = _capped(streamed, up_to_cap(streamed.iter_bytes()))
                except Exception as exc:
                    failure = _failure(method, url, exc)
                else:
                    return _outcome(method, url, r, ok, fallback)
                finally:
                    attempt_deadline.reset(token)
                raise failure  # outside the handler: no link back to httpx's exception

            from ._retrying import run_with_retries  # tenacity: on the first call

            return run_with_retries(attempt, self._retry, random=self._random.random)

    async def acall(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        cred: Credential,
        ok: OnSuccess[T],
        fallback: str = "Failed to get token",
        report: Report | None = None,
        base_url: str | None = None,
    ) -> T:
        """Async `call`, on the caller's event loop (asyncio or trio)."""
        url = (base_url or self.base_url) + path
        with reporting(report):
            cred = await asend_value(cred, now=time.time())
            content, headers, auth = _encode(body, cred)
            counted = _counting()
            async with self._aclient() as http:

                async def attempt(seconds_left: float) -> T:
                    counted()
                    limit = _attempt_limit(self._timeout, seconds_left)
                    try:
                        with anyio.fail_after(limit):
                            async with http.stream(
                                method, url, content=content, headers=headers, auth=auth,
                                timeout=limit,
                            ) as streamed:  # fmt: skip
                                r = _capped(streamed, await _aup_to_cap(streamed))
                    except Exception as exc:
                        failure = _failure(method, url, exc)
                    else:
                        return _outcome(method, url, r, ok, fallback)
                    raise failure

                from ._retrying import arun_with_retries

                return await arun_with_retries(attempt, self._retry, random=self._random.random)

    # -- clients --------------------------------------------------------------

    def _client(self) -> httpx.Client:
        with self._lock:
            self._check_open()
            if self._transport is None and self._async_transport is not None:
                # A default client here would reach the real Connect, not what the
                # async transport stands for.
                raise TypeError(
                    "this ConnectClient has only an async transport: pass transport= "
                    "(an httpx.BaseTransport) for sync calls, or call the async API"
                )
            if self._http is None:
                self._http = httpx.Client(transport=self._transport, **self._settings())
                from ._sync_deadline import bound_by_deadline  # httpcore only when needed

                bound_by_deadline(self._http)
            return self._http

    def _aclient(self) -> contextlib.AbstractAsyncContextManager[httpx.AsyncClient]:
        """The client for an async call: from the running loop's pool (see `_pools`), or
        over the transport that was passed in, which belongs to the caller and is
        never closed here."""
        self._check_open()
        transport = self._async_transport
        if transport is None and self._transport is not None:
            if not isinstance(self._transport, httpx.AsyncBaseTransport):
                raise TypeError(
                    "this ConnectClient has a sync-only transport: pass "
                    "async_transport= (an httpx.AsyncBaseTransport) for async calls"
                )
            transport = self._transport
        if transport is not None:
            return contextlib.nullcontext(
                httpx.AsyncClient(transport=transport, **self._settings())
            )
        return self._pools.client()

    def _settings(self) -> dict[str, Any]:
        if self._ssl is None:  # loading the CA bundle costs milliseconds: once per client
            self._ssl = httpx.create_ssl_context()
        return {
            "verify": self._ssl,
            "timeout": self._timeout,
            "headers": {
                "Accept": "application/json",
                "User-Agent": f"connect-auth/{__version__} (python)",
            },
            "follow_redirects": False,
        }

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this ConnectClient is closed; create a new one to fetch tokens")

    def close(self) -> None:
        """Close the connections and refuse later calls: the sync ones now, the running
        event loop's soon; other loops' pools close with their loops."""
        with self._lock:
            self._closed = True
            http, self._http = self._http, None
        if http is not None:
            http.close()
        self._pools.close_soon()

    async def aclose(self) -> None:
        """`close`, closing the running event loop's pool before it returns."""
        await self._pools.aclose()
        self.close()

    def after_fork_in_child(self) -> None:
        """Forget the parent's connections (never closing them) and its lock."""
        _kept_from_parent.append(self._http)
        self._pools.forget()
        self._lock = threading.Lock()
        self._http = None


# -- one attempt ----------------------------------------------------------------------


def _counting() -> Callable[[], None]:
    """What each attempt calls to be counted in the running call's report, which now
    has Connect as its source (a shared cache that asks Connect did not serve it)."""
    report = current_report()
    if report is None:
        return _uncounted
    report.source = "connect"

    def counted() -> None:
        report.attempts += 1

    return counted


def _uncounted() -> None:
    pass


#: When the running sync attempt must end (``time.monotonic()``); see ``_sync_deadline``.
attempt_deadline: ContextVar[float] = ContextVar("connect_auth_attempt_deadline", default=math.inf)


def _attempt_limit(timeout: float, seconds_left: float) -> float:
    """Seconds one attempt may take in all: ``timeout``, cut to what the deadline leaves."""
    if seconds_left <= 0:
        raise TransientFailure("the retry deadline passed")
    return min(timeout, seconds_left)


def _encode(
    body: dict[str, Any] | None, cred: Credential
) -> tuple[bytes | None, dict[str, str], Bearer]:
    if body is None:
        return None, {}, Bearer(cred.value)
    content = json.dumps(body, separators=(",", ":")).encode()
    return content, {"Content-Type": "application/json"}, Bearer(cred.value)


class Bearer(httpx.Auth):
    """Sets ``Authorization: Bearer <secret>`` on the request as it leaves (a Vercel
    credential, or a CLI login's token). So no frame of ours holds the header in a
    local, where captured traceback locals (pytest ``--showlocals``, Sentry) would
    print it."""

    def __init__(self, secret: str) -> None:
        self._secret = secret

    def __repr__(self) -> str:
        return "Bearer(<hidden>)"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = "Bearer " + self._secret
        yield request


def _failure(method: str, url: str, exc: Exception) -> Exception:
    """What a failed send becomes: a retryable failure for network errors and timeouts,
    a final error for a request we could not form, anything else as it is. What is
    chained keeps the failure's type and message, never its request or frames: the
    request carries the credential."""
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        log.debug("%s %s timed out", method, _without_query(url))
        failure: Exception = TransientFailure(_described(exc))
    elif isinstance(exc, httpx.LocalProtocolError | httpx.UnsupportedProtocol | httpx.InvalidURL):
        # Retrying cannot help, and the library's message may quote a header value.
        return ConnectError(
            f"the request to Connect could not be sent ({type(exc).__name__}): "
            "a header or the URL is malformed",
            code="invalid_request",
        )
    elif isinstance(exc, httpx.TransportError):
        log.debug("%s %s failed: %s", method, _without_query(url), type(exc).__name__)
        failure = TransientFailure(_described(exc))
    else:
        return exc
    failure.__cause__ = _message_only(exc)
    return failure


#: Plain words for network failures: httpx's class names (``ConnectError``) read as
#: connect_auth's own error classes in a message.
_NETWORK_WORDS: tuple[tuple[type[BaseException], str], ...] = (
    (httpx.ConnectTimeout, "timed out connecting"),
    (httpx.ReadTimeout, "timed out waiting for the answer"),
    (httpx.WriteTimeout, "timed out sending the request"),
    (httpx.PoolTimeout, "timed out waiting for a free connection"),
    (httpx.TimeoutException, "timed out"),
    (TimeoutError, "timed out (the attempt's deadline passed)"),
    (httpx.ConnectError, "could not connect"),
    (httpx.ReadError, "the connection failed while reading the answer"),
    (httpx.WriteError, "the connection failed while sending the request"),
    (httpx.RemoteProtocolError, "the server broke the HTTP exchange"),
)


def _described(exc: BaseException) -> str:
    """What went wrong on the network, in words."""
    return next((words for cls, words in _NETWORK_WORDS if isinstance(exc, cls)), "network error")


def _message_only(exc: BaseException) -> BaseException:
    """A copy of ``exc`` with its message only: no request, traceback or cause."""
    try:
        return type(exc)(str(exc))
    except Exception:  # an exception type with another constructor
        return RuntimeError(f"{type(exc).__name__}: {exc}")


#: Connect's answers are a few hundred bytes; a larger one is refused, not buffered.
MAX_ANSWER_BYTES = 1 << 20


def _capped(streamed: httpx.Response, chunks: list[bytes]) -> httpx.Response:
    """The answer with its body read, or `ConnectResponseError` past the cap."""
    body = b"".join(chunks)
    if len(body) > MAX_ANSWER_BYTES:
        raise ConnectResponseError(
            f"Connect's answer is larger than {MAX_ANSWER_BYTES} bytes; refused",
            code="invalid_response",
            status=streamed.status_code,
            request_id=streamed.headers.get("x-vercel-id"),
        )
    kept = [(k, v) for k, v in streamed.headers.multi_items() if k.lower() not in _BODY_FRAMING]
    return httpx.Response(streamed.status_code, headers=kept, content=body)


_BODY_FRAMING = ("content-encoding", "content-length", "transfer-encoding")


def up_to_cap(chunks: Iterable[bytes], cap: int = MAX_ANSWER_BYTES) -> list[bytes]:
    """A body's chunks, stopping one chunk past ``cap`` bytes (so past it means too large)."""
    out: list[bytes] = []
    size = 0
    for chunk in chunks:
        out.append(chunk)
        size += len(chunk)
        if size > cap:
            break
    return out


async def _aup_to_cap(streamed: httpx.Response) -> list[bytes]:
    """Async `up_to_cap`. Past the cap the connection is closed and the body read
    to its (failed) end, so no async generator of httpx is left unfinished."""
    out: list[bytes] = []
    size = 0
    try:
        async for chunk in streamed.aiter_bytes():
            out.append(chunk)
            size += len(chunk)
            if size > MAX_ANSWER_BYTES:
                await streamed.aclose()
    except httpx.HTTPError:
        if size <= MAX_ANSWER_BYTES:
            raise
    return out


def _outcome(method: str, url: str, r: httpx.Response, ok: OnSuccess[T], fallback: str) -> T:
    """A 2xx answer read by ``ok``; a transient status to retry; else the typed error."""
    request_id = r.headers.get("x-vercel-id")
    if 200 <= r.status_code < 300:
        return ok(r)
    error = error_from_response(
        r.status_code, r.reason_phrase, r.content, request_id=request_id, fallback=fallback
    )
    if r.status_code in TRANSIENT_STATUSES:
        log.debug("%s %s answered %d, will retry", method, _without_query(url), r.status_code)
        raise TransientFailure(
            f"HTTP {r.status_code} {r.reason_phrase}".strip(),
            status=r.status_code,
            request_id=request_id,
            retry_after=parse_retry_after(r.headers.get("retry-after")),
            error=error,
        )
    raise error


def parse_token(r: httpx.Response) -> TokenResponse:
    """Read a token answer."""
    return parse_token_response(r.content, request_id=r.headers.get("x-vercel-id"))


def accept_any(r: httpx.Response) -> None:
    """Read nothing (a revoke's answer)."""
    return None


def _without_query(url: str) -> str:
    return url.partition("?")[0]
