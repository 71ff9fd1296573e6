"""The fetch engine: native async fan-out, fork safety, bounded attempts, clean exits,
interrupts that stay with their thread, and refresh ahead of expiry."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import anyio
import httpx
import pytest
from helpers import (
    APP,
    SLACK,
    fast_retry,
    jwt_like,
    mock_client,
    run_in_tasks,
    run_in_threads,
    token_json,
    wait_for,
)

from connect_auth import ConnectClient, ConnectUnavailableError, RetryPolicy
from connect_auth._cache import refresh_at, refresh_retry_at
from connect_auth._engine import Flight
from connect_auth.httpx import ConnectAuth as HttpxAuth
from connect_auth.testing import ConnectEmulator


def _jwt_subject(sub: str) -> dict[str, Any]:
    return {"type": "jwt-bearer", "sub": sub}


def _run_script(script: str, emulator: ConnectEmulator, timeout: float = 60) -> Any:
    """Run ``script`` in a fresh interpreter pointed at the emulator; return its JSON output."""
    env = {
        **os.environ,
        "CONNECT_AUTH_BASE_URL": emulator.url,
        "VERCEL_OIDC_TOKEN": emulator.oidc_token(),
        "PYTHONPATH": os.getcwd(),
    }
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _subject_of(emulator: ConnectEmulator) -> dict[str, str]:
    """token -> the ``sub`` it was issued for."""
    return {t.token: str(t.subject.get("sub")) for t in emulator.issued_tokens()}


# -- native async ------------------------------------------------------------------------


class _Gate:
    """An async Connect stand-in that holds every fetch until ``expected`` are in flight,
    so a test only passes if that many run at once."""

    def __init__(self, expected: int, hold: set[str] | None = None) -> None:
        self.expected = expected
        self.in_flight = 0
        self.peak = 0
        self.calls = 0
        self.hold = hold or set()  # subjects held until release()
        self.opened: anyio.Event | None = None
        self.released: anyio.Event | None = None

    async def handler(self, request: httpx.Request) -> httpx.Response:
        if self.opened is None:
            self.opened, self.released = anyio.Event(), anyio.Event()
        assert self.released is not None
        sub = json.loads(request.content)["subject"].get("sub", "")
        self.calls += 1
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            if sub in self.hold:
                await self.released.wait()
            else:
                if self.in_flight >= self.expected:
                    self.opened.set()
                with anyio.fail_after(20):
                    await self.opened.wait()
        finally:
            self.in_flight -= 1
        return httpx.Response(200, json=token_json(f"tok-{sub}"))


def _gated_client(gate: _Gate) -> ConnectClient:
    return mock_client(gate.handler, retry=RetryPolicy(max_attempts=1))


@pytest.mark.anyio
async def test_200_cold_keys_fetch_at_once(anyio_backend: str) -> None:
    """200 distinct cold keys from one event loop are all in flight together: no pool cap."""
    gate = _Gate(expected=200)
    results: dict[str, str] = {}

    async def one(i: int) -> None:
        results[f"s{i}"] = await client.aget_token(SLACK, subject=_jwt_subject(f"s{i}"))

    with _gated_client(gate) as client:
        async with anyio.create_task_group() as tg:
            for i in range(200):
                tg.start_soon(one, i)
    assert gate.peak == 200 and gate.calls == 200
    assert all(token == f"tok-{sub}" for sub, token in results.items()) and len(results) == 200


@pytest.mark.anyio
async def test_healthy_key_is_not_queued_behind_slow_ones(anyio_backend: str) -> None:
    """A fetch for one key completes while 8 fetches for other keys hang."""
    slow = {f"slow{i}" for i in range(8)}
    gate = _Gate(expected=1, hold=slow)
    with _gated_client(gate) as client:
        async with anyio.create_task_group() as tg:
            for sub in slow:
                tg.start_soon(lambda s=sub: client.aget_token(SLACK, subject=_jwt_subject(s)))
            while gate.in_flight < 8:
                await anyio.sleep(0.01)
            token = await client.aget_token(SLACK, subject=_jwt_subject("healthy"))
            assert gate.in_flight == 8  # the slow ones are all still hanging
            assert gate.released is not None
            gate.released.set()
    assert token == "tok-healthy" and gate.calls == 9


def test_thread_waits_on_a_fetch_led_by_a_task(emulator: ConnectEmulator) -> None:
    """A task leads, 16 threads wait on its fetch: one Connect call, one token."""
    emulator.latency = 0.5
    with ConnectClient(base_url=emulator.url, vercel_token=emulator.oidc_token()) as client:
        led = threading.Event()

        async def lead() -> str:
            pending = client.aget_token(SLACK, subject=APP)
            async with anyio.create_task_group() as tg:
                result: list[str] = []

                async def run() -> None:
                    result.append(await pending)

                tg.start_soon(run)
                while not client._engine._flights:
                    await anyio.sleep(0.005)
                led.set()
            return result[0]

        def wait_then_get() -> str:
            assert led.wait(10)
            return client.get_token(SLACK, subject=APP)

        leader: list[str] = []
        t = threading.Thread(target=lambda: leader.append(anyio.run(lead)))
        t.start()
        results, errors = run_in_threads(16, wait_then_get)
        t.join()
    assert errors == [] and len(set(results + leader)) == 1
    assert emulator.token_calls() == 1


# -- fork ----------------------------------------------------------------------------------

FORK_SCRIPT = """
import json, os, sys, threading, asyncio
import connect_auth

sub = lambda s: {"type": "jwt-bearer", "sub": s}
SLACK = "slack/acme-slack"
# Warm: an async fetch, then two concurrent sync ones (two kept-alive connections).
asyncio.run(connect_auth.aget_token(SLACK, subject=sub("warm-async")))
warm = [threading.Thread(target=connect_auth.get_token, args=(SLACK,), kwargs={"subject": sub(s)})
        for s in ("warm-1", "warm-2")]
for t in warm: t.start()
for t in warm: t.join()
out = {"parent": {}, "children": []}
for trial in range(int(sys.argv[1]) if len(sys.argv) > 1 else 6):
    in_flight = threading.Thread(
        target=lambda: out["parent"].__setitem__(f"flight-{trial}", connect_auth.get_token(
            SLACK, subject=sub(f"flight-{trial}"))))
    in_flight.start()          # the emulator holds it: in flight at fork time
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        mine = {f"child-{trial}": connect_auth.get_token(SLACK, subject=sub(f"child-{trial}")),
                f"achild-{trial}": asyncio.run(connect_auth.aget_token(
                    SLACK, subject=sub(f"achild-{trial}"))),
                f"flight-{trial}": connect_auth.get_token(SLACK, subject=sub(f"flight-{trial}")),
                "warm-1": connect_auth.get_token(SLACK, subject=sub("warm-1"))}
        os.write(w, json.dumps(mine).encode())
        os._exit(0)
    os.close(w)
    out["parent"][f"parent-{trial}"] = connect_auth.get_token(SLACK, subject=sub(f"parent-{trial}"))
    in_flight.join()
    _, status = os.waitpid(pid, 0)
    with os.fdopen(r) as f:
        out["children"].append({"status": status, "tokens": json.loads(f.read() or "{}")})
out["parent"]["warm-1"] = connect_auth.get_token(SLACK, subject=sub("warm-1"))
print(json.dumps(out))
"""


def test_fork_gives_each_process_its_own_tokens(emulator: ConnectEmulator) -> None:
    """Fork with a warm default client and a fetch in flight, 6 times: parent and child
    each get their own subject's token, the child reuses the cache, nothing hangs."""
    emulator.latency = 0.3
    out = _run_script(FORK_SCRIPT, emulator, timeout=120)
    issued = _subject_of(emulator)
    for name, token in out["parent"].items():
        assert issued[token] == name
    for child in out["children"]:
        assert child["status"] == 0 and len(child["tokens"]) == 4
        for name, token in child["tokens"].items():
            assert issued[token] == name
        assert child["tokens"]["warm-1"] == out["parent"]["warm-1"]  # cache kept across fork
    assert len(out["children"]) == 6


# -- fresh interpreters ----------------------------------------------------------------------


def test_first_async_call_with_trio_installed_but_not_imported(emulator: ConnectEmulator) -> None:
    """A fresh process with trio installed but not imported: the first aget_token calls, from
    four event loops in four threads at once and then from a trio run, all get a token."""
    pytest.importorskip("trio")  # installed by the test extra; the check is the point
    out = _run_script(
        """
        import asyncio, json, sys, threading
        before = "trio" in sys.modules
        import connect_auth
        got = []
        def first_call(i):
            got.append(asyncio.run(connect_auth.aget_token(
                "slack/acme-slack", subject={"type": "jwt-bearer", "sub": f"s{i}"})))
        threads = [threading.Thread(target=first_call, args=(i,)) for i in range(4)]
        for t in threads: t.start()
        for t in threads: t.join()
        import trio
        got.append(trio.run(lambda: connect_auth.aget_token(
            "slack/acme-slack", subject={"type": "user", "id": "u_alice"})))
        print(json.dumps({"before": before, "tokens": len(set(got))}))
        """,
        emulator,
    )
    assert out == {"before": False, "tokens": 5}


def test_exit_is_not_held_by_fetches_in_flight(emulator: ConnectEmulator) -> None:
    """main() returns while an async fetch and a background refresh are in flight (Connect
    takes far longer than the process has left): the process exits at once."""
    emulator.latency = 3600
    started = time.monotonic()
    out = _run_script(
        """
        import asyncio, json, threading
        import connect_auth

        async def main():
            task = asyncio.create_task(
                connect_auth.aget_token("slack/acme-slack", subject={"type": "app"}))
            await asyncio.sleep(0.3)  # the fetch is now waiting on Connect
            task.cancel()

        asyncio.run(main())
        sync = threading.Thread(target=connect_auth.get_token, args=("slack/acme-slack",),
                                kwargs={"subject": {"type": "user", "id": "u_bob"}}, daemon=True)
        sync.start()
        print(json.dumps({"returned": True}))
        """,
        emulator,
        timeout=120,
    )
    took = time.monotonic() - started
    assert out == {"returned": True}
    assert took < 60  # Connect would have answered after 3600 s


# -- bounded attempts -------------------------------------------------------------------------


@pytest.fixture
def drip_server(emulator: ConnectEmulator) -> str:
    """The emulator answering every Connect call one byte every 0.2 s (over a minute for
    a whole answer), each read well within the socket timeout."""
    emulator.drip_next(100, interval=0.2)
    return emulator.url


DRIP_POLICY = RetryPolicy(max_attempts=4, deadline=2.0, initial_backoff=0.01, max_backoff=0.05)


def test_slow_drip_is_bounded_by_timeout_sync(drip_server: str) -> None:
    """timeout=1.0 bounds each whole attempt and the 2 s deadline the call; the 8 threads
    waiting on the fetch are freed with the same error."""
    with ConnectClient(
        base_url=drip_server, vercel_token=jwt_like("c"), timeout=1.0, retry=DRIP_POLICY
    ) as client:
        started = time.monotonic()
        results, errors = run_in_threads(8, lambda: client.get_token(SLACK, subject=APP))
        took = time.monotonic() - started
    assert results == [] and len(errors) == 8
    assert all(isinstance(e, ConnectUnavailableError) for e in errors)
    assert "timed out" in str(errors[0])
    assert took < DRIP_POLICY.deadline + 3  # the whole answer would take over a minute


@pytest.mark.anyio
async def test_slow_drip_is_bounded_by_timeout_async(drip_server: str, anyio_backend: str) -> None:
    """The same bound for the async path, on asyncio and trio."""
    async with ConnectClient(
        base_url=drip_server, vercel_token=jwt_like("c"), timeout=1.0, retry=DRIP_POLICY
    ) as client:
        started = time.monotonic()
        with pytest.raises(ConnectUnavailableError, match="timed out"):
            await client.aget_token(SLACK, subject=APP)
        took = time.monotonic() - started
    assert took < DRIP_POLICY.deadline + 3


# -- interrupts ------------------------------------------------------------------------------


def test_keyboard_interrupt_stays_with_the_leader() -> None:
    """Ctrl-C in the fetching thread reaches that thread only; 8 waiters get
    ConnectUnavailableError."""
    followers = threading.Semaphore(0)

    def connect_api(request: httpx.Request) -> httpx.Response:
        for _ in range(8):  # interrupted only once all 8 waiters have joined the flight
            assert followers.acquire(timeout=30)
        raise KeyboardInterrupt

    with mock_client(connect_api) as client:
        join = client._engine._hit_or_flight

        def counting_join(*args: Any) -> Any:
            found = join(*args)
            if isinstance(found, Flight) and not found.leader:
                followers.release()
            return found

        client._engine._hit_or_flight = counting_join  # type: ignore[method-assign]
        leader: list[BaseException] = []

        def lead() -> None:
            try:
                client.get_token(SLACK, subject=APP)
            except BaseException as exc:  # what the leading thread receives
                leader.append(exc)

        t = threading.Thread(target=lead)
        t.start()
        while not client._engine._flights:
            time.sleep(0.001)
        results, errors = run_in_threads(8, lambda: client.get_token(SLACK, subject=APP))
        t.join()
    assert len(leader) == 1 and isinstance(leader[0], KeyboardInterrupt)
    assert results == [] and len(errors) == 8
    assert all(isinstance(e, ConnectUnavailableError) for e in errors)
    assert "interrupted (KeyboardInterrupt)" in str(errors[0])


# -- refresh ahead ---------------------------------------------------------------------------


def test_refresh_at_rule() -> None:
    """Refresh ``ahead`` before the buffer, but never before half the servable life."""
    hour = 3_600_000
    assert refresh_at(hour, 0, 30_000, 300_000) == hour - 30_000 - 300_000
    # A 1 s token with a 0.6 s buffer: servable for 0.4 s, refreshed after 0.2 s.
    assert refresh_at(1000, 0, 600, 300_000) == 200
    assert refresh_at(hour, 0, 30_000, 0) == hour - 30_000  # 0 turns it off
    assert refresh_retry_at(hour, 0, 0) == hour / 2
    assert refresh_retry_at(1000, 0, 0) == 1000  # not sooner than a second


class _Clock:
    """A settable clock for the client: real time plus an offset."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def _refreshing_client(emulator: ConnectEmulator, clock: _Clock) -> ConnectClient:
    return ConnectClient(
        base_url=emulator.url,
        vercel_token=emulator.oidc_token(),
        retry=fast_retry(max_attempts=2),
        refresh_ahead_ms=60_000,
        clock=clock,
    )


def test_refresh_ahead_makes_one_background_fetch_under_16_threads(
    emulator: ConnectEmulator,
) -> None:
    """16 threads hit a token inside its refresh window: all are served the cached token
    at once, and exactly one background fetch replaces it."""
    clock = _Clock()
    with _refreshing_client(emulator, clock) as client:
        old = client.get_token(SLACK, subject=APP)
        emulator.latency = 3.0  # the refresh is in flight while the threads are served
        clock.offset = 3600 - 30 - 59  # inside the last minute before the 30 s buffer
        results, errors = run_in_threads(16, lambda: client.get_token(SLACK, subject=APP))
        assert errors == [] and results == [old] * 16  # nobody waited for Connect
        wait_for(lambda: client.get_token(SLACK, subject=APP) != old)
        assert emulator.token_calls() == 2  # the first fetch and one refresh


def test_refresh_ahead_through_an_adapter_under_16_threads(emulator: ConnectEmulator) -> None:
    """Adapted requests get refresh-ahead for free: one background fetch for 16 threads."""
    clock = _Clock()
    with _refreshing_client(emulator, clock) as client:
        auth = HttpxAuth(SLACK, subject=APP, client=client)
        url = emulator.provider_url(SLACK)
        with httpx.Client(auth=auth) as http:
            assert http.get(url).status_code == 200
            emulator.latency = 0.5
            clock.offset = 3600 - 30 - 59
            results, errors = run_in_threads(16, lambda: http.get(url).status_code)
            assert errors == [] and results == [200] * 16
            wait_for(lambda: emulator.token_calls() == 2 and not client._engine._flights)
            assert http.get(url).status_code == 200
    assert emulator.token_calls() == 2
    sent = {c.token_state for c in emulator.provider_calls}
    assert sent == {"live"}


@pytest.mark.anyio
async def test_refresh_ahead_under_64_tasks(emulator: ConnectEmulator, anyio_backend: str) -> None:
    """64 tasks in the window: served at once, one background fetch."""
    clock = _Clock()
    with _refreshing_client(emulator, clock) as client:
        old = await client.aget_token(SLACK, subject=APP)
        emulator.latency = 3.0  # the refresh outlasts the 64 tasks, however busy the machine
        clock.offset = 3600 - 30 - 59
        results = await run_in_tasks(64, lambda: client.aget_token(SLACK, subject=APP))
        assert results == [old] * 64
        await anyio.to_thread.run_sync(
            lambda: wait_for(lambda: client.get_token(SLACK, subject=APP) != old)
        )
    assert emulator.token_calls() == 2


def test_failed_refresh_keeps_serving_the_valid_token(
    emulator: ConnectEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """A background refresh that fails is logged, never raised; the cached token is served,
    and the refresh is tried again later."""
    caplog.set_level(logging.WARNING, logger="connect_auth")
    clock = _Clock()
    with _refreshing_client(emulator, clock) as client:
        old = client.get_token(SLACK, subject=APP)
        emulator.fail_next(2, status=503)  # both attempts of the refresh fail
        clock.offset = 3600 - 30 - 59
        results, errors = run_in_threads(16, lambda: client.get_token(SLACK, subject=APP))
        assert errors == [] and results == [old] * 16
        wait_for(lambda: "ahead of expiry failed" in caplog.text)
        assert emulator.token_calls() == 3  # the first fetch and the refresh's two attempts
        assert client.get_token(SLACK, subject=APP) == old  # still served, no new attempt
        assert emulator.token_calls() == 3
        clock.offset += 30  # past the retry time (halfway to the end of service)
        assert client.get_token(SLACK, subject=APP) == old  # starts the second refresh
        wait_for(lambda: client.get_token(SLACK, subject=APP) != old)
    assert emulator.token_calls() == 4
    assert old not in caplog.text


def test_refresh_ahead_off(emulator: ConnectEmulator) -> None:
    """refresh_ahead_ms=0: no background fetch until the token leaves the cache."""
    clock = _Clock()
    with ConnectClient(
        base_url=emulator.url, vercel_token=emulator.oidc_token(), refresh_ahead_ms=0, clock=clock
    ) as client:
        old = client.get_token(SLACK, subject=APP)
        clock.offset = 3600 - 31
        assert client.get_token(SLACK, subject=APP) == old
        time.sleep(0.2)
        assert emulator.token_calls() == 1 and not client._engine._flights


@pytest.mark.parametrize("bad", [-1, float("inf"), float("nan"), True, "60"])
def test_refresh_ahead_ms_is_validated(bad: Any) -> None:
    """A bad refresh_ahead_ms is refused at construction, naming the parameter."""
    with pytest.raises(ValueError, match="refresh_ahead_ms"):
        ConnectClient(base_url="http://127.0.0.1:9", refresh_ahead_ms=bad)


def test_waiters_are_freed_when_the_leading_loop_stops(emulator: ConnectEmulator) -> None:
    """A task leads a fetch, then its event loop stops running (run_until_complete returned):
    a thread waiting on that fetch is freed after the wait limit with ConnectUnavailableError,
    the next call fetches anew, and the stranded fetch, resumed later, breaks nothing."""
    emulator.latency = 0.3
    policy = RetryPolicy(max_attempts=1, deadline=0.5)
    loop = asyncio.new_event_loop()
    with ConnectClient(
        base_url=emulator.url, vercel_token=emulator.oidc_token(), timeout=0.5, retry=policy
    ) as client:
        with pytest.raises(TimeoutError):
            loop.run_until_complete(asyncio.wait_for(client.aget_token(SLACK, subject=APP), 0.01))
        assert client._engine._flights  # led by a task that no loop runs any more
        with pytest.raises(ConnectUnavailableError, match="event loop running it stopped"):
            client.get_token(SLACK, subject=APP)
        token = client.get_token(SLACK, subject=APP)
        loop.run_until_complete(asyncio.sleep(1.0))  # the stranded fetch now ends
        assert client.get_token(SLACK, subject=APP) in {token, *_subject_of(emulator)}
    loop.close()


def test_a_closed_client_starts_no_background_refresh(emulator: ConnectEmulator) -> None:
    """After close() the cache still serves, and a hit in the refresh window starts nothing
    (no refresh that could only fail)."""
    clock = _Clock()
    client = _refreshing_client(emulator, clock)
    old = client.get_token(SLACK, subject=APP)
    client.close()
    clock.offset = 3600 - 30 - 59
    assert client.get_token(SLACK, subject=APP) == old
    assert not client._engine._flights and emulator.token_calls() == 1
