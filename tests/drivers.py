"""One interface over the real clients the adapters support, for the compliance suite.

Each driver owns a real client (httpx, httpx2, requests, aiohttp, niquests; sync
or async on a real event loop) with a ConnectAuth attached, and sends real HTTP
requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
import httpx2
import niquests
import requests
from helpers import run_in_threads

from connect_auth.aiohttp import ConnectAuth as AiohttpAuth
from connect_auth.httpx import ConnectAuth as HttpxAuth
from connect_auth.httpx2 import ConnectAuth as Httpx2Auth
from connect_auth.niquests import AsyncConnectAuth as NiquestsAsyncAuth
from connect_auth.niquests import ConnectAuth as NiquestsAuth
from connect_auth.requests import ConnectAuth as RequestsAuth


@dataclass
class Result:
    status: int
    json: Any
    history: int


def _json(text: str) -> Any:
    import json

    try:
        return json.loads(text)
    except ValueError:
        return None


SYNC_BODIES = frozenset({"bytes", "json", "form", "multipart", "bytesio", "file", "generator"})
ASYNC_BODIES = frozenset({"bytes", "json", "form", "multipart", "async-generator"})


class Driver:
    """Send requests through one client kind; ``send_many`` sends concurrently."""

    name = ""
    is_async = False
    #: the body kinds of the replay matrix this client accepts
    bodies = SYNC_BODIES
    #: whether the resend after a refusal shows in the response's history
    resend_in_history = True
    #: whether file bodies are sized from their current position (requests-style)
    sizes_from_position = False

    def __init__(self, auth_kwargs: dict[str, Any]) -> None:
        raise NotImplementedError

    def send(self, method: str, url: str, **kw: Any) -> Result:
        raise NotImplementedError

    def send_many(self, n: int, method: str, url: str) -> list[Result]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


def _threaded(n: int, call: Callable[[], Any]) -> list[Any]:
    """n barrier-released threads; the first error is raised."""
    results, errors = run_in_threads(n, call)
    if errors:
        raise errors[0]
    return results


class _HttpxSync(Driver):
    lib: Any = httpx
    auth_cls: Any = HttpxAuth

    def __init__(self, auth_kwargs: dict[str, Any]) -> None:
        self.auth = self.auth_cls(**auth_kwargs)
        self.client = self.lib.Client(auth=self.auth, follow_redirects=True, timeout=10)

    def send(self, method: str, url: str, **kw: Any) -> Result:
        r = self.client.request(method, url, **kw)
        return Result(r.status_code, _json(r.text), len(r.history))

    def send_many(self, n: int, method: str, url: str) -> list[Result]:
        return _threaded(n, lambda: self.send(method, url))

    def close(self) -> None:
        self.client.close()


class _AsyncDriver(Driver):
    """Runs its client on a real asyncio loop of its own."""

    is_async = True
    bodies = ASYNC_BODIES

    def _run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return self.loop.run_until_complete(coro)

    async def _send(self, method: str, url: str, **kw: Any) -> Result:
        raise NotImplementedError

    def send(self, method: str, url: str, **kw: Any) -> Result:
        return self._run(self._send(method, url, **kw))

    def send_many(self, n: int, method: str, url: str) -> list[Result]:
        async def many() -> list[Result]:
            return list(await asyncio.gather(*[self._send(method, url) for _ in range(n)]))

        return self._run(many())


class _HttpxAsync(_AsyncDriver):
    lib: Any = httpx
    auth_cls: Any = HttpxAuth

    def __init__(self, auth_kwargs: dict[str, Any]) -> None:
        self.auth = self.auth_cls(**auth_kwargs)
        self.loop = asyncio.new_event_loop()
        self.client = self._run(self._make())

    async def _make(self) -> Any:
        return self.lib.AsyncClient(auth=self.auth, follow_redirects=True, timeout=10)

    async def _send(self, method: str, url: str, **kw: Any) -> Result:
        r = await self.client.request(method, url, **kw)
        return Result(r.status_code, _json(r.text), len(r.history))

    def close(self) -> None:
        self._run(self.client.aclose())
        self.loop.close()


class HttpxSync(_HttpxSync):
    name = "httpx-sync"


class HttpxAsync(_HttpxAsync):
    name = "httpx-async"


class Httpx2Sync(_HttpxSync):
    name = "httpx2-sync"
    lib = httpx2
    auth_cls = Httpx2Auth


class Httpx2Async(_HttpxAsync):
    name = "httpx2-async"
    lib = httpx2
    auth_cls = Httpx2Auth


class Requests(Driver):
    name = "requests"
    lib: Any = requests
    auth_cls: Any = RequestsAuth
    sizes_from_position = True

    def __init__(self, auth_kwargs: dict[str, Any]) -> None:
        self.auth = self.auth_cls(**auth_kwargs)
        self.session = self.lib.Session()
        self.session.auth = self.auth

    def send(self, method: str, url: str, **kw: Any) -> Result:
        if "content" in kw:
            kw["data"] = kw.pop("content")
        r = self.session.request(method, url, timeout=10, **kw)
        return Result(r.status_code, _json(r.text), len(r.history))

    def send_many(self, n: int, method: str, url: str) -> list[Result]:
        return _threaded(n, lambda: self.send(method, url))

    def close(self) -> None:
        self.session.close()


class NiquestsSync(Requests):
    name = "niquests-sync"
    lib = niquests
    auth_cls = NiquestsAuth


class NiquestsAsync(_AsyncDriver):
    name = "niquests-async"
    sizes_from_position = True

    def __init__(self, auth_kwargs: dict[str, Any]) -> None:
        self.auth = NiquestsAsyncAuth(**auth_kwargs)
        self.loop = asyncio.new_event_loop()
        self.session = niquests.AsyncSession()
        self.session.auth = self.auth

    async def _send(self, method: str, url: str, **kw: Any) -> Result:
        if "content" in kw:
            kw["data"] = kw.pop("content")
        r = await self.session.request(method, url, timeout=10, **kw)
        return Result(r.status_code, _json(r.text or ""), len(r.history))

    def close(self) -> None:
        self._run(self.session.close())
        self.loop.close()


class Aiohttp(_AsyncDriver):
    name = "aiohttp"
    bodies = ASYNC_BODIES | {"bytesio", "file"}
    resend_in_history = False  # a middleware's resend is not a redirect

    def __init__(self, auth_kwargs: dict[str, Any]) -> None:
        self.auth = AiohttpAuth(**auth_kwargs)
        self.loop = asyncio.new_event_loop()
        self.session = self._run(self._make())

    async def _make(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            middlewares=(self.auth,), timeout=aiohttp.ClientTimeout(total=10)
        )

    async def _send(self, method: str, url: str, **kw: Any) -> Result:
        if "content" in kw:
            kw["data"] = kw.pop("content")
        if "files" in kw:  # requests-style files= as aiohttp's FormData
            form = aiohttp.FormData()
            for key, value in kw.pop("data", {}).items():
                form.add_field(key, value)
            for key, (filename, fileobj) in kw.pop("files").items():
                form.add_field(key, fileobj, filename=filename)
            kw["data"] = form
        async with self.session.request(method, url, **kw) as r:
            text = (await r.read()).decode()
            return Result(r.status, _json(text), len(r.history))

    def close(self) -> None:
        self._run(self.session.close())
        self.loop.close()


ALL_DRIVERS: list[type[Driver]] = [
    HttpxSync,
    HttpxAsync,
    Httpx2Sync,
    Httpx2Async,
    Requests,
    NiquestsSync,
    NiquestsAsync,
    Aiohttp,
]
