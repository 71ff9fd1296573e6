"""Verifying Connect's forwarded webhooks: the refusal matrix, JWKS caching, request
objects of each framework, and the ASGI/WSGI middlewares on real loopback servers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import traceback
import wsgiref.simple_server
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
from fastapi import FastAPI, Request
from helpers import free_port, running, serve_asgi
from joserfc import jwt
from joserfc.jwk import RSAKey

import connect_auth._webhooks as webhooks
from connect_auth import (
    WebhookASGIMiddleware,
    WebhookClaims,
    WebhookVerificationError,
    WebhookWSGIMiddleware,
    averify_connect_webhook,
    verify_connect_webhook,
)
from connect_auth.testing import ISSUER, ConnectEmulator
from connect_auth.testing._emulator import _signing_key

PROJECT = "prj_emulator"
ENV = "development"


@pytest.fixture(autouse=True)
def fresh_jwks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts with no cached keys and no ambient expectations."""
    for name in (
        "VERCEL_PROJECT_ID",
        "VERCEL_TARGET_ENV",
        "VERCEL_ENV",
        "CONNECT_AUTH_OIDC_ISSUER",
        "CONNECT_AUTH_JWKS_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    webhooks._JWKS.clear()
    yield
    webhooks._JWKS.clear()


@pytest.fixture
def emu() -> Iterator[ConnectEmulator]:
    with ConnectEmulator() as e:
        yield e


def _verify(emu: ConnectEmulator, token: str, **kw: Any) -> WebhookClaims:
    kw.setdefault("project_id", PROJECT)
    kw.setdefault("environment", ENV)
    kw.setdefault("jwks_url", emu.jwks_url)
    return verify_connect_webhook({"Authorization": f"Bearer {token}"}, **kw)


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": f"owner:team_emulator:project:{PROJECT}:environment:{ENV}",
        "aud": "https://vercel.com/team_emulator",
        "owner_id": "team_emulator",
        "project_id": PROJECT,
        "environment": ENV,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _sign(claims: dict[str, Any], *, key: RSAKey | None = None, kid: str = "emulator") -> str:
    return jwt.encode({"alg": "RS256", "kid": kid}, claims, key or _signing_key())


def _b64(data: dict[str, Any] | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_a_genuine_delivery_is_verified(emu: ConnectEmulator) -> None:
    claims = _verify(emu, emu.oidc_token())
    assert (claims.project_id, claims.environment, claims.owner_id) == (
        PROJECT,
        ENV,
        "team_emulator",
    )
    assert claims.issuer == ISSUER and claims.subject is not None
    assert claims.claims["project_id"] == PROJECT


def test_expectations_come_from_the_environment(
    emu: ConnectEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VERCEL_PROJECT_ID", PROJECT)
    monkeypatch.setenv("VERCEL_ENV", "production")
    monkeypatch.setenv("VERCEL_TARGET_ENV", ENV)  # wins over VERCEL_ENV
    monkeypatch.setenv("CONNECT_AUTH_JWKS_URL", emu.jwks_url)
    monkeypatch.setenv("CONNECT_AUTH_OIDC_ISSUER", ISSUER)
    token = emu.oidc_token()
    assert verify_connect_webhook({"authorization": f"Bearer {token}"}).project_id == PROJECT
    monkeypatch.setenv("CONNECT_AUTH_OIDC_ISSUER", "https://oidc.vercel.com/another-team")
    with pytest.raises(WebhookVerificationError, match="issuer"):
        verify_connect_webhook({"authorization": f"Bearer {token}"})


def _hs256_with_public_key(emu: ConnectEmulator) -> str:
    """The classic key-confusion forgery: HMAC with the public key as the secret."""
    header = _b64({"alg": "HS256", "kid": "emulator", "typ": "JWT"})
    payload = _b64(_claims())
    secret = json.dumps(emu.jwks()["keys"][0]).encode()
    mac = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(mac)}"


def _tampered(emu: ConnectEmulator) -> str:
    header, _, signature = emu.oidc_token().split(".")
    return f"{header}.{_b64(_claims(project_id=PROJECT, environment='production'))}.{signature}"


REFUSALS: list[tuple[str, Any, dict[str, Any], str]] = [
    ("wrong project", lambda e: e.oidc_token(project_id="prj_other"), {}, "another project"),
    ("wrong environment", lambda e: e.oidc_token(environment="preview"), {}, "another environment"),
    ("wrong owner", lambda e: e.oidc_token(), {"owner_id": "team_other"}, "another team"),
    ("wrong audience", lambda e: e.oidc_token(), {"audience": "https://x"}, "another audience"),
    ("wrong issuer", lambda e: _sign(_claims(iss="https://evil.example")), {}, "issuer"),
    (
        "lookalike issuer",
        lambda e: _sign(_claims(iss="https://oidc.vercel.com.evil.example/t")),
        {"issuer": None},
        "issuer",
    ),
    ("expired", lambda e: e.oidc_token(ttl=-120), {}, "expired"),
    ("no expiry", lambda e: _sign(_claims(exp=None)), {}, "no expiry"),
    ("not yet valid", lambda e: _sign(_claims(nbf=int(time.time()) + 600)), {}, "nbf"),
    ("issued in the future", lambda e: _sign(_claims(iat=int(time.time()) + 600)), {}, "iat"),
    ("tampered", _tampered, {}, "signature"),
    ("other key", lambda e: _sign(_claims(), key=RSAKey.generate_key(2048)), {}, "signature"),
    ("unknown kid", lambda e: _sign(_claims(), kid="rotated-away"), {}, "no signing key"),
    ("alg none", lambda e: f"{_b64({'alg': 'none'})}.{_b64(_claims())}.", {}, "not RS256"),
    ("HS256 key confusion", _hs256_with_public_key, {}, "not RS256"),
    ("not a JWT", lambda e: "opaque-token", {}, "not a JWT"),
    ("garbage header", lambda e: "%%%.e30.sig", {}, "header is malformed"),
    ("no kid", lambda e: jwt.encode({"alg": "RS256"}, _claims(), _signing_key()), {}, "key id"),
]


@pytest.mark.parametrize(
    ("make", "options", "fragment"),
    [r[1:] for r in REFUSALS],
    ids=[r[0] for r in REFUSALS],
)
def test_the_refusal_matrix(
    emu: ConnectEmulator, make: Any, options: dict[str, Any], fragment: str
) -> None:
    token = make(emu)
    options = {"issuer": ISSUER, **options}
    if options["issuer"] is None:
        del options["issuer"]
    with pytest.raises(WebhookVerificationError, match=fragment) as caught:
        _verify(emu, token, **options)
    shown = "".join(
        traceback.TracebackException.from_exception(caught.value, capture_locals=False).format()
    )
    assert token not in shown and token not in repr(caught.value)
    assert caught.value.status == 401


def test_vercels_issuers_are_accepted_by_default() -> None:
    expected = webhooks._Expected(PROJECT, ENV, None, None, None, webhooks.DEFAULT_JWKS_URL)
    now = time.time()
    for iss in ("https://oidc.vercel.com", "https://oidc.vercel.com/acme-team"):
        assert webhooks.check_claims(_claims(iss=iss), expected, now).issuer == iss
    for iss in (
        "https://oidc.vercel.com/",
        "https://oidc.vercel.com/a/b",
        "http://oidc.vercel.com",
    ):
        with pytest.raises(WebhookVerificationError, match="issuer"):
            webhooks.check_claims(_claims(iss=iss), expected, now)


@pytest.mark.parametrize(
    ("headers", "fragment"),
    [
        ({}, "no Authorization header"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "not 'Bearer <token>'"),
        ({"Authorization": "Bearer"}, "not 'Bearer <token>'"),
        ({"Authorization": "Bearer   "}, "not 'Bearer <token>'"),
        ([("authorization", "Bearer a"), ("Authorization", "Bearer b")], "more than one"),
    ],
)
def test_missing_and_malformed_headers(emu: ConnectEmulator, headers: Any, fragment: str) -> None:
    with pytest.raises(WebhookVerificationError, match=fragment):
        verify_connect_webhook(headers, project_id=PROJECT, environment=ENV, jwks_url=emu.jwks_url)
    assert emu.jwks_requests == 0


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"environment": ENV}, "expected project is unknown"),
        ({"project_id": PROJECT}, "expected environment is unknown"),
    ],
)
def test_unknown_expectations_fail_closed(
    emu: ConnectEmulator, options: dict[str, str], fragment: str
) -> None:
    with pytest.raises(WebhookVerificationError, match=fragment) as caught:
        verify_connect_webhook(
            {"Authorization": f"Bearer {emu.oidc_token()}"}, jwks_url=emu.jwks_url, **options
        )
    assert caught.value.code == "webhook_misconfigured"
    assert emu.jwks_requests == 0


@pytest.mark.parametrize(
    "url", ["http://oidc.example.com/jwks", "ftp://127.0.0.1/jwks", "https:///jwks"]
)
def test_jwks_url_must_be_https_or_loopback(emu: ConnectEmulator, url: str) -> None:
    with pytest.raises(ValueError, match="jwks_url must be an https:// URL"):
        _verify(emu, emu.oidc_token(), jwks_url=url)


def test_jwks_is_cached_and_refetched_at_most_once_per_unknown_kid(
    emu: ConnectEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(3):
        _verify(emu, emu.oidc_token())
    assert emu.jwks_requests == 1
    stranger = _sign(_claims(), kid="new-key")
    with pytest.raises(WebhookVerificationError, match="no signing key"):
        _verify(emu, stranger)
    assert emu.jwks_requests == 2  # one refetch for the unknown kid
    for _ in range(5):  # a flood of unknown kids: no more fetches within the interval
        with pytest.raises(WebhookVerificationError, match="no signing key"):
            _verify(emu, _sign(_claims(), kid=f"junk-{_}"))
    assert emu.jwks_requests == 2
    monkeypatch.setattr(webhooks, "REFETCH_INTERVAL", 0.0)
    with pytest.raises(WebhookVerificationError, match="no signing key"):
        _verify(emu, stranger)
    assert emu.jwks_requests == 3
    _verify(emu, emu.oidc_token())  # a known kid never refetches
    assert emu.jwks_requests == 3


def test_a_concurrent_burst_of_unknown_kids_costs_one_fetch(emu: ConnectEmulator) -> None:
    """16 threads, released together, each with a forged key id: one refetch in all."""
    _verify(emu, emu.oidc_token())  # warm the cache
    assert emu.jwks_requests == 1
    forged = [_sign(_claims(), kid=f"forged-{i}") for i in range(16)]
    barrier = threading.Barrier(len(forged))
    refused: list[str] = []

    def deliver(token: str) -> None:
        barrier.wait()
        try:
            _verify(emu, token)
        except WebhookVerificationError as exc:
            refused.append(exc.message)

    threads = [threading.Thread(target=deliver, args=(t,)) for t in forged]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(refused) == 16 and all("no signing key" in m for m in refused)
    assert emu.jwks_requests == 2


def test_an_unreachable_jwks_fails_closed_with_503() -> None:
    port = free_port()
    token = _sign(_claims())
    with pytest.raises(WebhookVerificationError, match="could not be fetched") as caught:
        verify_connect_webhook(
            {"Authorization": f"Bearer {token}"},
            project_id=PROJECT,
            environment=ENV,
            jwks_url=f"http://127.0.0.1:{port}/jwks",
        )
    assert caught.value.code == "jwks_unavailable" and caught.value.status == 503


def test_request_objects_of_each_framework(emu: ConnectEmulator) -> None:
    """A headers mapping in any case, or any request with ``.headers``."""
    import flask
    from django.http import HttpRequest
    from starlette.requests import Request as StarletteRequest

    token = emu.oidc_token()
    bearer = f"Bearer {token}"
    django_request = HttpRequest()
    django_request.META["HTTP_AUTHORIZATION"] = bearer
    starlette_request = StarletteRequest(
        {"type": "http", "headers": [(b"authorization", bearer.encode())]}
    )
    app = flask.Flask(__name__)
    sources: list[Any] = [
        {"AUTHORIZATION": bearer},
        httpx.Request("POST", "https://app.example.com/hook", headers={"Authorization": bearer}),
        requests.Request(
            "POST", "https://a.example.com", headers={"authorization": bearer}
        ).prepare(),
        starlette_request,
        django_request,
    ]
    with app.test_request_context("/hook", headers={"Authorization": bearer}):
        sources.append(flask.request)
        for source in sources:
            claims = verify_connect_webhook(
                source, project_id=PROJECT, environment=ENV, jwks_url=emu.jwks_url
            )
            assert claims.project_id == PROJECT, type(source)


@pytest.mark.anyio
async def test_async_verification(emu: ConnectEmulator, anyio_backend: str) -> None:
    token = emu.oidc_token()
    claims = await averify_connect_webhook(
        {"Authorization": f"Bearer {token}"},
        project_id=PROJECT,
        environment=ENV,
        jwks_url=emu.jwks_url,
    )
    assert claims.environment == ENV
    with pytest.raises(WebhookVerificationError, match="another project"):
        await averify_connect_webhook(
            {"Authorization": f"Bearer {emu.oidc_token(project_id='prj_x')}"},
            project_id=PROJECT,
            environment=ENV,
            jwks_url=emu.jwks_url,
        )


# -- the middlewares on real servers ------------------------------------------------------


def _wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    claims: WebhookClaims = environ["connect_webhook"]
    body = json.dumps({"project": claims.project_id}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


def test_wsgi_middleware_on_a_real_server(emu: ConnectEmulator) -> None:
    app = WebhookWSGIMiddleware(
        _wsgi_app, paths=["/hook"], project_id=PROJECT, environment=ENV, jwks_url=emu.jwks_url
    )

    class Quiet(wsgiref.simple_server.WSGIRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    server = wsgiref.simple_server.make_server("127.0.0.1", 0, app, handler_class=Quiet)
    with running(server) as base:
        url = base + "/hook"
        ok = emu.deliver_webhook(url, {"type": "slack.event"})
        assert ok.status_code == 200 and ok.json() == {"project": PROJECT}
        forged = emu.deliver_webhook(url, {"type": "x"}, project_id="prj_other")
        assert forged.status_code == 401 and forged.json() == {"error": "unauthorized webhook"}
        assert httpx.post(url, json={}).status_code == 401


def test_asgi_middleware_in_a_fastapi_app_on_uvicorn(emu: ConnectEmulator) -> None:
    api = FastAPI()

    @api.post("/webhooks/connect")
    async def hook(request: Request) -> dict[str, Any]:
        claims: WebhookClaims = request.scope["connect_webhook"]
        return {"project": claims.project_id, "payload": await request.json()}

    @api.get("/health")
    async def health() -> dict[str, str]:
        return {"ok": "yes"}

    api.add_middleware(
        WebhookASGIMiddleware,
        paths=["/webhooks/connect"],
        project_id=PROJECT,
        environment=ENV,
        jwks_url=emu.jwks_url,
    )
    with serve_asgi(api) as base:
        ok = emu.deliver_webhook(base + "/webhooks/connect", {"event": 1})
        assert ok.status_code == 200 and ok.json() == {"project": PROJECT, "payload": {"event": 1}}
        bad = emu.deliver_webhook(base + "/webhooks/connect", {}, token=_sign(_claims(), kid="x"))
        assert bad.status_code == 401
        assert httpx.get(base + "/health").json() == {"ok": "yes"}  # other paths untouched


def test_middlewares_refuse_unknown_options() -> None:
    with pytest.raises(TypeError, match="unknown option"):
        WebhookWSGIMiddleware(_wsgi_app, projectid=PROJECT)
    with pytest.raises(TypeError, match="unknown option"):
        WebhookASGIMiddleware(_wsgi_app, jwks=PROJECT)
    with pytest.raises(ValueError, match="jwks_url must be an https:// URL"):
        WebhookASGIMiddleware(_wsgi_app, jwks_url="http://keys.example.com/jwks")
    with pytest.raises(ValueError, match="issuer must be an https:// URL"):
        WebhookWSGIMiddleware(_wsgi_app, issuer="oidc.vercel.com")


# -- several projects or environments, or any ---------------------------------------------


def test_project_and_environment_take_a_list_or_any(emu: ConnectEmulator) -> None:
    """As the TypeScript verifier: a list of accepted values, or "*" for any; the claims
    say which one the delivery was for."""
    preview = emu.oidc_token(project_id="prj_two", environment="preview")
    claims = _verify(emu, preview, project_id=["prj_one", "prj_two"], environment="*")
    assert (claims.project_id, claims.environment) == ("prj_two", "preview")
    claims = _verify(emu, preview, project_id="*", environment=("preview", "production"))
    assert claims.project_id == "prj_two"
    with pytest.raises(WebhookVerificationError, match="another project"):
        _verify(emu, preview, project_id=["prj_one", "prj_three"], environment="*")
    with pytest.raises(WebhookVerificationError, match="another environment"):
        _verify(emu, preview, project_id="*", environment=["production"])


@pytest.mark.parametrize(
    ("value", "error", "fragment"),
    [
        ([], ValueError, "at least one"),
        (["prj_one", ""], ValueError, "at least one"),
        (["*", "prj_one"], ValueError, "stands alone"),
        ([1, 2], TypeError, "list of strings"),
        (42, TypeError, "list of strings"),
    ],
)
def test_a_bad_list_is_refused_before_anything(
    emu: ConnectEmulator, value: Any, error: type[Exception], fragment: str
) -> None:
    with pytest.raises(error, match=fragment):
        _verify(emu, emu.oidc_token(), project_id=value)
    with pytest.raises(error, match=fragment):
        WebhookASGIMiddleware(lambda *a: None, project_id=value)
    assert emu.jwks_requests == 0


def test_any_project_still_needs_the_token_to_name_one(emu: ConnectEmulator) -> None:
    """'*' accepts any project, never a token that names none."""
    with pytest.raises(WebhookVerificationError, match="names no project"):
        _verify(emu, _sign(_claims(project_id=None)), project_id="*", environment="*")
    with pytest.raises(WebhookVerificationError, match="names no environment"):
        _verify(emu, _sign(_claims(environment="")), project_id="*", environment="*")


def test_time_is_an_input(emu: ConnectEmulator) -> None:
    """clock= steps time: the same delivery is fine now, expired once its life and the
    leeway have passed, and issued in the future for a clock set back an hour."""
    token = emu.oidc_token(ttl=600)
    now = time.time()
    assert _verify(emu, token, issuer=ISSUER, clock=lambda: now).project_id
    late = now + 600 + webhooks.LEEWAY + 1
    with pytest.raises(WebhookVerificationError, match="expired"):
        _verify(emu, token, issuer=ISSUER, clock=lambda: late)
    with pytest.raises(WebhookVerificationError, match="iat"):
        _verify(emu, token, issuer=ISSUER, clock=lambda: now - 3600)


def test_the_middlewares_take_a_clock(emu: ConnectEmulator) -> None:
    """clock= reaches a middleware's verification, and a clock that is not a function is
    refused at start-up."""
    token = emu.oidc_token(ttl=600)
    late = time.time() + 3600

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [b"ok"]

    guarded = WebhookWSGIMiddleware(
        app, project_id=PROJECT, environment=ENV, issuer=ISSUER, jwks_url=emu.jwks_url,
        clock=lambda: late,
    )  # fmt: skip
    statuses: list[str] = []
    environ = {"PATH_INFO": "/hook", "HTTP_AUTHORIZATION": f"Bearer {token}"}
    guarded(environ, lambda status, headers: statuses.append(status))
    assert statuses == ["401 Unauthorized"]
    with pytest.raises(TypeError, match="clock"):
        WebhookWSGIMiddleware(app, clock="now")
