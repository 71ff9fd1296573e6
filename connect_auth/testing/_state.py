"""The emulated Connect service: connectors, grants, issued tokens, faults, logs.

No HTTP here: the server in `connect_auth.testing` parses requests and
calls these methods, which answer ``(status, json_body)``. One lock guards it all.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

__all__ = [
    "AuthorizationFlow",
    "Call",
    "ConnectorSpec",
    "EmulatorState",
    "Fault",
    "Installation",
    "IssuedToken",
    "ProviderCall",
    "default_connectors",
    "load_connectors",
]

Answer = tuple[int, dict[str, Any]]


@dataclass(frozen=True)
class Installation:
    """One tenant a connector is installed in (a Slack workspace, a GitHub org).

    Attributes:
        id: the installation id tokens report (``inst_...``).
        name: its display name.
        tenant_id: the provider's id of the tenant (a Slack team id).
    """

    id: str
    name: str | None = None
    tenant_id: str | None = None


@dataclass
class ConnectorSpec:
    """An emulated connector.

    ``links`` maps project ids to the environments the link enables; left out
    (``None``), the connector is linked to the emulator's own project in every
    environment. ``users`` have authorized the connector. ``requires_installation`` with no
    ``default_installation`` makes app tokens need an explicit installation id.
    ``token_ttl`` is the lifetime of issued tokens, in seconds. ``redirect_uris``
    are the sign-in callbacks registered for the connector beyond loopback ones
    (``/oauth/authorize`` sends a code to no other address).

    Attributes:
        uid: the connector uid, ``<type>/<name>`` (``"slack/acme-slack"``).
        id: its opaque id (default: made from the uid, ``scl_...``).
        type: the provider kind Connect reports (``"slack"``, ``"github"``, ``"oauth"``).
        name: its display name.
        installations: the tenants it is installed in.
        default_installation: the installation app tokens use when a call names none.
        requires_installation: app tokens need an installation id (when there is no
            default).
        users: the user ids that have consented; ``"*"``: every user has (load tests
            with many users).
        links: project id to enabled environments; ``None``: the emulator's project,
            every environment.
        token_ttl: the lifetime of issued tokens, in seconds.
        latency: seconds added before each Connect answer about this connector (on
            top of the emulator's ``latency``): a slow connector.
        metadata: extra public fields of its metadata answer (``data``).
        redirect_uris: the registered sign-in callbacks beyond loopback ones.
    """

    uid: str
    id: str = ""
    type: str = "oauth"
    name: str | None = None
    installations: list[Installation] = field(default_factory=list)
    default_installation: str | None = None
    requires_installation: bool = False
    users: set[str] = field(default_factory=set)
    links: dict[str, list[str]] | None = None
    token_ttl: float = 3600.0
    latency: float = 0.0
    metadata: dict[str, Any] = field(default_factory=dict)
    redirect_uris: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.uid or "/" not in self.uid:
            raise ValueError(f"connector uid {self.uid!r} must look like 'slack/acme-slack'")
        if not self.id:
            self.id = "scl_" + self.uid.replace("/", "_").replace("-", "_")
        if self.token_ttl <= 0:
            raise ValueError(f"connector {self.uid}: token_ttl must be positive")
        if not 0 <= self.latency < float("inf"):
            raise ValueError(f"connector {self.uid}: latency must be seconds >= 0")
        ids = {i.id for i in self.installations}
        if self.default_installation is not None and self.default_installation not in ids:
            raise ValueError(
                f"connector {self.uid}: default_installation {self.default_installation!r} "
                f"is not one of its installations {sorted(ids)}"
            )


@dataclass(frozen=True)
class Fault:
    """An injected failure for the next Connect API call: a status, a drop, a stall, or
    an answer dripped one byte at a time."""

    kind: str  # "status" | "drop" | "stall" | "drip"
    status: int = 503
    retry_after: str | None = None
    seconds: float = 0.0
    code: str | None = None


@dataclass(frozen=True)
class Call:
    """One Connect API call as the emulator saw it (never the caller's token).

    Attributes:
        endpoint: ``"token"``, ``"revoke"``, ``"metadata"``, ``"authorize"`` or
            ``"install"``.
        connector: the connector as the path named it.
        subject: the request's subject object (``None`` when it had none).
        params: the rest of the request body.
        identity: the verified claims of the caller's Vercel OIDC token, or ``None``.
        status: the HTTP status answered (``None`` for a dropped connection).
        fault: the injected fault that answered, if any (``"fail"``, ``"drop"``...).
        at: when the call arrived, in seconds since the epoch.
    """

    endpoint: str  # "token" | "revoke" | "metadata"
    connector: str
    subject: Any
    params: dict[str, Any]
    identity: dict[str, Any] | None
    status: int | None
    fault: str | None
    at: float


@dataclass(frozen=True)
class ProviderCall:
    """One request to the fake provider API.

    Attributes:
        host: the ``Host`` the request was sent to.
        method: its HTTP method.
        path: the provider path after the connector.
        had_authorization: whether it carried an ``Authorization`` header.
        token_state: what its token was: ``live``, ``expired``, ``revoked``,
            ``unknown``, ``wrong_connector``, ``missing`` or ``ignored``.
        token_id: the id of the token it carried, when the emulator issued it.
        body_length: the request body's size in bytes.
        body_sha256: the request body's SHA-256, in hex.
        status: the HTTP status answered.
    """

    host: str
    method: str
    path: str
    had_authorization: bool
    token_state: str  # live | expired | revoked | unknown | wrong_connector | missing | ignored
    token_id: str | None
    body_length: int
    body_sha256: str
    status: int


@dataclass
class IssuedToken:
    """A token the emulator issued, and its state.

    Attributes:
        token: the token itself (hidden from ``repr``).
        token_id: its id, as in `TokenResponse.token_id`.
        connector: the connector uid it was issued for.
        subject: the subject, as sent.
        installation_id: the installation it belongs to.
        expires_at_ms: its expiry, in milliseconds since the epoch.
        project_id: the project of the Vercel credential that asked for it.
        revoked: whether it was revoked.
    """

    token: str = field(repr=False)
    token_id: str
    connector: str
    subject: dict[str, Any]
    installation_id: str | None
    expires_at_ms: int
    project_id: str | None = None
    revoked: bool = False


@dataclass
class AuthorizationFlow:
    """A consent (``authorize``) or installation (``install``) request the emulator holds.

    ``status`` is ``pending`` until someone approves or denies it on its page (or
    with `ConnectEmulator.approve` / `ConnectEmulator.deny`).

    Attributes:
        id: the request id, as in `AuthorizationRequest.request`.
        kind: ``"authorize"`` or ``"install"``.
        connector: the connector uid.
        subject: the subject, as sent (``None`` for installations).
        verifier: the request's secret (hidden from ``repr``).
        device_code: its device code, for device-code flows.
        return_url: where the browser goes when it ends (``returnUrl``).
        webhook: the URL told when it ends.
        tenant_id: the tenant an installation is for.
        expires_at_ms: when it lapses, in milliseconds since the epoch.
        status: ``pending``, ``approved`` or ``denied``.
        installation_id: the installation an approved installation made.
    """

    id: str
    kind: str  # "authorize" | "install"
    connector: str
    subject: dict[str, Any] | None
    verifier: str = field(repr=False)
    device_code: str | None
    return_url: str | None
    webhook: str | None
    tenant_id: str | None
    expires_at_ms: int
    status: str = "pending"  # pending | approved | denied
    installation_id: str | None = None


def default_connectors(project_id: str) -> list[ConnectorSpec]:
    """The connectors an emulator starts with: one per kind of refusal, plus happy paths."""
    every_env = {project_id: ["production", "preview", "development"]}
    return [
        ConnectorSpec(
            uid="slack/acme-slack",
            id="scl_acmeslack",
            type="slack",
            name="Acme Slack",
            installations=[Installation("inst_acme", "Acme workspace", "T0ACME")],
            default_installation="inst_acme",
            users={"u_alice", "u_bob"},
            links=every_env,
            metadata={"botUserId": "B0EMU"},
        ),
        ConnectorSpec(
            uid="github/acme-github",
            id="scl_acmegithub",
            type="github",
            name="Acme GitHub",
            installations=[
                Installation("inst_gh_1", "acme-org", "1001"),
                Installation("inst_gh_2", "acme-labs", "1002"),
            ],
            requires_installation=True,
            users={"u_alice"},
            links=every_env,
        ),
        ConnectorSpec(
            uid="linear/acme-linear",
            id="scl_acmelinear",
            type="oauth",
            name="Acme Linear",
            users={"u_alice"},
            links={project_id: ["production"]},
        ),
        ConnectorSpec(
            uid="salesforce/acme-sf",
            id="scl_acmesf",
            type="salesforce",
            name="Acme SF",
            links={"prj_someone_else": ["production"]},
        ),
    ]


_SPEC_KEYS = {f.name for f in fields(ConnectorSpec)}  # every field, nothing else


def load_connectors(data: Mapping[str, Any]) -> list[ConnectorSpec]:
    """Connector specs from a parsed JSON/TOML config (``{"connectors": [...]}``)."""
    raw = data.get("connectors")
    if not isinstance(raw, list):
        raise ValueError("emulator config needs a 'connectors' list")
    specs = []
    for item in raw:
        if not isinstance(item, Mapping):
            raise ValueError("each connector in the config must be a table/object")
        unknown = set(item) - _SPEC_KEYS
        if unknown:
            raise ValueError(
                f"connector {item.get('uid')!r}: unknown keys {sorted(unknown)}; "
                f"allowed: {sorted(_SPEC_KEYS)}"
            )
        fields = dict(item)
        fields["installations"] = [
            Installation(i["id"], i.get("name"), i.get("tenant_id"))
            for i in item.get("installations", [])
        ]
        fields["users"] = set(item.get("users", []))
        fields["redirect_uris"] = [str(u) for u in item.get("redirect_uris", [])]
        if "links" in item:
            fields["links"] = {str(k): list(v) for k, v in item["links"].items()}
        specs.append(ConnectorSpec(**fields))
    return specs


class EmulatorState:
    """Connect's state and rules; every public method is thread-safe."""

    def __init__(self, connectors: list[ConnectorSpec], clock: Callable[[], float] = time.time):
        self._lock = threading.Lock()
        self._clock = clock
        self.connectors: dict[str, ConnectorSpec] = {}
        for spec in connectors:
            self.add_connector(spec)
        self._tokens: dict[str, IssuedToken] = {}
        self._revoked_grants: set[tuple[str, str]] = set()
        self._faults: deque[Fault] = deque()
        self.flows: dict[str, AuthorizationFlow] = {}
        self.latency = 0.0
        self.calls: list[Call] = []
        self.provider_calls: list[ProviderCall] = []

    # -- configuration and controls ---------------------------------------

    def add_connector(self, spec: ConnectorSpec) -> None:
        """Add or replace a connector (reachable by uid and by id)."""
        with self._lock:
            self.connectors[spec.uid] = spec
            self.connectors[spec.id] = spec

    def revoke_grant(self, connector: str, subject: Mapping[str, Any]) -> None:
        """Make the grant behind ``subject`` unusable: later token calls get ``no_token``."""
        with self._lock:
            self._revoked_grants.add((self._spec(connector).uid, _subject_id(subject)))

    def revoke(self, token: str) -> bool:
        """Revoke one issued token (as the provider would); True if it existed."""
        with self._lock:
            issued = self._tokens.get(token)
            if issued is not None:
                issued.revoked = True
            return issued is not None

    def expire_all(self) -> int:
        """Expire every issued token now; returns how many."""
        with self._lock:
            past = int(self._clock() * 1000) - 1
            for issued in self._tokens.values():
                issued.expires_at_ms = min(issued.expires_at_ms, past)
            return len(self._tokens)

    def add_faults(self, faults: list[Fault]) -> None:
        """Queue faults for the next Connect API calls, one per call."""
        with self._lock:
            self._faults.extend(faults)

    def next_fault(self) -> Fault | None:
        """Pop the fault for this call, if any."""
        with self._lock:
            return self._faults.popleft() if self._faults else None

    def clear_faults(self) -> None:
        """Drop every queued fault and the added latency."""
        with self._lock:
            self._faults.clear()
            self.latency = 0.0

    def log_call(self, call: Call) -> None:
        """Append to the call log."""
        with self._lock:
            self.calls.append(call)

    def issued(self) -> list[IssuedToken]:
        """Every token issued so far."""
        with self._lock:
            return list(self._tokens.values())

    # -- the Connect API ----------------------------------------------------

    def issue(self, connector: str, body: Mapping[str, Any], identity: Mapping[str, Any]) -> Answer:
        """``POST /v1/connect/token/{connector}``."""
        with self._lock:
            spec = self._linked(connector, identity)
            if not isinstance(spec, ConnectorSpec):
                return spec  # the refusal
            subject = body.get("subject")
            bad = _check_body(body)
            if bad is not None:
                return bad
            assert isinstance(subject, dict)
            inst_id = body.get("installationId")
            kind = subject["type"]
            if kind == "user" and subject.get("id") not in spec.users and "*" not in spec.users:
                return self._unauthorized(spec, subject)
            if inst_id is None:
                inst_id = spec.default_installation
                if inst_id is None and spec.requires_installation:
                    return _error(
                        422,
                        "connector_installation_required",
                        f"{spec.uid} needs an installationId; none is the default",
                    )
            elif inst_id != "*" and inst_id not in {i.id for i in spec.installations}:
                return _error(
                    422,
                    "connector_installation_required",
                    f"{spec.uid} has no installation {inst_id!r}",
                )
            if (spec.uid, _subject_id(subject)) in self._revoked_grants:
                return _error(
                    410,
                    "no_token",
                    f"The grant for this subject on {spec.uid} "
                    "was revoked at the provider; authorize again",
                )
            return 200, self._mint(spec, subject, inst_id, identity.get("project_id"))

    def revoke_tokens(
        self, connector: str, body: Mapping[str, Any], identity: Mapping[str, Any]
    ) -> Answer:
        """``DELETE /v1/connect/connectors/{connector}/tokens``."""
        with self._lock:
            spec = self._linked(connector, identity)
            if not isinstance(spec, ConnectorSpec):
                return spec  # the refusal
            subject = body.get("subject")
            if subject is not None and not (
                isinstance(subject, dict) and isinstance(subject.get("type"), str)
            ):
                return _error(400, "bad_request", "subject must be an object with a type")
            inst = body.get("installationId")
            found = [
                t
                for t in self._tokens.values()
                if t.connector == spec.uid
                and not t.revoked
                and (subject is None or _subject_id(t.subject) == _subject_id(subject))
                and (inst is None or t.installation_id == inst)
            ]
            for t in found:
                t.revoked = True
            n = len(found)
            return 200, {
                "tokensFound": n,
                "deleted": n,
                "providerRevoked": n,
                "providerSkipped": 0,
                "providerFailed": 0,
            }

    def metadata(self, connector: str, identity: Mapping[str, Any]) -> Answer:
        """``GET /v1/connect/connectors/{connector}``."""
        with self._lock:
            spec = self._linked(connector, identity)
            if not isinstance(spec, ConnectorSpec):
                return spec  # the refusal
            return 200, {
                "id": spec.id,
                "uid": spec.uid,
                "name": spec.name,
                "type": spec.type,
                "service": spec.type,
                "createdAt": 0,
                "updatedAt": 0,
                "data": {},
                "supportsRevocation": True,
            }

    def start_flow(
        self,
        kind: str,
        connector: str,
        body: Mapping[str, Any],
        identity: Mapping[str, Any],
        base_url: str,
    ) -> Answer:
        """``POST /v1/connect/authorize/{connector}`` and ``.../install/{connector}``."""
        with self._lock:
            spec = self._linked(connector, identity)
            if not isinstance(spec, ConnectorSpec):
                return spec  # the refusal
            subject = None
            if kind == "authorize":
                bad = _check_body(body)
                if bad is not None:
                    return bad
                subject = dict(body["subject"])
            elif "subject" in body:
                return _error(400, "bad_request", "an installation request takes no subject")
            for name in ("returnUrl", "webhook", "tenantId", "prompt"):
                if name in body and not isinstance(body[name], str):
                    return _error(400, "bad_request", f"{name} must be a string")
            lifetime = body.get("expiresInMs", 600_000)
            if isinstance(lifetime, bool) or not isinstance(lifetime, int | float) or lifetime <= 0:
                return _error(400, "bad_request", "expiresInMs must be a positive number")
            flow_id = ("car_" if kind == "authorize" else "cin_") + secrets.token_hex(8)
            device = None
            if body.get("deviceCode") is True:
                raw = secrets.token_hex(4).upper()
                device = f"{raw[:4]}-{raw[4:]}"
            flow = AuthorizationFlow(
                id=flow_id,
                kind=kind,
                connector=spec.uid,
                subject=subject,
                verifier=secrets.token_urlsafe(32),
                device_code=device,
                return_url=body.get("returnUrl"),
                webhook=body.get("webhook"),
                tenant_id=body.get("tenantId"),
                expires_at_ms=int(self._clock() * 1000 + lifetime),
            )
            self.flows[flow_id] = flow
            url = f"{base_url}/connect/device" if device else f"{base_url}/connect/{kind}/{flow_id}"
            answer: dict[str, Any] = {
                "url": url,
                "request": flow_id,
                "verifier": flow.verifier,
                "expiresAt": flow.expires_at_ms,
                "connector": {
                    "id": spec.id,
                    "uid": spec.uid,
                    "type": spec.type,
                    "name": spec.name or spec.uid,
                    "service": spec.type,
                    "serviceName": spec.type.capitalize(),
                },
                "displayName": spec.name or spec.uid,
            }
            if device:
                answer["deviceCode"] = device
            return 200, answer

    def all_flows(self) -> list[AuthorizationFlow]:
        """Every authorization and installation request so far."""
        with self._lock:
            return list(self.flows.values())

    def flow(self, flow_id: str) -> AuthorizationFlow | None:
        """The flow with that id (pending or decided), if any."""
        with self._lock:
            return self.flows.get(flow_id)

    def flow_for_device_code(self, code: str) -> AuthorizationFlow | None:
        """The pending flow a user's device code names (case and dashes ignored)."""
        wanted = code.replace("-", "").strip().upper()
        with self._lock:
            return next(
                (
                    f
                    for f in self.flows.values()
                    if f.device_code and f.device_code.replace("-", "") == wanted
                ),
                None,
            )

    def decide(self, flow_id: str, approve: bool) -> AuthorizationFlow:
        """Approve or deny a pending flow, as the user would on its page."""
        with self._lock:
            flow = self.flows.get(flow_id)
            if flow is None:
                raise KeyError(f"no authorization request {flow_id!r} in the emulator")
            if flow.status != "pending":
                raise ValueError(f"authorization request {flow_id} is already {flow.status}")
            if flow.expires_at_ms <= self._clock() * 1000:
                raise ValueError(f"authorization request {flow_id} has expired")
            flow.status = "approved" if approve else "denied"
            if not approve:
                return flow
            spec = self._spec(flow.connector)
            if flow.kind == "install":
                inst = Installation("inst_" + secrets.token_hex(6), spec.name, flow.tenant_id)
                spec.installations.append(inst)
                spec.default_installation = spec.default_installation or inst.id
                flow.installation_id = inst.id
            elif flow.subject is not None:
                if flow.subject.get("type") == "user":
                    spec.users.add(str(flow.subject.get("id")))
                self._revoked_grants.discard((spec.uid, _subject_id(flow.subject)))
            return flow

    # -- the fake provider ----------------------------------------------------

    def check_provider_token(self, connector: str, token: str | None) -> tuple[str, str | None]:
        """``(state, token_id)`` of a bearer token presented to ``connector``'s API."""
        if token is None:
            return "missing", None
        with self._lock:
            issued = self._tokens.get(token)
            spec = self.connectors.get(connector)
            if issued is None:
                return "unknown", None
            if spec is None or issued.connector != spec.uid:
                return "wrong_connector", issued.token_id
            if issued.revoked:
                return "revoked", issued.token_id
            if issued.expires_at_ms <= self._clock() * 1000:
                return "expired", issued.token_id
            return "live", issued.token_id

    def log_provider(self, call: ProviderCall) -> None:
        """Append to the provider log."""
        with self._lock:
            self.provider_calls.append(call)

    # -- internals (lock held) ------------------------------------------------

    def _spec(self, connector: str) -> ConnectorSpec:
        spec = self.connectors.get(connector)
        if spec is None:
            raise KeyError(f"no connector {connector!r} in the emulator")
        return spec

    def _linked(self, connector: str, identity: Mapping[str, Any]) -> ConnectorSpec | Answer:
        """The connector if the caller's project and environment may use it, else the refusal."""
        spec = self.connectors.get(connector)
        if spec is None:
            return _error(404, "not_found", f"Connector {connector!r} not found")
        envs = (spec.links or {}).get(str(identity.get("project_id")))
        if envs is None:
            return _error(403, "forbidden", f"Connector {spec.uid} is not linked to this project")
        if identity.get("environment") not in envs:
            return _error(
                403,
                "forbidden",
                f"Connector {spec.uid} is not enabled for the "
                f"{identity.get('environment')!r} environment of this project",
            )
        return spec

    def _unauthorized(self, spec: ConnectorSpec, subject: Mapping[str, Any]) -> Answer:
        """Why a user who has not authorized gets no token: a pending, denied or
        expired consent request, or none at all."""
        flows = [
            f
            for f in self.flows.values()
            if f.kind == "authorize"
            and f.connector == spec.uid
            and f.subject is not None
            and _subject_id(f.subject) == _subject_id(subject)
        ]
        latest = flows[-1] if flows else None
        if latest is not None and latest.status == "denied":
            return _error(403, "access_denied", "The user denied the authorization request")
        if latest is not None and latest.status == "pending":
            if latest.expires_at_ms <= self._clock() * 1000:
                return _error(400, "expired_token", "The authorization request expired")
            return _error(400, "authorization_pending", "The user has not finished authorizing")
        return _error(
            401,
            "user_authorization_required",
            f"User {subject.get('id')!r} has not authorized {spec.uid}",
        )

    def _mint(
        self,
        spec: ConnectorSpec,
        subject: dict[str, Any],
        inst_id: str | None,
        project_id: str | None,
    ) -> dict[str, Any]:
        token = f"emu_{spec.type}_{secrets.token_urlsafe(24)}"
        issued = IssuedToken(
            token=token,
            token_id="stk_" + secrets.token_hex(8),
            connector=spec.uid,
            subject=dict(subject),
            installation_id=inst_id,
            expires_at_ms=int((self._clock() + spec.token_ttl) * 1000),
            project_id=project_id,
        )
        self._tokens[token] = issued
        inst = next((i for i in spec.installations if i.id == inst_id), None)
        out: dict[str, Any] = {
            "token": token,
            "tokenId": issued.token_id,
            "expiresAt": issued.expires_at_ms,
            "connector": {"id": spec.id, "uid": spec.uid, "type": spec.type},
            "name": inst.name if inst and inst.name else spec.name,
            "installationId": inst_id,
            "tenantId": inst.tenant_id if inst else None,
            "externalSubject": _subject_id(subject),
            "metadata": dict(spec.metadata) or None,
        }
        if subject["type"] == "user":
            out["claims"] = {"email": f"{subject['id']}@example.com"}
            out["authorizationId"] = (
                "cau_" + hashlib.sha256(f"{spec.uid}:{subject['id']}".encode()).hexdigest()[:16]
            )
        return {k: v for k, v in out.items() if v is not None}


def _check_body(body: Mapping[str, Any]) -> Answer | None:
    subject = body.get("subject")
    if not isinstance(subject, dict) or not isinstance(subject.get("type"), str):
        return _error(400, "bad_request", "subject must be an object with a string 'type'")
    required = {"user": "id", "jwt-bearer": "sub", "token": "token"}.get(subject["type"])
    if subject["type"] not in ("app", "user", "jwt-bearer", "token"):
        return _error(400, "bad_request", f"unknown subject type {subject['type']!r}")
    if required and not isinstance(subject.get(required), str):
        return _error(400, "bad_request", f"a {subject['type']} subject needs '{required}'")
    for name in ("audience", "scopes", "resources"):
        value = body.get(name)
        if value is not None and not (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        ):
            return _error(400, "bad_request", f"{name} must be an array of strings")
    return None


def _subject_id(subject: Mapping[str, Any]) -> str:
    kind = subject.get("type")
    if kind == "user":
        return f"user:{subject.get('id')}"
    if kind == "jwt-bearer":
        return f"jwt:{subject.get('sub')}"
    if kind == "token":
        return "exchange"
    return "app"


def _error(status: int, code: str, message: str) -> Answer:
    return status, {"error": {"code": code, "message": message}}
