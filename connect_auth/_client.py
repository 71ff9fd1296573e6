"""ConnectClient: the public facade over the token engine and the Connect wire calls."""

from __future__ import annotations

import logging
import os
import time
import weakref
from collections.abc import Callable, Hashable
from types import TracebackType
from typing import Any, Self, Unpack

import httpx

from ._config import resolve_base_url
from ._engine import CacheKey, SharedCache, TokenEngine
from ._models import (
    SubjectLike,
    TokenExchangeSubject,
    TokenOptions,
    TokenParamsOptions,
    TokenRequest,
    TokenResponse,
)
from ._oidc import Credential, hidden
from ._protocol import connector_path
from ._retry import RetryPolicy
from ._wire import ConnectWire, accept_any, parse_token

__all__ = ["DEFAULT_REFRESH_AHEAD_MS", "CacheKey", "ConnectClient"]

#: Five minutes: a token is refetched in the background this long before it
#: leaves the cache (never earlier than halfway through its servable life).
DEFAULT_REFRESH_AHEAD_MS = 300_000.0

log = logging.getLogger("connect_auth")

_live_clients: weakref.WeakSet[ConnectClient] = weakref.WeakSet()


class ConnectClient:
    """A Vercel Connect client with its own token cache; sync and async in one object.

    Args:
        vercel_token: the Vercel credential to use when a call passes none. By
            default it is looked up per call (request scope, ``VERCEL_OIDC_TOKEN``,
            ``.env.local``), since it rotates.
        base_url: the Connect API origin; see `resolve_base_url` rules.
        region: a Vercel region id, giving ``https://api-<region>.vercel.com``.
        timeout: seconds one HTTP attempt may take in all (connect, send and
            receive together; also cut to what the retry deadline leaves).
        cache_size: LRU capacity, in entries.
        retry: how transient failures are retried; ``RetryPolicy(max_attempts=1)``
            disables retries.
        refresh_ahead_ms: how long before a cached token stops being served a
            background refresh starts (default five minutes, never earlier than
            halfway through the token's servable life; ``0`` turns it off).
        transport: an ``httpx.BaseTransport`` for the sync Connect calls (tests,
            proxies). An ``httpx.MockTransport`` serves async calls too.
        async_transport: an ``httpx.AsyncBaseTransport`` for the async calls.
        clock: seconds since the epoch; injectable for expiry tests.
        shared_cache: a cache shared with other processes, such as
            `connect_auth.redis.RedisTokenCache`: asked on a local miss
            before Connect, so a fleet fetches each token once.

    Sync calls fetch in the calling thread; async calls fetch on the caller's
    own event loop (asyncio or trio), with no thread pool. One fetch per cache
    key serves threads and tasks of any event loop alike, and cancelling a task
    never cancels a fetch others wait for. The client is safe to use across
    ``os.fork()``: the child opens its own connections and keeps the cache.
    """

    def __init__(
        self,
        *,
        vercel_token: str | None = None,
        base_url: str | None = None,
        region: str | None = None,
        timeout: float = 10.0,
        cache_size: int = 100,
        retry: RetryPolicy | None = None,
        refresh_ahead_ms: float = DEFAULT_REFRESH_AHEAD_MS,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        shared_cache: SharedCache | None = None,
    ) -> None:
        if shared_cache is not None and not callable(getattr(shared_cache, "fetch", None)):
            raise TypeError("shared_cache must be a shared token cache such as RedisTokenCache")
        if vercel_token is not None and (not isinstance(vercel_token, str) or not vercel_token):
            raise ValueError("vercel_token must be a non-empty string or None")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise TypeError("retry must be a connect_auth.RetryPolicy")
        if (
            isinstance(refresh_ahead_ms, bool)
            or not isinstance(refresh_ahead_ms, int | float)
            or not 0 <= refresh_ahead_ms < float("inf")
        ):
            raise ValueError(
                f"refresh_ahead_ms must be a finite number of milliseconds >= 0, "
                f"got {refresh_ahead_ms!r}"
            )
        self.base_url = resolve_base_url(base_url, region, os.environ)
        retry = retry if retry is not None else RetryPolicy()
        self._wire = ConnectWire(
            self.base_url,
            timeout=float(timeout),
            retry=retry,
            transport=transport,
            async_transport=async_transport,
        )
        self._engine = TokenEngine(
            fetch=self._fetch,
            afetch=self._afetch,
            vercel_token=hidden(vercel_token),
            cache_size=cache_size,
            refresh_ahead_ms=float(refresh_ahead_ms),
            # Every fetch ends within the retry deadline plus one attempt; the rest is
            # slack for a busy machine.
            wait_limit=retry.deadline + timeout + 5.0,
            clock=clock,
            shared=shared_cache,
        )
        self._shared = shared_cache
        # The process-wide client follows CONNECT_AUTH_BASE_URL/VERCEL_REGION changes,
        # checked on cache misses only (set by connect_auth.default_client()).
        self._follow_env = False
        _live_clients.add(self)

    def __repr__(self) -> str:
        return f"ConnectClient(base_url={self.base_url!r}, cached={len(self._engine)})"

    # -- public API: tokens ------------------------------------------------

    def get_token(
        self, connector: str, *, subject: SubjectLike, **options: Unpack[TokenOptions]
    ) -> str:
        """Return a provider access token for ``connector`` and ``subject``.

        Served from the cache while ``expires_at - now > validity_buffer_ms``;
        otherwise fetched once (concurrent callers share the fetch) and cached.
        """
        request, vercel_token, force = _split(connector, subject, options)  # type: ignore[arg-type]
        return self._engine.token_for(request, vercel_token, force_refresh=force).token

    def get_token_response(
        self, connector: str, *, subject: SubjectLike, **options: Unpack[TokenOptions]
    ) -> TokenResponse:
        """Like `get_token`, but return the whole `TokenResponse`."""
        request, vercel_token, force = _split(connector, subject, options)  # type: ignore[arg-type]
        return self._engine.token_for(request, vercel_token, force_refresh=force)

    async def aget_token(
        self, connector: str, *, subject: SubjectLike, **options: Unpack[TokenOptions]
    ) -> str:
        """Async `get_token`; never blocks the event loop (asyncio or trio)."""
        return (await self.aget_token_response(connector, subject=subject, **options)).token

    async def aget_token_response(
        self, connector: str, *, subject: SubjectLike, **options: Unpack[TokenOptions]
    ) -> TokenResponse:
        """Async `get_token_response`."""
        request, vercel_token, force = _split(connector, subject, options)  # type: ignore[arg-type]
        return await self._engine.atoken_for(request, vercel_token, force_refresh=force)

    def delete_token_cache_entry(
        self, connector: str, *, subject: SubjectLike, **options: Unpack[TokenParamsOptions]
    ) -> None:
        """Remove exactly the cache entry that `get_token` would use; no-op if absent."""
        request, vercel_token, _ = _split(connector, subject, options)  # type: ignore[arg-type]
        key = (request.key, self._engine.credential(vercel_token).digest)
        self._engine.delete(key)
        if self._shared is not None:
            self._shared.delete(key)

    def clear_token_cache(self) -> None:
        """Drop every cached token of this client (and of its shared cache's namespace)."""
        self._engine.clear()
        if self._shared is not None:
            self._shared.clear()

    def revoke_token(
        self,
        connector: str,
        *,
        subject: SubjectLike,
        installation_id: str | None = None,
        vercel_token: str | None = None,
    ) -> None:
        """Revoke the subject's tokens at Connect, then evict them from the cache.

        Connect also revokes at the provider when the provider supports it.
        Cached entries of that subject for that connector go, whatever their
        installation or credential; a failed revoke leaves the cache untouched.
        """
        request, path, body, cred = self._revocation(
            connector, subject, installation_id, hidden(vercel_token)
        )
        self._wire.call("DELETE", path, body, cred, accept_any)
        self._evict_subject(request)
        if self._shared is not None:
            self._shared.evict_subject(request.connector, request.key.subject_key)

    async def arevoke_token(
        self,
        connector: str,
        *,
        subject: SubjectLike,
        installation_id: str | None = None,
        vercel_token: str | None = None,
    ) -> None:
        """Async `revoke_token`, on the caller's event loop."""
        request, path, body, cred = self._revocation(
            connector, subject, installation_id, hidden(vercel_token)
        )
        await self._wire.acall("DELETE", path, body, cred, accept_any)
        self._evict_subject(request)
        if self._shared is not None:
            await self._shared.aevict_subject(request.connector, request.key.subject_key)

    # -- the engine's entry points (also used by the auth adapters) --------

    def token_for(
        self, request: TokenRequest, vercel_token: str | None = None, *, force_refresh: bool = False
    ) -> TokenResponse:
        """Serve ``request`` from the cache or a shared fetch, blocking this thread."""
        return self._engine.token_for(request, vercel_token, force_refresh=force_refresh)

    async def atoken_for(
        self, request: TokenRequest, vercel_token: str | None = None, *, force_refresh: bool = False
    ) -> TokenResponse:
        """Serve ``request`` from the cache or a shared fetch, on this event loop."""
        return await self._engine.atoken_for(request, vercel_token, force_refresh=force_refresh)

    def cached(self, request: TokenRequest, vercel_token: str | None = None) -> str | None:
        """The cached token for ``request`` if fresh, else None; no I/O and no lock."""
        return self._engine.cached(request, vercel_token)

    def invalidate(
        self, request: TokenRequest, token: str, vercel_token: str | None = None
    ) -> bool:
        """Drop the cached entry for ``request`` only if it still holds ``token``."""
        return self._engine.invalidate(request, token, vercel_token)

    # -- lifecycle ----------------------------------------------------------

    def close(self) -> None:
        """Close the HTTP connections; later fetches raise ``RuntimeError``."""
        self._engine.close()
        self._wire.close()

    async def aclose(self) -> None:
        """Async `close`."""
        self.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- internals ----------------------------------------------------------

    def _fetch(self, request: TokenRequest, cred: Credential) -> TokenResponse:
        if self._follow_env:
            self._notice_env()
        return self._wire.call(*_token_call(request), cred, parse_token)

    async def _afetch(self, request: TokenRequest, cred: Credential) -> TokenResponse:
        if self._follow_env:
            self._notice_env()
        return await self._wire.acall(*_token_call(request), cred, parse_token)

    def _notice_env(self) -> None:
        """Point the process-wide client at a base URL the environment changed to."""
        url = resolve_base_url(None, None, os.environ)
        if url != self.base_url:
            log.info("connect_auth: the environment now points the default client at %s", url)
            self.base_url = self._wire.base_url = url

    def _revocation(
        self,
        connector: str,
        subject: SubjectLike,
        installation_id: str | None,
        vercel_token: str | None,
    ) -> tuple[TokenRequest, str, dict[str, Any], Credential]:
        """What a revoke sends, validated before any I/O."""
        request = TokenRequest.build(connector, subject=subject, installation_id=installation_id)
        body: dict[str, Any] = {"subject": request.params.subject.to_wire()}
        if request.params.installation_id is not None:
            body["installationId"] = request.params.installation_id
        path = connector_path("/v1/connect/connectors/", connector, "/tokens")
        return request, path, body, self._engine.credential(vercel_token)

    def _evict_subject(self, request: TokenRequest) -> None:
        connector, subject_key = request.connector, request.key.subject_key
        self._engine.revoke_where(
            lambda k: k[0].connector == connector and k[0].subject_key == subject_key
        )
        log.debug(
            "connect_auth: revoked tokens of a %s subject for %s",
            type(request.params.subject).__name__,
            connector,
        )

    def _after_fork_in_child(self) -> None:
        self._engine.after_fork_in_child()
        self._wire.after_fork_in_child()


def _after_fork_in_child() -> None:
    for client in list(_live_clients):
        client._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _token_call(request: TokenRequest) -> tuple[str, str, dict[str, Any]]:
    log.debug("connect_auth: fetching a token for %s", request.connector)
    return "POST", connector_path("/v1/connect/token/", request.connector), request.params.to_wire()


def _split(
    connector: str, subject: SubjectLike, options: dict[str, Any]
) -> tuple[TokenRequest, str | None, bool]:
    """Separate call options (credential, force) from request params and validate them."""
    if not options:
        return _request_for(connector, subject, options), None, False
    vercel_token = hidden(options.pop("vercel_token", None))  # out of the caller's dict
    force = options.pop("force_refresh", False)
    if not isinstance(force, bool):
        raise TypeError("force_refresh must be True or False")
    return _request_for(connector, subject, options), vercel_token, force


_requests_seen: dict[Hashable, TokenRequest] = {}
_REQUESTS_SEEN_MAX = 512


def _request_for(connector: str, subject: SubjectLike, options: dict[str, Any]) -> TokenRequest:
    """``TokenRequest.build``, memoized on the exact arguments.

    Validation costs microseconds and apps ask for the same few tokens over and
    over; only arguments that validated are remembered. Types are part of the
    memo key so that, say, ``True`` never passes for ``1``.
    """
    if type(subject) is TokenExchangeSubject or (
        type(subject) is dict and subject.get("type") == "token"
    ):
        # A raw subject token must not outlive the call in a memo: validate each time.
        return TokenRequest.build(connector, subject=subject, **options)
    try:
        memo: Hashable = (
            connector,
            type(subject),
            tuple(subject.items()) if type(subject) is dict else subject,
            tuple((k, type(v), tuple(v) if type(v) is list else v) for k, v in options.items())
            if options
            else (),
        )
        hit = _requests_seen.get(memo)
    except TypeError:  # unhashable arguments (nested dicts): validate every time
        return TokenRequest.build(connector, subject=subject, **options)
    if hit is None:
        hit = TokenRequest.build(connector, subject=subject, **options)
        if len(_requests_seen) >= _REQUESTS_SEEN_MAX:
            _requests_seen.clear()
        _requests_seen[memo] = hit
    return hit
