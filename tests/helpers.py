"""Constants and small helpers shared by the test modules."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from connect_auth import RetryPolicy

SLACK = "slack/acme-slack"
APP: dict[str, Any] = {"type": "app"}


def fast_retry(**overrides: float) -> RetryPolicy:
    """Retries with tiny waits, so fault tests stay quick."""
    settings: dict[str, Any] = {"initial_backoff": 0.01, "max_backoff": 0.05, "deadline": 10.0}
    settings.update(overrides)
    return RetryPolicy(**settings)


def run_in_threads(n: int, target: Callable[[], Any]) -> tuple[list[Any], list[BaseException]]:
    """Start n threads released together by a barrier; collect results and errors."""
    barrier = threading.Barrier(n)
    results: list[Any] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run() -> None:
        barrier.wait()
        try:
            value = target()
            with lock:
                results.append(value)
        except BaseException as exc:  # collected for the caller's assertions
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors
