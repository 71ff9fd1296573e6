"""Retrying transient Connect failures with tenacity, within one deadline."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import tenacity

from ._errors import ConnectUnavailableError
from ._retry import RetryPolicy, TransientFailure

__all__ = ["arun_with_retries", "run_with_retries"]

T = TypeVar("T")


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

    When the policy gives up, raise `ConnectUnavailableError` chained to
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
    """Async `run_with_retries`: the waits are the policy's (see `RetryPolicy`)."""
    start = clock()
    retrying = tenacity.AsyncRetrying(sleep=async_sleep(policy), **_rules(policy, random))
    try:

        async def one_attempt() -> T:  # tenacity awaits only coroutine functions
            return await attempt(policy.deadline - (clock() - start))

        return await retrying(one_attempt)
    except TransientFailure as last:
        raise _gave_up(last, retrying, clock() - start) from (last.__cause__ or last)


def async_sleep(policy: RetryPolicy) -> Callable[[float], Awaitable[None]]:
    """How an async caller waits: ``asleep``; else a custom ``sleep`` from a worker
    thread; else ``anyio.sleep`` (asyncio or trio)."""
    if policy.asleep is not None:
        return policy.asleep
    if policy.sleep is time.sleep:
        return anyio.sleep
    sleep = policy.sleep

    async def in_a_thread(seconds: float) -> None:
        await anyio.to_thread.run_sync(sleep, seconds)

    return in_a_thread


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
    said = last.error  # what Connect answered on the last attempt, when it answered
    return ConnectUnavailableError(
        f"Vercel Connect is unavailable: {last.description}"
        f"{': ' + said.message if said else ''} "
        f"(gave up after {attempts} attempt(s) in {elapsed:.1f} s)",
        code=(said.code if said else None) or "unavailable",
        status=last.status,
        status_text=said.status_text if said else "",
        vendor=said.vendor if said else None,
        request_id=last.request_id,
    )
