"""User consent, installations and connector metadata, against the emulator's real
HTTP server and pages, and against recorded wire fixtures."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from helpers import SLACK, fast_retry, jwt_like

import connect_auth
from connect_auth import (
    AuthorizationDeniedError,
    AuthorizationExpiredError,
    AuthorizationPendingError,
    AuthorizationRequest,
    ConnectClient,
    ConnectorNotFoundError,
    UserAuthorizationRequiredError,
    UserSubject,
)
from connect_auth._client import _next_interval
from connect_auth.testing import ConnectEmulator

CAROL = UserSubject("u_carol")  # not authorized in the default emulator
WIRE = Path(__file__).parent / "fixtures" / "wire"

CREDENTIAL = jwt_like("vercel-credential")


def _flow_calls(emulator: ConnectEmulator) -> list[Any]:
    return [c for c in emulator.calls if c.endpoint in ("authorize", "install")]


def test_consent_through_the_page_then_a_token(
    client: ConnectClient, emulator: ConnectEmulator
) -> None:
    """The whole flow as a person does it: no grant, start, open the page, approve,
    come back to the callback URL, and the next token call succeeds."""
    with pytest.raises(UserAuthorizationRequiredError):
        client.get_token(SLACK, subject=CAROL)
    request = client.start_authorization(
        SLACK,
        subject=CAROL,
        callback_url="http://localhost:3000/connected?from=slack",
        scopes=["chat:write"],
        prompt="consent",
        expires_in_ms=120_000,
    )
    sent = _flow_calls(emulator)[-1].params
    assert sent == {
        "subject": {"type": "user", "id": "u_carol"},
        "scopes": ["chat:write"],
        "returnUrl": "http://localhost:3000/connected?from=slack",
        "expiresInMs": 120_000,
        "prompt": "consent",
    }
    assert request.connector is not None and request.connector.uid == SLACK
    assert request.connector.name == "Acme Slack"
    assert request.expires_at is not None and request.expires_at > time.time() * 1000
    assert request.verifier and request.verifier not in repr(request)
    with pytest.raises(AuthorizationPendingError):
        client.get_token(SLACK, subject=CAROL, scopes=["chat:write"])
    with httpx.Client() as browser:
        page = browser.get(request.url)
        assert page.status_code == 200 and "Approve" in page.text and "u_carol" in page.text
        back = browser.post(request.url, data={"decision": "approve"})
    assert back.status_code == 303
    assert back.headers["location"] == (
        f"http://localhost:3000/connected?from=slack&status=success&request={request.request}"
    )
    token = client.get_token_response(SLACK, subject=CAROL, scopes=["chat:write"])
    assert token.external_subject == "user:u_carol"


def test_default_scopes_are_sent_as_for_tokens(
    client: ConnectClient, emulator: ConnectEmulator
) -> None:
    client.start_authorization(SLACK, subject={"type": "user", "id": "u_dan"})
    assert _flow_calls(emulator)[-1].params == {
        "subject": {"type": "user", "id": "u_dan"},
        "scopes": ["*"],
    }


def test_a_denial_stops_the_wait_at_once(client: ConnectClient, emulator: ConnectEmulator) -> None:
    request = client.start_authorization(SLACK, subject=CAROL)
    with httpx.Client() as browser:
        answer = browser.post(request.url, data={"decision": "deny"})
    assert answer.status_code == 200 and "denied" in answer.text
    before = emulator.token_calls()
    with pytest.raises(AuthorizationDeniedError) as caught:
        client.wait_for_authorization(SLACK, subject=CAROL, timeout=30, interval=0.05)
    assert caught.value.code == "access_denied"
    assert emulator.token_calls() == before + 1


def test_an_expired_request_stops_the_wait(
    client: ConnectClient, emulator: ConnectEmulator
) -> None:
    client.start_authorization(SLACK, subject=CAROL, expires_in_ms=1)
    time.sleep(0.01)
    with pytest.raises(AuthorizationExpiredError) as caught:
        client.wait_for_authorization(SLACK, subject=CAROL, timeout=30, interval=0.05)
    assert caught.value.code == "expired_token"


def test_wait_returns_once_another_thread_approves(
    client: ConnectClient, emulator: ConnectEmulator
) -> None:
    """The waiter polls while pending; approval (a person, another thread) ends it."""
    request = client.start_authorization(SLACK, subject=CAROL)
    before = emulator.token_calls()

    def person() -> None:
        while emulator.token_calls() < before + 3:  # let the waiter see "pending" thrice
            time.sleep(0.005)
        emulator.approve(request)

    helper = threading.Thread(target=person)
    helper.start()
    token = client.wait_for_authorization(SLACK, subject=CAROL, timeout=60, interval=0.02)
    helper.join()
    assert token.external_subject == "user:u_carol"
    pending = [
        c
        for c in emulator.calls[before:]
        if c.endpoint == "token" and c.status == 400 and c.connector == SLACK
    ]
    assert len(pending) >= 3


def test_wait_gives_up_after_its_timeout(client: ConnectClient, emulator: ConnectEmulator) -> None:
    client.start_authorization(SLACK, subject=CAROL)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"no authorization for slack/acme-slack within 0\.3 s"):
        client.wait_for_authorization(SLACK, subject=CAROL, timeout=0.3, interval=0.05)
    assert time.monotonic() - started >= 0.3
    assert emulator.token_calls() >= 2


def test_slow_down_adds_five_seconds() -> None:
    pending = AuthorizationPendingError("wait", code="authorization_pending")
    slow = AuthorizationPendingError("slower", code="slow_down")
    assert _next_interval(2.0, pending) == 2.0
    assert _next_interval(2.0, slow) == 7.0
    assert _next_interval(2.0, UserAuthorizationRequiredError("none yet")) == 2.0


def test_slow_down_keeps_waiting_and_waits_longer(
    client: ConnectClient, emulator: ConnectEmulator
) -> None:
    """A slow_down answer is not an error: the next ask comes 5 s later."""
    request = client.start_authorization(SLACK, subject=CAROL)
    emulator.approve(request)
    emulator.fail_next(1, status=400, code="slow_down")
    started = time.monotonic()
    token = client.wait_for_authorization(SLACK, subject=CAROL, timeout=60, interval=0.01)
    assert time.monotonic() - started >= 5.0
    assert token.external_subject == "user:u_carol"


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf")])
def test_wait_refuses_bad_durations(client: ConnectClient, bad: float) -> None:
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        client.wait_for_authorization(SLACK, subject=CAROL, timeout=bad)
    with pytest.raises(ValueError, match="interval must be a positive number"):
        client.wait_for_authorization(SLACK, subject=CAROL, interval=bad)


def test_device_code_flow_through_the_device_page(
    client: ConnectClient, emulator: ConnectEmulator
) -> None:
    request = client.start_authorization(SLACK, subject=CAROL, device_code=True)
    assert _flow_calls(emulator)[-1].params["deviceCode"] is True
    assert request.device_code is not None and request.url.endswith("/connect/device")
    with httpx.Client(base_url=emulator.url, follow_redirects=True) as browser:
        assert "user_code" in browser.get("/connect/device").text
        wrong = browser.post("/connect/device", data={"user_code": "NOPE-NOPE"})
        assert wrong.status_code == 400
        page = browser.post("/connect/device", data={"user_code": request.device_code.lower()})
        assert page.status_code == 200 and "Approve" in page.text
        done = browser.post(str(page.url), data={"decision": "approve"})
        assert "approved" in done.text
    assert client.get_token(SLACK, subject=CAROL).startswith("emu_slack_")


@pytest.mark.parametrize(
    "url",
    [
        "https://app.example.com/cb",
        "http://localhost:3000/cb",
        "http://app.localhost/cb",
        "http://127.0.0.1:8000/cb",
        "http://127.0.0.2/cb",  # the one loopback rule: 127.0.0.0/8
        "http://[::1]:8000/cb",
    ],
)
def test_callback_urls_that_are_accepted(
    client: ConnectClient, emulator: ConnectEmulator, url: str
) -> None:
    client.start_authorization(SLACK, subject=CAROL, callback_url=url)
    assert _flow_calls(emulator)[-1].params["returnUrl"] == url


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"callback_url": "http://example.com/cb"}, "callback_url must be an https:// URL"),
        ({"callback_url": "http://0.0.0.0/cb"}, "callback_url must be an https:// URL"),
        ({"callback_url": "ftp://localhost/cb"}, "callback_url must be an https:// URL"),
        ({"callback_url": "/relative"}, "absolute URL"),
        ({"callback_url": "https://x:99999/"}, "not a valid URL"),
        ({"callback_url": ""}, "callback_url must not be empty"),
        ({"webhook": "http://localhost/hook"}, "webhook must be an https:// URL"),
        ({"expires_in_ms": 0}, "expires_in_ms must be a positive number"),
        ({"expires_in_ms": float("nan")}, "expires_in_ms must be a positive number"),
        ({"prompt": ""}, "prompt must not be empty"),
        ({"scopes": "chat:write"}, "not a single string"),
        ({"device_code": "yes"}, "device_code must be True, False or None"),
    ],
)
def test_bad_options_are_refused_before_any_call(
    client: ConnectClient, emulator: ConnectEmulator, options: dict[str, Any], fragment: str
) -> None:
    before = len(emulator.calls)
    with pytest.raises((ValueError, TypeError), match=fragment):
        client.start_authorization(SLACK, subject=CAROL, **options)
    assert len(emulator.calls) == before


def test_detached_mode_uses_a_device_code_and_drops_the_callback(
    client: ConnectClient, emulator: ConnectEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VERCEL_CONNECT_INTERACTIVE_AUTH_MODE", " Detached ")
    with pytest.warns(UserWarning, match="callback_url is not sent"):
        request = client.start_authorization(
            SLACK, subject=CAROL, callback_url="https://app.example.com/cb"
        )
    sent = _flow_calls(emulator)[-1].params
    assert sent["deviceCode"] is True and "returnUrl" not in sent
    assert request.device_code is not None
    client.start_authorization(SLACK, subject=CAROL, device_code=False)
    assert _flow_calls(emulator)[-1].params["deviceCode"] is False


def test_installation_then_an_app_token_for_it(
    client: ConnectClient, emulator: ConnectEmulator
) -> None:
    request = client.experimental_start_installation(
        "github/acme-github", tenant_id="T42", callback_url="https://app.example.com/installed"
    )
    assert _flow_calls(emulator)[-1].params == {
        "tenantId": "T42",
        "returnUrl": "https://app.example.com/installed",
    }
    assert request.url.endswith(f"/connect/install/{request.request}")
    with httpx.Client() as browser:
        page = browser.get(request.url)
        assert "install" in page.text
        back = browser.post(request.url, data={"decision": "approve"})
    assert back.status_code == 303 and "status=success" in back.headers["location"]
    flow = next(f for f in emulator.authorization_flows() if f.id == request.request)
    token = client.get_token_response(
        "github/acme-github", subject={"type": "app"}, installation_id=flow.installation_id
    )
    assert token.tenant_id == "T42"


def test_installation_sends_params_only_when_given(
    client: ConnectClient, emulator: ConnectEmulator
) -> None:
    client.experimental_start_installation(
        SLACK, scopes=["chat:write"], installation_id="inst_acme", device_code=True
    )
    assert _flow_calls(emulator)[-1].params == {
        "installationId": "inst_acme",
        "scopes": ["chat:write"],
        "deviceCode": True,
    }


def test_connector_metadata(client: ConnectClient) -> None:
    meta = client.get_connector_metadata(SLACK)
    assert (meta.id, meta.uid, meta.type, meta.name) == (
        "scl_acmeslack",
        SLACK,
        "slack",
        "Acme Slack",
    )
    assert meta.vendor == {} and meta.extra == {"supportsRevocation": True}
    with pytest.raises(ConnectorNotFoundError):
        client.get_connector_metadata("slack/nope")


def test_module_functions_use_the_default_client(emulator: ConnectEmulator) -> None:
    """The connect_emulator fixture points the process-wide client at the emulator."""
    meta = connect_auth.get_connector_metadata(SLACK)
    assert meta.uid == SLACK
    request = connect_auth.start_authorization(SLACK, subject=CAROL)
    emulator.approve(request)
    token = connect_auth.wait_for_authorization(SLACK, subject=CAROL, timeout=30, interval=0.02)
    assert token.external_subject == "user:u_carol"
    install = connect_auth.experimental_start_installation("github/acme-github")
    assert install.request.startswith("cin_")


@pytest.mark.anyio
async def test_async_consent_install_and_metadata(
    emulator: ConnectEmulator, anyio_backend: str
) -> None:
    async with ConnectClient(
        base_url=emulator.url, vercel_token=emulator.oidc_token(), retry=fast_retry()
    ) as client:
        meta = await client.aget_connector_metadata(SLACK)
        assert meta.uid == SLACK
        request = await client.astart_authorization(SLACK, subject=CAROL)

        async def person() -> None:
            await anyio.sleep(0.05)
            emulator.approve(request)

        async with anyio.create_task_group() as tg:
            tg.start_soon(person)
            token = await client.await_for_authorization(
                SLACK, subject=CAROL, timeout=30, interval=0.01
            )
        assert token.external_subject == "user:u_carol"
        install = await client.aexperimental_start_installation("github/acme-github")
        assert install.request.startswith("cin_")
        assert (await connect_auth.aget_connector_metadata(SLACK)).uid == SLACK
        assert (await connect_auth.astart_authorization(SLACK, subject=CAROL)).url
        with anyio.fail_after(30):
            with pytest.raises(TimeoutError):
                await connect_auth.await_for_authorization(
                    SLACK, subject=UserSubject("u_zed"), timeout=0.1, interval=0.02
                )
        install2 = await connect_auth.aexperimental_start_installation("github/acme-github")
        assert isinstance(install2, AuthorizationRequest)


# -- recorded wire fixtures -----------------------------------------------------------------


def _fixtures() -> list[Path]:
    return sorted(WIRE.glob("*.json"))


@pytest.mark.parametrize("path", _fixtures(), ids=lambda p: p.stem)
def test_recorded_exchange(path: Path) -> None:
    """Each fixture: a call, the exact request Vercel's SDK sends for it, Connect's
    recorded answer, and what the caller gets."""
    fixture = json.loads(path.read_text())
    seen: list[httpx.Request] = []

    def connect_api(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = fixture["response"]
        return httpx.Response(
            answer["status"],
            content=json.dumps(answer["json"]).encode(),
            headers={"x-vercel-id": "rec1::abc", "content-type": "application/json"},
        )

    with ConnectClient(
        base_url="https://api.vercel.com",
        vercel_token=CREDENTIAL,
        transport=httpx.MockTransport(connect_api),
        retry=fast_retry(max_attempts=1),
    ) as client:
        call = fixture["call"]
        method = getattr(client, call["function"])
        expect = fixture["expect"]
        if "error" in expect:
            with pytest.raises(getattr(connect_auth, expect["error"]["class"])) as caught:
                method(*call.get("args", []), **call.get("kwargs", {}))
            for name, value in expect["error"].items():
                if name != "class":
                    assert getattr(caught.value, name) == value, name
        else:
            result = method(*call.get("args", []), **call.get("kwargs", {}))
            for name, value in expect["result"].items():
                got = getattr(result, name)
                got = got if not hasattr(got, "__dataclass_fields__") else _as_dict(got)
                assert got == value, name
    (request,) = seen
    wanted = fixture["request"]
    assert request.method == wanted["method"]
    assert request.url.raw_path.decode() == wanted["path"]
    assert request.headers["authorization"] == "Bearer " + CREDENTIAL
    assert request.headers["accept"] == "application/json"
    if wanted.get("body") is None:
        assert request.content == b"" and "content-type" not in request.headers
    else:
        assert request.headers["content-type"] == "application/json"
        assert request.content == json.dumps(wanted["body"], separators=(",", ":")).encode()


def _as_dict(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__dataclass_fields__}


def test_there_are_wire_fixtures() -> None:
    assert len(_fixtures()) >= 6
