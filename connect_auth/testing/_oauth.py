"""The emulator's OAuth 2 server face: Connect as the identity provider behind "Sign in
with ..." (``/oauth/authorize``, ``/oauth/token``, ``/oauth/userinfo``, ``/oauth/revoke``).

No HTTP here: `connect_auth.testing` parses requests and calls these methods, which
answer ``(status, json_body)``. The client is the connector; its secret is a Vercel
OIDC token the emulator signed, checked at every token request.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._config import is_loopback_host, unambiguous_url

__all__ = ["OAuthGrant", "OAuthServer", "pkce_s256"]

Answer = tuple[int, dict[str, Any]]
_CODE_TTL = 60.0
_TOKEN_TTL = 3600


def pkce_s256(verifier: str) -> str:
    """The S256 code challenge of a PKCE verifier (RFC 7636)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass
class OAuthGrant:
    """A user's sign-in through one connector: its code, then its tokens.

    Attributes:
        connector: the connector uid signed in through.
        user: the user id that signed in.
        redirect_uri: the callback the code was sent to.
        scope: the scopes granted, space-separated.
        code_challenge: the PKCE challenge the code was bound to.
        team_id: the Vercel team, when the sign-in named one.
        code: the authorization code (hidden from ``repr``).
        code_expires: when the code lapses, in seconds since the epoch.
        code_used: whether the code was exchanged (a code works once).
        access_tokens: the access tokens issued (hidden from ``repr``).
        refresh_token: the current refresh token (hidden from ``repr``).
        revoked: whether the grant was revoked.
    """

    connector: str
    user: str
    redirect_uri: str
    scope: str
    code_challenge: str
    team_id: str | None
    code: str = field(repr=False)
    code_expires: float
    code_used: bool = False
    access_tokens: set[str] = field(default_factory=set, repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    revoked: bool = False


class OAuthServer:
    """Codes, PKCE checks, access and refresh tokens, and userinfo; thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.grants: list[OAuthGrant] = []
        self._by_code: dict[str, OAuthGrant] = {}
        self._by_access: dict[str, tuple[OAuthGrant, float]] = {}
        self._by_refresh: dict[str, OAuthGrant] = {}

    def check_authorize(
        self, query: Mapping[str, str], registered: Callable[[str], Sequence[str] | None]
    ) -> str | None:
        """Why an authorize request cannot be served (shown on the page), or None.

        ``registered(client_id)`` gives the connector's registered redirect URIs, or
        None for an unknown connector. A code goes only to one of those or to a
        loopback address, never to wherever a link says.
        """
        if query.get("response_type") != "code":
            return "response_type must be 'code'"
        allowed = registered(query.get("client_id", ""))
        if allowed is None:
            return f"unknown client_id {query.get('client_id')!r}: it must be a connector uid"
        redirect_uri = query.get("redirect_uri", "")
        if redirect_uri not in allowed:
            try:
                redirect = unambiguous_url("redirect_uri", redirect_uri)
            except ValueError as exc:
                return str(exc)
            if redirect.scheme not in ("http", "https") or not is_loopback_host(
                redirect.hostname or ""
            ):
                return (
                    f"redirect_uri {redirect_uri!r} is neither a loopback address nor one "
                    "registered for this connector (ConnectorSpec.redirect_uris)"
                )
        if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            return "PKCE is required: code_challenge with code_challenge_method=S256"
        return None

    def approve(self, query: Mapping[str, str], user: str) -> OAuthGrant:
        """The user approved: a one-time code for the app's callback."""
        grant = OAuthGrant(
            connector=query["client_id"],
            user=user,
            redirect_uri=query["redirect_uri"],
            scope=query.get("scope", ""),
            code_challenge=query["code_challenge"],
            team_id=query.get("teamId"),
            code=secrets.token_urlsafe(24),
            code_expires=self._clock() + _CODE_TTL,
        )
        with self._lock:
            self.grants.append(grant)
            self._by_code[grant.code] = grant
        return grant

    def handles(self, form: Mapping[str, str]) -> bool:
        """Whether a token request belongs to a sign-in: a code exchange, or a refresh
        token this server issued. Any other request gets an app token (the emulator's
        service-credential face, which OAuth client libraries use in the benchmarks)."""
        kind = form.get("grant_type")
        if kind == "refresh_token":
            with self._lock:
                return form.get("refresh_token", "") in self._by_refresh
        return kind == "authorization_code"

    def token(self, form: Mapping[str, str], client_id: str, client_ok: bool) -> Answer:
        """``POST /oauth/token``: the ``authorization_code`` and ``refresh_token`` grants.
        ``client_ok`` says whether the Basic credentials held a valid OIDC token."""
        kind = form.get("grant_type")
        if not client_ok:
            return 401, _oauth_error(
                "invalid_client", "the client secret is not a valid OIDC token"
            )
        with self._lock:
            if kind == "authorization_code":
                grant = self._by_code.get(form.get("code", ""))
                why = self._code_problem(grant, form, client_id)
                if why is not None:
                    return 400, _oauth_error("invalid_grant", why)
                assert grant is not None
                grant.code_used = True
                grant.refresh_token = secrets.token_urlsafe(32)
                self._by_refresh[grant.refresh_token] = grant
            else:
                grant = self._by_refresh.get(form.get("refresh_token", ""))
                if grant is None or grant.revoked or grant.connector != client_id:
                    return 400, _oauth_error("invalid_grant", "unknown or revoked refresh_token")
            access = "emu_oauth_" + secrets.token_urlsafe(24)
            grant.access_tokens.add(access)
            self._by_access[access] = (grant, self._clock() + _TOKEN_TTL)
            return 200, {
                "access_token": access,
                "token_type": "Bearer",
                "expires_in": _TOKEN_TTL,
                "refresh_token": grant.refresh_token,
                "scope": grant.scope,
            }

    def _code_problem(
        self, grant: OAuthGrant | None, form: Mapping[str, str], client_id: str
    ) -> str | None:
        if grant is None or grant.code_used:
            return "unknown or already used code"
        if grant.code_expires <= self._clock():
            return "the code expired"
        if grant.connector != client_id:
            return "the code was issued to another client"
        if form.get("redirect_uri") != grant.redirect_uri:
            return "redirect_uri does not match the authorization request"
        verifier = form.get("code_verifier")
        if not verifier or pkce_s256(verifier) != grant.code_challenge:
            return "the PKCE code_verifier does not match the code_challenge"
        return None

    def userinfo(self, access_token: str | None) -> Answer:
        """``GET /oauth/userinfo`` with the bearer access token."""
        with self._lock:
            found = self._by_access.get(access_token or "")
        if found is None or found[0].revoked or found[1] <= self._clock():
            return 401, _oauth_error("invalid_token", "unknown, expired or revoked access token")
        grant = found[0]
        return 200, {
            "sub": grant.user,
            "name": grant.user.removeprefix("u_").title(),
            "email": f"{grant.user}@example.com",
            "email_verified": True,
            "connector": grant.connector,
        }

    def revoke(self, token: str) -> Answer:
        """``POST /oauth/revoke`` (RFC 7009): always 200; a refresh token ends the grant."""
        with self._lock:
            grant = self._by_refresh.get(token)
            if grant is not None:
                grant.revoked = True
            self._by_access.pop(token, None)
        return 200, {}


def _oauth_error(error: str, description: str) -> dict[str, Any]:
    return {"error": error, "error_description": description}
