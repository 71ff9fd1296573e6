"""The error tree of connect_auth.

Every error raised for a Connect call subclasses `ConnectError`::

    ConnectError                              code, status, status_text, vendor, request_id
    ├── NoValidTokenError                     no_token: the grant cannot produce a token
    ├── UserAuthorizationRequiredError        user_authorization_required
    ├── ConnectorInstallationRequiredError    client_/connector_installation_required
    ├── ConnectorNotFoundError                not_found / connector_not_found
    ├── ClientNotLinkedToProjectError         project not linked to the connector
    ├── ClientNotEnabledForEnvironmentError   link lacks the caller's environment
    ├── OidcTokenError                        no usable Vercel credential, or Connect refused it
    ├── ConnectUnavailableError               transient failures outlasted the retry policy
    ├── ConnectResponseError                  a 2xx whose body is not what the call returns
    ├── AuthorizationPendingError             authorization_pending / slow_down: keep waiting
    ├── AuthorizationDeniedError              access_denied: the user said no
    ├── AuthorizationExpiredError             expired_token: the authorization request lapsed
    ├── InvalidGrantError                     invalid_grant
    └── WebhookVerificationError              a delivery that is not a verified Connect webhook

Bad arguments are not Connect errors: they raise ``ValueError`` or ``TypeError``
before any network call. No message ever contains a token.
"""

from __future__ import annotations

__all__ = [
    "AuthorizationDeniedError",
    "AuthorizationExpiredError",
    "AuthorizationPendingError",
    "ClientNotEnabledForEnvironmentError",
    "ClientNotLinkedToProjectError",
    "ConnectError",
    "ConnectResponseError",
    "ConnectUnavailableError",
    "ConnectorInstallationRequiredError",
    "ConnectorNotFoundError",
    "InvalidGrantError",
    "NoValidTokenError",
    "OidcTokenError",
    "UserAuthorizationRequiredError",
    "WebhookVerificationError",
]


class ConnectError(Exception):
    """Base class of every Vercel Connect failure.

    Attributes:
        code: the machine-readable ``error.code`` from Connect, if any.
        status: the HTTP status, or ``None`` when no response arrived.
        status_text: the HTTP reason phrase.
        vendor: vendor-specific detail object from the error envelope.
        request_id: the ``x-vercel-id`` header, to quote to Vercel support.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        status_text: str = "",
        vendor: dict[str, object] | None = None,
        request_id: str | None = None,
    ) -> None:
        """Connect errors are raised by connect_auth; you make one only in tests.

        Args:
            message: what went wrong and what to do, without any token.
            code: the machine-readable ``error.code`` from Connect, if any.
            status: the HTTP status, or ``None`` when no response arrived.
            status_text: the HTTP reason phrase.
            vendor: vendor-specific detail object from the error envelope.
            request_id: the ``x-vercel-id`` header, to quote to Vercel support.
        """
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.status_text = status_text
        self.vendor = vendor
        self.request_id = request_id

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, code={self.code!r}, "
            f"status={self.status!r}, request_id={self.request_id!r})"
        )


class NoValidTokenError(ConnectError):
    """The connector exists but cannot produce a token; the grant may be revoked."""


class UserAuthorizationRequiredError(ConnectError):
    """The user subject has not authorized the connector: show a "connect" UI."""


class ConnectorInstallationRequiredError(ConnectError):
    """The connector needs an installation and none matches: show an install link."""


class ConnectorNotFoundError(ConnectError):
    """The team has no connector under that uid or id."""


class ClientNotLinkedToProjectError(ConnectError):
    """The calling project is not linked to this connector."""


class ClientNotEnabledForEnvironmentError(ConnectError):
    """The project link does not include the caller's environment."""


class OidcTokenError(ConnectError):
    """No usable Vercel credential was found, it has expired, or Connect refused it."""


class ConnectUnavailableError(ConnectError):
    """Connect kept failing transiently (network, timeout, 429, 5xx) until the
    retry policy gave up. The last failure is chained as ``__cause__``."""


class ConnectResponseError(ConnectError):
    """Connect answered 2xx with a body that is not a valid answer to the call."""


class AuthorizationPendingError(ConnectError):
    """The user has not finished the authorization yet (``authorization_pending``), or
    Connect asks to poll less often (``slow_down``): wait, then ask again."""


class AuthorizationDeniedError(ConnectError):
    """The user declined the authorization (``access_denied``)."""


class AuthorizationExpiredError(ConnectError):
    """The authorization request expired before the user finished (``expired_token``):
    start a new one."""


class InvalidGrantError(ConnectError):
    """Connect or the provider refused the grant (``invalid_grant``): authorize again."""


class WebhookVerificationError(ConnectError):
    """A webhook delivery whose bearer is not a valid Vercel OIDC token for this project
    and environment. The message says which check failed, never the token."""
