"""The Redis shared cache on a real 3-master Redis Cluster, and behind Sentinel (a master,
a replica and a sentinel), all started by the suite."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio.cluster
import redis.cluster
import redis.sentinel
from helpers import APP, SLACK, fast_retry, revoke_delete_and_clear, run_in_tasks

from benchmarks.fleet import fleet_env, run_fleet
from connect_auth import ConnectClient
from connect_auth.redis import RedisTokenCache
from connect_auth.testing import ConnectEmulator
from connect_auth.testing._redis_servers import RedisClusterServers, RedisSentinelServers

KEY = "k" * 32
ALICE = {"type": "user", "id": "u_alice"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    servers = RedisClusterServers(tmp_path_factory.mktemp("cluster")).start()
    yield servers
    servers.stop()


@pytest.fixture
def nodes(cluster: RedisClusterServers) -> list[str]:
    """The URLs of the three masters, the first one the owner of the cache's slot."""
    cluster.flush()
    owner = cluster.owner_of("{connect-auth}:x")
    return [owner, *(u for u in cluster.urls if u != owner)]


def _client(emulator: ConnectEmulator, cache: RedisTokenCache, **kw: Any) -> ConnectClient:
    """A client of its own (as another process would have), with the emulator's one
    Vercel credential: entries are per credential."""
    kw.setdefault("vercel_token", _OIDC.setdefault(emulator.url, emulator.oidc_token()))
    return ConnectClient(base_url=emulator.url, retry=fast_retry(), shared_cache=cache, **kw)


_OIDC: dict[str, str] = {}


def _warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name.startswith("connect_auth") and r.levelno >= logging.WARNING
    ]


def _patient(url: str) -> str:
    return url + "?socket_timeout=10&socket_connect_timeout=10"


def test_a_url_to_a_node_that_does_not_own_the_slot_shares_tokens(
    emulator: ConnectEmulator, nodes: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    """Any node's URL works: cluster mode is detected and a cluster client follows the
    slot to its owner, so the breaker never trips and two clients share one token."""
    caplog.set_level(logging.WARNING, logger="connect_auth")
    for url in nodes[1:]:  # the nodes that answer MOVED for the cache's keys
        with (
            RedisTokenCache(url, encryption_key=KEY) as cache,
            _client(emulator, cache) as a,
            _client(emulator, cache) as b,
        ):
            assert a.get_token(SLACK, subject=APP) == b.get_token(SLACK, subject=APP)
    assert emulator.token_calls() == 1  # the second node's clients read the first's token
    assert _warnings(caplog) == []


def test_a_slot_moved_by_resharding_is_followed_without_the_breaker(
    emulator: ConnectEmulator,
    cluster: RedisClusterServers,
    nodes: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The cache's slot moves to another master while a cache is in use: the cluster
    client follows the MOVED answer, the token moved with the slot, nothing trips."""
    with RedisTokenCache(nodes[1], encryption_key=KEY) as cache:
        with _client(emulator, cache) as a:
            token = a.get_token(SLACK, subject=APP)
        cluster.move_slot_of("{connect-auth}:x", to=nodes[2])
        assert cluster.owner_of("{connect-auth}:x") == nodes[2]
        with _client(emulator, cache) as b, _client(emulator, cache) as c:
            assert b.get_token(SLACK, subject=APP) == token  # read where the slot went
            assert b.get_token(SLACK, subject=ALICE) == c.get_token(SLACK, subject=ALICE)
    assert emulator.token_calls() == 2
    assert _warnings(caplog) == []


def test_a_slot_in_mid_migration_never_trips_the_breaker(
    emulator: ConnectEmulator,
    cluster: RedisClusterServers,
    nodes: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """While the cache's slot is half moved (some keys on each master), tokens are read
    through ASK answers; a new token, whose write Redis refuses with TRYAGAIN until the
    move ends, is fetched directly without turning the cache off; after the move
    every token is shared again."""
    bob = {"type": "user", "id": "u_bob"}
    with RedisTokenCache(nodes[1], encryption_key=KEY) as cache:
        with _client(emulator, cache) as a:
            token = a.get_token(SLACK, subject=APP)
            a.get_token(SLACK, subject=bob)
        with cluster.moving_slot_of("{connect-auth}:x", to=nodes[2]) as migrate:
            assert migrate(1) == 1  # one key moved, the others still on the old master
            with _client(emulator, cache) as b:
                assert b.get_token(SLACK, subject=APP) == token
                b.get_token(SLACK, subject=ALICE)
            assert emulator.token_calls() == 3
        with _client(emulator, cache) as c, _client(emulator, cache) as d:
            assert c.get_token(SLACK, subject=APP) == token
            c.get_token(SLACK, subject=bob)
            assert c.get_token(SLACK, subject=ALICE) == d.get_token(SLACK, subject=ALICE)
    assert emulator.token_calls() == 4  # alice again: her write waited for the move
    assert _warnings(caplog) == []


def test_a_master_failing_over_to_its_replica_is_followed_without_the_breaker(
    emulator: ConnectEmulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A cluster with a replica per master: the master holding the cache's slot dies,
    its replica takes over, and a new process reads the token from it, with no new
    Connect call and without tripping the breaker."""
    servers = RedisClusterServers(tmp_path, replicas=1).start()
    try:
        owner = servers.owner_of("{connect-auth}:x")
        other = next(u for u in servers.urls if u != owner)
        with RedisTokenCache(other, encryption_key=KEY) as cache:
            with _client(emulator, cache) as a:
                token = a.get_token(SLACK, subject=APP)
            with redis.Redis.from_url(owner) as master:
                assert master.wait(1, 5000) == 1  # the replica has the token
            servers.node_at(owner).stop()
            survivors = [u for u in servers.urls if servers.node_at(u).running]
            servers.wait_until_ok(survivors)
            assert servers.owner_of("{connect-auth}:x") != owner
            with _client(emulator, cache) as b:
                assert b.get_token(SLACK, subject=APP) == token
    finally:
        servers.stop()
    assert emulator.token_calls() == 1
    assert _warnings(caplog) == []


def test_cluster_clients_given_are_accepted_sync_and_asyncio(
    emulator: ConnectEmulator, nodes: list[str]
) -> None:
    """client=redis.cluster.RedisCluster and async_client=redis.asyncio.cluster.RedisCluster:
    threads and tasks of two clients share one token."""
    oidc = emulator.oidc_token()
    sync = redis.cluster.RedisCluster.from_url(nodes[2])

    async def run() -> list[str]:
        aio = redis.asyncio.cluster.RedisCluster.from_url(nodes[1])
        try:
            cache = RedisTokenCache(client=sync, async_client=aio, encryption_key=KEY)
            with _client(emulator, cache, vercel_token=oidc) as a:
                first = a.get_token(SLACK, subject=APP)
                with _client(emulator, cache, vercel_token=oidc) as b:
                    turn = iter([a, b] * 4)
                    tokens = await run_in_tasks(
                        8, lambda: next(turn).aget_token(SLACK, subject=ALICE)
                    )
                return [first, *tokens]
        finally:
            await aio.aclose()

    emulator.latency = 0.2  # the tasks' fetch is in flight while the others ask
    tokens = asyncio.run(run())
    sync.close()
    assert len(set(tokens[1:])) == 1
    assert emulator.token_calls() == 2  # the app token, and alice's once for all tasks


def test_an_asyncio_client_made_from_a_cluster_url_shares_tokens(
    emulator: ConnectEmulator, nodes: list[str]
) -> None:
    """Async callers of a cache made from a node URL use a cluster client too."""
    oidc = emulator.oidc_token()

    async def run() -> tuple[str, str]:
        with (
            RedisTokenCache(nodes[1], encryption_key=KEY) as cache,
            _client(emulator, cache, vercel_token=oidc) as a,
            _client(emulator, cache, vercel_token=oidc) as b,
        ):
            return await a.aget_token(SLACK, subject=APP), await b.aget_token(SLACK, subject=APP)

    first, second = asyncio.run(run())
    assert first == second and emulator.token_calls() == 1


def test_revoke_delete_and_clear_reach_every_master(
    emulator: ConnectEmulator, cluster: RedisClusterServers, nodes: list[str]
) -> None:
    """revoke_token, delete_token_cache_entry and clear_token_cache on a cluster; after the
    clear no master holds a key of the cache."""
    with (
        RedisTokenCache(nodes[2], encryption_key=KEY) as cache,
        _client(emulator, cache) as a,
        _client(emulator, cache) as b,
    ):
        revoke_delete_and_clear(a, b, emulator.token_calls, cluster.keys)


def test_a_cluster_client_that_decodes_responses_is_refused(nodes: list[str]) -> None:
    decoding = redis.cluster.RedisCluster.from_url(nodes[0], decode_responses=True)
    try:
        with pytest.raises(ValueError, match="decode_responses"):
            RedisTokenCache(client=decoding, encryption_key=KEY)
    finally:
        decoding.close()


def test_a_fleet_on_a_cluster_shares_one_token_and_one_refresh(
    emulator: ConnectEmulator, nodes: list[str]
) -> None:
    """Separate processes configured only by the environment with a non-owning node's
    URL: a cold herd costs one Connect call, and a token the provider refuses in all of
    them costs one refresh."""
    emulator.latency = 0.3
    env = fleet_env(emulator.url, emulator.oidc_token(), _patient(nodes[1]), KEY)
    reports = run_fleet(env, 4, "herd", "4")
    assert [r["errors"] for r in reports] == [[], [], [], []]
    tokens = {t for r in reports for t in r["results"]}
    assert len(tokens) == 1 and emulator.token_calls() == 1
    token = tokens.pop()

    def revoke_once_all_hold_it() -> None:
        emulator.revoke(token)

    emulator.latency = 0.0
    refused = run_fleet(
        env, 4, "refused", "4", emulator.provider_url(SLACK), before_go=revoke_once_all_hold_it
    )
    assert [r["errors"] for r in refused] == [[], [], [], []]
    assert {s for r in refused for s in r["results"]} == {200}
    assert emulator.token_calls() == 2  # one refresh for the whole fleet


def test_cluster_keys_in_redis_are_sealed(
    emulator: ConnectEmulator, nodes: list[str], cluster: RedisClusterServers, tmp_path: Path
) -> None:
    """Nothing stored on any master shows the token in clear."""
    with RedisTokenCache(nodes[1], encryption_key=KEY) as cache, _client(emulator, cache) as a:
        token = a.get_token(SLACK, subject=APP)
    dumped = b"".join(k + v for k, v in cluster.dump())
    assert dumped and token.encode() not in dumped


def test_a_cluster_that_goes_down_trips_the_breaker_and_loses_no_request(
    emulator: ConnectEmulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The breaker still covers a whole cluster: with every node gone, tokens come from
    Connect directly, with one warning, and no call fails."""
    servers = RedisClusterServers(tmp_path).start()
    try:
        with RedisTokenCache(servers.urls[1], encryption_key=KEY) as cache:
            with _client(emulator, cache) as a:
                a.get_token(SLACK, subject=APP)  # cluster detected, token shared
            servers.stop()
            with _client(emulator, cache) as b:  # a cold process: asks Redis first
                assert b.get_token(SLACK, subject=ALICE)
                assert b.get_token(SLACK, subject={"type": "user", "id": "u_bob"})
    finally:
        servers.stop()
    warnings = _warnings(caplog)
    assert len(warnings) == 1 and "Redis" in warnings[0].getMessage()
    assert emulator.token_calls() == 3


def test_a_sentinel_master_client_shares_tokens_across_a_failover(
    emulator: ConnectEmulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """client=Sentinel(...).master_for(...): two clients share a token; after the
    sentinel fails the master over to the replica, the token is still shared (it was
    replicated) and new tokens are stored on the new master."""
    servers = RedisSentinelServers(tmp_path).start()
    sentinel = redis.sentinel.Sentinel([("127.0.0.1", servers.sentinel.port)], socket_timeout=2)
    master = sentinel.master_for("mymaster", socket_timeout=2)
    try:
        cache = RedisTokenCache(client=master, encryption_key=KEY)
        with _client(emulator, cache) as a, _client(emulator, cache) as b:
            assert a.get_token(SLACK, subject=APP) == b.get_token(SLACK, subject=APP)
        with redis.Redis(port=servers.sentinel.port) as s:
            s.execute_command("SENTINEL", "FAILOVER", "mymaster")
        deadline = time.monotonic() + 30
        while sentinel.discover_master("mymaster")[1] != servers.replica.port:
            assert time.monotonic() < deadline, "no failover"
            time.sleep(0.05)
        with _client(emulator, cache) as c, _client(emulator, cache) as d:
            assert c.get_token(SLACK, subject=APP)  # read from the promoted replica
            assert c.get_token(SLACK, subject=ALICE) == d.get_token(SLACK, subject=ALICE)
    finally:
        master.close()
        servers.stop()
    assert emulator.token_calls() == 2  # the app token and alice's, each once
    assert _warnings(caplog) == []
