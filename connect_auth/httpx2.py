"""``ConnectAuth`` for pydantic's httpx2 fork (install the ``httpx2`` extra).

httpx2 checks ``isinstance(auth, httpx2.Auth)``, so it needs its own subclass;
the logic is the same `HttpxFlow` as for httpx.
"""

from __future__ import annotations

try:
    import httpx2
except ImportError as exc:  # an optional extra: say how to get it
    raise ImportError(
        "connect_auth.httpx2 needs httpx2: pip install 'connect-auth[httpx2]'"
    ) from exc

from ._docs import shared_args
from ._httpx_flow import HttpxFlow

__all__ = ["ConnectAuth"]


@shared_args
class ConnectAuth(HttpxFlow, httpx2.Auth):
    """Attach a fresh Vercel Connect token to every request of an httpx2 client.

    Same behaviour as `connect_auth.httpx.ConnectAuth`.
    """

    _byte_stream = httpx2.ByteStream
    _sync_stream = httpx2.SyncByteStream
    _async_stream = httpx2.AsyncByteStream
