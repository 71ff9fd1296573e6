"""The libraries users would otherwise pick, set up the way their docs suggest.

Every peer talks to the same emulator as connect_auth: vercel-connect to its
Connect API, the OAuth libraries to its ``/oauth/token`` endpoint (client id =
connector, client secret = the Vercel OIDC token).
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import requests

SLACK = "slack/acme-slack"


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Peers warn at import and use (authlib about httpx2, deprecations): not our noise."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def token_dict(token: str, expires_at: float | None = None) -> dict[str, Any]:
    """An OAuth token dict as authlib expects it."""
    return {
        "access_token": token,
        "token_type": "bearer",
        "expires_at": int(expires_at if expires_at is not None else time.time() + 3600),
    }


def authlib_httpx_auth(token: str) -> Any:
    """authlib's ``OAuth2Auth``, with a token in hand (an ``httpx2.Auth`` since authlib 1.7)."""
    with quiet():
        from authlib.integrations.httpx_client import OAuth2Auth

        return OAuth2Auth(token_dict(token))  # type: ignore[no-any-return]


def authlib_requests_auth(token: str) -> requests.auth.AuthBase:
    """authlib's ``OAuth2Auth`` for requests."""
    with quiet():
        from authlib.integrations.requests_client import OAuth2Auth

        return OAuth2Auth(token_dict(token))  # type: ignore[no-any-return]


def authlib_client(base_url: str, oidc: str, *, asynchronous: bool, **kw: Any) -> Any:
    """authlib's OAuth2Client with client credentials and an expired token (the cold state:
    authlib refuses to send without a token, and refetches an expired one)."""
    with quiet():
        from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuth2Client

        cls = AsyncOAuth2Client if asynchronous else OAuth2Client
        return cls(
            client_id=quote(SLACK, safe=""),
            client_secret=oidc,
            token_endpoint=f"{base_url}/oauth/token",
            grant_type="client_credentials",
            token=token_dict("expired", expires_at=1),
            **kw,
        )


def httpx_auth_client_credentials(base_url: str, oidc: str) -> httpx.Auth:
    """httpx-auth's ``OAuth2ClientCredentials`` against the emulator's token endpoint."""
    with quiet():
        import httpx_auth

        httpx_auth.OAuth2.token_cache.clear()
        return httpx_auth.OAuth2ClientCredentials(  # type: ignore[no-any-return]
            f"{base_url}/oauth/token", client_id=SLACK, client_secret=oidc
        )


def google_session(
    base_url: str, oidc: str, token: str | None, adapter: requests.adapters.BaseAdapter | None
) -> requests.Session:
    """google-auth's ``AuthorizedSession``; ``token=None`` starts cold (refresh on first use)."""
    with quiet():
        import datetime

        from google.auth.transport.requests import AuthorizedSession
        from google.oauth2.credentials import Credentials

        expiry = (
            datetime.datetime.now(datetime.UTC).replace(tzinfo=None) + datetime.timedelta(hours=1)
            if token
            else None
        )
        creds = Credentials(
            token=token,
            expiry=expiry,
            refresh_token="emulator-refresh",
            token_uri=f"{base_url}/oauth/token",
            client_id=SLACK,
            client_secret=oidc,
        )
        session = AuthorizedSession(creds)
        if adapter is not None:
            session.mount("https://", adapter)
        return session


@contextlib.contextmanager
def vercel_connect_sync(base_url: str) -> Iterator[Any]:
    """Vercel's ``vercel-connect`` (sync surface) in a session pointed at the emulator.

    Yields a zero-argument function returning a token the documented way.
    """
    with quiet():
        import vercel.api
        import vercel.connect.sync as vc
        from vercel.connect import ConnectAppTokenSubject, ConnectServiceOptions

        subject = ConnectAppTokenSubject()
        with vercel.api.session(service_options=[ConnectServiceOptions(base_url=base_url)]):
            yield lambda: vc.get_token(SLACK, subject=subject)


@contextlib.asynccontextmanager
async def vercel_connect_async(base_url: str) -> Any:
    """The async surface of ``vercel-connect``; yields an async token function."""
    with quiet():
        import vercel.api
        import vercel.connect as vca
        from vercel.connect import ConnectAppTokenSubject, ConnectServiceOptions

        subject = ConnectAppTokenSubject()

        async def get() -> str:
            return await vca.get_token(SLACK, subject=subject)  # type: ignore[no-any-return]

        async with vercel.api.session(service_options=[ConnectServiceOptions(base_url=base_url)]):
            yield get
