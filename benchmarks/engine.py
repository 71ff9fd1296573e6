"""The fetch engine against ``vercel-connect``: async fan-out, head-of-line, rollover.

Everything talks to the Connect emulator, run in a process of its own
(`benchmarks.emulator`): its latency holds answers in the server rather than in
its workers, so any number of fetches wait on Connect at once, as with the real
service.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import statistics
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from connect_auth import ConnectClient
from connect_auth.httpx import ConnectAuth

from . import peers
from .emulator import ROLL, ROLL_VERCEL, SLACK, SLOW, EmulatorProcess

T = TypeVar("T")
TOKEN_PATH = "/v1/connect/token/"


class LoopThread:
    """An asyncio loop on a daemon thread of its own, for the servers a case runs
    beside the clients it measures."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def close(self) -> None:
        """Stop the loop, wait for its thread, and close it."""
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


@contextlib.contextmanager
def _oidc_env(url: str, token: str) -> Iterator[str]:
    """VERCEL_OIDC_TOKEN and the base URL set as on Vercel (vercel-connect reads the env)."""
    patched = {"CONNECT_AUTH_BASE_URL": url, "VERCEL_OIDC_TOKEN": token}
    saved = {k: os.environ.get(k) for k in patched}
    os.environ.update(patched)
    try:
        yield token
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# -- vercel-connect, driven the documented way ------------------------------------------------


@contextlib.asynccontextmanager
async def _vercel_async(url: str) -> Any:
    """Yields ``get(connector, user_id) -> token`` on vercel-connect's async surface."""
    with peers.quiet():
        import vercel.api
        import vercel.connect as vc
        from vercel.connect import ConnectServiceOptions, ConnectUserTokenSubject

        async def get(connector: str, user: str) -> str:
            subject = ConnectUserTokenSubject(id=user)
            return await vc.get_token(connector, subject=subject)  # type: ignore[no-any-return]

        async with vercel.api.session(service_options=[ConnectServiceOptions(base_url=url)]):
            yield get


def _ours_async(url: str, oidc: str) -> tuple[ConnectClient, Callable[[str, str], Awaitable[str]]]:
    client = ConnectClient(base_url=url, vercel_token=oidc)

    def get(connector: str, user: str) -> Awaitable[str]:
        return client.aget_token(connector, subject={"type": "user", "id": user})

    return client, get


# -- the case -----------------------------------------------------------------------------


def engine(scale: float) -> dict[str, Any]:
    """Async fan-out, head-of-line blocking and rollover, against vercel-connect."""
    n_keys = max(20, int(200 * min(1.0, scale * 8)))
    rounds = 3 if scale >= 0.5 else 1
    with (
        peers.quiet(),
        EmulatorProcess(latency=0.1) as emu,
        _oidc_env(emu.url, emu.oidc_token()) as oidc,
    ):
        fan_out = asyncio.run(_fan_out(emu, oidc, n_keys, rounds))
        head = asyncio.run(_head_of_line(emu, oidc))
    seconds = 9.0 if scale >= 0.5 else 3.0
    with (
        peers.quiet(),
        EmulatorProcess(latency=1.0, ttl=4.0) as emu,
        _oidc_env(emu.url, emu.oidc_token()) as oidc,
    ):
        rollover = _rollover(emu, oidc, seconds)
    return {"cold_keys": n_keys, "fan_out_s": fan_out, "head_of_line": head, "rollover": rollover}


async def _fan_out(emu: EmulatorProcess, oidc: str, n: int, rounds: int) -> dict[str, float]:
    """Seconds for ``n`` distinct cold keys from one event loop (median of ``rounds``)."""
    times: dict[str, list[float]] = {"connect_auth": [], "vercel-connect": [], "raw httpx": []}

    async def timed(name: str, fetch: Callable[[str, str], Awaitable[Any]], tag: str) -> None:
        started = time.perf_counter()
        await asyncio.gather(*[fetch(SLACK, f"{tag}-{i}") for i in range(n)])
        times[name].append(time.perf_counter() - started)

    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    for r in range(rounds):
        client, ours = _ours_async(emu.url, oidc)
        await timed("connect_auth", ours, f"ours{r}")
        client.close()
        async with _vercel_async(emu.url) as theirs:
            await timed("vercel-connect", theirs, f"vc{r}")
        async with httpx.AsyncClient(limits=limits) as raw:

            async def post(connector: str, user: str, raw: httpx.AsyncClient = raw) -> Any:
                body = {"subject": {"type": "user", "id": user}}
                url = f"{emu.url}{TOKEN_PATH}{quote(connector, safe='')}"
                headers = {"Authorization": f"Bearer {oidc}"}
                return (await raw.post(url, json=body, headers=headers)).json()

            await timed("raw httpx", post, f"raw{r}")
    return {name: statistics.median(values) for name, values in times.items()}


async def _head_of_line(emu: EmulatorProcess, oidc: str) -> dict[str, dict[str, float]]:
    """One healthy fetch alone, then while 8 fetches to a slow connector are in flight."""
    out: dict[str, dict[str, float]] = {}

    async def measure(get: Callable[[str, str], Awaitable[Any]], tag: str) -> dict[str, float]:
        started = time.perf_counter()
        await get(SLACK, f"{tag}-alone")
        alone = time.perf_counter() - started
        slow = [asyncio.ensure_future(get(SLOW, f"{tag}-slow-{i}")) for i in range(8)]
        await asyncio.sleep(0.2)  # the slow fetches are now waiting on Connect
        started = time.perf_counter()
        await get(SLACK, f"{tag}-busy")
        busy = time.perf_counter() - started
        await asyncio.gather(*slow)
        return {"alone_s": alone, "with_8_slow_s": busy, "ratio": busy / alone}

    client, ours = _ours_async(emu.url, oidc)
    out["connect_auth"] = await measure(ours, "ours")
    client.close()
    async with _vercel_async(emu.url) as theirs:
        out["vercel-connect"] = await measure(theirs, "vc")
    return out


def _rollover(emu: EmulatorProcess, oidc: str, seconds: float) -> dict[str, Any]:
    """Steady load across token rollovers (4 s tokens, 1 s buffer, 1 s Connect latency):
    the slowest call, and how many waited on Connect (took over half its latency)."""
    options: dict[str, Any] = {"subject": {"type": "app"}, "validity_buffer_ms": 1000}
    provider = emu.provider_url(ROLL)
    out: dict[str, Any] = {"seconds": seconds}
    with ConnectClient(base_url=emu.url, vercel_token=oidc) as client:
        auth = ConnectAuth(ROLL, client=client, **options)
        with httpx.Client(auth=auth) as http:
            out["sync get_token"] = _load_threads(
                lambda: client.get_token(ROLL, **options), seconds
            )
            out["sync adapted request"] = _load_threads(lambda: http.get(provider), seconds)
        out["asyncio"] = asyncio.run(_load_tasks(client, auth, provider, options, seconds))
    out["connect_calls"] = emu.token_calls(ROLL)
    with peers.quiet():
        import vercel.api
        import vercel.connect.sync as vcs
        from vercel.connect import ConnectAppTokenSubject, ConnectOptions, ConnectServiceOptions

        subject, vc_options = ConnectAppTokenSubject(), ConnectOptions(validity_buffer=1.0)
        with vercel.api.session(service_options=[ConnectServiceOptions(base_url=emu.url)]):
            out["vercel-connect sync get_token"] = _load_threads(
                lambda: vcs.get_token(ROLL_VERCEL, subject=subject, options=vc_options), seconds
            )
    return out


def _summary(durations: list[float]) -> dict[str, float]:
    return {
        "calls": len(durations),
        "median_ms": statistics.median(durations) * 1000,
        "slowest_ms": max(durations) * 1000,
        "waited_on_connect": sum(d > 0.5 for d in durations),
    }


def _load_threads(call: Callable[[], Any], seconds: float, threads: int = 8) -> dict[str, float]:
    durations: list[float] = []
    call()  # warm: the first fetch is a cold miss, not a rollover
    end = time.monotonic() + seconds

    def worker() -> None:
        mine = []
        while time.monotonic() < end:
            started = time.perf_counter()
            call()
            mine.append(time.perf_counter() - started)
            time.sleep(0.005)
        durations.extend(mine)

    ctx = contextvars.copy_context()  # vercel-connect's session lives in a ContextVar
    pool = [threading.Thread(target=ctx.copy().run, args=(worker,)) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return _summary(durations)


async def _load_tasks(
    client: ConnectClient, auth: ConnectAuth, url: str, options: dict[str, Any], seconds: float
) -> dict[str, dict[str, float]]:
    tokens: list[float] = []
    requests: list[float] = []
    async with httpx.AsyncClient(auth=auth) as http:
        await client.aget_token(ROLL, **options)
        end = time.monotonic() + seconds

        async def worker(kind: str) -> None:
            while time.monotonic() < end:
                started = time.perf_counter()
                if kind == "token":
                    await client.aget_token(ROLL, **options)
                    tokens.append(time.perf_counter() - started)
                else:
                    await http.get(url)
                    requests.append(time.perf_counter() - started)
                await asyncio.sleep(0.005)

        await asyncio.gather(*[worker("token" if i % 2 else "request") for i in range(32)])
    return {"aget_token": _summary(tokens), "adapted request": _summary(requests)}


# -- report -----------------------------------------------------------------------------------


def targets(result: dict[str, Any]) -> list[tuple[str, bool, str]]:
    """The fetch engine's targets as (name, passed, evidence)."""
    fan = result["fan_out_s"]
    head = result["head_of_line"]["connect_auth"]
    checks = [
        (
            f"{result['cold_keys']} cold keys from asyncio no slower than vercel-connect",
            fan["connect_auth"] <= fan["vercel-connect"],
            f"{fan['connect_auth']:.3f} s vs {fan['vercel-connect']:.3f} s "
            f"(raw httpx {fan['raw httpx']:.3f} s)",
        ),
        (
            "healthy fetch with 8 slow in flight within 1.5x a lone fetch",
            head["ratio"] <= 1.5,
            f"{head['with_8_slow_s'] * 1000:.0f} ms vs {head['alone_s'] * 1000:.0f} ms "
            f"= {head['ratio']:.2f}x",
        ),
    ]
    roll = result["rollover"]
    rows = {
        "sync get_token": roll["sync get_token"],
        "sync adapted request": roll["sync adapted request"],
        "asyncio aget_token": roll["asyncio"]["aget_token"],
        "asyncio adapted request": roll["asyncio"]["adapted request"],
    }
    for name, row in rows.items():
        checks.append(
            (
                f"rollover ({name}): no caller waited on Connect",
                row["waited_on_connect"] == 0,
                f"slowest {row['slowest_ms']:.1f} ms of {row['calls']} calls "
                "(Connect answers in 1000 ms)",
            )
        )
    return checks


def markdown(result: dict[str, Any]) -> list[str]:
    """The fetch engine's section of the report."""
    fan, head, roll = result["fan_out_s"], result["head_of_line"], result["rollover"]
    lines = [
        "",
        f"## Fetch engine: {result['cold_keys']} cold keys from asyncio, Connect latency 100 ms",
        "",
        "| client | seconds |",
        "|---|---|",
        *[f"| {name} | {seconds:.3f} |" for name, seconds in fan.items()],
        "",
        "### One healthy fetch while 8 fetches to a connector that stalls 3 s are in flight",
        "",
        "| library | alone (ms) | with 8 slow in flight (ms) | ratio |",
        "|---|---|---|---|",
        *[
            f"| {name} | {r['alone_s'] * 1000:.0f} | {r['with_8_slow_s'] * 1000:.0f} "
            f"| {r['ratio']:.2f}x |"
            for name, r in head.items()
        ],
        "",
        f"### Token rollover under steady load ({roll['seconds']:.0f} s, 4 s tokens, "
        f"1 s buffer, Connect latency 1 s; {roll['connect_calls']} Connect calls)",
        "",
        "| caller | calls | median (ms) | slowest (ms) | calls that waited on Connect |",
        "|---|---|---|---|---|",
    ]
    rows = {
        "connect_auth sync get_token (8 threads)": roll["sync get_token"],
        "connect_auth sync adapted request (8 threads)": roll["sync adapted request"],
        "connect_auth asyncio aget_token (16 tasks)": roll["asyncio"]["aget_token"],
        "connect_auth asyncio adapted request (16 tasks)": roll["asyncio"]["adapted request"],
        "vercel-connect sync get_token (8 threads)": roll["vercel-connect sync get_token"],
    }
    lines += [
        f"| {name} | {r['calls']} | {r['median_ms']:.3f} | {r['slowest_ms']:.1f} "
        f"| {r['waited_on_connect']} |"
        for name, r in rows.items()
    ]
    return lines
