"""WSGI and ASGI middlewares that scope the incoming ``x-vercel-oidc-token``.

On Vercel the runtime delivers the function's OIDC token per request in this
header; the middlewares make it the credential for Connect calls made while
the request is handled. Off Vercel any client could send the header and so pick
the credential, so it is honoured only on Vercel (``VERCEL=1``) unless the app
opts in with ``trust_header=True``.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from ._oidc import oidc_token_scope

__all__ = ["OidcASGIMiddleware", "OidcWSGIMiddleware"]

_WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
_ASGIApp = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
    Awaitable[None],
]


def _trusted(trust_header: bool | None) -> bool:
    """Honour the header: as told, else only when running on Vercel."""
    if trust_header is not None:
        return trust_header
    return os.environ.get("VERCEL") == "1"


class OidcWSGIMiddleware:
    """Wrap a WSGI app so Connect calls made while it runs use the request's token.

    The scope covers the application call; a streaming response body that calls
    Connect while it is iterated should fetch its token before returning.

    Args:
        app: the WSGI application.
        trust_header: honour ``x-vercel-oidc-token``. By default only on Vercel
            (``VERCEL=1``, which the platform sets); elsewhere a client could
            choose the credential, so pass ``True`` only behind a proxy that sets
            or strips the header itself.
    """

    def __init__(self, app: _WSGIApp, *, trust_header: bool | None = None) -> None:
        self.app = app
        self.trust_header = trust_header

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if not _trusted(self.trust_header):
            return self.app(environ, start_response)
        token = environ.get("HTTP_X_VERCEL_OIDC_TOKEN") or None
        with oidc_token_scope(token):
            return self.app(environ, start_response)


class OidcASGIMiddleware:
    """Wrap an ASGI app so Connect calls made in the request use its token.

    Args:
        app: the ASGI application.
        trust_header: as for `OidcWSGIMiddleware`.
    """

    def __init__(self, app: _ASGIApp, *, trust_header: bool | None = None) -> None:
        self.app = app
        self.trust_header = trust_header

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        token = None
        if scope.get("type") in ("http", "websocket") and _trusted(self.trust_header):
            for name, value in scope.get("headers", ()):
                if name.lower() == b"x-vercel-oidc-token":
                    token = value.decode("latin-1") or None
        with oidc_token_scope(token):
            await self.app(scope, receive, send)
