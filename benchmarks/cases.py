"""The benchmark cases. Each measures connect_auth and its comparisons in the same run.

Every case takes a ``scale`` (1.0 for the real run, tiny for the smoke test) and
returns plain data (dicts of numbers) for the report.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
import json
import os
import threading
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import httpx2
import requests
import requests.adapters

import connect_auth
from connect_auth import ConnectClient, JwtBearerSubject
from connect_auth.httpx import ConnectAuth as HttpxConnectAuth
from connect_auth.httpx2 import ConnectAuth as Httpx2ConnectAuth
from connect_auth.requests import ConnectAuth as RequestsConnectAuth
from connect_auth.testing import ConnectEmulator

from . import adapters, peers
from .measure import counting, interleaved, interleaved_async

SLACK = peers.SLACK
APP = {"type": "app"}
PROVIDER = "https://provider.invalid/api/chat.postMessage"  # tokens go over https only
#: The per-request rows measure attaching the token: the Slack rule, which the adapters
#: apply to Slack connectors by default, is off there and measured in its own row.
ATTACH: dict[str, Any] = {"refresh_if": None}

Row = dict[str, Any]


# -- measuring -------------------------------------------------------------------


class StubAdapter(requests.adapters.BaseAdapter):
    """An in-memory requests transport: answers 200 without any I/O."""

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        response = requests.Response()
        response.status_code = 200
        response._content = b'{"ok":true}'
        response.request = request
        response.url = request.url or ""
        response.connection = self
        return response

    def close(self) -> None:
        return None


class _StaticAuth(requests.auth.AuthBase):
    """The thinnest possible requests auth: one constant header (a second floor)."""

    def __init__(self, token: str) -> None:
        self.header = f"Bearer {token}"

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = self.header
        return r


@contextmanager
def environment(emulator: ConnectEmulator) -> Iterator[str]:
    """Point connect_auth and vercel-connect at the emulator, as an app on Vercel would be."""
    oidc = emulator.oidc_token()
    saved = {k: os.environ.get(k) for k in ("CONNECT_AUTH_BASE_URL", "VERCEL_OIDC_TOKEN")}
    os.environ["CONNECT_AUTH_BASE_URL"] = emulator.url
    os.environ["VERCEL_OIDC_TOKEN"] = oidc
    old = connect_auth.set_default_client(None)
    try:
        yield oidc
    finally:
        new = connect_auth.set_default_client(old)
        if new is not None:
            new.close()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# -- case 1: per-request cost on the cache-hit path ---------------------------------


def per_request(scale: float) -> dict[str, Any]:
    """µs per request for each auth layer, in-memory transports and over loopback."""
    # Many short interleaved rounds: a slow drift of the machine's speed then lands on
    # every variant alike instead of on whichever ran during it.
    n = max(20, int(500 * scale))
    repeats = 25 if scale >= 1 else 2
    out: dict[str, Any] = {"n": n, "repeats": repeats}
    with (
        ConnectEmulator() as emu,
        environment(emu) as oidc,
        peers.vercel_connect_sync(emu.url) as vc_token,
    ):
        token = connect_auth.get_token(SLACK, subject=APP)
        vc_token()  # warm vercel-connect's cache
        hx = peers.httpx_auth_client_credentials(emu.url, oidc)
        out["httpx sync"] = _per_request_sync_client(
            httpx,
            HttpxConnectAuth,
            token,
            vc_token,
            {"httpx-auth OAuth2ClientCredentials": hx},
            n,
            repeats,
        )
        out["httpx2 sync"] = _per_request_sync_client(
            httpx2,
            Httpx2ConnectAuth,
            token,
            vc_token,
            {"authlib OAuth2Auth": peers.authlib_httpx_auth(token)},
            n,
            repeats,
        )
        out["httpx async"] = _per_request_async(emu, token, oidc, n, repeats)
        out["requests"] = _per_request_requests(emu, token, oidc, vc_token, n, repeats)
        out["httpx sync over loopback"] = _per_request_loopback(emu, token, vc_token, n, repeats)
        out["aiohttp"] = adapters.aiohttp_per_request(
            emu.provider_url(SLACK), PROVIDER, token, n, repeats
        )
        out["niquests sync"] = adapters.niquests_per_request(PROVIDER, token, n, repeats)
        out["aiohttp over loopback"] = adapters.aiohttp_over_loopback(token, n, repeats)
    return out


def _per_request_sync_client(
    lib: Any,
    auth_cls: Any,
    token: str,
    vc_token: Callable[[], str],
    peer_auths: dict[str, Any],
    n: int,
    repeats: int,
) -> dict[str, float]:
    """One httpx-style library: static header, connect_auth, its peers, vercel-connect."""
    mock = lib.MockTransport(_ok_for(lib))
    clients = {
        "static header": lib.Client(transport=mock, headers={"Authorization": f"Bearer {token}"}),
        "connect_auth": lib.Client(transport=mock, auth=auth_cls(SLACK, subject=APP, **ATTACH)),
        "connect_auth, Slack rule": lib.Client(transport=mock, auth=auth_cls(SLACK, subject=APP)),
        **{name: lib.Client(transport=mock, auth=auth) for name, auth in peer_auths.items()},
    }
    plain = lib.Client(transport=mock)
    with peers.quiet():
        for name, c in clients.items():
            sent = c.get(PROVIDER).request  # pre-fetch each peer's token
            assert "authorization" in sent.headers, f"{name} attached no token"
        variants: dict[str, Callable[[], None]] = {
            name: (lambda c=c: c.get(PROVIDER)) for name, c in clients.items()
        }
        variants["vercel-connect + header"] = lambda: plain.get(
            PROVIDER, headers={"Authorization": f"Bearer {vc_token()}"}
        )
        result = interleaved(variants, n, repeats)
    for c in [*clients.values(), plain]:
        c.close()
    return result


def _ok_for(lib: Any) -> Callable[[Any], Any]:
    def ok(request: Any) -> Any:
        return lib.Response(200, content=b'{"ok":true}')

    return ok


def _per_request_async(
    emu: ConnectEmulator, token: str, oidc: str, n: int, repeats: int
) -> dict[str, float]:
    mock = httpx.MockTransport(_ok_for(httpx))

    async def run() -> dict[str, float]:
        hx = peers.httpx_auth_client_credentials(emu.url, oidc)
        clients = {
            "static header": httpx.AsyncClient(
                transport=mock, headers={"Authorization": f"Bearer {token}"}
            ),
            "connect_auth": httpx.AsyncClient(
                transport=mock, auth=HttpxConnectAuth(SLACK, subject=APP, **ATTACH)
            ),
            "httpx-auth OAuth2ClientCredentials": httpx.AsyncClient(transport=mock, auth=hx),
        }
        with peers.quiet():
            for name, c in clients.items():
                sent = (await c.get(PROVIDER)).request
                assert "authorization" in sent.headers, f"{name} attached no token"
        async with peers.vercel_connect_async(emu.url) as vc_token:
            await vc_token()
            plain = httpx.AsyncClient(transport=mock)

            async def vc() -> None:
                await plain.get(PROVIDER, headers={"Authorization": f"Bearer {await vc_token()}"})

            variants: dict[str, Callable[[], Awaitable[None]]] = {
                name: (lambda c=c: c.get(PROVIDER))
                for name, c in clients.items()  # type: ignore[misc]
            }
            variants["vercel-connect + header"] = vc
            result = await interleaved_async(variants, n, repeats)
            await plain.aclose()
        for c in clients.values():
            await c.aclose()
        return result

    with peers.quiet():
        # A fresh context: vercel-connect refuses async calls inside its sync session.
        return contextvars.Context().run(asyncio.run, run())


def _session(adapter: requests.adapters.BaseAdapter, **attrs: Any) -> requests.Session:
    session = requests.Session()
    session.mount("https://", adapter)
    for key, value in attrs.items():
        setattr(session, key, value)
    return session


def _per_request_requests(
    emu: ConnectEmulator, token: str, oidc: str, vc_token: Callable[[], str], n: int, repeats: int
) -> dict[str, float]:
    stub = StubAdapter()
    header = {"Authorization": f"Bearer {token}"}
    static = _session(stub)
    static.headers.update(header)
    sessions = {
        "static header": static,
        "static header (AuthBase)": _session(stub, auth=_StaticAuth(token)),
        "connect_auth": _session(stub, auth=RequestsConnectAuth(SLACK, subject=APP, **ATTACH)),
        "authlib OAuth2Auth": _session(stub, auth=peers.authlib_requests_auth(token)),
        "google-auth AuthorizedSession": peers.google_session(emu.url, oidc, token, stub),
        "vercel-connect + header": _session(stub),
    }
    variants: dict[str, Callable[[], None]] = {
        name: (lambda s=s: s.get(PROVIDER))
        for name, s in sessions.items()  # type: ignore[misc]
    }
    plain = sessions["vercel-connect + header"]
    variants["vercel-connect + header"] = lambda: plain.get(
        PROVIDER, headers={"Authorization": f"Bearer {vc_token()}"}
    )
    with peers.quiet():
        for name, fn in variants.items():
            sent = fn().request  # type: ignore[func-returns-value]
            assert "Authorization" in sent.headers, f"{name} attached no token"
        result = interleaved(variants, n, repeats)
    for s in sessions.values():
        s.close()
    return result


def _per_request_loopback(
    emu: ConnectEmulator, token: str, vc_token: Callable[[], str], n: int, repeats: int
) -> dict[str, float]:
    url = emu.provider_url(SLACK)
    static = httpx.Client(headers={"Authorization": f"Bearer {token}"})
    authed = httpx.Client(auth=HttpxConnectAuth(SLACK, subject=APP))
    plain = httpx.Client()
    variants: dict[str, Callable[[], None]] = {
        "static header": lambda: static.get(url),
        "connect_auth": lambda: authed.get(url),
        "vercel-connect + header": lambda: plain.get(
            url, headers={"Authorization": f"Bearer {vc_token()}"}
        ),
    }
    with peers.quiet():
        result = interleaved(variants, max(20, n // 4), repeats)
    for c in (static, authed, plain):
        c.close()
    return result


def bytecodes(scale: float) -> dict[str, Any]:
    """The per-request and cached get_token cases again, counting the Python bytecodes
    one call executes in the caller's thread instead of timing it."""
    with counting():
        return {
            "per_request": per_request(0.01),
            "cached_get_token": cached_get_token(0.01)["us"],
        }


# -- case 2: a cached get_token ---------------------------------------------------------


def cached_get_token(scale: float) -> dict[str, Any]:
    """µs per cached ``get_token``: connect_auth against vercel-connect, both from the env."""
    n = max(50, int(20000 * scale))
    repeats = 7 if scale >= 1 else 2
    with ConnectEmulator() as emu, environment(emu), peers.vercel_connect_sync(emu.url) as vc:
        get = connect_auth.get_token
        variants: dict[str, Callable[[], None]] = {
            "connect_auth get_token": lambda: get(SLACK, subject={"type": "app"}) and None,
            "vercel-connect get_token": lambda: vc() and None,
        }
        with peers.quiet():
            result = interleaved(variants, n, repeats)
        calls = emu.token_calls()
    return {"n": n, "us": result, "connect_calls": calls}


# -- case 3: cold herd ---------------------------------------------------------------------


def _threads(n: int, fn: Callable[[], Any]) -> int:
    """Run fn in n barrier-released threads (sharing this context); return the failures."""
    barrier = threading.Barrier(n)
    failures = [0]
    lock = threading.Lock()
    ctx = contextvars.copy_context()

    def run() -> None:
        barrier.wait()
        try:
            fn()
        except Exception:
            with lock:
                failures[0] += 1

    threads = [threading.Thread(target=ctx.copy().run, args=(run,)) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return failures[0]


def cold_herd(scale: float) -> dict[str, Any]:
    """Connect (or token endpoint) calls when N callers make their first request at once."""
    n_threads = max(4, int(64 * min(scale * 8, 1)))
    n_tasks = max(10, int(1000 * min(scale * 8, 1)))
    result: dict[str, Any] = {"threads": n_threads, "tasks": n_tasks, "sync": {}, "async": {}}
    sync, asyn = result["sync"], result["async"]

    def fresh() -> ConnectEmulator:
        emu = ConnectEmulator()
        emu.start()
        emu.latency = 0.1  # a token endpoint that answers slowly, as in production
        return emu

    with peers.quiet():
        for name, make in _sync_herds().items():
            emu = fresh()
            with contextlib.ExitStack() as stack:
                fails = _threads(n_threads, make(emu, stack))
            sync[name] = {"calls": emu.token_calls(), "failures": fails}
            emu.stop()
        for name, runner in _async_herds().items():
            emu = fresh()
            asyn[name] = asyncio.run(runner(emu, n_tasks))
            emu.stop()
    return result


def _sync_herds() -> dict[
    str, Callable[[ConnectEmulator, contextlib.ExitStack], Callable[[], Any]]
]:
    """Per library: set up in the stack, return what each thread calls for its first request."""

    def first_request(client: Any, emu: ConnectEmulator) -> Callable[[], Any]:
        url = emu.provider_url(SLACK)
        return lambda: client.get(url).raise_for_status()

    def ours(emu: ConnectEmulator, stack: contextlib.ExitStack) -> Callable[[], Any]:
        cc = stack.enter_context(ConnectClient(base_url=emu.url, vercel_token=emu.oidc_token()))
        auth = HttpxConnectAuth(SLACK, subject=APP, client=cc)
        return first_request(stack.enter_context(httpx.Client(auth=auth)), emu)

    def vercel(emu: ConnectEmulator, stack: contextlib.ExitStack) -> Callable[[], Any]:
        get = stack.enter_context(peers.vercel_connect_sync(emu.url))
        stack.enter_context(environment(emu))
        return get

    def google(emu: ConnectEmulator, stack: contextlib.ExitStack) -> Callable[[], Any]:
        session = peers.google_session(emu.url, emu.oidc_token(), None, None)
        return first_request(stack.enter_context(session), emu)

    def authlib(emu: ConnectEmulator, stack: contextlib.ExitStack) -> Callable[[], Any]:
        client = peers.authlib_client(emu.url, emu.oidc_token(), asynchronous=False)
        return first_request(stack.enter_context(client), emu)

    def httpx_auth(emu: ConnectEmulator, stack: contextlib.ExitStack) -> Callable[[], Any]:
        auth = peers.httpx_auth_client_credentials(emu.url, emu.oidc_token())
        return first_request(stack.enter_context(httpx.Client(auth=auth)), emu)

    return {
        "connect_auth": ours,
        "vercel-connect": vercel,
        "google-auth": google,
        "authlib": authlib,
        "httpx-auth": httpx_auth,
    }


def _async_herds() -> dict[str, Callable[[ConnectEmulator, int], Awaitable[Row]]]:
    async def gather(n: int, fn: Callable[[], Awaitable[Any]]) -> int:
        results = await asyncio.gather(*[fn() for _ in range(n)], return_exceptions=True)
        return sum(isinstance(r, BaseException) for r in results)

    async def ours(emu: ConnectEmulator, n: int) -> Row:
        cc = ConnectClient(base_url=emu.url, vercel_token=emu.oidc_token())
        async with httpx.AsyncClient(
            auth=HttpxConnectAuth(SLACK, subject=APP, client=cc),
            limits=httpx.Limits(max_connections=64),
            timeout=60,
        ) as h:
            url = emu.provider_url(SLACK)

            async def one() -> None:
                (await h.get(url)).raise_for_status()

            fails = await gather(n, one)
        cc.close()
        return {"calls": emu.token_calls(), "failures": fails}

    async def vercel(emu: ConnectEmulator, n: int) -> Row:
        with environment(emu):
            async with peers.vercel_connect_async(emu.url) as get:
                fails = await gather(n, get)
        return {"calls": emu.token_calls(), "failures": fails}

    async def authlib(emu: ConnectEmulator, n: int) -> Row:
        client = peers.authlib_client(
            emu.url,
            emu.oidc_token(),
            asynchronous=True,
            limits=httpx.Limits(max_connections=64),
            timeout=60,
        )
        url = emu.provider_url(SLACK)

        async def one() -> None:
            (await client.get(url)).raise_for_status()

        fails = await gather(n, one)
        await client.aclose()
        return {"calls": emu.token_calls(), "failures": fails}

    async def httpx_auth(emu: ConnectEmulator, n: int) -> Row:
        auth = peers.httpx_auth_client_credentials(emu.url, emu.oidc_token())
        async with httpx.AsyncClient(
            auth=auth, limits=httpx.Limits(max_connections=64), timeout=60
        ) as h:
            url = emu.provider_url(SLACK)

            async def one() -> None:
                (await h.get(url)).raise_for_status()

            fails = await gather(n, one)
        return {"calls": emu.token_calls(), "failures": fails}

    return {
        "connect_auth": ours,
        "vercel-connect": vercel,
        "authlib": authlib,
        "httpx-auth": httpx_auth,
    }


# -- case 4: 401 storm -----------------------------------------------------------------------


def storm(scale: float) -> dict[str, Any]:
    """32 concurrent requests refused (401) for the same token: refreshes made."""
    n = 32 if scale >= 0.05 else 8
    out: dict[str, Any] = {"concurrent": n}
    with peers.quiet():
        with ConnectEmulator() as emu:
            cc = ConnectClient(base_url=emu.url, vercel_token=emu.oidc_token())
            with httpx.Client(auth=HttpxConnectAuth(SLACK, subject=APP, client=cc)) as h:
                url = emu.provider_url(SLACK)
                h.get(url).raise_for_status()
                emu.revoke(cc.get_token(SLACK, subject=APP))
                emu.latency = 0.1
                fails = _threads(n, lambda: h.get(url).raise_for_status())
            cc.close()
            out["connect_auth"] = {"refreshes": emu.token_calls() - 1, "failures": fails}
        with ConnectEmulator() as emu:
            session = peers.google_session(emu.url, emu.oidc_token(), None, None)
            url = emu.provider_url(SLACK)
            session.get(url).raise_for_status()
            emu.revoke(session.credentials.token)
            emu.latency = 0.1
            fails = _threads(n, lambda: session.get(url).raise_for_status())
            out["google-auth"] = {"refreshes": emu.token_calls() - 1, "failures": fails}
            session.close()
        with ConnectEmulator() as emu, environment(emu), peers.vercel_connect_sync(emu.url) as vc:
            plain = httpx.Client()
            url = emu.provider_url(SLACK)
            emu.revoke(vc())

            def hand_set() -> None:
                plain.get(url, headers={"Authorization": f"Bearer {vc()}"}).raise_for_status()

            fails = _threads(n, hand_set)
            out["vercel-connect + header"] = {
                "refreshes": emu.token_calls() - 1,
                "failures": fails,
                "note": "no 401 handling",
            }
            plain.close()
    return out


# -- case 5: cache scaling ---------------------------------------------------------------------


def cache_scaling(scale: float) -> dict[str, Any]:
    """100 000 distinct keys through the 100-entry cache: flat cost, bounded memory."""
    total = max(1000, int(100_000 * scale))
    buckets = 10
    per = total // buckets
    expires = int((time.time() + 3600) * 1000)
    body = json.dumps(
        {
            "token": "t" * 40,
            "expiresAt": expires,
            "connector": {"id": "scl_x", "uid": SLACK, "type": "slack"},
        }
    ).encode()

    def connect_api(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body)

    client = ConnectClient(
        base_url="http://127.0.0.1:9",
        vercel_token="e30.e30.bench",  # shaped as a JWT ({} and {}); no Connect checks it
        transport=httpx.MockTransport(connect_api),
    )
    costs: list[float] = []
    memory: list[int] = []
    gc.collect()
    tracemalloc.start()
    baseline = tracemalloc.get_traced_memory()[0]
    for b in range(buckets):
        start = time.perf_counter()
        for i in range(b * per, (b + 1) * per):
            client.get_token(SLACK, subject=JwtBearerSubject(f"s{i}"))
        costs.append((time.perf_counter() - start) / per * 1e6)
        gc.collect()
        memory.append(tracemalloc.get_traced_memory()[0] - baseline)
    tracemalloc.stop()
    size = len(client._engine)
    hit = interleaved(
        {
            "hit": lambda: (
                client.get_token(SLACK, subject=JwtBearerSubject(f"s{total - 1}")) and None
            )
        },
        max(100, per),
        3,
    )["hit"]
    client.close()
    return {
        "keys": total,
        "cache_size": size,
        "us_per_op_by_tenth": costs,
        "memory_bytes_by_tenth": memory,
        "hit_us_on_full_cache": hit,
        "flat_ratio": max(costs) / min(costs),
        "memory_growth_after_first_tenth": memory[-1] / max(memory[0], 1),
    }
