"""get_token and friends end to end against the emulator: subjects, errors, cache, retries."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from helpers import APP, SLACK, fast_retry, jwt_like

import connect_auth
from connect_auth import (
    AppSubject,
    ClientNotEnabledForEnvironmentError,
    ClientNotLinkedToProjectError,
    ConnectClient,
    ConnectError,
    ConnectorInstallationRequiredError,
    ConnectorNotFoundError,
    ConnectResponseError,
    ConnectUnavailableError,
    JwtBearerSubject,
    NoValidTokenError,
    OidcTokenError,
    RetryPolicy,
    TokenExchangeSubject,
    UserAuthorizationRequiredError,
    UserSubject,
)
from connect_auth.testing import ConnectEmulator, ConnectorSpec


def test_module_functions_use_the_environment(emulator: ConnectEmulator) -> None:
    """get_token / get_token_response read CONNECT_AUTH_BASE_URL and VERCEL_OIDC_TOKEN."""
    token = connect_auth.get_token(SLACK, subject=APP, scopes=["chat:write"])
    response = connect_auth.get_token_response(SLACK, subject=APP, scopes=["chat:write"])
    assert response.token == token  # second call served from the cache
    assert response.connector.uid == SLACK and response.tenant_id == "T0ACME"
    assert emulator.token_calls() == 1
    [call] = emulator.calls
    assert call.params == {"subject": {"type": "app"}, "scopes": ["chat:write"]}


@pytest.mark.parametrize(
    ("subject", "wire"),
    [
        (AppSubject(), {"type": "app"}),
        (UserSubject("u_alice"), {"type": "user", "id": "u_alice"}),
        (
            {"type": "user", "id": "u_bob", "issuer": "https://oidc.vercel.com"},
            {"type": "user", "id": "u_bob", "issuer": "https://oidc.vercel.com"},
        ),
        (
            JwtBearerSubject("svc", additional_claims={"role": "x"}),
            {"type": "jwt-bearer", "sub": "svc", "additionalClaims": {"role": "x"}},
        ),
        (
            TokenExchangeSubject("upstream-credential"),
            {"type": "token", "token": "upstream-credential"},
        ),
    ],
)
def test_every_subject_type(
    client: ConnectClient, emulator: ConnectEmulator, subject: Any, wire: dict[str, Any]
) -> None:
    """Each subject type reaches Connect in its wire form and gets a token."""
    response = client.get_token_response(SLACK, subject=subject)
    assert response.token and response.expires_at > time.time() * 1000
    assert emulator.calls[-1].subject == wire


def test_all_params_reach_the_wire(client: ConnectClient, emulator: ConnectEmulator) -> None:
    """installationId, audience, scopes, resources, authorizationDetails, validityBufferMs."""
    client.get_token(
        SLACK,
        subject=APP,
        installation_id="inst_acme",
        audience=["aud"],
        scopes=["a", "b"],
        resources=["res"],
        authorization_details=[{"type": "t", "x": 1}],
        validity_buffer_ms=1000,
    )
    assert emulator.calls[-1].params == {
        "subject": {"type": "app"},
        "installationId": "inst_acme",
        "audience": ["aud"],
        "scopes": ["a", "b"],
        "resources": ["res"],
        "authorizationDetails": [{"type": "t", "x": 1}],
        "validityBufferMs": 1000,
    }


@pytest.mark.parametrize(
    ("connector", "subject", "kwargs", "cls", "code"),
    [
        ("nope/none", APP, {}, ConnectorNotFoundError, "not_found"),
        ("salesforce/acme-sf", APP, {}, ClientNotLinkedToProjectError, "forbidden"),
        ("linear/acme-linear", APP, {}, ClientNotEnabledForEnvironmentError, "forbidden"),
        (
            "github/acme-github",
            APP,
            {},
            ConnectorInstallationRequiredError,
            "connector_installation_required",
        ),
        (
            SLACK,
            {"type": "user", "id": "mallory"},
            {},
            UserAuthorizationRequiredError,
            "user_authorization_required",
        ),
    ],
)
def test_every_error_class(
    client: ConnectClient,
    connector: str,
    subject: Any,
    kwargs: dict[str, Any],
    cls: type[ConnectError],
    code: str,
) -> None:
    """Each seed error surfaces as its class, with code, status and request id."""
    with pytest.raises(cls) as info:
        client.get_token(connector, subject=subject, **kwargs)
    err = info.value
    assert err.code == code and err.status is not None and err.status >= 400
    assert err.status_text and err.request_id and err.request_id.startswith("emu1::")


def test_no_valid_token_after_grant_revoked(
    client: ConnectClient, emulator: ConnectEmulator
) -> None:
    """A revoked grant raises NoValidTokenError, and errors are never cached."""
    emulator.revoke_grant(SLACK, {"type": "user", "id": "u_bob"})
    for _ in range(2):
        with pytest.raises(NoValidTokenError):
            client.get_token(SLACK, subject=UserSubject("u_bob"))
    assert emulator.token_calls() == 2


def test_refused_credential_is_an_oidc_error(emulator: ConnectEmulator) -> None:
    """A credential Connect refuses gives OidcTokenError with the fix-it hint."""
    with (
        ConnectClient(base_url=emulator.url, vercel_token=jwt_like("forged")) as c,
        pytest.raises(OidcTokenError, match="vercel env pull"),
    ):
        c.get_token(SLACK, subject=APP)


def test_missing_credential_fails_before_the_network(
    emulator: ConnectEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """With no credential anywhere, nothing is sent."""
    monkeypatch.delenv("VERCEL_OIDC_TOKEN")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OidcTokenError):
        connect_auth.get_token(SLACK, subject=APP)
    assert emulator.calls == []


def test_malformed_success_is_a_response_error(
    client: ConnectClient, emulator: ConnectEmulator
) -> None:
    """A 200 whose body is not a token response raises ConnectResponseError."""
    emulator.fail_next(1, status=200)
    with pytest.raises(ConnectResponseError):
        client.get_token(SLACK, subject=APP)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"connector": "", "subject": APP}, ValueError),
        ({"connector": SLACK, "subject": {"type": "robot"}}, ValueError),
        ({"connector": SLACK, "subject": {"type": "user"}}, ValueError),
        ({"connector": SLACK, "subject": APP, "scopes": "chat:write"}, TypeError),
        ({"connector": SLACK, "subject": APP, "validity_buffer_ms": -1}, ValueError),
        ({"connector": SLACK, "subject": APP, "vercel_token": ""}, ValueError),
        ({"connector": SLACK, "subject": APP, "force_refresh": "yes"}, TypeError),
        ({"connector": SLACK, "subject": APP, "colour": "red"}, TypeError),
    ],
)
def test_bad_arguments_fail_before_the_network(
    emulator: ConnectEmulator, kwargs: dict[str, Any], error: type
) -> None:
    """ValueError / TypeError, and the emulator sees no call."""
    with pytest.raises(error):
        connect_auth.get_token(**kwargs)
    assert emulator.calls == []


# -- cache semantics -------------------------------------------------------------


def test_cache_hit_and_buffer_boundary(emulator: ConnectEmulator) -> None:
    """Served while expires_at - now > buffer; at the boundary it is fetched again
    (refresh-ahead off: it would refetch in the background before the boundary)."""
    now = [time.time()]
    oidc = emulator.oidc_token(ttl=7200)
    with ConnectClient(
        base_url=emulator.url, vercel_token=oidc, clock=lambda: now[0], refresh_ahead_ms=0
    ) as c:
        first = c.get_token_response(SLACK, subject=APP)
        assert c.get_token(SLACK, subject=APP) == first.token
        now[0] = (first.expires_at - 30_001) / 1000  # 30.001 s left: still fresh
        assert c.get_token(SLACK, subject=APP) == first.token
        assert emulator.token_calls() == 1
        now[0] = (first.expires_at - 30_000) / 1000  # exactly the buffer: stale
        assert c.get_token(SLACK, subject=APP) != first.token
        assert emulator.token_calls() == 2


def test_per_call_buffer(client: ConnectClient, emulator: ConnectEmulator) -> None:
    """A buffer longer than the remaining life forces a fetch; it is not part of the key."""
    first = client.get_token_response(SLACK, subject=APP)
    assert client.get_token(SLACK, subject=APP, validity_buffer_ms=0) == first.token
    assert emulator.token_calls() == 1
    client.get_token(SLACK, subject=APP, validity_buffer_ms=10 * 3600 * 1000)
    assert emulator.token_calls() == 2


def test_lru_eviction_at_capacity_plus_one(emulator: ConnectEmulator) -> None:
    """The least recently used entry is evicted when cache_size + 1 keys are used."""
    with ConnectClient(
        base_url=emulator.url, vercel_token=emulator.oidc_token(), cache_size=3
    ) as c:
        for sub in ("s1", "s2", "s3"):
            c.get_token(SLACK, subject=JwtBearerSubject(sub))
        c.get_token(SLACK, subject=JwtBearerSubject("s1"))  # s1 becomes most recent
        assert emulator.token_calls() == 3
        c.get_token(SLACK, subject=JwtBearerSubject("s4"))  # evicts s2
        c.get_token(SLACK, subject=JwtBearerSubject("s1"))
        c.get_token(SLACK, subject=JwtBearerSubject("s3"))
        assert emulator.token_calls() == 4
        c.get_token(SLACK, subject=JwtBearerSubject("s2"))
        assert emulator.token_calls() == 5


def test_force_refresh(client: ConnectClient, emulator: ConnectEmulator) -> None:
    """force_refresh fetches and replaces the entry."""
    old = client.get_token(SLACK, subject=APP)
    new = client.get_token(SLACK, subject=APP, force_refresh=True)
    assert new != old and client.get_token(SLACK, subject=APP) == new
    assert emulator.token_calls() == 2


def test_delete_token_cache_entry_removes_exactly_that_entry(
    client: ConnectClient, emulator: ConnectEmulator
) -> None:
    """Only the entry get_token would use goes (default scopes applied)."""
    client.get_token(SLACK, subject=APP)
    client.get_token(SLACK, subject=APP, scopes=["x"])
    client.delete_token_cache_entry(SLACK, subject=APP, scopes=["*"])  # same key as omitted
    client.get_token(SLACK, subject=APP, scopes=["x"])
    assert emulator.token_calls() == 2
    client.get_token(SLACK, subject=APP)
    assert emulator.token_calls() == 3
    client.clear_token_cache()
    client.get_token(SLACK, subject=APP, scopes=["x"])
    assert emulator.token_calls() == 4


def test_revoke_token(client: ConnectClient, emulator: ConnectEmulator) -> None:
    """revoke_token revokes at Connect and evicts only that subject's entries."""
    alice = client.get_token(SLACK, subject=UserSubject("u_alice"))
    bob = client.get_token(SLACK, subject=UserSubject("u_bob"))
    client.revoke_token(SLACK, subject={"type": "user", "id": "u_alice"})
    provider = emulator.provider_url(SLACK) + "?style=http"
    assert httpx.get(provider, headers={"Authorization": f"Bearer {alice}"}).status_code == 401
    assert client.get_token(SLACK, subject=UserSubject("u_bob")) == bob
    assert client.get_token(SLACK, subject=UserSubject("u_alice")) != alice
    revokes = [c for c in emulator.calls if c.endpoint == "revoke"]
    assert len(revokes) == 1 and revokes[0].params == {"subject": {"type": "user", "id": "u_alice"}}


def test_failed_revoke_leaves_the_cache(client: ConnectClient, emulator: ConnectEmulator) -> None:
    """A revoke Connect refuses raises and evicts nothing."""
    token = client.get_token(SLACK, subject=APP)
    emulator.fail_next(1, status=403)
    with pytest.raises(ConnectError):
        client.revoke_token(SLACK, subject=APP)
    assert client.get_token(SLACK, subject=APP) == token


def test_identities_never_share_tokens(emulator: ConnectEmulator) -> None:
    """Two Vercel credentials get two cache entries, even for the same params."""
    with ConnectClient(base_url=emulator.url) as c:
        a = c.get_token(SLACK, subject=APP, vercel_token=emulator.oidc_token())
        b = c.get_token(SLACK, subject=APP, vercel_token=emulator.oidc_token())
        assert a != b and emulator.token_calls() == 2


def test_token_inside_buffer_is_returned_but_not_cached(
    client: ConnectClient, emulator: ConnectEmulator
) -> None:
    """A 10 s token with the default 30 s buffer: each call fetches a new one."""
    emulator.add_connector(
        ConnectorSpec(uid="short/lived", token_ttl=10, links={"prj_emulator": ["development"]})
    )
    first = client.get_token("short/lived", subject=APP)
    second = client.get_token("short/lived", subject=APP)
    assert first != second and emulator.token_calls() == 2


def test_response_repr_never_shows_the_token(client: ConnectClient) -> None:
    """repr and str of TokenResponse hide the token."""
    response = client.get_token_response(SLACK, subject=APP)
    assert response.token not in repr(response) and response.token not in str(response)
    assert response.to_dict()["token"] == response.token


# -- retries -----------------------------------------------------------------------


def test_503_twice_then_success(client: ConnectClient, emulator: ConnectEmulator) -> None:
    """503, 503, 200: success after three calls."""
    emulator.fail_next(2, status=503)
    assert client.get_token(SLACK, subject=APP)
    assert emulator.token_calls() == 3


def test_retry_after_is_honoured(emulator: ConnectEmulator) -> None:
    """A 429 with Retry-After: 1 waits one second (the requested sleep is recorded)."""
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    policy = RetryPolicy(sleep=sleep, initial_backoff=0.01)
    with ConnectClient(
        base_url=emulator.url, vercel_token=emulator.oidc_token(), retry=policy
    ) as c:
        emulator.fail_next(1, status=429, retry_after=1)
        assert c.get_token(SLACK, subject=APP)
    assert waits == [1.0]
    assert emulator.token_calls() == 2


def test_4xx_is_tried_once(client: ConnectClient, emulator: ConnectEmulator) -> None:
    """A 400 is final."""
    emulator.fail_next(1, status=400)
    with pytest.raises(ConnectError) as info:
        client.get_token(SLACK, subject=APP)
    assert info.value.status == 400 and emulator.token_calls() == 1


def test_dropped_connection_is_retried(client: ConnectClient, emulator: ConnectEmulator) -> None:
    """A connection closed without an answer is transient."""
    emulator.drop_next(1)
    assert client.get_token(SLACK, subject=APP)
    assert emulator.token_calls() == 2


def test_stalled_server_ends_at_the_deadline(emulator: ConnectEmulator) -> None:
    """A Connect that never answers ends in ConnectUnavailableError, chained to the timeout."""
    emulator.stall_next(10, seconds=30)
    policy = fast_retry(deadline=1.0)
    with (
        ConnectClient(
            base_url=emulator.url, vercel_token=emulator.oidc_token(), timeout=0.3, retry=policy
        ) as c,
        pytest.raises(ConnectUnavailableError) as info,
    ):
        c.get_token(SLACK, subject=APP)
    assert isinstance(info.value.__cause__, httpx.TimeoutException)
    assert 1 <= emulator.token_calls() <= policy.max_attempts
    emulator.reset_faults()


def test_retry_after_past_the_deadline_gives_up_at_once(emulator: ConnectEmulator) -> None:
    """No wait starts that would end past the deadline."""
    waits: list[float] = []
    policy = RetryPolicy(deadline=5, retry_after_cap=120, sleep=waits.append)
    with ConnectClient(
        base_url=emulator.url, vercel_token=emulator.oidc_token(), retry=policy
    ) as c:
        emulator.fail_next(1, status=503, retry_after=60)
        with pytest.raises(ConnectUnavailableError) as info:
            c.get_token(SLACK, subject=APP)
    assert waits == [] and info.value.status == 503 and emulator.token_calls() == 1


def test_attempts_are_bounded(client: ConnectClient, emulator: ConnectEmulator) -> None:
    """A Connect that keeps failing is tried max_attempts times, then given up on."""
    emulator.fail_next(50, status=502)
    with pytest.raises(ConnectUnavailableError, match="4 attempt"):
        client.get_token(SLACK, subject=APP)
    assert emulator.token_calls() == 4
    emulator.reset_faults()


def test_retry_policy_validation() -> None:
    """Nonsense policies are refused."""
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(deadline=0)
    with pytest.raises(TypeError):
        RetryPolicy(max_backoff="1")  # type: ignore[arg-type]
    assert RetryPolicy().wait_for(3, None, 0.5) == pytest.approx(0.4)
    assert RetryPolicy(retry_after_cap=2).wait_for(1, 9.0, 0.5) == 2.0


def test_client_validation(emulator: ConnectEmulator) -> None:
    """Bad client settings are refused at construction."""
    with pytest.raises(ValueError):
        ConnectClient(timeout=0)
    with pytest.raises(ValueError):
        ConnectClient(cache_size=0)
    with pytest.raises(TypeError):
        ConnectClient(retry=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ConnectClient(base_url="http://example.com")
    assert ConnectClient(base_url=None, region="iad1").base_url == emulator.url  # env wins
    assert "ConnectClient" in repr(ConnectClient(base_url="https://api.vercel.com"))


@pytest.mark.anyio
async def test_async_api(emulator: ConnectEmulator, anyio_backend: str) -> None:
    """The async functions mirror the sync ones, on asyncio and trio."""
    token = await connect_auth.aget_token(SLACK, subject=APP)
    response = await connect_auth.aget_token_response(SLACK, subject=APP)
    assert response.token == token and emulator.token_calls() == 1
    await connect_auth.arevoke_token(SLACK, subject=APP)
    assert await connect_auth.aget_token(SLACK, subject=APP) != token
    async with ConnectClient(base_url=emulator.url, vercel_token=emulator.oidc_token()) as c:
        with pytest.raises(ConnectorNotFoundError):
            await c.aget_token("nope/x", subject=APP)


@pytest.mark.anyio
async def test_closed_client_refuses_to_fetch(
    emulator: ConnectEmulator, anyio_backend: str
) -> None:
    """After close(), a fetch raises RuntimeError (sync and async); no waiter is stranded."""
    c = ConnectClient(base_url=emulator.url, vercel_token=emulator.oidc_token())
    cached = c.get_token(SLACK, subject=APP)
    await c.aclose()
    assert c.get_token(SLACK, subject=APP) == cached  # the cache needs no connection
    with pytest.raises(RuntimeError, match="closed"):
        c.get_token(SLACK, subject=UserSubject("u_alice"))
    with pytest.raises(RuntimeError, match="closed"):
        await c.aget_token(SLACK, subject=UserSubject("u_alice"))
    assert c._engine._flights == {}
