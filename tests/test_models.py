"""Validation and normalization of arguments: pure, no server."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import APP

from connect_auth import (
    AppSubject,
    JwtBearerSubject,
    TokenExchangeSubject,
    TokenRequest,
    UserSubject,
)
from connect_auth._models import TokenParams, coerce_subject


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"type": "app"}, AppSubject()),
        ({"type": "user", "id": "u1"}, UserSubject("u1")),
        ({"type": "user", "id": "u1", "issuer": "https://i"}, UserSubject("u1", "https://i")),
        ({"type": "jwt-bearer", "sub": "s"}, JwtBearerSubject("s")),
        (
            {"type": "jwt-bearer", "sub": "s", "additionalClaims": {"a": 1}},
            JwtBearerSubject("s", additional_claims={"a": 1}),
        ),
        ({"type": "token", "token": "t"}, TokenExchangeSubject("t")),
    ],
)
def test_dict_subjects_become_classes(raw: dict[str, Any], expected: object) -> None:
    """TypeScript-style dicts and the classes are interchangeable."""
    assert coerce_subject(raw) == expected


def test_subject_wire_format_is_camel_case() -> None:
    """jwt-bearer claims go out as additionalClaims, unset fields are left out."""
    subject = JwtBearerSubject("s", aud="a", additional_claims={"x": 1})
    assert subject.to_wire() == {
        "type": "jwt-bearer",
        "sub": "s",
        "aud": "a",
        "additionalClaims": {"x": 1},
    }
    assert UserSubject("u").to_wire() == {"type": "user", "id": "u"}


@pytest.mark.parametrize(
    ("subject", "error", "fragment"),
    [
        ({"type": "robot"}, ValueError, "unknown subject type"),
        ({"type": "user"}, ValueError, "needs a 'id'"),
        ({"type": "user", "id": ""}, ValueError, "non-empty"),
        ({"type": "user", "id": 5}, TypeError, "must be a string"),
        ({"type": "app", "id": "x"}, ValueError, "unknown field"),
        ({"type": "jwt-bearer"}, ValueError, "needs a 'sub'"),
        ("app", TypeError, "subject must be"),
        (None, TypeError, "subject must be"),
    ],
)
def test_bad_subjects_say_what_to_fix(subject: object, error: type, fragment: str) -> None:
    """Bad subjects are refused with a message naming the problem."""
    with pytest.raises(error, match=fragment):
        coerce_subject(subject)


@pytest.mark.parametrize(
    ("kwargs", "error", "fragment"),
    [
        ({"scopes": "chat:write"}, TypeError, r"scopes=\['chat:write'\]"),
        ({"scopes": [1]}, TypeError, "must be a string"),
        ({"scopes": [""]}, ValueError, "empty string"),
        ({"audience": 3}, TypeError, "list of strings"),
        ({"validity_buffer_ms": -1}, ValueError, ">= 0"),
        ({"validity_buffer_ms": float("nan")}, ValueError, "finite"),
        ({"validity_buffer_ms": True}, TypeError, "number"),
        ({"installation_id": ""}, ValueError, "non-empty"),
        ({"authorization_details": {"type": "x"}}, TypeError, "list of dicts"),
        ({"authorization_details": [{"no": "type"}]}, TypeError, "string 'type'"),
        ({"authorization_details": [{"type": "x", "v": object()}]}, TypeError, "JSON"),
        ({"bogus": 1}, TypeError, "bogus"),
    ],
)
def test_bad_params_say_what_to_fix(kwargs: dict[str, Any], error: type, fragment: str) -> None:
    """Every bad parameter raises before any network call, naming the fix."""
    with pytest.raises(error, match=fragment):
        TokenRequest.build("slack/a", subject={"type": "app"}, **kwargs)


@pytest.mark.parametrize("connector", ["", "   "])
def test_empty_connector_is_refused(connector: str) -> None:
    """An empty connector is a ValueError."""
    with pytest.raises(ValueError, match="connector"):
        TokenRequest.build(connector, subject={"type": "app"})


def test_connector_must_be_text() -> None:
    """A non-string connector is a TypeError."""
    with pytest.raises(TypeError, match="connector"):
        TokenRequest.build(42, subject={"type": "app"})


def test_cache_key_normalizes_order_and_default_scopes() -> None:
    """Omitted scopes equal ["*"], dict key order is irrelevant, the buffer is excluded."""
    a = TokenParams.build(subject={"type": "user", "id": "u", "issuer": "i"})
    b = TokenParams.build(
        subject={"issuer": "i", "id": "u", "type": "user"}, scopes=["*"], validity_buffer_ms=5
    )
    assert a.key == b.key
    c = TokenParams.build(subject={"type": "user", "id": "u", "issuer": "i"}, scopes=["x"])
    assert c.key != a.key
    d1 = TokenParams.build(subject=APP, authorization_details=[{"type": "t", "a": 1, "b": 2}])
    d2 = TokenParams.build(subject=APP, authorization_details=[{"b": 2, "a": 1, "type": "t"}])
    assert d1.key == d2.key


def test_wire_body_defaults_scopes_and_keeps_buffer_when_set() -> None:
    """Decision 0.1: scopes default to ["*"]; validityBufferMs only when given."""
    params = TokenParams.build(subject=APP, installation_id="i", audience=["a"])
    assert params.to_wire() == {
        "subject": {"type": "app"},
        "installationId": "i",
        "audience": ["a"],
        "scopes": ["*"],
    }
    with_buffer = TokenParams.build(subject=APP, validity_buffer_ms=10, resources=["r"])
    assert with_buffer.to_wire()["validityBufferMs"] == 10
    assert with_buffer.to_wire()["resources"] == ["r"]


def test_token_exchange_subject_hides_its_token() -> None:
    """The credential in a token-exchange subject never shows in repr."""
    assert "s3cret" not in repr(TokenExchangeSubject("s3cret"))
    assert "s3cret" not in repr(
        TokenRequest.build("a/b", subject={"type": "token", "token": "s3cret"})
    )
