"""The default Slack rule never buffers a download: each client streams a large answer
through a Slack connector and gets its first bytes while the server still holds the
rest back; a small Slack refusal of unknown length is still refreshed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import aiohttp
import httpx
import httpx2
import niquests
import pytest
import requests
from helpers import APP, SLACK, running

from connect_auth import ConnectClient
from connect_auth._refusal import MAX_INSPECTED_BYTES, inspectable
from connect_auth.aiohttp import ConnectAuth as AiohttpAuth
from connect_auth.httpx import ConnectAuth as HttpxAuth
from connect_auth.httpx2 import ConnectAuth as Httpx2Auth
from connect_auth.niquests import AsyncConnectAuth as NiquestsAsyncAuth
from connect_auth.niquests import ConnectAuth as NiquestsAuth
from connect_auth.requests import ConnectAuth as RequestsAuth
from connect_auth.testing import ConnectEmulator

HEAD = 256 * 1024  # sent at once: more than the inspection bound
TOTAL = 8 * 1024 * 1024
GATE_SECONDS = 20.0


@dataclass
class Served:
    token: str
    released_by: str = ""  # "caller" or "timeout"


@dataclass
class Provider:
    """A loopback provider that sends ``HEAD`` bytes of a large answer, then holds the
    rest back until the test releases it (or ``GATE_SECONDS`` pass)."""

    url: str
    log: list[Served] = field(default_factory=list)
    gate: threading.Event = field(default_factory=threading.Event)
    refuse_first: bool = False

    def release(self) -> None:
        self.gate.set()


@contextlib.contextmanager
def provider() -> Iterator[Provider]:
    state = Provider("")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            served = Served(self.headers.get("Authorization", "")[7:])
            state.log.append(served)
            kind = self.path.rpartition("/")[2]
            if kind == "refusal":  # a Slack refusal of unknown length, then success
                ok = not (state.refuse_first and len(state.log) == 1)
                body = json.dumps({"ok": ok, **({} if ok else {"error": "invalid_auth"})})
                self._chunked("application/json; charset=utf-8", [body.encode()])
                return
            media = "application/octet-stream" if kind == "octet" else "application/json"
            self.send_response(200)
            self.send_header("Content-Type", media)
            if kind == "json-chunked":
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.send_header("Content-Length", str(TOTAL))
            self.end_headers()
            chunked = kind == "json-chunked"
            self._write(b"[" + b" " * (HEAD - 1), chunked)
            released = state.gate.wait(GATE_SECONDS)
            served.released_by = "caller" if released else "timeout"
            rest = TOTAL - HEAD
            block = b" " * 65536
            while rest > 1:
                piece = block[: min(len(block), rest - 1)]
                self._write(piece, chunked)
                rest -= len(piece)
            self._write(b"]", chunked)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")

        def _write(self, data: bytes, chunked: bool) -> None:
            if chunked:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            else:
                self.wfile.write(data)

        def _chunked(self, media: str, parts: list[bytes]) -> None:
            self.send_response(200)
            self.send_header("Content-Type", media)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in parts:
                self._write(part, True)
            self.wfile.write(b"0\r\n\r\n")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    with running(server) as state.url:
        try:
            yield state
        finally:
            state.release()  # a handler still holding its answer back lets go


# -- one streaming download per client: (first bytes, then the rest after release) ------

Download = Callable[[ConnectClient, str, Callable[[], None]], tuple[int, int]]


def _first_then_rest(chunks: Iterator[bytes], release: Callable[[], None]) -> tuple[int, int]:
    """Bytes in the first chunk, then (once the server lets the rest go) in all."""
    first = len(next(chunks))
    release()
    return first, first + sum(len(c) for c in chunks)


async def _afirst_then_rest(
    chunks: AsyncIterator[bytes], release: Callable[[], None]
) -> tuple[int, int]:
    """`_first_then_rest` for async chunks."""
    first = len(await anext(chunks))
    release()
    total = first
    async for chunk in chunks:
        total += len(chunk)
    return first, total


def _httpx_like(module: Any, auth_class: Any) -> Download:
    def download(client: ConnectClient, url: str, release: Callable[[], None]) -> tuple[int, int]:
        auth = auth_class(SLACK, subject=APP, client=client)
        with module.Client(auth=auth) as http, http.stream("GET", url) as r:
            return _first_then_rest(r.iter_bytes(), release)

    return download


def _httpx_like_async(module: Any, auth_class: Any) -> Download:
    def download(client: ConnectClient, url: str, release: Callable[[], None]) -> tuple[int, int]:
        async def run() -> tuple[int, int]:
            auth = auth_class(SLACK, subject=APP, client=client)
            async with module.AsyncClient(auth=auth) as http, http.stream("GET", url) as r:
                return await _afirst_then_rest(r.aiter_bytes(), release)

        return asyncio.run(run())

    return download


def _requests_like(session_class: Any, auth_class: Any) -> Download:
    def download(client: ConnectClient, url: str, release: Callable[[], None]) -> tuple[int, int]:
        with session_class() as session:
            session.auth = auth_class(SLACK, subject=APP, client=client)
            r = session.get(url, stream=True)
            return _first_then_rest(r.iter_content(65536), release)

    return download


def _niquests_async(
    client: ConnectClient, url: str, release: Callable[[], None]
) -> tuple[int, int]:
    async def run() -> tuple[int, int]:
        async with niquests.AsyncSession() as session:
            session.auth = NiquestsAsyncAuth(SLACK, subject=APP, client=client)
            r = await session.get(url, stream=True)
            return await _afirst_then_rest(await r.iter_content(65536), release)

    return asyncio.run(run())


def _aiohttp(client: ConnectClient, url: str, release: Callable[[], None]) -> tuple[int, int]:
    async def run() -> tuple[int, int]:
        auth = AiohttpAuth(SLACK, subject=APP, client=client)
        async with (
            aiohttp.ClientSession(middlewares=(auth,)) as session,
            session.get(url) as r,
        ):
            return await _afirst_then_rest(r.content.iter_chunked(65536), release)

    return asyncio.run(run())


DOWNLOADS: dict[str, Download] = {
    "httpx": _httpx_like(httpx, HttpxAuth),
    "httpx-async": _httpx_like_async(httpx, HttpxAuth),
    "httpx2": _httpx_like(httpx2, Httpx2Auth),
    "httpx2-async": _httpx_like_async(httpx2, Httpx2Auth),
    "requests": _requests_like(requests.Session, RequestsAuth),
    "niquests": _requests_like(niquests.Session, NiquestsAuth),
    "niquests-async": _niquests_async,
    "aiohttp": _aiohttp,
}


@pytest.fixture
def slack_client(emulator: ConnectEmulator) -> Iterator[ConnectClient]:
    with ConnectClient(base_url=emulator.url, vercel_token=emulator.oidc_token()) as c:
        c.get_token(SLACK, subject=APP)  # Connect says: a Slack connector
        yield c


@pytest.mark.parametrize("kind", ["octet", "json", "json-chunked"])
@pytest.mark.parametrize("client_kind", list(DOWNLOADS))
def test_a_large_answer_streams_through_the_slack_rule(
    slack_client: ConnectClient, client_kind: str, kind: str
) -> None:
    with provider() as server:
        first, total = DOWNLOADS[client_kind](slack_client, f"{server.url}/{kind}", server.release)
    assert total == TOTAL  # nothing lost to the peek
    assert first > 0
    (served,) = server.log
    assert served.token  # the token was attached
    # The caller had its response, and its first bytes, while the rest was held back:
    # the adapter read at most what had been sent.
    assert served.released_by == "caller"


@pytest.mark.parametrize("client_kind", ["httpx", "httpx-async", "httpx2", "requests"])
def test_a_slack_refusal_of_unknown_length_is_still_refreshed(
    emulator: ConnectEmulator, slack_client: ConnectClient, client_kind: str
) -> None:
    """Chunked ``{"ok": false, "error": "invalid_auth"}``: peeked within the bound,
    refreshed once, resent once; the caller sees the second answer."""
    with provider() as server:
        server.refuse_first = True
        url = f"{server.url}/refusal"
        if client_kind.startswith("httpx"):
            module = httpx2 if client_kind == "httpx2" else httpx
            auth_class = Httpx2Auth if client_kind == "httpx2" else HttpxAuth
            auth = auth_class(SLACK, subject=APP, client=slack_client)
            if client_kind == "httpx-async":

                async def run() -> Any:
                    async with module.AsyncClient(auth=auth) as http:
                        return (await http.get(url)).json()

                body = asyncio.run(run())
            else:
                with module.Client(auth=auth) as http:
                    body = http.get(url).json()
        else:
            with requests.Session() as session:
                session.auth = RequestsAuth(SLACK, subject=APP, client=slack_client)
                body = session.get(url).json()
    assert body == {"ok": True}
    assert len(server.log) == 2 and server.log[0].token != server.log[1].token
    assert emulator.token_calls() == 2


def test_what_the_predicate_may_read_is_decided_from_headers() -> None:
    assert inspectable("application/json; charset=utf-8", "40") is True
    assert inspectable("application/problem+json", str(MAX_INSPECTED_BYTES)) is True
    assert inspectable("Application/JSON", None) is False
    assert inspectable("application/json", "many") is False
    assert inspectable("application/json", str(MAX_INSPECTED_BYTES + 1)) is None
    assert inspectable("application/octet-stream", "40") is None
    assert inspectable("text/html", None) is None
    assert inspectable(None, "40") is None
