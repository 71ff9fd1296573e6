"""``ConnectAuth`` for niquests: ``session.auth = ConnectAuth(...)`` (``niquests`` extra).

``ConnectAuth`` serves ``niquests.Session``; ``AsyncConnectAuth`` serves
``niquests.AsyncSession`` without blocking its event loop (niquests calls an
auth object's ``__call__`` synchronously unless it is a coroutine function).
"""

from __future__ import annotations

import asyncio
from typing import Any

try:
    import niquests
    import niquests.auth
except ImportError as exc:  # an optional extra: say how to get it
    raise ImportError(
        "connect_auth.niquests needs niquests: pip install 'connect-auth[niquests]'"
    ) from exc

from ._adapter import log
from ._docs import shared_args
from ._flight import spawn_detached
from ._requests_flow import AsyncRequestsFlow, RequestsFlow

__all__ = ["AsyncConnectAuth", "ConnectAuth"]


@shared_args
class ConnectAuth(RequestsFlow, niquests.auth.AuthBase):
    """Attach a fresh Vercel Connect token to every request of a ``niquests.Session``.

    The same behaviour as `connect_auth.requests.ConnectAuth`: one
    refresh and one resend on a refusal from the origin the token was sent to,
    never a token on another origin, one-shot bodies not resent.
    For ``niquests.AsyncSession`` use `AsyncConnectAuth`: this class refuses to
    serve one (its first response raises ``TypeError``).
    """

    def _on_response(self, response: Any, **send_kwargs: Any) -> Any:
        # The class, not isinstance: that would read niquests' lazy __class__ attribute.
        if issubclass(type(response), niquests.AsyncResponse):
            # Close the answer on its loop, or its connection leaks with the error.
            spawn_detached(asyncio.get_running_loop(), response.close)
            raise TypeError(
                "connect_auth.niquests.ConnectAuth serves niquests.Session; with "
                "niquests.AsyncSession use connect_auth.niquests.AsyncConnectAuth"
            )
        return self._judge(response, send_kwargs)

    def _before_blocking_fetch(self) -> None:
        """Say once in the log when a fetch blocks a running event loop."""
        if not self._warned_loop and _in_event_loop():
            self._warned_loop = True
            log.warning(
                "fetching a %s token blocks this thread's event loop; "
                "with niquests.AsyncSession use connect_auth.niquests.AsyncConnectAuth",
                self.request.connector,
            )

    _warned_loop = False


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@shared_args
class AsyncConnectAuth(AsyncRequestsFlow, niquests.auth.AsyncAuthBase):
    """Attach a fresh Vercel Connect token to every request of a ``niquests.AsyncSession``.

    Tokens are fetched without blocking the event loop, and concurrent tasks
    share one fetch. Behaviour as for `ConnectAuth`.
    """
