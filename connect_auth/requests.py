"""``ConnectAuth`` for requests: ``session.auth = ConnectAuth(...)`` (``requests`` extra)."""

from __future__ import annotations

try:
    import requests
    import requests.auth
except ImportError as exc:  # an optional extra: say how to get it
    raise ImportError(
        "connect_auth.requests needs requests: pip install 'connect-auth[requests]'"
    ) from exc

from ._docs import shared_args
from ._requests_flow import RequestsFlow

__all__ = ["ConnectAuth"]


@shared_args
class ConnectAuth(RequestsFlow, requests.auth.AuthBase):
    """Attach a fresh Vercel Connect token to every request of a requests session.

    On a response whose status is in ``refresh_on`` (or that ``refresh_if``
    flags) from the origin the token was sent to, the token is refreshed once
    and the request resent once; a second failure is returned as it is. requests
    copies response hooks onto redirected requests: the hook ignores any answer
    from another origin, so no token ever follows a redirect. Bodies that cannot
    be replayed (generators, iterators) are not resent.
    """
