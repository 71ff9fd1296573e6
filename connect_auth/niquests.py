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
from ._requests_flow import RequestsFlow

__all__ = ["AsyncConnectAuth", "ConnectAuth"]


class ConnectAuth(RequestsFlow, niquests.auth.AuthBase):
    """Attach a fresh Vercel Connect token to every request of a ``niquests.Session``.

    The same behaviour as `connect_auth.requests.ConnectAuth`: one
    refresh and one resend on a refusal from the origin the token was sent to,
    never a token on another origin, one-shot bodies not resent.
    For ``niquests.AsyncSession`` use `AsyncConnectAuth`. Arguments: see *Adapter
    arguments* in the API reference.
    """

    def _before_blocking_fetch(self) -> None:
        """Say once in the log when a fetch blocks a running event loop."""
        if (
            not self._warned_loop
            and _in_event_loop()
            and self.client.cached(self.request, self.vercel_token) is None
        ):
            self._warned_loop = True
            log.warning(
                "connect_auth: fetching a %s token blocks this thread's event loop; "
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


class AsyncConnectAuth(RequestsFlow, niquests.auth.AsyncAuthBase):
    """Attach a fresh Vercel Connect token to every request of a ``niquests.AsyncSession``.

    Tokens are fetched without blocking the event loop, and concurrent tasks
    share one fetch. Behaviour and arguments as for `ConnectAuth`.
    """

    async def __call__(self, r: Any) -> Any:
        """niquests' async auth hook: attach a token and watch the answer."""
        if not self._wants(r):
            return r
        self._arm(r, await self.atoken(), self._aon_response)
        return r

    async def _aon_response(self, response: Any, **send_kwargs: Any) -> Any:
        status = response.status_code
        body = await response.content if self.needs_body(status) else None
        if not self.wants_refresh(status, body):
            return response
        flow = self._after(response, self._aon_response)
        token: Any = None
        while True:  # its only effect is NEED_TOKEN
            try:
                flow.send(token)
            except StopIteration as done:
                retry = done.value
                break
            token = await self.atoken()
        if retry is None:
            return response
        await response.content  # drain so the connection can be reused
        await response.close()
        new = await response.connection.send(retry, **send_kwargs)
        new.history.append(response)
        new.request = retry
        return new
