"""The refusal flow bound to requests-style libraries (requests and niquests).

Both call ``auth(prepared_request)`` before sending and run response hooks after,
so the request is armed in the auth hook and the answer judged in the response
hook. What arming gave rides on the prepared request itself: requests
and niquests copy hooks, never attributes, onto redirected requests and resends,
so an answer to any request but this one finds none and is never acted on, and no
token can follow a redirect through a resend.
"""

from __future__ import annotations

from typing import Any

from ._adapter import Armed, ConnectAuthBase, Rewind, no_rewind, origin_of, rewinder
from ._refusal import Done, ReadBody, aadvance, advance, refusal_flow

__all__ = ["RequestsFlow"]


class RequestsFlow(ConnectAuthBase):
    """``ConnectAuth`` for requests-style sessions (the sync hooks live here)."""

    def __call__(self, r: Any) -> Any:
        """requests' auth hook: attach a token and watch the answer."""
        armed = self.arm(r)
        if armed is not None:
            r._connect_auth = armed
            r.hooks["response"].append(self._on_response)
        return r

    def _on_response(self, response: Any, **send_kwargs: Any) -> Any:
        return self._judge(response, send_kwargs)

    def _judge(self, response: Any, send_kwargs: dict[str, Any]) -> Any:
        """Run the refusal flow for ``response`` when it is a refusal."""
        armed = _armed(self, response, send_kwargs)
        if armed is None or not self.refused(response):
            return response
        flow = refusal_flow(self, self, response.request, response, armed)
        answer = None
        while type(retry := advance(flow, answer, self)) is not Done:
            answer = response = _resend(response, retry, send_kwargs)
        return response

    # -- the binding ----------------------------------------------------------------

    def scheme_of(self, request: Any) -> str:
        url = request.url or ""
        return "https" if url.startswith("https://") else origin_of(url)[0]

    def host_and_port(self, request: Any) -> tuple[str, int | None]:
        _, host, port = origin_of(request.url or "")
        return host, port

    def same_hop(self, request: Any, response: Any) -> bool:
        return True  # only the armed request's own answer reaches the flow

    def for_resend(self, request: Any, response: Any) -> Any:
        # Redirects of the resend are built from it: it carries the new token, as does
        # the original. The resend carries no hook of ours: one resend, never a loop.
        retry = request.copy()
        retry.hooks["response"] = [
            h for h in retry.hooks["response"] if getattr(h, "__self__", None) is not self
        ]
        return retry

    def rewinder(self, request: Any) -> Rewind | None:
        body = request.body
        return no_rewind if body is None or type(body) is bytes else rewinder(body)

    def read_body(self, read: ReadBody) -> bytes | None:
        response = read.response
        if not (read.whole or _read_anyway(response)):
            return None  # a streamed body of unknown length stays the caller's
        body = response.content
        return body if isinstance(body, bytes) and len(body) <= read.limit else None


class AsyncRequestsFlow(RequestsFlow):
    """``ConnectAuth`` for async requests-style sessions (niquests' ``AsyncSession``)."""

    async def __call__(self, r: Any) -> Any:
        """The async auth hook: attach a token without blocking the event loop."""
        armed = await self.aarm(r)
        if armed is not None:
            r._connect_auth = armed
            r.hooks["response"].append(self._aon_response)
        return r

    async def _aon_response(self, response: Any, **send_kwargs: Any) -> Any:
        armed = _armed(self, response, send_kwargs)
        if armed is None or not await self.arefused(response):
            return response
        flow = refusal_flow(self, self, response.request, response, armed)
        answer = None
        while type(retry := await aadvance(flow, answer, self)) is not Done:
            await response.content  # drain, so the connection can be reused
            await response.close()
            new = await response.connection.send(retry, **send_kwargs)
            new.history.append(response)
            new.request = retry
            answer = response = new
        return response

    async def aread_body(self, read: ReadBody) -> bytes | None:
        response = read.response
        if not (read.whole or _read_anyway(response)):
            return None
        body = await response.content
        return body if isinstance(body, bytes) and len(body) <= read.limit else None


def _armed(auth: RequestsFlow, response: Any, send_kwargs: dict[str, Any]) -> Armed | None:
    """What arming gave the request this answers, when the answer may be a refusal
    (taken: the flow runs once); None for the common answer, a redirected request or
    a resend. (The status first: each attribute of a niquests response costs a
    Python-level lookup.)"""
    if not auth.may_refuse(response.status_code):
        return None
    armed: Armed | None = response.request.__dict__.pop("_connect_auth", None)
    if armed is not None:
        response._connect_auth_streamed = bool(send_kwargs.get("stream"))
    return armed


def _read_anyway(response: Any) -> bool:
    """Whether a body of unknown length may be read for the predicate: only when the
    caller did not ask to stream it (the session reads it whole next anyway)."""
    return not getattr(response, "_connect_auth_streamed", True)


def _resend(response: Any, retry: Any, send_kwargs: dict[str, Any]) -> Any:
    response.content  # noqa: B018 - drain, so the connection can be reused
    response.close()
    new = response.connection.send(retry, **send_kwargs)
    new.history.append(response)
    new.request = retry
    return new
