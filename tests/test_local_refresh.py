"""Local development: a stale or missing credential refreshes itself through the
Vercel CLI login, against the emulator's Vercel API."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import APP, SLACK, fast_retry

from connect_auth import ConnectClient, OidcTokenError
from connect_auth.testing import ConnectEmulator

ROOT = Path(__file__).resolve().parent.parent


class Checkout:
    """A linked checkout with a Vercel CLI login, as on a developer's machine."""

    def __init__(self, emulator: ConnectEmulator, root: Path) -> None:
        self.emulator = emulator
        self.folder = root / "app"
        self.data = root / "data"
        self.folder.mkdir()
        emulator.link_project(self.folder)
        self.login = emulator.write_cli_login(self.data)

    @property
    def token_file(self) -> Path:
        return self.data / "com.vercel.token" / f"{self.emulator.project_id}.json"

    @property
    def auth_file(self) -> Path:
        return self.data / "com.vercel.cli" / "auth.json"

    def pull(self, *, ttl: float) -> str:
        """What `vercel env pull` writes: the token in .env.local."""
        token = self.emulator.oidc_token(ttl=ttl)
        (self.folder / ".env.local").write_text(
            f'# Created by Vercel CLI\nVERCEL_OIDC_TOKEN="{token}"\n'
        )
        return token

    def client(self) -> ConnectClient:
        return ConnectClient(base_url=self.emulator.url, retry=fast_retry())


@pytest.fixture
def checkout(
    emulator: ConnectEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Checkout:
    for name in (
        "VERCEL_OIDC_TOKEN",
        "VERCEL_OIDC_TOKEN_FILE",
        "VERCEL",
        "CONNECT_AUTH_LOCAL_REFRESH",
    ):
        monkeypatch.delenv(name, raising=False)
    made = Checkout(emulator, tmp_path)
    monkeypatch.setenv("XDG_DATA_HOME", str(made.data))
    monkeypatch.setenv("CONNECT_AUTH_VERCEL_ISSUER", emulator.url)
    monkeypatch.chdir(made.folder)
    return made


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- it heals --------------------------------------------------------------------------------


def test_a_stale_env_local_heals_itself_and_the_token_is_saved(checkout: Checkout) -> None:
    checkout.pull(ttl=-60)
    with checkout.client() as c:
        assert c.get_token(SLACK, subject=APP)
        c.clear_token_cache()
        assert c.get_token(SLACK, subject=APP)  # the refreshed credential, from memory
    assert checkout.emulator.vercel.project_tokens == 1
    saved = json.loads(checkout.token_file.read_text())["token"]
    assert checkout.emulator.verify_oidc(saved) is not None
    assert _mode(checkout.token_file) == 0o600 and _mode(checkout.token_file.parent) == 0o700
    assert checkout.emulator.vercel.refreshes == 0  # the CLI login was still valid


def test_a_linked_checkout_with_no_token_at_all_works(checkout: Checkout) -> None:
    with checkout.client() as c:
        assert asyncio.run(c.aget_token(SLACK, subject=APP))
    assert checkout.emulator.vercel.project_tokens == 1


def test_an_expired_cli_login_is_refreshed_and_written_back(
    emulator: ConnectEmulator, checkout: Checkout
) -> None:
    emulator.write_cli_login(checkout.data, expired=True)
    before = json.loads(checkout.auth_file.read_text())
    before["userId"] = "kept"  # what else the CLI keeps there stays
    checkout.auth_file.write_text(json.dumps(before))
    checkout.pull(ttl=-60)
    with checkout.client() as c:
        assert c.get_token(SLACK, subject=APP)
    after = json.loads(checkout.auth_file.read_text())
    assert emulator.vercel.refreshes == 1 and emulator.vercel.project_tokens == 1
    assert after["token"] != before["token"] and after["refreshToken"] != before["refreshToken"]
    assert after["expiresAt"] > time.time() and after["userId"] == "kept"
    assert _mode(checkout.auth_file) == 0o600


def test_a_token_saved_by_vercel_oidc_is_used_without_asking_vercel(
    emulator: ConnectEmulator, checkout: Checkout
) -> None:
    checkout.token_file.parent.mkdir(parents=True)
    checkout.token_file.write_text(json.dumps({"token": emulator.oidc_token()}))
    with checkout.client() as c:
        assert c.get_token(SLACK, subject=APP)
    assert emulator.vercel.project_tokens == 0


def test_processes_sharing_a_data_folder_refresh_once(
    emulator: ConnectEmulator, checkout: Checkout, tmp_path: Path
) -> None:
    """Four processes released together need a token: one asks Vercel, the others wait
    and read the saved file; a fifth process later reads it too."""
    checkout.pull(ttl=-60)
    emulator.latency = 0.3  # Connect is slow, so the processes overlap
    go = tmp_path / "go"
    script = textwrap.dedent(
        f"""
        import os, sys, time
        from pathlib import Path
        sys.path.insert(0, {str(ROOT / "tests")!r})
        from connect_auth import ConnectClient
        go = Path({str(go)!r})
        while not go.exists():
            time.sleep(0.005)
        with ConnectClient(base_url={emulator.url!r}) as c:
            print(len(c.get_token("{SLACK}", subject={{"type": "app"}})))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    workers = [
        subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE)
        for _ in range(4)
    ]
    time.sleep(1.0)  # let them import and reach the barrier
    go.touch()
    outputs = [w.communicate(timeout=120)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0, 0, 0], outputs
    assert emulator.vercel.project_tokens == 1
    late = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, timeout=120, check=True
    )
    assert late.stdout.strip()
    assert emulator.vercel.project_tokens == 1


# -- when it does not apply --------------------------------------------------------------------


def test_an_explicit_credential_is_never_refreshed(
    emulator: ConnectEmulator, checkout: Checkout
) -> None:
    stale = emulator.oidc_token(ttl=-60)
    with (
        ConnectClient(base_url=emulator.url, vercel_token=stale, retry=fast_retry()) as c,
        pytest.raises(OidcTokenError, match="expired"),
    ):
        c.get_token(SLACK, subject=APP)
    assert emulator.vercel.project_tokens == 0


@pytest.mark.parametrize(("name", "value"), [("VERCEL", "1"), ("CONNECT_AUTH_LOCAL_REFRESH", "0")])
def test_on_vercel_or_turned_off_it_does_not_run(
    checkout: Checkout, monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    checkout.pull(ttl=-60)
    monkeypatch.setenv(name, value)
    with checkout.client() as c, pytest.raises(OidcTokenError, match="vercel env pull"):
        c.get_token(SLACK, subject=APP)
    assert checkout.emulator.vercel.project_tokens == 0


def test_an_unlinked_checkout_says_to_link_it(
    checkout: Checkout, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / ".git").mkdir()
    monkeypatch.chdir(elsewhere)
    with checkout.client() as c, pytest.raises(OidcTokenError, match="vercel link"):
        c.get_token(SLACK, subject=APP)
    assert checkout.emulator.vercel.project_tokens == 0


# -- failures say what to run -------------------------------------------------------------------


def test_failures_say_what_to_run_and_never_print_a_token(
    emulator: ConnectEmulator, checkout: Checkout, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale = checkout.pull(ttl=-60)
    login = json.loads(checkout.auth_file.read_text())
    secrets = {stale, login["token"], login["refreshToken"]}
    seen: list[str] = []

    def fails(match: str) -> None:
        with checkout.client() as c, pytest.raises(OidcTokenError, match=match) as info:
            c.get_token(SLACK, subject=APP)
        seen.append(f"{info.value} {info.value!r} {info.value.__cause__!r}")

    # A CLI token Vercel refuses.
    emulator.vercel.forget_logins()
    fails("vercel login")
    # An expired login whose refresh token Vercel refuses.
    checkout.auth_file.write_text(json.dumps({**login, "expiresAt": int(time.time()) - 10}))
    fails("vercel login")
    # No login at all.
    checkout.auth_file.unlink()
    monkeypatch.setenv("PATH", str(checkout.folder))  # and no `vercel` command
    fails("vercel login")
    # A project Vercel does not know.
    emulator.write_cli_login(checkout.data)
    (checkout.folder / ".vercel" / "project.json").write_text(
        json.dumps({"projectId": "prj_unknown", "orgId": emulator.owner_id})
    )
    fails("vercel link")
    # Vercel unreachable.
    emulator.link_project(checkout.folder)
    monkeypatch.setenv("CONNECT_AUTH_VERCEL_ISSUER", "http://127.0.0.1:9")
    emulator.write_cli_login(checkout.data, expired=True)
    fails("could not be reached")
    assert emulator.vercel.project_tokens == 0
    text = "\n".join(seen)
    assert not any(secret in text for secret in secrets)


def test_a_cli_keeping_its_login_in_the_keyring_is_asked_for_the_token(
    emulator: ConnectEmulator, checkout: Checkout, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    checkout.auth_file.unlink()
    token = emulator.oidc_token()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    args_file = tmp_path / "args"
    vercel = bin_dir / "vercel"
    vercel.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        f"open({str(args_file)!r}, 'w').write(' '.join(sys.argv[1:]))\n"
        f"print(json.dumps({{'token': {token!r}}}))\n"
    )
    vercel.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    with checkout.client() as c:
        assert c.get_token(SLACK, subject=APP)
    assert args_file.read_text() == (
        f"project token {emulator.project_id} --format=json --scope {emulator.owner_id}"
    )
    assert json.loads(checkout.token_file.read_text())["token"] == token
    assert emulator.vercel.project_tokens == 0


def test_an_issuer_override_must_be_https_or_loopback(
    emulator: ConnectEmulator, checkout: Checkout, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.write_cli_login(checkout.data, expired=True)
    checkout.pull(ttl=-60)
    monkeypatch.setenv("CONNECT_AUTH_VERCEL_ISSUER", "http://vercel.example")
    with checkout.client() as c, pytest.raises(ValueError, match="CONNECT_AUTH_VERCEL_ISSUER"):
        c.get_token(SLACK, subject=APP)
    assert emulator.vercel.refreshes == 0
