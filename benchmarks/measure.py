"""Timing: median microseconds per call, variants interleaved round by round."""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any


def interleaved(variants: dict[str, Callable[[], None]], n: int, repeats: int) -> dict[str, float]:
    """Median microseconds per call of each variant, rounds interleaved to share noise."""
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for fn in variants.values():  # warm up: caches, connection pools, imports
        for _ in range(max(3, n // 20)):
            fn()
    for _ in range(repeats):
        for name, fn in variants.items():
            start = time.perf_counter()
            for _ in range(n):
                fn()
            samples[name].append((time.perf_counter() - start) / n * 1e6)
    return {name: statistics.median(values) for name, values in samples.items()}


async def interleaved_async(
    variants: dict[str, Callable[[], Awaitable[Any]]], n: int, repeats: int
) -> dict[str, float]:
    """:func:`interleaved` for coroutine functions, on the running loop."""
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for fn in variants.values():
        for _ in range(max(3, n // 20)):
            await fn()
    for _ in range(repeats):
        for name, fn in variants.items():
            start = time.perf_counter()
            for _ in range(n):
                await fn()
            samples[name].append((time.perf_counter() - start) / n * 1e6)
    return {name: statistics.median(v) for name, v in samples.items()}
