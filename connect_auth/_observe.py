"""What connect_auth tells about its work: a `Report` for each Connect call, the log
line each one ends with, and the hooks `connect_auth.otel` fills in.

Until ``instrument()`` there is no `observer`, and the only cost is a `Report` per
Connect call (the network costs a thousand times more). Cache hits are never
touched here: `TokenCache.counts` reads them off the cache's recency stamps when
a metric reader asks.
"""

from __future__ import annotations

import contextlib
import logging
import time
import weakref
from collections.abc import Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol

from ._models import TokenRequest, subject_type

if TYPE_CHECKING:
    from ._cache import TokenCache

__all__ = [
    "Observer",
    "Report",
    "cache_counts",
    "current_report",
    "refused",
    "reporting",
    "shared_cache_failed",
    "track_cache",
]

log = logging.getLogger("connect_auth.tokens")


class Report:
    """One Connect call as it runs, in names and counts only (never a token, a
    credential or a subject id): what its span, its metrics and its log line say.

    ``operation`` is ``fetch_token``, ``revoke_token``, ``start_authorization``,
    ``start_installation``, ``get_connector_metadata`` or ``fetch_jwks``. A token
    fetch has a ``reason`` (``miss``, ``refresh_ahead``, ``refused``, ``forced``) and
    a ``source``: ``connect``, or ``shared_cache`` when another process's token
    served it. ``attempts`` counts the HTTP attempts (0 when nothing was sent).
    """

    __slots__ = (
        "attempts",
        "connector",
        "error_code",
        "error_type",
        "operation",
        "reason",
        "seconds",
        "source",
        "subject_type",
    )

    def __init__(
        self,
        operation: str,
        connector: str | None = None,
        *,
        subject_type: str | None = None,
        reason: str | None = None,
        source: str = "connect",
    ) -> None:
        self.operation = operation
        self.connector = connector
        self.subject_type = subject_type
        self.reason = reason
        self.source = source
        self.attempts = 0
        self.seconds = 0.0
        self.error_code: str | None = None
        self.error_type: str | None = None

    @classmethod
    def of(cls, operation: str, request: TokenRequest, **fields: Any) -> Report:
        """The report of a call for ``request``: its connector and subject type."""
        return cls(
            operation,
            request.connector,
            subject_type=subject_type(request.params.subject),
            **fields,
        )

    def failed(self, exc: BaseException) -> None:
        """Note how the call failed: the error's ``code`` (connect_auth's errors have
        one) or its class name."""
        self.error_type = type(exc).__name__
        code = getattr(exc, "code", None)
        self.error_code = code if isinstance(code, str) and code else self.error_type


class Observer(Protocol):
    """What `connect_auth.otel` does with reports (the only implementation)."""

    def observe(self, report: Report) -> contextlib.AbstractContextManager[object]:
        """The scope of one Connect call (its span); ``report`` is complete on exit."""
        ...

    def refused(self, connector: str) -> None:
        """An adapter's provider refused a token, which will be refreshed."""
        ...

    def shared_cache_failed(self, error_type: str) -> None:
        """The shared (Redis) cache failed; its breaker decides what happens next."""
        ...


#: Set by ``connect_auth.otel.instrument()``; None until then.
observer: Observer | None = None

_current: ContextVar[Report | None] = ContextVar("connect_auth_report", default=None)


def current_report() -> Report | None:
    """The report of the Connect call running in this thread or task, if any."""
    return _current.get()


@contextlib.contextmanager
def reporting(report: Report | None) -> Iterator[None]:
    """Run a Connect call under ``report``: timed, its error noted, observed when
    instrumented, and logged once at the end. ``None``: the caller's report (a
    token fetch the engine reports) is the one that counts."""
    if report is None:
        yield
        return
    reset = _current.set(report)
    watcher = observer
    try:
        with watcher.observe(report) if watcher is not None else contextlib.nullcontext():
            start = time.perf_counter()
            try:
                yield
            except BaseException as exc:
                report.failed(exc)
                raise
            finally:
                report.seconds = time.perf_counter() - start
    finally:
        _current.reset(reset)
        _log(report)


def _log(report: Report) -> None:
    """One line per Connect call: DEBUG, but INFO when a user's consent is missing
    (the app has something to do)."""
    consent = report.error_code == "user_authorization_required"
    if not log.isEnabledFor(logging.INFO if consent else logging.DEBUG):
        return
    what = report.operation
    about = report.connector or "Vercel"
    how = f"{report.attempts} attempt(s), {report.seconds * 1000:.0f} ms"
    if report.operation == "fetch_token":
        how = f"{report.reason}, from {report.source}, {how}"
    if report.error_code is None:
        log.debug("%s for %s: done (%s)", what, about, how)
    elif consent:
        log.info(
            "%s for %s: the user has not authorized the connector yet; send them to "
            "start_authorization's url (%s)",
            what,
            about,
            how,
        )
    else:
        log.debug("%s for %s: failed with %s (%s)", what, about, report.error_code, how)


def refused(connector: str) -> None:
    """Tell the observer that a provider refused a token for ``connector``."""
    watcher = observer
    if watcher is not None:
        watcher.refused(connector)


def shared_cache_failed(error_type: str) -> None:
    """Tell the observer that the shared cache failed with ``error_type``."""
    watcher = observer
    if watcher is not None:
        watcher.shared_cache_failed(error_type)


# -- cache hits and misses, read when asked ------------------------------------------

_caches: weakref.WeakKeyDictionary[object, TokenCache] = weakref.WeakKeyDictionary()
_retired = [0, 0]  # the hits and misses of caches whose owners are gone


def track_cache(owner: object, cache: TokenCache) -> None:
    """Count ``cache`` in `cache_counts` while ``owner`` lives, and its final counts
    after that."""
    _caches[owner] = cache
    weakref.finalize(owner, _retire, cache)


def _retire(cache: TokenCache) -> None:
    hits, misses = cache.counts()
    _retired[0] += hits
    _retired[1] += misses


def cache_counts() -> tuple[int, int]:
    """Cache hits and misses of every client in this process, since it started."""
    hits, misses = _retired
    for cache in list(_caches.values()):
        h, m = cache.counts()
        hits += h
        misses += m
    return hits, misses
