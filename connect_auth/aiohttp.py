"""``ConnectAuth`` for aiohttp, as a client middleware (``aiohttp`` extra, aiohttp 3.12+).

``aiohttp.ClientSession(middlewares=(ConnectAuth(...),))``
"""

from __future__ import annotations

import weakref
from typing import Any

try:
    from aiohttp import ClientHandlerType, ClientRequest, ClientResponse
    from aiohttp.payload import Payload
except ImportError as exc:  # an optional extra, or an aiohttp without client middlewares
    raise ImportError(
        "connect_auth.aiohttp needs aiohttp 3.12 or later: pip install 'connect-auth[aiohttp]'"
    ) from exc

from ._adapter import ConnectAuthBase

__all__ = ["ConnectAuth"]

Origin = tuple[str, str, int | None]

# aiohttp follows redirects by running the middleware chain again for each hop. Each
# ``session.request`` call has its own timer object, shared by all its hops: the first
# hop records its origin under that timer, and a later hop gets a token only if it
# stays on that origin. Weak keys: an entry goes when its request is done. (A
# ContextVar would do too, but setting one per request costs tens of microseconds.)
_first_hops: weakref.WeakKeyDictionary[object, Origin] = weakref.WeakKeyDictionary()


class ConnectAuth(ConnectAuthBase):
    """An aiohttp client middleware that attaches a fresh Vercel Connect token.

    On a response whose status is in ``refresh_on`` (or that ``refresh_if``
    flags), the token is refreshed once and the request resent once; a second
    failure is returned as it is. A redirect hop to another origin gets no
    token. Bodies aiohttp cannot send twice (async generators, ``StreamReader``)
    are not resent. Token fetches never block the event loop.
    Arguments: see *Adapter arguments* in the API reference.
    """

    async def __call__(self, request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        """The middleware: attach, send, and on a refusal refresh once and resend once."""
        url = request.url
        here: Origin = (url.scheme, url.host or "", url.port)
        if not _same_request_origin(request, here) or (
            (here[0] != "https" or self.hosts is not None) and not self.attaches(*here)
        ):
            return await handler(request)
        # The cache hit without creating a coroutine: this runs on every request.
        token = self.cached_token() or await self.atoken()
        request.headers["Authorization"] = "Bearer " + token
        response = await handler(request)
        status = response.status
        if status not in self.refresh_on and self.refresh_if is None:
            return response  # the common case, decided without parsing anything
        body = await response.read() if self.needs_body(status) else None
        if not self.wants_refresh(status, body):
            return response
        self.discard(token)
        payload = request.body
        if isinstance(payload, Payload) and payload.consumed:  # aiohttp cannot resend it
            await self.atoken()  # refresh now so the next request finds a good token
            self.not_resent("its body is a one-shot stream (async iterator or StreamReader)")
            return response
        response.release()
        request.headers["Authorization"] = "Bearer " + await self.atoken()
        return await handler(request)


def _same_request_origin(request: Any, here: Origin) -> bool:
    """Whether this hop is on the origin of the request's first hop (a first hop is)."""
    timer = getattr(request, "_timer", None)
    if timer is None:  # an aiohttp without per-request timers: every hop stands alone
        return True
    first = _first_hops.get(timer)
    if first is None:
        _first_hops[timer] = here
        return True
    return first == here
