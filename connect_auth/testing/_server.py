"""The emulator's HTTP server: keep-alive connections, a selector and a bounded
pool of worker threads."""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math
import selectors
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import HTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._emulator import ConnectEmulator
    from ._routes import Handler


class Server(HTTPServer):
    """Keep-alive connections served by a bounded pool of worker threads.

    A selector watches every idle connection; a connection with a request
    waiting goes to a worker, which answers that one request and hands the
    connection back. So 500 open connections cost 500 sockets, not 500 threads:
    on a small machine the tail latency stays that of the work, not of the
    thread scheduler.
    """

    request_queue_size = 1024
    workers = 32
    emulator: ConnectEmulator

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._open: dict[socket.socket, Handler] = {}
        self._open_lock = threading.Lock()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._returned: list[socket.socket] = []
        # Answers held back for latency, by when they are due: no worker waits for them.
        self._later: list[tuple[float, int, socket.socket, Handler]] = []
        self._later_order = itertools.count()
        self._stop = threading.Event()
        self.accepted = 0  # connections, for `ConnectEmulator.connections_accepted`
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="connect-emulator")
        super().__init__(*args, **kwargs)

    def serve(self) -> None:
        """Accept connections and dispatch ready requests until `stop_serving`."""
        self.socket.setblocking(False)
        self._selector.register(self.socket, selectors.EVENT_READ, "accept")
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        while not self._stop.is_set():
            for key, _ in self._selector.select(timeout=self._until_due()):
                if key.data == "accept":
                    self._accept()
                elif key.data == "wake":
                    self._take_back()
                else:
                    conn = key.fileobj
                    assert isinstance(conn, socket.socket)
                    self._selector.unregister(conn)
                    self._pool.submit(self._answer, conn, key.data)
            for conn, handler in self._due():
                self._pool.submit(self._resume, conn, handler)

    def _until_due(self) -> float:
        with self._open_lock:
            soonest = self._later[0][0] if self._later else math.inf
        return max(0.0, min(0.05, soonest - time.monotonic()))

    def _due(self) -> list[tuple[socket.socket, Handler]]:
        now, due = time.monotonic(), []
        with self._open_lock:
            while self._later and self._later[0][0] <= now:
                _, _, conn, handler = heapq.heappop(self._later)
                due.append((conn, handler))
        return due

    def _accept(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            conn, address = self.socket.accept()
            self.accepted += 1
            conn.setblocking(True)
            handler = self.RequestHandlerClass.for_connection(conn, address, self)  # type: ignore[attr-defined]
            with self._open_lock:
                self._open[conn] = handler
            self._selector.register(conn, selectors.EVENT_READ, handler)

    def _answer(self, conn: socket.socket, handler: Handler) -> None:
        """A worker: answer the waiting request, then hand the connection back; an
        answer the handler deferred (latency) is finished by `_resume` when due."""
        handler.handle_one_request()
        if handler.deferred is not None:
            with self._open_lock:
                heapq.heappush(
                    self._later, (handler.deferred[0], next(self._later_order), conn, handler)
                )
            with contextlib.suppress(OSError):
                self._wake_w.send(b"\0")  # the loop's wait may end sooner now
            return
        self._hand_back(conn, handler)

    def _resume(self, conn: socket.socket, handler: Handler) -> None:
        """A worker: finish a deferred answer, then hand the connection back."""
        assert handler.deferred is not None
        finish, handler.deferred = handler.deferred[1], None
        try:
            finish()
            handler.wfile.flush()
        except OSError:
            handler.close_connection = True
        self._hand_back(conn, handler)

    def _hand_back(self, conn: socket.socket, handler: Handler) -> None:
        if handler.close_connection or self._stop.is_set():
            self._forget(conn, handler)
            return
        with self._open_lock:
            self._returned.append(conn)
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def _take_back(self) -> None:
        with contextlib.suppress(OSError):
            while self._wake_r.recv(4096):
                pass
        with self._open_lock:
            returned, self._returned = self._returned, []
            for conn in returned:
                handler = self._open.get(conn)
                if handler is not None:
                    self._selector.register(conn, selectors.EVENT_READ, handler)

    def _forget(self, conn: socket.socket, handler: Handler) -> None:
        with self._open_lock:
            self._open.pop(conn, None)
        with contextlib.suppress(OSError):
            handler.finish()
        self.shutdown_request(conn)

    def stop_serving(self) -> None:
        """Stop the loop, drop every connection, and wait for the workers."""
        self._stop.set()
        with self._open_lock:
            handlers, self._open = dict(self._open), {}
            self._later.clear()  # deferred answers die with their connections
        for sock in handlers:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._pool.shutdown(wait=True, cancel_futures=True)
        for sock, handler in handlers.items():
            with contextlib.suppress(OSError):
                handler.finish()  # its buffered files, or they outlive the socket
            with contextlib.suppress(OSError):
                sock.close()
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up mid-request are part of the tests; stay quiet.
        pass
