"""Waiting for a shared in-flight fetch from threads and from asyncio or trio tasks.

A fetch is a ``concurrent.futures.Future`` owned by the client, not by the
caller that started it: threads block on it, tasks await it without blocking
their event loop, and a cancelled task only stops waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

import anyio

__all__ = ["result_of", "wait_async"]

T = TypeVar("T")


def result_of(future: Future[T]) -> T:
    """Block for the result; a shared exception is re-raised without its old traceback."""
    exc = future.exception()
    if exc is not None:
        # Every waiter raises the same object: drop tracebacks so they do not pile up.
        raise exc.with_traceback(None)
    return future.result()


async def wait_async(future: Future[T]) -> T:
    """Await a thread-side future from asyncio or trio without blocking the loop."""
    if not future.done():
        event = anyio.Event()
        notify = _loop_notifier(event.set)
        future.add_done_callback(lambda _f: notify())
        await event.wait()
    return result_of(future)


def _loop_notifier(callback: Callable[[], object]) -> Callable[[], None]:
    """A thread-safe function that runs ``callback`` on the current event loop."""
    trio: Any = sys.modules.get("trio")  # only a trio program has imported trio
    if trio is not None:
        try:
            token = trio.lowlevel.current_trio_token()
        except RuntimeError:  # trio is imported, but this is not a trio run
            token = None
        if token is not None:

            def notify_trio() -> None:
                with contextlib.suppress(trio.RunFinishedError):
                    token.run_sync_soon(callback)

            return notify_trio
    loop = asyncio.get_running_loop()

    def notify_asyncio() -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed while we fetched
            loop.call_soon_threadsafe(callback)

    return notify_asyncio
