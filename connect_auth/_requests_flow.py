"""The auth flow of requests-style libraries (requests and niquests, sync and async).

Both libraries call ``auth(prepared_request)`` before sending and run response
hooks after. The decisions after a refusal live in `RequestsFlow._after`,
an I/O-free generator that the sync and async hooks both run, so they cannot
drift apart.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from ._adapter import NEED_TOKEN, ConnectAuthBase, Rewind, no_rewind, origin_of, rewinder

__all__ = ["RequestsFlow"]


class RequestsFlow(ConnectAuthBase):
    """``ConnectAuth`` for requests-style sessions (the sync hook lives here)."""

    def __call__(self, r: Any) -> Any:
        """requests' auth hook: attach a token and watch the answer."""
        if not self._wants(r):
            return r
        self._arm(r, self.token(), self._on_response)
        return r

    def _wants(self, r: Any) -> bool:
        url = r.url or ""
        return (self.hosts is None and url.startswith("https://")) or self.attaches(*origin_of(url))

    def _arm(self, r: Any, token: str, hook: Any) -> None:
        r.headers["Authorization"] = "Bearer " + token
        body = r.body
        # What the hook needs rides on this request object itself. requests and
        # niquests copy hooks, never attributes, onto redirected requests and
        # resends, so an answer to any request but this one finds nothing and is
        # never acted on: no token can follow a redirect through a resend.
        r._connect_auth = (
            token,
            no_rewind if body is None or type(body) is bytes else rewinder(body),
        )
        r.hooks["response"].append(hook)

    def _after(self, response: Any, hook: Any) -> Generator[Any, Any, Any]:
        """What to do with a response that means "bad token"; I/O-free.

        Yields ``NEED_TOKEN`` for the driver to satisfy and returns the request to
        resend, or ``None`` to hand ``response`` back.
        """
        sent = response.request
        context: tuple[str, Rewind | None] | None = getattr(sent, "_connect_auth", None)
        if context is None:
            return None  # a redirected request, or a resend: never act on it
        token, rewind = context
        self.discard(token)
        if rewind is None:
            yield NEED_TOKEN  # refresh now so the next request finds a good token
            self.not_resent("its body is a one-shot stream (generator or iterator)")
            return None
        rewind()
        # Redirects of the resend are built from the original request: give it the
        # new token too, or a same-origin redirect would carry the refused one.
        sent.headers["Authorization"] = f"Bearer {(yield NEED_TOKEN)}"
        retry = sent.copy()
        # The resend carries no hook of ours: one resend, never a loop.
        retry.hooks["response"] = [h for h in retry.hooks["response"] if h != hook]
        return retry

    def _on_response(self, response: Any, **send_kwargs: Any) -> Any:
        status = response.status_code
        body = response.content if self.needs_body(status) else None
        if not self.wants_refresh(status, body):
            return response  # the common case
        retry = _run(self._after(response, self._on_response), self.token)
        if retry is None:
            return response
        response.content  # noqa: B018 - drain so the connection can be reused
        response.close()
        new = response.connection.send(retry, **send_kwargs)
        new.history.append(response)
        new.request = retry
        return new


def _run(flow: Generator[Any, Any, Any], token: Any) -> Any:
    """Drive a sync `RequestsFlow._after`: its only effect is ``NEED_TOKEN``."""
    value: Any = None
    while True:
        try:
            flow.send(value)
        except StopIteration as done:
            return done.value
        value = token()
