"""The demo's agent section: an MCP client calls a tool of an MCP server for a user,
through `connect_auth.mcp`, consent included. Needs the ``mcp`` extra."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx

from .testing import ConnectEmulator
from .testing._serve import serve_asgi

__all__ = ["agent_section", "mcp_app"]

CONNECTOR = "slack/acme-slack"


def agent_section(emulator: ConnectEmulator, check: Callable[[bool, str], None]) -> None:
    """Run the section, reporting each outcome to ``check``."""
    try:
        import httpx2
        import mcp  # noqa: F401 - only whether it is installed
    except ImportError:
        check(False, "the MCP SDK is installed (pip install 'connect-auth[mcp]')")
        return
    from .mcp import connect_auth_provider, get_consent_challenge

    reached: list[str] = []
    with serve_asgi(mcp_app(emulator, CONNECTOR, reached)) as base:
        url = base + "/mcp"
        auth = connect_auth_provider(CONNECTOR, subject={"type": "user", "id": "u_frank"})
        print("    the agent opens an MCP session for u_frank, who never connected Slack")
        try:
            asyncio.run(_call_tool(url, auth, httpx2))
            challenge = None
        except BaseException as exc:  # the MCP client wraps it in its task group's errors
            challenge = get_consent_challenge(exc)
        if challenge is None:
            check(False, "the session asked for consent")
            return
        print(f"    ConsentRequiredError -> show u_frank {challenge.url}")
        check(reached == [], "no request reached the MCP server before consent")
        httpx.post(challenge.url, data={"decision": "approve"})  # u_frank approves
        answer = asyncio.run(_call_tool(url, auth, httpx2))
        print(f"    u_frank approves; a new session, same provider: whoami -> {answer!r}")
        check(answer == "u_frank", "the MCP tool answered for the user")


async def _call_tool(url: str, auth: Any, httpx2: Any) -> str:
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async with (
        httpx2.AsyncClient(auth=auth) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        result = await session.call_tool("whoami", {})
        return str(getattr(result.content[0], "text", ""))


def mcp_app(emulator: ConnectEmulator, connector: str, reached: list[str]) -> Any:
    """An MCP server (served at ``/mcp``) whose one tool, ``whoami``, says who the
    caller is; it accepts only live tokens ``emulator`` issued for ``connector``, and
    notes the path of every request that reaches it in ``reached``."""
    from mcp.server.auth.middleware.auth_context import get_access_token
    from mcp.server.auth.provider import AccessToken
    from mcp.server.auth.settings import AuthSettings
    from mcp.server.mcpserver import MCPServer
    from pydantic import AnyHttpUrl

    class EmulatorTokens:
        async def verify_token(self, token: str) -> AccessToken | None:
            for issued in emulator.issued_tokens():
                if issued.token != token or issued.connector != connector:
                    continue
                if issued.revoked or issued.expires_at_ms <= time.time() * 1000:
                    return None
                who = str(issued.subject.get("id", "app"))
                return AccessToken(token=token, client_id=connector, scopes=[], subject=who)
            return None

    server: MCPServer[Any] = MCPServer(
        "demo",
        token_verifier=EmulatorTokens(),
        log_level="ERROR",  # it configures logging: keep the demo's output its own
        auth=AuthSettings(
            issuer_url=AnyHttpUrl(emulator.url),
            resource_server_url=AnyHttpUrl("http://127.0.0.1/mcp"),
            validate_token_resource=False,  # the verifier checks the connector
        ),
    )

    @server.tool()
    def whoami() -> str:
        """Who the caller's token is for."""
        token = get_access_token()
        return token.subject if token is not None and token.subject else "nobody"

    app = server.streamable_http_app()

    async def noted(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            reached.append(scope["path"])
        await app(scope, receive, send)

    return noted
