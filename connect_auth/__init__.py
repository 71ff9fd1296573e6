"""connect_auth: short-lived provider tokens from Vercel Connect, for httpx, httpx2, requests,
aiohttp and niquests.

Quick start::

    from connect_auth import get_token
    token = get_token("slack/acme-slack", subject={"type": "app"})

Auth adapters live in `connect_auth.httpx`, `connect_auth.httpx2`,
`connect_auth.requests`, `connect_auth.aiohttp` and `connect_auth.niquests`; the
local emulator in `connect_auth.testing`.
"""

from ._adapter import slack_invalid_auth
from ._api import (
    aexperimental_start_installation,
    aget_connector_metadata,
    aget_token,
    aget_token_response,
    arevoke_token,
    astart_authorization,
    await_for_authorization,
    clear_token_cache,
    default_client,
    delete_token_cache_entry,
    experimental_start_installation,
    get_connector_metadata,
    get_token,
    get_token_response,
    revoke_token,
    set_default_client,
    start_authorization,
    wait_for_authorization,
)
from ._authorize import AuthorizationRequest, ConnectorMetadata
from ._client import ConnectClient
from ._errors import (
    AuthorizationDeniedError,
    AuthorizationExpiredError,
    AuthorizationPendingError,
    ClientNotEnabledForEnvironmentError,
    ClientNotLinkedToProjectError,
    ConnectError,
    ConnectorInstallationRequiredError,
    ConnectorNotFoundError,
    ConnectResponseError,
    ConnectUnavailableError,
    InvalidGrantError,
    NoValidTokenError,
    OidcTokenError,
    UserAuthorizationRequiredError,
    WebhookVerificationError,
)
from ._middleware import OidcASGIMiddleware, OidcWSGIMiddleware
from ._models import (
    AppSubject,
    AppSubjectDict,
    ConnectorRef,
    JwtBearerSubject,
    JwtBearerSubjectDict,
    Subject,
    SubjectDict,
    SubjectLike,
    TokenExchangeSubject,
    TokenExchangeSubjectDict,
    TokenRequest,
    TokenResponse,
    UserSubject,
    UserSubjectDict,
    VercelToken,
)
from ._oidc import oidc_token_scope
from ._retry import RetryPolicy
from ._version import __version__
from ._webhooks import (
    WebhookASGIMiddleware,
    WebhookClaims,
    WebhookWSGIMiddleware,
    averify_connect_webhook,
    verify_connect_webhook,
)

__all__ = [
    "AppSubject",
    "AppSubjectDict",
    "AuthorizationDeniedError",
    "AuthorizationExpiredError",
    "AuthorizationPendingError",
    "AuthorizationRequest",
    "ClientNotEnabledForEnvironmentError",
    "ClientNotLinkedToProjectError",
    "ConnectClient",
    "ConnectError",
    "ConnectResponseError",
    "ConnectUnavailableError",
    "ConnectorInstallationRequiredError",
    "ConnectorMetadata",
    "ConnectorNotFoundError",
    "ConnectorRef",
    "InvalidGrantError",
    "JwtBearerSubject",
    "JwtBearerSubjectDict",
    "NoValidTokenError",
    "OidcASGIMiddleware",
    "OidcTokenError",
    "OidcWSGIMiddleware",
    "RetryPolicy",
    "Subject",
    "SubjectDict",
    "SubjectLike",
    "TokenExchangeSubject",
    "TokenExchangeSubjectDict",
    "TokenRequest",
    "TokenResponse",
    "UserAuthorizationRequiredError",
    "UserSubject",
    "UserSubjectDict",
    "VercelToken",
    "WebhookASGIMiddleware",
    "WebhookClaims",
    "WebhookVerificationError",
    "WebhookWSGIMiddleware",
    "__version__",
    "aexperimental_start_installation",
    "aget_connector_metadata",
    "aget_token",
    "aget_token_response",
    "arevoke_token",
    "astart_authorization",
    "averify_connect_webhook",
    "await_for_authorization",
    "clear_token_cache",
    "default_client",
    "delete_token_cache_entry",
    "experimental_start_installation",
    "get_connector_metadata",
    "get_token",
    "get_token_response",
    "oidc_token_scope",
    "revoke_token",
    "set_default_client",
    "slack_invalid_auth",
    "start_authorization",
    "verify_connect_webhook",
    "wait_for_authorization",
]
