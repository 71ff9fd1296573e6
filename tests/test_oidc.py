"""Finding the Vercel credential and the request-scoped override."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from helpers import jwt_like, mock_client

from connect_auth import (
    ConnectClient,
    OidcASGIMiddleware,
    OidcTokenError,
    OidcWSGIMiddleware,
    oidc_token_scope,
)
from connect_auth._oidc import parse_dotenv, resolve_credential
from connect_auth.testing import ConnectEmulator, ConnectorSpec

FIRST, SECOND = jwt_like("first-token"), jwt_like("second-token-longer")
FROM_ENV, FROM_HEADER, FROM_FILE = jwt_like("env"), jwt_like("header"), jwt_like("file")
EXPLICIT, UP, HDR, ASGI_HDR = jwt_like("explicit"), jwt_like("up"), jwt_like("h"), jwt_like("a")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.delenv("VERCEL_OIDC_TOKEN", raising=False)
    monkeypatch.delenv("VERCEL_OIDC_TOKEN_FILE", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_token_file_beats_env_and_is_read_again_when_it_changes(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """VERCEL_OIDC_TOKEN_FILE (a mounted, rotated token) comes before VERCEL_OIDC_TOKEN,
    as in @vercel/oidc 4.x; a rewritten file is picked up on the next call."""
    token_file = clean_env / "oidc-token"
    token_file.write_text(FIRST + "\n")
    monkeypatch.setenv("VERCEL_OIDC_TOKEN", FROM_ENV)
    monkeypatch.setenv("VERCEL_OIDC_TOKEN_FILE", str(token_file))
    now = time.time()
    assert resolve_credential(None, now=now).value == FIRST
    token_file.write_text(SECOND + "\n")  # a new size: changed even on coarse mtimes
    assert resolve_credential(None, now=now).value == SECOND
    with oidc_token_scope(FROM_HEADER):
        assert resolve_credential(None, now=now).value == FROM_HEADER
    monkeypatch.delenv("VERCEL_OIDC_TOKEN_FILE")
    assert resolve_credential(None, now=now).value == FROM_ENV


@pytest.mark.parametrize("content", [None, "", "  \n"])
def test_a_token_file_that_cannot_be_used_is_an_error_naming_it(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, content: str | None
) -> None:
    token_file = clean_env / "oidc-token"
    if content is not None:
        token_file.write_text(content)
    monkeypatch.setenv("VERCEL_OIDC_TOKEN", FROM_ENV)  # never silently used instead
    monkeypatch.setenv("VERCEL_OIDC_TOKEN_FILE", str(token_file))
    with pytest.raises(OidcTokenError, match=r"VERCEL_OIDC_TOKEN_FILE names .*oidc-token"):
        resolve_credential(None, now=time.time())


def test_a_client_fetches_with_the_token_file(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ConnectEmulator() as emu:
        token_file = clean_env / "oidc-token"
        token_file.write_text(emu.oidc_token(project_id="prj_file"))
        monkeypatch.setenv("VERCEL_OIDC_TOKEN", emu.oidc_token())
        monkeypatch.setenv("VERCEL_OIDC_TOKEN_FILE", str(token_file))
        emu.add_connector(ConnectorSpec(uid="notion/acme", links={"prj_file": ["development"]}))
        with ConnectClient(base_url=emu.url) as client:
            assert client.get_token("notion/acme", subject={"type": "app"})
        assert emu.calls[-1].identity is not None
        assert emu.calls[-1].identity["project_id"] == "prj_file"


def test_explicit_beats_scope_beats_env(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Explicit argument > request scope > VERCEL_OIDC_TOKEN > .env.local."""
    (clean_env / ".env.local").write_text(f"VERCEL_OIDC_TOKEN={FROM_FILE}\n")
    now = time.time()
    assert resolve_credential(None, now=now).value == FROM_FILE
    monkeypatch.setenv("VERCEL_OIDC_TOKEN", FROM_ENV)
    assert resolve_credential(None, now=now).value == FROM_ENV
    with oidc_token_scope(FROM_HEADER):
        assert resolve_credential(None, now=now).value == FROM_HEADER
        assert resolve_credential(EXPLICIT, now=now).value == EXPLICIT
    assert resolve_credential(None, now=now).value == FROM_ENV


def test_dotenv_is_found_walking_up(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The nearest .env.local up to the project root is used."""
    (clean_env / ".env.local").write_text(f"# Created by Vercel CLI\nVERCEL_OIDC_TOKEN={UP}\n")
    (clean_env / ".vercel").mkdir()  # what `vercel link` leaves: the project root
    deep = clean_env / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    assert resolve_credential(None, now=time.time()).value == UP


def test_missing_token_says_how_to_get_one(clean_env: Path) -> None:
    """No credential anywhere: the error names vercel link and vercel env pull."""
    with pytest.raises(OidcTokenError, match="vercel env pull") as info:
        resolve_credential(None, now=time.time())
    assert "vercel link" in str(info.value)


def test_expired_token_is_looked_up_again(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An expired file token is re-read once: a re-pulled file is picked up."""
    emu = ConnectEmulator()
    expired, fresh = emu.oidc_token(ttl=-60), emu.oidc_token(ttl=600)
    env_file = clean_env / ".env.local"
    env_file.write_text(f'VERCEL_OIDC_TOKEN="{expired}"\n')
    now = time.time()
    with pytest.raises(OidcTokenError, match="expired at") as info:
        resolve_credential(None, now=now)
    assert expired not in str(info.value)
    # Same mtime granularity could hide the rewrite from a stat check: the
    # second look must re-read regardless.
    import os

    stat = env_file.stat()
    env_file.write_text(f'VERCEL_OIDC_TOKEN="{fresh}"\n')
    os.utime(env_file, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert resolve_credential(None, now=now).value == fresh


def test_expired_explicit_token_is_refused(clean_env: Path) -> None:
    """An explicit JWT past its exp is refused before any network call."""
    token = ConnectEmulator().oidc_token(ttl=-5)
    with pytest.raises(OidcTokenError, match="vercel_token argument"):
        resolve_credential(token, now=time.time())


@pytest.mark.parametrize("value", ["vca_opaque_token", "a.b.c", "e30.W10.sig"])
def test_non_jwt_credentials_are_refused_before_any_request(value: str) -> None:
    """A credential that is not a JWT is refused, as by Vercel's SDK ("Invalid token");
    the message names where it came from, never what it holds."""
    with pytest.raises(OidcTokenError, match="not a JWT") as info:
        resolve_credential(value, now=time.time())
    assert "vercel_token argument" in str(info.value) and value not in str(info.value)
    requests: list[object] = []
    with (
        mock_client(lambda r: requests.append(r), vercel_token=value) as c,
        pytest.raises(OidcTokenError, match="not a JWT"),
    ):
        c.get_token("slack/acme-slack", subject={"type": "app"})
    assert requests == []


def test_parse_dotenv() -> None:
    """Quotes, escapes, comments and export prefixes."""
    text = "# c\nA=\"x\\ny\"\nexport B=plain\nC='single'\n\nbroken\nD=\n"
    assert parse_dotenv(text) == {"A": "x\ny", "B": "plain", "C": "single", "D": ""}


def test_scope_rejects_empty() -> None:
    """An empty scoped token is a ValueError."""
    with pytest.raises(ValueError), oidc_token_scope(""):
        pass


def test_wsgi_middleware_scopes_the_header(clean_env: Path) -> None:
    """The WSGI middleware makes x-vercel-oidc-token the credential during the call."""
    seen: list[str] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append(resolve_credential(None, now=time.time()).value)
        return [b""]

    wrapped = OidcWSGIMiddleware(app, trust_header=True)
    wrapped({"HTTP_X_VERCEL_OIDC_TOKEN": HDR}, lambda *a: None)
    assert seen == [HDR]
    with pytest.raises(OidcTokenError):
        resolve_credential(None, now=time.time())


@pytest.mark.anyio
async def test_asgi_middleware_scopes_the_header(clean_env: Path) -> None:
    """The ASGI middleware does the same for each request."""
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(resolve_credential(None, now=time.time()).value)

    async def receive() -> dict[str, Any]:
        return {}

    async def send(message: Any) -> None:
        return None

    wrapped = OidcASGIMiddleware(app, trust_header=True)
    scope = {"type": "http", "headers": [(b"x-vercel-oidc-token", ASGI_HDR.encode())]}
    await wrapped(scope, receive, send)
    assert seen == [ASGI_HDR]
