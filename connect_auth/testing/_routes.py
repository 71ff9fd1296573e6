"""The emulator's HTTP face: which path does what, and the answers' wire format.

Every request is answered by `Handler`, one request at a time, on a worker of
`connect_auth.testing._server.Server`; the Connect rules themselves are
`connect_auth.testing._state`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import secrets
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from ._pages import Reply, consent_page, sign_in_page
from ._server import Server
from ._state import Call, Fault, ProviderCall
from ._vercel import TOKEN_PATH as VERCEL_TOKEN_PATH

if TYPE_CHECKING:
    from ._emulator import ConnectEmulator

TOKEN_PREFIX = "/v1/connect/token/"
CONNECTORS_PREFIX = "/v1/connect/connectors/"
PROVIDER_PREFIX = "/provider/"
OAUTH_PATH = "/oauth/token"
OAUTH_PAGES = ("/oauth/authorize", "/oauth/userinfo", "/oauth/revoke")
JWKS_PATH = "/.well-known/jwks"
DISCOVERY_PATH = "/.well-known/openid-configuration"
PROJECTS_PREFIX = "/v1/projects/"
FLOW_ROUTES = {"/v1/connect/authorize/": "authorize", "/v1/connect/install/": "install"}


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


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without TCP_NODELAY, Nagle plus
    # the client's delayed ACK would add ~40 ms to every keep-alive response.
    disable_nagle_algorithm = True
    server: Server
    timeout = 60
    _drip_interval = 0.0  # set for one answer by a drip fault
    #: An answer held back for latency: (when it is due, what writes it). The server
    #: finishes it then, on a worker, so no worker waits out the latency.
    deferred: tuple[float, Callable[[], None]] | None = None

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @classmethod
    def for_connection(cls, conn: socket.socket, address: Any, server: Server) -> Handler:
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
        if path.startswith(PROVIDER_PREFIX):
            self._provider(emulator, path, parse_qs(parts.query), body)
            return
        if path == JWKS_PATH and self.command == "GET":
            emulator.jwks_requests += 1
            self._send(200, emulator.jwks())
            return
        if path.startswith("/connect/"):
            self._reply(consent_page(emulator.state, self.command, path, _form(body)))
            return
        if path in OAUTH_PAGES:
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
            if path == OAUTH_PATH and self.command == "POST"
            else self._connect_route(path)
        )
        if route is None:
            self._send(404, {"error": {"code": "not_found", "message": f"no route {path}"}})
            return
        endpoint, connector = route
        self._connect(emulator, endpoint, connector, body)

    def _vercel_api(self, emulator: ConnectEmulator, path: str, query: str, body: bytes) -> bool:
        """Serve the Vercel API's local-refresh routes; whether ``path`` was one."""
        if path == DISCOVERY_PATH and self.command == "GET":
            status, answer = emulator.vercel.discovery(emulator.url)
        elif path == VERCEL_TOKEN_PATH and self.command == "POST":
            status, answer = emulator.vercel.refresh(_form(body))
        elif (
            self.command == "POST"
            and path.startswith(PROJECTS_PREFIX)
            and path.endswith("/token")
            and path.count("/") == 4
        ):
            project = unquote(path[len(PROJECTS_PREFIX) : -len("/token")])
            team = _form(query.encode()).get("teamId")
            authorization = self.headers.get("Authorization", "")
            status, answer = emulator.vercel.project_token(project, team, authorization)
        else:
            return False
        self._send(status, answer)
        return True

    def _connect_route(self, path: str) -> tuple[str, str] | None:
        if self.command == "POST" and path.startswith(TOKEN_PREFIX):
            segment = path[len(TOKEN_PREFIX) :]
            return ("token", unquote(segment)) if "/" not in segment else None
        for prefix, kind in FLOW_ROUTES.items():
            if self.command == "POST" and path.startswith(prefix):
                segment = path[len(prefix) :]
                return (kind, unquote(segment)) if "/" not in segment else None
        if path.startswith(CONNECTORS_PREFIX):
            rest = path[len(CONNECTORS_PREFIX) :]
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
        spec = state.connectors.get(connector)
        delay = state.latency + (spec.latency if spec is not None else 0.0)
        if delay:
            self.deferred = (
                time.monotonic() + delay,
                lambda: self._answer_connect(emulator, endpoint, connector, body, fault),
            )
            return
        self._answer_connect(emulator, endpoint, connector, body, fault)

    def _answer_connect(
        self,
        emulator: ConnectEmulator,
        endpoint: str,
        connector: str,
        body: bytes,
        fault: Fault | None,
    ) -> None:
        state = emulator.state
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

        if fault is not None and fault.kind == "drip":
            self._drip_interval = fault.seconds  # answered below, slowly
        elif fault is not None:
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
        log(status, "drip" if self._drip_interval else None)
        if endpoint == "oauth_token" and not sign_in:
            status, answer = _as_oauth(status, answer)
        self._send(status, answer, {"Cache-Control": "no-store"} if sign_in else None)

    def _provider(
        self, emulator: ConnectEmulator, path: str, query: dict[str, list[str]], body: bytes
    ) -> None:
        state = emulator.state
        # Copied in C, under the GIL: connectors added meanwhile are not missed halfway.
        connector = provider_connector(path[len(PROVIDER_PREFIX) :], tuple(state.connectors))
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
        if self._drip_interval:
            self._drip(b"".join(self._headers_buffer) + b"\r\n" + data)
            return
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _drip(self, answer: bytes) -> None:
        """Send ``answer`` one byte per interval until done, the client hangs up, or the
        emulator stops; the connection is closed after."""
        interval, self._drip_interval = self._drip_interval, 0.0
        self._headers_buffer: list[bytes] = []
        self.close_connection = True
        stopping = self.server.emulator._stopping
        for byte in answer:
            try:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
            except OSError:
                return
            if stopping.wait(interval):
                return

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


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
