"""The cache-hit path with OpenTelemetry instrumentation off and on.

Rounds alternate between the two states (instrumenting is process-wide, so the
variants cannot run side by side), each timing a cached ``get_token`` and an
httpx request through ``ConnectAuth`` over an in-memory transport. The
instrumented rounds record to the OpenTelemetry SDK (a span processor and a
metric reader that is read after every round, as an exporter would).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import httpx
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import connect_auth
from connect_auth.httpx import ConnectAuth
from connect_auth.otel import instrument, uninstrument
from connect_auth.testing import ConnectEmulator

from . import measure
from .cases import APP, ATTACH, PROVIDER, SLACK, environment

__all__ = ["instrumented", "markdown", "targets"]


def instrumented(scale: float) -> dict[str, Any]:
    """µs and bytecodes per cached get_token and per httpx request, off and on."""
    n = max(50, int(20000 * scale))
    repeats = 9 if scale >= 1 else 2
    reader = InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    meter_provider = MeterProvider(metric_readers=[reader])
    with ConnectEmulator() as emu, environment(emu):
        transport = httpx.MockTransport(lambda request: httpx.Response(200))
        http = httpx.Client(transport=transport, auth=ConnectAuth(SLACK, subject=APP, **ATTACH))
        variants: dict[str, Callable[[], None]] = {
            "cached get_token": lambda: connect_auth.get_token(SLACK, subject=APP) and None,
            "httpx request with ConnectAuth": lambda: http.get(PROVIDER) and None,
        }
        states = {
            "off": uninstrument,
            "on": lambda: instrument(tracer_provider, meter_provider),
        }
        for fn in variants.values():  # warm: the token is cached, the client connected
            fn()
        try:
            us = _rounds(variants, states, reader, n, repeats)
            with measure.counting():
                bytecodes = _rounds(variants, states, reader, n, 1)
            states["on"]()  # the cache counters report while instrumented
            hits = _hits(reader)
        finally:
            uninstrument()
            http.close()
    meter_provider.shutdown()
    tracer_provider.shutdown()
    return {"n": n, "repeats": repeats, "us": us, "bytecodes": bytecodes, "hits_recorded": hits}


def _rounds(
    variants: dict[str, Callable[[], None]],
    states: dict[str, Callable[[], None]],
    reader: InMemoryMetricReader,
    n: int,
    repeats: int,
) -> dict[str, float]:
    """Median per call of each variant in each state, the states alternating."""
    samples: dict[str, list[float]] = {f"{v}, {s}": [] for v in variants for s in states}
    order = list(states.items())
    for _ in range(repeats):
        order.reverse()  # neither state always runs first
        for state, switch in order:
            switch()
            for name, fn in variants.items():
                samples[f"{name}, {state}"].append(_per_call(fn, n))
            reader.get_metrics_data()  # collection, as an exporter runs it
    return {name: statistics.median(values) for name, values in samples.items()}


def _per_call(fn: Callable[[], None], n: int) -> float:
    if measure._counting:
        return measure._counted(fn)
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def _hits(reader: InMemoryMetricReader) -> int:
    data = reader.get_metrics_data()
    return sum(
        int(point.value)
        for resource in (data.resource_metrics if data is not None else [])
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "connect_auth.cache.hits"
        for point in metric.data.data_points
    )


def targets(result: dict[str, Any]) -> list[tuple[str, bool, str]]:
    """The instrumented hit path runs the same bytecodes (what noise cannot move) in
    at most 1.05x the time, and its hits are recorded."""
    checks = []
    for variant in ("cached get_token", "httpx request with ConnectAuth"):
        off, on = result["us"][f"{variant}, off"], result["us"][f"{variant}, on"]
        counted_off = result["bytecodes"][f"{variant}, off"]
        counted_on = result["bytecodes"][f"{variant}, on"]
        checks.append(
            (
                f"{variant}: instrumented runs the same bytecodes, <= 1.05x the time",
                on <= off * 1.05 and counted_on <= counted_off,
                f"{on:.2f} vs {off:.2f} us = {on / off:.3f}x; "
                f"{counted_on:.0f} vs {counted_off:.0f} bytecodes",
            )
        )
    checks.append(
        (
            "instrumented: cache hits recorded",
            result["hits_recorded"] > 0,
            f"{result['hits_recorded']} hits",
        )
    )
    return checks


def markdown(result: dict[str, Any]) -> list[str]:
    """The case's table."""
    lines = [
        "## Cache-hit path with OpenTelemetry off and on",
        "",
        "| call | off (µs) | on (µs) | off (bytecodes) | on (bytecodes) |",
        "|---|---|---|---|---|",
    ]
    for variant in ("cached get_token", "httpx request with ConnectAuth"):
        us, counted = result["us"], result["bytecodes"]
        lines.append(
            f"| {variant} | {us[variant + ', off']:.2f} | {us[variant + ', on']:.2f} | "
            f"{counted[variant + ', off']:.0f} | {counted[variant + ', on']:.0f} |"
        )
    return [*lines, ""]
