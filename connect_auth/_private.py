"""Every read of another library's private attributes, in one place.

Each one is behind a function that says what it needs. When a release of that
library no longer has it, the function warns once (a ``RuntimeWarning`` naming
what is missing and what connect_auth does instead) and its caller fails closed:
a token is withheld rather than sent where it should not go, and nothing is
silently weakened without a word.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from typing import Any

__all__ = ["aiohttp_request_timer", "iterator_source", "wrap_network_backends"]

#: The private attributes read here, by what they are for (tests change them to
#: simulate a release without them).
AIOHTTP_TIMER = "_timer"
HTTPX_TRANSPORT = "_transport"
HTTPX_MOUNTS = "_mounts"
HTTPX_POOL = "_pool"
HTTPCORE_BACKEND = "_network_backend"
HTTPX_ITERATOR = "_stream"

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


def iterator_source(stream: Any) -> object | None:
    """What an httpx ``IteratorByteStream`` reads from (a file object, say), or None:
    a body whose source is unknown is not resent after a refusal."""
    return getattr(stream, HTTPX_ITERATOR, None)
