"""ConnectClient: the public facade over the token engine and the Connect wire calls."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
import weakref
from collections.abc import Callable, Hashable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self, cast

import httpx

from ._authorize import (
    AuthorizationRequest,
    ConnectorMetadata,
    authorize_body,
    install_body,
    parse_authorization_request,
    parse_connector_metadata,
)
from ._config import resolve_base_url
from ._docs import shared_args
from ._engine import CacheKey, SharedCache, TokenEngine
from ._errors import AuthorizationPendingError, OidcTokenError, UserAuthorizationRequiredError
from ._models import (
    SubjectLike,
    TokenExchangeSubject,
    TokenRequest,
    TokenResponse,
    VercelToken,
    check_buffer,
    check_connector,
)
from ._observe import Report
from ._oidc import Credential, credential_arg
from ._protocol import connector_path
from ._retry import RetryPolicy
from ._wire import CallPlan, ConnectWire, accept_any, parse_token

__all__ = ["DEFAULT_REFRESH_AHEAD_MS", "CacheKey", "ConnectClient"]

#: Five minutes: a token is refetched in the background this long before it
#: leaves the cache (never earlier than halfway through its servable life).
DEFAULT_REFRESH_AHEAD_MS = 300_000.0

log = logging.getLogger("connect_auth.tokens")

_REVOKE_FAILED = "Failed to revoke token"

_live_clients: weakref.WeakSet[ConnectClient] = weakref.WeakSet()


@shared_args
class ConnectClient:
    """A Vercel Connect client with its own token cache; sync and async in one object.

    Args:
        vercel_token: the Vercel credential to use when a call passes none: a
            string, or a function returning one (sync, or async for the async API),
            called each time a request is sent to Connect (never on a cache hit), for
            long-lived clients and runtimes off Vercel. By default it is looked up per
            call (request scope, ``VERCEL_OIDC_TOKEN``, ``.env.local``), since it
            rotates.
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
        validity_buffer_ms: the ``validity_buffer_ms`` of every call that passes
            none (default: each call's own, else 30 s on the cache side).

    Sync calls fetch in the calling thread; async calls fetch on the caller's
    own event loop (asyncio or trio), with no thread pool. One fetch per cache
    key serves threads and tasks of any event loop alike, and cancelling a task
    never cancels a fetch others wait for. The client is safe to use across
    ``os.fork()``: the child opens its own connections and keeps the cache.
    """

    def __init__(
        self,
        *,
        vercel_token: VercelToken | None = None,
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
        validity_buffer_ms: float | None = None,
    ) -> None:
        if shared_cache is not None and not callable(getattr(shared_cache, "fetch", None)):
            raise TypeError("shared_cache must be a shared token cache such as RedisTokenCache")
        vercel_token = credential_arg(vercel_token)
        #: The validity buffer of calls that pass none (None: each call's own).
        self.validity_buffer_ms = check_buffer(validity_buffer_ms)
        if self.validity_buffer_ms is not None:
            # Every call then goes through `_call_options`, which adds the buffer: `_serve`'s
            # fast path is for calls with no options at all.
            self._serve = self._serve_with_options  # type: ignore[method-assign]
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
        self._explicit_base_url = base_url
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
            vercel_token=vercel_token,
            cache_size=cache_size,
            refresh_ahead_ms=float(refresh_ahead_ms),
            # Every fetch ends within the retry deadline plus one attempt; the rest is
            # slack for a busy machine.
            wait_limit=retry.deadline + timeout + 5.0,
            clock=clock,
            shared=shared_cache,
            refresh=self._local_refresh,
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
        self,
        connector: str,
        *,
        subject: SubjectLike,
        installation_id: str | None = None,
        audience: Sequence[str] | None = None,
        scopes: Sequence[str] | None = None,
        resources: Sequence[str] | None = None,
        authorization_details: Sequence[Mapping[str, Any]] | None = None,
        validity_buffer_ms: float | None = None,
        vercel_token: VercelToken | None = None,
        force_refresh: bool = False,
        no_cache: bool = False,
    ) -> str:
        """Return a provider access token for ``connector`` and ``subject``.

        Served from the cache while ``expires_at - now > validity_buffer_ms``;
        otherwise fetched once (concurrent callers share the fetch) and cached.

        Raises:
            UserAuthorizationRequiredError: the user has not consented yet (see
                `start_authorization`).
            ConnectError: any other refusal, or `ConnectUnavailableError` once
                transient failures outlast the retry policy.
            ValueError: an argument is invalid (before any network call).
        """
        if (  # no option given: the cache-hit path (`is` tests are the cheapest check)
            installation_id is None
            and audience is None
            and scopes is None
            and resources is None
            and authorization_details is None
            and validity_buffer_ms is None
            and vercel_token is None
            and force_refresh is False
            and no_cache is False
        ):
            return self._serve(connector, subject).token
        options = token_options(locals())
        return self._serve_with_options(connector, subject, options).token

    def get_token_response(
        self,
        connector: str,
        *,
        subject: SubjectLike,
        installation_id: str | None = None,
        audience: Sequence[str] | None = None,
        scopes: Sequence[str] | None = None,
        resources: Sequence[str] | None = None,
        authorization_details: Sequence[Mapping[str, Any]] | None = None,
        validity_buffer_ms: float | None = None,
        vercel_token: VercelToken | None = None,
        force_refresh: bool = False,
        no_cache: bool = False,
    ) -> TokenResponse:
        """Like `get_token`, but return the whole `TokenResponse` (expiry, scopes,
        installation)."""
        if (  # no option given: the cache-hit path (`is` tests are the cheapest check)
            installation_id is None
            and audience is None
            and scopes is None
            and resources is None
            and authorization_details is None
            and validity_buffer_ms is None
            and vercel_token is None
            and force_refresh is False
            and no_cache is False
        ):
            return self._serve(connector, subject)
        options = token_options(locals())
        return self._serve_with_options(connector, subject, options)

    def _serve(self, connector: str, subject: SubjectLike) -> TokenResponse:
        """`get_token_response` for a call given no option (the module functions' too)."""
        request = _request_for(connector, subject, _NO_OPTIONS)
        hit = self._engine.cached(request)  # the common call, one frame shorter
        return hit if hit is not None else self._engine.fetch(request, None, False)

    def _serve_with_options(
        self, connector: str, subject: SubjectLike, options: dict[str, Any] | None = None
    ) -> TokenResponse:
        """`get_token_response` for a call given options (``None``: none, when the
        client's own validity buffer must still be added)."""
        request, vercel_token, force, no_cache = _call_options(
            connector, subject, options or {}, self.validity_buffer_ms
        )
        return self._engine.token_for(request, vercel_token, force_refresh=force, no_cache=no_cache)

    async def aget_token(
        self,
        connector: str,
        *,
        subject: SubjectLike,
        installation_id: str | None = None,
        audience: Sequence[str] | None = None,
        scopes: Sequence[str] | None = None,
        resources: Sequence[str] | None = None,
        authorization_details: Sequence[Mapping[str, Any]] | None = None,
        validity_buffer_ms: float | None = None,
        vercel_token: VercelToken | None = None,
        force_refresh: bool = False,
        no_cache: bool = False,
    ) -> str:
        """Async `get_token`; never blocks the event loop (asyncio or trio)."""
        options = token_options(locals())
        return (await self._aserve(connector, subject, options)).token

    async def aget_token_response(
        self,
        connector: str,
        *,
        subject: SubjectLike,
        installation_id: str | None = None,
        audience: Sequence[str] | None = None,
        scopes: Sequence[str] | None = None,
        resources: Sequence[str] | None = None,
        authorization_details: Sequence[Mapping[str, Any]] | None = None,
        validity_buffer_ms: float | None = None,
        vercel_token: VercelToken | None = None,
        force_refresh: bool = False,
        no_cache: bool = False,
    ) -> TokenResponse:
        """Async `get_token_response`."""
        options = token_options(locals())
        return await self._aserve(connector, subject, options)

    async def _aserve(
        self, connector: str, subject: SubjectLike, options: dict[str, Any]
    ) -> TokenResponse:
        request, vercel_token, force, no_cache = _call_options(
            connector, subject, options, self.validity_buffer_ms
        )
        return await self._engine.atoken_for(
            request, vercel_token, force_refresh=force, no_cache=no_cache
        )

    def delete_token_cache_entry(
        self,
        connector: str,
        *,
        subject: SubjectLike,
        installation_id: str | None = None,
        audience: Sequence[str] | None = None,
        scopes: Sequence[str] | None = None,
        resources: Sequence[str] | None = None,
        authorization_details: Sequence[Mapping[str, Any]] | None = None,
        validity_buffer_ms: float | None = None,
        vercel_token: VercelToken | None = None,
    ) -> None:
        """Remove the cache entries that `get_token` would use for these arguments, under
        every Vercel credential this client has used; no-op if absent. Needs no
        credential, so it works after the one in use expired."""
        options = token_options(locals())
        request, vercel_token, _, _ = _call_options(connector, subject, options)
        digests = self._engine.delete_request(request.key)
        if self._shared is not None:
            with contextlib.suppress(OidcTokenError):  # no credential now: the known ones
                digests.add(self._engine.credential(vercel_token).digest)
            for digest in digests:
                self._shared.delete((request.key, digest))

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
        vercel_token: VercelToken | None = None,
    ) -> None:
        """Revoke the subject's tokens at Connect, then evict them from the cache.

        Connect also revokes at the provider when the provider supports it.
        Cached entries of that subject for that connector go, whatever their
        installation or credential; a failed revoke leaves the cache untouched.
        """
        request, path, body, cred = self._revocation(
            connector, subject, installation_id, credential_arg(vercel_token)
        )
        report = Report.of("revoke_token", request)
        self._wire.call("DELETE", path, body, cred, accept_any, _REVOKE_FAILED, report)
        self._evict_subject(request)
        if self._shared is not None:
            self._shared.evict_subject(request.connector, request.key.subject_key)

    async def arevoke_token(
        self,
        connector: str,
        *,
        subject: SubjectLike,
        installation_id: str | None = None,
        vercel_token: VercelToken | None = None,
    ) -> None:
        """Async `revoke_token`, on the caller's event loop."""
        request, path, body, cred = self._revocation(
            connector, subject, installation_id, credential_arg(vercel_token)
        )
        report = Report.of("revoke_token", request)
        await self._wire.acall("DELETE", path, body, cred, accept_any, _REVOKE_FAILED, report)
        self._evict_subject(request)
        if self._shared is not None:
            await self._shared.aevict_subject(request.connector, request.key.subject_key)

    # -- public API: consent, installation, metadata ----------------------

    def start_authorization(
        self,
        connector: str,
        *,
        subject: SubjectLike,
        callback_url: str | None = None,
        webhook: str | None = None,
        device_code: bool | None = None,
        expires_in_ms: float | None = None,
        prompt: str | None = None,
        installation_id: str | None = None,
        audience: Sequence[str] | None = None,
        scopes: Sequence[str] | None = None,
        resources: Sequence[str] | None = None,
        authorization_details: Sequence[Mapping[str, Any]] | None = None,
        vercel_token: VercelToken | None = None,
        region: str | None = None,
    ) -> AuthorizationRequest:
        """Start user consent: where to send ``subject`` so the connector may act for them.

        Call it after `get_token` raised `UserAuthorizationRequiredError`, send the
        user to the returned ``url`` (or show its ``device_code``), then call
        `get_token` again, or `wait_for_authorization`. Every argument but
        ``connector`` and ``subject`` is optional; ``installation_id``, ``audience``,
        ``scopes``, ``resources`` and ``authorization_details`` are the token's, as
        for `get_token` (scopes default to ``["*"]``).

        Args:
            subject: who consents: usually a `UserSubject` or ``{"type": "user", "id": ...}``.

        Returns:
            The `AuthorizationRequest`; its ``repr`` hides the ``verifier``.

        Raises:
            ValueError: a URL breaks the rules above, or another argument is invalid
                (before any network call).
            ConnectError: Connect refused the request (for example
                `ConnectorNotFoundError`).
        """
        return self._wire.call(*self._authorize_call(**_arguments(locals())))

    async def astart_authorization(
        self,
        connector: str,
        *,
        subject: SubjectLike,
        callback_url: str | None = None,
        webhook: str | None = None,
        device_code: bool | None = None,
        expires_in_ms: float | None = None,
        prompt: str | None = None,
        installation_id: str | None = None,
        audience: Sequence[str] | None = None,
        scopes: Sequence[str] | None = None,
        resources: Sequence[str] | None = None,
        authorization_details: Sequence[Mapping[str, Any]] | None = None,
        vercel_token: VercelToken | None = None,
        region: str | None = None,
    ) -> AuthorizationRequest:
        """Async `start_authorization`, on the caller's event loop."""
        return await self._wire.acall(*self._authorize_call(**_arguments(locals())))

    def experimental_start_installation(
        self,
        connector: str,
        *,
        tenant_id: str | None = None,
        callback_url: str | None = None,
        webhook: str | None = None,
        device_code: bool | None = None,
        expires_in_ms: float | None = None,
        installation_id: str | None = None,
        audience: Sequence[str] | None = None,
        scopes: Sequence[str] | None = None,
        resources: Sequence[str] | None = None,
        authorization_details: Sequence[Mapping[str, Any]] | None = None,
        vercel_token: VercelToken | None = None,
        region: str | None = None,
    ) -> AuthorizationRequest:
        """Start installing the connector in a provider tenant (a Slack workspace, a GitHub
        org): where to send the operator. Experimental, as in Vercel's SDK: Connect
        enables it per team. Every argument but ``connector`` is optional.

        Args:
            installation_id: sent only when given.
            audience: sent only when given.
            scopes: sent only when given (no default scopes).
            resources: sent only when given.
            authorization_details: sent only when given.

        Returns:
            The `AuthorizationRequest`.

        Raises:
            ValueError: an argument is invalid (before any network call).
            ConnectError: Connect refused the request.
        """
        return self._wire.call(*self._install_call(**_arguments(locals())))

    async def aexperimental_start_installation(
        self,
        connector: str,
        *,
        tenant_id: str | None = None,
        callback_url: str | None = None,
        webhook: str | None = None,
        device_code: bool | None = None,
        expires_in_ms: float | None = None,
        installation_id: str | None = None,
        audience: Sequence[str] | None = None,
        scopes: Sequence[str] | None = None,
        resources: Sequence[str] | None = None,
        authorization_details: Sequence[Mapping[str, Any]] | None = None,
        vercel_token: VercelToken | None = None,
        region: str | None = None,
    ) -> AuthorizationRequest:
        """Async `experimental_start_installation`."""
        return await self._wire.acall(*self._install_call(**_arguments(locals())))

    def get_connector_metadata(
        self,
        connector: str,
        *,
        vercel_token: VercelToken | None = None,
        region: str | None = None,
    ) -> ConnectorMetadata:
        """A connector's public description (name, type, vendor configuration).

        Args:
            connector: the connector uid or id.
            vercel_token: the Vercel credential for this call (default: looked up).
            region: a Vercel region id for this call (``https://api-<region>.vercel.com``),
                unless the client was given a ``base_url`` (or ``CONNECT_AUTH_BASE_URL``
                is set); ``""`` is the global host.

        Raises:
            ConnectorNotFoundError: no such connector.
            ConnectError: any other refusal.
        """
        return self._wire.call(*self._metadata_call(connector, vercel_token, region))

    async def aget_connector_metadata(
        self,
        connector: str,
        *,
        vercel_token: VercelToken | None = None,
        region: str | None = None,
    ) -> ConnectorMetadata:
        """Async `get_connector_metadata`."""
        return await self._wire.acall(*self._metadata_call(connector, vercel_token, region))

    def wait_for_authorization(
        self,
        connector: str,
        *,
        subject: SubjectLike,
        timeout: float = 300.0,
        interval: float = 2.0,
        installation_id: str | None = None,
        audience: Sequence[str] | None = None,
        scopes: Sequence[str] | None = None,
        resources: Sequence[str] | None = None,
        authorization_details: Sequence[Mapping[str, Any]] | None = None,
        validity_buffer_ms: float | None = None,
        vercel_token: VercelToken | None = None,
    ) -> TokenResponse:
        """Wait until ``subject`` has authorized ``connector``, then return the token.

        Asks Connect for a fresh token every ``interval`` seconds while the answer
        is `AuthorizationPendingError` or `UserAuthorizationRequiredError`; a
        ``slow_down`` answer adds 5 seconds to the interval (as RFC 8628 asks). The
        token arguments are as for `get_token`.

        Args:
            subject: the subject whose consent is awaited.

        Raises:
            TimeoutError: no token after ``timeout`` seconds.
            AuthorizationDeniedError: the user declined (raised at once).
            AuthorizationExpiredError: the authorization request expired (at once).
            ConnectError: any other refusal, at once.
        """
        deadline = time.monotonic() + _positive("timeout", timeout)
        interval = _positive("interval", interval)
        while True:
            options = token_options(locals(), force_refresh=True)
            try:
                return self._serve_with_options(connector, subject, options)
            except (AuthorizationPendingError, UserAuthorizationRequiredError) as exc:
                interval = _next_interval(interval, exc)
                time.sleep(_pause(deadline, interval, connector, timeout))

    async def await_for_authorization(
        self,
        connector: str,
        *,
        subject: SubjectLike,
        timeout: float = 300.0,
        interval: float = 2.0,
        installation_id: str | None = None,
        audience: Sequence[str] | None = None,
        scopes: Sequence[str] | None = None,
        resources: Sequence[str] | None = None,
        authorization_details: Sequence[Mapping[str, Any]] | None = None,
        validity_buffer_ms: float | None = None,
        vercel_token: VercelToken | None = None,
    ) -> TokenResponse:
        """Async `wait_for_authorization` (asyncio or trio)."""
        import anyio

        deadline = time.monotonic() + _positive("timeout", timeout)
        interval = _positive("interval", interval)
        while True:
            options = token_options(locals(), force_refresh=True)
            try:
                return await self._aserve(connector, subject, options)
            except (AuthorizationPendingError, UserAuthorizationRequiredError) as exc:
                interval = _next_interval(interval, exc)
                await anyio.sleep(_pause(deadline, interval, connector, timeout))

    # -- the engine's entry points (also used by the auth adapters) --------

    def token_for(
        self, request: TokenRequest, vercel_token: str | None = None, *, force_refresh: bool = False
    ) -> TokenResponse:
        """Serve ``request`` from the cache or a shared fetch, blocking this thread.

        The adapters' way in: they build their `TokenRequest` once.

        Args:
            request: what to serve, from `TokenRequest.build`.
            vercel_token: the Vercel credential (``None``: the client's, else looked up).
            force_refresh: ``True`` to fetch a new token even if one is cached.
        """
        return self._engine.token_for(request, vercel_token, force_refresh=force_refresh)

    async def atoken_for(
        self, request: TokenRequest, vercel_token: str | None = None, *, force_refresh: bool = False
    ) -> TokenResponse:
        """Async `token_for`, on this event loop.

        Args:
            request: what to serve, from `TokenRequest.build`.
            vercel_token: the Vercel credential (``None``: the client's, else looked up).
            force_refresh: ``True`` to fetch a new token even if one is cached.
        """
        return await self._engine.atoken_for(request, vercel_token, force_refresh=force_refresh)

    def cached(
        self, request: TokenRequest, vercel_token: str | None = None, *, on_loop: bool = False
    ) -> TokenResponse | None:
        """The cached response for ``request`` if fresh, else None; no I/O and no lock.

        Args:
            request: what to look up, from `TokenRequest.build`.
            vercel_token: the Vercel credential the token was fetched with.
            on_loop: ``True`` when called from async code, so a refresh-ahead starts
                on the running event loop instead of a thread.
        """
        return self._engine.cached(request, vercel_token, on_loop=on_loop)

    def invalidate(
        self, request: TokenRequest, token: str, vercel_token: str | None = None
    ) -> bool:
        """Drop the cached entry for ``request`` only if it still holds ``token``.

        Args:
            request: the request the token was served for.
            token: the token the provider refused; a newer cached one is kept.
            vercel_token: the Vercel credential the token was fetched with.

        Returns:
            Whether an entry was dropped.
        """
        return self._engine.invalidate(request, token, vercel_token)

    # -- lifecycle ----------------------------------------------------------

    def close(self) -> None:
        """Close the HTTP connections; later fetches raise ``RuntimeError``.

        Async calls keep their connections per event loop: the running loop's close
        soon after this call, and any other loop's when that loop shuts down
        (``asyncio.run``, ``asyncio.Runner``, ``trio.run``).
        """
        self._engine.close()
        self._wire.close()

    async def aclose(self) -> None:
        """`close`, closing the running event loop's connections before it returns."""
        self._engine.close()
        await self._wire.aclose()

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

    def _local_refresh(self, now: float, why: OidcTokenError) -> str:
        """A new credential for a linked checkout whose own is missing or expired."""
        from ._local_refresh import LocalRefresh  # only when a credential needs renewing

        return LocalRefresh(self.base_url).token(now, why)

    def _notice_env(self) -> None:
        """Point the process-wide client at a base URL the environment changed to."""
        url = resolve_base_url(None, None, os.environ)
        if url != self.base_url:
            log.info("the environment now points the default client at %s", url)
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

    def _authorize_call(
        self, connector: str, subject: SubjectLike, **options: Any
    ) -> CallPlan[AuthorizationRequest]:
        """What `start_authorization` sends, validated before any I/O."""
        vercel_token = credential_arg(options.pop("vercel_token"))
        base_url = self._region_base_url(options.pop("region"))
        flow = {k: options.pop(k) for k in _AUTHORIZE_FLOW}
        request = TokenRequest.build(connector, subject=subject, **options)
        body = authorize_body(request, os.environ, **flow)
        path = connector_path("/v1/connect/authorize/", connector)
        return (
            "POST", path, body, self._engine.credential(vercel_token),
            _read_authorization, "Failed to start authorization",
            Report.of("start_authorization", request), base_url,
        )  # fmt: skip

    def _install_call(self, connector: str, **options: Any) -> CallPlan[AuthorizationRequest]:
        """What `experimental_start_installation` sends, validated before any I/O."""
        vercel_token = credential_arg(options.pop("vercel_token"))
        base_url = self._region_base_url(options.pop("region"))
        body = install_body(connector, os.environ, **options)
        path = connector_path("/v1/connect/install/", connector)
        return (
            "POST", path, body, self._engine.credential(vercel_token),
            _read_authorization, "Failed to start installation",
            Report("start_installation", connector), base_url,
        )  # fmt: skip

    def _metadata_call(
        self, connector: str, vercel_token: VercelToken | None, region: str | None
    ) -> CallPlan[ConnectorMetadata]:
        check_connector(connector)
        base_url = self._region_base_url(region)
        path = connector_path("/v1/connect/connectors/", connector)
        cred = self._engine.credential(credential_arg(vercel_token))
        report = Report("get_connector_metadata", connector)
        return (
            "GET", path, None, cred, _read_metadata, "Failed to get connector", report, base_url
        )  # fmt: skip

    def _region_base_url(self, region: str | None) -> str | None:
        """The origin of a call made with its own ``region`` (None: the client's). A
        ``base_url`` the client was given, or ``CONNECT_AUTH_BASE_URL``, still wins."""
        if region is None:
            return None
        return resolve_base_url(self._explicit_base_url, region, os.environ)

    def _evict_subject(self, request: TokenRequest) -> None:
        connector, subject_key = request.connector, request.key.subject_key
        self._engine.revoke_where(
            lambda k: k[0].connector == connector and k[0].subject_key == subject_key
        )
        log.debug(
            "revoked tokens of a %s subject for %s",
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


_AUTHORIZE_FLOW = ("callback_url", "webhook", "device_code", "expires_in_ms", "prompt")


def _read_authorization(r: httpx.Response) -> AuthorizationRequest:
    return parse_authorization_request(r.content, request_id=r.headers.get("x-vercel-id"))


def _read_metadata(r: httpx.Response) -> ConnectorMetadata:
    return parse_connector_metadata(r.content, request_id=r.headers.get("x-vercel-id"))


def _positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


def _next_interval(interval: float, pending: Exception) -> float:
    """The poll interval after a pending answer: 5 s longer on ``slow_down`` (RFC 8628)."""
    return interval + 5.0 if getattr(pending, "code", None) == "slow_down" else interval


def _pause(deadline: float, interval: float, connector: str, timeout: float) -> float:
    """Seconds to sleep before the next ask, or `TimeoutError` once the wait is over."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError(f"no authorization for {connector} within {timeout:g} s")
    return min(interval, left)


def _token_call(request: TokenRequest) -> tuple[str, str, dict[str, Any]]:
    return "POST", connector_path("/v1/connect/token/", request.connector), request.params.to_wire()


#: The keyword options of the token calls (`get_token` and its kin).
TOKEN_OPTIONS = (
    "installation_id",
    "audience",
    "scopes",
    "resources",
    "authorization_details",
    "validity_buffer_ms",
    "vercel_token",
    "force_refresh",
    "no_cache",
)


def token_options(arguments: Mapping[str, Any], **fixed: Any) -> dict[str, Any]:
    """The token options a call was given (from its ``locals()``), as `_call_options`
    takes them: those not left at their default, with ``fixed`` ones set over them.
    (``False`` is the flags' default; any other value is checked by `_call_options`.)"""
    given = {name: arguments.get(name) for name in TOKEN_OPTIONS}
    given.update(fixed)
    return {name: v for name, v in given.items() if v is not None and v is not False}


def _arguments(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """A method's arguments (its ``locals()`` before anything else), to pass on."""
    return {name: value for name, value in arguments.items() if name != "self"}


def _call_options(
    connector: str,
    subject: SubjectLike,
    options: dict[str, Any],
    default_buffer: float | None = None,
) -> tuple[TokenRequest, str | None, bool, bool]:
    """Separate call options (credential, force, no_cache) from request params and
    validate them; ``default_buffer`` is the client's validity buffer."""
    if default_buffer is not None and options.get("validity_buffer_ms") is None:
        options = {**options, "validity_buffer_ms": default_buffer}
    if not options:
        return _request_for(connector, subject, options), None, False, False
    vercel_token = credential_arg(options.pop("vercel_token", None))  # out of the caller's dict
    force = options.pop("force_refresh", False)
    no_cache = options.pop("no_cache", False)
    if not isinstance(force, bool):
        raise TypeError("force_refresh must be True or False")
    if not isinstance(no_cache, bool):
        raise TypeError("no_cache must be True or False")
    return _request_for(connector, subject, options), vercel_token, force, no_cache


#: The options of a call given none (read only, never written: shared by every call).
_NO_OPTIONS: dict[str, Any] = {}
_requests_seen: dict[Hashable, TokenRequest] = {}
_REQUESTS_SEEN_MAX = 512
# The last (connector, subject dict, request) `_request_for` built; "" matches no connector.
_last_call: tuple[str, dict[str, Any], TokenRequest] = ("", {}, cast(TokenRequest, None))


def _request_for(connector: str, subject: SubjectLike, options: dict[str, Any]) -> TokenRequest:
    """``TokenRequest.build``, memoized on the exact arguments.

    Validation costs microseconds and apps ask for the same few tokens over and
    over; only arguments that validated are remembered. Option types are part of
    the memo key so that, say, ``True`` never passes for ``1``; subject objects
    compare by class and fields, and a subject dict's values are all text.
    """
    global _last_call
    last = _last_call
    # The call before, again (the common case: one subject dict, no options): a dict
    # comparison instead of building and hashing a key.
    if not options and type(subject) is dict and last[0] == connector and last[1] == subject:
        return last[2]
    try:
        memo: Hashable = (
            connector,
            tuple(subject.items()) if type(subject) is dict else subject,
            tuple((k, type(v), tuple(v) if type(v) is list else v) for k, v in options.items())
            if options
            else (),
        )
        hit = _requests_seen.get(memo)
    except TypeError:  # unhashable arguments (nested dicts): validate every time
        return TokenRequest.build(connector, subject=subject, **options)
    if hit is not None:
        return hit
    hit = TokenRequest.build(connector, subject=subject, **options)
    if type(hit.params.subject) is not TokenExchangeSubject:
        # A raw subject token must not outlive the call in a memo: never remembered,
        # so validated each time.
        if len(_requests_seen) >= _REQUESTS_SEEN_MAX:
            _requests_seen.clear()
        _requests_seen[memo] = hit
        if not options and type(subject) is dict:
            _last_call = (connector, dict(subject), hit)  # a copy: the caller may change theirs
    return hit
