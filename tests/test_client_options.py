"""vercel-connect's options, in connect_auth: ``no_cache``, a ``vercel_token`` given as a
function (sync or async), and a client-wide ``validity_buffer_ms``; against the emulator."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from helpers import APP, SLACK, fast_retry, jwt_like, run_in_tasks, run_in_threads

import connect_auth
from connect_auth import ConnectClient, OidcTokenError
from connect_auth.httpx import ConnectAuth
from connect_auth.redis import RedisTokenCache
from connect_auth.testing import ConnectEmulator
from connect_auth.testing._redis_servers import RedisServer

ALICE = {"type": "user", "id": "u_alice"}


def _client(emulator: ConnectEmulator, **options: Any) -> ConnectClient:
    options.setdefault("vercel_token", emulator.oidc_token())
    return ConnectClient(base_url=emulator.url, retry=fast_retry(), **options)


# -- no_cache --------------------------------------------------------------------------------


def test_no_cache_always_asks_connect_and_leaves_the_cache_as_it_was(
    emulator: ConnectEmulator,
) -> None:
    with _client(emulator) as c:
        cached = c.get_token(SLACK, subject=APP)
        fresh = c.get_token(SLACK, subject=APP, no_cache=True)
        again = c.get_token_response(SLACK, subject=APP, no_cache=True).token
        assert len({cached, fresh, again}) == 3 and emulator.token_calls() == 3
        assert c.get_token(SLACK, subject=APP) == cached  # the cache kept its token
        c.get_token(SLACK, subject=ALICE, no_cache=True)
        assert emulator.token_calls() == 4
        c.get_token(SLACK, subject=ALICE)  # nothing was stored for Alice
        assert emulator.token_calls() == 5
        assert asyncio.run(c.aget_token(SLACK, subject=APP, no_cache=True)) != cached
        assert emulator.token_calls() == 6


def test_concurrent_identical_no_cache_calls_share_one_fetch(emulator: ConnectEmulator) -> None:
    emulator.latency = 0.3  # the fetch is still running when the others ask
    with _client(emulator) as c:
        results, errors = run_in_threads(8, lambda: c.get_token(SLACK, subject=APP, no_cache=True))
        assert errors == [] and len(set(results)) == 1
        assert emulator.token_calls() == 1

        async def tasks() -> list[Any]:
            return await run_in_tasks(8, lambda: c.aget_token(SLACK, subject=APP, no_cache=True))

        assert len(set(asyncio.run(tasks()))) == 1
        assert emulator.token_calls() == 2
        c.get_token(SLACK, subject=APP)  # still nothing cached
        assert emulator.token_calls() == 3


def test_no_cache_neither_reads_nor_writes_the_shared_cache(
    emulator: ConnectEmulator, redis_server: RedisServer
) -> None:
    redis_server.flush()
    credential = emulator.oidc_token()
    caches = [RedisTokenCache(redis_server.url, encryption_key="k" * 32) for _ in range(2)]
    with (
        _client(emulator, vercel_token=credential, shared_cache=caches[0]) as first,
        _client(emulator, vercel_token=credential, shared_cache=caches[1]) as second,
    ):
        shared = first.get_token(SLACK, subject=APP)
        assert first.get_token(SLACK, subject=APP, no_cache=True) != shared
        assert second.get_token(SLACK, subject=APP) == shared  # Redis kept the first one
        second.get_token(SLACK, subject=ALICE, no_cache=True)
        first.get_token(SLACK, subject=ALICE)  # Redis got nothing from the no_cache call
    assert emulator.token_calls() == 4
    assert redis_server.dump()  # the cache was in use all along


def test_no_cache_must_be_a_bool(emulator: ConnectEmulator) -> None:
    with _client(emulator) as c, pytest.raises(TypeError, match="no_cache"):
        c.get_token(SLACK, subject=APP, no_cache=1)  # type: ignore[arg-type]
    assert emulator.token_calls() == 0


# -- vercel_token as a function -------------------------------------------------------------


def test_a_function_is_called_at_each_fetch_and_never_on_a_hit(emulator: ConnectEmulator) -> None:
    calls: list[str] = []

    def credential() -> str:
        calls.append("called")
        return emulator.oidc_token(project_id=emulator.project_id)  # a new one each time

    with _client(emulator, vercel_token=credential) as c:
        token = c.get_token(SLACK, subject=APP)
        for _ in range(5):
            assert c.get_token(SLACK, subject=APP) == token
        assert len(calls) == 1
        c.get_token(SLACK, subject=APP, force_refresh=True)
        c.revoke_token(SLACK, subject=ALICE)
        c.get_connector_metadata(SLACK)
        assert len(calls) == 4
        assert "credential" not in repr(c)
    assert all(call.identity is not None for call in emulator.calls)


def test_a_per_call_function_keys_the_cache_by_the_function(emulator: ConnectEmulator) -> None:
    calls: list[int] = []

    def credential() -> str:
        calls.append(1)
        return emulator.oidc_token()

    with _client(emulator) as c:
        first = c.get_token(SLACK, subject=APP, vercel_token=credential)
        assert c.get_token(SLACK, subject=APP, vercel_token=credential) == first
        assert len(calls) == 1 and emulator.token_calls() == 1
        # Another credential (the client's) is another cache entry.
        assert c.get_token(SLACK, subject=APP) != first


@pytest.mark.anyio
async def test_an_async_function_serves_the_async_api(
    emulator: ConnectEmulator, anyio_backend: str
) -> None:
    calls: list[int] = []

    async def credential() -> str:
        calls.append(1)
        return emulator.oidc_token()

    with _client(emulator, vercel_token=credential) as c:
        token = await c.aget_token(SLACK, subject=APP)
        assert await c.aget_token(SLACK, subject=APP) == token
        await c.arevoke_token(SLACK, subject=ALICE)
        assert len(calls) == 2
        with pytest.raises(TypeError, match="async function: call the async API"):
            c.get_token(SLACK, subject=ALICE)  # a sync call cannot await it
    assert emulator.token_calls() == 1


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        (None, "oidc_token_missing"),
        ("", "oidc_token_missing"),
        ("not-a-jwt", "oidc_token_invalid"),
        ("expired", "oidc_token_expired"),
    ],
)
def test_what_a_function_returns_is_checked_before_any_request(
    emulator: ConnectEmulator, answer: str | None, code: str
) -> None:
    value = emulator.oidc_token(ttl=-60) if answer == "expired" else answer
    with (
        _client(emulator, vercel_token=lambda: value) as c,
        pytest.raises(OidcTokenError) as caught,
    ):
        c.get_token(SLACK, subject=APP)
    assert caught.value.code == code and "vercel_token function" in str(caught.value)
    assert emulator.token_calls() == 0


def test_an_adapter_takes_a_function_too(emulator: ConnectEmulator) -> None:
    calls: list[int] = []

    def credential() -> str:
        calls.append(1)
        return emulator.oidc_token()

    with _client(emulator) as c:
        auth = ConnectAuth(SLACK, subject=APP, client=c, vercel_token=credential)
        with httpx.Client(auth=auth) as http:
            for _ in range(3):
                assert http.get(emulator.provider_url(SLACK)).status_code == 200
    assert len(calls) == 1


def test_a_vercel_token_of_another_type_is_refused(emulator: ConnectEmulator) -> None:
    with pytest.raises(TypeError, match="vercel_token must be a string, a function"):
        ConnectClient(base_url=emulator.url, vercel_token=42)  # type: ignore[arg-type]


# -- a client-wide validity buffer ---------------------------------------------------------------


def test_a_client_validity_buffer_applies_to_calls_that_pass_none(
    emulator: ConnectEmulator,
) -> None:
    now = [time.time()]
    with _client(
        emulator, validity_buffer_ms=3_000_000, refresh_ahead_ms=0, clock=lambda: now[0]
    ) as c:
        token = c.get_token(SLACK, subject=APP)
        assert emulator.calls[-1].params["validityBufferMs"] == 3_000_000
        now[0] += 500  # 3100 s left: more than the 3000 s buffer
        assert c.get_token(SLACK, subject=APP) == token
        now[0] += 200  # 2900 s left: inside the buffer
        assert c.get_token(SLACK, subject=APP) != token
        assert emulator.token_calls() == 2
        c.get_token(SLACK, subject=ALICE, validity_buffer_ms=0)  # a call's own wins
        assert emulator.calls[-1].params["validityBufferMs"] == 0
        auth = ConnectAuth(SLACK, subject=APP, client=c)
        assert auth.request.buffer_ms == 3_000_000


@pytest.mark.parametrize("bad", [-1, float("nan"), "30"])
def test_a_bad_client_validity_buffer_is_refused(bad: Any) -> None:
    with pytest.raises((TypeError, ValueError), match="validity_buffer_ms"):
        ConnectClient(validity_buffer_ms=bad)


# -- region per call ---------------------------------------------------------------------------


def _answer(request: httpx.Request) -> httpx.Response:
    if request.url.path.startswith("/v1/connect/connectors/"):
        return httpx.Response(200, json={"id": "scl_1", "uid": SLACK, "type": "slack"})
    return httpx.Response(200, json={"url": "https://x", "request": "r", "verifier": "v"})


def test_a_call_region_picks_the_regional_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONNECT_AUTH_BASE_URL", raising=False)
    monkeypatch.delenv("VERCEL_REGION", raising=False)
    hosts: list[str] = []

    def connect(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        return _answer(request)

    client = ConnectClient(vercel_token=jwt_like("c"), transport=httpx.MockTransport(connect))
    previous = connect_auth.set_default_client(client)
    try:
        client.start_authorization(SLACK, subject=ALICE, region="iad1")
        client.get_connector_metadata(SLACK, region="fra1")
        client.experimental_start_installation(SLACK, region="")  # "": the global host
        connect_auth.start_authorization(SLACK, subject=ALICE, region="sfo1")
        connect_auth.get_connector_metadata(SLACK, region="hnd1")
        connect_auth.experimental_start_installation(SLACK, region="cdg1")
        client.get_connector_metadata(SLACK)  # the client's own
        with pytest.raises(ValueError, match="region"):
            client.get_connector_metadata(SLACK, region="not a region")
    finally:
        connect_auth.set_default_client(previous)
        client.close()
    assert hosts == [
        "api-iad1.vercel.com",
        "api-fra1.vercel.com",
        "api.vercel.com",
        "api-sfo1.vercel.com",
        "api-hnd1.vercel.com",
        "api-cdg1.vercel.com",
        "api.vercel.com",
    ]


def test_a_client_base_url_wins_over_a_call_region(emulator: ConnectEmulator) -> None:
    with _client(emulator) as c:
        assert c.get_connector_metadata(SLACK, region="iad1").uid == SLACK
    assert emulator.calls[-1].endpoint == "metadata"


# -- answers keep what Connect sent ------------------------------------------------------


def test_an_authorization_answer_keeps_every_field(emulator: ConnectEmulator) -> None:
    with _client(emulator) as c:
        started = c.start_authorization(SLACK, subject={"type": "user", "id": "u_new"})
    assert started.connector is not None
    assert (started.connector.service, started.connector.service_name) == ("slack", "Slack")
    assert started.extra == {"displayName": started.connector.name}
    assert started.verifier not in repr(started)
