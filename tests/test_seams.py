"""Bugs that lived where the adapters, the engine and the transports meet: each is
reproduced with real clients, loops and the emulator."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import anyio
import httpx
import niquests
import pytest
from helpers import APP, SLACK, fast_retry

from connect_auth import ConnectClient, RetryPolicy
from connect_auth.niquests import ConnectAuth as NiquestsAuth
from connect_auth.testing import ConnectEmulator


class _Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def test_sync_niquests_auth_on_an_async_session_names_the_async_one(
    emulator: ConnectEmulator, client: ConnectClient
) -> None:
    """It used to raise ``TypeError: argument of type 'coroutine' is not iterable`` from
    inside the Slack rule on every response."""

    async def run() -> None:
        async with niquests.AsyncSession() as session:
            session.auth = NiquestsAuth(SLACK, subject=APP, client=client)
            await session.get(emulator.provider_url(SLACK))

    with pytest.raises(TypeError, match=r"use connect_auth\.niquests\.AsyncConnectAuth"):
        asyncio.run(run())


@pytest.mark.anyio
async def test_async_refresh_ahead_runs_on_the_loop_through_the_async_transport(
    emulator: ConnectEmulator, anyio_backend: str
) -> None:
    """A client given only ``async_transport=`` refreshes ahead on the caller's loop, and
    never builds a default sync client (which would go to the real Connect)."""
    clock = _Clock()
    async_transport = httpx.AsyncHTTPTransport()
    client = ConnectClient(
        base_url=emulator.url,
        vercel_token=emulator.oidc_token(),
        async_transport=async_transport,
        refresh_ahead_ms=60_000,
        retry=fast_retry(),
        clock=clock,
    )
    async with client:
        old = await client.aget_token(SLACK, subject=APP)
        clock.offset = 3600 - 30 - 59  # inside the refresh window
        before = {t.name for t in threading.enumerate()}
        assert await client.aget_token(SLACK, subject=APP) == old  # served at once
        with anyio.fail_after(30):
            while emulator.token_calls() < 2 or client._engine._flights:
                await anyio.sleep(0.01)
        assert await client.aget_token(SLACK, subject=APP) != old
        assert "connect_auth-refresh" not in {t.name for t in threading.enumerate()} - before
        assert client._wire._http is None  # no sync client was ever made
        with pytest.raises(TypeError, match="only an async transport"):
            client.get_token(SLACK, subject={"type": "user", "id": "u_alice"})
    await async_transport.aclose()
    assert emulator.token_calls() == 2


@pytest.mark.anyio
async def test_retry_waits_of_async_calls_follow_the_policy(
    emulator: ConnectEmulator, anyio_backend: str
) -> None:
    waited: list[tuple[str, float]] = []

    async def asleep(seconds: float) -> None:
        waited.append(("async", seconds))

    def sleep(seconds: float) -> None:
        waited.append(("sync", seconds))

    policy = RetryPolicy(initial_backoff=0.01, max_backoff=0.02, sleep=sleep, asleep=asleep)
    with ConnectClient(
        base_url=emulator.url, vercel_token=emulator.oidc_token(), retry=policy
    ) as client:
        emulator.fail_next(2, status=503)
        await client.aget_token(SLACK, subject=APP)
        assert [kind for kind, _ in waited] == ["async", "async"]
    waited.clear()
    sync_only = RetryPolicy(initial_backoff=0.01, max_backoff=0.02, sleep=sleep)
    with ConnectClient(
        base_url=emulator.url, vercel_token=emulator.oidc_token(), retry=sync_only
    ) as client:
        emulator.fail_next(1, status=503)
        await client.aget_token(SLACK, subject={"type": "user", "id": "u_alice"})
        assert [kind for kind, _ in waited] == ["sync"]  # called from a worker thread


def test_sync_retry_waits_still_use_sleep(emulator: ConnectEmulator) -> None:
    waited: list[float] = []
    policy = RetryPolicy(initial_backoff=0.01, max_backoff=0.02, sleep=waited.append)
    with ConnectClient(
        base_url=emulator.url, vercel_token=emulator.oidc_token(), retry=policy
    ) as client:
        emulator.fail_next(1, status=503)
        client.get_token(SLACK, subject=APP)
    assert len(waited) == 1


def test_aiohttp_redirect_hops_across_requests_in_one_task(emulator: ConnectEmulator) -> None:
    """The first-hop record is per request: a second request in the same task, to
    another origin, is a first hop again and gets its token."""
    import aiohttp

    from connect_auth.aiohttp import ConnectAuth as AiohttpAuth

    with ConnectClient(base_url=emulator.url, vercel_token=emulator.oidc_token()) as client:

        async def run() -> list[Any]:
            auth = AiohttpAuth(SLACK, subject=APP, client=client)
            async with aiohttp.ClientSession(middlewares=(auth,)) as session:
                statuses = []
                for host in ("127.0.0.1", "localhost", "127.0.0.1"):
                    async with session.get(emulator.provider_url(SLACK, host=host)) as r:
                        statuses.append(r.status)
                return statuses

        assert asyncio.run(run()) == [200, 200, 200]
    assert all(c.had_authorization for c in emulator.provider_calls)
