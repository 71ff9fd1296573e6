"""Cold fetches over TLS with network delay: time per fetch and connections opened.

Everything stays on loopback: a certificate made at run time, a TLS terminator in
front of the Connect emulator, and before it a proxy that holds every chunk for half
the round trip in each direction, so a TCP and TLS handshake costs what it would on
a modest real network. connect_auth and vercel-connect trust the certificate
through ``SSL_CERT_FILE`` and fetch the same cold tokens, one after another (sync
and async) and all at once from one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import os
import ssl
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from connect_auth import ConnectClient

from . import peers
from .emulator import SLACK, EmulatorProcess
from .engine import LoopThread, _oidc_env, _vercel_async

ROUND_TRIP = 0.020  # seconds


def _certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1, and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    # Its own issuer, so it is marked a CA that signs certificates (Python 3.13 checks).
    ca_usage = x509.KeyUsage(
        digital_signature=True,
        key_cert_sign=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(ca_usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Copy ``reader`` to ``writer``, each chunk ``delay`` seconds after it arrived."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()

    async def deliver() -> None:
        while (item := await queue.get()) is not None:
            due, data = item
            await asyncio.sleep(max(0.0, due - loop.time()))
            writer.write(data)
            await writer.drain()

    delivering = asyncio.create_task(deliver())
    try:
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            while data := await reader.read(65536):
                queue.put_nowait((loop.time() + delay, data))
        queue.put_nowait(None)
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await delivering
    finally:
        writer.close()


class DelayedTls:
    """``https://127.0.0.1:<port>``: a delaying proxy, then TLS, then ``upstream``.

    ``connections`` counts the TCP connections clients opened.
    """

    def __init__(self, upstream: str, cert: Path, key: Path, round_trip: float) -> None:
        host, _, port = upstream.removeprefix("http://").partition(":")
        self._upstream = (host, int(port))
        self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._tls.load_cert_chain(cert, key)
        self._delay = round_trip / 2
        self.connections = 0
        self.url = ""
        self._writers: set[asyncio.StreamWriter] = set()

    def __enter__(self) -> DelayedTls:
        self._loop = LoopThread()

        async def start() -> tuple[asyncio.Server, asyncio.Server]:
            tls = await asyncio.start_server(self._terminate, "127.0.0.1", 0, ssl=self._tls)
            tls_port = tls.sockets[0].getsockname()[1]

            async def delayed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                self.connections += 1
                await self._hit_or_flight(reader, writer, ("127.0.0.1", tls_port), self._delay)

            return tls, await asyncio.start_server(delayed, "127.0.0.1", 0)

        self._servers = self._loop.run(start())
        self.url = f"https://127.0.0.1:{self._servers[1].sockets[0].getsockname()[1]}"
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            for server in self._servers:
                server.close()
            for writer in self._writers:  # connections clients left open: end them
                writer.close()
            pipes = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            if pipes:  # asyncio.wait refuses an empty set
                await asyncio.wait(pipes, timeout=5)

        self._loop.run(stop())
        self._loop.close()

    async def _terminate(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._hit_or_flight(reader, writer, self._upstream, 0.0)

    async def _hit_or_flight(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        to: tuple[str, int],
        delay: float,
    ) -> None:
        writers = self._writers
        up_reader, up_writer = await asyncio.open_connection(*to)
        writers.update((writer, up_writer))
        await asyncio.gather(_pipe(reader, up_writer, delay), _pipe(up_reader, writer, delay))
        writers.difference_update((writer, up_writer))


@contextlib.contextmanager
def _trusting(cert: Path) -> Iterator[None]:
    """Both libraries build their TLS settings from ``SSL_CERT_FILE`` (httpx's rule)."""
    saved = os.environ.get("SSL_CERT_FILE")
    os.environ["SSL_CERT_FILE"] = str(cert)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("SSL_CERT_FILE", None)
        else:
            os.environ["SSL_CERT_FILE"] = saved


@contextlib.contextmanager
def _vercel_sync(url: str) -> Iterator[Callable[[str], str]]:
    """``get(user_id) -> token`` on vercel-connect's sync surface."""
    with peers.quiet():
        import vercel.api
        import vercel.connect.sync as vc
        from vercel.connect import ConnectServiceOptions, ConnectUserTokenSubject

        def get(user: str) -> str:
            return vc.get_token(SLACK, subject=ConnectUserTokenSubject(id=user))  # type: ignore[no-any-return]

        with vercel.api.session(service_options=[ConnectServiceOptions(base_url=url)]):
            yield get


def tls(scale: float) -> dict[str, Any]:
    """Sequential cold fetches (sync and async) and an async fan-out over TLS."""
    n = 20 if scale >= 0.5 else 4
    fan = 50 if scale >= 0.5 else 8
    with (
        tempfile.TemporaryDirectory() as tmp,
        peers.quiet(),
        EmulatorProcess(latency=0.0) as emu,
    ):
        cert, key = _certificate(Path(tmp))
        with (
            DelayedTls(emu.url, cert, key, ROUND_TRIP) as net,
            _trusting(cert),
            _oidc_env(net.url, emu.oidc_token()) as oidc,
        ):
            sequential = _sequential(net, oidc, n)
            fan_out = asyncio.run(_fan_out(net, oidc, fan))
    return {
        "round_trip_ms": ROUND_TRIP * 1000,
        "fetches": n,
        "sequential": sequential,
        "fan_out_keys": fan,
        "fan_out": fan_out,
    }


def _sequential(net: DelayedTls, oidc: str, n: int) -> dict[str, dict[str, float]]:
    """ms per cold fetch and connections opened, ``n`` fetches one after another."""
    out: dict[str, dict[str, float]] = {}

    def measure(name: str, run: Callable[[], Any]) -> None:
        before = net.connections
        started = time.perf_counter()
        run()
        out[name] = {
            "ms_per_fetch": (time.perf_counter() - started) * 1000 / n,
            "connections": net.connections - before,
        }

    with ConnectClient(base_url=net.url, vercel_token=oidc) as client:
        measure(
            "connect_auth sync get_token",
            lambda: [
                client.get_token(SLACK, subject={"type": "user", "id": f"sync-{i}"})
                for i in range(n)
            ],
        )

    async def ours_async() -> None:
        async with ConnectClient(base_url=net.url, vercel_token=oidc) as client:
            for i in range(n):
                await client.aget_token(SLACK, subject={"type": "user", "id": f"async-{i}"})

    measure("connect_auth async aget_token", lambda: asyncio.run(ours_async()))
    with _vercel_sync(net.url) as get:
        measure("vercel-connect sync get_token", lambda: [get(f"vc-sync-{i}") for i in range(n)])

    async def theirs_async() -> None:
        async with _vercel_async(net.url) as aget:
            for i in range(n):
                await aget(SLACK, f"vc-async-{i}")

    measure("vercel-connect async get_token", lambda: asyncio.run(theirs_async()))
    return out


async def _fan_out(net: DelayedTls, oidc: str, n: int) -> dict[str, dict[str, float]]:
    """Seconds and connections for ``n`` distinct cold keys at once from one loop."""
    out: dict[str, dict[str, float]] = {}

    async def timed(name: str, get: Callable[[str, str], Awaitable[Any]], tag: str) -> None:
        before = net.connections
        started = time.perf_counter()
        await asyncio.gather(*[get(SLACK, f"{tag}-{i}") for i in range(n)])
        out[name] = {"s": time.perf_counter() - started, "connections": net.connections - before}

    async with ConnectClient(base_url=net.url, vercel_token=oidc) as client:

        def ours(connector: str, user: str) -> Awaitable[str]:
            return client.aget_token(connector, subject={"type": "user", "id": user})

        await timed("connect_auth", ours, "fan")
    async with _vercel_async(net.url) as theirs:
        await timed("vercel-connect", theirs, "vc-fan")
    return out


def targets(result: dict[str, Any]) -> list[tuple[str, bool, str]]:
    """The async-reuse targets as (name, passed, evidence)."""
    seq = result["sequential"]
    ours = seq["connect_auth async aget_token"]
    theirs = seq["vercel-connect async get_token"]
    ratio = ours["ms_per_fetch"] / theirs["ms_per_fetch"]
    n, rtt = result["fetches"], result["round_trip_ms"]
    return [
        (
            f"{n} sequential async cold fetches over TLS ({rtt:.0f} ms round trip) "
            "open <= 2 connections",
            ours["connections"] <= 2,
            f"{ours['connections']:.0f} connection(s)",
        ),
        (
            "async cold fetch over TLS within 1.1x vercel-connect's",
            ratio <= 1.1,
            f"{ours['ms_per_fetch']:.1f} ms vs {theirs['ms_per_fetch']:.1f} ms = {ratio:.2f}x",
        ),
    ]


def markdown(result: dict[str, Any]) -> list[str]:
    """The TLS section of the report."""
    rtt = result["round_trip_ms"]
    lines = [
        "",
        f"## Cold fetches over TLS, {rtt:.0f} ms round trip",
        "",
        f"{result['fetches']} cold fetches one after another:",
        "",
        "| library | ms per fetch | TCP connections opened |",
        "|---|---|---|",
    ]
    for name, row in result["sequential"].items():
        lines.append(f"| {name} | {row['ms_per_fetch']:.1f} | {row['connections']:.0f} |")
    lines += [
        "",
        f"{result['fan_out_keys']} cold keys at once from one asyncio loop:",
        "",
        "| library | seconds | TCP connections opened |",
        "|---|---|---|",
    ]
    for name, row in result["fan_out"].items():
        lines.append(f"| {name} | {row['s']:.3f} | {row['connections']:.0f} |")
    return lines
