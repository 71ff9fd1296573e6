"""Connections for async Connect calls: one ``httpx.AsyncClient`` per running event loop.

A pool belongs to the loop it was opened on (an asyncio loop or a trio run) and is
never used from another, so sequential async fetches on one loop share their TLS
connections. Each pool is held open by an async generator started on its loop
(its keeper): the loop's own shutdown (``asyncio.run``, ``asyncio.Runner``,
``trio.run``, ``anyio.run``, or ``loop.shutdown_asyncgens()``) finalizes it, which
closes the pool, so a loop that ends without anyone calling ``aclose()`` leaves no
open socket and no warning. After ``os.fork()`` a child opens pools of its own and
never closes its parent's.
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable

import anyio
import httpx

from ._flight import current_loop, spawn_detached

__all__ = ["SHARED_AT_ONCE", "LoopPools"]

#: Calls of one loop that share its pool at a time (the rest open their own).
SHARED_AT_ONCE = 16


class _Pool:
    """One loop's client and the keeper that closes it when the loop shuts down."""

    __slots__ = ("busy", "client", "keeper", "pid")

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.busy = 0  # calls using the client now
        self.pid = os.getpid()
        self.keeper = _keep(self)
        _open.add(self)


#: Every pool not closed yet. Held here, not only by its `LoopPools`, so that a pool
#: outlives a `ConnectClient` dropped without ``aclose()`` until its loop shuts down
#: (a keeper collected earlier could no longer be finalized by the loop).
_open: set[_Pool] = set()


async def _keep(pool: _Pool) -> AsyncGenerator[None, None]:
    """Suspended on its loop until finalized (by the loop's shutdown or `LoopPools`),
    then closes the pool's client."""
    try:
        yield
    finally:
        _open.discard(pool)
        if os.getpid() == pool.pid:  # a forked child never closes its parent's sockets
            # trio finalizes leftover generators in a cancelled scope: shield the close
            with anyio.CancelScope(shield=True):
                await pool.client.aclose()


async def _close(pool: _Pool) -> None:
    await pool.keeper.aclose()  # its finally closes the client


class LoopPools:
    """The async clients of one `ConnectWire`, by running event loop."""

    def __init__(self, open_client: Callable[[], httpx.AsyncClient]) -> None:
        self._open = open_client
        # Weak keys: a pool never keeps an ended loop alive once its keeper closed it.
        self._pools: weakref.WeakKeyDictionary[object, _Pool] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()  # loops of several threads share the table

    @contextlib.asynccontextmanager
    async def client(self) -> AsyncIterator[httpx.AsyncClient]:
        """A client for one call on the running loop: its pool's, shared by up to
        `SHARED_AT_ONCE` calls at a time; past that, one of the call's own, closed
        after it. A fan-out of cold keys so keeps its speed: httpx's pool does work
        per request for every connection it holds."""
        pool = await self._pool()
        if pool.busy >= SHARED_AT_ONCE:
            async with self._open() as own:
                yield own
            return
        pool.busy += 1  # only this loop's tasks touch it: no lock
        try:
            yield pool.client
        finally:
            pool.busy -= 1

    async def _pool(self) -> _Pool:
        """The running loop's pool, opened on first use (or after it was closed)."""
        loop = current_loop()
        with self._lock:
            pool = self._pools.get(loop)
            if pool is not None and not pool.client.is_closed:
                return pool
            pool = self._pools[loop] = _Pool(self._open())
        # Started here, so the loop's asyncgen hooks adopt it. It reaches its yield
        # without suspending: no other task of this loop can see a half-made pool.
        await pool.keeper.__anext__()
        return pool

    async def aclose(self) -> None:
        """Close the running loop's pool now (the others close with their loops)."""
        pool = self._take_current()
        if pool is not None:
            await _close(pool)

    def close_soon(self) -> None:
        """Close the running loop's pool in a task of its own (for a sync ``close()``
        inside async code); the others close with their loops."""
        pool = self._take_current()
        if pool is not None:
            spawn_detached(current_loop(), lambda: _close(pool))

    def _take_current(self) -> _Pool | None:
        try:
            loop = current_loop()
        except RuntimeError:
            return None
        with self._lock:
            return self._pools.pop(loop, None)

    def forget(self) -> None:
        """Drop every pool without closing it (in a forked child): the child opens its
        own. The parent's stay referenced (in ``_open``), so garbage collection never
        closes their sockets either."""
        self._lock = threading.Lock()  # another thread may have held it at fork time
        self._pools = weakref.WeakKeyDictionary()
