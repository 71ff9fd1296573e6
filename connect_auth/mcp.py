"""MCP servers through Vercel Connect (the ``mcp`` extra): an agent calls a remote MCP
server (Linear's, GitHub's, ...) with Connect tokens, and a user who has not
consented yet becomes a consent challenge the app can show.

The official MCP Python SDK sends through ``httpx2.AsyncClient``::

    auth = connect_auth_provider("linear/acme-linear", subject={"type": "user", "id": uid})
    async with httpx2.AsyncClient(auth=auth) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            ...

Connect is the authorization server: the provider never runs MCP's OAuth discovery
and never fetches a URL an MCP server names in ``WWW-Authenticate``.
"""

from __future__ import annotations

import inspect
import os
import threading
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

try:
    import httpx2
except ImportError as exc:  # an optional extra: say how to get it
    raise ImportError(
        "connect_auth.mcp needs httpx2 (the MCP SDK's HTTP client): pip install 'connect-auth[mcp]'"
    ) from exc
import httpx

from ._authorize import authorize_body
from ._client import ConnectClient
from ._docs import shared_args
from ._errors import UserAuthorizationRequiredError
from ._flight import result_of, wait_async
from ._httpx_flow import HttpxFlow
from ._models import Subject, SubjectLike, VercelToken

__all__ = [
    "ConnectMCPAuth",
    "ConsentChallenge",
    "ConsentRequiredError",
    "connect_auth_provider",
    "get_consent_challenge",
]


@dataclass(frozen=True)
class ConsentChallenge:
    """What a user must do before an agent may act for them on a connector.

    Attributes:
        connector: the connector uid or id.
        subject: who must consent (a `connect_auth.UserSubject`, usually).
        url: where to send the user: the provider's consent page, or with a device
            code the page where they enter it.
        request: Connect's id of the authorization request.
        verifier: the request's secret; keep it server-side (never shown by
            ``repr`` or ``str``).
        device_code: the code the user types at ``url`` in the device-code flow.
        expires_at: when the request lapses, in milliseconds since the epoch.
    """

    connector: str
    subject: Subject
    url: str
    request: str
    verifier: str = field(repr=False)
    device_code: str | None = None
    expires_at: int | None = None


class ConsentRequiredError(UserAuthorizationRequiredError):
    """The user has not authorized the connector yet: send them to ``challenge.url``.

    Raised before the request reaches the MCP server. It is a
    `connect_auth.UserAuthorizationRequiredError`, so handlers of that error catch it
    too; MCP clients may wrap it (in an ``ExceptionGroup``, say):
    `get_consent_challenge` finds it anyway.

    Attributes:
        challenge: the `ConsentChallenge`.
    """

    def __init__(self, challenge: ConsentChallenge) -> None:
        super().__init__(
            f"the user has not authorized {challenge.connector} yet: send them to "
            "challenge.url, then try again",
            code="user_authorization_required",
        )
        self.challenge = challenge


def get_consent_challenge(error: BaseException | None) -> ConsentChallenge | None:
    """The `ConsentChallenge` in ``error``: in the error itself, along its
    ``__cause__`` and ``__context__`` chain, or inside ``ExceptionGroup``s (the MCP
    client raises from a task group); None when there is none.

    Args:
        error: the exception an MCP call raised (or ``None``).
    """
    pending: list[BaseException] = [] if error is None else [error]
    seen: set[int] = set()
    while pending and len(seen) < _MAX_ERRORS:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ConsentRequiredError):
            return current.challenge
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return None


_MAX_ERRORS = 256  # errors looked at, at most: a cycle or a huge group ends the search

ConsentCallback = Callable[[ConsentChallenge], Awaitable[object] | object]


# httpx2.Auth and httpx.Auth type their flows with their own Request classes; the
# flows here serve either library's requests.
@shared_args
class ConnectMCPAuth(HttpxFlow, httpx2.Auth, httpx.Auth):  # type: ignore[misc]
    """The auth of `connect_auth_provider`: an ``httpx2.Auth`` (what the MCP SDK
    uses) and an ``httpx.Auth``. Tokens, caching and the refresh after a refusal
    are those of `connect_auth.httpx.ConnectAuth`; a missing grant raises
    `ConsentRequiredError` instead of `UserAuthorizationRequiredError`.

    Args:
        subject: who the token represents; a user who has not consented gets a
            `ConsentRequiredError`.
        callback_url: where the user's browser returns after consent (see
            `connect_auth.start_authorization`).
        device_code: ``True`` to start device-code consent flows.
        on_consent_required: called with the `ConsentChallenge` before
            `ConsentRequiredError` is raised (sync, or async for async clients),
            to show the user the consent link.
        **options: the other arguments of `connect_auth.httpx.ConnectAuth`
            (``installation_id``, ``scopes``, ``vercel_token``, ``client``,
            ``refresh_on``, ``hosts``, ``refresh_if``...).
    """

    _byte_stream = (httpx2.ByteStream, httpx.ByteStream)
    _sync_stream = (httpx2.SyncByteStream, httpx.SyncByteStream)
    _async_stream = (httpx2.AsyncByteStream, httpx.AsyncByteStream)

    def __init__(
        self,
        connector: str,
        *,
        subject: SubjectLike,
        callback_url: str | None = None,
        device_code: bool = False,
        on_consent_required: ConsentCallback | None = None,
        **options: Any,
    ) -> None:
        super().__init__(connector, subject=subject, **options)
        if not isinstance(device_code, bool):
            raise TypeError("device_code must be True or False")
        if on_consent_required is not None and not callable(on_consent_required):
            raise TypeError("on_consent_required must be a function of the challenge, or None")
        # The authorization request is checked now, so a bad callback_url fails here and
        # not when a user first needs consent.
        authorize_body(self.request, os.environ, callback_url=callback_url, device_code=device_code)
        self.callback_url = callback_url
        self.device_code = device_code
        self.on_consent_required = on_consent_required

    def token(self) -> str:
        """A valid token, or `ConsentRequiredError` (blocks this thread)."""
        try:
            token = super().token()
        except UserAuthorizationRequiredError as missing:
            challenge = self._challenge()
            if self.on_consent_required is not None:
                answer = self.on_consent_required(challenge)
                if inspect.isawaitable(answer):
                    close = getattr(answer, "close", None)
                    if callable(close):
                        close()  # never awaited: say so instead of a warning
                    raise TypeError(
                        "on_consent_required is async: use it with an async client "
                        "(httpx2.AsyncClient), or pass a sync function"
                    ) from None
            raise ConsentRequiredError(challenge) from missing
        self._consented()
        return token

    async def atoken(self) -> str:
        """A valid token, or `ConsentRequiredError`, without blocking the event loop."""
        try:
            token = await super().atoken()
        except UserAuthorizationRequiredError as missing:
            challenge = await self._achallenge()
            if self.on_consent_required is not None:
                answer = self.on_consent_required(challenge)
                if inspect.isawaitable(answer):
                    await answer
            raise ConsentRequiredError(challenge) from missing
        self._consented()
        return token

    # -- one authorization request per connector and subject while it is valid ------

    def _key(self) -> Hashable:
        client = self.client
        digest = client._engine.credential(self.vercel_token).digest
        return client.base_url, self.request.key, digest

    def _consented(self) -> None:
        """A token came: the challenge, if any, is spent (the next one asks anew)."""
        if _challenges:
            with _challenges_lock:
                _challenges.pop(self._key(), None)

    def _shared_challenge(self) -> tuple[Future[ConsentChallenge], bool]:
        key = self._key()
        now_ms = time.time() * 1000.0
        with _challenges_lock:
            found = _challenges.get(key)
            if found is not None and _still_valid(found, now_ms):
                return found[0], False
            future: Future[ConsentChallenge] = Future()
            _challenges[key] = (future, now_ms)
            return future, True

    def _challenge(self) -> ConsentChallenge:
        future, leader = self._shared_challenge()
        if leader:
            try:
                started = self.client.start_authorization(
                    self.request.connector, subject=self.request.params.subject, **self._flow()
                )
            except BaseException as exc:
                self._failed(future, exc)
                raise
            future.set_result(self._challenge_of(started))
        return result_of(future)

    async def _achallenge(self) -> ConsentChallenge:
        future, leader = self._shared_challenge()
        if leader:
            try:
                started = await self.client.astart_authorization(
                    self.request.connector, subject=self.request.params.subject, **self._flow()
                )
            except BaseException as exc:
                self._failed(future, exc)
                raise
            future.set_result(self._challenge_of(started))
        return await wait_async(future)

    def _failed(self, future: Future[ConsentChallenge], exc: BaseException) -> None:
        with _challenges_lock:
            key = self._key()
            found = _challenges.get(key)
            if found is not None and found[0] is future:
                del _challenges[key]
        future.set_exception(exc if isinstance(exc, Exception) else RuntimeError(repr(exc)))

    def _flow(self) -> dict[str, Any]:
        """`start_authorization`'s options: the token parameters, and how to come back."""
        params = self.request.params
        options: dict[str, Any] = {"vercel_token": self.vercel_token}
        for name in ("installation_id", "audience", "scopes", "resources"):
            value = getattr(params, name)
            if value is not None:
                options[name] = list(value) if isinstance(value, tuple) else value
        if params.authorization_details is not None:
            options["authorization_details"] = [dict(d) for d in params.authorization_details]
        if self.callback_url is not None:
            options["callback_url"] = self.callback_url
        if self.device_code:
            options["device_code"] = True
        return options

    def _challenge_of(self, started: Any) -> ConsentChallenge:
        return ConsentChallenge(
            connector=self.request.connector,
            subject=self.request.params.subject,
            url=started.url,
            request=started.request,
            verifier=started.verifier,
            device_code=started.device_code,
            expires_at=started.expires_at,
        )


# (base URL, request key, credential digest) -> (the challenge's future, when it began)
_challenges: dict[Hashable, tuple[Future[ConsentChallenge], float]] = {}
_challenges_lock = threading.Lock()
#: How long a challenge whose answer has no ``expiresAt`` is handed out again.
_UNDATED_CHALLENGE_MS = 600_000.0
_MARGIN_MS = 5_000.0


def _still_valid(found: tuple[Future[ConsentChallenge], float], now_ms: float) -> bool:
    future, began = found
    if not future.done():
        return True
    if future.exception() is not None:
        return False
    expires = future.result().expires_at
    until = expires if expires is not None else began + _UNDATED_CHALLENGE_MS
    return until - now_ms > _MARGIN_MS


def connect_auth_provider(
    connector: str,
    *,
    subject: SubjectLike,
    scopes: Iterable[str] | None = None,
    callback_url: str | None = None,
    device_code: bool = False,
    on_consent_required: ConsentCallback | None = None,
    client: ConnectClient | None = None,
    installation_id: str | None = None,
    audience: Iterable[str] | None = None,
    resources: Iterable[str] | None = None,
    authorization_details: Iterable[dict[str, Any]] | None = None,
    validity_buffer_ms: float | None = None,
    vercel_token: VercelToken | None = None,
    refresh_on: Iterable[int] = (401,),
    hosts: Iterable[str] | None = None,
) -> ConnectMCPAuth:
    """The auth for an MCP client session: Connect tokens for ``connector`` and
    ``subject`` on every request, and a consent challenge when the user has none.

    Pass it as ``auth=`` of the ``httpx2.AsyncClient`` the MCP SDK sends through
    (or of an ``httpx`` client). When the user has not authorized the connector,
    no request reaches the MCP server: the provider starts one authorization
    request (shared by every session of that user while it is valid), calls
    ``on_consent_required`` with the challenge if given, and raises
    `ConsentRequiredError`. After the user approves, the same provider works on
    the next request.

    Args:
        connector: the connector uid (``linear/acme-linear``) or id.
        subject: whose token: ``{"type": "user", "id": ...}`` for a user's agent,
            ``{"type": "app"}`` for the app itself.
        scopes: the scopes to ask for (default: all the connector grants).
        callback_url: where the user's browser returns after consent (``https:``,
            or ``http:`` on loopback); default: the connector's registered page.
        device_code: ask for a device code the user types in, for agents without a
            browser at hand.
        on_consent_required: called with the `ConsentChallenge` (a sync function, or
            async for async clients) before `ConsentRequiredError` is raised: to
            store it, message the user, ...
        client: the `connect_auth.ConnectClient` to use (default: the process-wide
            one).
        installation_id: which installation of the connector, when it has several.
        audience: the token's audience, when the provider supports one.
        resources: RFC 8707 resource indicators.
        authorization_details: RFC 9396 authorization details.
        validity_buffer_ms: a cached token is used while it has more than this
            left (default 30 s, or the client's).
        vercel_token: the Vercel credential, or a function giving it (default:
            looked up per request).
        refresh_on: statuses that mean the token was refused: it is refreshed once
            and the request resent once.
        hosts: the hosts (``host`` or ``host:port``) that get the token; default:
            any over https, and loopback.

    Returns:
        A `ConnectMCPAuth`.

    Raises:
        ValueError, TypeError: an argument is invalid (before any network call).
    """
    return ConnectMCPAuth(
        connector,
        subject=subject,
        scopes=list(scopes) if scopes is not None else None,
        callback_url=callback_url,
        device_code=device_code,
        on_consent_required=on_consent_required,
        client=client,
        installation_id=installation_id,
        audience=list(audience) if audience is not None else None,
        resources=list(resources) if resources is not None else None,
        authorization_details=(
            list(authorization_details) if authorization_details is not None else None
        ),
        validity_buffer_ms=validity_buffer_ms,
        vercel_token=vercel_token,
        refresh_on=refresh_on,
        hosts=hosts,
        refresh_if=None,  # MCP servers say "refused" with a 401
    )
