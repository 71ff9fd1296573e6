"""The Redis shared cache: a real redis-server, real processes, the emulator."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio
from helpers import (
    APP,
    SLACK,
    fast_retry,
    revoke_delete_and_clear,
    run_in_tasks,
    run_in_threads,
    wait_for,
)

import connect_auth
from benchmarks.fleet import fleet_env, run_fleet
from connect_auth import ConnectClient
from connect_auth._sealed import Sealer
from connect_auth.redis import RedisTokenCache
from connect_auth.testing import ConnectEmulator
from connect_auth.testing._redis_servers import RedisServer

KEY = "k" * 32


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    redis_server.flush()
    return redis_server.url


def _patient(url: str) -> str:
    """The URL with 10 s socket timeouts (query arguments win in redis-py): on a busy
    machine a 0.5 s Redis timeout trips the breaker and that process fetches directly,
    which is the designed fallback (tested below) but not what the fleet tests count."""
    return url + "?socket_timeout=10&socket_connect_timeout=10"


def _client(emulator: ConnectEmulator, cache: RedisTokenCache, **kw: Any) -> ConnectClient:
    kw.setdefault("vercel_token", emulator.oidc_token())
    return ConnectClient(base_url=emulator.url, retry=fast_retry(), shared_cache=cache, **kw)


# -- a fleet of processes ---------------------------------------------------------------


def test_cold_herd_of_4_processes_x_8_threads_costs_one_call(
    emulator: ConnectEmulator, redis_url: str
) -> None:
    """32 cold callers in 4 processes: one Connect call, and all get the same token."""
    emulator.latency = 0.3  # the fetch is still running when the other processes ask
    env = fleet_env(emulator.url, emulator.oidc_token(), _patient(redis_url), KEY)
    reports = run_fleet(env, 4, "herd", "8")
    tokens = {t for r in reports for t in r["results"]}
    assert [r["errors"] for r in reports] == [[], [], [], []]
    assert sum(len(r["results"]) for r in reports) == 32
    assert len(tokens) == 1
    assert emulator.token_calls() == 1


def test_a_token_refused_in_4_processes_costs_one_refresh(
    emulator: ConnectEmulator, redis_url: str
) -> None:
    """Revoked at the provider while 4 processes hold it: one refresh for the fleet."""
    env = fleet_env(emulator.url, emulator.oidc_token(), _patient(redis_url), KEY)
    with (
        RedisTokenCache(redis_url, encryption_key=KEY) as cache,
        _client(emulator, cache, vercel_token=env["VERCEL_OIDC_TOKEN"]) as warm,
    ):
        token = warm.get_token(SLACK, subject=APP)  # the fleet's shared token

    def revoke_once_all_hold_it() -> None:
        assert emulator.token_calls() == 1  # all four read the token from Redis
        emulator.revoke(token)

    reports = run_fleet(
        env, 4, "refused", "4", emulator.provider_url(SLACK), before_go=revoke_once_all_hold_it
    )
    assert [r["errors"] for r in reports] == [[], [], [], []]
    assert {s for r in reports for s in r["results"]} == {200}
    assert emulator.token_calls() == 2  # the first token, and one refresh for all


# -- one process, several clients (each its own local cache, as separate processes) -------


@pytest.fixture
def cache(redis_url: str) -> Iterator[RedisTokenCache]:
    with RedisTokenCache(redis_url, encryption_key=KEY) as c:
        yield c


def test_second_client_reads_the_token_from_redis(
    emulator: ConnectEmulator, cache: RedisTokenCache
) -> None:
    """A local miss is served from Redis before Connect."""
    oidc = emulator.oidc_token()
    with (
        _client(emulator, cache, vercel_token=oidc) as a,
        _client(emulator, cache, vercel_token=oidc) as b,
    ):
        first = a.get_token_response(SLACK, subject=APP)
        second = b.get_token_response(SLACK, subject=APP)
    assert second == first
    assert emulator.token_calls() == 1


def test_different_credentials_never_share_an_entry(
    emulator: ConnectEmulator, cache: RedisTokenCache
) -> None:
    """Two Vercel credentials: two entries, two Connect calls."""
    with (
        _client(emulator, cache) as a,
        _client(emulator, cache, vercel_token=emulator.oidc_token(ttl=1800)) as b,
    ):
        assert a.get_token(SLACK, subject=APP) != b.get_token(SLACK, subject=APP)
    assert emulator.token_calls() == 2


def test_a_wrong_encryption_key_is_a_miss(
    emulator: ConnectEmulator, cache: RedisTokenCache, redis_url: str
) -> None:
    """A cache written with another key is never read as a token, nor an error."""
    oidc = emulator.oidc_token()
    with (
        RedisTokenCache(redis_url, encryption_key="another secret key of 32+ bytes!") as other,
        _client(emulator, cache, vercel_token=oidc) as a,
        _client(emulator, other, vercel_token=oidc) as b,
    ):
        assert a.get_token(SLACK, subject=APP) != b.get_token(SLACK, subject=APP)
    assert emulator.token_calls() == 2


def test_redis_holds_nothing_in_clear(
    emulator: ConnectEmulator, cache: RedisTokenCache, redis_server: RedisServer
) -> None:
    """Scan every key and value: no token, connector, subject id or credential."""
    oidc = emulator.oidc_token()
    with _client(emulator, cache, vercel_token=oidc) as a:
        tokens = [
            a.get_token(SLACK, subject=APP),
            a.get_token(SLACK, subject={"type": "user", "id": "u_alice"}),
        ]
    dump = redis_server.dump()
    assert len(dump) >= 4  # two tokens, two subject indexes
    secrets = [*tokens, "slack", "acme", "u_alice", oidc, oidc[-40:]]
    for key, value in dump:
        for secret in secrets:
            assert secret.encode() not in key and secret.encode() not in value, secret


def test_refresh_ahead_takes_a_token_another_process_refreshed(
    emulator: ConnectEmulator, cache: RedisTokenCache
) -> None:
    """A background refresh finds the fleet's newer token in Redis: no Connect call."""
    oidc = emulator.oidc_token()
    now = [0.0]
    import time

    def clock() -> float:
        return time.time() + now[0]

    with (
        _client(emulator, cache, vercel_token=oidc) as a,
        _client(emulator, cache, vercel_token=oidc, clock=clock) as b,
    ):
        old = b.get_token_response(SLACK, subject=APP)  # b caches it
        new = a.get_token_response(SLACK, subject=APP, force_refresh=True)
        assert new.token != old.token and emulator.token_calls() == 2
        # b's clock reaches the refresh window: the hit starts a background refresh.
        now[0] = (old.expires_at / 1000.0 - time.time()) - 200.0
        assert b.get_token(SLACK, subject=APP) == old.token
        wait_for(lambda: b.get_token(SLACK, subject=APP) == new.token)
    assert emulator.token_calls() == 2


def test_the_clients_clock_judges_the_shared_tokens(
    emulator: ConnectEmulator, cache: RedisTokenCache
) -> None:
    """ConnectClient(clock=) reaches the shared cache: a Redis token that, by that
    clock, is inside its validity buffer is not taken; time is stepped, not waited."""
    import time

    oidc = emulator.oidc_token()
    emulator.state.connectors[SLACK].token_ttl = 600
    with _client(emulator, cache, vercel_token=oidc) as a:
        shared = a.get_token_response(SLACK, subject=APP)
    emulator.state.connectors[SLACK].token_ttl = 3600
    ten_seconds_left = shared.expires_at / 1000.0 - 10  # the buffer is 30 s
    with _client(emulator, cache, vercel_token=oidc, clock=lambda: ten_seconds_left) as b:
        assert b.get_token(SLACK, subject=APP) != shared.token
    assert emulator.token_calls() == 2
    with _client(emulator, cache, vercel_token=oidc, clock=time.time) as c:
        assert c.get_token(SLACK, subject=APP) != shared.token  # the newer one, from Redis
    assert emulator.token_calls() == 2


def test_revoke_and_clear_reach_the_shared_entries(
    emulator: ConnectEmulator, cache: RedisTokenCache, redis_server: RedisServer
) -> None:
    """revoke_token, delete_token_cache_entry and clear_token_cache delete in Redis too."""
    oidc = emulator.oidc_token()
    with (
        _client(emulator, cache, vercel_token=oidc) as a,
        _client(emulator, cache, vercel_token=oidc) as b,
    ):
        revoke_delete_and_clear(a, b, emulator.token_calls, redis_server.dump)


def test_async_tasks_share_one_fetch_through_redis(
    emulator: ConnectEmulator, cache: RedisTokenCache
) -> None:
    """Two clients' tasks on one loop, cold, released at once: one Connect call."""
    oidc = emulator.oidc_token()
    emulator.latency = 0.2
    with (
        _client(emulator, cache, vercel_token=oidc) as a,
        _client(emulator, cache, vercel_token=oidc) as b,
    ):

        async def both() -> list[str]:
            turn = iter([a, b] * 8)
            return await run_in_tasks(16, lambda: next(turn).aget_token(SLACK, subject=APP))

        tokens = asyncio.run(both())
    assert len(set(tokens)) == 1 and emulator.token_calls() == 1


# -- Redis failing -------------------------------------------------------------------------


def test_killing_redis_mid_run_loses_no_request(
    emulator: ConnectEmulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis is killed while 8 threads fetch 40 tokens: every call gets one, one warning."""
    server = RedisServer(tmp_path).start()
    scopes = [[f"scope-{i}"] for i in range(40)]  # 40 distinct tokens
    done = iter(range(10**6))
    lock = threading.Lock()

    def work(c: ConnectClient) -> list[str]:
        tokens = []
        for s in scopes[:5]:
            tokens.append(c.get_token(SLACK, subject=APP, scopes=s))
            with lock:
                if next(done) == 12:  # a third of the way in: kill it
                    server.stop()
        return tokens

    try:
        with (
            RedisTokenCache(server.url, encryption_key=KEY) as cache,
            _client(emulator, cache) as c,
            caplog.at_level(logging.WARNING, logger="connect_auth"),
        ):
            results, errors = run_in_threads(8, lambda: work(c))
    finally:
        server.stop()
    assert errors == [] and [len(r) for r in results] == [5] * 8
    warnings = [r for r in caplog.records if "shared token cache" in r.getMessage()]
    assert len(warnings) == 1
    assert "Connect directly" in warnings[0].getMessage()


def test_redis_not_running_at_all_falls_back(
    emulator: ConnectEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing listens at the URL: tokens come from Connect, one warning."""
    dead = RedisServer(Path("."))  # never started: its port is free
    with (
        RedisTokenCache(dead.url, encryption_key=KEY) as cache,
        _client(emulator, cache) as c,
        caplog.at_level(logging.WARNING, logger="connect_auth"),
    ):
        assert c.get_token(SLACK, subject=APP)
        assert asyncio.run(c.aget_token(SLACK, subject={"type": "user", "id": "u_alice"}))
    assert emulator.token_calls() == 2
    assert sum("shared token cache" in r.getMessage() for r in caplog.records) == 1


# -- configuration ----------------------------------------------------------------------


def test_environment_configures_the_default_client(
    emulator: ConnectEmulator, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CONNECT_AUTH_REDIS_URL and CONNECT_AUTH_CACHE_KEY: the module functions share."""
    monkeypatch.setenv("CONNECT_AUTH_REDIS_URL", redis_url)
    monkeypatch.setenv("CONNECT_AUTH_CACHE_KEY", KEY)
    old = connect_auth.set_default_client(None)
    try:
        connect_auth.get_token(SLACK, subject=APP)
        connect_auth.set_default_client(None).close()  # a new process, as it were
        connect_auth.get_token(SLACK, subject=APP)
    finally:
        new = connect_auth.set_default_client(old)
        if new is not None:
            new.close()
    assert emulator.token_calls() == 1


def test_redis_url_without_a_key_says_what_to_set(
    emulator: ConnectEmulator, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONNECT_AUTH_REDIS_URL", redis_url)
    monkeypatch.delenv("CONNECT_AUTH_CACHE_KEY", raising=False)
    old = connect_auth.set_default_client(None)
    try:
        with pytest.raises(ValueError, match="CONNECT_AUTH_CACHE_KEY"):
            connect_auth.get_token(SLACK, subject=APP)
    finally:
        connect_auth.set_default_client(old)


@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        ((), {"encryption_key": KEY}, ValueError),  # neither url nor client
        (("http://localhost:6379",), {"encryption_key": KEY}, ValueError),
        (("redis://localhost:6379",), {"encryption_key": "short"}, ValueError),
        (("redis://localhost:6379",), {"encryption_key": KEY, "namespace": "a b"}, ValueError),
        (("redis://localhost:6379",), {"encryption_key": KEY, "lease_ms": 0}, ValueError),
        ((), {"client": "redis://x", "encryption_key": KEY}, TypeError),
    ],
)
def test_bad_arguments_are_refused(
    args: tuple[Any, ...], kwargs: dict[str, Any], error: type
) -> None:
    with pytest.raises(error):
        RedisTokenCache(*args, **kwargs)


def test_repr_hides_the_key_and_credentials(redis_url: str) -> None:
    url = redis_url.replace("redis://", "redis://user:hunter2secret@")
    with RedisTokenCache(url, encryption_key=KEY) as cache:
        text = repr(cache) + str(cache)
    assert KEY not in text and "hunter2secret" not in text and "127.0.0.1" in text


def test_sealed_values_open_only_with_their_key_and_name() -> None:
    a, b = Sealer(KEY), Sealer("z" * 32)
    sealed = a.seal(b"secret", b"name-1")
    assert a.open(sealed, b"name-1") == b"secret"
    assert a.open(sealed, b"name-2") is None  # moved under another name
    assert b.open(sealed, b"name-1") is None  # another key
    assert a.open(sealed[:-1] + bytes([sealed[-1] ^ 1]), b"name-1") is None  # tampered
    assert a.name("x") == Sealer(KEY).name("x") != b.name("x")


def test_a_sync_client_given_serves_async_callers(
    emulator: ConnectEmulator, redis_url: str
) -> None:
    """RedisTokenCache(client=redis.Redis(...)): async callers use it from a thread."""
    oidc = emulator.oidc_token()
    with redis.Redis.from_url(redis_url) as r:
        cache = RedisTokenCache(client=r, encryption_key=KEY)
        with (
            _client(emulator, cache, vercel_token=oidc) as a,
            _client(emulator, cache, vercel_token=oidc) as b,
        ):
            first = asyncio.run(a.aget_token(SLACK, subject=APP))
            assert asyncio.run(b.aget_token(SLACK, subject=APP)) == first
    assert emulator.token_calls() == 1


FORK_SCRIPT = """
import json, os
import connect_auth

SLACK = "slack/acme-slack"
a = connect_auth.get_token(SLACK, subject={"type": "app"})  # through Redis, pooled connection
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(r)
    mine = {"a": connect_auth.get_token(SLACK, subject={"type": "app"}),
            "alice": connect_auth.get_token(SLACK, subject={"type": "user", "id": "u_alice"})}
    os.write(w, json.dumps(mine).encode())
    os._exit(0)
os.close(w)
_, status = os.waitpid(pid, 0)
with os.fdopen(r) as f:
    child = json.loads(f.read() or "{}")
alice = connect_auth.get_token(SLACK, subject={"type": "user", "id": "u_alice"})
print(json.dumps({"status": status, "a": a, "alice": alice, "child": child}))
"""


def test_a_forked_child_uses_redis_on_its_own_connections(
    emulator: ConnectEmulator, redis_url: str
) -> None:
    """The child keeps its parent's tokens and shares what it fetches through Redis."""
    env = fleet_env(emulator.url, emulator.oidc_token(), _patient(redis_url), KEY)
    done = subprocess.run(
        [sys.executable, "-c", FORK_SCRIPT], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["status"] == 0
    assert out["child"] == {"a": out["a"], "alice": out["alice"]}
    assert emulator.token_calls() == 2  # the parent read the child's token from Redis


def test_an_asyncio_client_given_serves_async_callers(
    emulator: ConnectEmulator, redis_url: str
) -> None:
    """RedisTokenCache(client=redis.asyncio.Redis(...)): tasks share; threads go direct."""
    oidc = emulator.oidc_token()

    async def run() -> tuple[str, str]:
        r = redis.asyncio.Redis.from_url(redis_url)
        cache = RedisTokenCache(client=r, encryption_key=KEY)
        try:
            with (
                _client(emulator, cache, vercel_token=oidc) as a,
                _client(emulator, cache, vercel_token=oidc) as b,
            ):
                first = await a.aget_token(SLACK, subject=APP)
                return first, await b.aget_token(SLACK, subject=APP)
        finally:
            await r.aclose()

    first, second = asyncio.run(run())
    assert first == second and emulator.token_calls() == 1


# -- time as an input -----------------------------------------------------------------


def test_a_held_lease_is_waited_out_in_stepped_sleeps(
    emulator: ConnectEmulator, redis_url: str
) -> None:
    """While another process holds a token's lease, the waiter sleeps through the
    cache's own sleep= (here it only records), gives up after twice lease_ms of sleep
    and fetches directly, long before the stalled leader is done."""
    import threading

    slept: list[float] = []
    emulator.stall_next(1, seconds=20)  # the leader's fetch hangs, holding the lease
    oidc = emulator.oidc_token()
    with (
        RedisTokenCache(redis_url, encryption_key=KEY, lease_ms=1000) as leading,
        RedisTokenCache(
            redis_url, encryption_key=KEY, lease_ms=1000, sleep=slept.append
        ) as waiting,
    ):
        leader_client = ConnectClient(
            base_url=emulator.url,
            vercel_token=oidc,
            timeout=15,
            retry=fast_retry(max_attempts=1),
            shared_cache=leading,
        )
        failed: list[BaseException] = []

        def lead() -> None:
            try:
                leader_client.get_token(SLACK, subject=APP)
            except BaseException as exc:  # the stall ends in an error; kept for the check
                failed.append(exc)

        leader = threading.Thread(target=lead)
        leader.start()
        wait_for(lambda: len(emulator.calls) == 1, what="the leader's call is in")
        with _client(emulator, waiting, vercel_token=oidc) as b:
            assert b.get_token(SLACK, subject=APP)
        assert leader.is_alive()  # the waiter did not wait for it
        assert sum(slept) >= 2.0 and len(slept) > 1
        emulator.stop()  # ends the stall
        leader.join()
        leader_client.close()
    assert len(failed) == 1


def test_the_breaker_follows_its_own_clock(
    emulator: ConnectEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """A Redis failure turns the cache off for retry_after seconds of monotonic=;
    stepping that clock past it makes the next miss try Redis again."""
    import logging

    from helpers import free_port

    now = [1000.0]
    dead = RedisTokenCache(
        f"redis://127.0.0.1:{free_port()}/0",
        encryption_key=KEY,
        retry_after=30,
        monotonic=lambda: now[0],
    )
    with (
        caplog.at_level(logging.WARNING, logger="connect_auth.redis"),
        dead,
        _client(emulator, dead) as client,
    ):
        client.get_token(SLACK, subject={"type": "user", "id": "u_alice"})
        client.get_token(SLACK, subject={"type": "user", "id": "u_bob"})
        outages = [r for r in caplog.records if "failed" in r.getMessage()]
        assert len(outages) == 1  # the second miss did not touch Redis
        now[0] += 31
        client.get_token(SLACK, subject=APP)
    outages = [r for r in caplog.records if "failed" in r.getMessage()]
    assert len(outages) == 2
    assert emulator.token_calls() == 3


def test_a_token_written_just_before_the_lease_is_taken_is_used() -> None:
    """The race behind "one refresh for the fleet": this process reads no token, the
    leader writes one and lets its lease go, then this process takes the lease. It
    reads once more, finds the leader's token, and gives the lease back instead of
    fetching again. (The plan driven step by step: no Redis, no timing.)"""
    import time
    from concurrent.futures import Future

    from connect_auth import TokenRequest, TokenResponse
    from connect_auth._engine import Flight
    from connect_auth._models import ConnectorRef
    from connect_auth._oidc import Credential
    from connect_auth.redis import _LEAD, _LEASE, _RELEASE, _TAKEN

    cache = RedisTokenCache("redis://127.0.0.1:9/0", encryption_key=KEY)  # never reached
    request = TokenRequest.build(SLACK, subject=APP)
    flight = Flight(Future(), (request.key, "d" * 64), request, Credential("c", "d" * 64), True)
    names = cache._names(flight.key)
    written = TokenResponse(
        token="the-leaders-token",
        expires_at=int((time.time() + 3600) * 1000),
        connector=ConnectorRef(id="scl_acmeslack", uid=SLACK, type="slack"),
    )
    stored = cache._writer(flight, names, written, "leader-fence")
    assert stored is not None
    plan = cache._plan(flight, names, "our-fence")
    assert plan.send(None).kind == "get"
    lease = plan.send(None)  # nothing stored yet: ask for the lease
    assert lease.args[0] == _LEASE
    assert plan.send(_TAKEN).kind == "get"  # taken: read once more
    release = plan.send(stored[1][0])  # meanwhile the leader's token landed
    assert release.args[0] == _RELEASE and release.args[2] == ["our-fence"]
    with pytest.raises(StopIteration) as done:
        plan.send(1)
    assert isinstance(done.value.value, TokenResponse)
    assert done.value.value.token == "the-leaders-token" and done.value.value is not _LEAD
    cache.close()
