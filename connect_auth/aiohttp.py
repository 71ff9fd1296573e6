"""``ConnectAuth`` for aiohttp, as a client middleware (``aiohttp`` extra, aiohttp 3.12+).

``aiohttp.ClientSession(middlewares=(ConnectAuth(...),))``
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

try:
    from aiohttp import ClientHandlerType, ClientRequest, ClientResponse
    from aiohttp.payload import AsyncIterablePayload
except ImportError as exc:  # an optional extra, or an aiohttp without client middlewares
    raise ImportError(
        "connect_auth.aiohttp needs aiohttp 3.12 or later: pip install 'connect-auth[aiohttp]'"
    ) from exc

from ._adapter import ConnectAuthBase, Rewind, no_rewind
from ._docs import shared_args
from ._private import aiohttp_request_timer
from ._refusal import Done, ReadBody, aadvance, refusal_flow

__all__ = ["ConnectAuth"]

Origin = tuple[str, str, int | None]

# aiohttp follows redirects by running the middleware chain again for each hop, in
# the caller's task. Every hop of one ``session.request`` call shares its timer
# object: the first hop records (timer, origin) here, and a later hop (the same
# timer) gets a token only if it stays on that origin. The timer is held, not
# weakly referenced (aiohttp's timers take no weak references), and compared by
# identity, so a new request can never pass for a hop of an old one.
_first_hop: ContextVar[tuple[object, Origin] | None] = ContextVar(
    "connect_auth_aiohttp_first_hop", default=None
)


class _Binding(ConnectAuthBase):
    """How the shared refusal flow reads aiohttp's requests and responses."""

    def scheme_of(self, request: Any) -> str:
        return str(request.url.scheme)

    def host_and_port(self, request: Any) -> tuple[str, int | None]:
        url = request.url
        return url.host or "", url.port

    def status(self, response: Any) -> int:
        return int(response.status)

    def same_hop(self, request: Any, response: Any) -> bool:
        return True  # the middleware sees one hop at a time

    def for_resend(self, request: Any, response: Any) -> Any:
        return request

    def rewinder(self, request: Any) -> Rewind | None:
        # aiohttp sends every other payload again by itself (bytes, forms, files).
        return None if isinstance(request.body, AsyncIterablePayload) else no_rewind

    async def aread_body(self, read: ReadBody) -> bytes | None:
        if not read.whole:
            return None  # a body of unknown length stays unread until the caller reads it
        body = await read.response.read()  # kept by aiohttp for read(), text(), json()
        return bytes(body)


@shared_args
class ConnectAuth(_Binding):
    """An aiohttp client middleware that attaches a fresh Vercel Connect token.

    On a response whose status is in ``refresh_on`` (or that ``refresh_if``
    flags), the token is refreshed once and the request resent once; a second
    failure is returned as it is. A redirect hop to another origin gets no
    token. Bodies aiohttp cannot send twice (async generators, ``StreamReader``)
    are not resent. Token fetches never block the event loop.
    """

    async def __call__(self, request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        """The middleware: attach, send, and on a refusal refresh once and resend once."""
        url = request.url
        timer = aiohttp_request_timer(request)
        if timer is None:  # a hop cannot be told from a request: only listed hosts
            if self.hosts is None:
                return await handler(request)
        elif not _on_first_origin(timer, (url.scheme, url.host or "", url.port)):
            return await handler(request)
        armed = await self.aarm(request)
        response = await handler(request)
        if armed is None or not self.may_refuse(response.status):
            return response
        if not await self.arefused(response):
            return response
        flow = refusal_flow(self, self, request, response, armed)
        answer = None
        while type(to_send := await aadvance(flow, answer, self)) is not Done:
            response.release()  # the refused answer: its connection can be reused
            answer = response = await handler(to_send)
        return response


def _on_first_origin(timer: object, here: Origin) -> bool:
    """Whether this hop is on the origin of its request's first hop (a first hop is);
    ``timer`` is what every hop of one request shares."""
    first = _first_hop.get()
    if first is None or first[0] is not timer:
        _first_hop.set((timer, here))
        return True
    return first[1] == here
