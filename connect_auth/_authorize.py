"""Starting user consent and installations, and reading connector metadata: the
request bodies, their URL rules and the answers, as pure functions (no I/O).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._config import is_loopback_host, unambiguous_url
from ._models import ConnectorRef, TokenRequest, check_connector, token_param_fields
from ._protocol import invalid_answer, json_object

__all__ = [
    "AuthorizationRequest",
    "ConnectorMetadata",
    "authorize_body",
    "detached_mode",
    "install_body",
    "parse_authorization_request",
    "parse_connector_metadata",
]

_DETACHED_ENV = "VERCEL_CONNECT_INTERACTIVE_AUTH_MODE"


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    """A started authorization (user consent) or installation. ``repr`` hides ``verifier``.

    Attributes:
        url: where to send the user: the provider's consent page, or with a device
            code the page where the user enters it.
        request: Connect's id of this authorization request.
        verifier: the secret that proves the request is yours; keep it server-side.
        device_code: the code the user types at ``url`` in the device-code flow.
        expires_at: when the request lapses, in milliseconds since the epoch.
        connector: the connector the request is for, when Connect says.
        extra: every other field of Connect's answer, as sent (such as
            ``displayName``).
    """

    url: str
    request: str
    verifier: str = field(repr=False)
    device_code: str | None = None
    expires_at: int | None = None
    connector: ConnectorRef | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ConnectorMetadata:
    """A connector's public description, from `ConnectClient.get_connector_metadata`.

    Attributes:
        id: the opaque connector id (``scl_...``).
        uid: the connector's uid, such as ``slack/acme-slack``.
        name: its display name.
        type: the provider kind, such as ``slack``.
        service: the provider service.
        client_url: the provider app's URL, when it has one.
        created_at: creation time, in milliseconds since the epoch.
        updated_at: last change, in milliseconds since the epoch.
        vendor: vendor-specific public configuration (the wire's ``data``).
        extra: every other field of the answer, as sent (such as ``supportsRevocation``).
    """

    id: str
    uid: str
    name: str | None
    type: str
    service: str | None
    client_url: str | None
    created_at: int | None
    updated_at: int | None
    vendor: Mapping[str, Any]
    extra: Mapping[str, Any]


def detached_mode(environ: Mapping[str, str]) -> bool:
    """Whether ``VERCEL_CONNECT_INTERACTIVE_AUTH_MODE=detached`` asks for flows that do not
    come back to this machine (no browser redirect; device codes instead)."""
    return environ.get(_DETACHED_ENV, "").strip().lower() == "detached"


def authorize_body(
    request: TokenRequest,
    environ: Mapping[str, str],
    *,
    callback_url: object = None,
    webhook: object = None,
    device_code: object = None,
    expires_in_ms: object = None,
    prompt: object = None,
) -> dict[str, Any]:
    """The body of ``POST /v1/connect/authorize/{connector}``: the token params (scopes
    default as for tokens) plus the flow options that were set; bad options raise
    ``ValueError``/``TypeError`` before any call."""
    body = request.params.to_wire()
    body.update(
        _flow_options(
            environ,
            callback_url=callback_url,
            webhook=webhook,
            device_code=device_code,
            expires_in_ms=expires_in_ms,
        )
    )
    if prompt is not None:
        body["prompt"] = _text("prompt", prompt)
    return body


def install_body(
    connector: object,
    environ: Mapping[str, str],
    *,
    callback_url: object = None,
    webhook: object = None,
    tenant_id: object = None,
    device_code: object = None,
    expires_in_ms: object = None,
    **params: object,
) -> dict[str, Any]:
    """The body of ``POST /v1/connect/install/{connector}``: token params without a
    subject and without default scopes, plus the flow options that were set."""
    check_connector(connector)
    body = token_param_fields(**params)
    if tenant_id is not None:
        body["tenantId"] = _text("tenant_id", tenant_id)
    body.update(
        _flow_options(
            environ,
            callback_url=callback_url,
            webhook=webhook,
            device_code=device_code,
            expires_in_ms=expires_in_ms,
        )
    )
    return body


def _flow_options(
    environ: Mapping[str, str],
    *,
    callback_url: object,
    webhook: object,
    device_code: object,
    expires_in_ms: object,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if callback_url is not None:
        out["returnUrl"] = check_callback_url(callback_url)
    if webhook is not None:
        out["webhook"] = check_webhook_url(webhook)
    if device_code is not None and not isinstance(device_code, bool):
        raise TypeError("device_code must be True, False or None")
    if expires_in_ms is not None:
        if (
            isinstance(expires_in_ms, bool)
            or not isinstance(expires_in_ms, int | float)
            or not math.isfinite(expires_in_ms)
            or expires_in_ms <= 0
        ):
            raise ValueError(
                f"expires_in_ms must be a positive number of milliseconds, got {expires_in_ms!r}"
            )
        out["expiresInMs"] = expires_in_ms
    if detached_mode(environ):
        if device_code is None:
            device_code = True
        if "returnUrl" in out:
            del out["returnUrl"]
            warnings.warn(
                f"{_DETACHED_ENV}=detached: callback_url is not sent (the flow does not come "
                "back to this machine); the user finishes with a device code",
                UserWarning,
                stacklevel=4,
            )
    if device_code is not None:
        out["deviceCode"] = device_code
    return out


def check_callback_url(url: object) -> str:
    """``https:``, or ``http:`` on a loopback host (see `is_loopback_host`): where the
    browser comes back after consent."""
    text = _text("callback_url", url)
    parts = unambiguous_url("callback_url", text)
    if parts.scheme == "https" or (
        parts.scheme == "http" and is_loopback_host(parts.hostname or "")
    ):
        return text
    raise ValueError(
        f"callback_url must be an https:// URL (http:// only on a loopback host: "
        f"localhost, *.localhost, 127.0.0.0/8 or [::1]), not {text!r}"
    )


def check_webhook_url(url: object) -> str:
    """``https:`` only: Connect calls it from the internet."""
    text = _text("webhook", url)
    if unambiguous_url("webhook", text).scheme != "https":
        raise ValueError(f"webhook must be an https:// URL, not {text!r}")
    return text


def _text(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, not {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{name} must not be empty")
    return value


def parse_authorization_request(
    body: bytes, *, request_id: str | None = None
) -> AuthorizationRequest:
    """Read an authorize or install answer; a malformed one raises `ConnectResponseError`."""
    bad = invalid_answer("authorization request", request_id)
    data = json_object(body, bad)
    for name in ("url", "request", "verifier"):
        if not isinstance(data.get(name), str) or not data[name]:
            raise bad(f"'{name}' is missing or not a non-empty string")
    device = data.get("deviceCode")
    if device is not None and not isinstance(device, str):
        raise bad("'deviceCode' must be a string")
    expires_at = data.get("expiresAt")
    if expires_at is not None and (
        isinstance(expires_at, bool) or not isinstance(expires_at, int | float)
    ):
        raise bad("'expiresAt' must be a number of milliseconds")
    return AuthorizationRequest(
        url=data["url"],
        request=data["request"],
        verifier=data["verifier"],
        device_code=device,
        expires_at=None if expires_at is None else int(expires_at),
        connector=_connector(data.get("connector"), bad),
        extra={k: v for k, v in data.items() if k not in _AUTHORIZATION_FIELDS},
    )


_AUTHORIZATION_FIELDS = frozenset(
    {"url", "request", "verifier", "deviceCode", "expiresAt", "connector"}
)
_CONNECTOR_FIELDS = frozenset({"id", "uid", "type", "name", "service", "serviceName"})


def _connector(value: object, bad: Any) -> ConnectorRef | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
        isinstance(value.get(k), str) for k in ("id", "uid", "type")
    ):
        raise bad("'connector' must be an object with string 'id', 'uid' and 'type'")

    def text(name: str) -> str | None:
        found = value.get(name)
        return found if isinstance(found, str) else None

    return ConnectorRef(
        value["id"],
        value["uid"],
        value["type"],
        text("name"),
        service=text("service"),
        service_name=text("serviceName"),
        extra={k: v for k, v in value.items() if k not in _CONNECTOR_FIELDS},
    )


_METADATA_FIELDS = frozenset(
    {"id", "uid", "name", "type", "service", "clientUrl", "createdAt", "updatedAt", "data"}
)


def parse_connector_metadata(body: bytes, *, request_id: str | None = None) -> ConnectorMetadata:
    """Read a metadata answer; a malformed one raises `ConnectResponseError`."""
    bad = invalid_answer("connector metadata", request_id)
    data = json_object(body, bad)
    for name in ("id", "uid", "type"):
        if not isinstance(data.get(name), str):
            raise bad(f"'{name}' is missing or not a string")
    vendor = data.get("data")
    if vendor is not None and not isinstance(vendor, dict):
        raise bad("'data' must be an object")

    def text(name: str) -> str | None:
        value = data.get(name)
        return value if isinstance(value, str) else None

    def millis(name: str) -> int | None:
        value = data.get(name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return int(value)

    return ConnectorMetadata(
        id=data["id"],
        uid=data["uid"],
        name=text("name"),
        type=data["type"],
        service=text("service"),
        client_url=text("clientUrl"),
        created_at=millis("createdAt"),
        updated_at=millis("updatedAt"),
        vendor=vendor or {},
        extra={k: v for k, v in data.items() if k not in _METADATA_FIELDS},
    )
