"""Every read of another library's private attributes, in one place.

Each one is behind a function that says what it needs. When a release of that
library no longer has it, the function warns once (a ``RuntimeWarning`` naming
what is missing and what connect_auth does instead) and its caller fails closed:
a token is withheld rather than sent where it should not go, and nothing is
silently weakened without a word.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["aiohttp_request_timer", "environ_raw", "iterator_source", "wrap_network_backends"]

#: The private attributes read here, by what they are for (tests change them to
#: simulate a release without them).
AIOHTTP_TIMER = "_timer"
HTTPX_TRANSPORT = "_transport"
HTTPX_MOUNTS = "_mounts"
HTTPX_POOL = "_pool"
HTTPCORE_BACKEND = "_network_backend"
HTTPX_ITERATOR = "_stream"
ENVIRON_DATA = "_data"
ENVIRON_ENCODEKEY = "encodekey"

_warned: set[str] = set()
_warned_lock = threading.Lock()


def _missing(what: str, instead: str) -> None:
    """Say once per process that ``what`` is gone, and what happens ``instead``."""
    with _warned_lock:
        if what in _warned:
            return
        _warned.add(what)
    warnings.warn(
        f"connect_auth: {what} is missing in the installed version; {instead}. "
        "Please report this with the library's version.",
        RuntimeWarning,
        stacklevel=3,
    )


def aiohttp_request_timer(request: Any) -> object | None:
    """The object every hop of one aiohttp ``session.request`` call shares (its timer),
    to tell a redirect hop from a new request; None when aiohttp has no such
    attribute, and then a hop cannot be told from a first request."""
    timer = getattr(request, AIOHTTP_TIMER, None)
    if timer is None:
        _missing(
            f"aiohttp's ClientRequest.{AIOHTTP_TIMER}",
            "redirect hops cannot be told apart, so tokens go only to the hosts= you "
            "list (none without hosts=)",
        )
    return timer


def wrap_network_backends(client: Any, wrap: Callable[[Any], Any], base: type) -> bool:
    """Replace the network backend of each connection pool of the httpx ``client`` by
    ``wrap(backend)`` (backends that are instances of ``base``). Transports without a
    pool (a ``MockTransport``, your own) are left alone. Returns False, after the
    warning, when httpx or httpcore no longer has the attributes."""
    transports = getattr(client, HTTPX_TRANSPORT, None)
    mounts = getattr(client, HTTPX_MOUNTS, None)
    if transports is None or not isinstance(mounts, dict):
        _missing(
            f"httpx.Client.{HTTPX_TRANSPORT}/{HTTPX_MOUNTS}",
            "sync attempts are bounded by socket timeouts only, not by the retry deadline",
        )
        return False
    import httpx

    for transport in (transports, *mounts.values()):
        if not isinstance(transport, httpx.HTTPTransport):
            continue  # not httpx's own: nothing of ours to reach into
        pool = getattr(transport, HTTPX_POOL, None)
        backend = getattr(pool, HTTPCORE_BACKEND, None)
        if not isinstance(backend, base):
            _missing(
                f"httpx.HTTPTransport.{HTTPX_POOL}.{HTTPCORE_BACKEND}",
                "sync attempts are bounded by socket timeouts only, not by the retry deadline",
            )
            return False
        setattr(pool, HTTPCORE_BACKEND, wrap(backend))
    return True


def environ_raw(*names: str) -> tuple[Mapping[Any, Any] | None, *tuple[Any, ...]]:
    """CPython's raw environment mapping and the raw keys of ``names``; (None, ...)
    where ``os.environ`` has no such internals (then read it with ``os.environ.get``).

    Why not the public API: the cache-hit path reads the Vercel credential's
    variables on every call, and ``os.environ.get`` decodes a ~1 kB value each time
    (about 0.4 µs, 0.7 µs for an unset variable, which raises ``KeyError`` inside;
    ``os.environb`` costs 0.2 and 0.6 µs), where a raw lookup costs 0.05 µs, on a
    path that takes about 1 µs in all. Nothing is weakened without it: the answer is
    the same, only slower, so no warning is given.
    """
    data = getattr(os.environ, ENVIRON_DATA, None)
    encodekey = getattr(os.environ, ENVIRON_ENCODEKEY, None)
    if not isinstance(data, dict) or not callable(encodekey):
        return (None, *names)
    return (data, *(encodekey(name) for name in names))


def iterator_source(stream: Any) -> object | None:
    """What an httpx ``IteratorByteStream`` reads from (a file object, say), or None:
    a body whose source is unknown is not resent after a refusal."""
    return getattr(stream, HTTPX_ITERATOR, None)
