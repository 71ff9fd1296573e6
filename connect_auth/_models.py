"""Value types: subjects, validated token parameters and the token response.

Everything here is pure and immutable. ``TokenParams.build`` is where bad
arguments are refused, before any network call.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NotRequired, TypeAlias, TypedDict

from ._docs import shared_args

#: Default validity buffer: a token within 30 s of expiry is not served.
DEFAULT_BUFFER_MS = 30_000.0

__all__ = [
    "AppSubject",
    "AppSubjectDict",
    "ConnectorRef",
    "JwtBearerSubject",
    "JwtBearerSubjectDict",
    "RequestKey",
    "Subject",
    "SubjectDict",
    "SubjectLike",
    "TokenExchangeSubject",
    "TokenExchangeSubjectDict",
    "TokenParams",
    "TokenParamsOptions",
    "TokenRequest",
    "TokenResponse",
    "UserSubject",
    "UserSubjectDict",
    "VercelToken",
    "check_buffer",
    "check_connector",
    "coerce_subject",
    "subject_type",
    "token_param_fields",
]


@dataclass(frozen=True, slots=True)
class AppSubject:
    """The app itself (the bot or integration identity)."""

    def to_wire(self) -> dict[str, Any]:
        """The JSON object Connect expects."""
        return {"type": "app"}


@dataclass(frozen=True, slots=True)
class UserSubject:
    """A named user of your app.

    Attributes:
        id: the user's id in your app (or at ``issuer``).
        issuer: the OIDC issuer of ``id``, when not the default.
    """

    id: str
    issuer: str | None = None

    def __post_init__(self) -> None:
        _require_text("UserSubject.id", self.id)
        _optional_text("UserSubject.issuer", self.issuer)

    def to_wire(self) -> dict[str, Any]:
        """The JSON object Connect expects."""
        wire: dict[str, Any] = {"type": "user", "id": self.id}
        if self.issuer is not None:
            wire["issuer"] = self.issuer
        return wire


@dataclass(frozen=True, slots=True)
class JwtBearerSubject:
    """An RFC 7523 JWT-bearer assertion that Connect mints for ``sub``.

    Attributes:
        sub: the assertion's subject.
        iss: its issuer, when not the connector's default.
        aud: its audience, when not the connector's default.
        additional_claims: more claims to put in the assertion (JSON values; copied,
            so later changes to your dict change nothing).
    """

    sub: str
    iss: str | None = None
    aud: str | None = None
    additional_claims: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        _require_text("JwtBearerSubject.sub", self.sub)
        _optional_text("JwtBearerSubject.iss", self.iss)
        _optional_text("JwtBearerSubject.aud", self.aud)
        if self.additional_claims is not None:
            if not isinstance(self.additional_claims, Mapping):
                raise TypeError("JwtBearerSubject.additional_claims must be a dict")
            # A deep copy: the caller mutating its dict later changes nothing sent or cached.
            frozen = json.loads(
                _canonical_json("JwtBearerSubject.additional_claims", self.additional_claims)
            )
            object.__setattr__(self, "additional_claims", frozen)

    def __hash__(self) -> int:
        claims = self.additional_claims
        return hash((self.sub, self.iss, self.aud, _canonical_json("", claims) if claims else ""))

    def to_wire(self) -> dict[str, Any]:
        """The JSON object Connect expects (camelCase ``additionalClaims``)."""
        wire: dict[str, Any] = {"type": "jwt-bearer", "sub": self.sub}
        if self.iss is not None:
            wire["iss"] = self.iss
        if self.aud is not None:
            wire["aud"] = self.aud
        if self.additional_claims is not None:
            wire["additionalClaims"] = dict(self.additional_claims)
        return wire


@dataclass(frozen=True, slots=True)
class TokenExchangeSubject:
    """Token exchange of a credential you already hold.

    Attributes:
        token: the credential to exchange (never shown in ``repr``).
    """

    token: str = field(repr=False)

    def __post_init__(self) -> None:
        _require_text("TokenExchangeSubject.token", self.token)

    def to_wire(self) -> dict[str, Any]:
        """The JSON object Connect expects."""
        return {"type": "token", "token": self.token}


#: A subject object: the app, a user, a JWT-bearer assertion or a token exchange.
Subject: TypeAlias = AppSubject | UserSubject | JwtBearerSubject | TokenExchangeSubject


class AppSubjectDict(TypedDict):
    """``{"type": "app"}``: the app itself (TypeScript SDK style)."""

    type: Literal["app"]


class UserSubjectDict(TypedDict):
    """``{"type": "user", "id": "u_alice"}``, optionally with ``issuer``."""

    type: Literal["user"]
    id: str
    issuer: NotRequired[str]


class JwtBearerSubjectDict(TypedDict):
    """``{"type": "jwt-bearer", "sub": ...}``, optionally with ``iss``, ``aud`` and
    ``additionalClaims``."""

    type: Literal["jwt-bearer"]
    sub: str
    iss: NotRequired[str]
    aud: NotRequired[str]
    additionalClaims: NotRequired[Mapping[str, Any]]


class TokenExchangeSubjectDict(TypedDict):
    """``{"type": "token", "token": ...}``: exchange a credential you hold."""

    type: Literal["token"]
    token: str


#: A subject in its TypeScript-style dict form (``{"type": "app"}``).
SubjectDict: TypeAlias = (
    AppSubjectDict | UserSubjectDict | JwtBearerSubjectDict | TokenExchangeSubjectDict
)
#: What every ``subject=`` accepts: a subject class, or its TypeScript-style dict.
SubjectLike: TypeAlias = Subject | SubjectDict

_SUBJECT_FIELDS: dict[str, dict[str, str]] = {
    # wire name -> Python field name, per subject type
    "app": {},
    "user": {"id": "id", "issuer": "issuer"},
    "jwt-bearer": {
        "sub": "sub",
        "iss": "iss",
        "aud": "aud",
        "additionalClaims": "additional_claims",
    },
    "token": {"token": "token"},
}
_SUBJECT_CLASSES: dict[str, type[Subject]] = {
    "app": AppSubject,
    "user": UserSubject,
    "jwt-bearer": JwtBearerSubject,
    "token": TokenExchangeSubject,
}

_SUBJECT_TYPES = {cls: kind for kind, cls in _SUBJECT_CLASSES.items()}


def subject_type(subject: Subject) -> str:
    """The subject's wire ``type``: ``app``, ``user``, ``jwt-bearer`` or ``token``."""
    return _SUBJECT_TYPES[type(subject)]


def coerce_subject(subject: object) -> Subject:
    """Accept a subject class or a TypeScript-style dict; refuse anything else."""
    if isinstance(subject, AppSubject | UserSubject | JwtBearerSubject | TokenExchangeSubject):
        return subject
    if not isinstance(subject, Mapping):
        raise TypeError(
            "subject must be AppSubject, UserSubject, JwtBearerSubject, TokenExchangeSubject "
            f"or a dict like {{'type': 'app'}}, not {type(subject).__name__}"
        )
    kind = subject.get("type")
    if kind not in _SUBJECT_FIELDS:
        raise ValueError(
            f"unknown subject type {kind!r}: use 'app', 'user', 'jwt-bearer' or 'token'"
        )
    names = _SUBJECT_FIELDS[kind]
    unknown = sorted(str(k) for k in subject if k != "type" and k not in names)
    if unknown:
        raise ValueError(
            f"subject of type {kind!r} has unknown field(s) {unknown}; allowed: {sorted(names)}"
        )
    required = {"user": "id", "jwt-bearer": "sub", "token": "token"}.get(kind)
    if required is not None and required not in subject:
        raise ValueError(f"a {kind!r} subject needs a {required!r} field")
    kwargs = {names[k]: v for k, v in subject.items() if k != "type"}
    return _SUBJECT_CLASSES[kind](**kwargs)


@dataclass(frozen=True, slots=True)
class TokenParams:
    """Validated, normalized parameters of one token request.

    ``key`` identifies the request in the cache: key order of dicts does not
    matter, omitted scopes equal ``["*"]``, and the validity buffer is left out.
    """

    subject: Subject
    installation_id: str | None = None
    audience: tuple[str, ...] | None = None
    scopes: tuple[str, ...] | None = None
    resources: tuple[str, ...] | None = None
    authorization_details: tuple[Mapping[str, Any], ...] | None = None
    validity_buffer_ms: float | None = None
    key: tuple[object, ...] = field(default=(), compare=False, repr=False)

    @classmethod
    def build(
        cls,
        *,
        subject: object,
        installation_id: object = None,
        audience: object = None,
        scopes: object = None,
        resources: object = None,
        authorization_details: object = None,
        validity_buffer_ms: object = None,
    ) -> TokenParams:
        """Validate raw arguments; raise ``TypeError``/``ValueError`` saying what to fix."""
        subj = coerce_subject(subject)
        inst = _optional_text("installation_id", installation_id)
        aud = _string_list("audience", audience)
        scp = _string_list("scopes", scopes)
        res = _string_list("resources", resources)
        details = _authorization_details(authorization_details)
        buffer = check_buffer(validity_buffer_ms)
        key = (
            _subject_key(subj),
            inst,
            aud,
            scp if scp is not None else ("*",),
            res,
            tuple(_canonical_json("", d) for d in details) if details is not None else None,
        )
        return cls(subj, inst, aud, scp, res, details, buffer, key)

    def to_wire(self) -> dict[str, Any]:
        """The token request body: camelCase, omitted fields left out, scopes default ``["*"]``."""
        body: dict[str, Any] = {"subject": self.subject.to_wire()}
        if self.installation_id is not None:
            body["installationId"] = self.installation_id
        if self.audience is not None:
            body["audience"] = list(self.audience)
        body["scopes"] = list(self.scopes) if self.scopes is not None else ["*"]
        if self.resources is not None:
            body["resources"] = list(self.resources)
        if self.authorization_details is not None:
            body["authorizationDetails"] = [dict(d) for d in self.authorization_details]
        if self.validity_buffer_ms is not None:
            body["validityBufferMs"] = self.validity_buffer_ms
        return body


#: What a ``vercel_token`` argument may be: the credential, or a function giving it
#: each time a request is sent to Connect (sync, or async for the async API).
VercelToken: TypeAlias = str | Callable[[], str] | Callable[[], Awaitable[str]]


class TokenParamsOptions(TypedDict, total=False):
    """Keyword options that shape a token request (all optional)."""

    installation_id: str | None
    audience: Sequence[str] | None
    scopes: Sequence[str] | None
    resources: Sequence[str] | None
    authorization_details: Sequence[Mapping[str, Any]] | None
    validity_buffer_ms: float | None
    vercel_token: VercelToken | None


class RequestKey:
    """A request's identity in the cache: connector + normalized params.

    The hash is computed once: the params form a nested tuple whose hash would
    otherwise be recomputed on every cache lookup.
    """

    __slots__ = ("_hash", "connector", "params_key")

    def __init__(self, connector: str, params_key: tuple[object, ...]) -> None:
        self.connector = connector
        self.params_key = params_key
        self._hash = hash((connector, params_key))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return self is other or (
            isinstance(other, RequestKey)
            and self._hash == other._hash
            and self.connector == other.connector
            and self.params_key == other.params_key
        )

    def __repr__(self) -> str:
        return f"RequestKey(connector={self.connector!r})"

    @property
    def subject_key(self) -> object:
        """The normalized subject part (used to evict one subject's entries)."""
        return self.params_key[0]


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """A validated connector + params pair and its cache key (without the credential).

    Made by `build`; the adapters build theirs once and pass it to
    `ConnectClient.token_for`.

    Attributes:
        connector: the connector uid or id.
        params: the validated token parameters (subject, scopes...).
        key: the cache key (connector and normalized parameters).
        buffer_ms: the validity buffer the cache applies, in milliseconds.
    """

    connector: str
    params: TokenParams
    key: RequestKey = field(repr=False)
    buffer_ms: float = DEFAULT_BUFFER_MS

    @classmethod
    @shared_args
    def build(
        cls,
        connector: object,
        *,
        subject: object,
        installation_id: object = None,
        audience: object = None,
        scopes: object = None,
        resources: object = None,
        authorization_details: object = None,
        validity_buffer_ms: object = None,
    ) -> TokenRequest:
        """Validate everything; ``TypeError``/``ValueError`` name the argument to fix."""
        connector = check_connector(connector)
        params = TokenParams.build(
            subject=subject,
            installation_id=installation_id,
            audience=audience,
            scopes=scopes,
            resources=resources,
            authorization_details=authorization_details,
            validity_buffer_ms=validity_buffer_ms,
        )
        buffer = params.validity_buffer_ms
        return cls(
            connector,
            params,
            RequestKey(connector, params.key),
            DEFAULT_BUFFER_MS if buffer is None else buffer,
        )


def check_connector(connector: object) -> str:
    """A connector uid or id, or ``TypeError``/``ValueError`` saying what to fix."""
    if not isinstance(connector, str):
        raise TypeError(
            f"connector must be a string like 'slack/acme', not {type(connector).__name__}"
        )
    if not connector.strip():
        raise ValueError("connector must be a non-empty uid (e.g. 'slack/acme-slack') or id")
    if connector in (".", ".."):
        raise ValueError(
            f"connector {connector!r} is not a connector uid or id (e.g. 'slack/acme-slack')"
        )
    if any(ord(c) < 32 or ord(c) == 127 for c in connector):
        raise ValueError("connector must not contain control characters (line breaks, tabs)")
    return connector


def token_param_fields(**params: object) -> dict[str, Any]:
    """Token params without a subject, validated as for tokens, in wire shape with only
    the fields that were set (no default scopes): what an installation request sends."""
    built = TokenParams.build(subject=AppSubject(), **params)
    body = built.to_wire()
    del body["subject"]
    if built.scopes is None:
        del body["scopes"]
    return body


@dataclass(frozen=True, slots=True)
class ConnectorRef:
    """Which connector a token or an authorization request belongs to.

    Attributes:
        id: the opaque connector id (``scl_...``).
        uid: the connector's uid, such as ``slack/acme-slack``.
        type: the provider kind, such as ``slack`` or ``github``.
        name: the connector's display name, when Connect sends one.
        service: the provider service, when Connect sends one.
        service_name: the provider service's display name, when Connect sends one.
        extra: every other field of the answer's ``connector`` object, as sent.
    """

    id: str
    uid: str
    type: str
    name: str | None = None
    service: str | None = None
    service_name: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True, slots=True)
class TokenResponse:
    """A provider token and what Connect says about it. ``repr`` hides the token.

    Attributes:
        token: the provider access token, to send as ``Authorization: Bearer``.
        expires_at: when it expires, in milliseconds since the epoch (see `expiry`).
        connector: the connector that issued it.
        name: the installation's or connector's display name.
        installation_id: the installation the token belongs to.
        tenant_id: the provider's tenant (a Slack team id, a GitHub org id).
        external_subject: the subject as the provider knows it.
        metadata: provider-specific public data about the grant.
        token_id: Connect's id of this token, for logs and support.
        claims: claims about the subject (for user subjects, such as an email).
        extra: every other field of Connect's answer, as sent (for example
            ``authorizationId``); `to_dict` includes them.
    """

    token: str = field(repr=False)
    expires_at: int
    connector: ConnectorRef
    name: str | None = None
    installation_id: str | None = None
    tenant_id: str | None = None
    external_subject: str | None = None
    metadata: Mapping[str, Any] | None = None
    token_id: str | None = None
    claims: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def expiry(self) -> datetime.datetime:
        """`expires_at` as an aware UTC ``datetime``."""
        return datetime.datetime.fromtimestamp(self.expires_at / 1000.0, tz=datetime.UTC)

    def to_dict(self) -> dict[str, Any]:
        """The response in Connect's camelCase wire shape (includes the token)."""
        out: dict[str, Any] = {
            "token": self.token,
            "tokenId": self.token_id,
            "expiresAt": self.expires_at,
            "connector": {
                "id": self.connector.id,
                "uid": self.connector.uid,
                "type": self.connector.type,
            },
            "name": self.name,
            "installationId": self.installation_id,
            "tenantId": self.tenant_id,
            "externalSubject": self.external_subject,
            "metadata": dict(self.metadata) if self.metadata is not None else None,
            "claims": dict(self.claims) if self.claims is not None else None,
        }
        return {**self.extra, **{k: v for k, v in out.items() if v is not None}}


def _subject_key(subject: Subject) -> tuple[object, ...]:
    wire = subject.to_wire()
    if isinstance(subject, TokenExchangeSubject):
        # Keys are kept in memory for the process's life: hold a digest, not the secret.
        wire["token"] = hashlib.sha256(subject.token.encode()).hexdigest()
    return tuple(sorted((k, _canonical_json("", v)) for k, v in wire.items()))


def _require_text(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, not {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{name} must be a non-empty string")
    return value


def _optional_text(name: str, value: object) -> str | None:
    return None if value is None else _require_text(name, value)


def _string_list(name: str, value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str | bytes):
        raise TypeError(
            f"{name} must be a list of strings, not a single string: write {name}=[{value!r}]"
        )
    if not isinstance(value, Sequence | set | frozenset):
        raise TypeError(f"{name} must be a list of strings, not {type(value).__name__}")
    items = tuple(value)
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"every entry of {name} must be a string, got {type(item).__name__}")
        if not item:
            raise ValueError(f"{name} contains an empty string")
    return items


def _authorization_details(value: object) -> tuple[Mapping[str, Any], ...] | None:
    if value is None:
        return None
    if isinstance(value, Mapping) or not isinstance(value, Sequence) or isinstance(value, str):
        raise TypeError("authorization_details must be a list of dicts, each with a 'type'")
    out = []
    for item in value:
        if not isinstance(item, Mapping) or not isinstance(item.get("type"), str):
            raise TypeError("each authorization_details entry must be a dict with a string 'type'")
        out.append(json.loads(_canonical_json("authorization_details", item)))  # a deep copy
    return tuple(out)


def check_buffer(value: object) -> float | None:
    """A ``validity_buffer_ms`` checked: None, or a finite number >= 0."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"validity_buffer_ms must be a number, not {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"validity_buffer_ms must be a finite number >= 0, got {value!r}")
    return value


def _canonical_json(name: str, value: object) -> str:
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name or 'value'} must be JSON-serializable: {exc}") from None
