"""A hard deadline for sync attempts.

httpx's timeouts bound each socket operation, so a server that drips its answer
a byte at a time could hold a sync attempt for ever. Every socket operation of
our sync pools is cut to what the attempt's deadline leaves (async attempts use
a cancel scope instead). Imported when the first sync client is made: httpcore
is not needed before.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from ._private import wrap_network_backends
from ._wire import attempt_deadline

__all__ = ["bound_by_deadline"]


def bound_by_deadline(client: httpx.Client) -> None:
    """Cut every socket operation of ``client``'s pools to the attempt's deadline (when
    httpx no longer lets us, `wrap_network_backends` says so once)."""
    wrap_network_backends(client, _DeadlineBackend, httpcore.NetworkBackend)


def _time_left(timeout: float | None, timed_out: type[Exception]) -> float | None:
    remaining = attempt_deadline.get() - time.monotonic()
    if remaining <= 0:
        raise timed_out("the attempt's deadline passed")
    return remaining if timeout is None else min(timeout, remaining)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _time_left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _time_left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(
            ssl_context, server_hostname, _time_left(timeout, httpcore.ConnectTimeout)
        )
        return _DeadlineStream(inner)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        limit = _time_left(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(
            self._inner.connect_tcp(host, port, limit, local_address, socket_options)
        )

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        limit = _time_left(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.connect_unix_socket(path, limit, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)
