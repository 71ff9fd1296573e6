"""The Connect wire protocol, as pure functions.

Building paths and bodies, parsing a token response, turning an error response
into the right `ConnectError` subclass, and deciding which failures are
transient. No I/O happens here, so every rule is testable without a server.
"""

from __future__ import annotations

import email.utils
import json
import math
import re
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

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
    InvalidGrantError,
    NoValidTokenError,
    OidcTokenError,
    UserAuthorizationRequiredError,
)
from ._models import ConnectorRef, TokenResponse

__all__ = [
    "TRANSIENT_STATUSES",
    "connector_path",
    "error_from_response",
    "header_safe",
    "invalid_answer",
    "json_object",
    "parse_retry_after",
    "parse_token_response",
]

#: Statuses retried with backoff; every other 4xx is final.
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

_CODE_CLASSES: dict[str, type[ConnectError]] = {
    "no_token": NoValidTokenError,
    "user_authorization_required": UserAuthorizationRequiredError,
    "client_installation_required": ConnectorInstallationRequiredError,
    "connector_installation_required": ConnectorInstallationRequiredError,
    "not_found": ConnectorNotFoundError,
    "connector_not_found": ConnectorNotFoundError,
    "client_not_linked_to_project": ClientNotLinkedToProjectError,
    "client_not_enabled_for_environment": ClientNotEnabledForEnvironmentError,
    "authorization_pending": AuthorizationPendingError,
    "slow_down": AuthorizationPendingError,
    "access_denied": AuthorizationDeniedError,
    "expired_token": AuthorizationExpiredError,
    "invalid_grant": InvalidGrantError,
}
_NOT_LINKED = re.compile(r"not linked to (this|the) project", re.IGNORECASE)
_NOT_ENABLED = re.compile(r"environment.*not enabled|not enabled for.*environment", re.IGNORECASE)
_URI_COMPONENT_SAFE = "-_.!~*'()"


def connector_path(prefix: str, connector: str, suffix: str = "") -> str:
    """``prefix`` + the connector as ONE segment (JS ``encodeURIComponent``) + ``suffix``."""
    return prefix + quote(connector, safe=_URI_COMPONENT_SAFE) + suffix


#: The end of year 9999 in epoch milliseconds: any later ``expiresAt`` is garbage.
MAX_EXPIRES_AT_MS = 253_402_300_799_999


def header_safe(value: str) -> bool:
    """Whether ``value`` can travel as a bearer token in an HTTP header: visible ASCII
    only (no spaces, line breaks or control characters)."""
    return all("!" <= c <= "~" for c in value)


def invalid_answer(what: str, request_id: str | None) -> Callable[[str], ConnectResponseError]:
    """Makes the error for a 2xx answer that is not a valid ``what``, saying why."""

    def bad(why: str) -> ConnectResponseError:
        return ConnectResponseError(
            f"Connect returned an invalid {what}: {why}",
            code="invalid_response",
            status=200,
            request_id=request_id,
        )

    return bad


def json_object(body: bytes, bad: Callable[[str], ConnectResponseError]) -> dict[str, Any]:
    """A 2xx body as a JSON object, or ``bad``'s error."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise bad("body is not JSON") from None
    if not isinstance(data, dict):
        raise bad("body is not a JSON object")
    return data


def parse_token_response(body: bytes, *, request_id: str | None = None) -> TokenResponse:
    """Parse a 2xx token body; a malformed one raises `ConnectResponseError`."""
    bad = invalid_answer("token response", request_id)
    data = json_object(body, bad)
    token = data.get("token")
    if not isinstance(token, str) or not token:
        raise bad("'token' is missing or not a non-empty string")
    if not header_safe(token):  # never quoted: it is the secret
        raise bad("'token' holds characters that cannot travel in an HTTP header")
    expires_at = data.get("expiresAt")
    if (
        isinstance(expires_at, bool)
        or not isinstance(expires_at, int | float)
        or not 0 <= expires_at <= MAX_EXPIRES_AT_MS  # compared before any float conversion
        or not math.isfinite(expires_at)
    ):
        raise bad("'expiresAt' is missing or not a plausible number of milliseconds")
    conn = data.get("connector")
    if not isinstance(conn, dict) or not all(
        isinstance(conn.get(k), str) for k in ("id", "uid", "type")
    ):
        raise bad("'connector' must be an object with string 'id', 'uid' and 'type'")
    return TokenResponse(
        token=token,
        expires_at=int(expires_at),
        connector=ConnectorRef(id=conn["id"], uid=conn["uid"], type=conn["type"]),
        name=_opt_str(data, "name", bad),
        installation_id=_opt_str(data, "installationId", bad),
        tenant_id=_opt_str(data, "tenantId", bad),
        external_subject=_opt_str(data, "externalSubject", bad),
        metadata=_opt_obj(data, "metadata", bad),
        token_id=_opt_str(data, "tokenId", bad),
        claims=_opt_obj(data, "claims", bad),
        extra={k: v for k, v in data.items() if k not in _TOKEN_FIELDS},
    )


#: The token response fields `TokenResponse` names; every other one goes to ``extra``.
_TOKEN_FIELDS = frozenset(
    {
        "token",
        "expiresAt",
        "connector",
        "name",
        "installationId",
        "tenantId",
        "externalSubject",
        "metadata",
        "tokenId",
        "claims",
    }
)


def error_from_response(
    status: int,
    status_text: str,
    body: bytes,
    *,
    request_id: str | None = None,
    fallback: str = "Failed to get token",
    connector_call: bool = True,
) -> ConnectError:
    """Map a non-2xx response to the right error class.

    By ``code`` first, then 403 messages for the link and environment cases,
    then a bare 401 as a refused Vercel credential; anything else is the base
    `ConnectError`. ``connector_call=False`` keeps ``not_found`` generic.
    """
    text = body.decode("utf-8", "replace")
    code, message, vendor = _parse_envelope(text)
    cls: type[ConnectError] = _CODE_CLASSES.get(code or "", ConnectError)
    if cls is ConnectorNotFoundError and not connector_call:
        cls = ConnectError
    if cls is ConnectError and status == 403 and message:
        if _NOT_LINKED.search(message):
            cls = ClientNotLinkedToProjectError
        elif _NOT_ENABLED.search(message):
            cls = ClientNotEnabledForEnvironmentError
    if cls is ConnectError and status == 401:
        cls = OidcTokenError
        message = (
            f"Vercel Connect refused the Vercel credential ({status}"
            f"{' ' + code if code else ''}): {message or 'no detail given'}. "
            "Run `vercel env pull` to refresh VERCEL_OIDC_TOKEN, or pass a valid vercel_token="
        )
    if not message and cls is not ConnectError and text.strip():
        message = text  # the TypeScript SDK's rule: a typed error without one shows the body
    if not message:
        parts = [f"{fallback}:", str(status), status_text]
        if code:
            parts.append(f"- {code}")
        if text.strip() and cls is ConnectError:
            parts.append(f"- {text}")
        message = " ".join(p for p in parts if p)
    return cls(
        message,
        code=code,
        status=status,
        status_text=status_text,
        vendor=vendor,
        request_id=request_id,
    )


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None or when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _parse_envelope(text: str) -> tuple[str | None, str | None, dict[str, object] | None]:
    """``(code, message, vendor)`` of an error body, per the TS SDK's rules."""
    try:
        data = json.loads(text) if text.strip() else None
    except ValueError:
        return None, None, None
    if not isinstance(data, dict):
        return None, None, None
    env = data.get("error") if isinstance(data.get("error"), dict) else data.get("err")
    vendor = _vendor(data)
    if not isinstance(env, dict):
        return None, None, vendor
    code = env.get("code") if isinstance(env.get("code"), str) else None
    message = env.get("message") if isinstance(env.get("message"), str) else None
    return code, message or None, _vendor(env) or vendor


def _vendor(obj: Mapping[str, Any]) -> dict[str, object] | None:
    vendor = obj.get("vendor")
    if isinstance(vendor, dict):
        return vendor
    meta = obj.get("meta")
    if isinstance(meta, dict) and isinstance(meta.get("vendor"), dict):
        return dict(meta["vendor"])
    return None


def _opt_str(data: Mapping[str, Any], name: str, bad: Any) -> str | None:
    value = data.get(name)
    if value is None or isinstance(value, str):
        return value
    raise bad(f"'{name}' must be a string")


def _opt_obj(data: Mapping[str, Any], name: str, bad: Any) -> dict[str, Any] | None:
    value = data.get(name)
    if value is None or isinstance(value, dict):
        return value
    raise bad(f"'{name}' must be an object")
