"""WSGI and ASGI middlewares that scope the incoming ``x-vercel-oidc-token``.

On Vercel the runtime delivers the function's OIDC token per request in this
header; the middlewares make it the credential for Connect calls made while
the request is handled.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from ._oidc import oidc_token_scope

__all__ = ["OidcASGIMiddleware", "OidcWSGIMiddleware"]

_WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
_ASGIApp = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
    Awaitable[None],
]


class OidcWSGIMiddleware:
    """Wrap a WSGI app so Connect calls made while it runs use the request's token.

    The scope covers the application call; a streaming response body that calls
    Connect while it is iterated should fetch its token before returning.
    """

    def __init__(self, app: _WSGIApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        token = environ.get("HTTP_X_VERCEL_OIDC_TOKEN") or None
        with oidc_token_scope(token):
            return self.app(environ, start_response)


class OidcASGIMiddleware:
    """Wrap an ASGI app so Connect calls made in the request use its token."""

    def __init__(self, app: _ASGIApp) -> None:
        self.app = app

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        token = None
        if scope.get("type") in ("http", "websocket"):
            for name, value in scope.get("headers", ()):
                if name.lower() == b"x-vercel-oidc-token":
                    token = value.decode("latin-1") or None
        with oidc_token_scope(token):
            await self.app(scope, receive, send)
