"""How transient Connect failures are retried: the policy and the failure type.

The retry loop itself (tenacity) lives in ``_retrying``, imported on the first
Connect call.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ._errors import ConnectError

__all__ = ["RetryPolicy", "TransientFailure"]


class TransientFailure(Exception):
    """One attempt failed in a way worth retrying (raised inside the retry loop only)."""

    def __init__(
        self,
        description: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        request_id: str | None = None,
        error: ConnectError | None = None,
    ) -> None:
        super().__init__(description)
        self.description = description
        self.status = status
        self.retry_after = retry_after
        self.request_id = request_id
        self.error = error  # what Connect said (code, message, vendor), when it answered


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How transient failures (network errors, timeouts, 408, 429, 5xx) are retried.

    Waits grow exponentially from ``initial_backoff`` to ``max_backoff`` with full
    jitter; a ``Retry-After`` header replaces the wait, capped at
    ``retry_after_cap``. No attempt starts, and no wait begins, that would end
    past ``deadline`` seconds from the first attempt. ``max_attempts=1`` disables
    retries.

    ``sleep`` waits between sync attempts, ``asleep`` between async ones. Without
    ``asleep``, a ``sleep`` of your own is called from a worker thread (so the event
    loop keeps running), and the default waits with ``anyio.sleep``. Both are
    injectable so tests and progress displays can observe the waits.

    Attributes:
        max_attempts: attempts in all, the first included (``1``: no retries).
        deadline: seconds from the first attempt after which no attempt or wait starts.
        initial_backoff: the first wait's ceiling, in seconds (then doubled each time).
        max_backoff: the largest wait ceiling, in seconds.
        retry_after_cap: the longest ``Retry-After`` honoured, in seconds.
        sleep: ``sleep(seconds)`` between sync attempts (default ``time.sleep``).
        asleep: ``await asleep(seconds)`` between async attempts (default: ``sleep``
            in a worker thread if you gave one, else ``anyio.sleep``).
    """

    max_attempts: int = 4
    deadline: float = 30.0
    initial_backoff: float = 0.2
    max_backoff: float = 5.0
    retry_after_cap: float = 10.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)
    asleep: Callable[[float], Awaitable[None]] | None = field(
        default=None, repr=False, compare=False
    )

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
        """Seconds to wait after a failed attempt; pure.

        Args:
            attempt: the number of the attempt that failed (1-based).
            retry_after: the answer's ``Retry-After`` in seconds, if it had one.
            jitter: a uniform sample in [0, 1).
        """
        if retry_after is not None:
            return min(retry_after, self.retry_after_cap)
        ceiling = min(self.max_backoff, self.initial_backoff * 2.0 ** (attempt - 1))
        return float(ceiling * jitter)
