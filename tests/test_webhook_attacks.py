"""Attacks on webhook verification, each reproduced against a real server on loopback:
middlewares mounted under a prefix, JWKS fetch amplification, hostile JWKS answers,
malformed and non-finite tokens, and the header-injection and look-alike cases that
must keep failing."""

from __future__ import annotations

import contextlib
import json
import math
import socketserver
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from helpers import run_in_tasks, run_in_threads, running, serve_asgi, serve_wsgi
from joserfc import jws, jwt
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from test_webhooks import ENV, PROJECT, _b64, _claims, _sign, fresh_jwks  # noqa: F401
from werkzeug.middleware.dispatcher import DispatcherMiddleware

import connect_auth._webhooks as webhooks
from connect_auth import (
    WebhookASGIMiddleware,
    WebhookVerificationError,
    WebhookWSGIMiddleware,
    averify_connect_webhook,
    verify_connect_webhook,
)
from connect_auth.testing import ConnectEmulator
from connect_auth.testing._emulator import _signing_key


@pytest.fixture
def emu() -> Iterator[ConnectEmulator]:
    with ConnectEmulator() as e:
        yield e


def _options(emu: ConnectEmulator) -> dict[str, Any]:
    return {"project_id": PROJECT, "environment": ENV, "jwks_url": emu.jwks_url}


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- 1. middlewares behind a mount prefix ------------------------------------------------


class _Handler:
    """An app endpoint (``endpoint``) that counts how often it is reached."""

    def __init__(self) -> None:
        self.calls = 0

        async def endpoint(request: Request) -> JSONResponse:
            self.calls += 1
            return JSONResponse({"project": request.scope["connect_webhook"].project_id})

        self.endpoint = endpoint


def _try_every_spelling(base: str, path: str) -> list[int]:
    """Unauthenticated POSTs to ``path`` written as routers may still route it."""
    spellings = [path, path + "/", path.replace("/", "//"), "/" + path]
    return [httpx.post(base + p, json={}).status_code for p in spellings]


def test_asgi_middleware_inside_a_starlette_mount(emu: ConnectEmulator) -> None:
    handler = _Handler()
    inner = Starlette(
        routes=[Route("/hook", handler.endpoint, methods=["POST"])],
        middleware=[Middleware(WebhookASGIMiddleware, paths=["/hook"], **_options(emu))],
    )
    app = Starlette(routes=[Mount("/api", app=inner)])
    with serve_asgi(app) as base:
        assert set(_try_every_spelling(base, "/api/hook")) <= {401, 404, 405, 307}
        assert handler.calls == 0
        assert emu.deliver_webhook(base + "/api/hook", {}).json() == {"project": PROJECT}
        assert handler.calls == 1


def test_asgi_middleware_in_a_fastapi_sub_app(emu: ConnectEmulator) -> None:
    handler = _Handler()
    sub = FastAPI()
    sub.add_api_route("/hook", handler.endpoint, methods=["POST"])
    sub.add_middleware(WebhookASGIMiddleware, paths=["/hook"], **_options(emu))
    main = FastAPI()
    main.mount("/sub", sub)
    with serve_asgi(main) as base:
        assert httpx.post(base + "/sub/hook", json={}).status_code == 401
        assert handler.calls == 0
        assert emu.deliver_webhook(base + "/sub/hook", {}).status_code == 200
        assert handler.calls == 1


def test_asgi_middleware_behind_a_servers_root_path(emu: ConnectEmulator) -> None:
    """uvicorn --root-path: the app routes ``/hook`` while the scope's path is
    ``/prefix/hook``; either spelling of the guarded path is checked."""
    for guarded in ("/hook", "/prefix/hook"):
        handler = _Handler()
        app = Starlette(
            routes=[Route("/hook", handler.endpoint, methods=["POST"])],
            middleware=[Middleware(WebhookASGIMiddleware, paths=[guarded], **_options(emu))],
        )
        with serve_asgi(app, root_path="/prefix") as base:
            assert httpx.post(base + "/hook", json={}).status_code == 401, guarded
            assert handler.calls == 0
            assert emu.deliver_webhook(base + "/hook", {}).status_code == 200
            assert handler.calls == 1


def test_wsgi_middleware_under_a_script_name(emu: ConnectEmulator) -> None:
    """Mounted at ``/prefix`` (SCRIPT_NAME), guarding the path as the browser sees it or
    as the mounted app sees it."""
    import flask

    for guarded in ("/prefix/hook", "/hook"):
        calls: list[str] = []
        inner = flask.Flask(__name__)

        @inner.post("/hook")
        def hook(calls: list[str] = calls) -> dict[str, str]:
            calls.append(flask.request.environ["connect_webhook"].project_id)
            return {"ok": "yes"}

        inner.wsgi_app = WebhookWSGIMiddleware(  # type: ignore[method-assign]
            inner.wsgi_app, paths=[guarded], **_options(emu)
        )
        outer = DispatcherMiddleware(inner, {"/prefix": inner})
        with serve_wsgi(outer) as base:
            assert httpx.post(base + "/prefix/hook", json={}).status_code == 401, guarded
            assert httpx.post(base + "/prefix//hook/", json={}).status_code in (401, 404, 308)
            assert calls == []
            assert emu.deliver_webhook(base + "/prefix/hook", {}).status_code == 200
            assert calls == [PROJECT]


def test_guarded_path_decisions() -> None:
    paths = webhooks._path_set(["/hook", "/a/b/"])
    assert webhooks._guarded(paths, "/api/hook", "/api")
    assert webhooks._guarded(paths, "/hook", "/api")  # a server that strips the prefix
    assert webhooks._guarded(paths, "//a///b", "")
    assert not webhooks._guarded(paths, "/health", "/api")
    assert webhooks._guarded(None, "/anything", "")
    with pytest.raises(TypeError, match="start with '/'"):
        webhooks._path_set(["hook"])
    with pytest.raises(TypeError, match="list of paths"):
        webhooks._path_set("/hook")


# -- hostile JWKS servers -----------------------------------------------------------------


class _Raw(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@contextlib.contextmanager
def raw_server(answer: Callable[[Any], None]) -> Iterator[tuple[str, list[int]]]:
    """A loopback server that reads one request per connection and lets ``answer``
    write whatever bytes it likes; yields its URL and a list of bytes sent per request."""
    sent: list[int] = []

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            sent.append(0)
            index = len(sent) - 1

            def write(data: bytes) -> None:
                self.wfile.write(data)
                self.wfile.flush()
                sent[index] += len(data)

            with contextlib.suppress(OSError):
                answer(write)

    with running(_Raw(("127.0.0.1", 0), Handler)) as url:
        yield url + "/jwks", sent


def _verify_with(url: str, token: str) -> WebhookVerificationError:
    with pytest.raises(WebhookVerificationError) as caught:
        verify_connect_webhook(_bearer(token), project_id=PROJECT, environment=ENV, jwks_url=url)
    return caught.value


def _unavailable_503(write: Callable[[bytes], None]) -> None:
    write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


# -- 3. one fetch per URL, whatever the cache state -----------------------------------------


def test_a_cold_burst_of_forged_tokens_costs_one_fetch(emu: ConnectEmulator) -> None:
    forged = _sign(_claims(), key=RSAKey.generate_key(2048), kid="forged")
    results, errors = run_in_threads(
        20, lambda: verify_connect_webhook(_bearer(forged), **_options(emu))
    )
    assert results == [] and len(errors) == 20
    assert all(isinstance(e, WebhookVerificationError) and e.status == 401 for e in errors)
    assert emu.jwks_requests == 1


@pytest.mark.anyio
async def test_a_cold_burst_of_async_verifications_costs_one_fetch(
    emu: ConnectEmulator, anyio_backend: str
) -> None:
    genuine = emu.oidc_token()
    claims = await run_in_tasks(
        20, lambda: averify_connect_webhook(_bearer(genuine), **_options(emu))
    )
    assert {c.project_id for c in claims} == {PROJECT} and len(claims) == 20
    assert emu.jwks_requests == 1


def test_a_failing_jwks_is_asked_once_per_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    forged = _sign(_claims(), kid="forged")
    with raw_server(_unavailable_503) as (url, sent):
        _, errors = run_in_threads(15, lambda: _verify_with(url, forged))
        for _ in range(15):
            errors.append(_verify_with(url, forged))
        assert len(sent) == 1
        assert all(e.code == "jwks_unavailable" and e.status == 503 for e in errors)
        assert all("HTTP 503" in e.message for e in errors)
        monkeypatch.setattr(webhooks, "REFETCH_INTERVAL", 0.0)
        assert _verify_with(url, forged).code == "jwks_unavailable"
        assert len(sent) == 2  # the interval passed: asked again


def test_known_keys_survive_a_failing_refetch(
    emu: ConnectEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = _options(emu)
    verify_connect_webhook(_bearer(emu.oidc_token()), **options)
    emu.stop()  # the JWKS goes away
    with pytest.raises(WebhookVerificationError) as caught:
        verify_connect_webhook(_bearer(_sign(_claims(), kid="rotated")), **options)
    assert caught.value.code == "jwks_unavailable"
    assert verify_connect_webhook(_bearer(emu.oidc_token()), **options).project_id == PROJECT


# -- 4. JWKS answers: size, time, shape ------------------------------------------------------


def test_a_huge_jwks_answer_is_cut_off_at_the_cap() -> None:
    chunk = b" " * 65536

    def huge(write: Callable[[bytes], None]) -> None:
        write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n")
        write(b'{"keys": [')
        for _ in range(1024):  # 64 MiB, unless the reader hangs up
            write(chunk)

    with raw_server(huge) as (url, sent):
        error = _verify_with(url, _sign(_claims()))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(sent) == 1 and sent[0] == 0:
            time.sleep(0.01)
    assert error.code == "jwks_unavailable" and "too large" in error.message
    assert sent[0] < 16 << 20  # the reader hung up long before 64 MiB


def test_a_declared_huge_jwks_is_refused_before_its_body() -> None:
    def declared(write: Callable[[bytes], None]) -> None:
        write(b"HTTP/1.1 200 OK\r\nContent-Length: 67108864\r\nConnection: close\r\n\r\n{")
        time.sleep(2)

    with raw_server(declared) as (url, _):
        error = _verify_with(url, _sign(_claims()))
    assert "too large" in error.message


def test_a_dripping_jwks_is_cut_off_by_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """One byte at a time, each within the socket timeout: only an overall deadline ends
    it (the server would drip for a minute)."""
    monkeypatch.setattr(webhooks, "JWKS_DEADLINE", 1.0)

    def drip(write: Callable[[bytes], None]) -> None:
        write(b"HTTP/1.1 200 OK\r\nContent-Length: 600\r\nConnection: close\r\n\r\n")
        for _ in range(600):
            write(b" ")
            time.sleep(0.1)

    with raw_server(drip) as (url, sent):
        error = _verify_with(url, _sign(_claims()))
    assert error.code == "jwks_unavailable"
    assert "no complete answer within 1 s" in error.message
    assert sent[0] < 300  # it hung up mid-answer


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"keys": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
        b'{"keys": [{"kty": "RSA", "kid": "k", "n": 5, "e": {}}]}',
        b"\xff\xfe not json",
        b'{"keys": "nope"}',
    ],
    ids=["nested", "nested-keys", "bad-key", "bytes", "keys-not-a-list"],
)
def test_malformed_jwks_answers_are_unavailable_never_a_crash(body: bytes) -> None:
    def answer(write: Callable[[bytes], None]) -> None:
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        write(head.encode() + body)

    with raw_server(answer) as (url, _):
        error = _verify_with(url, _sign(_claims()))
    # a JWKS that parses but has no usable key refuses the token; anything else is a 503
    assert error.code in ("jwks_unavailable", "webhook_unauthorized")
    assert error.status in (401, 503)


def test_a_compressed_jwks_is_refused() -> None:
    def gzipped(write: Callable[[bytes], None]) -> None:
        write(
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n"
            b"Connection: close\r\n\r\nabcd"
        )

    with raw_server(gzipped) as (url, _):
        assert "compressed" in _verify_with(url, _sign(_claims())).message


# -- 5. malformed tokens: 401, never 500 --------------------------------------------------


def _nested_header_token() -> str:
    header = '{"alg":"RS256","kid":"emulator","x":' + "[" * 1100 + "]" * 1100 + "}"
    return f"{_b64(header.encode())}.{_b64(_claims())}.c2ln"


def _nested_payload_token() -> str:
    """Signed with the real key, so only parsing the payload can fail."""
    payload = json.dumps(_claims())[:-1] + ', "x": ' + "[" * 5000 + "]" * 5000 + "}"
    return jws.serialize_compact(
        {"alg": "RS256", "kid": "emulator"}, payload.encode(), _signing_key()
    )


MALFORMED = {
    "nested-header": _nested_header_token,
    "huge-token": lambda: f"{_b64({'alg': 'RS256', 'kid': 'k'})}.{'A' * 20_000}.sig",
    "header-not-object": lambda: f"{_b64(b'[1,2]')}.{_b64(_claims())}.sig",
    "header-bad-utf8": lambda: f"{_b64(bytes([0xFF, 0xFE]))}.{_b64(_claims())}.sig",
}


@pytest.mark.parametrize("make", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_tokens_are_refused_with_401(emu: ConnectEmulator, make: Any) -> None:
    token = make()
    with pytest.raises(WebhookVerificationError) as caught:
        verify_connect_webhook(_bearer(token), **_options(emu))
    assert caught.value.status == 401 and token not in str(caught.value)


def test_a_signed_deeply_nested_payload_is_verified_or_refused_never_an_error(
    emu: ConnectEmulator,
) -> None:
    """Signed with the real key, so only parsing the payload can fail: whether it parses
    depends on the interpreter's recursion limit; either way no other exception escapes."""
    try:
        claims = verify_connect_webhook(_bearer(_nested_payload_token()), **_options(emu))
    except WebhookVerificationError as exc:
        assert exc.status == 401 and "malformed" in exc.message
    else:
        assert claims.project_id == PROJECT
    with pytest.MonkeyPatch.context() as patch:  # make the parse fail, as on a stock limit
        patch.setattr(webhooks, "_jose", _jose_whose_decode_recurses)
        with pytest.raises(WebhookVerificationError, match="malformed") as caught:
            verify_connect_webhook(_bearer(_nested_payload_token()), **_options(emu))
        assert caught.value.status == 401


def _jose_whose_decode_recurses() -> Any:
    import types

    import joserfc.errors
    import joserfc.jwk

    def decode(*args: Any, **kwargs: Any) -> Any:
        raise RecursionError("maximum recursion depth exceeded while decoding a JSON array")

    return types.SimpleNamespace(
        errors=joserfc.errors, jwk=joserfc.jwk, jwt=types.SimpleNamespace(decode=decode)
    )


def test_middlewares_answer_malformed_tokens_with_401(emu: ConnectEmulator) -> None:
    async def ok(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    asgi = WebhookASGIMiddleware(
        Starlette(routes=[Route("/hook", ok, methods=["POST"])]), **_options(emu)
    )

    def wsgi_ok(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [b"ok"]

    wsgi = WebhookWSGIMiddleware(wsgi_ok, **_options(emu))
    with serve_asgi(asgi) as asgi_url, serve_wsgi(wsgi) as wsgi_url:
        for name, make in MALFORMED.items():
            for base in (asgi_url, wsgi_url):
                r = httpx.post(base + "/hook", json={}, headers=_bearer(make()))
                assert r.status_code == 401, (name, base)


# -- 6. non-finite times ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "claim",
    [
        {"exp": math.nan},
        {"exp": math.inf},
        {"exp": 10**400},
        {"nbf": math.nan},
        {"iat": -math.inf},
    ],
    ids=["exp-nan", "exp-inf", "exp-huge-int", "nbf-nan", "iat-minus-inf"],
)
def test_signed_tokens_with_non_finite_times_are_refused(
    emu: ConnectEmulator, claim: dict[str, Any]
) -> None:
    token = _sign(_claims(**claim))  # genuinely signed with the emulator's key
    with pytest.raises(WebhookVerificationError) as caught:
        verify_connect_webhook(_bearer(token), **_options(emu))
    assert caught.value.status == 401
    assert "finite" in caught.value.message or "signature" not in caught.value.message


# -- attacks that must keep failing ----------------------------------------------------------


def test_key_material_named_in_the_header_is_never_used_or_fetched(emu: ConnectEmulator) -> None:
    """``jku``, ``x5u`` and an embedded ``jwk`` point at the attacker's key: refused,
    and the attacker's server is never asked."""
    attacker = RSAKey.generate_key(2048, private=True)

    def serve_attacker_keys(write: Callable[[bytes], None]) -> None:
        body = json.dumps({"keys": [attacker.as_dict(private=False)]}).encode()
        write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    with raw_server(serve_attacker_keys) as (attacker_url, sent):
        headers: list[dict[str, Any]] = [
            {"alg": "RS256", "kid": "emulator", "jku": attacker_url},
            {"alg": "RS256", "kid": "emulator", "x5u": attacker_url},
            {"alg": "RS256", "kid": "emulator", "jwk": attacker.as_dict(private=False)},
            {"alg": "RS256", "kid": "attacker", "jku": attacker_url},
        ]
        for header in headers:
            token = jwt.encode(header, _claims(), attacker)
            with pytest.raises(WebhookVerificationError) as caught:
                verify_connect_webhook(_bearer(token), **_options(emu))
            assert caught.value.status == 401
        assert sent == []


@pytest.mark.parametrize(
    "iss",
    [
        "https://oidc.vercel.com.evil.example",
        "https://oidc.vercel.com@evil.example",
        "https://oidc.vercel.com/team/../../evil",
        "https://OIDC.vercel.com",
        "https://oidc.vercel.com/team?x=1",
        "https://oidc.vercel.com/team%2f..",
    ],
)
def test_issuer_look_alikes_are_refused(emu: ConnectEmulator, iss: str) -> None:
    token = _sign(_claims(iss=iss))
    with pytest.raises(WebhookVerificationError, match="issuer"):
        verify_connect_webhook(_bearer(token), **_options(emu))


@pytest.mark.parametrize(
    "url",
    [
        "http://evil.example\\@127.0.0.1:8080/jwks",
        "http://user:pass@127.0.0.1/jwks",
        "https://keys.example/jwks\r\nX-Injected: 1",
        "https://keys.example/jw ks",
    ],
)
def test_ambiguous_jwks_and_issuer_urls_are_refused(url: str) -> None:
    for name in ("jwks_url", "issuer"):
        with pytest.raises(ValueError, match=f"{name} must be an https:// URL"):
            WebhookASGIMiddleware(lambda *a: None, **{name: url})
