"""What crosses a trust boundary: configured origins and URL arguments that parsers read
differently, a Connect that answers with hostile URLs and terminal escapes, the CLI's
credential on the command line, and an emulator that must stay on this machine."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import SLACK, running

from connect_auth import ConnectClient
from connect_auth.authlib import oauth_origin
from connect_auth.cli import printable, read_vercel_token
from connect_auth.testing import ConnectEmulator, ConnectorSpec

AMBIGUOUS = [
    "http://evil.example\\@127.0.0.1:8080",
    "http://evil.example%5C@127.0.0.1:8080",
    "http://user:pass@127.0.0.1:8080",
    "http://@127.0.0.1:8080",
    "http://127.0.0.1:8080/\r\nX-Injected: 1",
    "http://127.0.0.1:8080/\x00",
    "http://127.0.0.1:8080/\tx",
    "http://127.0.0.1:8080/a b",
]


@pytest.fixture
def emu() -> Iterator[ConnectEmulator]:
    with ConnectEmulator() as e:
        yield e


# -- 11. configured origins -----------------------------------------------------------------


@pytest.mark.parametrize("url", AMBIGUOUS)
def test_ambiguous_origins_are_refused_everywhere(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValueError, match="base_url"):
        ConnectClient(base_url=url)
    if "\x00" not in url:  # an environment cannot hold NUL
        monkeypatch.setenv("CONNECT_AUTH_BASE_URL", url)
        with pytest.raises(ValueError, match="base_url"):
            ConnectClient()
        monkeypatch.delenv("CONNECT_AUTH_BASE_URL")
    with pytest.raises(ValueError, match="oauth_base_url"):
        oauth_origin(url, {})
    with pytest.raises(ValueError, match="oauth_base_url"):
        oauth_origin(None, {"CONNECT_AUTH_OAUTH_URL": url})


def test_the_backslash_origin_never_sends_the_credential(emu: ConnectEmulator) -> None:
    """The reported attack: CONNECT_AUTH_OAUTH_URL with ``\\@`` passed the loopback check
    while requests and authlib went to ``evil.example`` with the credential."""
    from authlib.integrations.starlette_client import OAuth

    from connect_auth.authlib import register_connect

    with pytest.raises(ValueError, match="backslash"):
        register_connect(
            OAuth(),
            "slack",
            connector=SLACK,
            oauth_base_url="http://evil.example\\@" + emu.url.removeprefix("http://"),
            vercel_token=emu.oidc_token(),
        )


# -- 12. consent URLs ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "url"),
    [
        ("callback_url", "http://evil.com\\@localhost/cb"),
        ("callback_url", "http://evil.com@localhost/cb"),
        ("callback_url", "https://app.example/cb\r\nSet-Cookie: x=1"),
        ("callback_url", "https://app.example/cb\x00"),
        ("callback_url", "https://app.example/\tcb"),
        ("webhook", "https://hooks.example/\r\n"),
        ("webhook", "https://user@hooks.example/x"),
        ("webhook", "https://evil.example\\@hooks.example/x"),
    ],
)
def test_ambiguous_consent_urls_are_refused_before_any_call(
    emu: ConnectEmulator, option: str, url: str
) -> None:
    with ConnectClient(base_url=emu.url, vercel_token=emu.oidc_token()) as client:
        for start in (client.start_authorization, client.experimental_start_installation):
            kwargs: dict[str, Any] = {option: url}
            if start == client.start_authorization:
                kwargs["subject"] = {"type": "user", "id": "u_alice"}
            with pytest.raises(ValueError, match=option):
                start(SLACK, **kwargs)
    assert emu.calls == []


# -- 13. a hostile Connect and the CLI ------------------------------------------------------

ESCAPES = "\x1b[2J\x1b]0;pwned\x07\r"


@contextlib.contextmanager
def hostile_connect(authorize_url: str) -> Iterator[str]:
    """A Connect API whose answers carry a URL of the attacker's and terminal escapes:
    the token call needs consent, then the user 'denies' with an escaped message."""
    token_calls = [0]

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if "/authorize/" in self.path:
                status, body = (
                    200,
                    {
                        "url": authorize_url,
                        "request": "req_1",
                        "verifier": "v",
                        "deviceCode": f"{ESCAPES}CODE",
                    },
                )
            else:
                token_calls[0] += 1
                code = "user_authorization_required" if token_calls[0] == 1 else "access_denied"
                status = 403
                body = {"error": {"code": code, "message": f"{ESCAPES}no access"}}
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    with running(ThreadingHTTPServer(("127.0.0.1", 0), Handler)) as url:
        yield url


def _cli(*args: str, env: dict[str, str], stdin: str | None = None) -> Any:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("VERCEL_", "CONNECT_AUTH_"))}
    return subprocess.run(
        [sys.executable, "-m", "connect_auth", *args],
        capture_output=True,
        text=True,
        env={**clean, **env},
        input=stdin,
        timeout=60,
        check=False,
    )


def _recording_browser(tmp_path: Path) -> tuple[str, Path]:
    opened = tmp_path / "opened.txt"
    script = tmp_path / "browser.py"
    script.write_text(f"import sys\nopen({str(opened)!r}, 'a').write(sys.argv[1] + '\\n')\n")
    return f"{sys.executable} {script} %s", opened


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "javascript:alert(1)", "http://evil.example/consent"]
)
def test_token_yes_opens_only_https_urls(tmp_path: Path, url: str, emu: ConnectEmulator) -> None:
    browser, opened = _recording_browser(tmp_path)
    with hostile_connect(url) as base:
        env = {"CONNECT_AUTH_BASE_URL": base, "VERCEL_OIDC_TOKEN": emu.oidc_token()}
        out = _cli("token", SLACK, "-s", "user:u_x", "-y", "--wait", "5", env={
            **env, "BROWSER": browser})  # fmt: skip
    assert out.returncode == 12, out.stderr  # the hostile Connect then says "denied"
    assert "not opening it in a browser" in out.stderr
    assert not opened.exists()


def test_network_text_reaches_the_terminal_escaped(tmp_path: Path, emu: ConnectEmulator) -> None:
    browser, opened = _recording_browser(tmp_path)
    with hostile_connect("https://vercel.example/consent") as base:
        env = {"CONNECT_AUTH_BASE_URL": base, "VERCEL_OIDC_TOKEN": emu.oidc_token()}
        out = _cli("token", SLACK, "-s", "user:u_x", "-y", "-v", env={**env, "BROWSER": browser})
    assert out.returncode == 12
    assert opened.read_text() == "https://vercel.example/consent\n"  # https is opened
    for raw in ("\x1b", "\x07", "\r"):
        assert raw not in out.stderr and raw not in out.stdout
    assert "\\x1b[2J" in out.stderr and "CODE" in out.stderr and "no access" in out.stderr


def test_printable_escapes_every_control_character() -> None:
    assert printable("a\x1b[31mb\x9bc\u202ed\n") == "a\\x1b[31mb\\x9bc\\u202ed\\n"
    assert printable("plain text, ünïcode and emoji 🙂") == "plain text, ünïcode and emoji 🙂"


# -- the credential kept off the command line -------------------------------------------------


def test_vercel_token_file_and_stdin(emu: ConnectEmulator, tmp_path: Path) -> None:
    credential = tmp_path / "oidc"
    credential.write_text(emu.oidc_token() + "\n")
    env = {"CONNECT_AUTH_BASE_URL": emu.url}
    from_file = _cli("token", SLACK, "--vercel-token-file", str(credential), env=env)
    assert from_file.returncode == 0, from_file.stderr
    from_stdin = _cli("token", SLACK, "--vercel-token-file", "-", env=env, stdin=emu.oidc_token())
    assert from_stdin.returncode == 0, from_stdin.stderr
    assert emu.token_calls() == 2


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--vercel-token-file", "{missing}"], "No such file"),
        (["--vercel-token-file", "{empty}"], "is empty"),
        (["--vercel-token-file", "{empty}", "--vercel-token", "x"], "not allowed with"),
    ],
)
def test_vercel_token_file_errors(
    emu: ConnectEmulator, tmp_path: Path, args: list[str], fragment: str
) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    paths = {"missing": str(tmp_path / "nope"), "empty": str(empty)}
    out = _cli("token", SLACK, *(a.format(**paths) for a in args), env={
        "CONNECT_AUTH_BASE_URL": emu.url})  # fmt: skip
    assert out.returncode == 2 and fragment in out.stderr
    assert emu.calls == []


def test_help_says_where_the_credential_is_safer() -> None:
    out = _cli("token", "--help", env={})
    assert "--vercel-token-file" in out.stdout
    assert "shell history" in " ".join(out.stdout.split())


def test_read_vercel_token_prefers_the_file(tmp_path: Path) -> None:
    path = tmp_path / "t"
    path.write_text("  from-file \n")
    assert read_vercel_token(None, str(path)) == "from-file"
    assert read_vercel_token("given", None) == "given"
    assert read_vercel_token(None, None) is None


# -- 14. the emulator stays on loopback ----------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "10.1.2.3", "example.com"])
def test_the_emulator_refuses_to_bind_beyond_loopback(host: str) -> None:
    with pytest.raises(ValueError, match="allow_remote=True"):
        ConnectEmulator(host=host)


def test_the_emulator_binds_anywhere_only_when_asked_and_warns() -> None:
    with pytest.warns(RuntimeWarning, match="beyond this machine"):
        emulator = ConnectEmulator(host="0.0.0.0", allow_remote=True)
    with emulator:
        assert httpx.get(emulator.url + "/.well-known/jwks").status_code == 200
    for host in ("127.0.0.1", "::1", "localhost"):
        ConnectEmulator(host=host)  # loopback: no warning (warnings are errors here)


def test_the_emulator_command_refuses_a_wildcard_host() -> None:
    out = _cli("emulator", "--host", "0.0.0.0", env={})
    assert out.returncode == 2 and "--allow-remote" in out.stderr


# -- 15. the emulator's sign-in page sends codes only to loopback or registered URIs --------


def _authorize(emu: ConnectEmulator, redirect_uri: str, connector: str = SLACK) -> httpx.Response:
    query = {
        "response_type": "code",
        "client_id": connector,
        "redirect_uri": redirect_uri,
        "code_challenge": "x" * 43,
        "code_challenge_method": "S256",
        "state": "s",
    }
    return httpx.post(f"{emu.oauth_url}/oauth/authorize", data={**query, "decision": "approve"})


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://evil.example/steal",
        "http://evil.example/steal",
        "http://evil.example\\@127.0.0.1/cb",
        "http://user@127.0.0.1/cb",
        "http://127.0.0.1.evil.example/cb",
    ],
)
def test_codes_never_go_to_an_unregistered_remote_redirect(
    emu: ConnectEmulator, redirect_uri: str
) -> None:
    answer = _authorize(emu, redirect_uri)
    assert answer.status_code == 400 and "location" not in answer.headers
    assert "redirect_uri" in answer.text
    assert emu.oauth.grants == []


def test_codes_go_to_loopback_and_registered_redirects() -> None:
    registered = "https://app.example/callback"
    spec = ConnectorSpec(uid="acme/crm", type="custom", redirect_uris=[registered])
    with ConnectEmulator([spec]) as emu:
        for uri in ("http://127.0.0.1:8000/cb", "http://localhost/cb", "http://[::1]:9/cb"):
            assert _authorize(emu, uri, "acme/crm").headers["location"].startswith(uri)
        assert _authorize(emu, registered, "acme/crm").headers["location"].startswith(registered)
        assert _authorize(emu, registered + "/x", "acme/crm").status_code == 400


def test_redirect_uris_load_from_a_config_file(tmp_path: Path) -> None:
    config = tmp_path / "c.json"
    config.write_text(
        json.dumps({"connectors": [{"uid": "a/b", "redirect_uris": ["https://x.example/cb"]}]})
    )
    emulator = ConnectEmulator.from_file(config)
    assert emulator.state.connectors["a/b"].redirect_uris == ["https://x.example/cb"]
