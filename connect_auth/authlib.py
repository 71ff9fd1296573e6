"""Sign in via Vercel Connect with authlib: "Sign in with Slack/GitHub/..." for
Starlette/FastAPI, Flask and Django, with no client secret stored.

Connect is also an OAuth 2 server. The client id is the connector; the client
secret is the app's current Vercel OIDC token, looked up afresh (as `get_token`
does, request-scoped header included) at the moment of each token request and
sent as HTTP Basic. Everything else is authlib's own machinery: registration,
PKCE, state, token parsing, ``userinfo`` and refresh::

    from authlib.integrations.starlette_client import OAuth
    from connect_auth.authlib import register_connect

    oauth = OAuth()
    register_connect(oauth, "slack", connector="slack/acme-slack")
    # await oauth.slack.authorize_redirect(request, redirect_uri)
    # token = await oauth.slack.authorize_access_token(request)  # token["userinfo"]

Needs ``pip install 'connect-auth[authlib]'``.
"""

from __future__ import annotations

import base64
import inspect
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

try:
    import authlib  # noqa: F401 - the extra's presence, said up front
except ImportError as exc:  # an optional extra: say how to get it
    raise ImportError(
        "connect_auth.authlib needs authlib: pip install 'connect-auth[authlib]'"
    ) from exc

from ._config import is_secure_url, unambiguous_url
from ._errors import OidcTokenError
from ._models import check_connector
from ._oidc import hidden, jwt_claims, resolve_credential

__all__ = ["DEFAULT_OAUTH_URL", "DEFAULT_SCOPES", "connect_client_auth", "register_connect"]

DEFAULT_OAUTH_URL = "https://connect.vercel.com"
#: Asked for when ``scopes`` is not given; ``offline_access`` is always added.
DEFAULT_SCOPES = ("openid", "profile", "email")


def register_connect(
    oauth: Any,
    name: str,
    *,
    connector: str,
    scopes: Sequence[str] | None = None,
    vercel_token: str | None = None,
    oauth_base_url: str | None = None,
    **kwargs: Any,
) -> Any:
    """Register Vercel Connect as the OAuth provider ``name`` in an authlib registry.

    Args:
        oauth: authlib's ``OAuth`` registry for Starlette/FastAPI, Flask or Django.
        name: the client's name in the registry (``oauth.<name>``).
        connector: the connector uid (``slack/acme-slack``) or id; it is the
            OAuth client id.
        scopes: the scopes to ask for (default ``openid profile email``);
            ``offline_access`` is always added, so refresh tokens are issued.
        vercel_token: the Vercel credential used as the client secret; by
            default it is looked up at each token request (the request's
            ``x-vercel-oidc-token`` header, ``VERCEL_OIDC_TOKEN_FILE``,
            ``VERCEL_OIDC_TOKEN``, ``.env.local``), since it rotates.
        oauth_base_url: the origin of Connect's OAuth server (default
            ``CONNECT_AUTH_OAUTH_URL``, else ``https://connect.vercel.com``); the
            paths stay ``/oauth/...``. ``http://`` only on loopback.
        **kwargs: more arguments of authlib's ``oauth.register`` (for example
            ``authorize_params``), except the ones this function sets.

    Returns:
        The registered authlib client (also ``oauth.<name>``). Its authorize URL
        carries ``teamId`` when the credential names its team, and
        ``authorize_access_token`` fills ``token["userinfo"]`` from Connect's
        userinfo endpoint.

    Raises:
        ValueError: an argument is invalid.
        TypeError: ``oauth`` is not an authlib OAuth registry.
    """
    check_connector(connector)
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"name must be a Python identifier such as 'slack', not {name!r}")
    if (
        not callable(getattr(oauth, "register", None))
        or getattr(oauth, "oauth2_client_cls", None) is None
    ):
        raise TypeError("oauth must be authlib's OAuth registry (Starlette, Flask or Django)")
    if vercel_token is not None and (not isinstance(vercel_token, str) or not vercel_token):
        raise ValueError("vercel_token must be a non-empty string or None")
    taken = {"client_id", "client_secret", "authorize_url", "access_token_url", "client_cls"}
    if taken & kwargs.keys():
        raise ValueError(f"register_connect sets {sorted(taken & kwargs.keys())} itself")
    origin = oauth_origin(oauth_base_url, os.environ)
    vercel_token = hidden(vercel_token)
    client_kwargs = dict(kwargs.pop("client_kwargs", None) or {})
    client_kwargs.update(
        scope=" ".join(connect_scopes(scopes)),
        code_challenge_method="S256",
        token_endpoint_auth_method=connect_client_auth(connector, vercel_token),
    )
    app_class = type(
        f"Connect{oauth.oauth2_client_cls.__name__}",
        (_ConnectApp, oauth.oauth2_client_cls),
        {"connect_vercel_token": vercel_token},
    )
    return oauth.register(
        name,
        client_id=connector,
        client_secret=None,
        authorize_url=f"{origin}/oauth/authorize",
        access_token_url=f"{origin}/oauth/token",
        userinfo_endpoint=f"{origin}/oauth/userinfo",
        revocation_endpoint=f"{origin}/oauth/revoke",
        client_kwargs=client_kwargs,
        client_cls=app_class,
        **kwargs,
    )


def connect_scopes(scopes: Sequence[str] | None) -> list[str]:
    """The scopes to ask for: ``scopes`` (default ``openid profile email``) plus
    ``offline_access``, once."""
    if scopes is None:
        chosen = list(DEFAULT_SCOPES)
    elif isinstance(scopes, str) or not all(isinstance(s, str) and s for s in scopes):
        raise TypeError("scopes must be a list of non-empty strings, such as ['openid', 'email']")
    else:
        chosen = list(scopes)
    return chosen if "offline_access" in chosen else [*chosen, "offline_access"]


def oauth_origin(explicit: str | None, environ: Mapping[str, str]) -> str:
    """``oauth_base_url`` > ``CONNECT_AUTH_OAUTH_URL`` > ``https://connect.vercel.com``."""
    chosen = explicit or environ.get("CONNECT_AUTH_OAUTH_URL", "").strip() or DEFAULT_OAUTH_URL
    parts = unambiguous_url("oauth_base_url", chosen)
    if not is_secure_url(chosen) or parts.query or parts.fragment:
        raise ValueError(
            f"oauth_base_url must be an https:// origin (http:// only on loopback), not {chosen!r}"
        )
    return chosen.rstrip("/")


def connect_client_auth(
    connector: str, vercel_token: str | None = None
) -> Callable[[Any, str, str, Any, Any], tuple[str, Any, Any]]:
    """authlib's token-endpoint client authentication for Connect: HTTP Basic
    ``urlenc(connector):urlenc(oidc_token)``, the token looked up at each request.

    `register_connect` installs it; pass it yourself as authlib's
    ``token_endpoint_auth_method`` to build a client by hand.

    Args:
        connector: the connector uid or id (the OAuth client id).
        vercel_token: a fixed Vercel credential; by default the current one is
            looked up at each token request, as `connect_auth.get_token` does.
    """

    def connect_client_secret_basic(
        client: Any, method: str, uri: str, headers: Any, body: Any
    ) -> tuple[str, Any, Any]:
        credential = resolve_credential(vercel_token, now=time.time())
        pair = f"{quote(connector, safe='')}:{quote(credential.value, safe='')}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        return uri, headers, body

    return connect_client_secret_basic


def team_id(token: str) -> str | None:
    """The ``owner_id`` claim of a Vercel OIDC token (unverified: it only fills in
    ``teamId`` on the authorize URL), or None."""
    owner = jwt_claims(token).get("owner_id")
    return owner if isinstance(owner, str) and owner else None


class _ConnectApp:
    """Mixed into the framework's authlib app class: ``teamId`` on the authorize URL,
    and ``userinfo`` after the code exchange. Sync or async as the framework is."""

    connect_vercel_token: str | None = None

    def create_authorization_url(self, redirect_uri: Any = None, **kwargs: Any) -> Any:
        if "teamId" not in kwargs:
            try:
                credential = resolve_credential(self.connect_vercel_token, now=time.time())
            except OidcTokenError:  # none yet: the URL works without teamId; the token
                owner = None  # request will say what is missing
            else:
                owner = team_id(credential.value)
            if owner is not None:
                kwargs["teamId"] = owner
        return super().create_authorization_url(redirect_uri, **kwargs)  # type: ignore[misc]

    def authorize_access_token(self, *args: Any, **kwargs: Any) -> Any:
        token = super().authorize_access_token(*args, **kwargs)  # type: ignore[misc]
        if inspect.isawaitable(token):
            return self._with_userinfo_async(token)
        if "userinfo" not in token:
            token["userinfo"] = self.userinfo(token=token)  # type: ignore[attr-defined]
        return token

    async def _with_userinfo_async(self, pending: Awaitable[dict[str, Any]]) -> dict[str, Any]:
        token = await pending
        if "userinfo" not in token:
            token["userinfo"] = await self.userinfo(token=token)  # type: ignore[attr-defined]
        return token
