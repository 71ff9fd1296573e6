"""Waiting for a shared in-flight fetch from threads and from asyncio or trio tasks.

A fetch is a ``concurrent.futures.Future`` owned by the client, not by the
caller that started it: threads block on it, tasks await it without blocking
their event loop, and a cancelled task only stops waiting. An async leader runs
its fetch as a detached task of its own loop, so cancelling the leader never
cancels a fetch that others wait for.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
from collections.abc import Awaitable, Callable, Coroutine, Generator
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

if TYPE_CHECKING:
    import asyncio

__all__ = [
    "Done",
    "adrive",
    "current_loop",
    "drive",
    "is_asyncio",
    "result_of",
    "send_into",
    "spawn_detached",
    "wait_async",
]

T = TypeVar("T")
Step = TypeVar("Step")

_detached: set[asyncio.Task[Any]] = set()  # strong references: asyncio keeps only weak ones


def current_loop() -> object:
    """The running event loop: an asyncio loop, or a trio run's ``TrioToken``.

    asyncio is asked first, so a trio that is installed but not imported is never
    touched; inside a trio run the ``import`` finds the already-loaded module.
    Neither is imported here when it is not loaded already: no loop of it can run.
    """
    asyncio = sys.modules.get("asyncio")
    if asyncio is not None:
        try:
            return asyncio.get_running_loop()
        except RuntimeError:
            pass
    trio = sys.modules.get("trio")
    try:
        if trio is None:
            raise RuntimeError("no trio run")
        return trio.lowlevel.current_trio_token()
    except RuntimeError:
        raise RuntimeError(
            "connect_auth's async API needs a running asyncio or trio event loop"
        ) from None


def spawn_detached(loop: object, fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``fn()`` on ``loop`` (from `current_loop`) as a task no caller owns.

    ``fn`` must handle its own errors: nothing awaits the task.
    """
    if is_asyncio(loop):
        task = loop.create_task(fn())  # type: ignore[attr-defined]
        _detached.add(task)
        task.add_done_callback(_detached.discard)
    else:
        import trio

        # A system task starts from the system nursery's context; the caller's keeps
        # its trace (an asyncio task copies it by itself).
        trio.lowlevel.spawn_system_task(
            fn, name="connect_auth-fetch", context=contextvars.copy_context()
        )


def is_asyncio(loop: object) -> bool:
    """Whether ``loop`` (from `current_loop`) is an asyncio loop (not a trio run)."""
    asyncio = sys.modules.get("asyncio")
    return asyncio is not None and isinstance(loop, asyncio.AbstractEventLoop)


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
        loop: Any = current_loop()
        if is_asyncio(loop):
            waiter: asyncio.Future[None] = loop.create_future()

            def wake() -> None:
                if not waiter.done():  # the waiting task may have been cancelled
                    waiter.set_result(None)

            future.add_done_callback(lambda _f: _call_soon(loop, wake))
            await waiter
        else:
            import trio

            event = trio.Event()
            token: Any = loop

            def wake_trio(_f: object) -> None:
                with contextlib.suppress(trio.RunFinishedError):
                    token.run_sync_soon(event.set)

            future.add_done_callback(wake_trio)
            await event.wait()
    return result_of(future)


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    with contextlib.suppress(RuntimeError):  # the loop closed while we fetched
        loop.call_soon_threadsafe(callback)


class Done(NamedTuple):
    """What `send_into` gives when the generator returned: its return value."""

    value: Any


def send_into(generator: Generator[Any, Any, Any], value: Any) -> Any:
    """What ``generator`` yields when sent ``value``, or `Done` with what it returned."""
    try:
        return generator.send(value)
    except StopIteration as done:
        return Done(done.value)


def drive(plan: Generator[Step, Any, T], run: Callable[[Step], Any]) -> T:
    """Run an I/O-free ``plan`` in this thread: each step it yields is ``run`` and the
    result sent back, until it returns."""
    value: Any = None
    while type(step := send_into(plan, value)) is not Done:
        value = run(step)
    return step.value  # type: ignore[no-any-return]


async def adrive(plan: Generator[Step, Any, T], run: Callable[[Step], Awaitable[Any]]) -> T:
    """`drive` on an event loop: each step's ``run`` is awaited."""
    value: Any = None
    while type(step := send_into(plan, value)) is not Done:
        value = await run(step)
    return step.value  # type: ignore[no-any-return]
