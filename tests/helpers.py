"""Constants and small helpers shared by the test modules."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import socketserver
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import httpx

from connect_auth import ConnectClient, RetryPolicy
from connect_auth.testing import FAST_RETRY
from connect_auth.testing._serve import free_port as free_port  # one home, used here too
from connect_auth.testing._serve import serve_asgi as serve_asgi
from connect_auth.testing._serve import wait_for as wait_for

SLACK = "slack/acme-slack"
APP: dict[str, Any] = {"type": "app"}


def fast_retry(**overrides: float) -> RetryPolicy:
    """The emulator fixture's retries (`connect_auth.testing.FAST_RETRY`), with
    ``overrides``: tiny waits, so fault tests stay quick."""
    return dataclasses.replace(FAST_RETRY, **overrides)


def run_in_threads(n: int, target: Callable[[], Any]) -> tuple[list[Any], list[BaseException]]:
    """Start n threads released together by a barrier; collect results and errors."""
    barrier = threading.Barrier(n)
    results: list[Any] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run() -> None:
        barrier.wait()
        try:
            value = target()
            with lock:
                results.append(value)
        except BaseException as exc:  # collected for the caller's assertions
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors


async def run_in_tasks(n: int, call: Callable[[], Awaitable[Any]]) -> list[Any]:
    """Start n tasks released together by an event (asyncio or trio); their results."""
    results: list[Any] = []
    start = anyio.Event()

    async def one() -> None:
        await start.wait()
        results.append(await call())

    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(one)
        await anyio.sleep(0)
        start.set()
    return results


def token_json(token: str, *, ttl: float = 3600.0) -> dict[str, Any]:
    """A Connect token answer for ``token``, living ``ttl`` seconds."""
    return {
        "token": token,
        "expiresAt": int((time.time() + ttl) * 1000),
        "connector": {"id": "scl_x", "uid": SLACK, "type": "slack"},
    }


def jwt_like(label: str, *, exp: float | None = None) -> str:
    """A credential shaped as a JWT (unsigned) that says ``label``: what connect_auth
    accepts before any request, for tests whose Connect API is not the emulator."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    claims: dict[str, Any] = {"sub": label} if exp is None else {"sub": label, "exp": exp}
    return f"{part({'alg': 'none'})}.{part(claims)}.sig"


def mock_client(handler: Callable[[httpx.Request], Any], **options: Any) -> ConnectClient:
    """A client whose Connect API is ``handler`` (an httpx.MockTransport handler)."""
    options.setdefault("vercel_token", jwt_like("credential"))
    return ConnectClient(
        base_url="http://127.0.0.1:9", transport=httpx.MockTransport(handler), **options
    )


@contextlib.contextmanager
def serve_wsgi(app: Any) -> Iterator[str]:
    """Serve a WSGI app with Werkzeug's threaded server on loopback; yields its base URL."""
    from werkzeug.serving import make_server

    with running(make_server("127.0.0.1", 0, app, threaded=True)) as url:
        yield url


@contextlib.contextmanager
def running(server: socketserver.BaseServer) -> Iterator[str]:
    """Serve ``server`` (bound to 127.0.0.1) from a thread; yields its base URL, then
    shuts it down and closes its socket."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def revoke_delete_and_clear(
    a: ConnectClient, b: ConnectClient, calls: Callable[[], int], stored: Callable[[], list[Any]]
) -> None:
    """Two clients of one shared cache: ``revoke_token``, ``delete_token_cache_entry``
    and ``clear_token_cache`` by ``a`` reach ``b`` through the shared entries, and
    ``stored()`` (what the shared store holds) is empty at the end. ``calls()``
    counts Connect token calls."""
    user = {"type": "user", "id": "u_alice"}
    a.get_token(SLACK, subject=APP)
    a.get_token(SLACK, subject=user)
    assert stored() != []
    a.revoke_token(SLACK, subject=user)
    b.get_token(SLACK, subject=user)  # not in the shared store any more: fetched
    assert calls() == 3
    a.delete_token_cache_entry(SLACK, subject=APP)
    b.get_token(SLACK, subject=APP)
    assert calls() == 4
    a.clear_token_cache()
    assert stored() == []
