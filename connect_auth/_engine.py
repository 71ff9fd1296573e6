"""The token engine: cache, one shared fetch per key, and refresh ahead of expiry.

It knows nothing of HTTP: it is handed a sync and an async fetch function.
Threads lead a fetch in their own thread; tasks lead one as a detached task of
their own event loop; either kind may wait on a fetch the other leads. A cache
hit whose token nears its end is served at once and starts one background
refresh for its key, so no caller waits at a token rollover.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import math
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Generator, Hashable, Iterator
from concurrent.futures import Future, InvalidStateError
from typing import Any, NamedTuple, Protocol

import anyio

from ._cache import Entry, TokenCache, is_fresh, refresh_at, refresh_retry_at
from ._errors import ConnectUnavailableError
from ._flight import adrive, current_loop, drive, result_of, spawn_detached, wait_async
from ._models import RequestKey, TokenRequest, TokenResponse
from ._observe import Report, reporting, track_cache
from ._oidc import Credential, Refresh, recent_credential, resolve_credential

__all__ = ["CacheKey", "Flight", "SharedCache", "TokenEngine"]

log = logging.getLogger("connect_auth.tokens")

#: ``((connector, params key), credential digest)``
CacheKey = tuple[RequestKey, str]
Fetch = Callable[[TokenRequest, Credential], TokenResponse]
AsyncFetch = Callable[[TokenRequest, Credential], Awaitable[TokenResponse]]


class Flight(NamedTuple):
    """A shared fetch, and what its leader needs to run it.

    ``newer_than`` and ``refused`` tell a shared cache which of its tokens will
    not do: one expiring no later than ``newer_than`` (epoch ms; ``inf`` for a
    forced refresh), and ``refused``, which a provider turned down. ``clock`` is
    the client's, so a shared cache judges freshness by the same time.
    """

    future: Future[TokenResponse]
    key: CacheKey
    request: TokenRequest
    cred: Credential
    leader: bool
    newer_than: float = 0.0
    refused: str | None = None
    store: bool = True  # False: ``no_cache``, its token goes to its callers only
    clock: Callable[[], float] = time.time

    @property
    def reason(self) -> str:
        """Why this fetch runs: ``no_cache``, ``forced``, ``refresh_ahead``, ``refused``
        or ``miss``."""
        if not self.store:
            return "no_cache"
        if self.newer_than == math.inf:
            return "forced"
        if self.newer_than > 0:
            return "refresh_ahead"
        return "miss" if self.refused is None else "refused"


class SharedCache(Protocol):
    """A cache shared by processes, consulted on a local miss (``connect_auth.redis``)."""

    def fetch(self, flight: Flight, direct: Fetch) -> TokenResponse:
        """A token for ``flight``: from the shared cache, or from ``direct`` under a lease."""
        ...

    async def afetch(self, flight: Flight, direct: AsyncFetch) -> TokenResponse:
        """`fetch` on the running event loop."""
        ...

    def delete(self, key: CacheKey) -> None:
        """Delete the shared entry for ``key``."""
        ...

    def evict_subject(self, connector: str, subject_key: object) -> None:
        """Delete every shared token of one connector and subject."""
        ...

    async def aevict_subject(self, connector: str, subject_key: object) -> None:
        """`evict_subject` for async callers."""
        ...

    def clear(self) -> None:
        """Delete every shared entry."""
        ...


class TokenEngine:
    """Serves tokens from the cache or one shared fetch per cache key.

    Args:
        fetch: fetches a token, blocking the calling thread.
        afetch: fetches a token on the running event loop.
        vercel_token: the credential to use when a call passes none.
        cache_size: LRU capacity, in entries.
        refresh_ahead_ms: how long before a token leaves the cache a background
            refresh starts (clamped to half the time it can be served).
        wait_limit: seconds a caller waits on someone else's fetch at most; every
            fetch ends sooner unless the event loop running it stopped.
        clock: seconds since the epoch.
        shared: a cache shared with other processes, asked before Connect.
        refresh: renews a missing or expired credential from the environment
            (local development).
    """

    def __init__(
        self,
        *,
        fetch: Fetch,
        afetch: AsyncFetch,
        vercel_token: str | None,
        cache_size: int,
        refresh_ahead_ms: float,
        wait_limit: float,
        clock: Callable[[], float],
        shared: SharedCache | None = None,
        refresh: Refresh | None = None,
    ) -> None:
        self._fetch = fetch
        self._renew = refresh
        self._afetch = afetch
        self._shared = shared
        # Tokens a provider refused, by key, for the next fetch: it is reported as a
        # refresh after a refusal, and passes the token to the shared cache (which
        # drops it there only if it still holds it).
        self._refused: dict[Hashable, str] = {}
        self._vercel_token = vercel_token
        self._cache = TokenCache(cache_size)
        self._tick = self._cache.tick
        track_cache(self, self._cache)
        # id(request) -> (request, credential, entry): see `cached`.
        self._memo: dict[int, tuple[TokenRequest, Credential, Entry]] = {}
        self._ahead = refresh_ahead_ms
        self._wait_limit = wait_limit
        self._clock = clock
        self._lock = threading.Lock()
        self._flights: dict[Hashable, Future[TokenResponse]] = {}
        self._closed = False  # a closed client starts no background refresh
        # Fetches overtaken by a revoke (weak: they go when their callers are done).
        self._revoked: weakref.WeakSet[Future[TokenResponse]] = weakref.WeakSet()

    def __len__(self) -> int:
        return len(self._cache)

    # -- serving ----------------------------------------------------------------

    def cached(
        self, request: TokenRequest, vercel_token: str | None = None, *, on_loop: bool = False
    ) -> TokenResponse | None:
        """The one cache-hit path, of `token_for`, `atoken_for` and every adapter: the
        fresh cached response for ``request``, else None; no I/O and no lock.

        It answers only when the credential is the one seen last, so anything
        unusual (a new credential, none in the environment) falls through to the
        caller's miss path. A hit nearing its end starts one background refresh:
        on the caller's event loop when ``on_loop``, else in a thread.
        """
        now = self._clock()
        cred = recent_credential(
            vercel_token if vercel_token is not None else self._vercel_token, now
        )
        if cred is None:
            return None
        now_ms = now * 1000.0
        # The memo: the entry this request object was last served from, under this
        # credential; valid while that entry is still in the cache. It saves hashing
        # the key on every hit. (`is_fresh` and the stamp are written out: this is the
        # hottest code in the package.)
        entry: Entry
        was_request, was_cred, entry = self._memo.get(id(request), _NO_MEMO)
        if was_request is request and was_cred is cred and entry.live:
            if entry.expires_at - now_ms <= request.buffer_ms:
                return None
            entry.used = self._tick()
        else:
            found = self._cache.get_fresh_unlocked(
                (request.key, cred.digest), now_ms, request.buffer_ms
            )
            if found is None:
                return None
            entry = found
            if len(self._memo) >= _MEMO_MAX:
                self._memo.clear()
            self._memo[id(request)] = (request, cred, entry)
        if now_ms >= entry.refresh_at:
            self._refresh_ahead((request.key, cred.digest), request, cred, entry, on_loop)
        return entry.response

    def token_for(
        self,
        request: TokenRequest,
        vercel_token: str | None = None,
        *,
        force_refresh: bool = False,
        no_cache: bool = False,
    ) -> TokenResponse:
        """Serve ``request`` from the cache or a shared fetch, blocking this thread.
        ``no_cache``: always from Connect (one fetch for identical concurrent calls),
        and the cache is left as it was."""
        if (
            not (force_refresh or no_cache)
            and (hit := self.cached(request, vercel_token)) is not None
        ):
            return hit
        return self.fetch(request, vercel_token, force_refresh, no_cache)

    def fetch(
        self,
        request: TokenRequest,
        vercel_token: str | None,
        force_refresh: bool,
        no_cache: bool = False,
    ) -> TokenResponse:
        """`token_for` after `cached` found nothing: a hit after all, or a shared fetch."""
        return drive(self._serving(request, vercel_token, force_refresh, not no_cache), self._run)

    async def atoken_for(
        self,
        request: TokenRequest,
        vercel_token: str | None = None,
        *,
        force_refresh: bool = False,
        no_cache: bool = False,
    ) -> TokenResponse:
        """Serve ``request`` from the cache or a shared fetch, on this event loop."""
        if (
            not (force_refresh or no_cache)
            and (hit := self.cached(request, vercel_token, on_loop=True)) is not None
        ):
            return hit
        serving = self._serving(request, vercel_token, force_refresh, not no_cache)
        return await adrive(serving, self._arun)

    def _serving(
        self, request: TokenRequest, vercel_token: str | None, force: bool, store: bool = True
    ) -> Generator[Flight, TokenResponse, TokenResponse]:
        """How a call that `cached` did not serve is served, I/O-free: a hit after all,
        or the flights to lead or wait for (yielded to the driver, which sends back
        their tokens)."""
        found = self._hit_or_flight(request, vercel_token, force, store)
        if not isinstance(found, Flight):
            return found
        response = yield found
        if self._usable(found, response):
            return response
        again = self._hit_or_flight(request, vercel_token, True, store)  # forced: always a flight
        assert isinstance(again, Flight)
        return (yield again)  # once: whatever it brings

    def _run(self, flight: Flight) -> TokenResponse:
        """Lead or wait for ``flight`` in this thread; its token or its error."""
        if flight.leader:
            self._lead(flight)
        try:
            flight.future.exception(timeout=self._wait_limit)
        except TimeoutError:
            self._abandon(flight)
        return result_of(flight.future)

    async def _arun(self, flight: Flight) -> TokenResponse:
        """Lead (as a detached task) or await ``flight`` on this event loop."""
        if flight.leader:
            try:
                loop = current_loop()
            except BaseException as exc:  # strand no waiter
                self._fail_flight(flight, exc)
                raise
            spawn_detached(loop, lambda: self._alead(flight))
        try:
            with anyio.fail_after(self._wait_limit):
                await wait_async(flight.future)
        except TimeoutError:
            self._abandon(flight)
        return result_of(flight.future)

    def _usable(self, flight: Flight, response: TokenResponse) -> bool:
        """Whether a shared fetch's token may go to this caller: not if a revoke ran while
        it was in flight, nor, for a caller that joined it, if it has less life left than
        the caller's own validity buffer asks for."""
        if flight.future in self._revoked:
            return False
        if flight.leader:  # a fresh token is handed out even inside the buffer
            return True
        return is_fresh(response.expires_at, self._clock() * 1000.0, flight.request.buffer_ms)

    def credential(self, vercel_token: str | None) -> Credential:
        """The credential a call with ``vercel_token`` uses (argument > client > lookup)."""
        if vercel_token is None:
            vercel_token = self._vercel_token
        elif not isinstance(vercel_token, str) or not vercel_token:
            raise ValueError("vercel_token must be a non-empty string or None")
        return resolve_credential(vercel_token, now=self._clock(), refresh=self._renew)

    # -- changing the cache ---------------------------------------------------------

    def invalidate(
        self, request: TokenRequest, token: str, vercel_token: str | None = None
    ) -> bool:
        """Drop the cached entry for ``request`` only if it still holds ``token``.

        Used after a provider 401: concurrent failures of one token cost one
        refresh, and a token someone already refreshed is kept.
        """
        key = (request.key, self.credential(vercel_token).digest)
        with self._lock:
            entry = self._cache.peek(key)
            if entry is not None and entry.response.token != token:
                return False  # someone refreshed it already
            if len(self._refused) >= _REFUSED_MAX:
                self._refused.clear()
            self._refused[key] = token
            if entry is None:
                return False
            self._cache.delete(key)
            return True

    def delete_request(self, request_key: RequestKey) -> set[str]:
        """Remove the entries of one request under every credential; returns the
        digests of the credentials whose entries went."""
        with self._lock:
            return {k[1] for k in self._cache.delete_where(lambda k: k[0] == request_key)}

    def revoke_where(self, predicate: Callable[[Any], bool]) -> None:
        """Forget every token whose key matches, cached or still in flight: a fetch
        under way may bring a token minted before the revoke, which is then neither
        cached nor handed out."""
        with self._lock:
            self._cache.delete_where(predicate)
            for key, future in self._flights.items():
                if predicate(key):
                    self._revoked.add(future)

    def clear(self) -> None:
        """Drop every cached token."""
        with self._lock:
            self._cache.clear()

    def close(self) -> None:
        """Start no more background refreshes (the client cannot fetch any longer)."""
        self._closed = True

    def after_fork_in_child(self) -> None:
        """A forked child's fresh start: a new lock and no flights (their threads and
        tasks stayed in the parent). Cached tokens stay; refreshes that were running
        in the parent start again on the next hit."""
        self._lock = threading.Lock()
        self._flights = {}
        self._refused = {}
        self._revoked = weakref.WeakSet()
        for entry in self._cache.entries():
            if entry.refresh_at == math.inf:
                entry.refresh_at = 0.0

    # -- flights ------------------------------------------------------------------

    def _hit_or_flight(
        self, request: TokenRequest, vercel_token: str | None, force: bool, store: bool = True
    ) -> TokenResponse | Flight:
        """After `cached` missed: under the lock, a hit after all (a fetch just finished,
        or the credential is not the one seen last), the in-flight fetch to wait on, or
        a new one to lead. A fetch that stores nothing (``no_cache``) is shared only with
        calls like it: its flight key has a digest of its own."""
        now = self._clock()
        cred = self.credential(vercel_token)
        if not store:
            key = (request.key, cred.digest + _NO_CACHE)
            with self._lock:
                future = self._flights.get(key)
                if future is not None:
                    return Flight(future, key, request, cred, leader=False, store=False)
                future = self._flights[key] = Future()
                return Flight(future, key, request, cred, True, store=False)
        key = (request.key, cred.digest)
        now_ms = now * 1000.0
        with self._lock:
            if not force:
                entry = self._cache.get_fresh(key, now_ms, request.buffer_ms)
                if entry is not None:
                    return entry.response
            future = self._flights.get(key)
            if future is not None:
                return Flight(future, key, request, cred, leader=False)
            if force:
                self._cache.delete(key)
            return self._new_flight(key, request, cred, math.inf if force else 0.0)

    def _new_flight(
        self, key: CacheKey, request: TokenRequest, cred: Credential, newer_than: float
    ) -> Flight:
        future: Future[TokenResponse] = Future()
        self._flights[key] = future
        refused = self._refused.pop(key, None)
        return Flight(future, key, request, cred, True, newer_than, refused, clock=self._clock)

    def _lead(self, flight: Flight) -> None:
        """Run the fetch in this thread; its outcome goes to the flight's future."""
        shared = self._shared_for(flight)
        with self._settling(flight), reporting(self._report(flight, shared)):
            if shared is None:
                response = self._fetch(flight.request, flight.cred)
            else:
                response = shared.fetch(flight, self._fetch)
            self._complete_flight(flight, response)

    async def _alead(self, flight: Flight) -> None:
        """`_lead` as a detached task: nothing awaits it, so it raises nothing
        but its loop's cancellation (the loop shutting down)."""
        shared = self._shared_for(flight)
        with self._settling(flight), reporting(self._report(flight, shared)):
            if shared is None:
                response = await self._afetch(flight.request, flight.cred)
            else:
                response = await shared.afetch(flight, self._afetch)
            self._complete_flight(flight, response)

    def _shared_for(self, flight: Flight) -> SharedCache | None:
        """The shared cache ``flight`` goes through: none for a ``no_cache`` fetch."""
        return self._shared if flight.store else None

    def _report(self, flight: Flight, shared: SharedCache | None) -> Report:
        """What the fetch's span, metrics and log line say; the wire counts the
        attempts, and notes Connect as the source when a shared cache had to ask it."""
        return Report.of(
            "fetch_token",
            flight.request,
            reason=flight.reason,
            source="connect" if shared is None else "shared_cache",
        )

    @contextlib.contextmanager
    def _settling(self, flight: Flight) -> Iterator[None]:
        """A fetch's error goes to every waiter. ``KeyboardInterrupt``, ``SystemExit``
        and cancellation stay with the thread or task that led it: the waiters get a
        `ConnectUnavailableError` instead."""
        try:
            yield
        except Exception as exc:
            self._fail_flight(flight, exc)
        except BaseException as exc:
            self._fail_flight(flight, _interrupted(exc))
            raise

    def _complete_flight(self, flight: Flight, response: TokenResponse) -> None:
        buffer = flight.request.buffer_ms
        now_ms = self._clock() * 1000.0
        with self._lock:
            # A token already inside the buffer is handed out once, never cached.
            if (
                flight.store
                and is_fresh(response.expires_at, now_ms, buffer)
                and flight.future not in self._revoked
            ):
                when = refresh_at(response.expires_at, now_ms, buffer, self._ahead)
                self._cache.put(flight.key, Entry(response, when))
            self._end(flight)
        with contextlib.suppress(InvalidStateError):  # abandoned meanwhile
            flight.future.set_result(response)

    def _fail_flight(self, flight: Flight, exc: BaseException) -> None:
        """End a flight with an error: every waiter gets it, and nothing is cached."""
        with self._lock:
            self._end(flight)
        with contextlib.suppress(InvalidStateError):  # abandoned meanwhile
            flight.future.set_exception(exc)

    def _abandon(self, flight: Flight) -> None:
        """Free the waiters of a fetch that outlived every bound: its event loop stopped
        running it. The next caller starts a new one."""
        self._fail_flight(
            flight,
            ConnectUnavailableError(
                f"the token fetch this call waited for did not finish within "
                f"{self._wait_limit:.0f} s (the event loop running it stopped); try again",
                code="unavailable",
            ),
        )

    def _end(self, flight: Flight) -> None:
        if self._flights.get(flight.key) is flight.future:
            del self._flights[flight.key]

    # -- refresh ahead ------------------------------------------------------------

    def _refresh_ahead(
        self, key: CacheKey, request: TokenRequest, cred: Credential, entry: Entry, on_loop: bool
    ) -> None:
        """Start one background refresh for ``key``, unless one runs already: as a
        detached task of the caller's event loop (``on_loop``: the async fetch, as the
        caller's own misses use), else in a daemon thread, which never holds up
        process exit."""
        with self._lock:
            if self._closed or entry.refresh_at == math.inf or key in self._flights:
                return
            entry.refresh_at = math.inf
            # Across a fleet, a token someone else refreshed already will do.
            flight = self._new_flight(key, request, cred, entry.expires_at)
        if on_loop:
            spawn_detached(current_loop(), lambda: self._arefresh(flight, entry))
            return
        # In the caller's context: the refresh's span belongs to the request that started it.
        threading.Thread(
            target=contextvars.copy_context().run,
            args=(self._refresh, flight, entry),
            name="connect_auth-refresh",
            daemon=True,
        ).start()

    def _refresh(self, flight: Flight, entry: Entry) -> None:
        self._lead(flight)
        self._after_refresh(flight, entry)

    async def _arefresh(self, flight: Flight, entry: Entry) -> None:
        try:
            await self._alead(flight)
        except BaseException:  # its loop shutting down cancelled it: not a failure to report
            self._after_refresh(flight, entry, level=logging.DEBUG)
            raise
        self._after_refresh(flight, entry)

    def _after_refresh(self, flight: Flight, entry: Entry, level: int = logging.WARNING) -> None:
        """A failed refresh leaves the cached token served and sets when to try again."""
        exc = flight.future.exception()
        if exc is None:
            return
        now_ms = self._clock() * 1000.0
        retry = refresh_retry_at(entry.expires_at, now_ms, flight.request.buffer_ms)
        with self._lock:
            entry.refresh_at = retry
        log.log(
            level,
            "refreshing the token for %s ahead of expiry failed (%s); "
            "the cached token is still served, next try in %.1f s",
            flight.request.connector,
            type(exc).__name__,
            (retry - now_ms) / 1000.0,
        )


_REFUSED_MAX = 256
#: Appended to the credential digest in the flight key of a ``no_cache`` fetch.
_NO_CACHE = "#no_cache"
_NO_MEMO: Any = (None, None, None)
_MEMO_MAX = 256


def _interrupted(exc: BaseException) -> ConnectUnavailableError:
    return ConnectUnavailableError(
        f"the token fetch this call waited for was interrupted ({type(exc).__name__}) "
        "in the thread or task that led it; try again",
        code="unavailable",
    )
