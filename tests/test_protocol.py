"""The wire protocol's pure rules: paths, parsing, error mapping, Retry-After."""

from __future__ import annotations

import json

import pytest

from connect_auth import (
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
from connect_auth._protocol import (
    connector_path,
    error_from_response,
    parse_retry_after,
    parse_token_response,
)

GOOD = {
    "token": "tok",
    "tokenId": "stk_1",
    "expiresAt": 1_700_000_000_000,
    "connector": {"id": "scl_1", "uid": "slack/a", "type": "slack"},
    "tenantId": "T1",
    "metadata": {"botUserId": "B1"},
}


def test_connector_is_one_encoded_segment() -> None:
    """Decision 0.2: JS encodeURIComponent semantics."""
    assert connector_path("/t/", "slack/acme") == "/t/slack%2Facme"
    assert connector_path("/t/", "a b!*'()~") == "/t/a%20b!*'()~"
    assert connector_path("/c/", "x/y", "/tokens") == "/c/x%2Fy/tokens"


def test_token_response_is_parsed() -> None:
    """Every documented field lands on TokenResponse; absent ones are None."""
    r = parse_token_response(json.dumps(GOOD).encode())
    assert (r.token, r.expires_at, r.connector.uid, r.tenant_id) == (
        "tok",
        1_700_000_000_000,
        "slack/a",
        "T1",
    )
    assert r.metadata == {"botUserId": "B1"} and r.claims is None and r.name is None
    assert r.token_id == "stk_1"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        json.dumps({**GOOD, "token": ""}).encode(),
        json.dumps({**GOOD, "token": 5}).encode(),
        json.dumps({**GOOD, "expiresAt": "soon"}).encode(),
        json.dumps({**GOOD, "expiresAt": True}).encode(),
        json.dumps({**GOOD, "connector": {"id": "x"}}).encode(),
        json.dumps({**GOOD, "tenantId": 7}).encode(),
        json.dumps({**GOOD, "metadata": []}).encode(),
    ],
)
def test_malformed_success_is_a_response_error(body: bytes) -> None:
    """A 2xx that is not a token response raises ConnectResponseError."""
    with pytest.raises(ConnectResponseError):
        parse_token_response(body)


def _err(code: str | None, message: str = "m") -> bytes:
    envelope: dict[str, object] = {"message": message}
    if code:
        envelope["code"] = code
    return json.dumps({"error": envelope}).encode()


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (410, _err("no_token"), NoValidTokenError),
        (401, _err("user_authorization_required"), UserAuthorizationRequiredError),
        (400, _err("client_installation_required"), ConnectorInstallationRequiredError),
        (422, _err("connector_installation_required"), ConnectorInstallationRequiredError),
        (404, _err("not_found"), ConnectorNotFoundError),
        (404, _err("connector_not_found"), ConnectorNotFoundError),
        (403, _err("client_not_linked_to_project"), ClientNotLinkedToProjectError),
        (403, _err("client_not_enabled_for_environment"), ClientNotEnabledForEnvironmentError),
        (
            403,
            _err("forbidden", "Connector x is not linked to this project"),
            ClientNotLinkedToProjectError,
        ),
        (
            403,
            _err("forbidden", "Connector x is not enabled for the 'preview' environment"),
            ClientNotEnabledForEnvironmentError,
        ),
        (403, _err("forbidden", "missing permission"), ConnectError),
        (401, _err("unauthorized"), OidcTokenError),
        (401, b"", OidcTokenError),
        (400, b"garbage", ConnectError),
    ],
)
def test_error_mapping(status: int, body: bytes, cls: type[ConnectError]) -> None:
    """Decision 0.3: by code, then 403 message, then bare 401; else the base class."""
    err = error_from_response(status, "Reason", body, request_id="iad1::x")
    assert type(err) is cls
    assert err.status == status and err.request_id == "iad1::x" and err.status_text == "Reason"


def test_error_envelope_fields_and_fallback_message() -> None:
    """code and vendor come from the envelope; no message falls back to status text."""
    body = json.dumps({"error": {"code": "weird", "vendor": {"v": 1}}}).encode()
    err = error_from_response(418, "Teapot", body)
    assert err.code == "weird" and err.vendor == {"v": 1}
    # TS parity: "<fallback>: <status> <statusText> - <code> - <body>"
    assert str(err) == f"Failed to get token: 418 Teapot - weird - {body.decode()}"
    err2 = error_from_response(400, "Bad", json.dumps({"err": {"code": "c"}}).encode())
    assert err2.code == "c"
    err3 = error_from_response(500, "E", json.dumps({"meta": {"vendor": {"a": 1}}}).encode())
    assert err3.vendor == {"a": 1} and err3.code is None


def test_not_found_outside_connector_calls_stays_generic() -> None:
    """not_found on a non-connector route is not a missing connector."""
    err = error_from_response(404, "", _err("not_found"), connector_call=False)
    assert type(err) is ConnectError


def test_long_messages_are_kept_whole() -> None:
    """As in the TypeScript SDK, messages are not cut (answers are capped at 1 MiB
    before they are read, so a body cannot flood a log without bound)."""
    long = "why " * 200
    err = error_from_response(400, "", json.dumps({"error": {"message": long}}).encode())
    assert err.message == long
    raw = error_from_response(400, "Bad Request", b"x" * 5000)
    assert raw.message == "Failed to get token: 400 Bad Request - " + "x" * 5000


def test_typed_errors_without_a_message_show_the_body() -> None:
    body = b'{"error": {"code": "no_token"}}'
    err = error_from_response(410, "Gone", body)
    assert isinstance(err, NoValidTokenError)
    assert err.message == body.decode()


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("authorization_pending", AuthorizationPendingError),
        ("slow_down", AuthorizationPendingError),
        ("access_denied", AuthorizationDeniedError),
        ("expired_token", AuthorizationExpiredError),
        ("invalid_grant", InvalidGrantError),
    ],
)
def test_authorization_codes_map_to_their_classes(code: str, cls: type[ConnectError]) -> None:
    err = error_from_response(400, "Bad Request", _err(code, "wait"))
    assert type(err) is cls
    assert err.code == code
    assert err.message == "wait"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", 1.0),
        (" 2.5 ", 2.5),
        ("-3", 0.0),
        ("Wed, 21 Oct 2015 07:28:10 GMT", 10.0),
        ("soon", None),
        (None, None),
        ("inf", None),
    ],
)
def test_retry_after(value: str | None, expected: float | None) -> None:
    """Retry-After as delta-seconds or an HTTP date."""
    now = 1445412480.0  # 2015-10-21 07:28:00 UTC
    assert parse_retry_after(value, now=now) == expected
