"""One Connect call per cold key under concurrency: threads, tasks, both, cancellation."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import anyio
import pytest
from helpers import APP, SLACK, run_in_tasks, run_in_threads

from connect_auth import ConnectClient, ConnectorNotFoundError
from connect_auth.testing import ConnectEmulator


def test_64_threads_one_call(client: ConnectClient, emulator: ConnectEmulator) -> None:
    """64 threads on one cold key: exactly one Connect call, one token for all."""
    emulator.latency = 0.3
    results, errors = run_in_threads(64, lambda: client.get_token(SLACK, subject=APP))
    assert errors == [] and len(results) == 64 and len(set(results)) == 1
    assert emulator.token_calls() == 1


def test_error_reaches_every_waiting_thread(
    client: ConnectClient, emulator: ConnectEmulator
) -> None:
    """The shared fetch's error is raised in all 32 threads; one call was made."""
    emulator.latency = 0.3
    results, errors = run_in_threads(32, lambda: client.get_token("nope/x", subject=APP))
    assert results == [] and len(errors) == 32
    assert all(isinstance(e, ConnectorNotFoundError) for e in errors)
    assert emulator.token_calls() == 1


def test_distinct_keys_fetch_independently(
    client: ConnectClient, emulator: ConnectEmulator
) -> None:
    """Single-flight is per key: 8 keys x 8 threads make 8 calls."""
    emulator.latency = 0.2
    counter = iter(range(64))
    lock = threading.Lock()

    def target() -> str:
        with lock:
            i = next(counter) % 8
        return client.get_token(SLACK, subject={"type": "jwt-bearer", "sub": f"s{i}"})

    results, errors = run_in_threads(64, target)
    assert errors == [] and len(set(results)) == 8
    assert emulator.token_calls() == 8


@pytest.mark.anyio
async def test_1000_tasks_one_call(
    client: ConnectClient, emulator: ConnectEmulator, anyio_backend: str
) -> None:
    """1000 tasks on one cold key: one call (asyncio and trio)."""
    emulator.latency = 0.3
    results = await run_in_tasks(1000, lambda: client.aget_token(SLACK, subject=APP))
    assert len(results) == 1000 and len(set(results)) == 1
    assert emulator.token_calls() == 1


@pytest.mark.anyio
async def test_threads_and_tasks_share_one_call(
    client: ConnectClient, emulator: ConnectEmulator, anyio_backend: str
) -> None:
    """32 threads plus 32 tasks on one cold key: one call between them."""
    emulator.latency = 0.4
    barrier = threading.Barrier(33)
    thread_results: list[str] = []

    def in_thread() -> None:
        barrier.wait()
        thread_results.append(client.get_token(SLACK, subject=APP))

    threads = [threading.Thread(target=in_thread) for _ in range(32)]
    for t in threads:
        t.start()
    task_results: list[str] = []

    async def in_task() -> None:
        task_results.append(await client.aget_token(SLACK, subject=APP))

    # Release the threads, then start the tasks while their fetch is in flight
    # (or lead it ourselves if the tasks win the race): either way one call.
    await anyio.to_thread.run_sync(barrier.wait)
    async with anyio.create_task_group() as tg:
        for _ in range(32):
            tg.start_soon(in_task)
    await anyio.to_thread.run_sync(lambda: [t.join() for t in threads])
    assert len(thread_results) == 32 and len(task_results) == 32
    assert len(set(thread_results + task_results)) == 1
    assert emulator.token_calls() == 1


@pytest.mark.anyio
async def test_cancelling_the_leader_does_not_fail_the_others(
    client: ConnectClient, emulator: ConnectEmulator, anyio_backend: str
) -> None:
    """The task that started the fetch is cancelled; the waiters still get the token."""
    emulator.latency = 0.4
    results: list[str] = []

    leader_finished: list[str] = []

    async def leader() -> None:
        leader_finished.append(await client.aget_token(SLACK, subject=APP))

    async def waiter(task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        results.append(await client.aget_token(SLACK, subject=APP))

    async with anyio.create_task_group() as outer:
        with anyio.CancelScope() as leader_scope:
            async with anyio.create_task_group() as leader_group:
                leader_group.start_soon(leader)
                await anyio.sleep(0.05)  # the leader's fetch is now in flight
                for _ in range(10):
                    await outer.start(waiter)
                leader_scope.cancel()
    assert leader_scope.cancelled_caught and leader_finished == []
    assert len(results) == 10 and len(set(results)) == 1
    assert emulator.token_calls() == 1


@pytest.mark.anyio
async def test_event_loop_keeps_running_during_a_fetch(
    client: ConnectClient, emulator: ConnectEmulator, anyio_backend: str
) -> None:
    """While a slow fetch is awaited, other tasks on the loop keep running."""
    emulator.latency = 0.5
    ticks: list[int] = []
    done = anyio.Event()

    async def ticker() -> None:
        while not done.is_set():
            ticks.append(1)
            await anyio.sleep(0.01)

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        await client.aget_token(SLACK, subject=APP)
        ticks_during_fetch = len(ticks)
        done.set()
    assert ticks_during_fetch >= 5


def test_async_waiters_on_separate_loops(client: ConnectClient, emulator: ConnectEmulator) -> None:
    """Tasks of two event loops in two threads share one fetch."""
    emulator.latency = 0.3
    barrier = threading.Barrier(2)
    results: list[str] = []

    def loop_thread() -> None:
        async def main() -> None:
            barrier.wait()
            values = await asyncio.gather(
                *[client.aget_token(SLACK, subject=APP) for _ in range(50)]
            )
            results.extend(values)

        asyncio.run(main())

    threads = [threading.Thread(target=loop_thread) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 100 and len(set(results)) == 1
    assert emulator.token_calls() == 1
