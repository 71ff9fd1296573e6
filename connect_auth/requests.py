"""``ConnectAuth`` for requests: ``session.auth = ConnectAuth(...)`` (``requests`` extra)."""

from __future__ import annotations

from typing import Any

try:
    import requests
    import requests.auth
except ImportError as exc:  # an optional extra: say how to get it
    raise ImportError(
        "connect_auth.requests needs requests: pip install 'connect-auth[requests]'"
    ) from exc

from ._adapter import ConnectAuthBase, Rewind, no_rewind, origin_of, rewinder

__all__ = ["ConnectAuth"]


class ConnectAuth(ConnectAuthBase, requests.auth.AuthBase):
    """Attach a fresh Vercel Connect token to every request of a requests session.

    On a response whose status is in ``refresh_on`` (or that ``refresh_if``
    flags) from the origin the token was sent to, the token is refreshed once
    and the request resent once; a second failure is returned as it is. requests
    copies response hooks onto redirected requests: the hook ignores any answer
    from another origin, so no token ever follows a redirect. Bodies that cannot
    be replayed (generators, iterators) are not resent. Arguments: see
    :class:`connect_auth._adapter.ConnectAuthBase`.
    """

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        url = r.url or ""
        if (self.hosts is not None or not url.startswith("https://")) and not self.attaches(
            *origin_of(url)
        ):
            return r
        token = self.token()
        r.headers["Authorization"] = "Bearer " + token
        body = r.body
        # What the hook needs rides on this request object itself. requests copies
        # hooks, never attributes, onto redirected requests and resends, so an
        # answer to any request but this one finds nothing and is never acted on:
        # no token can follow a redirect through a refresh-and-resend.
        r._connect_auth = (  # type: ignore[attr-defined]
            token,
            no_rewind if body is None or type(body) is bytes else rewinder(body),
        )
        r.hooks["response"].append(self._on_response)
        return r

    def _on_response(self, response: requests.Response, **send_kwargs: Any) -> requests.Response:
        status = response.status_code
        if status not in self.refresh_on and self.refresh_if is None:
            return response  # the common case, decided without parsing anything
        sent = response.request
        context: tuple[str, Rewind | None] | None = getattr(sent, "_connect_auth", None)
        if context is None:
            return response  # a redirected request, or a resend: never act on it
        token, rewind = context
        body = response.content if self.needs_body(status) else None
        if not self.wants_refresh(status, body):
            return response
        self.discard(token)
        if rewind is None:
            self.token()  # refresh now so the next request finds a good token
            self.not_resent("its body is a one-shot stream (generator or iterator)")
            return response
        rewind()
        # requests builds redirects of the resend from the original request: give it the
        # new token too, or a same-origin redirect would carry the refused one.
        sent.headers["Authorization"] = f"Bearer {self.token()}"
        retry = sent.copy()
        # The resend carries no hook of ours: one resend, never a loop.
        retry.hooks["response"] = [h for h in retry.hooks["response"] if h != self._on_response]
        response.content  # noqa: B018 - drain so the connection can be reused
        response.close()
        adapter = response.connection
        new = adapter.send(retry, **send_kwargs)
        new.history.append(response)
        new.request = retry
        return new
