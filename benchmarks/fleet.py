"""A fleet on one machine: a real Redis server and worker processes.

``run_fleet`` starts worker processes (this module run as
``python -m benchmarks.fleet``), waits until each is ready, releases them at
once, and collects what each reports. The Redis tests and the fleet benchmark
both use it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from connect_auth.testing._redis_servers import RedisServer

ROOT = Path(__file__).resolve().parent.parent
CONNECTOR = "slack/acme-slack"
APP = {"type": "app"}


def fleet_env(
    base_url: str, oidc: str, redis_url: str | None, key: str, **extra: str
) -> dict[str, str]:
    """A worker's environment, as an app on Vercel would have it (no shared cache if
    ``redis_url`` is None)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONNECT_AUTH", "VERCEL"))}
    env.update(CONNECT_AUTH_BASE_URL=base_url, VERCEL_OIDC_TOKEN=oidc, **extra)
    if redis_url is not None:
        env.update(CONNECT_AUTH_REDIS_URL=redis_url, CONNECT_AUTH_CACHE_KEY=key)
    return env


def run_fleet(
    env: Mapping[str, str],
    processes: int,
    *args: str,
    before_go: Callable[[], None] = lambda: None,
) -> list[dict[str, Any]]:
    """Start the workers, run ``before_go`` once all are ready, release them together,
    and return each one's report."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "benchmarks.fleet", *args],
            env=dict(env),
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stderr is not None
            line = p.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"a worker did not start: {line!r} {p.stderr.read()}")
        before_go()
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        reports = []
        for p in procs:
            out, err = p.communicate(timeout=120)
            if p.returncode != 0:
                raise RuntimeError(f"a worker failed: {err}")
            reports.append(json.loads(out.strip().splitlines()[-1]))
        return reports
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


# -- the benchmark case ---------------------------------------------------------------------

KEY = "benchmark shared-cache key, 32+ bytes"


def fleet(scale: float) -> dict[str, Any]:
    """Connect calls for N processes x 8 threads cold, with and without the Redis cache;
    the cost of a shared-cache hit after a local miss; the local hit with and without."""
    import tempfile

    from connect_auth import ConnectClient
    from connect_auth.redis import RedisTokenCache
    from connect_auth.testing import ConnectEmulator

    from .measure import interleaved

    sizes = [1, 2, 4, 8] if scale >= 0.5 else [1, 2]
    threads = 8
    out: dict[str, Any] = {"threads": threads, "calls": {}}
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp)).start()
        try:
            with ConnectEmulator() as emu:
                emu.latency = 0.2  # the first fetch is in flight while the others ask
                for n in sizes:
                    row = {}
                    for label, url in (("without", None), ("with", server.url)):
                        server.flush()
                        before = emu.token_calls()
                        env = fleet_env(emu.url, emu.oidc_token(), url, KEY)
                        reports = run_fleet(env, n, "herd", str(threads))
                        failures = sum(len(r["errors"]) for r in reports)
                        row[label] = {"calls": emu.token_calls() - before, "failures": failures}
                    out["calls"][str(n)] = row
                emu.latency = 0.0
                out["us"] = _hit_costs(emu, server.url, scale, interleaved, ConnectClient,
                                       RedisTokenCache)  # fmt: skip
        finally:
            server.stop()
    return out


def _hit_costs(
    emu: Any, redis_url: str, scale: float, interleaved: Any, client_cls: Any, cache_cls: Any
) -> dict[str, float]:
    n = max(50, int(5000 * scale))
    repeats = 7 if scale >= 1 else 2
    oidc = emu.oidc_token()
    with (
        cache_cls(redis_url, encryption_key=KEY) as cache,
        client_cls(base_url=emu.url, vercel_token=oidc) as plain,
        client_cls(base_url=emu.url, vercel_token=oidc, shared_cache=cache) as shared,
        client_cls(base_url=emu.url, vercel_token=oidc, shared_cache=cache) as missing,
    ):
        for c in (plain, shared, missing):
            c.get_token(CONNECTOR, subject=APP)

        def local_miss_redis_hit() -> None:
            missing._engine.clear()  # this process's cache only: Redis keeps the token
            missing.get_token(CONNECTOR, subject=APP)

        return interleaved(  # type: ignore[no-any-return]
            {
                "local hit, no shared cache": lambda: plain.get_token(CONNECTOR, subject=APP),
                "local hit, with the Redis cache": lambda: shared.get_token(CONNECTOR, subject=APP),
                "local miss, Redis hit": local_miss_redis_hit,
            },
            n,
            repeats,
        )


def targets(result: dict[str, Any]) -> list[tuple[str, bool, str]]:
    """The shared cache's targets as (name, passed, evidence)."""
    calls = result["calls"]
    shared = {n: row["with"]["calls"] for n, row in calls.items()}
    failures = sum(row[k]["failures"] for row in calls.values() for k in row)
    us = result["us"]
    ratio = us["local hit, with the Redis cache"] / us["local hit, no shared cache"]
    return [
        (
            f"shared cache: N processes x {result['threads']} threads cold = 1 Connect call",
            all(c == 1 for c in shared.values()) and failures == 0,
            ", ".join(f"{n} proc: {c}" for n, c in shared.items()) + f"; {failures} failures",
        ),
        (
            "shared cache: local cache-hit cost unchanged (<= 1.05x)",
            ratio <= 1.05,
            f"{us['local hit, with the Redis cache']:.2f} us vs "
            f"{us['local hit, no shared cache']:.2f} us = {ratio:.3f}x",
        ),
    ]


def markdown(result: dict[str, Any]) -> list[str]:
    """The shared cache's section of the report."""
    lines = [
        "",
        f"## A fleet: N processes x {result['threads']} threads, cold, at once "
        "(Connect latency 200 ms)",
        "",
        "| processes | Connect calls without a shared cache | with the Redis cache |",
        "|---|---|---|",
    ]
    for n, row in result["calls"].items():
        lines.append(f"| {n} | {row['without']['calls']} | {row['with']['calls']} |")
    lines += ["", "| get_token path | µs/call |", "|---|---|"]
    lines += [f"| {name} | {value:.1f} |" for name, value in result["us"].items()]
    return lines


def _worker(mode: str, threads: int, url: str | None) -> None:
    """One process: "ready", wait for "go", run ``threads`` callers at once, report.

    ``herd``: each thread calls ``get_token``. ``refused``: the token is read into
    memory first; after "go" each thread sends a request to ``url`` through the
    httpx adapter (the test revokes the token in between).
    """
    import httpx

    import connect_auth
    from connect_auth.httpx import ConnectAuth

    call: Callable[[], object]
    if mode == "refused":
        connect_auth.get_token(CONNECTOR, subject=APP)
        client = httpx.Client(auth=ConnectAuth(CONNECTOR, subject=APP))
        call = lambda: client.get(url or "").status_code  # noqa: E731
    else:
        call = lambda: connect_auth.get_token(CONNECTOR, subject=APP)  # noqa: E731
    print("ready", flush=True)
    sys.stdin.readline()
    barrier = threading.Barrier(threads)
    results: list[object] = []
    errors: list[str] = []

    def run() -> None:
        barrier.wait()
        try:
            results.append(call())
        except Exception as exc:
            errors.append(type(exc).__name__)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    print(json.dumps({"results": results, "errors": errors}), flush=True)


if __name__ == "__main__":
    _worker(sys.argv[1], int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None)
