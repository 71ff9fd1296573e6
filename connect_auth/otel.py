"""OpenTelemetry traces and metrics for connect_auth (the ``otel`` extra).

Importing this module records nothing. `instrument` starts recording for every
client in the process (the default one, your `ConnectClient` objects, the
adapters' and the shared Redis cache), and `uninstrument` stops it::

    from connect_auth.otel import instrument

    instrument()  # the global tracer and meter providers

What is recorded is listed in the observability guide: a span per Connect call
(``connect_auth.fetch_token`` for token fetches) and the ``connect_auth.*``
metrics. No token, credential, verifier or subject id is ever recorded.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator
from typing import Any

try:
    from opentelemetry import metrics, trace
    from opentelemetry.metrics import CallbackOptions, Observation
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "connect_auth.otel needs the OpenTelemetry API: pip install 'connect-auth[otel]'"
    ) from exc

from . import _observe
from ._observe import Report, cache_counts
from ._version import __version__

__all__ = ["instrument", "uninstrument"]

#: Histogram buckets for Connect calls, in seconds: a cached shared token takes
#: milliseconds, a fetch tens to hundreds, retries seconds.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def instrument(
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
) -> None:
    """Record connect_auth's spans and metrics from now on, for every client in this
    process. Calling it again switches to the providers given.

    Args:
        tracer_provider: where spans go; None: the global tracer provider
            (``opentelemetry.trace.set_tracer_provider``).
        meter_provider: where metrics go; None: the global meter provider
            (``opentelemetry.metrics.set_meter_provider``).
    """
    with _lock:
        key = (id(tracer_provider), id(meter_provider))
        found = _made.get(key)
        if found is None:
            found = _made[key] = _Instruments(tracer_provider, meter_provider)
        current = _observe.observer
        if isinstance(current, _Instruments):
            current.stop()
        found.start()
        _observe.observer = found


def uninstrument() -> None:
    """Stop recording: what `instrument` started ends, and nothing more is recorded
    (the cache counters stop where they are)."""
    with _lock:
        current = _observe.observer
        if isinstance(current, _Instruments):
            current.stop()
        _observe.observer = None


_lock = threading.Lock()
# One set of instruments per pair of providers: OpenTelemetry keeps an instrument
# for the life of its meter, so instrumenting twice must not create it twice.
_made: dict[tuple[int, int], _Instruments] = {}


class _Instruments:
    """The tracer and the metric instruments `instrument` records to."""

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None,
        meter_provider: metrics.MeterProvider | None,
    ) -> None:
        # Kept referenced: `_made` is keyed by their ids.
        self._providers = (tracer_provider, meter_provider)
        self._tracer = trace.get_tracer("connect_auth", __version__, tracer_provider)
        meter = metrics.get_meter("connect_auth", __version__, meter_provider=meter_provider)
        self._fetches = meter.create_counter(
            "connect_auth.token.fetches",
            unit="{fetch}",
            description="Token fetches from Connect (or a shared cache), by outcome",
        )
        self._duration = meter.create_histogram(
            "connect_auth.token.fetch.duration",
            unit="s",
            description="How long token fetches took, retries included",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS),
        )
        self._refusals = meter.create_counter(
            "connect_auth.refusals",
            unit="{refusal}",
            description="Tokens a provider refused, each refreshed by the adapter",
        )
        self._shared_errors = meter.create_counter(
            "connect_auth.shared_cache.errors",
            unit="{error}",
            description="Failures of the shared (Redis) token cache",
        )
        meter.create_observable_counter(
            "connect_auth.cache.hits",
            callbacks=[self._hits],
            unit="{hit}",
            description="Token lookups served from the cache",
        )
        meter.create_observable_counter(
            "connect_auth.cache.misses",
            callbacks=[self._misses],
            unit="{miss}",
            description="Token lookups that waited for a fetch",
        )
        self._on = False
        # Cache counts are process totals: what happened while not instrumented is
        # taken off, and what was reported never goes back.
        self._excluded = (0, 0)
        self._stopped_at: tuple[int, int] | None = None
        self._reported = [0, 0]

    # -- switching on and off -----------------------------------------------------

    def start(self) -> None:
        now = cache_counts()
        since = self._stopped_at if self._stopped_at is not None else (0, 0)
        self._excluded = (
            self._excluded[0] + now[0] - since[0],
            self._excluded[1] + now[1] - since[1],
        )
        self._on = True

    def stop(self) -> None:
        self._stopped_at = cache_counts()
        self._on = False

    # -- what the hooks record -----------------------------------------------------

    @contextlib.contextmanager
    def observe(self, report: Report) -> Iterator[object]:
        """A span around one Connect call, and its metrics when it ends."""
        with self._tracer.start_as_current_span(
            "connect_auth." + report.operation,
            kind=SpanKind.CLIENT,
            attributes=_start_attributes(report),
            record_exception=False,  # an exception's text is not ours to vouch for
            set_status_on_exception=False,
        ) as span:
            try:
                yield span
            finally:
                span.set_attribute("connect.attempts", report.attempts)
                if report.reason is not None:
                    span.set_attribute("connect.source", report.source)
                if report.error_code is not None:
                    span.set_attribute("connect.error.code", report.error_code)
                    span.set_attribute("error.type", report.error_type or "")
                    span.set_status(Status(StatusCode.ERROR, report.error_code))
                if report.operation == "fetch_token":
                    self._fetched(report)

    def _fetched(self, report: Report) -> None:
        attributes: dict[str, Any] = {
            "connect.connector": report.connector or "",
            "connect.reason": report.reason or "",
            "connect.source": report.source,
            "connect.outcome": "ok" if report.error_code is None else "error",
        }
        if report.error_code is not None:
            attributes["connect.error.code"] = report.error_code
        self._fetches.add(1, attributes)
        self._duration.record(report.seconds, attributes)

    def refused(self, connector: str) -> None:
        self._refusals.add(1, {"connect.connector": connector})

    def shared_cache_failed(self, error_type: str) -> None:
        self._shared_errors.add(1, {"error.type": error_type})

    def _hits(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._observed(0)

    def _misses(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._observed(1)

    def _observed(self, which: int) -> list[Observation]:
        if not self._on:
            return []
        value = max(self._reported[which], cache_counts()[which] - self._excluded[which])
        self._reported[which] = value
        return [Observation(value)]


def _start_attributes(report: Report) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    if report.connector is not None:
        attributes["connect.connector"] = report.connector
    if report.subject_type is not None:
        attributes["connect.subject.type"] = report.subject_type
    if report.reason is not None:
        attributes["connect.reason"] = report.reason
    return attributes
