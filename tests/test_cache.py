"""The LRU and the freshness rule, stepped by hand."""

from __future__ import annotations

import math

import pytest

from connect_auth import ConnectorRef, TokenResponse
from connect_auth._cache import Entry, TokenCache, is_fresh


def _resp(expires_at: int, token: str = "t") -> Entry:
    response = TokenResponse(
        token=token, expires_at=expires_at, connector=ConnectorRef("i", "u", "t")
    )
    return Entry(response, math.inf)


def test_freshness_is_strict() -> None:
    """Served while expires_at - now > buffer; at equality it is stale."""
    assert is_fresh(100_001, 70_000, 30_000)
    assert not is_fresh(100_000, 70_000, 30_000)


def test_stale_entry_is_dropped_on_lookup() -> None:
    """A stale entry is removed, not served."""
    cache = TokenCache(2)
    cache.put("k", _resp(1000))
    assert cache.get_fresh("k", now_ms=999, buffer_ms=0) is not None
    assert cache.get_fresh("k", now_ms=1000, buffer_ms=0) is None
    assert len(cache) == 0


def test_least_recently_used_is_evicted() -> None:
    """At capacity + 1 the least recently used entry goes; a hit refreshes recency."""
    cache = TokenCache(3)
    for k in "abc":
        cache.put(k, _resp(10**9))
    assert cache.get_fresh("a", 0, 0) is not None  # a is now most recent
    cache.put("d", _resp(10**9))
    assert cache.peek("b") is None
    assert all(cache.peek(k) is not None for k in "acd")
    assert len(cache) == 3


def test_delete_where_and_clear() -> None:
    """Selective and total removal."""
    cache = TokenCache(5)
    for k in ("x1", "x2", "y1"):
        cache.put(k, _resp(10**9))
    assert sorted(cache.delete_where(lambda k: k.startswith("x"))) == ["x1", "x2"]
    assert cache.peek("y1") is not None
    cache.delete("absent")
    cache.clear()
    assert len(cache) == 0


@pytest.mark.parametrize(("size", "error"), [(0, ValueError), (-1, ValueError), (1.5, TypeError)])
def test_bad_sizes(size: object, error: type) -> None:
    """cache_size must be a positive int."""
    with pytest.raises(error):
        TokenCache(size)  # type: ignore[arg-type]


def test_an_entry_knows_when_it_left_the_cache() -> None:
    """``live`` turns False on delete, replace, eviction and clear (the engine's memo
    trusts an entry only while it is live)."""
    cache = TokenCache(2)
    a, b, c, a2 = _resp(10**9), _resp(10**9), _resp(10**9), _resp(10**9)
    cache.put("a", a)
    cache.put("b", b)
    cache.put("a", a2)  # replaced
    assert not a.live and a2.live
    cache.put("c", c)  # full: b is the least recently used
    assert not b.live and c.live
    cache.delete("c")
    assert not c.live
    cache.clear()
    assert not a2.live
