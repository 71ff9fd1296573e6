"""Async fetches reuse their connections: one pool per event loop, closed with its loop,
never shared with another loop or a forked child."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import anyio
import pytest
from helpers import SLACK, run_in_tasks

from connect_auth import ConnectClient, JwtBearerSubject
from connect_auth._pools import SHARED_AT_ONCE
from connect_auth.testing import ConnectEmulator


def _script(code: str, emulator: ConnectEmulator) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter with every warning an error (ResourceWarning
    included), pointed at the emulator; a socket collected unclosed shows up on stderr."""
    env = {
        **os.environ,
        "CONNECT_AUTH_BASE_URL": emulator.url,
        "VERCEL_OIDC_TOKEN": emulator.oidc_token(),
        "PYTHONPATH": os.getcwd(),
    }
    return subprocess.run(
        [sys.executable, "-W", "error", "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _wait_until(predicate: object, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return False


@pytest.mark.anyio
async def test_sequential_async_fetches_on_one_loop_share_a_connection(
    emulator: ConnectEmulator, anyio_backend: str
) -> None:
    """20 cold fetches, one after another, open one connection (asyncio and trio); the
    connection stays open between fetches and `aclose` closes it."""
    before = emulator.connections_accepted
    async with ConnectClient(base_url=emulator.url, vercel_token=emulator.oidc_token()) as client:
        for i in range(20):
            await client.aget_token(SLACK, subject=JwtBearerSubject(f"seq-{i}"))
        assert emulator.token_calls() == 20
        assert emulator.connections_accepted - before == 1
        assert emulator.connections_open == 1  # kept for the next fetch
    assert _wait_until(lambda: emulator.connections_open == 0)


@pytest.mark.anyio
async def test_a_fan_out_past_the_shared_pool_gives_the_rest_their_own_connections(
    emulator: ConnectEmulator, anyio_backend: str
) -> None:
    """40 cold fetches at once on one loop: SHARED_AT_ONCE of them share the pool, the
    rest open connections of their own and close them after; the pool's stay for the
    next fetch."""
    emulator.latency = 0.3  # every fetch is in flight while the others start
    before = emulator.connections_accepted
    names = iter(range(40))
    async with ConnectClient(base_url=emulator.url, vercel_token=emulator.oidc_token()) as client:
        tokens = await run_in_tasks(
            40, lambda: client.aget_token(SLACK, subject=JwtBearerSubject(f"fan-{next(names)}"))
        )
        assert len(set(tokens)) == 40
        assert emulator.connections_accepted - before == 40
        with anyio.fail_after(10):
            while emulator.connections_open > SHARED_AT_ONCE:
                await anyio.sleep(0.01)
        assert emulator.connections_open == SHARED_AT_ONCE
        await client.aget_token(SLACK, subject=JwtBearerSubject("after-the-burst"))
        assert emulator.connections_accepted - before == 40  # served by the pool


@pytest.mark.anyio
async def test_a_sync_close_in_async_code_closes_the_loops_pool_soon(
    emulator: ConnectEmulator, anyio_backend: str
) -> None:
    """``with ConnectClient()`` inside a coroutine: the sync ``close()`` at its end closes
    the running loop's connections in a task of their own."""
    before = emulator.connections_accepted
    with ConnectClient(base_url=emulator.url, vercel_token=emulator.oidc_token()) as client:
        for name in ("sync-close-1", "sync-close-2"):
            await client.aget_token(SLACK, subject=JwtBearerSubject(name))
        assert emulator.connections_accepted - before == 1
        assert emulator.connections_open == 1
    with anyio.fail_after(10):
        while emulator.connections_open:
            await anyio.sleep(0.01)


def test_each_event_loop_gets_its_own_pool_and_ends_without_a_warning(
    emulator: ConnectEmulator,
) -> None:
    """Two ``asyncio.run`` calls, a trio run, two loops in two threads at once and a
    hand-run loop: each gets its own pool, and none is ever used from another loop.
    Nobody calls ``aclose()``: the loops' shutdown closes every pool, so the process
    ends with no ResourceWarning (warnings are errors)."""
    done = _script(
        """
        import asyncio, gc, json, threading, trio
        import connect_auth
        from connect_auth import ConnectClient, JwtBearerSubject

        client = ConnectClient()
        async def fetch(name, n=2):
            for i in range(n):
                await client.aget_token("slack/acme-slack", subject=JwtBearerSubject(f"{name}{i}"))

        asyncio.run(fetch("first-run"))
        asyncio.run(fetch("second-run"))          # the first loop's pool is closed by now
        trio.run(fetch, "trio")
        threads = [threading.Thread(target=asyncio.run, args=(fetch(f"thread{t}-", 3),))
                   for t in range(2)]
        for t in threads: t.start()
        for t in threads: t.join()
        loop = asyncio.new_event_loop()
        loop.run_until_complete(fetch("by-hand"))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        asyncio.run(connect_auth.aget_token("slack/acme-slack", subject={"type": "app"}))
        del client
        gc.collect()
        print("done")
        """,
        emulator,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr == ""  # no ResourceWarning, no "Exception ignored"
    assert emulator.token_calls() == 2 + 2 + 2 + 3 + 3 + 2 + 1
    # one connection per loop: 2 asyncio.run, trio, 2 threads, by hand, the default client
    assert emulator.connections_accepted == 7
    assert _wait_until(lambda: emulator.connections_open == 0)


def test_a_client_closed_inside_async_code_closes_its_loops_pool(
    emulator: ConnectEmulator,
) -> None:
    """A sync ``close()`` (``with ConnectClient()`` in a coroutine) closes the running
    loop's pool soon after, and a client dropped without closing keeps its pool until
    the loop shuts down: neither leaves a socket to the garbage collector."""
    done = _script(
        """
        import asyncio, gc
        from connect_auth import ConnectClient

        async def main():
            with ConnectClient() as client:
                for scope in ("a", "b"):
                    await client.aget_token("slack/acme-slack", subject={"type": "app"},
                                            scopes=[scope])
            await asyncio.sleep(0.05)
            dropped = ConnectClient()
            for scope in ("c", "d"):
                await dropped.aget_token("slack/acme-slack", subject={"type": "app"},
                                         scopes=[scope])
            del dropped
            gc.collect()
        asyncio.run(main())
        gc.collect()
        print("done")
        """,
        emulator,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr == ""
    assert emulator.token_calls() == 4
    assert emulator.connections_accepted == 2  # one per client
    assert _wait_until(lambda: emulator.connections_open == 0)


def test_a_forked_child_opens_its_own_pool(emulator: ConnectEmulator) -> None:
    """The parent keeps a loop running in a thread with a warm pool and forks: the child's
    fetches open connections of their own, and the parent's pool still serves it after."""
    done = _script(
        """
        import asyncio, json, os, threading
        import connect_auth

        SLACK = "slack/acme-slack"
        sub = lambda s: {"type": "jwt-bearer", "sub": s}
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        on_loop = lambda coro: asyncio.run_coroutine_threadsafe(coro, loop).result(60)

        parent = [on_loop(connect_auth.aget_token(SLACK, subject=sub("parent-1")))]
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            async def child():
                return [await connect_auth.aget_token(SLACK, subject=sub(f"child-{i}"))
                        for i in range(3)]
            os.write(w, json.dumps(asyncio.run(child())).encode())
            os._exit(0)
        os.close(w)
        _, status = os.waitpid(pid, 0)
        with os.fdopen(r) as f:
            children = json.loads(f.read() or "[]")
        parent.append(on_loop(connect_auth.aget_token(SLACK, subject=sub("parent-2"))))
        on_loop(connect_auth.default_client().aclose())
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()
        print(json.dumps({"status": status, "parent": parent, "child": children}))
        """,
        emulator,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = __import__("json").loads(done.stdout.strip().splitlines()[-1])
    assert out["status"] == 0 and len(out["child"]) == 3
    issued = {t.token: str(t.subject.get("sub")) for t in emulator.issued_tokens()}
    assert [issued[t] for t in out["parent"]] == ["parent-1", "parent-2"]
    assert [issued[t] for t in out["child"]] == ["child-0", "child-1", "child-2"]
    # the parent's one connection served both of its fetches; the child opened its own
    assert emulator.connections_accepted == 2
