"""``ConnectAuth`` for httpx: ``httpx.Client(auth=ConnectAuth(...))`` and ``AsyncClient``."""

from __future__ import annotations

import httpx

from ._docs import shared_args
from ._httpx_flow import HttpxFlow

__all__ = ["ConnectAuth"]


@shared_args
class ConnectAuth(HttpxFlow, httpx.Auth):
    """Attach a fresh Vercel Connect token to every request of an httpx client.

    A response whose status is in ``refresh_on`` (or that ``refresh_if(status,
    body)`` flags), from the origin the token was sent to, makes it refresh the
    token once and resend the original request once; a second failure is
    returned as it is. Bodies that cannot be replayed (generators, iterators)
    are not resent. Requests to hosts outside ``hosts`` (when given) pass
    through without a token. Works in ``Client`` and ``AsyncClient`` (without
    blocking the event loop) and shares tokens with `connect_auth.get_token`.
    """

    _byte_stream = httpx.ByteStream
    _sync_stream = httpx.SyncByteStream
    _async_stream = httpx.AsyncByteStream
