"""A token cache shared by every process of a fleet, in Redis (``redis`` extra).

``ConnectClient(shared_cache=RedisTokenCache(url, encryption_key=key))`` keeps
its in-process cache first; on a local miss it asks Redis before Connect, and
one process per fleet fetches a missing token under a short lease while the
others wait for it. Tokens are stored encrypted under opaque names. When Redis
is down or slow, tokens are fetched from Connect directly and Redis is tried
again later.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import secrets
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Generator, Mapping
from typing import Any, NamedTuple
from urllib.parse import urlsplit

try:
    import redis
    import redis.asyncio
    import redis.asyncio.cluster
    import redis.cluster
    from redis.exceptions import ClusterError, RedisClusterException, RedisError, TryAgainError

    from ._sealed import KEY_HINT, Sealer
except ImportError as exc:  # an optional extra: say how to get it
    raise ImportError(
        "connect_auth.redis needs redis-py and cryptography: pip install 'connect-auth[redis]'"
    ) from exc

from ._cache import is_fresh
from ._engine import AsyncFetch, CacheKey, Fetch, Flight
from ._errors import ConnectError
from ._flight import adrive, current_loop, drive, is_asyncio
from ._models import TokenResponse
from ._observe import shared_cache_failed
from ._protocol import parse_token_response

__all__ = ["RedisTokenCache", "from_env"]

log = logging.getLogger("connect_auth.redis")

#: Failures that mean "Redis cannot help now": fall back to Connect.
_REDIS_DOWN = (RedisError, RedisClusterException, OSError, asyncio.TimeoutError)

#: The clients a cache accepts: plain (also Sentinel's ``master_for``) and cluster ones.
_SYNC_CLIENTS = (redis.Redis, redis.cluster.RedisCluster)
_ASYNC_CLIENTS = (redis.asyncio.Redis, redis.asyncio.cluster.RedisCluster)

# A value is fingerprint (32 bytes) + expiry in epoch ms (16 digits) + sealed JSON:
# the scripts below compare the first two without the key. The sealed part is bound
# to the entry's name and to those 48 bytes, so a writer without the key can change
# neither; what decides after opening is the sealed token itself.
_FP, _EXP = 32, 48

_WRITE = """
local current = redis.call('GET', KEYS[1])
if current and redis.call('GET', KEYS[2]) ~= ARGV[3]
   and string.sub(current, 33, 48) >= ARGV[4] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SADD', KEYS[3], KEYS[1])
if redis.call('PTTL', KEYS[3]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[3], ARGV[2])
end
if redis.call('GET', KEYS[2]) == ARGV[3] then
  redis.call('DEL', KEYS[2])
end
return 1
"""
"""Store a token unless a later one is there and the lease is no longer ours."""

_DISCARD = """
local current = redis.call('GET', KEYS[1])
if current and string.sub(current, 1, 32) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
"""Delete a token only if it is still the refused one."""

_LEASE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return -3
end
return redis.call('PTTL', KEYS[1])
"""
"""Take the lease (-3), or say how long the holder's lease has left (-1: no expiry,
-2: gone since)."""
_TAKEN, _GONE = -3, -2

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
"""Give a lease back only if it is still ours."""

_EVICT = """
local members = redis.call('SMEMBERS', KEYS[1])
local prefix = ARGV[1]
local deleted = 0
for _, key in ipairs(members) do
  if string.len(key) == string.len(prefix) + 64
     and string.sub(key, 1, string.len(prefix)) == prefix
     and not string.find(key, '[^0-9a-f]', string.len(prefix) + 1) then
    deleted = deleted + redis.call('DEL', key)
  end
end
redis.call('DEL', KEYS[1])
return deleted
"""
"""Delete every token of one connector and subject: only members shaped like this
cache's own token names (prefix, then 64 hex digits), whatever else the set holds."""


class _Names(NamedTuple):
    value: str
    lease: str
    subject: str


class _Op(NamedTuple):
    """One Redis step of `RedisTokenCache._plan`, run by a sync or async driver."""

    kind: str  # "get", "script" or "sleep"
    args: tuple[Any, ...]


_LEAD = object()  # the plan's outcome when this process holds the lease and fetches
_URL_SCHEMES = ("redis", "rediss", "unix")


class RedisTokenCache:
    """Tokens shared through Redis by every process that uses the same key and namespace.

    Args:
        url: a redis-py URL (``redis://``, ``rediss://`` or ``unix://``) of a
            Redis server, or of any node of a Redis Cluster (cluster mode is
            detected on first use, and a cluster client follows each key to its
            node). The clients made from it time out after ``socket_timeout``
            seconds.
        client: a ``redis.Redis`` (also a Sentinel-backed one from
            ``Sentinel.master_for``), a ``redis.cluster.RedisCluster``, or an
            asyncio counterpart of either, to use instead of ``url``. A sync
            client also serves async callers, from a worker thread; an asyncio
            client serves only async callers.
        async_client: a ``redis.asyncio.Redis`` or
            ``redis.asyncio.cluster.RedisCluster`` for async callers, next to a
            sync ``client``. Without one, async callers open a connection from
            ``url`` per shared-cache lookup (a local miss) and close it after.
        encryption_key: a random secret of at least 32 bytes (``str`` or
            ``bytes``), the same in every process: tokens are encrypted and
            authenticated with a key derived from it, and entry names are keyed
            digests of it. Generate one with ``python -c "import secrets;
            print(secrets.token_urlsafe(32))"``.
        namespace: keeps this cache's entries apart from other caches on the
            same Redis; also the Redis Cluster hash tag of every key.
        lease_ms: how long one process may fetch a missing token before another
            takes over.
        socket_timeout: seconds a Redis call made from ``url`` may take.
        retry_after: seconds to fetch directly from Connect after Redis failed,
            before trying it again.
        sleep: ``sleep(seconds)`` while another process holds a token's lease
            (default ``time.sleep``; tests pass one that steps time).
        asleep: ``await asleep(seconds)``, the same for async callers (default
            ``asyncio.sleep``).
        monotonic: seconds on a clock that never goes back, for ``retry_after``
            (default ``time.monotonic``).

    A token's freshness is judged by the clock of the `connect_auth.ConnectClient`
    using the cache (its ``clock=``).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any = None,
        async_client: Any = None,
        encryption_key: bytes | str,
        namespace: str = "connect-auth",
        lease_ms: int = 10_000,
        socket_timeout: float = 0.5,
        retry_after: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        asleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(client, _ASYNC_CLIENTS):
            if async_client is not None:
                raise TypeError("pass the asyncio client as async_client= or as client=, not both")
            client, async_client = None, client
        if client is not None and not isinstance(client, _SYNC_CLIENTS):
            raise TypeError(
                "client must be a redis.Redis or redis.cluster.RedisCluster (or an asyncio one)"
            )
        if async_client is not None and not isinstance(async_client, _ASYNC_CLIENTS):
            raise TypeError(
                "async_client must be a redis.asyncio.Redis or redis.asyncio.cluster.RedisCluster"
            )
        if (url is None) == (client is None and async_client is None):
            raise ValueError("give RedisTokenCache a url or a client (one of them)")
        if url is not None and (
            not isinstance(url, str) or urlsplit(url).scheme not in _URL_SCHEMES
        ):
            raise ValueError(
                "url must be a Redis URL such as 'redis://localhost:6379/0' "
                "(schemes: redis, rediss, unix)"
            )
        if not isinstance(namespace, str) or not namespace or any(c in namespace for c in "{} "):
            raise ValueError("namespace must be a non-empty string without braces or spaces")
        for name, value in (("lease_ms", lease_ms), ("socket_timeout", socket_timeout)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if (
            isinstance(retry_after, bool)
            or not isinstance(retry_after, int | float)
            or not (0 <= retry_after < math.inf)
        ):
            raise ValueError(f"retry_after must be a number of seconds >= 0, got {retry_after!r}")
        if not all(callable(f) for f in (sleep, asleep, monotonic)):
            raise TypeError("sleep, asleep and monotonic must be functions")
        self._sleep, self._asleep, self._monotonic = sleep, asleep, monotonic
        self._sealer = Sealer(encryption_key)
        self._url = url
        self._timeout = float(socket_timeout)
        self._sync = client
        # Whether the server of ``url`` is a cluster node (None: not asked yet; False for
        # a client given, used as it is). See `_client`.
        self._cluster: bool | None = None if url is not None else False
        self._cluster_lock = threading.Lock()
        if url is not None:
            self._sync = redis.Redis.from_url(url, **self._socket_settings())
        self._async = async_client
        for made in (self._sync, self._async):
            if made is not None and made.get_connection_kwargs().get("decode_responses"):
                raise ValueError(
                    "RedisTokenCache stores bytes: give it a Redis client (or URL) without "
                    "decode_responses=True; a separate client for the cache costs one "
                    "connection pool"
                )
        self._prefix = "{" + namespace + "}:"
        self._lease_ms = int(lease_ms)
        self._retry_after = float(retry_after)
        self._down_until = 0.0
        self._down_lock = threading.Lock()
        # redis-py script objects, per client (weak: async clients come and go).
        self._scripts: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()

    def close(self) -> None:
        """Close the connections of the client made from ``url`` (a given client stays open)."""
        if self._url is not None and self._sync is not None:
            self._sync.close()

    def _socket_settings(self) -> dict[str, Any]:
        return {"socket_timeout": self._timeout, "socket_connect_timeout": self._timeout}

    def _client(self) -> Any:
        """The sync client. One made from a URL becomes a cluster client once the server
        answers that it is a cluster node (``INFO cluster``, asked once): a plain client
        would get ``MOVED`` for every key another node serves."""
        if self._cluster is None or (
            self._cluster and not isinstance(self._sync, redis.cluster.RedisCluster)
        ):
            with self._cluster_lock:
                plain: Any = self._sync
                if self._cluster is None:
                    self._cluster = _cluster_enabled(plain.info("cluster"))
                if self._cluster and not isinstance(plain, redis.cluster.RedisCluster):
                    assert self._url is not None
                    self._sync = redis.cluster.RedisCluster.from_url(
                        self._url, **self._socket_settings()
                    )
                    plain.close()
        return self._sync

    def __enter__(self) -> RedisTokenCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RedisTokenCache(redis={self.where!r}, namespace={self._prefix[1:-2]!r})"

    @property
    def where(self) -> str:
        """The Redis server, as ``host:port`` (never credentials)."""
        if self._url is not None:
            parts = urlsplit(self._url)
            return (
                parts.path if parts.scheme == "unix" else f"{parts.hostname}:{parts.port or 6379}"
            )
        client: Any = self._sync if self._sync is not None else self._async
        if isinstance(client, redis.cluster.RedisCluster | redis.asyncio.cluster.RedisCluster):
            node = client.get_default_node()
            return f"{node.host}:{node.port} (cluster)"
        kwargs = client.get_connection_kwargs()
        return str(kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}")

    # -- the engine's entry points ----------------------------------------------------

    def fetch(self, flight: Flight, direct: Fetch) -> TokenResponse:
        """A token for ``flight``: from Redis, or from ``direct`` under the fleet's lease.

        `ConnectClient` calls it; you do not need to.

        Args:
            flight: the fetch the local cache missed (request, credential, reason).
            direct: fetches from Connect, when this process holds the lease.
        """
        if self._sync is None or not self._up():
            return direct(flight.request, flight.cred)
        names, fence = self._names(flight.key), secrets.token_hex(16)
        plan = self._plan(flight, names, fence)
        try:
            client = self._client()
            outcome = drive(plan, lambda op: self._run(client, op))
        except _REDIS_DOWN as exc:
            self._trip(exc)
            return direct(flight.request, flight.cred)
        if isinstance(outcome, TokenResponse):
            return outcome
        try:
            response = direct(flight.request, flight.cred)
        except BaseException:
            if outcome is _LEAD:
                self._quietly(lambda: self._script(client, _RELEASE)([names.lease], [fence]))
            raise
        write = self._writer(flight, names, response, fence)  # with or without the lease
        written = write is None or self._quietly(lambda: self._script(client, _WRITE)(*write))
        if not written and outcome is _LEAD and self._up():  # a moving slot: free the lease
            self._quietly(lambda: self._script(client, _RELEASE)([names.lease], [fence]))
        return response

    async def afetch(self, flight: Flight, direct: AsyncFetch) -> TokenResponse:
        """`fetch` on the running event loop (asyncio; trio fetches directly).

        `ConnectClient` calls it; you do not need to.

        Args:
            flight: the fetch the local cache missed (request, credential, reason).
            direct: fetches from Connect, when this process holds the lease.
        """
        if not self._up() or not is_asyncio(current_loop()):
            return await direct(flight.request, flight.cred)
        if self._async is not None:
            return await self._afetch_with(self._async, flight, direct)
        if self._url is None:  # only a sync client: its calls go to a worker thread
            return await self._afetch_with(None, flight, direct)
        try:
            client = await self._aclient_from_url()
        except _REDIS_DOWN as exc:
            self._trip(exc)
            return await direct(flight.request, flight.cred)
        try:
            return await self._afetch_with(client, flight, direct)
        finally:
            await client.aclose()

    async def _aclient_from_url(self) -> Any:
        """An asyncio client from ``url`` for one lookup: a cluster client for a cluster
        node (asked once, as `_client` does)."""
        assert self._url is not None
        if self._cluster is None:
            plain = redis.asyncio.Redis.from_url(self._url, **self._socket_settings())
            try:
                self._cluster = _cluster_enabled(await plain.info("cluster"))
            finally:
                await plain.aclose()
        kind: Any = redis.asyncio.cluster.RedisCluster if self._cluster else redis.asyncio.Redis
        return kind.from_url(self._url, **self._socket_settings())

    async def _afetch_with(self, client: Any, flight: Flight, direct: AsyncFetch) -> TokenResponse:
        names, fence = self._names(flight.key), secrets.token_hex(16)
        plan = self._plan(flight, names, fence)

        async def run(op: _Op) -> Any:
            if client is None:
                import anyio.to_thread

                return await anyio.to_thread.run_sync(self._run, self._sync, op)
            return await self._arun(client, op)

        try:
            outcome = await adrive(plan, run)
        except _REDIS_DOWN as exc:
            self._trip(exc)
            return await direct(flight.request, flight.cred)
        if isinstance(outcome, TokenResponse):
            return outcome
        try:
            response = await direct(flight.request, flight.cred)
        except BaseException:
            if outcome is _LEAD:
                await self._aquietly(run, _Op("script", (_RELEASE, [names.lease], [fence])))
            raise
        write = self._writer(flight, names, response, fence)  # with or without the lease
        written = write is None or await self._aquietly(run, _Op("script", (_WRITE, *write)))
        if not written and outcome is _LEAD and self._up():  # a moving slot: free the lease
            await self._aquietly(run, _Op("script", (_RELEASE, [names.lease], [fence])))
        return response

    # -- what the client's cache operations reach ---------------------------------------

    def delete(self, key: CacheKey) -> None:
        """Delete the shared entry for ``key`` (``delete_token_cache_entry``).

        `ConnectClient` calls it; you do not need to.

        Args:
            key: the entry's request key and credential digest.
        """
        if self._sync is not None and self._up():
            self._quietly(lambda: self._client().delete(self._names(key).value))

    def evict_subject(self, connector: str, subject_key: object) -> None:
        """Delete every shared token of one connector and subject (a revoke).

        `ConnectClient` calls it; you do not need to.

        Args:
            connector: the connector uid or id.
            subject_key: the normalized subject, as in the request key.
        """
        if self._sync is not None and self._up():
            index = self._subject_index(connector, subject_key)
            self._quietly(
                lambda: self._script(self._client(), _EVICT)([index], [self._token_prefix])
            )

    async def aevict_subject(self, connector: str, subject_key: object) -> None:
        """`evict_subject` for async callers.

        `ConnectClient` calls it; you do not need to.

        Args:
            connector: the connector uid or id.
            subject_key: the normalized subject, as in the request key.
        """
        if self._async is None or not is_asyncio(current_loop()):
            import anyio.to_thread

            await anyio.to_thread.run_sync(self.evict_subject, connector, subject_key)
            return
        index = self._subject_index(connector, subject_key)
        await self._aquietly(
            lambda op: self._arun(self._async, op),
            _Op("script", (_EVICT, [index], [self._token_prefix])),
        )

    def clear(self) -> None:
        """Delete every shared entry of this namespace (``clear_token_cache``)."""
        if self._sync is None or not self._up():
            return

        def clear_all() -> None:
            # On a cluster, scan_iter visits every master.
            client = self._client()
            batch: list[bytes] = []
            for key in client.scan_iter(match=self._prefix + "*", count=500):
                batch.append(key)
                if len(batch) >= 500:
                    client.delete(*batch)
                    batch = []
            if batch:
                client.delete(*batch)

        self._quietly(clear_all)

    # -- decisions (no I/O) ---------------------------------------------------------

    def _names(self, key: CacheKey) -> _Names:
        request_key, digest = key
        text = json.dumps([request_key.connector, request_key.params_key, digest])
        value = self._token_prefix + self._sealer.name("token", text)
        lease = self._prefix + "l:" + self._sealer.name("lease", text)
        subject = self._subject_index(request_key.connector, request_key.subject_key)
        return _Names(value, lease, subject)

    @property
    def _token_prefix(self) -> str:
        return self._prefix + "t:"

    def _subject_index(self, connector: str, subject_key: object) -> str:
        return (
            self._prefix + "s:" + self._sealer.name("subject", json.dumps([connector, subject_key]))
        )

    def _plan(self, flight: Flight, names: _Names, fence: str) -> Generator[_Op, Any, object]:
        """The shared-cache steps for one local miss, as `_Op` requests.

        Returns a `TokenResponse` from Redis, ``_LEAD`` when this process
        took the lease and must fetch, or ``None`` to fetch without the lease
        (waited too long for another process, or the lease is not one this cache
        sets); either way the fetched token is written back.
        """
        if flight.refused is not None:
            yield _Op(
                "script", (_DISCARD, [names.value], [self._sealer.fingerprint(flight.refused)])
            )
        raw = yield _Op("get", (names.value,))
        newer_than = flight.newer_than
        if newer_than == math.inf:  # forced: only a token fetched after this call will do
            newer_than = _expiry(raw) if raw else 0.0
        hit = self._accept(raw, names, flight, newer_than)
        if hit is not None:
            return hit
        # Bounded by the time slept, not by a clock: the plan stays pure.
        patience, waited, delay = 2 * self._lease_ms / 1000.0, 0.0, 0.005
        while True:
            held = yield _Op("script", (_LEASE, [names.lease], [fence, self._lease_ms]))
            if held == _TAKEN:
                # The previous holder may have written the token and let go between
                # our read and the lease: read once more before fetching.
                hit = self._accept((yield _Op("get", (names.value,))), names, flight, newer_than)
                if hit is None:
                    return _LEAD
                yield _Op("script", (_RELEASE, [names.lease], [fence]))
                return hit
            if held != _GONE and is_foreign_lease(held, self._lease_ms):
                log.warning(
                    "the Redis lease for %s has no expiry or one longer than "
                    "lease_ms (%d ms), so no process of this cache set it; fetching from "
                    "Connect directly",
                    flight.request.connector,
                    self._lease_ms,
                )
                return None
            if waited >= patience:
                log.warning(
                    "another process held the Redis lease for %s longer than "
                    "%d ms; fetching from Connect directly",
                    flight.request.connector,
                    self._lease_ms,
                )
                return None
            yield _Op("sleep", (delay,))
            waited += delay
            delay = min(delay * 2, 0.1)
            hit = self._accept((yield _Op("get", (names.value,))), names, flight, newer_than)
            if hit is not None:
                return hit

    def _accept(
        self, raw: bytes | None, names: _Names, flight: Flight, newer_than: float
    ) -> TokenResponse | None:
        """The token in ``raw`` if it will do for ``flight``. A wrong key, a changed
        prefix or anything that is not one of our values reads as a miss."""
        if not isinstance(raw, bytes) or len(raw) <= _EXP:
            return None
        refused = flight.refused is not None and raw[:_FP] == self._sealer.fingerprint(
            flight.refused
        )
        if refused or not self._will_do(_expiry(raw), flight, newer_than):
            return None  # decided without decrypting; checked again on what opens
        plain = self._sealer.open(raw[_EXP:], names.value.encode() + raw[:_EXP])
        if plain is None:
            return None
        try:
            response = parse_token_response(plain)
        except ConnectError:
            return None
        if response.token == flight.refused or not self._will_do(
            response.expires_at, flight, newer_than
        ):
            return None
        return response

    def _will_do(self, expires_at: float, flight: Flight, newer_than: float) -> bool:
        """Fresh enough for ``flight``, and newer than a forced refresh needs."""
        return expires_at > newer_than and is_fresh(
            expires_at, flight.clock() * 1000.0, flight.request.buffer_ms
        )

    def _writer(
        self, flight: Flight, names: _Names, response: TokenResponse, fence: str
    ) -> tuple[list[str], list[Any]] | None:
        """The ``_WRITE`` script's keys and arguments, or ``None`` if not worth storing."""
        ttl_ms = int(response.expires_at - flight.clock() * 1000.0 - flight.request.buffer_ms)
        if ttl_ms <= 0:
            return None
        plain = json.dumps(response.to_dict()).encode()
        clear = self._sealer.fingerprint(response.token) + b"%016d" % int(response.expires_at)
        stored = clear + self._sealer.seal(plain, names.value.encode() + clear)
        keys = [names.value, names.lease, names.subject]
        return keys, [stored, ttl_ms, fence, b"%016d" % int(response.expires_at)]

    # -- I/O drivers -------------------------------------------------------------------

    def _run(self, client: Any, op: _Op) -> Any:
        if op.kind == "get":
            return client.get(*op.args)
        if op.kind == "sleep":
            self._sleep(*op.args)
            return None
        source, keys, args = op.args
        return self._script(client, source)(keys, args)

    async def _arun(self, client: Any, op: _Op) -> Any:
        if op.kind == "get":
            return await client.get(*op.args)
        if op.kind == "sleep":
            await self._asleep(*op.args)
            return None
        source, keys, args = op.args
        return await self._script(client, source)(keys, args)

    def _script(self, client: Any, source: str) -> Any:
        """redis-py's script object (EVALSHA, loading the script when Redis lacks it)."""
        scripts = self._scripts.get(client)
        if scripts is None:
            scripts = self._scripts[client] = {}
        found = scripts.get(source)
        if found is None:
            found = scripts[source] = client.register_script(source)
        return found

    # -- the circuit breaker --------------------------------------------------------

    def _up(self) -> bool:
        return self._monotonic() >= self._down_until

    def _trip(self, exc: BaseException) -> None:
        shared_cache_failed(type(exc).__name__)
        if _resharding(exc):
            # A cluster slot in mid-migration: this call fetches directly, and Redis
            # is asked again by the next one (the migration ends in moments).
            log.debug("a Redis Cluster slot is moving (%s)", type(exc).__name__)
            return
        with self._down_lock:
            first = self._up()
            self._down_until = self._monotonic() + self._retry_after
        if first:
            log.warning(
                "the shared token cache at %s failed (%s); fetching tokens "
                "from Connect directly, trying Redis again in %.0f s",
                self.where,
                type(exc).__name__,
                self._retry_after,
            )

    def _quietly(self, call: Callable[[], Any]) -> bool:
        """Run ``call``; a Redis failure trips the breaker instead of raising. Whether
        it succeeded."""
        try:
            call()
        except _REDIS_DOWN as exc:
            self._trip(exc)
            return False
        return True

    async def _aquietly(self, run: Callable[[_Op], Awaitable[Any]], op: _Op) -> bool:
        """`_quietly` for an operation run on the event loop."""
        try:
            await run(op)
        except _REDIS_DOWN as exc:
            self._trip(exc)
            return False
        return True


def _resharding(exc: BaseException) -> bool:
    """Whether ``exc`` says a cluster slot is being migrated: Redis answers TRYAGAIN to
    a command whose keys are split between the two masters, and redis-py gives up
    following the redirections with a bare ``ClusterError``."""
    return isinstance(exc, TryAgainError) or type(exc) is ClusterError


def _cluster_enabled(info: Mapping[str, Any]) -> bool:
    """Whether ``INFO cluster`` comes from a Redis Cluster node."""
    return str(info.get("cluster_enabled", 0)) == "1"


def _expiry(raw: object) -> float:
    """The clear expiry of a stored value; 0 for anything that is not one."""
    if not isinstance(raw, bytes):
        return 0.0
    try:
        return float(int(raw[_FP:_EXP]))
    except ValueError:
        return 0.0


def is_foreign_lease(ttl_ms: object, lease_ms: int) -> bool:
    """Whether a lease's remaining time (``PTTL``) shows it was not set by a process
    of this cache, which always sets one of at most ``lease_ms``: no expiry, a longer
    one, or an answer that is not a number. Waiting for such a lease would stall
    every miss for nothing."""
    if isinstance(ttl_ms, bool) or not isinstance(ttl_ms, int):
        return True
    return ttl_ms == -1 or ttl_ms > lease_ms


def from_env(environ: Mapping[str, str] = os.environ) -> RedisTokenCache | None:
    """The shared cache ``CONNECT_AUTH_REDIS_URL`` and ``CONNECT_AUTH_CACHE_KEY`` ask for.

    Args:
        environ: where to read them (default ``os.environ``).

    Returns:
        A `RedisTokenCache`, or ``None`` when ``CONNECT_AUTH_REDIS_URL`` is unset.

    Raises:
        ValueError: the URL is set without a usable ``CONNECT_AUTH_CACHE_KEY``.
    """
    url = environ.get("CONNECT_AUTH_REDIS_URL", "").strip()
    if not url:
        return None
    key = environ.get("CONNECT_AUTH_CACHE_KEY", "").strip()
    if not key:
        raise ValueError(
            f"CONNECT_AUTH_REDIS_URL is set but CONNECT_AUTH_CACHE_KEY is not: set it to the "
            f"same secret in every process; {KEY_HINT}"
        )
    return RedisTokenCache(url, encryption_key=key)
