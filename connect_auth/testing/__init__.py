"""A local Vercel Connect emulator for demos, tests and your own app's tests.

::

    from connect_auth.testing import ConnectEmulator

    with ConnectEmulator() as emu:
        client = ConnectClient(base_url=emu.url, vercel_token=emu.oidc_token())
        client.get_token("slack/acme-slack", subject={"type": "app"})

It is a real HTTP/1.1 server (keep-alive connections, watched by one selector and
answered by a bounded pool of worker threads), on loopback unless told otherwise,
serving the Connect token, revoke, metadata, authorize and install
endpoints, the consent and device-code pages a user approves or denies, its own
JWKS at ``/.well-known/jwks`` (for webhook verification), an OAuth 2 token
endpoint at ``/oauth/token`` (client id = connector, client secret = OIDC token;
Connect's OAuth-server face, used by the peer benchmarks), plus a fake provider
API at ``/provider/{connector}/...`` that accepts only live tokens.

One module per job: ``_emulator`` (`ConnectEmulator`: controls, credentials,
logs), ``_server`` (connections and workers), ``_routes`` (which path does what),
``_state`` (the Connect rules and what was issued), ``_oauth`` (the OAuth server
face), ``_pages`` (consent and sign-in pages), ``_vercel`` (the Vercel API for the
local credential refresh).
"""

from ._emulator import FAST_RETRY, ConnectEmulator
from ._emulator import ISSUER as ISSUER  # the issuer of its OIDC tokens
from ._emulator import reachable_host as reachable_host  # for the CLI's printout
from ._oauth import OAuthGrant
from ._state import (
    AuthorizationFlow,
    Call,
    ConnectorSpec,
    Installation,
    IssuedToken,
    ProviderCall,
)
from ._vercel import CliLogin, VercelApi

__all__ = [
    "FAST_RETRY",
    "AuthorizationFlow",
    "Call",
    "CliLogin",
    "ConnectEmulator",
    "ConnectorSpec",
    "Installation",
    "IssuedToken",
    "OAuthGrant",
    "ProviderCall",
    "VercelApi",
]
