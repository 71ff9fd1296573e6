"""The token cache: an LRU of token responses, and the rule for serving one.

Not locked: :class:`~connect_auth.ConnectClient` holds its lock around every
call, so the check-then-fetch decision and the cache update stay atomic.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from ._models import TokenResponse

__all__ = ["TokenCache", "is_fresh"]


def is_fresh(expires_at_ms: float, now_ms: float, buffer_ms: float) -> bool:
    """An entry is served while ``expires_at - now > buffer`` (strict, as in the TS SDK)."""
    return expires_at_ms - now_ms > buffer_ms


class TokenCache:
    """Least-recently-used map from cache key to :class:`TokenResponse`, O(1) per call."""

    __slots__ = ("_data", "maxsize")

    def __init__(self, maxsize: int) -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int):
            raise TypeError("cache_size must be an int")
        if maxsize < 1:
            raise ValueError(f"cache_size must be at least 1, got {maxsize}")
        self.maxsize = maxsize
        self._data: OrderedDict[Hashable, TokenResponse] = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    def get_fresh(self, key: Hashable, now_ms: float, buffer_ms: float) -> TokenResponse | None:
        """The entry if it is still fresh (and mark it used); a stale one is dropped.

        Call it under the owner's lock: dropping is a check-then-act.
        """
        entry = self.get_fresh_unlocked(key, now_ms, buffer_ms)
        if entry is None:
            self._data.pop(key, None)  # missing, or stale
        return entry

    def get_fresh_unlocked(
        self, key: Hashable, now_ms: float, buffer_ms: float
    ) -> TokenResponse | None:
        """The entry if fresh, marked used; safe without the owner's lock.

        Each dict operation is atomic, and a concurrent removal between the read
        and the recency update only means the hit was linearized just before it.
        A stale or missing entry returns None and is left to the locked path.
        """
        entry = self._data.get(key)
        if entry is None or not is_fresh(entry.expires_at, now_ms, buffer_ms):
            return None
        try:  # noqa: SIM105 - contextlib.suppress costs more on this hot path
            self._data.move_to_end(key)
        except KeyError:
            pass
        return entry

    def peek(self, key: Hashable) -> TokenResponse | None:
        """The entry, fresh or not, without touching its recency."""
        return self._data.get(key)

    def put(self, key: Hashable, value: TokenResponse) -> None:
        """Insert or replace, evicting the least recently used entry when full."""
        self._data[key] = value
        self._data.move_to_end(key)
        if len(self._data) > self.maxsize:
            self._data.popitem(last=False)

    def delete(self, key: Hashable) -> None:
        """Remove one entry; no-op when absent."""
        self._data.pop(key, None)

    def delete_where(self, predicate: Callable[[Any], bool]) -> int:
        """Remove every entry whose key matches; returns how many went."""
        doomed = [k for k in self._data if predicate(k)]
        for k in doomed:
            del self._data[k]
        return len(doomed)

    def clear(self) -> None:
        """Remove everything."""
        self._data.clear()
