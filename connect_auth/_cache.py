"""The token cache: token responses with least-recently-used eviction, and the rules
for serving and refreshing one.

Not locked: the engine holds its lock around every change, so the
check-then-fetch decision and the cache update stay atomic.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Hashable
from typing import Any

from ._models import TokenResponse

__all__ = ["Entry", "TokenCache", "is_fresh", "refresh_at", "refresh_retry_at"]


def is_fresh(expires_at_ms: float, now_ms: float, buffer_ms: float) -> bool:
    """An entry is served while ``expires_at - now > buffer`` (strict, as in the TS SDK)."""
    return expires_at_ms - now_ms > buffer_ms


def refresh_at(expires_at_ms: float, now_ms: float, buffer_ms: float, ahead_ms: float) -> float:
    """When a token fetched at ``now_ms`` is refreshed in the background (epoch ms).

    ``ahead_ms`` before it leaves the cache, but never earlier than halfway
    through the time it can be served: a short-lived token is not refetched
    on every call.
    """
    servable_until = expires_at_ms - buffer_ms
    return servable_until - min(ahead_ms, (servable_until - now_ms) / 2)


def refresh_retry_at(expires_at_ms: float, now_ms: float, buffer_ms: float) -> float:
    """When to try again after a failed background refresh: halfway to the token's
    end of service, and not sooner than a second from now."""
    return now_ms + max(1000.0, (expires_at_ms - buffer_ms - now_ms) / 2)


class Entry:
    """A cached token response and when to refresh it ahead of expiry (epoch ms).

    ``refresh_at`` is ``inf`` while a background refresh runs. ``used`` orders the
    entries for eviction; ``live`` turns False when the entry leaves the cache, so a
    reference kept elsewhere (the engine's memo) can tell.
    """

    __slots__ = ("expires_at", "live", "refresh_at", "response", "used")

    def __init__(self, response: TokenResponse, refresh_at_ms: float) -> None:
        self.response = response
        self.expires_at = response.expires_at
        self.refresh_at = refresh_at_ms
        self.used = 0
        self.live = True


class TokenCache:
    """Map from cache key to `Entry` that evicts the least recently used entry.

    A hit only stamps its entry (O(1), no reordering); the least recently used is
    looked for when a new entry arrives in a full cache, which happens after a
    fetch, not on the hit path.
    """

    __slots__ = ("_counting", "_data", "_puts", "_reads", "maxsize", "misses", "tick")

    def __init__(self, maxsize: int) -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int):
            raise TypeError("cache_size must be an int")
        if maxsize < 1:
            raise ValueError(f"cache_size must be at least 1, got {maxsize}")
        self.maxsize = maxsize
        self._data: dict[Hashable, Entry] = {}
        # The next recency stamp; a bound C method, so a hit can stamp without a call
        # into Python code.
        self.tick: Callable[[], int] = itertools.count(1).__next__
        # What `counts` needs to tell hits from the other stamps.
        self._puts = 0
        self._reads = 0
        self._counting = threading.Lock()
        #: Lookups under the owner's lock that found nothing fresh (`get_fresh`).
        self.misses = 0

    def __len__(self) -> int:
        return len(self._data)

    def get_fresh(self, key: Hashable, now_ms: float, buffer_ms: float) -> Entry | None:
        """The entry if it is still fresh (and mark it used); a stale one is dropped.

        Call it under the owner's lock: dropping is a check-then-act.
        """
        entry = self.get_fresh_unlocked(key, now_ms, buffer_ms)
        if entry is None:
            self.misses += 1
            self.delete(key)  # missing, or stale
        return entry

    def get_fresh_unlocked(self, key: Hashable, now_ms: float, buffer_ms: float) -> Entry | None:
        """The entry if fresh, marked used; safe without the owner's lock (one dict
        read and one attribute write). A stale or missing entry returns None and is
        left to the locked path."""
        entry = self._data.get(key)
        if entry is None or not is_fresh(entry.expires_at, now_ms, buffer_ms):
            return None
        entry.used = self.tick()
        return entry

    def peek(self, key: Hashable) -> Entry | None:
        """The entry, fresh or not, without touching its recency."""
        return self._data.get(key)

    def put(self, key: Hashable, value: Entry) -> None:
        """Insert or replace, evicting the least recently used entry when full."""
        old = self._data.pop(key, None)
        if old is not None:
            old.live = False
        elif len(self._data) >= self.maxsize:
            oldest = min(self._data, key=lambda k: self._data[k].used)
            self._data.pop(oldest).live = False
        self._puts += 1
        value.used = self.tick()
        self._data[key] = value

    def counts(self) -> tuple[int, int]:
        """Hits and misses so far. Hits are read off the recency stamps, so counting
        them costs a hit nothing: every stamp went to a hit, a `put` or a call of this
        method. (A `put` in another thread may be seen half done, one hit too many or
        too few for a moment; readers of a total must not let it go back.)"""
        with self._counting:
            stamp = self.tick()
            self._reads += 1
            return stamp - self._puts - self._reads, self.misses

    def delete(self, key: Hashable) -> None:
        """Remove one entry; no-op when absent."""
        entry = self._data.pop(key, None)
        if entry is not None:
            entry.live = False

    def delete_where(self, predicate: Callable[[Any], bool]) -> list[Any]:
        """Remove every entry whose key matches; returns their keys."""
        doomed = [k for k in self._data if predicate(k)]
        for k in doomed:
            self._data.pop(k).live = False
        return doomed

    def entries(self) -> list[Entry]:
        """Every entry, in no particular order (a snapshot)."""
        return list(self._data.values())

    def clear(self) -> None:
        """Remove everything."""
        for entry in self._data.values():
            entry.live = False
        self._data.clear()
