"""Constants and small helpers shared by the test modules."""

from __future__ import annotations

from typing import Any

from connect_auth import RetryPolicy

SLACK = "slack/acme-slack"
APP: dict[str, Any] = {"type": "app"}


def fast_retry(**overrides: float) -> RetryPolicy:
    """Retries with tiny waits, so fault tests stay quick."""
    settings: dict[str, Any] = {"initial_backoff": 0.01, "max_backoff": 0.05, "deadline": 10.0}
    settings.update(overrides)
    return RetryPolicy(**settings)
