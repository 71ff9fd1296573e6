"""Retrying transient Connect failures with tenacity, within one deadline."""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import tenacity

from ._errors import ConnectUnavailableError

__all__ = ["RetryPolicy", "TransientFailure", "arun_with_retries", "run_with_retries"]

T = TypeVar("T")


class TransientFailure(Exception):
    """One attempt failed in a way worth retrying (raised inside the retry loop only)."""

    def __init__(
        self,
        description: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(description)
        self.description = description
        self.status = status
        self.retry_after = retry_after
        self.request_id = request_id


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How transient failures (network errors, timeouts, 408, 429, 5xx) are retried.

    Waits grow exponentially from ``initial_backoff`` to ``max_backoff`` with full
    jitter; a ``Retry-After`` header replaces the wait, capped at
    ``retry_after_cap``. No attempt starts, and no wait begins, that would end
    past ``deadline`` seconds from the first attempt. ``max_attempts=1`` disables
    retries. ``sleep`` is injectable so tests can observe the waits.
    """

    max_attempts: int = 4
    deadline: float = 30.0
    initial_backoff: float = 0.2
    max_backoff: float = 5.0
    retry_after_cap: float = 10.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise TypeError("RetryPolicy.max_attempts must be an int")
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be at least 1")
        for name in ("deadline", "initial_backoff", "max_backoff", "retry_after_cap"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"RetryPolicy.{name} must be a number of seconds")
            if not math.isfinite(value) or value < 0 or (name == "deadline" and value == 0):
                raise ValueError(f"RetryPolicy.{name} must be a finite positive number")

    def wait_for(self, attempt: int, retry_after: float | None, jitter: float) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based); pure.

        ``jitter`` is a uniform sample in [0, 1).
        """
        if retry_after is not None:
            return min(retry_after, self.retry_after_cap)
        ceiling = min(self.max_backoff, self.initial_backoff * 2.0 ** (attempt - 1))
        return float(ceiling * jitter)


class _Wait(tenacity.wait.wait_base):
    def __init__(self, policy: RetryPolicy, random: Callable[[], float]) -> None:
        self.policy = policy
        self.random = random

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        retry_after = exc.retry_after if isinstance(exc, TransientFailure) else None
        return self.policy.wait_for(retry_state.attempt_number, retry_after, self.random())


def run_with_retries(
    attempt: Callable[[float], T],
    policy: RetryPolicy,
    *,
    random: Callable[[], float],
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Call ``attempt(seconds_left)`` until it returns or a non-transient error escapes.

    When the policy gives up, raise :class:`ConnectUnavailableError` chained to
    the last failure.
    """
    start = clock()
    retrying = tenacity.Retrying(sleep=policy.sleep, **_rules(policy, random))
    try:
        return retrying(lambda: attempt(policy.deadline - (clock() - start)))
    except TransientFailure as last:
        raise _gave_up(last, retrying, clock() - start) from (last.__cause__ or last)


async def arun_with_retries(
    attempt: Callable[[float], Awaitable[T]],
    policy: RetryPolicy,
    *,
    random: Callable[[], float],
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Async :func:`run_with_retries`: the waits are ``anyio.sleep`` (asyncio or trio)."""
    start = clock()
    retrying = tenacity.AsyncRetrying(sleep=anyio.sleep, **_rules(policy, random))
    try:

        async def one_attempt() -> T:  # tenacity awaits only coroutine functions
            return await attempt(policy.deadline - (clock() - start))

        return await retrying(one_attempt)
    except TransientFailure as last:
        raise _gave_up(last, retrying, clock() - start) from (last.__cause__ or last)


def _rules(policy: RetryPolicy, random: Callable[[], float]) -> dict[str, Any]:
    """What to retry, how long to wait, and when to stop: the same for sync and async."""
    return {
        "stop": tenacity.stop_after_attempt(policy.max_attempts)
        | tenacity.stop_before_delay(policy.deadline),
        "wait": _Wait(policy, random),
        "retry": tenacity.retry_if_exception_type(TransientFailure),
        "reraise": True,
    }


def _gave_up(
    last: TransientFailure, retrying: tenacity.BaseRetrying, elapsed: float
) -> ConnectUnavailableError:
    attempts = retrying.statistics.get("attempt_number", 1)
    return ConnectUnavailableError(
        f"Vercel Connect is unavailable: {last.description} "
        f"(gave up after {attempts} attempt(s) in {elapsed:.1f} s)",
        code="unavailable",
        status=last.status,
        request_id=last.request_id,
    )
