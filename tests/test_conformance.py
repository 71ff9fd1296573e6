"""Fixes found by comparing with Vercel's SDKs on one recording stub: what Connect said
survives retries, unknown token fields are kept, cache entries can be deleted without
a credential (the OIDC token file and whole messages are in test_oidc / test_protocol)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import APP, SLACK, fast_retry

from connect_auth import ConnectClient, ConnectUnavailableError, UserSubject
from connect_auth.redis import RedisTokenCache
from connect_auth.testing import ConnectEmulator
from connect_auth.testing._redis_servers import RedisServer

ALICE = UserSubject("u_alice")


@pytest.mark.parametrize(
    ("status", "text"), [(503, "Service Unavailable"), (429, "Too Many Requests")]
)
def test_unavailable_keeps_what_connect_said(
    emulator: ConnectEmulator, status: int, text: str
) -> None:
    """The class stays ConnectUnavailableError (it was retried), but the server's code,
    message and status text are not lost."""
    emulator.fail_next(10, status=status, code="provider_overloaded")
    with (
        ConnectClient(
            base_url=emulator.url,
            vercel_token=emulator.oidc_token(),
            retry=fast_retry(max_attempts=2, retry_after_cap=0.01),
        ) as client,
        pytest.raises(ConnectUnavailableError) as caught,
    ):
        client.get_token(SLACK, subject=APP)
    err = caught.value
    assert err.code == "provider_overloaded"
    assert err.status == status and err.status_text == text
    assert "injected fault" in err.message and "gave up after 2 attempt(s)" in err.message
    assert err.request_id is not None and err.request_id.startswith("emu1::")


def test_unknown_token_fields_are_kept(client: ConnectClient) -> None:
    response = client.get_token_response(SLACK, subject=ALICE)
    assert response.extra["authorizationId"].startswith("cau_")
    assert response.to_dict()["authorizationId"] == response.extra["authorizationId"]
    assert "cau_" not in repr(response)  # extra may hold anything: repr leaves it out


def test_cli_json_keeps_unknown_fields(emulator: ConnectEmulator, tmp_path: Path) -> None:
    env = {"CONNECT_AUTH_BASE_URL": emulator.url, "VERCEL_OIDC_TOKEN": emulator.oidc_token()}
    out = subprocess.run(
        [sys.executable, "-m", "connect_auth", "token", SLACK, "-s", "user:u_alice", "-F", "json"],
        capture_output=True,
        text=True,
        env={**env, "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["authorizationId"].startswith("cau_")


def test_delete_works_without_a_credential(
    emulator: ConnectEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Right after the credential in use expired (or was unset) the entry can still be
    deleted: every credential's entry for those arguments goes."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VERCEL_OIDC_TOKEN_FILE", raising=False)
    with ConnectClient(base_url=emulator.url, retry=fast_retry()) as client:
        request_args = {"subject": ALICE, "scopes": ["chat:write"]}
        for _ in range(2):  # two credentials, one entry each
            monkeypatch.setenv("VERCEL_OIDC_TOKEN", emulator.oidc_token())
            client.get_token(SLACK, **request_args)  # type: ignore[arg-type]
        client.get_token(SLACK, subject=ALICE)  # other params: stays
        assert len(client._engine) == 3
        monkeypatch.delenv("VERCEL_OIDC_TOKEN")
        client.delete_token_cache_entry(SLACK, **request_args)  # type: ignore[arg-type]
        assert len(client._engine) == 1


def test_delete_without_a_credential_reaches_the_shared_cache(
    emulator: ConnectEmulator,
    redis_server: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    redis_server.flush()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VERCEL_OIDC_TOKEN_FILE", raising=False)
    oidc = emulator.oidc_token()
    monkeypatch.setenv("VERCEL_OIDC_TOKEN", oidc)
    with RedisTokenCache(redis_server.url, encryption_key="k" * 32) as cache:
        with ConnectClient(base_url=emulator.url, shared_cache=cache) as first:
            first.get_token(SLACK, subject=ALICE)
            monkeypatch.delenv("VERCEL_OIDC_TOKEN")
            first.delete_token_cache_entry(SLACK, subject=ALICE)
        calls = emulator.token_calls()
        with ConnectClient(base_url=emulator.url, shared_cache=cache, vercel_token=oidc) as second:
            second.get_token(SLACK, subject=ALICE)  # not in Redis any more: asks Connect
        assert emulator.token_calls() == calls + 1
