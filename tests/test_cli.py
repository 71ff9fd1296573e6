"""The real ``connect-auth`` entry point, run as a subprocess against the emulator."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import SLACK, free_port

from connect_auth.cli import EXIT_CODES
from connect_auth.testing import ConnectEmulator


def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    full_env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("VERCEL_OIDC_TOKEN", "CONNECT_AUTH_BASE_URL", "VERCEL_REGION")
    }
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "connect_auth", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def emu() -> Any:
    with ConnectEmulator() as e:
        yield e


@pytest.fixture
def env(emu: ConnectEmulator) -> dict[str, str]:
    return {"CONNECT_AUTH_BASE_URL": emu.url, "VERCEL_OIDC_TOKEN": emu.oidc_token()}


def test_token_prints_the_bare_token(emu: ConnectEmulator, env: dict[str, str]) -> None:
    """Default output is the token alone, on one line."""
    out = run("token", SLACK, env=env)
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip()
    assert token.startswith("emu_slack_") and "\n" not in token
    assert emu.calls[-1].subject == {"type": "app"}


def test_token_json_and_every_flag(emu: ConnectEmulator, tmp_path: Path) -> None:
    """--json prints the full response; --subject, --installation-id, --scopes, --base-url,
    --vercel-token and --timeout all reach the request."""
    out = run(
        "token",
        "github/acme-github",
        "--subject",
        "user:u_alice",
        "--installation-id",
        "inst_gh_2",
        "--scopes",
        "repo:read, issues:write  pulls",
        "--json",
        "--base-url",
        emu.url,
        "--vercel-token",
        emu.oidc_token(),
        "--timeout",
        "5",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert body["connector"]["uid"] == "github/acme-github"
    assert body["installationId"] == "inst_gh_2" and body["tenantId"] == "1002"
    assert body["token"] and body["expiresAt"] and body["tokenId"]
    assert emu.calls[-1].params == {
        "subject": {"type": "user", "id": "u_alice"},
        "installationId": "inst_gh_2",
        "scopes": ["repo:read", "issues:write", "pulls"],
    }


def test_region_flag_builds_the_regional_host(tmp_path: Path) -> None:
    """--region picks api-<region>.vercel.com (shown via the refused-credential path)."""
    out = run("token", SLACK, "--region", "bad region!", "--vercel-token", "x", cwd=tmp_path)
    assert out.returncode == 2 and "region" in out.stderr


@pytest.mark.parametrize(
    ("setup", "args", "cls_name"),
    [
        (None, ["nope/none"], "ConnectorNotFoundError"),
        (None, ["salesforce/acme-sf"], "ClientNotLinkedToProjectError"),
        (None, ["linear/acme-linear"], "ClientNotEnabledForEnvironmentError"),
        (None, ["github/acme-github"], "ConnectorInstallationRequiredError"),
        (None, [SLACK, "--subject", "user:mallory"], "UserAuthorizationRequiredError"),
        ("revoke_grant", [SLACK, "--subject", "user:u_bob"], "NoValidTokenError"),
        ("unavailable", [SLACK, "--timeout", "1"], "ConnectUnavailableError"),
        ("garbage", [SLACK], "ConnectResponseError"),
        ("bad_request", [SLACK], "ConnectError"),
        ("bad_credential", [SLACK], "OidcTokenError"),
    ],
)
def test_every_error_has_its_message_and_exit_code(
    emu: ConnectEmulator,
    env: dict[str, str],
    setup: str | None,
    args: list[str],
    cls_name: str,
) -> None:
    """One line naming the error and one saying what to do; no traceback; the documented code."""
    if setup == "revoke_grant":
        emu.revoke_grant(SLACK, {"type": "user", "id": "u_bob"})
    elif setup == "unavailable":
        emu.fail_next(20, status=503)
    elif setup == "garbage":
        emu.fail_next(1, status=200)
    elif setup == "bad_request":
        emu.fail_next(1, status=400)
    elif setup == "bad_credential":
        env = {**env, "VERCEL_OIDC_TOKEN": "not-a-real-token"}
    out = run("token", *args, env=env)
    expected = next(code for cls, code, _ in EXIT_CODES if cls.__name__ == cls_name)
    assert out.returncode == expected, out.stderr
    # The retries are announced first; the error is the last two lines.
    lines = [line for line in out.stderr.strip().splitlines() if "retrying in" not in line]
    assert lines[0].startswith(f"connect-auth token: {cls_name}: ")
    assert lines[1].startswith("  what to do: ") and len(lines) == 2
    assert "Traceback" not in out.stderr and out.stdout == ""
    emu.reset_faults()


def test_missing_credential_exit_code(emu: ConnectEmulator, tmp_path: Path) -> None:
    """No credential anywhere: exit 3 and nothing sent."""
    out = run("token", SLACK, "--base-url", emu.url, cwd=tmp_path)
    assert out.returncode == 3 and "vercel env pull" in out.stderr
    assert emu.calls == []


def test_dotenv_local_is_read(emu: ConnectEmulator, tmp_path: Path) -> None:
    """The credential can come from .env.local, as `vercel env pull` writes it."""
    (tmp_path / ".env.local").write_text(
        f'# Created by Vercel CLI\nVERCEL_OIDC_TOKEN="{emu.oidc_token()}"\n'
    )
    out = run("token", SLACK, env={"CONNECT_AUTH_BASE_URL": emu.url}, cwd=tmp_path)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["token", SLACK, "--subject", "user"], "user:USER_ID"),
        (["token", SLACK, "--subject", "robot"], "'app' or 'user:ID'"),
        (["token", SLACK, "--scopes", " , "], "--scopes holds only commas and spaces"),
        (["token", SLACK, "--base-url", "http://example.com"], "plain http"),
        (["token", ""], "connector"),
    ],
)
def test_usage_errors(env: dict[str, str], args: list[str], fragment: str) -> None:
    """Bad arguments: exit 2 with a message saying what to fix, nothing sent."""
    out = run(*args, env=env)
    assert out.returncode == 2 and fragment in out.stderr and "Traceback" not in out.stderr


def test_help_is_complete() -> None:
    """--help lists every flag and the exit codes."""
    out = run("token", "--help")
    assert out.returncode == 0
    for flag in (
        "--subject",
        "--installation-id",
        "--scopes",
        "--json",
        "--base-url",
        "--region",
        "--vercel-token",
        "--timeout",
    ):
        assert flag in out.stdout
    for _, code, _ in EXIT_CODES:
        assert f"{code} " in out.stdout
    top = run("--help")
    assert all(cmd in top.stdout for cmd in ("token", "emulator", "demo"))


def test_emulator_command_serves_until_interrupted(tmp_path: Path) -> None:
    """`connect-auth emulator` prints export lines that work; a bad token gets a 401 envelope."""
    with subprocess.Popen(
        [sys.executable, "-m", "connect_auth", "emulator", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        _talk_to_emulator(proc)
    assert proc.returncode == 0


def _talk_to_emulator(proc: subprocess.Popen[str]) -> None:
    try:
        exports: dict[str, str] = {}
        assert proc.stdout is not None
        while len(exports) < 2:
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else ""
            if line.startswith("export "):
                name, _, value = line[len("export ") :].strip().partition("=")
                exports[name] = value
        url = exports["CONNECT_AUTH_BASE_URL"] + "/v1/connect/token/slack%2Facme-slack"
        ok = httpx.post(
            url,
            json={"subject": {"type": "app"}},
            headers={"Authorization": f"Bearer {exports['VERCEL_OIDC_TOKEN']}"},
        )
        assert ok.status_code == 200 and ok.json()["token"]
        bad = httpx.post(
            url, json={"subject": {"type": "app"}}, headers={"Authorization": "Bearer nope"}
        )
        assert bad.status_code == 401 and bad.json()["error"]["code"] == "unauthorized"
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    assert "emulator stopped" in err


def test_emulator_command_with_config(tmp_path: Path) -> None:
    """--config loads connectors; a broken config is a usage error."""
    bad = tmp_path / "bad.json"
    bad.write_text('{"connectors": [{"uid": "x"}]}')
    out = run("emulator", "--config", str(bad))
    assert out.returncode == 2 and "uid" in out.stderr


def test_demo_runs_every_section() -> None:
    """The README's first command: exit 0, every section reached, every check ok."""
    out = run("demo", timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    for n in range(1, 10):
        assert f"[{n}/9]" in out.stdout
    assert "FAIL" not in out.stdout and out.stdout.count("    ok   ") == 15
    assert "refreshed once, resent" in out.stdout
    assert "503, 503, 503, then 200" in out.stdout
    assert "All 9 sections passed" in out.stdout
    assert "start_authorization -> send the user to" in out.stdout
    assert "emu_slack_" in out.stdout and "redacted" in out.stdout
    assert "the CLI login was renewed" in out.stdout
    assert "whoami -> 'u_frank'" in out.stdout


# -- a CLI that talks --------------------------------------------------------------------


def test_verbose_names_connect_and_each_retry(emu: ConnectEmulator, env: dict[str, str]) -> None:
    """-v says where it asks and every retry; the token still goes to stdout alone."""
    emu.fail_next(1, status=503, retry_after=0)
    out = run("token", SLACK, "-v", env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith("emu_slack_")
    assert f"{SLACK}: waiting for Connect at {emu.url}" in out.stderr
    assert "attempt 1 of 4 failed; retrying in" in out.stderr


def test_network_errors_name_the_url_in_words(tmp_path: Path) -> None:
    """Nothing listens: the message names the URL and says what happened, in words."""
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    out = run("token", SLACK, "--base-url", url, env={"VERCEL_OIDC_TOKEN": "e30.e30.x"}, timeout=90)
    assert out.returncode == 10, out.stderr
    assert f"Connect at {url}" in out.stderr and "could not connect" in out.stderr
    assert "ConnectError" not in out.stderr  # httpx's class name would read as ours


def test_usage_errors_speak_in_options(env: dict[str, str]) -> None:
    out = run("token", SLACK, "--timeout", "-1", env=env)
    assert out.returncode == 2
    assert "--timeout must be a positive number" in out.stderr and "timeout=" not in out.stderr


def test_help_has_no_markup() -> None:
    for args in ([], ["token"]):
        out = run(*args, "--help")
        assert out.returncode == 0
        assert "``" not in out.stdout and "::" not in out.stdout and ":func:" not in out.stdout
        assert "exit codes:" in out.stdout


def _on_a_terminal(args: list[str], env: dict[str, str], during: Any = None) -> tuple[str, bytes]:
    """Run the command with stderr on a pseudo-terminal; ``during(proc)`` runs meanwhile."""
    import pty

    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "connect_auth", *args],
        stdout=subprocess.PIPE,
        stderr=follower,
        env={**os.environ, **env},
        text=True,
    )
    os.close(follower)
    if during is not None:
        during(proc)
    out, _ = proc.communicate(timeout=60)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    assert proc.returncode == 0, seen
    return out, seen


def test_a_terminal_sees_the_wait_tick(emu: ConnectEmulator, env: dict[str, str]) -> None:
    """stderr on a terminal: a line that says what it waits for and for how long."""
    emu.latency = 2.5
    out, seen = _on_a_terminal(["token", SLACK], env)
    assert out.strip().startswith("emu_slack_")
    assert f"waiting for Connect at {emu.url}".encode() in seen
    assert b"(attempt 1 of 4)" in seen


def test_a_terminal_sees_the_authorization_wait_tick(
    emu: ConnectEmulator, env: dict[str, str]
) -> None:
    def approve_after_a_while(proc: Any) -> None:
        while not emu.authorization_flows():
            time.sleep(0.01)
        time.sleep(2.5)  # long enough for the ticking line to show
        emu.approve(emu.authorization_flows()[-1].id)

    out, seen = _on_a_terminal(["authorize", SLACK, "-s", "user:u_tty"], env, approve_after_a_while)
    assert out.strip().startswith("emu_slack_")
    assert b"waiting for the authorization: " in seen and b" s" in seen
    assert b"attempt" not in seen.split(b"waiting for the authorization")[1]


# -- consent from the command line -------------------------------------------------------


def _approving_browser(tmp_path: Path, decision: str = "approve") -> str:
    """A $BROWSER that acts as the user: it opens the URL and clicks the decision."""
    script = tmp_path / "browser.py"
    script.write_text(
        f"import sys, httpx\nhttpx.post(sys.argv[1], data={{'decision': {decision!r}}})\n"
    )
    return f"{sys.executable} {script} %s"


def test_authorize_opens_the_page_waits_and_prints_the_token(
    emu: ConnectEmulator, env: dict[str, str], tmp_path: Path
) -> None:
    out = run(
        "authorize", SLACK, "--subject", "user:u_carol", "--open",
        env={**env, "BROWSER": _approving_browser(tmp_path)}, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith("emu_slack_")
    assert "Open this URL to authorize slack/acme-slack:" in out.stderr
    flow = emu.authorization_flows()[-1]
    assert flow.status == "approved" and flow.subject == {"type": "user", "id": "u_carol"}
    assert f"/connect/authorize/{flow.id}" in out.stderr


def test_authorize_with_a_device_code_prints_the_code(
    emu: ConnectEmulator, env: dict[str, str], tmp_path: Path
) -> None:
    """The code is printed at once; the user approves elsewhere; the JSON answer follows."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "connect_auth", "authorize", SLACK, "-s", "user:u_dev",
         "--device-code", "-F", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **env}, cwd=tmp_path,
    )  # fmt: skip
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert "enter the code:" in line
    code = line.rsplit(" ", 1)[1].strip()
    flow = emu.state.flow_for_device_code(code)
    assert flow is not None
    emu.approve(flow.id)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert json.loads(out)["externalSubject"] == "user:u_dev"


def test_authorize_denied_and_timed_out_exit_codes(
    emu: ConnectEmulator, env: dict[str, str], tmp_path: Path
) -> None:
    denied = run(
        "authorize", SLACK, "-s", "user:u_no", "--open",
        env={**env, "BROWSER": _approving_browser(tmp_path, "deny")}, cwd=tmp_path,
    )  # fmt: skip
    assert denied.returncode == 12, denied.stderr
    assert "AuthorizationDeniedError" in denied.stderr
    late = run("authorize", SLACK, "-s", "user:u_late", "--wait", "0.5", env=env, cwd=tmp_path)
    assert late.returncode == 13, late.stderr
    assert "no authorization for slack/acme-slack within 0.5 s" in late.stderr


def test_token_yes_starts_the_authorization_when_needed(
    emu: ConnectEmulator, env: dict[str, str], tmp_path: Path
) -> None:
    without = run("token", SLACK, "-s", "user:u_yes", env=env, cwd=tmp_path)
    assert without.returncode == 8 and "--yes" in without.stderr
    out = run(
        "token", SLACK, "-s", "user:u_yes", "-y",
        env={**env, "BROWSER": _approving_browser(tmp_path)}, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith("emu_slack_")


def test_empty_scopes_and_installation_id_are_left_out(
    emu: ConnectEmulator, env: dict[str, str]
) -> None:
    """As `vercel connect token` does: an empty value is not sent."""
    out = run("token", SLACK, "--scopes", "", "--installation-id", "", env=env)
    assert out.returncode == 0, out.stderr
    assert emu.calls[-1].params == {"subject": {"type": "app"}, "scopes": ["*"]}


@pytest.mark.parametrize(
    ("args", "exit_code", "kind"),
    [
        (["token", "slack/nope", "-F", "json"], 4, "ConnectorNotFoundError"),
        (["token", SLACK, "-s", "robot", "--format", "json"], 2, "UsageError"),
        (["token", SLACK, "-s", "user:u_zed", "--json"], 8, "UserAuthorizationRequiredError"),
    ],
)
def test_errors_under_json_format_are_json(
    env: dict[str, str], args: list[str], exit_code: int, kind: str
) -> None:
    out = run(*args, env=env)
    assert out.returncode == exit_code
    error = json.loads(out.stdout)["error"]
    assert error["type"] == kind and error["exitCode"] == exit_code
    assert error["message"] and error["hint"]


def test_authorize_help_lists_its_flags() -> None:
    out = run("authorize", "--help")
    assert out.returncode == 0
    for flag in ("--subject", "--device-code", "--open", "--wait", "--callback-url", "--format"):
        assert flag in out.stdout
    assert "12  authorization denied" in out.stdout


# -- the command's own words -----------------------------------------------------------


def test_a_subject_without_an_id_is_said_once_in_options(env: dict[str, str]) -> None:
    out = run("token", SLACK, "--subject", "user", env=env)
    assert out.returncode == 2
    assert "error: --subject user needs an id: write --subject user:USER_ID" in out.stderr
    assert "----" not in out.stderr


def test_a_missing_credential_names_the_option_not_the_argument(
    emu: ConnectEmulator, tmp_path: Path
) -> None:
    out = run("token", SLACK, "--base-url", emu.url, cwd=tmp_path)
    assert out.returncode == 3
    assert "--vercel-token" in out.stderr and "vercel_token" not in out.stderr


def test_an_empty_vercel_token_says_what_to_do(emu: ConnectEmulator, tmp_path: Path) -> None:
    out = run("token", SLACK, "--base-url", emu.url, "--vercel-token", "", cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert "--vercel-token is empty" in out.stderr and "or None" not in out.stderr
    assert emu.calls == []


def test_hints_carry_the_values_this_run_knows(emu: ConnectEmulator) -> None:
    """The connector and the credential's environment replace the placeholders."""
    env = {"CONNECT_AUTH_BASE_URL": emu.url, "VERCEL_OIDC_TOKEN": emu.oidc_token()}
    out = run("token", "linear/acme-linear", env=env)
    assert out.returncode == 6, out.stderr
    environment = emu.verify_oidc(env["VERCEL_OIDC_TOKEN"])["environment"]  # type: ignore[index]
    assert f"`vercel connect attach linear/acme-linear -e {environment}`" in out.stderr
    assert "<" not in out.stderr
    out = run("token", "salesforce/acme-sf", env=env)
    assert "`vercel connect attach salesforce/acme-sf`" in out.stderr


def test_authorize_needs_a_user_subject(emu: ConnectEmulator, env: dict[str, str]) -> None:
    """A consent URL for the app itself, then an app token, made no sense: refused."""
    out = run("authorize", SLACK, env=env)
    assert out.returncode == 2, out.stderr
    assert "authorize needs --subject user:USER_ID" in out.stderr
    assert out.stdout == "" and emu.calls == []


def test_the_demo_off_a_terminal_prints_no_row_of_dots() -> None:
    out = run("demo", timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = (out.stdout + out.stderr).splitlines()
    assert not [line for line in lines if line.strip() and not line.strip(".")]


def test_demo_help_names_every_section() -> None:
    out = run("demo", "--help")
    assert out.returncode == 0
    for words in ("consent", "revoked", "503", "cached call", "local credential", "MCP"):
        assert words in out.stdout, words
