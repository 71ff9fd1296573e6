"""A local Vercel Connect emulator for demos, tests and your own app's tests.

::

    from connect_auth.testing import ConnectEmulator

    with ConnectEmulator() as emu:
        client = ConnectClient(base_url=emu.url, vercel_token=emu.oidc_token())
        client.get_token("slack/acme-slack", subject={"type": "app"})

It is a real HTTP/1.1 server on loopback (keep-alive, one thread per
connection) serving the Connect token, revoke, metadata, authorize and install
endpoints, the consent and device-code pages a user approves or denies, its own
JWKS at ``/.well-known/jwks`` (for webhook verification), an OAuth 2 token
endpoint at ``/oauth/token`` (client id = connector, client secret = OIDC token;
Connect's OAuth-server face, used by the peer benchmarks), plus a fake provider
API at ``/provider/{connector}/...`` that accepts only live tokens.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import secrets
import selectors
import socket
import threading
import time
import tomllib
import warnings
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx

try:
    from joserfc import jwt
    from joserfc.errors import JoseError
    from joserfc.jwk import RSAKey
except ImportError as exc:  # an optional extra: say how to get it
    raise ImportError(
        "the Connect emulator needs joserfc: pip install 'connect-auth[testing]'"
    ) from exc

from ._config import is_loopback_host
from ._emulator_oauth import OAuthGrant, OAuthServer
from ._emulator_pages import Reply, consent_page, sign_in_page
from ._emulator_state import (
    AuthorizationFlow,
    Call,
    ConnectorSpec,
    EmulatorState,
    Fault,
    Installation,
    IssuedToken,
    ProviderCall,
    default_connectors,
    load_connectors,
)
from ._emulator_vercel import TOKEN_PATH as VERCEL_TOKEN_PATH
from ._emulator_vercel import CliLogin, VercelApi
from ._models import SubjectLike, coerce_subject
from ._retry import RetryPolicy

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


ISSUER = "https://oidc.vercel.com/connect-emulator"
_KEY_LOCK = threading.Lock()
_SHARED_KEY: RSAKey | None = None
_TOKEN_PREFIX = "/v1/connect/token/"
_CONNECTORS_PREFIX = "/v1/connect/connectors/"
_PROVIDER_PREFIX = "/provider/"
_OAUTH_PATH = "/oauth/token"
_OAUTH_PAGES = ("/oauth/authorize", "/oauth/userinfo", "/oauth/revoke")
_JWKS_PATH = "/.well-known/jwks"
_DISCOVERY_PATH = "/.well-known/openid-configuration"
_PROJECTS_PREFIX = "/v1/projects/"
_FLOW_ROUTES = {"/v1/connect/authorize/": "authorize", "/v1/connect/install/": "install"}


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


def provider_connector(rest: str, known: Iterable[str]) -> str:
    """The connector a fake provider path names (``rest`` follows ``/provider/``):
    URL-encoded as its first segment (``slack%2Facme-slack/...``), or as written, the
    longest known connector the path starts with (``slack/acme-slack/...``)."""
    first = unquote(rest.split("/", 1)[0])
    if "/" in first:
        return first
    plain = unquote(rest)
    found = [c for c in known if plain == c or plain.startswith(c + "/")]
    return max(found, key=len) if found else first


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
    `fail_next`, `drop_next`, `stall_next`, `latency`,
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
        self._host = host
        self._port = port
        self._server: _Server | None = None
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
        server = _Server((self._host, self._port), _Handler)
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
        return f"{base}{_PROVIDER_PREFIX}{quote(connector, safe='')}/{path.lstrip('/')}"

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
        try:
            decoded = jwt.decode(token, self._key, algorithms=["RS256"])
            jwt.JWTClaimsRegistry(
                iss={"essential": True, "value": ISSUER},
                exp={"essential": True},
                project_id={"essential": True},
            ).validate(decoded.claims)
        except (JoseError, ValueError, TypeError):
            return None
        return dict(decoded.claims)

    @property
    def issuer(self) -> str:
        """The issuer of the OIDC tokens this emulator signs."""
        return ISSUER

    @property
    def jwks_url(self) -> str:
        """Where this emulator publishes its signing key (pass it to
        `connect_auth.verify_connect_webhook` as ``jwks_url=``)."""
        return self.url + _JWKS_PATH

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
            f"# provider APIs: {self.url}{_PROVIDER_PREFIX}<connector>/<path> "
            f"(e.g. {self.url}{_PROVIDER_PREFIX}slack/acme-slack/chat.postMessage)",
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


class _Server(HTTPServer):
    """Keep-alive connections served by a bounded pool of worker threads.

    A selector watches every idle connection; a connection with a request
    waiting goes to a worker, which answers that one request and hands the
    connection back. So 500 open connections cost 500 sockets, not 500 threads:
    on a small machine the tail latency stays that of the work, not of the
    thread scheduler.
    """

    request_queue_size = 1024
    workers = 32
    emulator: ConnectEmulator

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._open: dict[socket.socket, _Handler] = {}
        self._open_lock = threading.Lock()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._returned: list[socket.socket] = []
        self._stop = threading.Event()
        self.accepted = 0  # connections, for `ConnectEmulator.connections_accepted`
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="connect-emulator")
        super().__init__(*args, **kwargs)

    def serve(self) -> None:
        """Accept connections and dispatch ready requests until `stop_serving`."""
        self.socket.setblocking(False)
        self._selector.register(self.socket, selectors.EVENT_READ, "accept")
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        while not self._stop.is_set():
            for key, _ in self._selector.select(timeout=0.05):
                if key.data == "accept":
                    self._accept()
                elif key.data == "wake":
                    self._take_back()
                else:
                    conn = key.fileobj
                    assert isinstance(conn, socket.socket)
                    self._selector.unregister(conn)
                    self._pool.submit(self._answer, conn, key.data)

    def _accept(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            conn, address = self.socket.accept()
            self.accepted += 1
            conn.setblocking(True)
            handler = _Handler.for_connection(conn, address, self)
            with self._open_lock:
                self._open[conn] = handler
            self._selector.register(conn, selectors.EVENT_READ, handler)

    def _answer(self, conn: socket.socket, handler: _Handler) -> None:
        """A worker: answer the waiting request, then hand the connection back."""
        handler.handle_one_request()
        if handler.close_connection or self._stop.is_set():
            self._forget(conn, handler)
            return
        with self._open_lock:
            self._returned.append(conn)
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def _take_back(self) -> None:
        with contextlib.suppress(OSError):
            while self._wake_r.recv(4096):
                pass
        with self._open_lock:
            returned, self._returned = self._returned, []
            for conn in returned:
                handler = self._open.get(conn)
                if handler is not None:
                    self._selector.register(conn, selectors.EVENT_READ, handler)

    def _forget(self, conn: socket.socket, handler: _Handler) -> None:
        with self._open_lock:
            self._open.pop(conn, None)
        with contextlib.suppress(OSError):
            handler.finish()
        self.shutdown_request(conn)

    def stop_serving(self) -> None:
        """Stop the loop, drop every connection, and wait for the workers."""
        self._stop.set()
        with self._open_lock:
            sockets, self._open = list(self._open), {}
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._pool.shutdown(wait=True, cancel_futures=True)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up mid-request are part of the tests; stay quiet.
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without TCP_NODELAY, Nagle plus
    # the client's delayed ACK would add ~40 ms to every keep-alive response.
    disable_nagle_algorithm = True
    server: _Server
    timeout = 60

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @classmethod
    def for_connection(cls, conn: socket.socket, address: Any, server: _Server) -> _Handler:
        """A handler bound to one connection, answering one request per
        `handle_one_request` (the server's pool drives it)."""
        handler = cls.__new__(cls)
        handler.request, handler.client_address, handler.server = conn, address, server
        handler.setup()
        handler.close_connection = False
        return handler

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (ConnectionError, TimeoutError, OSError, ValueError):
            self.close_connection = True

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    # -- routing ----------------------------------------------------------------

    def _dispatch(self) -> None:
        emulator = self.server.emulator
        body = self._read_body()
        parts = urlsplit(self.path)
        path = parts.path
        if path.startswith(_PROVIDER_PREFIX):
            self._provider(emulator, path, parse_qs(parts.query), body)
            return
        if path == _JWKS_PATH and self.command == "GET":
            emulator.jwks_requests += 1
            self._send(200, emulator.jwks())
            return
        if path.startswith("/connect/"):
            self._reply(consent_page(emulator.state, self.command, path, _form(body)))
            return
        if path in _OAUTH_PAGES:
            params = _form(body) if self.command == "POST" else _form(parts.query.encode())
            authorization = self.headers.get("Authorization", "")
            self._reply(
                sign_in_page(emulator.oauth, emulator.state, self.command, path, params,
                             authorization)
            )  # fmt: skip
            return
        if self._vercel_api(emulator, path, parts.query, body):
            return
        route = (
            ("oauth_token", "")
            if path == _OAUTH_PATH and self.command == "POST"
            else self._connect_route(path)
        )
        if route is None:
            self._send(404, {"error": {"code": "not_found", "message": f"no route {path}"}})
            return
        endpoint, connector = route
        self._connect(emulator, endpoint, connector, body)

    def _vercel_api(self, emulator: ConnectEmulator, path: str, query: str, body: bytes) -> bool:
        """Serve the Vercel API's local-refresh routes; whether ``path`` was one."""
        if path == _DISCOVERY_PATH and self.command == "GET":
            status, answer = emulator.vercel.discovery(emulator.url)
        elif path == VERCEL_TOKEN_PATH and self.command == "POST":
            status, answer = emulator.vercel.refresh(_form(body))
        elif (
            self.command == "POST"
            and path.startswith(_PROJECTS_PREFIX)
            and path.endswith("/token")
            and path.count("/") == 4
        ):
            project = unquote(path[len(_PROJECTS_PREFIX) : -len("/token")])
            team = _form(query.encode()).get("teamId")
            authorization = self.headers.get("Authorization", "")
            status, answer = emulator.vercel.project_token(project, team, authorization)
        else:
            return False
        self._send(status, answer)
        return True

    def _connect_route(self, path: str) -> tuple[str, str] | None:
        if self.command == "POST" and path.startswith(_TOKEN_PREFIX):
            segment = path[len(_TOKEN_PREFIX) :]
            return ("token", unquote(segment)) if "/" not in segment else None
        for prefix, kind in _FLOW_ROUTES.items():
            if self.command == "POST" and path.startswith(prefix):
                segment = path[len(prefix) :]
                return (kind, unquote(segment)) if "/" not in segment else None
        if path.startswith(_CONNECTORS_PREFIX):
            rest = path[len(_CONNECTORS_PREFIX) :]
            if self.command == "DELETE" and rest.endswith("/tokens") and rest.count("/") == 1:
                return "revoke", unquote(rest[: -len("/tokens")])
            if self.command == "GET" and "/" not in rest:
                return "metadata", unquote(rest)
        return None

    def _connect(
        self, emulator: ConnectEmulator, endpoint: str, connector: str, body: bytes
    ) -> None:
        state = emulator.state
        fault = state.next_fault()
        if state.latency:
            emulator._stopping.wait(state.latency)
        auth = self.headers.get("Authorization", "")
        sign_in = False  # a sign-in grant at /oauth/token, answered by the OAuth face
        if endpoint == "oauth_token":
            connector, secret = _oauth_client(auth, body)
            identity = emulator.verify_oidc(secret) if secret else None
            form = _form(body)
            sign_in = emulator.oauth.handles(form)
            params: Any = (
                {"grant_type": form["grant_type"]} if sign_in else {"subject": {"type": "app"}}
            )
        else:
            try:
                params = json.loads(body) if body else {}
            except ValueError:
                params = None
            identity = emulator.verify_oidc(auth[7:]) if auth.startswith("Bearer ") else None
        subject = params.get("subject") if isinstance(params, dict) else None

        def log(status: int | None, fault_name: str | None = None) -> None:
            state.log_call(
                Call(
                    endpoint,
                    connector,
                    subject,
                    params if isinstance(params, dict) else {},
                    _public_identity(identity),
                    status,
                    fault_name,
                    time.time(),
                )
            )

        if fault is not None:
            log(fault.status if fault.kind == "status" else None, fault.kind)
            if fault.kind == "status":
                headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                self._send(
                    fault.status,
                    {
                        "error": {
                            "code": fault.code
                            or ("server_error" if fault.status >= 500 else "rate_limited"),
                            "message": "injected fault",
                        }
                    },
                    headers,
                )
            else:
                if fault.kind == "stall":
                    emulator._stopping.wait(fault.seconds)
                self._drop()
            return
        if sign_in:
            status, answer = emulator.oauth.token(form, connector, identity is not None)
        elif identity is None:
            status, answer = (
                401,
                {
                    "error": {
                        "code": "unauthorized",
                        "message": "Missing, malformed, badly signed or expired OIDC token",
                    }
                },
            )
        elif not isinstance(params, dict):
            status, answer = 400, {"error": {"code": "bad_request", "message": "body is not JSON"}}
        elif endpoint in ("token", "oauth_token"):
            status, answer = state.issue(connector, params, identity)
        elif endpoint == "revoke":
            status, answer = state.revoke_tokens(connector, params, identity)
        elif endpoint in ("authorize", "install"):
            status, answer = state.start_flow(endpoint, connector, params, identity, emulator.url)
        else:
            status, answer = state.metadata(connector, identity)
        log(status)
        if endpoint == "oauth_token" and not sign_in:
            status, answer = _as_oauth(status, answer)
        self._send(status, answer, {"Cache-Control": "no-store"} if sign_in else None)

    def _provider(
        self, emulator: ConnectEmulator, path: str, query: dict[str, list[str]], body: bytes
    ) -> None:
        state = emulator.state
        # Copied in C, under the GIL: connectors added meanwhile are not missed halfway.
        connector = provider_connector(path[len(_PROVIDER_PREFIX) :], tuple(state.connectors))
        auth = self.headers.get("Authorization")
        token = auth[7:] if auth and auth.startswith("Bearer ") else None
        digest = hashlib.sha256(body).hexdigest()
        redirect = query.get("redirect", [None])[0]
        forced = query.get("status", [None])[0]
        headers: dict[str, str] = {}
        answer: dict[str, Any]
        when_live = query.get("redirect_when_live", [None])[0]
        if when_live and state.check_provider_token(connector, token)[0] == "live":
            redirect = when_live
        if redirect:
            token_state, token_id = "ignored", None
            status, answer = 307, {"redirect": redirect}
            headers["Location"] = redirect
        else:
            token_state, token_id = state.check_provider_token(connector, token)
            # Slack reports a bad token as 200 {"ok": false}: Slack connectors' fake API
            # does too, unless ?style=http asks for a plain 401.
            spec = state.connectors.get(connector)
            default_style = "slack" if spec is not None and spec.type == "slack" else "http"
            slack_style = query.get("style", [default_style])[0] == "slack"
            if forced:
                status = int(forced)
            elif token_state == "live" or slack_style:
                status = 200
            else:
                status = 401
                headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
            answer = {
                "ok": status == 200 and token_state == "live",
                "method": self.command,
                "path": path,
                "headers": sorted(k.lower() for k in self.headers),
                "bodyLength": len(body),
                "bodySha256": digest,
                "tokenState": token_state,
            }
            if not answer["ok"] and slack_style:
                answer["error"] = "not_authed" if token is None else "invalid_auth"
        state.log_provider(
            ProviderCall(
                host=self.headers.get("Host", ""),
                method=self.command,
                path=path,
                had_authorization=auth is not None,
                token_state=token_state,
                token_id=token_id,
                body_length=len(body),
                body_sha256=digest,
                status=status,
            )
        )
        self._send(status, answer, headers)

    # -- I/O helpers ------------------------------------------------------------------

    def _reply(self, reply: Reply) -> None:
        self.send_response(reply.status)
        for name, value in reply.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size_line = self.rfile.readline(65537)
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(
        self, status: int, payload: Mapping[str, Any], headers: Mapping[str, str] | None = None
    ) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-vercel-id", "emu1::" + secrets.token_hex(6))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


def _flow_id(request: object) -> str:
    """The id of an `AuthorizationRequest`, or the id itself."""
    flow_id = getattr(request, "request", request)
    if not isinstance(flow_id, str):
        raise TypeError("pass an AuthorizationRequest or its request id")
    return flow_id


def _form(body: bytes) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body, first value of each field."""
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}


def _oauth_client(authorization: str, body: bytes) -> tuple[str, str | None]:
    """``(connector, oidc token)`` from HTTP Basic or form client credentials."""
    form = _form(body)
    client_id, secret = form.get("client_id", ""), form.get("client_secret")
    if authorization.startswith("Basic "):
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            raw = base64.b64decode(authorization[6:]).decode()
            user, _, password = raw.partition(":")
            client_id, secret = unquote(user), unquote(password)
    return client_id, secret


def _as_oauth(status: int, answer: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
    """A Connect answer in OAuth 2 token-endpoint shape (RFC 6749 section 5)."""
    if status == 200:
        expires_in = max(0, int(answer["expiresAt"] / 1000 - time.time()))
        return 200, {
            "access_token": answer["token"],
            "token_type": "Bearer",
            "expires_in": expires_in,
        }
    error = answer.get("error", {})
    kind = "invalid_client" if status in (401, 403, 404) else "invalid_request"
    return (401 if kind == "invalid_client" else 400), {
        "error": kind,
        "error_description": error.get("message", ""),
    }


def _public_identity(claims: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if claims is None:
        return None
    return {k: claims.get(k) for k in ("owner_id", "project_id", "environment", "sub")}
