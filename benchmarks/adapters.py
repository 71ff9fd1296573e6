"""Per-request cost of the aiohttp and niquests adapters on the cache-hit path.

Each client sends to an in-memory stand-in for the provider (a last aiohttp
middleware, a niquests transport adapter), so the numbers are the auth layer's
cost on top of the client's own request machinery, as for the httpx and
requests rows.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import niquests
import niquests.adapters
from urllib3_future import HTTPResponse

from connect_auth.aiohttp import ConnectAuth as AiohttpConnectAuth
from connect_auth.niquests import ConnectAuth as NiquestsConnectAuth

from . import peers
from .engine import LoopThread
from .measure import interleaved, interleaved_async

OK = b'{"ok":true}'


def aiohttp_per_request(
    provider_url: str, url: str, token: str, n: int, repeats: int
) -> dict[str, float]:
    """aiohttp with an in-memory provider: static header, connect_auth, a hand-written
    header middleware.

    ``provider_url`` is a real loopback provider that answers 200 to ``token``
    once; every measured request to ``url`` is then answered with that response
    by a last middleware, without I/O.
    """

    async def run() -> dict[str, float]:
        async with aiohttp.ClientSession() as real:
            canned = await real.get(provider_url, headers={"Authorization": f"Bearer {token}"})
            await canned.read()
        assert canned.status == 200

        async def provider(req: aiohttp.ClientRequest, handler: Any) -> aiohttp.ClientResponse:
            return canned

        return await _aiohttp_variants(url, token, (provider,), n, repeats)

    return asyncio.run(run())


def aiohttp_over_loopback(token: str, n: int, repeats: int) -> dict[str, float]:
    """The same three variants sending real requests to a provider on loopback."""
    with _loopback_provider() as url:
        return asyncio.run(_aiohttp_variants(url, token, (), max(20, n // 4), repeats))


@contextlib.contextmanager
def _loopback_provider() -> Iterator[str]:
    """A provider API on loopback that answers every request ``{"ok":true}``: a few
    lines of asyncio in a thread of their own, so the server adds as little as it can
    to what the variants measure. (Not Connect: that is the emulator.)"""
    loop = LoopThread()
    answer = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n"
        b'{"ok":true}'
    )
    writers: set[asyncio.StreamWriter] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.add(writer)
        with contextlib.suppress(ConnectionError):
            while await reader.readline():
                while (await reader.readline()) not in (b"\r\n", b""):
                    pass  # a GET: no body to read
                writer.write(answer)
                await writer.drain()
        writer.close()
        writers.discard(writer)

    server = loop.run(asyncio.start_server(serve, "127.0.0.1", 0, backlog=1024))

    async def stop() -> None:
        server.close()
        for writer in writers:
            writer.close()

    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/api"
    finally:
        loop.run(stop())
        loop.close()


async def _aiohttp_variants(
    url: str, token: str, last: tuple[Any, ...], n: int, repeats: int
) -> dict[str, float]:
    async def bearer(req: aiohttp.ClientRequest, handler: Any) -> aiohttp.ClientResponse:
        req.headers["Authorization"] = f"Bearer {token}"  # the peer: a header middleware
        return await handler(req)

    sessions = {
        "static header": aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {token}"}, middlewares=last
        ),
        "connect_auth": aiohttp.ClientSession(
            middlewares=(
                AiohttpConnectAuth(peers.SLACK, subject={"type": "app"}, refresh_if=None),
                *last,
            )
        ),
        "static header (hand-written middleware)": aiohttp.ClientSession(
            middlewares=(bearer, *last)
        ),
    }

    def variant(session: aiohttp.ClientSession) -> Callable[[], Awaitable[None]]:
        async def send() -> None:
            async with session.get(url) as response:
                if not last:  # a real answer: read it, as a caller would
                    await response.read()
                assert response.status == 200

        return send

    try:
        return await interleaved_async(
            {name: variant(s) for name, s in sessions.items()}, n, repeats
        )
    finally:
        for s in sessions.values():
            await s.close()


class _StubAdapter(niquests.adapters.BaseAdapter):
    """An in-memory niquests transport: answers 200 without any I/O."""

    def send(self, request: Any, **kwargs: Any) -> niquests.Response:  # type: ignore[override]
        response = niquests.Response()
        response.status_code = 200
        response._content = OK
        response.request = request
        response.url = request.url
        response.connection = self  # type: ignore[assignment]
        response.raw = HTTPResponse(body=OK, status=200, headers={}, preload_content=False)
        return response

    def close(self) -> None:
        return None


def niquests_per_request(url: str, token: str, n: int, repeats: int) -> dict[str, float]:
    """niquests: a static session header, connect_auth, niquests' own bearer auth."""

    def session(**attrs: Any) -> niquests.Session:
        s = niquests.Session()
        s.mount("https://", _StubAdapter())
        for key, value in attrs.items():
            setattr(s, key, value)
        return s

    static = session()
    static.headers["Authorization"] = f"Bearer {token}"
    sessions = {
        "static header": static,
        "connect_auth": session(
            auth=NiquestsConnectAuth(peers.SLACK, subject={"type": "app"}, refresh_if=None)
        ),
        "static header (niquests BearerTokenAuth)": session(
            auth=niquests.auth.BearerTokenAuth(token)
        ),
    }
    for name, s in sessions.items():
        sent = s.get(url).request
        assert sent.headers.get("Authorization") == f"Bearer {token}", name
    result = interleaved(
        {name: (lambda s=s: s.get(url) and None) for name, s in sessions.items()}, n, repeats
    )
    for s in sessions.values():
        s.close()
    return result
