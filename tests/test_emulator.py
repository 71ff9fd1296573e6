"""The emulator's own behaviour, through a real HTTP client on loopback."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from connect_auth import ConnectClient
from connect_auth.testing import ConnectEmulator, ConnectorSpec
from connect_auth.testing._server import Server

SLACK = "slack/acme-slack"


def _token_url(emu: ConnectEmulator, connector: str) -> str:
    return f"{emu.url}/v1/connect/token/{quote(connector, safe='')}"


def _post(
    emu: ConnectEmulator, connector: str, body: dict[str, Any], token: str | None = None, **kw: Any
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token or emu.oidc_token(**kw)}"}
    return httpx.post(_token_url(emu, connector), json=body, headers=headers)


@pytest.fixture
def emu() -> Any:
    with ConnectEmulator() as e:
        yield e


def test_token_endpoint_returns_documented_fields(emu: ConnectEmulator) -> None:
    """POST /v1/connect/token/{connector} answers with every documented field."""
    r = _post(emu, SLACK, {"subject": {"type": "user", "id": "u_alice"}, "scopes": ["*"]})
    assert r.status_code == 200
    body = r.json()
    assert body["token"].startswith("emu_slack_") and body["tokenId"].startswith("stk_")
    assert body["connector"] == {"id": "scl_acmeslack", "uid": SLACK, "type": "slack"}
    assert body["installationId"] == "inst_acme" and body["tenantId"] == "T0ACME"
    assert body["externalSubject"] == "user:u_alice" and body["claims"]["email"]
    assert body["metadata"] == {"botUserId": "B0EMU"} and body["name"]
    assert isinstance(body["expiresAt"], int) and body["expiresAt"] > 1e12
    assert r.headers["x-vercel-id"]


def test_connector_is_reachable_by_id(emu: ConnectEmulator) -> None:
    """The opaque id works like the uid."""
    assert _post(emu, "scl_acmeslack", {"subject": {"type": "app"}}).status_code == 200


@pytest.mark.parametrize(
    ("connector", "body", "kw", "status", "code"),
    [
        ("nope/none", {"subject": {"type": "app"}}, {}, 404, "not_found"),
        ("salesforce/acme-sf", {"subject": {"type": "app"}}, {}, 403, "forbidden"),
        ("linear/acme-linear", {"subject": {"type": "app"}}, {}, 403, "forbidden"),
        (
            "github/acme-github",
            {"subject": {"type": "app"}},
            {},
            422,
            "connector_installation_required",
        ),
        (
            "github/acme-github",
            {"subject": {"type": "app"}, "installationId": "zz"},
            {},
            422,
            "connector_installation_required",
        ),
        (
            SLACK,
            {"subject": {"type": "user", "id": "stranger"}},
            {},
            401,
            "user_authorization_required",
        ),
        (SLACK, {"subject": {"type": "robot"}}, {}, 400, "bad_request"),
        (SLACK, {"subject": {"type": "app"}, "scopes": "x"}, {}, 400, "bad_request"),
        (SLACK, {}, {}, 400, "bad_request"),
    ],
)
def test_every_seed_error_is_reachable(
    emu: ConnectEmulator,
    connector: str,
    body: dict[str, Any],
    kw: dict[str, Any],
    status: int,
    code: str,
) -> None:
    """Each rule answers with its status and an error envelope."""
    r = _post(emu, connector, body, **kw)
    assert r.status_code == status
    assert r.json()["error"]["code"] == code and r.json()["error"]["message"]


def test_link_and_environment_messages(emu: ConnectEmulator) -> None:
    """403 messages say which rule failed (the client maps on them)."""
    not_linked = _post(emu, "salesforce/acme-sf", {"subject": {"type": "app"}}).json()
    assert "not linked to this project" in not_linked["error"]["message"]
    not_enabled = _post(emu, "linear/acme-linear", {"subject": {"type": "app"}}).json()
    assert "not enabled for the 'development' environment" in not_enabled["error"]["message"]
    ok = _post(emu, "linear/acme-linear", {"subject": {"type": "app"}}, environment="production")
    assert ok.status_code == 200


def test_revoked_grant_gives_no_token(emu: ConnectEmulator) -> None:
    """After revoke_grant the subject gets no_token."""
    emu.revoke_grant(SLACK, {"type": "user", "id": "u_bob"})
    r = _post(emu, SLACK, {"subject": {"type": "user", "id": "u_bob"}})
    assert (r.status_code, r.json()["error"]["code"]) == (410, "no_token")
    assert _post(emu, SLACK, {"subject": {"type": "user", "id": "u_alice"}}).status_code == 200


def _sign(claims: dict[str, Any], key: RSAKey) -> str:
    return jwt.encode({"alg": "RS256"}, claims, key)


def test_caller_authentication(emu: ConnectEmulator) -> None:
    """Missing, malformed, badly signed and expired OIDC tokens all get 401."""
    body = {"subject": {"type": "app"}}
    url = _token_url(emu, SLACK)
    other_key = RSAKey.generate_key(2048, private=True)
    forged = _sign(
        {
            "iss": "https://oidc.vercel.com/connect-emulator",
            "exp": 2**31,
            "project_id": "prj_emulator",
            "environment": "development",
        },
        other_key,
    )
    cases = {
        "missing": {},
        "malformed": {"Authorization": "Bearer not.a.jwt"},
        "not bearer": {"Authorization": "Basic abc"},
        "forged": {"Authorization": f"Bearer {forged}"},
        "expired": {"Authorization": f"Bearer {emu.oidc_token(ttl=-10)}"},
    }
    for name, headers in cases.items():
        r = httpx.post(url, json=body, headers=headers)
        assert r.status_code == 401, name
        assert r.json()["error"]["code"] == "unauthorized", name
    assert all(c.identity is None for c in emu.calls)


def test_revoke_endpoint(emu: ConnectEmulator) -> None:
    """DELETE .../tokens revokes the subject's tokens and reports counts."""
    alice = _post(emu, SLACK, {"subject": {"type": "user", "id": "u_alice"}}).json()["token"]
    bob = _post(emu, SLACK, {"subject": {"type": "user", "id": "u_bob"}}).json()["token"]
    url = f"{emu.url}/v1/connect/connectors/{quote(SLACK, safe='')}/tokens"
    headers = {"Authorization": f"Bearer {emu.oidc_token()}"}
    r = httpx.request(
        "DELETE", url, json={"subject": {"type": "user", "id": "u_alice"}}, headers=headers
    )
    assert r.status_code == 200 and r.json()["deleted"] == 1
    provider = emu.provider_url(SLACK) + "?style=http"
    assert httpx.get(provider, headers={"Authorization": f"Bearer {alice}"}).status_code == 401
    assert httpx.get(provider, headers={"Authorization": f"Bearer {bob}"}).status_code == 200
    everything = httpx.request("DELETE", url, json={}, headers=headers).json()
    assert everything["tokensFound"] == 1
    assert httpx.get(provider, headers={"Authorization": f"Bearer {bob}"}).status_code == 401


def test_metadata_endpoint(emu: ConnectEmulator) -> None:
    """GET /v1/connect/connectors/{connector} returns the connector; unknown is 404."""
    headers = {"Authorization": f"Bearer {emu.oidc_token()}"}
    r = httpx.get(f"{emu.url}/v1/connect/connectors/{quote(SLACK, safe='')}", headers=headers)
    assert r.status_code == 200 and r.json()["uid"] == SLACK and r.json()["data"] == {}
    missing = httpx.get(f"{emu.url}/v1/connect/connectors/x%2Fy", headers=headers)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert httpx.get(f"{emu.url}/v2/other", headers=headers).status_code == 404


def test_call_log_records_requests_without_tokens(emu: ConnectEmulator) -> None:
    """The call log has connector, subject, params and identity, never a credential."""
    oidc = emu.oidc_token()
    _post(emu, SLACK, {"subject": {"type": "app"}, "scopes": ["a"]}, token=oidc)
    [call] = emu.calls
    assert (call.endpoint, call.connector, call.subject, call.status) == (
        "token",
        SLACK,
        {"type": "app"},
        200,
    )
    assert call.params["scopes"] == ["a"]
    assert call.identity is not None and call.identity["project_id"] == "prj_emulator"
    assert oidc not in repr(call)


def test_provider_accepts_only_live_tokens(emu: ConnectEmulator) -> None:
    """Live tokens pass; unknown, revoked, expired and wrong-connector tokens get 401."""
    token = _post(emu, SLACK, {"subject": {"type": "app"}}).json()["token"]
    other = _post(
        emu, "github/acme-github", {"subject": {"type": "app"}, "installationId": "inst_gh_1"}
    ).json()["token"]
    url = emu.provider_url(SLACK, "chat.postMessage") + "?style=http"

    def status(tok: str | None) -> int:
        headers = {"Authorization": f"Bearer {tok}"} if tok else {}
        return httpx.post(url, content=b"x", headers=headers).status_code

    assert status(token) == 200
    assert status(None) == 401 and status("made-up") == 401 and status(other) == 401
    assert emu.revoke(token)
    assert status(token) == 401
    fresh = _post(emu, SLACK, {"subject": {"type": "app"}}).json()["token"]
    assert emu.expire_all() >= 1
    assert status(fresh) == 401
    states = [c.token_state for c in emu.provider_calls]
    assert states == ["live", "missing", "unknown", "wrong_connector", "revoked", "expired"]


def test_slack_connectors_answer_like_slack(emu: ConnectEmulator) -> None:
    """A Slack connector's fake API reports bad tokens as Slack does: 200 {"ok": false}."""
    token = _post(emu, SLACK, {"subject": {"type": "app"}}).json()["token"]
    url = emu.provider_url(SLACK, "auth.test")
    emu.revoke(token)
    dead = httpx.get(url, headers={"Authorization": f"Bearer {token}"})
    missing = httpx.get(url)
    assert (dead.status_code, dead.json()["ok"], dead.json()["error"]) == (
        200,
        False,
        "invalid_auth",
    )
    assert (missing.status_code, missing.json()["error"]) == (200, "not_authed")
    assert httpx.get(url + "?style=http").status_code == 401
    github = emu.provider_url("github/acme-github")
    assert httpx.get(github).status_code == 401  # other connectors answer 401


def test_provider_echoes_what_it_received(emu: ConnectEmulator) -> None:
    """Method, path, header names, body length and hash; never the token."""
    token = _post(emu, SLACK, {"subject": {"type": "app"}}).json()["token"]
    body = b"hello provider"
    r = httpx.put(
        emu.provider_url(SLACK, "files/1"),
        content=body,
        headers={"Authorization": f"Bearer {token}", "X-Custom": "1"},
    )
    echo = r.json()
    assert echo["method"] == "PUT" and echo["path"].endswith("/files/1")
    assert "x-custom" in echo["headers"] and "authorization" in echo["headers"]
    assert echo["bodyLength"] == len(body)
    assert echo["bodySha256"] == hashlib.sha256(body).hexdigest()
    assert token not in r.text


def test_provider_reads_chunked_bodies(emu: ConnectEmulator) -> None:
    """A chunked upload is decoded and hashed like any other."""
    token = _post(emu, SLACK, {"subject": {"type": "app"}}).json()["token"]

    def chunks() -> Any:
        yield b"part one, "
        yield b"part two"

    r = httpx.post(
        emu.provider_url(SLACK), content=chunks(), headers={"Authorization": f"Bearer {token}"}
    )
    assert r.json()["bodyLength"] == len(b"part one, part two")


def test_provider_redirects_on_request(emu: ConnectEmulator) -> None:
    """?redirect= answers 307 to another origin; ?status= forces a status."""
    target = emu.provider_url(SLACK, host="localhost") + "?status=401"
    r = httpx.get(emu.provider_url(SLACK) + "?redirect=" + quote(target, safe=""))
    assert r.status_code == 307 and r.headers["location"] == target
    forced = httpx.get(target)
    assert forced.status_code == 401
    assert emu.provider_calls[-1].host.startswith("localhost:")


def test_status_faults_with_retry_after(emu: ConnectEmulator) -> None:
    """fail_next answers the next N Connect calls with the status and Retry-After."""
    emu.fail_next(2, status=429, retry_after=3)
    first = _post(emu, SLACK, {"subject": {"type": "app"}})
    second = _post(emu, SLACK, {"subject": {"type": "app"}})
    third = _post(emu, SLACK, {"subject": {"type": "app"}})
    assert (first.status_code, first.headers["retry-after"]) == (429, "3")
    assert second.status_code == 429 and third.status_code == 200
    assert [c.fault for c in emu.calls] == ["status", "status", None]


def test_drop_and_stall_faults(emu: ConnectEmulator) -> None:
    """drop_next closes without answering; stall_next holds past the client's timeout."""
    emu.drop_next(1)
    with pytest.raises(httpx.RemoteProtocolError):
        _post(emu, SLACK, {"subject": {"type": "app"}})
    emu.stall_next(1, seconds=5)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            _token_url(emu, SLACK),
            json={"subject": {"type": "app"}},
            headers={"Authorization": f"Bearer {emu.oidc_token()}"},
            timeout=0.2,
        )
    assert _post(emu, SLACK, {"subject": {"type": "app"}}).status_code == 200


def test_latency_is_added(emu: ConnectEmulator) -> None:
    """latency holds each Connect answer; reset_faults removes it."""
    emu.latency = 0.3
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            _token_url(emu, SLACK),
            json={"subject": {"type": "app"}},
            headers={"Authorization": f"Bearer {emu.oidc_token()}"},
            timeout=0.05,
        )
    emu.reset_faults()
    assert emu.latency == 0.0


def test_64_concurrent_connections(emu: ConnectEmulator) -> None:
    """64 clients at once, each on its own connection, all get answers (no resets)."""
    barrier = threading.Barrier(64)
    oidc = emu.oidc_token()
    results: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker() -> None:
        try:
            with httpx.Client() as h:
                barrier.wait()
                for _ in range(3):  # keep-alive: several requests per connection
                    r = h.post(
                        _token_url(emu, SLACK),
                        json={"subject": {"type": "app"}},
                        headers={"Authorization": f"Bearer {oidc}"},
                    )
                    with lock:
                        results.append(r.status_code)
        except BaseException as exc:  # collected and asserted below
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert results == [200] * 192
    assert emu.token_calls() == 192


def test_config_from_json_and_toml(tmp_path: Path) -> None:
    """A config file defines connectors, installations, users, links and TTL."""
    spec = {
        "project_id": "prj_cfg",
        "connectors": [
            {
                "uid": "acme/crm",
                "type": "custom",
                "token_ttl": 60,
                "installations": [{"id": "i1", "tenant_id": "t1"}],
                "default_installation": "i1",
                "users": ["carol"],
                "links": {"prj_cfg": ["development"]},
            }
        ],
    }
    (tmp_path / "c.json").write_text(json.dumps(spec))
    (tmp_path / "c.toml").write_text(
        'project_id = "prj_cfg"\n[[connectors]]\nuid = "acme/crm"\ntype = "custom"\n'
        'token_ttl = 60\ndefault_installation = "i1"\nusers = ["carol"]\n'
        '[[connectors.installations]]\nid = "i1"\ntenant_id = "t1"\n'
        '[connectors.links]\nprj_cfg = ["development"]\n'
    )
    for name in ("c.json", "c.toml"):
        with ConnectEmulator.from_file(tmp_path / name) as e:
            r = _post(e, "acme/crm", {"subject": {"type": "user", "id": "carol"}})
            assert r.status_code == 200, name
            assert r.json()["tenantId"] == "t1"
            assert 55_000 < r.json()["expiresAt"] - _now_ms() <= 60_000


def _now_ms() -> float:
    import time

    return time.time() * 1000


@pytest.mark.parametrize(
    "bad",
    [
        {"connectors": [{"uid": "a/b", "colour": "red"}]},
        {"connectors": [{"uid": "nodash"}]},
        {"connectors": [{"uid": "a/b", "default_installation": "missing"}]},
        {"connectors": "nope"},
        {"connectors": [], "extra": 1},
    ],
)
def test_bad_config_is_refused(tmp_path: Path, bad: dict[str, Any]) -> None:
    """Unknown keys and inconsistent specs are errors, not silently ignored."""
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError):
        ConnectEmulator.from_file(tmp_path / "bad.json")


def test_add_connector_at_runtime(emu: ConnectEmulator) -> None:
    """Connectors can be added while serving."""
    emu.add_connector(ConnectorSpec(uid="new/one", links={"prj_emulator": ["development"]}))
    assert _post(emu, "new/one", {"subject": {"type": "app"}}).status_code == 200


def test_export_lines_point_at_the_emulator(emu: ConnectEmulator) -> None:
    """export_lines gives a base URL and an accepted OIDC token."""
    lines = emu.export_lines()
    assert lines[0] == f"export CONNECT_AUTH_BASE_URL={emu.url}"
    token = lines[1].split("=", 1)[1]
    assert emu.verify_oidc(token) is not None
    assert lines[2].startswith(f"# provider APIs: {emu.url}/provider/<connector>/<path>")


@pytest.mark.parametrize("written", ["slack/acme-slack", "slack%2Facme-slack", "scl_acmeslack"])
def test_the_provider_takes_the_connector_as_written_or_encoded(
    emu: ConnectEmulator, written: str
) -> None:
    """The quick start's URL form works: the longest known connector the path starts
    with, or an encoded first segment; a token of another connector stays refused."""
    emu.add_connector(ConnectorSpec(uid="slack/acme-slack/eu", type="slack"))
    with ConnectClient(base_url=emu.url, vercel_token=emu.oidc_token()) as client:
        slack = client.get_token(SLACK, subject={"type": "app"})
    url = f"{emu.url}/provider/{written}/chat.postMessage?style=http"
    answer = httpx.post(url, headers={"Authorization": f"Bearer {slack}"})
    assert answer.status_code == 200 and answer.json()["tokenState"] == "live"
    nested = f"{emu.url}/provider/slack/acme-slack/eu/chat.postMessage?style=http"
    refused = httpx.post(nested, headers={"Authorization": f"Bearer {slack}"})
    assert refused.json()["tokenState"] == "wrong_connector"


def test_oauth_token_endpoint(emu: ConnectEmulator) -> None:
    """/oauth/token issues app tokens for Basic or form client credentials."""
    oidc = emu.oidc_token()
    basic = httpx.post(
        f"{emu.url}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(quote(SLACK, safe=""), oidc),
    )
    assert basic.status_code == 200 and basic.json()["token_type"] == "Bearer"
    assert 3500 < basic.json()["expires_in"] <= 3600
    token = basic.json()["access_token"]
    assert (
        httpx.get(emu.provider_url(SLACK), headers={"Authorization": f"Bearer {token}"}).status_code
        == 200
    )
    form = httpx.post(
        f"{emu.url}/oauth/token",
        data={"grant_type": "client_credentials", "client_id": SLACK, "client_secret": oidc},
    )
    assert form.status_code == 200
    bad = httpx.post(
        f"{emu.url}/oauth/token", data={"grant_type": "client_credentials"}, auth=(SLACK, "forged")
    )
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"
    assert [c.endpoint for c in emu.calls] == ["oauth_token"] * 3


def test_many_keep_alive_connections_share_a_bounded_pool(emulator: ConnectEmulator) -> None:
    """300 open keep-alive connections, two requests each, are all answered by a bounded
    pool of worker threads, not a thread per connection."""
    before = threading.active_count()
    request = (
        f"GET /provider/{SLACK.replace('/', '%2F')}/api HTTP/1.1\r\nHost: x\r\n\r\n"
    ).encode()
    connections = [socket.create_connection(("127.0.0.1", emulator.port)) for _ in range(300)]
    try:
        for round_ in range(2):  # the second round proves each connection was handed back
            for conn in connections:
                conn.sendall(request)
            peak = threading.active_count() - before
            for conn in connections:
                conn.settimeout(30)
                head = b""
                while b"\r\n\r\n" not in head:
                    head += conn.recv(65536)
                status_line, _, rest = head.partition(b"\r\n")
                assert status_line.startswith(b"HTTP/1.1 "), round_
                length = int(rest.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                body = head.partition(b"\r\n\r\n")[2]
                while len(body) < length:
                    body += conn.recv(65536)
            peak = max(peak, threading.active_count() - before)
            assert peak <= Server.workers
    finally:
        for conn in connections:
            conn.close()
    assert len(emulator.provider_calls) == 600


def test_latency_holds_answers_not_workers(emu: ConnectEmulator) -> None:
    """Twice as many calls as the server has workers wait out the latency at the same
    time (each answer is held by the server, not by a worker), then all are answered."""
    from helpers import wait_for

    n = 2 * Server.workers
    emu.latency = 60.0  # longer than the test: answered only once released below
    oidc = emu.oidc_token()
    barrier = threading.Barrier(n)
    statuses: list[int] = []

    def call() -> None:
        barrier.wait()
        r = httpx.post(
            _token_url(emu, SLACK),
            json={"subject": {"type": "app"}},
            headers={"Authorization": f"Bearer {oidc}"},
            timeout=120,
        )
        statuses.append(r.status_code)

    threads = [threading.Thread(target=call) for _ in range(n)]
    for t in threads:
        t.start()
    server = emu._server
    assert server is not None
    wait_for(lambda: len(server._later) == n, what=f"{n} answers held at once")
    with server._open_lock:  # due now: the loop hands them to the workers
        server._later[:] = [(0.0, *rest) for _, *rest in server._later]  # type: ignore[misc]
    for t in threads:
        t.join()
    assert statuses == [200] * n


def test_a_slow_connector_and_any_user(tmp_path: Path) -> None:
    """latency and users=["*"] from a config file: the slow connector's answer waits,
    another connector's does not; any user id has consented."""
    config = tmp_path / "connect.json"
    config.write_text(
        json.dumps(
            {
                "connectors": [
                    {"uid": "slow/one", "latency": 30.0, "users": ["*"]},
                    {"uid": "fast/one", "users": ["*"]},
                ]
            }
        )
    )
    with ConnectEmulator.from_file(config) as emu:
        body = {"subject": {"type": "user", "id": "anyone-at-all"}}
        assert _post(emu, "fast/one", body).status_code == 200
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(
                _token_url(emu, "slow/one"),
                json=body,
                headers={"Authorization": f"Bearer {emu.oidc_token()}"},
                timeout=0.5,
            )
    with pytest.raises(ValueError, match="latency"):
        ConnectorSpec(uid="bad/one", latency=-1)
