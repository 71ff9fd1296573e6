"""Attacks on the Redis fleet cache by someone who can write to Redis but has not the
encryption key: rollbacks, forged prefixes, poisoned leases, a tampered subject index,
clients that decode, and weak keys. A real redis-server, the emulator, real clients."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio
from helpers import APP, SLACK, fast_retry

from connect_auth import ConnectClient
from connect_auth.httpx import ConnectAuth
from connect_auth.redis import RedisTokenCache, is_foreign_lease
from connect_auth.testing import ConnectEmulator
from connect_auth.testing._redis_servers import RedisServer

KEY = "k" * 32
ALICE = {"type": "user", "id": "u_alice"}


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    redis_server.flush()
    return redis_server.url


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    """The attacker's own connection: full write access, no key."""
    with redis.Redis.from_url(redis_url) as r:
        yield r


def _fleet_member(
    emulator: ConnectEmulator, redis_url: str, oidc: str, **cache: Any
) -> ConnectClient:
    """A client with a cache of its own, as a separate process of the fleet would have."""
    return ConnectClient(
        base_url=emulator.url,
        vercel_token=oidc,
        retry=fast_retry(),
        shared_cache=RedisTokenCache(redis_url, encryption_key=KEY, **cache),
    )


def _token_names(r: redis.Redis) -> list[bytes]:
    return sorted(r.scan_iter(match="{connect-auth}:t:*"))


def _rewrite_the_token(r: redis.Redis, edit: Callable[[bytes], bytes]) -> None:
    """The attacker edits the one stored token value in place."""
    (name,) = _token_names(r)
    value = r.get(name)
    assert value is not None
    r.set(name, edit(value))


# -- 2. rollback and forged prefixes ------------------------------------------------------


def test_a_forged_expiry_prefix_does_not_make_an_old_token_fresh(
    emulator: ConnectEmulator, redis_url: str, raw: redis.Redis
) -> None:
    """The clear expiry beside a sealed token is rewritten to ten hours on: a process
    that needs a token valid for 30 minutes must not be given the 10-minute one."""
    emulator.state.connectors[SLACK].token_ttl = 600
    oidc = emulator.oidc_token()
    with _fleet_member(emulator, redis_url, oidc) as first:
        short = first.get_token_response(SLACK, subject=APP)
    later = b"%016d" % int(short.expires_at + 36_000_000)
    _rewrite_the_token(raw, lambda value: value[:32] + later + value[48:])
    emulator.state.connectors[SLACK].token_ttl = 7200
    with _fleet_member(emulator, redis_url, oidc) as second:
        got = second.get_token_response(SLACK, subject=APP, validity_buffer_ms=1_800_000)
    assert got.token != short.token
    assert got.expires_at / 1000.0 - time.time() > 1800
    assert emulator.token_calls() == 2


def test_a_refused_token_is_not_served_again_under_a_forged_fingerprint(
    emulator: ConnectEmulator, redis_url: str, raw: redis.Redis
) -> None:
    """The provider refuses the fleet's token; the attacker rewrites the clear
    fingerprint beside it so that it no longer looks like the refused one. The
    refresh still gets a new token, and the request succeeds."""
    oidc = emulator.oidc_token()
    with _fleet_member(emulator, redis_url, oidc) as member:
        old = member.get_token(SLACK, subject=APP)
        _rewrite_the_token(raw, lambda value: b"0" * 32 + value[32:])
        emulator.revoke(old)
        auth = ConnectAuth(SLACK, subject=APP, client=member)
        with httpx.Client(auth=auth) as http:
            answer = http.post(emulator.provider_url(SLACK, "chat.postMessage"), json={})
        assert answer.status_code == 200 and answer.json().get("ok") is True
        assert member.get_token(SLACK, subject=APP) != old
    assert emulator.token_calls() == 2


def test_a_value_moved_under_another_name_or_edited_does_not_open(
    emulator: ConnectEmulator, redis_url: str, raw: redis.Redis
) -> None:
    oidc = emulator.oidc_token()
    with _fleet_member(emulator, redis_url, oidc) as member:
        app_token = member.get_token(SLACK, subject=APP)
        member.get_token(SLACK, subject=ALICE)
    app_name, alice_name = _token_names(raw)
    values = {n: raw.get(n) for n in (app_name, alice_name)}
    # swap the two entries: each is a genuine value, under the other's name
    raw.set(app_name, values[alice_name])  # type: ignore[arg-type]
    raw.set(alice_name, values[app_name])  # type: ignore[arg-type]
    with _fleet_member(emulator, redis_url, oidc) as fresh:
        assert fresh.get_token(SLACK, subject=APP) != app_token
    assert emulator.token_calls() == 3  # the swapped entry read as a miss


# -- 7. poisoned leases -------------------------------------------------------------------


@pytest.mark.parametrize("ttl_ms", [None, 3_600_000], ids=["no-expiry", "far-expiry"])
def test_a_poisoned_lease_neither_stalls_misses_nor_stops_the_write(
    emulator: ConnectEmulator,
    redis_url: str,
    raw: redis.Redis,
    caplog: pytest.LogCaptureFixture,
    ttl_ms: int | None,
) -> None:
    """The attacker copies a lease name seen during a fetch and sets it with no expiry
    (or a far one). A fresh process's miss fetches at once and writes the token
    back, so the next fresh process reads it from Redis."""
    oidc = emulator.oidc_token()
    emulator.latency = 0.5  # long enough to see the lease
    seen: list[bytes] = []
    with _fleet_member(emulator, redis_url, oidc, lease_ms=1000) as first:
        fetch = threading.Thread(target=lambda: first.get_token(SLACK, subject=APP))
        fetch.start()
        deadline = time.monotonic() + 30
        while not seen and time.monotonic() < deadline:
            seen = list(raw.scan_iter(match="{connect-auth}:l:*"))
        fetch.join()
    emulator.latency = 0.0
    assert seen, "no lease was ever taken"
    raw.set(seen[0], b"attacker", px=ttl_ms)
    for name in _token_names(raw):
        raw.delete(name)  # the token is gone; the lease stays
    caplog.set_level(logging.WARNING, logger="connect_auth")
    with _fleet_member(emulator, redis_url, oidc, lease_ms=1000) as second:
        token = second.get_token(SLACK, subject=APP)
    assert any("lease" in r.getMessage() for r in caplog.records)
    assert raw.get(seen[0]) == b"attacker"  # never deleted: not ours
    with _fleet_member(emulator, redis_url, oidc, lease_ms=1000) as third:
        assert third.get_token(SLACK, subject=APP) == token  # from Redis
    assert emulator.token_calls() == 2


def test_foreign_lease_decisions() -> None:
    assert is_foreign_lease(-1, 10_000)
    assert is_foreign_lease(10_001, 10_000)
    assert is_foreign_lease(b"garbage", 10_000)
    assert is_foreign_lease(True, 10_000)
    assert not is_foreign_lease(9_999, 10_000)
    assert not is_foreign_lease(10_000, 10_000)


# -- 8. revoke stays inside the namespace --------------------------------------------------


def test_revoke_deletes_only_this_caches_token_entries(
    emulator: ConnectEmulator, redis_url: str, raw: redis.Redis
) -> None:
    oidc = emulator.oidc_token()
    with _fleet_member(emulator, redis_url, oidc) as member:
        member.get_token(SLACK, subject=ALICE)
        (index,) = list(raw.scan_iter(match="{connect-auth}:s:*"))
        (token_name,) = _token_names(raw)
        strangers = [
            b"app:session:admin",
            b"{other-tenant}:t:" + b"a" * 64,
            b"{connect-auth}:l:" + b"b" * 64,
            b"{connect-auth}:t:" + b"c" * 63 + b"Z",
            b"{connect-auth}:t:" + b"d" * 65,
        ]
        for name in strangers:
            raw.set(name, b"keep me")
        raw.sadd(index, *strangers)
        member.revoke_token(SLACK, subject=ALICE)
    assert raw.exists(token_name) == 0
    assert raw.exists(index) == 0
    assert [raw.get(n) for n in strangers] == [b"keep me"] * len(strangers)


# -- 9. clients that decode, and garbage of any type ---------------------------------------


def test_a_decoding_client_is_refused_at_construction(redis_url: str) -> None:
    with (
        redis.Redis.from_url(redis_url, decode_responses=True) as decoding,
        pytest.raises(ValueError, match="decode_responses"),
    ):
        RedisTokenCache(client=decoding, encryption_key=KEY)
    with pytest.raises(ValueError, match="decode_responses"):
        RedisTokenCache(redis_url + "?decode_responses=True", encryption_key=KEY)
    decoding_async = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    with pytest.raises(ValueError, match="decode_responses"):
        RedisTokenCache(async_client=decoding_async, encryption_key=KEY)


@pytest.mark.parametrize(
    "garbage",
    ["short", "long but not ours", "digits", "a set", "a hash"],
)
def test_garbage_under_a_token_name_is_a_miss_never_an_error(
    emulator: ConnectEmulator, redis_url: str, raw: redis.Redis, garbage: str
) -> None:
    oidc = emulator.oidc_token()
    with _fleet_member(emulator, redis_url, oidc) as member:
        member.get_token(SLACK, subject=APP)
    (name,) = _token_names(raw)
    raw.delete(name)
    if garbage == "short":
        raw.set(name, b"x")
    elif garbage == "long but not ours":
        raw.set(name, bytes(range(256)) * 4)
    elif garbage == "digits":
        raw.set(name, b"9" * 200)
    elif garbage == "a set":
        raw.sadd(name, b"x")
    else:
        raw.hset(name, "a", "b")
    with _fleet_member(emulator, redis_url, oidc) as fresh:
        assert fresh.get_token(SLACK, subject=APP)
    assert emulator.token_calls() == 2


# -- 10. weak keys ---------------------------------------------------------------------


@pytest.mark.parametrize("key", ["passwordpassword", b"x" * 31, "k" * 31])
def test_keys_under_32_bytes_are_refused_with_how_to_make_one(redis_url: str, key: Any) -> None:
    with pytest.raises(ValueError, match=r"at least 32 bytes.*secrets.token_urlsafe\(32\)"):
        RedisTokenCache(redis_url, encryption_key=key)
