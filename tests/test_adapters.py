"""The ConnectAuth compliance suite: every client kind against the emulator's provider."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest
import requests
from drivers import ALL_DRIVERS, Driver, HttpxSync, Requests
from helpers import APP, SLACK

import connect_auth
from connect_auth import ConnectClient, UserAuthorizationRequiredError, slack_invalid_auth
from connect_auth.httpx import ConnectAuth
from connect_auth.testing import ConnectEmulator


@pytest.fixture(params=ALL_DRIVERS, ids=lambda d: d.name)
def driver_cls(request: pytest.FixtureRequest) -> type[Driver]:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def make(client: ConnectClient, driver_cls: type[Driver]) -> Iterator[Any]:
    """Build a driver whose ConnectAuth uses the test's client (closed afterwards)."""
    made: list[Driver] = []

    def build(**overrides: Any) -> Driver:
        kwargs: dict[str, Any] = {"connector": SLACK, "subject": APP, "client": client}
        kwargs.update(overrides)
        driver = driver_cls(kwargs)
        made.append(driver)
        return driver

    yield build
    for d in made:
        d.close()


def _current_token(client: ConnectClient) -> str:
    return client.get_token(SLACK, subject=APP)


# -- compliance ----------------------------------------------------------------------


def test_header_is_attached(make: Any, emulator: ConnectEmulator) -> None:
    """The provider receives a live bearer token."""
    r = make().send("GET", emulator.provider_url(SLACK))
    assert r.status == 200 and r.json["tokenState"] == "live"
    assert "authorization" in r.json["headers"]


def test_1000_requests_one_connect_call(make: Any, emulator: ConnectEmulator) -> None:
    """The cache-hit path: 1000 requests, one Connect call."""
    driver = make()
    url = emulator.provider_url(SLACK)
    statuses = {driver.send("GET", url).status for _ in range(1000)}
    assert statuses == {200}
    assert emulator.token_calls() == 1
    assert len(emulator.provider_calls) == 1000


def test_revoked_token_is_refreshed_and_resent(
    make: Any, client: ConnectClient, emulator: ConnectEmulator
) -> None:
    """Revoked behind the app's back: 401, one refresh, the resend succeeds."""
    driver = make()
    url = emulator.provider_url(SLACK)
    assert driver.send("GET", url).status == 200
    emulator.revoke(_current_token(client))
    r = driver.send("GET", url)
    assert r.status == 200 and r.history == (1 if driver.resend_in_history else 0)
    assert emulator.token_calls() == 2
    assert [c.token_state for c in emulator.provider_calls] == ["live", "revoked", "live"]


def test_second_401_is_returned_after_two_provider_calls(
    make: Any, emulator: ConnectEmulator
) -> None:
    """A provider that keeps refusing: exactly two provider calls, then the 401."""
    r = make().send("GET", emulator.provider_url(SLACK) + "?status=401")
    assert r.status == 401
    assert len(emulator.provider_calls) == 2
    assert emulator.token_calls() == 2  # the first token plus one refresh, never a loop


def test_32_concurrent_401s_cost_one_refresh(
    make: Any, client: ConnectClient, emulator: ConnectEmulator
) -> None:
    """32 requests refused for the same token: one Connect call refreshes them all."""
    driver = make()
    url = emulator.provider_url(SLACK)
    assert driver.send("GET", url).status == 200
    emulator.revoke(_current_token(client))
    emulator.latency = 0.2  # keep the refresh in flight while the others arrive
    results = driver.send_many(32, "GET", url)
    assert [r.status for r in results] == [200] * 32
    assert emulator.token_calls() == 2


def test_connect_errors_reach_the_caller_typed(make: Any, emulator: ConnectEmulator) -> None:
    """A Connect error during a request is raised as its class."""
    driver = make(subject={"type": "user", "id": "mallory"})
    with pytest.raises(UserAuthorizationRequiredError):
        driver.send("GET", emulator.provider_url(SLACK))
    assert emulator.provider_calls == []


def test_refresh_if_predicate_for_200_bodies(
    make: Any, client: ConnectClient, emulator: ConnectEmulator
) -> None:
    """Slack-style {"ok": false, "error": "invalid_auth"} triggers refresh and resend."""
    driver = make(refresh_if=slack_invalid_auth)
    url = emulator.provider_url(SLACK) + "?style=slack"
    assert driver.send("GET", url).json["ok"] is True
    emulator.revoke(_current_token(client))
    r = driver.send("GET", url)
    assert r.status == 200 and r.json["ok"] is True
    assert emulator.token_calls() == 2


def test_without_predicate_200_bodies_are_left_alone(
    make: Any, client: ConnectClient, emulator: ConnectEmulator
) -> None:
    """With refresh_if=None, a 200 is never inspected or retried, even from Slack."""
    driver = make(refresh_if=None)
    url = emulator.provider_url(SLACK)
    driver.send("GET", url)
    emulator.revoke(_current_token(client))
    assert driver.send("GET", url).json["error"] == "invalid_auth"
    assert emulator.token_calls() == 1


def test_slack_connectors_get_the_slack_rule_by_default(
    make: Any, client: ConnectClient, emulator: ConnectEmulator
) -> None:
    """Connect says the connector is Slack: its 200 {"ok": false} refreshes by default."""
    driver = make()
    url = emulator.provider_url(SLACK)  # Slack-style answers, as the real Slack gives
    assert driver.send("GET", url).json["ok"] is True
    emulator.revoke(_current_token(client))
    r = driver.send("GET", url)
    assert r.status == 200 and r.json["ok"] is True
    assert emulator.token_calls() == 2


def test_other_connectors_do_not_get_the_slack_rule(
    make: Any, client: ConnectClient, emulator: ConnectEmulator
) -> None:
    """A non-Slack connector's 200 bodies are left alone unless refresh_if says otherwise."""
    github = {"connector": "github/acme-github", "installation_id": "inst_gh_1"}
    driver = make(**github)
    url = emulator.provider_url("github/acme-github") + "?style=slack"
    driver.send("GET", url)
    emulator.revoke(
        client.get_token("github/acme-github", subject=APP, installation_id="inst_gh_1")
    )
    assert driver.send("GET", url).json["error"] == "invalid_auth"
    assert emulator.token_calls() == 1


def test_custom_refresh_on(make: Any, emulator: ConnectEmulator) -> None:
    """refresh_on=(403,) refreshes on 403 and leaves 401 alone."""
    driver = make(refresh_on=(403,))
    assert driver.send("GET", emulator.provider_url(SLACK) + "?status=401").status == 401
    assert len(emulator.provider_calls) == 1
    assert driver.send("GET", emulator.provider_url(SLACK) + "?status=403").status == 403
    assert len(emulator.provider_calls) == 3


def test_repr_shows_connector_and_subject_type_only(make: Any, client: ConnectClient) -> None:
    """repr(auth) names the connector and subject type, never a token."""
    driver = make()
    token = _current_token(client)
    text = repr(driver.auth)
    assert text == "ConnectAuth(connector='slack/acme-slack', subject=AppSubject)"
    assert token not in text


def test_adapters_share_tokens_with_get_token(emulator: ConnectEmulator) -> None:
    """With no client given, adapters use the process-wide client of get_token."""
    token = connect_auth.get_token(SLACK, subject=APP)
    with httpx.Client(auth=ConnectAuth(SLACK, subject=APP)) as h:
        assert h.get(emulator.provider_url(SLACK)).status_code == 200
    with requests.Session() as session:
        session.auth = connect_auth_requests_auth()
        assert session.get(emulator.provider_url(SLACK)).status_code == 200
    assert emulator.token_calls() == 1
    assert emulator.provider_calls[0].token_id == next(
        t.token_id for t in emulator.issued_tokens() if t.token == token
    )


def connect_auth_requests_auth() -> Any:
    from connect_auth.requests import ConnectAuth as RequestsAuth

    return RequestsAuth(SLACK, subject=APP)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"subject": {"type": "nope"}}, ValueError),
        ({"scopes": "a b"}, TypeError),
        ({"refresh_on": 401}, TypeError),
        ({"refresh_on": (99,)}, ValueError),
        ({"hosts": "example.com"}, TypeError),
        ({"hosts": []}, ValueError),
        ({"client": "default"}, TypeError),
        ({"refresh_if": 1}, TypeError),
        ({"vercel_token": ""}, ValueError),
    ],
)
def test_bad_adapter_arguments(kwargs: dict[str, Any], error: type) -> None:
    """Mistakes are caught when the adapter is built."""
    base: dict[str, Any] = {"subject": APP}
    base.update(kwargs)
    with pytest.raises(error):
        ConnectAuth(SLACK, **base)


# -- body replay ----------------------------------------------------------------------

PAYLOAD = b"0123456789" * 5000  # 50 kB: more than one read chunk


def _gen() -> Iterator[bytes]:
    yield PAYLOAD[:20000]
    yield PAYLOAD[20000:]


async def _agen() -> AsyncIterator[bytes]:
    yield PAYLOAD[:20000]
    yield PAYLOAD[20000:]


def _body_kwargs(
    kind: str, tmp_path: Path, driver: Driver, files: contextlib.ExitStack
) -> tuple[dict[str, Any], bytes | None]:
    """Request kwargs for a body kind, and the exact bytes expected (None: not knowable)."""
    if kind == "bytes":
        return {"content": PAYLOAD}, PAYLOAD
    if kind == "json":
        doc = {"text": "héllo", "n": [1, 2, 3]}
        return {"json": doc}, None
    if kind == "form":
        form = {"a": "1", "b": "two words"}
        return {"data": form}, urlencode(form).encode()
    if kind == "multipart":
        path = tmp_path / "upload.bin"
        path.write_bytes(PAYLOAD)
        upload = files.enter_context(path.open("rb"))
        return {"files": {"file": ("upload.bin", upload)}, "data": {"x": "1"}}, None
    if kind == "bytesio":
        if driver.sizes_from_position:
            # requests sizes a file body from its current position: start mid-buffer
            # to prove the rewind goes back there, not to 0. (httpx sizes from 0.)
            buf = io.BytesIO(b"HEADER" + PAYLOAD)
            buf.seek(6)
            return {"content": buf}, PAYLOAD
        return {"content": io.BytesIO(PAYLOAD)}, PAYLOAD
    if kind == "file":
        path = tmp_path / "body.bin"
        path.write_bytes(PAYLOAD)
        return {"content": files.enter_context(path.open("rb"))}, PAYLOAD
    if kind == "generator":
        return {"content": _gen()}, PAYLOAD
    if kind == "async-generator":
        return {"content": _agen()}, PAYLOAD
    raise AssertionError(kind)


REPLAYABLE = ["bytes", "json", "form", "multipart", "bytesio", "file"]
ONE_SHOT = ["generator", "async-generator"]


MATRIX = [
    pytest.param(d, kind, id=f"{d.name}-{kind}")
    for d in ALL_DRIVERS
    for kind in REPLAYABLE + ONE_SHOT
    if kind in d.bodies
]


@pytest.mark.parametrize(("driver_cls", "kind"), MATRIX, indirect=["driver_cls"])
def test_body_replay_matrix(
    kind: str,
    make: Any,
    client: ConnectClient,
    emulator: ConnectEmulator,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Replayable bodies are resent byte for byte; one-shot streams are never resent."""
    driver = make()
    url = emulator.provider_url(SLACK, "upload") + "?style=http"  # refusals as 401s
    driver.send("GET", url)  # warm the cache
    emulator.revoke(_current_token(client))
    with contextlib.ExitStack() as files, caplog.at_level(logging.WARNING, logger="connect_auth"):
        kwargs, expected = _body_kwargs(kind, tmp_path, driver, files)
        r = driver.send("POST", url, **kwargs)
    posts = [c for c in emulator.provider_calls if c.method == "POST"]
    assert emulator.token_calls() == 2  # the refresh happens either way
    if kind in ONE_SHOT:
        assert r.status == 401 and len(posts) == 1
        assert "one-shot stream" in caplog.text
        return
    assert r.status == 200 and len(posts) == 2
    first, resend = posts
    assert first.token_state == "revoked" and resend.token_state == "live"
    assert resend.body_sha256 == first.body_sha256 and resend.body_length == first.body_length
    if expected is not None:
        assert first.body_sha256 == hashlib.sha256(expected).hexdigest()
    if kind == "json":
        assert first.body_length > 0 and r.json["bodySha256"] == first.body_sha256
    if kind == "multipart":
        assert first.body_length > len(PAYLOAD)


# -- redirects and hosts ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second"), [("127.0.0.1", "localhost"), ("localhost", "127.0.0.1")]
)
@pytest.mark.parametrize("answer", [200, 401])
def test_redirect_never_carries_the_token(
    make: Any, emulator: ConnectEmulator, first: str, second: str, answer: int
) -> None:
    """A redirect to another origin never sees a token, even when it answers 401."""
    driver = make()
    target = emulator.provider_url(SLACK, "elsewhere", host=second) + f"?status={answer}"
    url = emulator.provider_url(SLACK, host=first) + "?redirect=" + quote(target, safe="")
    r = driver.send("GET", url)
    assert r.status == answer
    seen = emulator.provider_calls
    assert [c.host.split(":")[0] for c in seen] == [first, second]
    assert seen[0].had_authorization and not seen[1].had_authorization
    assert emulator.token_calls() == 1  # a 401 from elsewhere triggers no refresh


def test_same_origin_redirect_keeps_the_token(make: Any, emulator: ConnectEmulator) -> None:
    """A redirect within the origin keeps the header (httpx and requests both do)."""
    target = emulator.provider_url(SLACK, "moved")
    r = make().send("GET", emulator.provider_url(SLACK) + "?redirect=" + quote(target, safe=""))
    assert r.status == 200 and r.json["tokenState"] == "live"


def test_hosts_allow_list(make: Any, emulator: ConnectEmulator) -> None:
    """With hosts=, requests to other hosts pass through without a token."""
    driver = make(hosts=[f"127.0.0.1:{emulator.port}"])
    assert driver.send("GET", emulator.provider_url(SLACK, host="127.0.0.1")).status == 200
    elsewhere = emulator.provider_url(SLACK, host="localhost") + "?style=http"
    assert driver.send("GET", elsewhere).status == 401
    assert [c.had_authorization for c in emulator.provider_calls] == [True, False]
    assert emulator.token_calls() == 1


@pytest.mark.parametrize(
    "driver_cls", [d for d in ALL_DRIVERS if d.is_async], ids=lambda d: d.name, indirect=True
)
def test_async_fetch_never_blocks_the_event_loop(make: Any, emulator: ConnectEmulator) -> None:
    """While a slow Connect call is in flight, the loop keeps running other tasks."""
    driver = make()
    emulator.latency = 0.5
    url = emulator.provider_url(SLACK)

    async def request_while_ticking() -> tuple[int, int]:
        ticks = 0
        request = asyncio.ensure_future(driver._send("GET", url))  # type: ignore[attr-defined]
        while not request.done():
            ticks += 1
            await asyncio.sleep(0.01)
        return (await request).status, ticks

    status, ticks = driver._run(request_while_ticking())  # type: ignore[attr-defined]
    assert status == 200 and emulator.token_calls() == 1
    assert ticks >= 10  # a blocked loop ticks once before and once after the fetch


# -- aiohttp and niquests specifics ---------------------------------------------------------


def test_aiohttp_requests_in_one_task_each_get_their_token(
    client: ConnectClient, emulator: ConnectEmulator
) -> None:
    """Hops of one request are tracked per request: the next request in the task is new."""
    import aiohttp

    from connect_auth.aiohttp import ConnectAuth as AiohttpAuth

    here = emulator.provider_url(SLACK, host="127.0.0.1")
    there = emulator.provider_url(SLACK, host="localhost") + "?style=http"
    redirect = here + "?redirect=" + quote(there, safe="")

    async def run() -> list[int]:
        auth = AiohttpAuth(SLACK, subject=APP, client=client)
        async with aiohttp.ClientSession(middlewares=(auth,)) as session:
            statuses = []
            for url in (here, there, redirect, there):
                async with session.get(url) as r:
                    statuses.append(r.status)
            return statuses

    assert asyncio.run(run()) == [200, 200, 401, 200]
    assert [c.had_authorization for c in emulator.provider_calls] == [True, True, True, False, True]


def test_niquests_sync_auth_in_a_running_loop_says_so(
    client: ConnectClient, emulator: ConnectEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """The sync niquests adapter inside a coroutine still works, and names the async one."""
    import niquests

    from connect_auth.niquests import ConnectAuth as NiquestsAuth

    async def run() -> int:
        session = niquests.Session()
        session.auth = NiquestsAuth(SLACK, subject=APP, client=client)
        with session:
            return session.get(emulator.provider_url(SLACK)).status_code

    with caplog.at_level(logging.WARNING, logger="connect_auth"):
        assert asyncio.run(run()) == 200
    assert "AsyncConnectAuth" in caplog.text


# -- requests specifics -------------------------------------------------------------------


def test_requests_hook_is_not_copied_into_a_loop(
    client: ConnectClient, emulator: ConnectEmulator
) -> None:
    """The resend carries no hook: a provider refusing forever costs two calls."""
    driver = Requests({"connector": SLACK, "subject": APP, "client": client})
    try:
        for _ in range(3):
            assert driver.send("GET", emulator.provider_url(SLACK) + "?status=401").status == 401
        assert len(emulator.provider_calls) == 6
    finally:
        driver.close()


def test_httpx_predicate_reads_body_only_when_set(
    client: ConnectClient, emulator: ConnectEmulator
) -> None:
    """Streaming responses stay unread unless refresh_if is set."""
    auth = ConnectAuth(SLACK, subject=APP, client=client, refresh_if=None)
    with httpx.Client(auth=auth) as h, h.stream("GET", emulator.provider_url(SLACK)) as r:
        assert r.status_code == 200 and not r.is_stream_consumed
        assert json.loads(r.read())["ok"] is True


def test_driver_names_are_unique() -> None:
    """Sanity: the suite really covers eight client kinds."""
    assert len({d.name for d in ALL_DRIVERS}) == 8 and HttpxSync in ALL_DRIVERS
