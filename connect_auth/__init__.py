"""connect_auth: short-lived provider tokens from Vercel Connect, for httpx and requests.

Quick start::

    from connect_auth import get_token
    token = get_token("slack/acme-slack", subject={"type": "app"})

Auth adapters live in `connect_auth.httpx`, `connect_auth.httpx2`
and `connect_auth.requests`; the local emulator in `connect_auth.testing`.
"""

from ._adapter import slack_invalid_auth
from ._api import (
    aget_token,
    aget_token_response,
    arevoke_token,
    clear_token_cache,
    default_client,
    delete_token_cache_entry,
    get_token,
    get_token_response,
    revoke_token,
    set_default_client,
)
from ._client import ConnectClient
from ._errors import (
    ClientNotEnabledForEnvironmentError,
    ClientNotLinkedToProjectError,
    ConnectError,
    ConnectorInstallationRequiredError,
    ConnectorNotFoundError,
    ConnectResponseError,
    ConnectUnavailableError,
    NoValidTokenError,
    OidcTokenError,
    UserAuthorizationRequiredError,
)
from ._middleware import OidcASGIMiddleware, OidcWSGIMiddleware
from ._models import (
    AppSubject,
    AppSubjectDict,
    ConnectorRef,
    JwtBearerSubject,
    JwtBearerSubjectDict,
    TokenExchangeSubject,
    TokenExchangeSubjectDict,
    TokenRequest,
    TokenResponse,
    UserSubject,
    UserSubjectDict,
)
from ._oidc import oidc_token_scope
from ._retry import RetryPolicy
from ._version import __version__

__all__ = [
    "AppSubject",
    "AppSubjectDict",
    "ClientNotEnabledForEnvironmentError",
    "ClientNotLinkedToProjectError",
    "ConnectClient",
    "ConnectError",
    "ConnectResponseError",
    "ConnectUnavailableError",
    "ConnectorInstallationRequiredError",
    "ConnectorNotFoundError",
    "ConnectorRef",
    "JwtBearerSubject",
    "JwtBearerSubjectDict",
    "NoValidTokenError",
    "OidcASGIMiddleware",
    "OidcTokenError",
    "OidcWSGIMiddleware",
    "RetryPolicy",
    "TokenExchangeSubject",
    "TokenExchangeSubjectDict",
    "TokenRequest",
    "TokenResponse",
    "UserAuthorizationRequiredError",
    "UserSubject",
    "UserSubjectDict",
    "__version__",
    "aget_token",
    "aget_token_response",
    "arevoke_token",
    "clear_token_cache",
    "default_client",
    "delete_token_cache_entry",
    "get_token",
    "get_token_response",
    "oidc_token_scope",
    "revoke_token",
    "set_default_client",
    "slack_invalid_auth",
]
