"""Timing: median microseconds per call, variants interleaved round by round.

Inside `counting()`, the same functions count instead: the Python bytecodes one
call executes in the calling thread (the fewest of three warm calls), a measure
that the machine's noise cannot move.
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from types import FrameType
from typing import Any

# A plain flag, not a ContextVar: some cases run their loop in a fresh context.
_counting = False


@contextlib.contextmanager
def counting() -> Iterator[None]:
    """Make `interleaved` and `interleaved_async` return bytecodes per call."""
    global _counting
    _counting = True
    try:
        yield
    finally:
        _counting = False


class _Tally:
    """A tracer that counts opcode events in this thread."""

    def __init__(self) -> None:
        self.opcodes = 0

    def __call__(self, frame: FrameType, event: str, arg: object) -> Any:
        frame.f_trace_opcodes = True
        if event == "opcode":
            self.opcodes += 1
        return self


def _counted(fn: Callable[[], None]) -> float:
    counts = []
    for _ in range(3):
        fn()
        tally = _Tally()
        sys.settrace(tally)
        try:
            fn()
        finally:
            sys.settrace(None)
        counts.append(tally.opcodes)
    return float(min(counts))


async def _acounted(fn: Callable[[], Awaitable[Any]]) -> float:
    counts = []
    for _ in range(3):
        await fn()
        tally = _Tally()
        sys.settrace(tally)
        try:
            await fn()
        finally:
            sys.settrace(None)
        counts.append(tally.opcodes)
    return float(min(counts))


def interleaved(variants: dict[str, Callable[[], None]], n: int, repeats: int) -> dict[str, float]:
    """Median microseconds per call of each variant, rounds interleaved to share noise."""
    if _counting:
        return {name: _counted(fn) for name, fn in variants.items()}
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
    if _counting:
        return {name: await _acounted(fn) for name, fn in variants.items()}
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
