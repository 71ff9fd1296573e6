"""`ConnectEmulator`: the emulator's controls, credentials and logs, over its server
(`_server`), routes (`_routes`) and Connect state (`_state`)."""

from __future__ import annotations

import json
import secrets
import threading
import time
import tomllib
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

try:
    from joserfc import jwt
    from joserfc.errors import JoseError
    from joserfc.jwk import RSAKey
except ImportError as exc:  # an optional extra: say how to get it
    raise ImportError(
        "the Connect emulator needs joserfc: pip install 'connect-auth[testing]'"
    ) from exc

from .._config import is_loopback_host
from .._models import SubjectLike, coerce_subject
from .._retry import RetryPolicy
from ._oauth import OAuthGrant, OAuthServer
from ._routes import JWKS_PATH, PROVIDER_PREFIX, Handler
from ._server import Server
from ._state import (
    AuthorizationFlow,
    Call,
    ConnectorSpec,
    EmulatorState,
    Fault,
    IssuedToken,
    ProviderCall,
    default_connectors,
    load_connectors,
)
from ._vercel import CliLogin, VercelApi

__all__ = ["FAST_RETRY", "ISSUER", "ConnectEmulator", "reachable_host"]


ISSUER = "https://oidc.vercel.com/connect-emulator"
#: What every OIDC token the emulator accepts must claim.
_CLAIMS = jwt.JWTClaimsRegistry(
    iss={"essential": True, "value": ISSUER},
    exp={"essential": True},
    project_id={"essential": True},
)
_KEY_LOCK = threading.Lock()
_SHARED_KEY: RSAKey | None = None


#: Retries that wait milliseconds, not seconds: the pytest fixture's default client
#: uses it, so outage tests (``fail_next``, ``drop_next``) run fast.
FAST_RETRY = RetryPolicy(
    max_attempts=4, deadline=10.0, initial_backoff=0.001, max_backoff=0.01, retry_after_cap=0.05
)


def _signing_key() -> RSAKey:
    """One RSA key per process: generating one per emulator would slow every test."""
    global _SHARED_KEY
    with _KEY_LOCK:
        if _SHARED_KEY is None:
            _SHARED_KEY = RSAKey.generate_key(2048, private=True)
        return _SHARED_KEY


class ConnectEmulator:
    """An in-process Vercel Connect API on loopback.

    Args:
        connectors: connector specs; by default the set from
            `default_connectors` (Slack, GitHub, Linear, Salesforce, each
            showing a different rule).
        host: interface to bind: a loopback address (``127.0.0.1``, ``::1``,
            ``localhost``). Anything else is refused unless ``allow_remote`` is set.
        port: 0 picks a free port.
        project_id: the project `oidc_token` mints tokens for by default.
        owner_id: the team `oidc_token` mints tokens for by default.
        environment: the environment `oidc_token` mints tokens for by default.
        allow_remote: bind to a non-loopback ``host`` anyway (with a warning):
            anyone who reaches it gets tokens and OIDC credentials it signs.

    Controls (all thread-safe): `revoke`, `expire_all`,
    `fail_next`, `drop_next`, `stall_next`, `drip_next`, `latency`,
    `revoke_grant`, `approve`, `deny`; webhooks: `deliver_webhook`;
    logs: `calls`, `provider_calls`, `authorization_flows`.
    """

    def __init__(
        self,
        connectors: list[ConnectorSpec] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        project_id: str = "prj_emulator",
        owner_id: str = "team_emulator",
        environment: str = "development",
        allow_remote: bool = False,
    ) -> None:
        if not is_loopback_host(host):
            if not allow_remote:
                raise ValueError(
                    f"the emulator binds to loopback only (127.0.0.1, ::1, localhost), not "
                    f"{host!r}: anyone who reaches it gets tokens and OIDC credentials it "
                    "signs. Pass allow_remote=True (CLI: --allow-remote) if you mean it"
                )
            warnings.warn(
                f"the Connect emulator listens on {host!r}, beyond this machine: anyone "
                "who reaches it gets tokens and OIDC credentials it signs",
                RuntimeWarning,
                stacklevel=2,
            )
        self.project_id = project_id
        self.owner_id = owner_id
        self.environment = environment
        specs = connectors if connectors is not None else default_connectors(project_id)
        self.state = EmulatorState([self._linked_by_default(spec) for spec in specs])
        self._key = _signing_key()
        self._verified: dict[str, dict[str, Any]] = {}  # token -> its signed claims
        self._host = host
        self._port = port
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        #: How many times the JWKS was fetched (webhook verification caches it).
        self.jwks_requests = 0
        self.oauth = OAuthServer()
        #: The Vercel API parts local credential refresh needs: CLI logins (renewed at
        #: ``/login/oauth/token``, found through ``/.well-known/openid-configuration``)
        #: and project tokens. Its ``refreshes`` and ``project_tokens`` count the calls.
        self.vercel = VercelApi(
            lambda project, team: self.oidc_token(project_id=project, owner_id=team),
            {project_id: owner_id},
        )

    @classmethod
    def from_file(cls, path: str | Path, **kwargs: Any) -> ConnectEmulator:
        """An emulator configured from a ``.json`` or ``.toml`` file.

        The file holds ``connectors`` (a list of `ConnectorSpec` fields)
        and optionally ``project_id``, ``owner_id`` and ``environment``.

        Args:
            path: the ``.json`` or ``.toml`` file.
            **kwargs: other `ConnectEmulator` arguments (they win over the file's).
        """
        path = Path(path)
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: the config must be an object/table")
        unknown = set(data) - {"connectors", "project_id", "owner_id", "environment"}
        if unknown:
            raise ValueError(f"{path}: unknown top-level keys {sorted(unknown)}")
        for name in ("project_id", "owner_id", "environment"):
            if name in data:
                kwargs.setdefault(name, data[name])
        return cls(load_connectors(data), **kwargs)

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> ConnectEmulator:
        """Bind and serve from a background thread; returns self."""
        if self._server is not None:
            return self
        server = Server((self._host, self._port), Handler)
        server.emulator = self
        self._server = server
        self._stopping.clear()
        self._thread = threading.Thread(target=server.serve, name="connect-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        if self._thread is not None:
            server._stop.set()
            self._thread.join(timeout=5)
        server.stop_serving()
        server.server_close()

    def __enter__(self) -> ConnectEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port."""
        if self._server is None:
            raise RuntimeError("the emulator is not running: call start() or use `with`")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL of the Connect API, e.g. ``http://127.0.0.1:53211``."""
        return self.url_for(reachable_host(self._host))

    def url_for(self, host: str) -> str:
        """The base URL under another loopback name, for cross-origin tests.

        Args:
            host: a loopback name or address (``"localhost"``).
        """
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.port}"

    def provider_url(self, connector: str, path: str = "api", *, host: str | None = None) -> str:
        """URL of the fake provider API for ``connector``.

        Args:
            connector: the connector uid whose tokens the provider accepts.
            path: the provider path to append (``"chat.postMessage"``).
            host: another loopback name to use (see `url_for`).
        """
        from urllib.parse import quote

        base = self.url_for(host) if host else self.url
        return f"{base}{PROVIDER_PREFIX}{quote(connector, safe='')}/{path.lstrip('/')}"

    # -- credentials ------------------------------------------------------------

    def oidc_token(
        self,
        *,
        project_id: str | None = None,
        owner_id: str | None = None,
        environment: str | None = None,
        ttl: float = 3600.0,
    ) -> str:
        """Mint an RS256 Vercel OIDC token the emulator accepts.

        Args:
            project_id: its ``project_id`` claim (default: the emulator's project).
            owner_id: its ``owner_id`` claim (default: the emulator's team).
            environment: its ``environment`` claim (default: the emulator's).
            ttl: seconds until it expires (negative: already expired).
        """
        now = int(time.time())
        owner = owner_id or self.owner_id
        project = project_id or self.project_id
        env = environment or self.environment
        claims = {
            "iss": ISSUER,
            "sub": f"owner:{owner}:project:{project}:environment:{env}",
            "aud": f"https://vercel.com/{owner}",
            "owner_id": owner,
            "project_id": project,
            "environment": env,
            "iat": now,
            "exp": now + int(ttl),
            "jti": secrets.token_hex(8),
        }
        return jwt.encode({"alg": "RS256", "kid": "emulator"}, claims, self._key)

    def verify_oidc(self, token: str) -> dict[str, Any] | None:
        """The claims of a valid, unexpired token signed by this emulator, else None.

        Args:
            token: a Vercel OIDC token.
        """
        # A signature is checked once per token: a load test sends the same one
        # thousands of times, and RS256 in Python would then be the bottleneck.
        claims = self._verified.get(token)
        if claims is None:
            try:
                claims = dict(jwt.decode(token, self._key, algorithms=["RS256"]).claims)
            except (JoseError, ValueError, TypeError):
                return None
            if len(self._verified) >= 1024:
                self._verified.clear()
            self._verified[token] = claims
        try:  # the claims, on every use: an expired token is refused from then on
            _CLAIMS.validate(claims)
        except (JoseError, ValueError, TypeError):
            return None
        return dict(claims)

    @property
    def issuer(self) -> str:
        """The issuer of the OIDC tokens this emulator signs."""
        return ISSUER

    @property
    def jwks_url(self) -> str:
        """Where this emulator publishes its signing key (pass it to
        `connect_auth.verify_connect_webhook` as ``jwks_url=``)."""
        return self.url + JWKS_PATH

    def jwks(self) -> dict[str, Any]:
        """The public signing key set served at `jwks_url`."""
        public = self._key.as_dict(private=False)
        return {"keys": [{**public, "kid": "emulator", "alg": "RS256", "use": "sig"}]}

    def deliver_webhook(
        self,
        url: str,
        payload: Mapping[str, Any],
        *,
        project_id: str | None = None,
        environment: str | None = None,
        owner_id: str | None = None,
        token: str | None = None,
    ) -> httpx.Response:
        """POST ``payload`` to ``url`` as Connect forwards a webhook: JSON, with a fresh
        OIDC token of this emulator as the bearer.

        Args:
            url: where the app listens for Connect's webhooks.
            payload: the JSON body to deliver.
            project_id: the project the token is minted for (default: the emulator's).
            environment: its environment (default: the emulator's).
            owner_id: its team (default: the emulator's).
            token: send this bearer instead, to test deliveries the app must refuse.

        Returns:
            The app's answer.
        """
        bearer = (
            token
            if token is not None
            else self.oidc_token(project_id=project_id, owner_id=owner_id, environment=environment)
        )
        return httpx.post(
            url,
            json=dict(payload),
            headers={"Authorization": f"Bearer {bearer}", "User-Agent": "vercel-connect-emulator"},
            timeout=10.0,
        )

    @property
    def oauth_url(self) -> str:
        """The origin of the emulator's OAuth server face (``/oauth/authorize``,
        ``/oauth/token``, ``/oauth/userinfo``, ``/oauth/revoke``): pass it as
        ``oauth_base_url=`` or ``CONNECT_AUTH_OAUTH_URL``."""
        return self.url

    def oauth_grants(self) -> list[OAuthGrant]:
        """Every sign-in a user approved on the OAuth consent page."""
        return list(self.oauth.grants)

    def export_lines(self) -> list[str]:
        """Shell lines that point an app at this emulator, and where its fake provider
        APIs are."""
        return [
            f"export CONNECT_AUTH_BASE_URL={self.url}",
            f"export VERCEL_OIDC_TOKEN={self.oidc_token(ttl=12 * 3600)}",
            f"# provider APIs: {self.url}{PROVIDER_PREFIX}<connector>/<path> "
            f"(e.g. {self.url}{PROVIDER_PREFIX}slack/acme-slack/chat.postMessage)",
        ]

    # -- controls -------------------------------------------------------------------

    def add_connector(self, spec: ConnectorSpec) -> None:
        """Add or replace a connector while running.

        Args:
            spec: the connector; linked to this emulator's project in every
                environment unless ``spec.links`` says otherwise.
        """
        self.state.add_connector(self._linked_by_default(spec))

    def _linked_by_default(self, spec: ConnectorSpec) -> ConnectorSpec:
        if spec.links is None:
            spec.links = {self.project_id: ["production", "preview", "development"]}
        return spec

    def link_project(self, folder: str | Path) -> Path:
        """Write ``folder/.vercel/project.json`` for this emulator's project, as
        ``vercel link`` does; returns the file.

        Args:
            folder: the checkout to link.
        """
        file = Path(folder) / ".vercel" / "project.json"
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(json.dumps({"projectId": self.project_id, "orgId": self.owner_id}))
        return file

    def write_cli_login(self, data_dir: str | Path, *, expired: bool = False) -> CliLogin:
        """Log the Vercel CLI in, as ``vercel login`` does: a new login written to
        ``data_dir/com.vercel.cli/auth.json``.

        Args:
            data_dir: stands for ``XDG_DATA_HOME``.
            expired: ``True`` for a login whose token has expired, so it must be
                renewed with its refresh token first.
        """
        login = self.vercel.login(lifetime=-60.0 if expired else 3600.0)
        file = Path(data_dir) / "com.vercel.cli" / "auth.json"
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(json.dumps(login.auth_json()))
        file.chmod(0o600)
        return login

    def revoke(self, token: str) -> bool:
        """Revoke one issued token behind the app's back (the provider will answer 401).

        Args:
            token: a token the emulator issued.

        Returns:
            Whether the emulator knew the token.
        """
        return self.state.revoke(token)

    def revoke_grant(self, connector: str, subject: SubjectLike) -> None:
        """Revoke a subject's grant: the next token call gets ``no_token``.

        Args:
            connector: the connector uid.
            subject: a subject class or dict.
        """
        self.state.revoke_grant(connector, coerce_subject(subject).to_wire())

    def expire_all(self) -> int:
        """Expire every issued token now."""
        return self.state.expire_all()

    def approve(self, request: str | Any) -> AuthorizationFlow:
        """Approve a pending authorization or installation, as the user would on its page.

        Args:
            request: the `connect_auth.AuthorizationRequest`, or its id.
        """
        return self.state.decide(_flow_id(request), approve=True)

    def deny(self, request: str | Any) -> AuthorizationFlow:
        """Deny a pending authorization or installation, as the user would.

        Args:
            request: the `connect_auth.AuthorizationRequest`, or its id.
        """
        return self.state.decide(_flow_id(request), approve=False)

    def authorization_flows(self) -> list[AuthorizationFlow]:
        """Every authorization and installation request so far."""
        return self.state.all_flows()

    def fail_next(
        self,
        n: int = 1,
        *,
        status: int = 503,
        retry_after: str | float | None = None,
        code: str | None = None,
    ) -> None:
        """Answer the next ``n`` Connect API calls with ``status``.

        Args:
            n: how many calls fail.
            status: the HTTP status to answer.
            retry_after: a ``Retry-After`` header value (seconds or an HTTP date).
            code: the error code in the envelope (default ``server_error`` for 5xx,
                else ``rate_limited``), such as ``slow_down``.
        """
        ra = None if retry_after is None else str(retry_after)
        self.state.add_faults([Fault("status", status=status, retry_after=ra, code=code)] * n)

    def drop_next(self, n: int = 1) -> None:
        """Close the connection of the next ``n`` Connect API calls without answering.

        Args:
            n: how many calls.
        """
        self.state.add_faults([Fault("drop")] * n)

    def stall_next(self, n: int = 1, *, seconds: float = 30.0) -> None:
        """Hold the next ``n`` Connect API calls for ``seconds``, then drop them.

        Args:
            n: how many calls.
            seconds: how long each is held.
        """
        self.state.add_faults([Fault("stall", seconds=seconds)] * n)

    def drip_next(self, n: int = 1, *, interval: float = 0.2) -> None:
        """Answer the next ``n`` Connect API calls one byte every ``interval`` seconds:
        each read is quick, so only a deadline on the whole attempt ends it.

        Args:
            n: how many calls.
            interval: seconds between two bytes.
        """
        self.state.add_faults([Fault("drip", seconds=interval)] * n)

    @property
    def latency(self) -> float:
        """Seconds added before every Connect API answer."""
        return self.state.latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        self.state.latency = float(seconds)

    def reset_faults(self) -> None:
        """Forget queued faults and added latency."""
        self.state.clear_faults()

    @property
    def connections_accepted(self) -> int:
        """How many TCP connections the emulator has accepted since it started: shows
        whether a client reuses its connections."""
        server = self._server
        return 0 if server is None else server.accepted

    @property
    def connections_open(self) -> int:
        """How many accepted connections are still open (a client's close is seen
        when the emulator next reads from that connection, within milliseconds)."""
        server = self._server
        if server is None:
            return 0
        with server._open_lock:
            return len(server._open)

    @property
    def calls(self) -> list[Call]:
        """Every Connect API call so far (a copy)."""
        return list(self.state.calls)

    def token_calls(self, connector: str | None = None) -> int:
        """How many token requests reached the emulator, on the Connect token endpoint or
        the OAuth one.

        Args:
            connector: count only this connector's (default: all).
        """
        return sum(
            1
            for c in self.state.calls
            if c.endpoint in ("token", "oauth_token")
            and (connector is None or c.connector == connector)
        )

    @property
    def provider_calls(self) -> list[ProviderCall]:
        """Every request the fake provider saw (a copy)."""
        return list(self.state.provider_calls)

    def issued_tokens(self) -> list[IssuedToken]:
        """Every token issued so far."""
        return self.state.issued()


def reachable_host(bound: str) -> str:
    """Where a client on this machine reaches a server bound to ``bound``: a wildcard
    bind (``0.0.0.0``, ``::``) is reached on loopback, which the library accepts."""
    return {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(bound, bound)


def _flow_id(request: object) -> str:
    """The id of an `AuthorizationRequest`, or the id itself."""
    flow_id = getattr(request, "request", request)
    if not isinstance(flow_id, str):
        raise TypeError("pass an AuthorizationRequest or its request id")
    return flow_id
