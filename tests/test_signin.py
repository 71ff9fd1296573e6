"""Sign-in via Connect with authlib: both example apps served on loopback and driven as a
browser would (cookies, redirects, the consent form) against the emulator's OAuth face;
the refusals; and one run in a real headless Chromium."""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from helpers import free_port, jwt_like, serve_asgi, serve_wsgi

from connect_auth.authlib import connect_client_auth, connect_scopes, oauth_origin, team_id
from connect_auth.testing import ConnectEmulator

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SERVERS: dict[str, Callable[[Any], contextlib.AbstractContextManager[str]]] = {
    "fastapi_signin": serve_asgi,
    "flask_signin": serve_wsgi,
}


@pytest.fixture
def emu() -> Iterator[ConnectEmulator]:
    with ConnectEmulator() as e:
        yield e


def _app_url(emu: ConnectEmulator, example: str, vercel_token: str | None) -> Iterator[str]:
    app = _example(example).create_app(oauth_base_url=emu.oauth_url, vercel_token=vercel_token)
    with SERVERS[example](app) as url:
        yield url


class _Form(HTMLParser):
    """The consent page's form: its action and fields, as a browser would submit them."""

    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self.action = a.get("action") or ""
        elif tag == "input" and a.get("name"):
            self.fields[str(a["name"])] = a.get("value") or ""


def _sign_in(
    browser: httpx.Client, app: str, *, decision: str = "approve", user: str = "u_alice"
) -> tuple[httpx.Response, str]:
    """Click "Sign in", approve (or deny) on Connect's page, follow back to the app.
    Returns the app's answer to the callback, and the authorize URL."""
    login = browser.get(app + "/login")
    assert login.status_code in (302, 303, 307), login.text
    authorize = login.headers["location"]
    page = browser.get(authorize)
    assert page.status_code == 200, page.text
    form = _Form()
    form.feed(page.text)
    fields = {**form.fields, "user": user, "decision": decision}
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(authorize))
    back = browser.post(origin + form.action, data=fields)
    assert back.status_code == 303
    return browser.get(back.headers["location"]), authorize


@pytest.mark.parametrize("example", sorted(SERVERS))
def test_sign_in_userinfo_and_refresh(emu: ConnectEmulator, example: str) -> None:
    """Login, consent, callback, userinfo and a refresh, with the Vercel credential
    read at each token request and sent as HTTP Basic."""
    for app in _app_url(emu, example, emu.oidc_token()):
        with httpx.Client() as browser:
            callback, authorize = _sign_in(browser, app, user="u_grace")
            assert callback.status_code == 303 and callback.headers["location"] == "/"
            home = browser.get(app + "/")
            assert "Signed in as Grace" in home.text
            refreshed = browser.get(app + "/refresh")
            assert refreshed.json() == {"refreshed": True}
    query = parse_qs(urlsplit(authorize).query)
    assert query["client_id"] == ["slack/acme-slack"]
    assert query["teamId"] == ["team_emulator"]
    assert query["code_challenge_method"] == ["S256"] and query["code_challenge"]
    assert query["scope"] == ["openid profile email offline_access"]
    (grant,) = emu.oauth_grants()
    assert grant.user == "u_grace" and grant.code_used and len(grant.access_tokens) == 2
    grants = [c for c in emu.calls if c.endpoint == "oauth_token"]
    assert [c.params["grant_type"] for c in grants] == ["authorization_code", "refresh_token"]
    assert all(c.status == 200 and c.identity is not None for c in grants)


@pytest.mark.parametrize("example", sorted(SERVERS))
def test_a_denial_is_reported(emu: ConnectEmulator, example: str) -> None:
    for app in _app_url(emu, example, emu.oidc_token()):
        with httpx.Client() as browser:
            callback, _ = _sign_in(browser, app, decision="deny")
    assert callback.status_code == 400
    assert "Sign-in failed: access_denied" in callback.text
    assert emu.oauth_grants() == []


@pytest.mark.parametrize("example", sorted(SERVERS))
def test_a_wrong_state_is_refused(emu: ConnectEmulator, example: str) -> None:
    """A callback whose state is not the one this browser was given (CSRF)."""
    for app in _app_url(emu, example, emu.oidc_token()):
        with httpx.Client() as browser:
            login = browser.get(app + "/login")
            page = browser.get(login.headers["location"])
            form = _Form()
            form.feed(page.text)
            fields = {**form.fields, "state": "forged-state", "decision": "approve"}
            back = browser.post(emu.url + form.action, data=fields)
            callback = browser.get(back.headers["location"])
    assert callback.status_code == 400 and "Sign-in failed: mismatching_state" in callback.text
    assert [c for c in emu.calls if c.endpoint == "oauth_token"] == []


@pytest.mark.parametrize("example", sorted(SERVERS))
@pytest.mark.parametrize("credential", ["foreign", "expired"])
def test_a_bad_vercel_credential_is_reported(
    emu: ConnectEmulator, example: str, credential: str
) -> None:
    """A credential the emulator did not sign is refused at the token endpoint; an
    expired one is refused before it is sent. Either way the app says why."""
    token = _foreign(emu.oidc_token()) if credential == "foreign" else emu.oidc_token(ttl=-60)
    for app in _app_url(emu, example, token):
        with httpx.Client() as browser:
            callback, _ = _sign_in(browser, app)
    assert callback.status_code == 400
    if credential == "foreign":
        assert "Sign-in failed: invalid_client" in callback.text
        assert [c.status for c in emu.calls if c.endpoint == "oauth_token"] == [401]
    else:
        assert "Sign-in failed: OidcTokenError" in callback.text and "expired" in callback.text
    assert token not in callback.text


def _foreign(token: str) -> str:
    """The same claims, signed by a key the emulator does not know."""
    from joserfc import jwt
    from joserfc.jwk import RSAKey

    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return jwt.encode({"alg": "RS256", "kid": "emulator"}, claims, RSAKey.generate_key(2048))


def _authorization_code(emu: ConnectEmulator, challenge_verifier: str) -> tuple[str, str]:
    """A code obtained on the consent page for a known PKCE verifier."""
    from connect_auth.testing._oauth import pkce_s256

    redirect = "http://127.0.0.1:1/cb"
    query = {
        "response_type": "code",
        "client_id": "slack/acme-slack",
        "redirect_uri": redirect,
        "scope": "openid offline_access",
        "state": "s1",
        "code_challenge": pkce_s256(challenge_verifier),
        "code_challenge_method": "S256",
    }
    back = httpx.post(emu.url + "/oauth/authorize", data={**query, "decision": "approve"})
    return parse_qs(urlsplit(back.headers["location"]).query)["code"][0], redirect


@pytest.mark.parametrize(
    ("verifier", "fragment"),
    [(None, "code_verifier does not match"), ("another-verifier-" + "x" * 40, "does not match")],
)
def test_the_token_endpoint_checks_pkce(
    emu: ConnectEmulator, verifier: str | None, fragment: str
) -> None:
    code, redirect = _authorization_code(emu, "the-real-verifier-" + "y" * 40)
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect}
    if verifier is not None:
        form["code_verifier"] = verifier
    auth = connect_client_auth("slack/acme-slack", emu.oidc_token())
    _, headers, _ = auth(None, "POST", "", {}, "")
    answer = httpx.post(emu.url + "/oauth/token", data=form, headers=headers)
    assert answer.status_code == 400
    assert (
        answer.json()["error"] == "invalid_grant" and fragment in answer.json()["error_description"]
    )


def test_the_authorize_page_refuses_requests_without_pkce(emu: ConnectEmulator) -> None:
    page = httpx.get(
        emu.url + "/oauth/authorize",
        params={"response_type": "code", "client_id": "slack/acme-slack",
                "redirect_uri": "http://127.0.0.1:1/cb"},
    )  # fmt: skip
    assert page.status_code == 400 and "PKCE is required" in page.text


def test_client_auth_reads_the_credential_at_each_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """HTTP Basic urlenc(connector):urlenc(oidc token), from the environment now."""
    auth = connect_client_auth("slack/acme slack")
    seen = []
    values = (jwt_like("first"), jwt_like("second"))
    for value in values:
        monkeypatch.setenv("VERCEL_OIDC_TOKEN", value)
        _, headers, _ = auth(None, "POST", "https://x", {}, "")
        seen.append(base64.b64decode(headers["Authorization"][6:]).decode())
    assert seen == [f"slack%2Facme%20slack:{value}" for value in values]


def test_scopes_origin_and_team_rules() -> None:
    assert connect_scopes(None) == ["openid", "profile", "email", "offline_access"]
    assert connect_scopes(["openid", "offline_access"]) == ["openid", "offline_access"]
    with pytest.raises(TypeError, match="list of non-empty strings"):
        connect_scopes("openid")
    assert oauth_origin(None, {}) == "https://connect.vercel.com"
    assert oauth_origin(None, {"CONNECT_AUTH_OAUTH_URL": "http://127.0.0.1:5/"}) == (
        "http://127.0.0.1:5"
    )
    with pytest.raises(ValueError, match="http:// only on loopback"):
        oauth_origin("http://connect.example.com", {})
    emu = ConnectEmulator()
    assert team_id(emu.oidc_token(owner_id="team_abc")) == "team_abc"
    assert team_id("not-a-jwt") is None


def test_register_connect_refuses_bad_arguments() -> None:
    from authlib.integrations.starlette_client import OAuth

    from connect_auth.authlib import register_connect

    with pytest.raises(ValueError, match="Python identifier"):
        register_connect(OAuth(), "my-app", connector="slack/acme-slack")
    with pytest.raises(TypeError, match="authlib's OAuth registry"):
        register_connect(object(), "slack", connector="slack/acme-slack")
    with pytest.raises(ValueError, match="sets \\['client_secret'\\] itself"):
        register_connect(OAuth(), "slack", connector="slack/acme-slack", client_secret="s")
    with pytest.raises(ValueError, match="connector must be a non-empty"):
        register_connect(OAuth(), "slack", connector="")


def test_django_app_signs_in_and_refreshes(emu: ConnectEmulator) -> None:
    """authlib's Django client, in a Django app on a real WSGI server."""
    import wsgiref.simple_server

    import django_signin
    from django.core.wsgi import get_wsgi_application

    django_signin.configure(oauth_base_url=emu.oauth_url, vercel_token=emu.oidc_token())

    class Quiet(wsgiref.simple_server.WSGIRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    server = wsgiref.simple_server.make_server(
        "127.0.0.1", 0, get_wsgi_application(), handler_class=Quiet
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        app = f"http://127.0.0.1:{server.server_port}"
        with httpx.Client() as browser:
            callback, authorize = _sign_in(browser, app, user="u_django")
            assert callback.status_code == 303, callback.text
            assert "Signed in as Django" in browser.get(app + "/").text
            assert browser.get(app + "/refresh").json() == {"refreshed": True}
    finally:
        server.shutdown()
        server.server_close()
    assert "teamId=team_emulator" in authorize
    assert [c.status for c in emu.calls if c.endpoint == "oauth_token"] == [200, 200]


def test_django_registry_gets_a_connect_client(emu: ConnectEmulator) -> None:
    """Django's authlib integration: the same registration, a sync app class."""
    from authlib.integrations.django_client import OAuth

    from connect_auth.authlib import register_connect

    client = register_connect(
        OAuth(), "slack", connector="slack/acme-slack", oauth_base_url=emu.oauth_url,
        vercel_token=emu.oidc_token(),
    )  # fmt: skip
    url = client.create_authorization_url("http://127.0.0.1:1/cb")["url"]
    assert url.startswith(emu.url + "/oauth/authorize?") and "teamId=team_emulator" in url


# -- a real browser -------------------------------------------------------------------------


def test_fastapi_example_in_headless_chromium(emu: ConnectEmulator, chromium: str) -> None:
    """The FastAPI example, signed into by Chromium: clicks, cookies and redirects."""
    from playwright.sync_api import sync_playwright

    for app in _app_url(emu, "fastapi_signin", emu.oidc_token()):
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=chromium,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                      "--disable-component-update", "--disable-sync", "--no-first-run"],
            )  # fmt: skip
            try:
                page = browser.new_page()
                page.goto(app + "/")
                page.click("#login")
                page.wait_for_url(re.compile(r".*/oauth/authorize.*"))
                page.fill("#user", "u_ada")
                page.click("#approve")
                page.wait_for_selector("#who")
                assert page.inner_text("#who") == "Signed in as Ada"
            finally:
                browser.close()
    assert emu.oauth_grants()[0].user == "u_ada"


@pytest.mark.parametrize("example", sorted(SERVERS))
def test_each_example_runs_with_one_command(example: str, tmp_path: Path) -> None:
    """`python examples/<app>.py` starts its own emulator and app; a person can sign in."""
    import os
    import subprocess
    import sys

    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("CONNECT_AUTH_OAUTH_URL", "VERCEL_OIDC_TOKEN", "VERCEL_OIDC_TOKEN_FILE")
    }
    proc = subprocess.Popen(
        [sys.executable, "-u", str(EXAMPLES / f"{example}.py")],
        env={**env, "PORT": str(port)},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(2)]
        assert "Connect emulator on http://127.0.0.1:" in lines[0]
        assert lines[1].strip() == f"Open http://127.0.0.1:{port}"
        app = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(app + "/")
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the example app did not start"
                time.sleep(0.05)
        with httpx.Client() as browser:
            callback, _ = _sign_in(browser, app, user="u_linus")
            assert callback.status_code == 303
            assert "Signed in as Linus" in browser.get(app + "/").text
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()


def test_the_vercel_credential_never_shows(
    emu: ConnectEmulator, debug_logs: pytest.LogCaptureFixture
) -> None:
    """Through a whole sign-in and refresh, with every logger at DEBUG: not in a log
    record, the registered client's repr, its registration or any page."""
    from authlib.integrations.starlette_client import OAuth

    from connect_auth.authlib import register_connect

    credential = emu.oidc_token()
    shown: list[str] = []
    for app in _app_url(emu, "fastapi_signin", credential):
        with httpx.Client() as browser:
            callback, authorize = _sign_in(browser, app)
            shown += [callback.text, authorize, browser.get(app + "/refresh").text]
    client = register_connect(OAuth(), "slack", connector="slack/acme-slack",
                              vercel_token=credential)  # fmt: skip
    shown += [repr(client), repr(vars(client)), repr(client.client_kwargs)]
    assert debug_logs.records
    for text in [debug_logs.text, *shown]:
        assert credential not in text


def test_the_request_scoped_credential_is_the_client_secret() -> None:
    """On Vercel the credential comes with each request (x-vercel-oidc-token); the
    client authentication uses the one of the request being served."""
    from connect_auth import oidc_token_scope

    auth = connect_client_auth("slack/acme-slack")
    scoped = jwt_like("from-this-request")
    with oidc_token_scope(scoped):
        _, headers, _ = auth(None, "POST", "https://x", {}, "")
    assert base64.b64decode(headers["Authorization"][6:]).decode().endswith(":" + scoped)


def test_revocation_ends_the_sign_in(emu: ConnectEmulator) -> None:
    """/oauth/revoke (RFC 7009): a revoked refresh token ends the grant; a revoked
    access token no longer reads userinfo."""
    verifier = "v" * 50
    code, redirect = _authorization_code(emu, verifier)
    _, headers, _ = connect_client_auth("slack/acme-slack", emu.oidc_token())(None, "", "", {}, "")
    token = httpx.post(
        emu.url + "/oauth/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": redirect,
              "code_verifier": verifier},
        headers=headers,
    ).json()  # fmt: skip
    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    assert httpx.get(emu.url + "/oauth/userinfo", headers=bearer).json()["sub"] == "u_alice"
    assert httpx.post(emu.url + "/oauth/revoke", data={"token": token["access_token"]}).is_success
    assert httpx.get(emu.url + "/oauth/userinfo", headers=bearer).status_code == 401
    httpx.post(emu.url + "/oauth/revoke", data={"token": token["refresh_token"]})
    again = httpx.post(
        emu.url + "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"]},
        headers=headers,
    )
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    reused = httpx.post(
        emu.url + "/oauth/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": redirect,
              "code_verifier": verifier},
        headers=headers,
    )  # fmt: skip
    assert reused.status_code == 400 and "already used" in reused.json()["error_description"]
