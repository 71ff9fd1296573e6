"""connect_auth.mcp: the official MCP SDK's client against a real MCP server on loopback
that accepts only tokens the emulator issued for its connector."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import httpx2
import pytest
from helpers import fast_retry, serve_asgi
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from connect_auth import ConnectClient, UserAuthorizationRequiredError
from connect_auth._demo_mcp import mcp_app
from connect_auth.mcp import (
    ConsentChallenge,
    ConsentRequiredError,
    connect_auth_provider,
    get_consent_challenge,
)
from connect_auth.testing import ConnectEmulator

LINEAR = "linear/acme-linear"
APP = {"type": "app"}


@dataclass
class McpServer:
    """A Linear-like MCP server that counts the requests that reach it."""

    url: str
    requests: list[str] = field(default_factory=list)


@pytest.fixture
def mcp_server(emulator: ConnectEmulator) -> Iterator[McpServer]:
    """The demo's MCP server (one tool, ``whoami``) for the Linear connector."""
    seen: list[str] = []
    with serve_asgi(mcp_app(emulator, LINEAR, seen)) as url:
        yield McpServer(url + "/mcp", seen)


@pytest.fixture
def client(emulator: ConnectEmulator) -> Iterator[ConnectClient]:
    production = emulator.oidc_token(environment="production")  # where Linear is linked
    with ConnectClient(base_url=emulator.url, vercel_token=production, retry=fast_retry()) as c:
        yield c


async def _whoami(url: str, auth: Any) -> str:
    """One MCP session: initialize, list the tools, call one."""
    async with (
        httpx2.AsyncClient(auth=auth) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        tools = await session.list_tools()
        assert [t.name for t in tools.tools] == ["whoami"]
        result = await session.call_tool("whoami", {})
        return str(result.content[0].text)  # type: ignore[union-attr]


def _consent_of(url: str, auth: Any) -> ConsentChallenge:
    """Run a session that must fail for consent; the challenge the error carries."""
    try:
        asyncio.run(_whoami(url, auth))
    except BaseException as exc:  # the MCP client wraps it in its task group's errors
        challenge = get_consent_challenge(exc)
        assert challenge is not None, repr(exc)
        return challenge
    raise AssertionError("the session did not ask for consent")


def test_an_app_token_lists_calls_and_is_refreshed_once_after_revocation(
    emulator: ConnectEmulator, client: ConnectClient, mcp_server: McpServer
) -> None:
    auth = connect_auth_provider(LINEAR, subject=APP, client=client)
    assert asyncio.run(_whoami(mcp_server.url, auth)) == "app"
    emulator.revoke(client.get_token(LINEAR, subject=APP))
    assert asyncio.run(_whoami(mcp_server.url, auth)) == "app"
    assert emulator.token_calls(LINEAR) == 2


def test_a_user_without_consent_gets_a_challenge_and_the_server_sees_nothing(
    emulator: ConnectEmulator, client: ConnectClient, mcp_server: McpServer
) -> None:
    told: list[ConsentChallenge] = []
    auth = connect_auth_provider(
        LINEAR,
        subject={"type": "user", "id": "u_carol"},
        scopes=["read"],
        client=client,
        on_consent_required=told.append,
    )
    challenge = _consent_of(mcp_server.url, auth)
    assert mcp_server.requests == []
    assert told == [challenge]
    assert challenge.connector == LINEAR and challenge.url.startswith(emulator.url)
    assert challenge.verifier not in repr(challenge)
    (flow,) = emulator.authorization_flows()
    assert flow.id == challenge.request and flow.subject == {"type": "user", "id": "u_carol"}


def test_concurrent_sessions_share_one_authorization_then_approval_works(
    emulator: ConnectEmulator, client: ConnectClient, mcp_server: McpServer
) -> None:
    async def told(challenge: ConsentChallenge) -> None:
        await asyncio.sleep(0)  # an async callback is awaited

    auth = connect_auth_provider(
        LINEAR,
        subject={"type": "user", "id": "u_dan"},
        client=client,
        callback_url="http://localhost:3000/connected",
        on_consent_required=told,
    )
    emulator.latency = 0.2  # the authorization is still being started when the others ask

    async def six() -> list[BaseException | str]:
        return await asyncio.gather(
            *(_whoami(mcp_server.url, auth) for _ in range(6)), return_exceptions=True
        )

    outcomes = asyncio.run(six())
    challenges = {get_consent_challenge(o) for o in outcomes if isinstance(o, BaseException)}
    assert len(challenges) == 1 and None not in challenges
    assert len(emulator.authorization_flows()) == 1
    assert mcp_server.requests == []
    emulator.latency = 0
    (challenge,) = challenges
    assert challenge is not None
    answer = httpx.post(challenge.url, data={"decision": "approve"})  # the user approves
    assert answer.headers["location"].startswith("http://localhost:3000/connected")
    assert asyncio.run(_whoami(mcp_server.url, auth)) == "u_dan"  # same provider object
    assert len(emulator.authorization_flows()) == 1  # it asked Connect, not the old challenge


def test_a_device_code_challenge(client: ConnectClient, mcp_server: McpServer) -> None:
    auth = connect_auth_provider(
        LINEAR, subject={"type": "user", "id": "u_erin"}, client=client, device_code=True
    )
    challenge = _consent_of(mcp_server.url, auth)
    assert challenge.device_code


def test_urls_an_mcp_server_names_are_never_fetched(
    emulator: ConnectEmulator, client: ConnectClient
) -> None:
    """A compromised server answers 401 naming a metadata URL elsewhere: the provider
    refreshes once and resends once, and never fetches what the server named."""
    fetched: list[str] = []
    refused: list[str] = []

    async def elsewhere(scope: Any, receive: Any, send: Any) -> None:
        fetched.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    with serve_asgi(elsewhere) as evil:

        async def compromised(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                return
            refused.append(scope["path"])
            challenge = f'Bearer resource_metadata="{evil}/.well-known/oauth-protected-resource"'
            headers = [(b"www-authenticate", challenge.encode())]
            await send({"type": "http.response.start", "status": 401, "headers": headers})
            await send({"type": "http.response.body", "body": b""})

        with serve_asgi(compromised) as url:
            auth = connect_auth_provider(LINEAR, subject=APP, client=client)
            with pytest.raises(BaseException):  # noqa: B017 - whatever the MCP client raises
                asyncio.run(_whoami(url + "/mcp", auth))
    assert fetched == []
    assert len(refused) == 2  # the request and its one resend
    assert emulator.token_calls(LINEAR) == 2


def test_a_bad_callback_url_fails_before_any_request(client: ConnectClient) -> None:
    with pytest.raises(ValueError, match="callback_url"):
        connect_auth_provider(
            LINEAR, subject=APP, client=client, callback_url="http://example.com/cb"
        )


def test_the_challenge_is_found_in_causes_contexts_and_groups() -> None:
    challenge = ConsentChallenge(LINEAR, None, "https://x", "r1", "secret")  # type: ignore[arg-type]
    error = ConsentRequiredError(challenge)
    assert isinstance(error, UserAuthorizationRequiredError)
    assert "secret" not in str(error) and "secret" not in repr(error)
    assert get_consent_challenge(error) is challenge
    wrapped = RuntimeError("connection failed")
    wrapped.__cause__ = error
    assert get_consent_challenge(wrapped) is challenge
    context = ValueError("while handling")
    context.__context__ = wrapped
    group = BaseExceptionGroup(
        "task group", [ValueError("other"), ExceptionGroup("inner", [context])]
    )
    assert get_consent_challenge(group) is challenge
    assert get_consent_challenge(RuntimeError("no consent here")) is None
    assert get_consent_challenge(None) is None


# -- an agent framework ------------------------------------------------------------------------


async def _agent_answer(url: str, auth: Any) -> str:
    """A pydantic-ai agent whose (test) model calls every tool of the MCP server."""
    from pydantic_ai import Agent
    from pydantic_ai.mcp import MCPToolset
    from pydantic_ai.models.test import TestModel

    async with httpx2.AsyncClient(auth=auth) as http:
        agent = Agent(TestModel(), toolsets=[MCPToolset(url, http_client=http)])
        result = await agent.run("Who am I on Linear?")
        return str(result.output)


def test_a_pydantic_ai_agent_calls_the_tool_for_its_user_and_asks_for_consent(
    client: ConnectClient, mcp_server: McpServer
) -> None:
    alice = connect_auth_provider(LINEAR, subject={"type": "user", "id": "u_alice"}, client=client)
    assert "u_alice" in asyncio.run(_agent_answer(mcp_server.url, alice))
    before = len(mcp_server.requests)
    carol = connect_auth_provider(LINEAR, subject={"type": "user", "id": "u_carol"}, client=client)
    with pytest.raises(BaseException) as caught:
        asyncio.run(_agent_answer(mcp_server.url, carol))
    challenge = get_consent_challenge(caught.value)
    assert challenge is not None and challenge.subject.id == "u_carol"  # type: ignore[union-attr]
    assert len(mcp_server.requests) == before


def test_the_provider_is_an_httpx_auth_too(emulator: ConnectEmulator) -> None:
    """Sync httpx: tokens on requests, and the challenge for a user without consent."""
    slack = "slack/acme-slack"  # linked in the emulator's default environment
    with ConnectClient(
        base_url=emulator.url, vercel_token=emulator.oidc_token(), retry=fast_retry()
    ) as c:
        app = connect_auth_provider(slack, subject=APP, client=c)
        with httpx.Client(auth=app) as http:
            assert http.get(emulator.provider_url(slack)).status_code == 200
        nobody = connect_auth_provider(slack, subject={"type": "user", "id": "u_zed"}, client=c)
        with httpx.Client(auth=nobody) as http, pytest.raises(ConsentRequiredError) as caught:
            http.get(emulator.provider_url(slack))
    assert caught.value.challenge.subject.id == "u_zed"  # type: ignore[union-attr]
    assert len(emulator.provider_calls) == 1  # the refused user's request never left
