"""The emulator's Vercel API face, for local credential refresh: Vercel CLI logins
(OAuth discovery and the ``refresh_token`` grant) and project tokens
(``POST /v1/projects/{id}/token``).

No HTTP here: `connect_auth.testing` routes requests to these methods, which
answer ``(status, json_body)``.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CliLogin", "VercelApi"]

Answer = tuple[int, dict[str, Any]]
#: Where the emulator's CLI logins are refreshed.
TOKEN_PATH = "/login/oauth/token"
CLI_CLIENT_ID = "cl_HYyOPBNtFMfHhaUn9L4QPfTZz6TP47bp"


@dataclass
class CliLogin:
    """A Vercel CLI login: what ``vercel login`` keeps in ``auth.json``.

    Attributes:
        token: the CLI's access token (hidden from ``repr``).
        refresh_token: its refresh token (hidden from ``repr``).
        expires_at: when the access token expires, in seconds since the epoch.
    """

    token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: int

    def auth_json(self) -> dict[str, Any]:
        """The ``auth.json`` content the Vercel CLI writes."""
        return {
            "token": self.token,
            "refreshToken": self.refresh_token,
            "expiresAt": self.expires_at,
        }


class VercelApi:
    """CLI logins and the project tokens they mint; thread-safe.

    Args:
        mint: an OIDC token for ``(project_id, team_id)``, signed by the emulator.
        projects: the project ids the emulator knows, with their team.
        clock: seconds since the epoch.
    """

    def __init__(
        self,
        mint: Callable[[str, str], str],
        projects: Mapping[str, str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._mint = mint
        self._projects = dict(projects)
        self._clock = clock
        self._lock = threading.Lock()
        self._access: dict[str, float] = {}  # CLI token -> expiry
        self._refresh: set[str] = set()
        #: How many CLI logins were refreshed, and project tokens minted.
        self.refreshes = 0
        self.project_tokens = 0

    def login(self, *, lifetime: float = 3600.0) -> CliLogin:
        """A new CLI login.

        Args:
            lifetime: seconds its token stays valid (negative: already expired, as
                after a day away).
        """
        token, refresh = "vcli_" + secrets.token_urlsafe(18), "vclr_" + secrets.token_urlsafe(18)
        expires_at = int(self._clock() + lifetime)
        with self._lock:
            self._access[token] = expires_at
            self._refresh.add(refresh)
        return CliLogin(token, refresh, expires_at)

    def forget_logins(self) -> None:
        """Invalidate every CLI login and refresh token (as a ``vercel logout`` would)."""
        with self._lock:
            self._access.clear()
            self._refresh.clear()

    def discovery(self, base_url: str) -> Answer:
        """The OAuth discovery document (``/.well-known/openid-configuration``).

        Args:
            base_url: the emulator's origin, the issuer it names.
        """
        return 200, {"issuer": base_url, "token_endpoint": base_url + TOKEN_PATH}

    def refresh(self, form: Mapping[str, str]) -> Answer:
        """The ``refresh_token`` grant for the CLI's client: a new token and a new
        refresh token (the old one is spent).

        Args:
            form: the token endpoint's form fields.
        """
        if form.get("grant_type") != "refresh_token" or form.get("client_id") != CLI_CLIENT_ID:
            return 400, {"error": "unsupported_grant_type"}
        with self._lock:
            if form.get("refresh_token") not in self._refresh:
                return 400, {"error": "invalid_grant"}
            self._refresh.discard(form["refresh_token"])
            self.refreshes += 1
        login = self.login()
        return 200, {
            "access_token": login.token,
            "refresh_token": login.refresh_token,
            "token_type": "Bearer",
            "expires_in": 3600,
        }

    def project_token(self, project_id: str, team_id: str | None, authorization: str) -> Answer:
        """``POST /v1/projects/{id}/token``: an OIDC token for a project, for a valid
        CLI login of its team.

        Args:
            project_id: the project in the path.
            team_id: the ``teamId`` query parameter, if any.
            authorization: the request's ``Authorization`` header.
        """
        token = authorization[7:] if authorization.startswith("Bearer ") else ""
        with self._lock:
            expires_at = self._access.get(token)
            if expires_at is None or expires_at <= self._clock():
                return 403, {"error": {"code": "forbidden", "message": "invalid CLI token"}}
        team = self._projects.get(project_id)
        if team is None or (team_id is not None and team_id != team):
            return 404, {"error": {"code": "not_found", "message": "project not found"}}
        with self._lock:
            self.project_tokens += 1
        return 200, {"token": self._mint(project_id, team)}
