"""Verifying webhooks that Vercel Connect forwards to your app.

Connect calls your endpoint with ``Authorization: Bearer <Vercel OIDC token>``.
A delivery is genuine when that token is an RS256 JWT signed by a key of Vercel's
JWKS, from Vercel's issuer, unexpired, and minted for this project and
environment. Everything that can be checked without the network is checked
first; the JWKS is cached per URL and fetched again at most once for an unknown
key id, no more often than every `REFETCH_INTERVAL` seconds.
"""

from __future__ import annotations

import contextvars
import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import httpx

from ._config import is_secure_url, unambiguous_url
from ._docs import args_of
from ._errors import WebhookVerificationError
from ._flight import result_of, wait_async
from ._observe import Report, reporting
from ._oidc import jwt_segment

__all__ = [
    "DEFAULT_ISSUER",
    "DEFAULT_JWKS_URL",
    "REFETCH_INTERVAL",
    "WebhookASGIMiddleware",
    "WebhookClaims",
    "WebhookWSGIMiddleware",
    "averify_connect_webhook",
    "verify_connect_webhook",
]

log = logging.getLogger("connect_auth.webhooks")

DEFAULT_ISSUER = "https://oidc.vercel.com"
DEFAULT_JWKS_URL = "https://oidc.vercel.com/.well-known/jwks"
#: Fewest seconds between two JWKS fetches caused by unknown key ids.
REFETCH_INTERVAL = 10.0
#: A cached JWKS older than this is fetched again before use.
JWKS_MAX_AGE = 3600.0
#: Seconds of clock skew accepted on ``exp``, ``nbf`` and ``iat``.
LEEWAY = 30.0
_TEAM_ISSUER = re.compile(r"https://oidc\.vercel\.com/[A-Za-z0-9][A-Za-z0-9_-]*")
#: A JWKS answer larger than this is refused (Vercel's is a few kilobytes).
MAX_JWKS_BYTES = 1 << 20
#: Seconds one JWKS fetch may take in all, however slowly the answer arrives.
JWKS_DEADLINE = 10.0
#: Vercel's OIDC tokens are about 1 kB, their header under 100 bytes: anything far
#: larger is refused before it is parsed.
MAX_TOKEN_CHARS = 16_384
MAX_HEADER_CHARS = 1_024


@dataclass(frozen=True, slots=True)
class WebhookClaims:
    """Who sent a verified webhook delivery.

    Attributes:
        project_id: the Vercel project the token was minted for.
        environment: its environment (``production``, ``preview``, ``development``...).
        owner_id: the team that owns the project.
        issuer: the token's issuer.
        subject: the token's ``sub``.
        claims: the whole verified payload.
    """

    project_id: str
    environment: str
    owner_id: str | None
    issuer: str
    subject: str | None
    claims: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class _Expected:
    projects: frozenset[str] | None  # None: any ("*")
    environments: frozenset[str] | None
    owner_id: str | None
    audience: str | None
    issuer: str | None  # None: Vercel's global or team issuer
    jwks_url: str


def verify_connect_webhook(
    headers_or_request: object,
    *,
    project_id: str | Sequence[str] | None = None,
    environment: str | Sequence[str] | None = None,
    owner_id: str | None = None,
    audience: str | None = None,
    issuer: str | None = None,
    jwks_url: str | None = None,
    clock: Callable[[], float] = time.time,
) -> WebhookClaims:
    """Check that a request is a webhook delivery from Vercel Connect for this app.

    Args:
        headers_or_request: the request's headers (any mapping; names in any case),
            or a request object with ``.headers`` (httpx, Starlette/FastAPI,
            Django, Flask, requests).
        project_id: the project the delivery must be for: an id, a list of ids, or
            ``"*"`` for any project; default ``VERCEL_PROJECT_ID``.
        environment: the environment it must be for: a name, a list of names, or
            ``"*"`` for any; default ``VERCEL_TARGET_ENV``, then ``VERCEL_ENV``.
        owner_id: the team id the project must belong to (checked when given).
        audience: a value the token's ``aud`` must hold (checked when given).
        issuer: the exact issuer to accept (default ``CONNECT_AUTH_OIDC_ISSUER``, else
            ``https://oidc.vercel.com`` or ``https://oidc.vercel.com/<team>``).
        jwks_url: where the signing keys are (default ``CONNECT_AUTH_JWKS_URL``, else
            Vercel's); ``http://`` only on loopback.
        clock: seconds since the epoch, for the ``exp``, ``nbf`` and ``iat`` checks
            (default ``time.time``; tests step it).

    Returns:
        The verified `WebhookClaims`.

    Raises:
        WebhookVerificationError: the delivery is not verified, or the expected
            project or environment is unknown (it fails closed). The message says
            which check failed and never holds the token.
        ValueError: ``issuer`` or ``jwks_url`` is not a usable URL.
    """
    token, header, expected = _prepare(
        headers_or_request, project_id, environment, owner_id, audience, issuer, jwks_url
    )
    kid = header["kid"]
    key = _key_after(_JWKS.key(expected.jwks_url, kid), kid)
    return _verified_claims(token, key, expected, clock)


@args_of(verify_connect_webhook)
async def averify_connect_webhook(
    headers_or_request: object,
    *,
    project_id: str | Sequence[str] | None = None,
    environment: str | Sequence[str] | None = None,
    owner_id: str | None = None,
    audience: str | None = None,
    issuer: str | None = None,
    jwks_url: str | None = None,
    clock: Callable[[], float] = time.time,
) -> WebhookClaims:
    """Async `verify_connect_webhook`: waiting for the JWKS never blocks the event loop."""
    token, header, expected = _prepare(
        headers_or_request, project_id, environment, owner_id, audience, issuer, jwks_url
    )
    kid = header["kid"]
    found = _JWKS.key(expected.jwks_url, kid)
    if isinstance(found, Future):
        await wait_async(found)  # the loop keeps running while the keys are fetched
    return _verified_claims(token, _key_after(found, kid), expected, clock)


# -- the checks before any network --------------------------------------------------


def _prepare(
    source: object,
    project_id: str | Sequence[str] | None,
    environment: str | Sequence[str] | None,
    owner_id: str | None,
    audience: str | None,
    issuer: str | None,
    jwks_url: str | None,
) -> tuple[str, dict[str, Any], _Expected]:
    _jose()  # a missing extra is said before anything else
    expected = _expected(project_id, environment, owner_id, audience, issuer, jwks_url)
    token = bearer_token(source)
    return token, jwt_header(token), expected


def _expected(
    project_id: str | Sequence[str] | None,
    environment: str | Sequence[str] | None,
    owner_id: str | None,
    audience: str | None,
    issuer: str | None,
    jwks_url: str | None,
    environ: Mapping[str, str] = os.environ,
) -> _Expected:
    """What a delivery must match; unknown project or environment fails closed."""
    projects = _expected_values(
        "project", "project_id", project_id, environ, ("VERCEL_PROJECT_ID",)
    )
    environments = _expected_values(
        "environment", "environment", environment, environ, ("VERCEL_TARGET_ENV", "VERCEL_ENV")
    )
    chosen_issuer = issuer or environ.get("CONNECT_AUTH_OIDC_ISSUER", "").strip() or None
    if chosen_issuer is not None:
        _check_url("issuer", chosen_issuer)
    url = jwks_url or environ.get("CONNECT_AUTH_JWKS_URL", "").strip() or DEFAULT_JWKS_URL
    _check_url("jwks_url", url)
    return _Expected(projects, environments, owner_id, audience, chosen_issuer, url)


def _expected_values(
    what: str, name: str, value: object, environ: Mapping[str, str], variables: Sequence[str]
) -> frozenset[str] | None:
    """``value`` as `allowed_values`; when None, the first of the environment
    ``variables`` that is set, or a refusal (unknown fails closed)."""
    if value is not None:
        return allowed_values(name, value)
    found = next((v for v in (environ.get(n, "").strip() for n in variables) if v), None)
    if found is None:
        raise _refused(
            f"the expected {what} is unknown: pass {name}= or set {' or '.join(variables)}",
            "webhook_misconfigured",
        )
    return frozenset({found})


def allowed_values(name: str, value: object) -> frozenset[str] | None:
    """``project_id=`` or ``environment=`` as the set of values a delivery may carry:
    None for ``"*"`` (any) or for None (the environment's, read by the caller)."""
    if value is None or value == "*":
        return None
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, Sequence | frozenset | set) or not all(
        isinstance(v, str) for v in values
    ):
        raise TypeError(f"{name} must be a string, a list of strings or '*'")
    if not values or not all(v.strip() for v in values):
        raise ValueError(f"{name} must name at least one non-empty value, or be '*' for any")
    if "*" in values:
        raise ValueError(f"{name}: '*' means any and stands alone, not in a list")
    return frozenset(v.strip() for v in values)


def _check_url(name: str, url: str) -> None:
    try:
        unambiguous_url(name, url)
    except ValueError as exc:
        raise ValueError(
            f"{name} must be an https:// URL (http:// only on loopback); {exc}"
        ) from None
    if not is_secure_url(url):
        raise ValueError(f"{name} must be an https:// URL (http:// only on loopback), not {url!r}")


def bearer_token(source: object) -> str:
    """The bearer token of a request or a headers mapping; refused when absent or malformed."""
    values = _header_values(getattr(source, "headers", source), "authorization")
    if not values:
        raise _refused("no Authorization header", "webhook_unauthorized")
    if len(values) > 1:
        raise _refused("more than one Authorization header", "webhook_unauthorized")
    scheme, _, token = values[0].strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _refused("the Authorization header is not 'Bearer <token>'", "webhook_unauthorized")
    return token


def _header_values(headers: object, name: str) -> list[str]:
    """Every value of one header, whatever the mapping's case rules."""
    getlist = getattr(headers, "get_list", None) or getattr(headers, "getlist", None)
    if callable(getlist):  # httpx, Starlette, Werkzeug: case-insensitive multi-dicts
        found = getlist(name)
        if found:
            return [str(v) for v in found]
    items: Iterable[tuple[Any, Any]]
    if isinstance(headers, Mapping) or hasattr(headers, "items"):
        items = headers.items()
    elif isinstance(headers, list | tuple):  # ASGI's [(name, value), ...]
        items = headers
    else:
        raise TypeError(
            "verify_connect_webhook takes a headers mapping or a request with .headers, "
            f"not {type(headers).__name__}"
        )
    out: list[str] = []
    for key, value in items:
        key = key.decode("latin-1") if isinstance(key, bytes) else str(key)
        if key.lower() == name:
            values = value if isinstance(value, list | tuple) else [value]
            out.extend(v.decode("latin-1") if isinstance(v, bytes) else str(v) for v in values)
    return out


def jwt_header(token: str) -> dict[str, Any]:
    """The JOSE header of a compact JWT, refused unless RS256 with a key id."""
    if token.count(".") != 2:
        raise _refused("the bearer is not a JWT", "webhook_unauthorized")
    if len(token) > MAX_TOKEN_CHARS or token.index(".") > MAX_HEADER_CHARS:
        raise _refused("the JWT is larger than any Vercel OIDC token", "webhook_unauthorized")
    header = jwt_segment(token, 0)
    if header is None:
        raise _refused("the JWT header is malformed", "webhook_unauthorized")
    if header.get("alg") != "RS256":
        alg = str(header.get("alg"))[:20]
        raise _refused(f"the JWT algorithm {alg!r} is not RS256", "webhook_unauthorized")
    if not isinstance(header.get("kid"), str) or not header["kid"]:
        raise _refused("the JWT header has no key id", "webhook_unauthorized")
    return header


# -- the signing keys ------------------------------------------------------------------


@dataclass
class _Source:
    """What is known of one JWKS URL."""

    keys: dict[str, Any] = field(default_factory=dict)  # kid -> RSAKey
    fetched_at: float = -math.inf  # when ``keys`` arrived
    tried_at: float = -math.inf  # when the last fetch started
    refetched_at: float = -math.inf  # when the last fetch for an unknown key id started
    failure: str | None = None  # the last fetch's error message; None when it worked
    flight: Future[dict[str, Any]] | None = None  # the fetch under way


class _KeyCache:
    """Signing keys per JWKS URL, fetched by one flight per URL at a time.

    Callers wait for the fetch of their URL that is under way rather than start
    one. With no keys (or keys older than `JWKS_MAX_AGE`) a fetch starts; a key
    id the fresh keys lack starts one only if no such refetch started in the last
    `REFETCH_INTERVAL` seconds; and a failed fetch's failure is answered again,
    without the network, for that interval. So a burst of forged tokens costs one
    fetch, cold or warm, and a failing JWKS is asked once per interval. Fetches
    run on a thread of their own, so a cancelled or timed-out caller never leaves
    the others waiting on a fetch nobody finishes.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._sources: dict[str, _Source] = {}

    def key(self, url: str, kid: str) -> Any:
        """The key for ``kid``, or the fetch (a `Future` of the keys) to wait for;
        raises the refusal when neither can help."""
        now = self._clock()
        with self._lock:
            source = self._sources.setdefault(url, _Source())
            fresh = now - source.fetched_at < JWKS_MAX_AGE
            if fresh and kid in source.keys:
                return source.keys[kid]
            if source.flight is not None:
                return source.flight
            if source.failure is not None and now - source.tried_at < REFETCH_INTERVAL:
                # said again without the network
                raise WebhookVerificationError(source.failure, code="jwks_unavailable", status=503)
            if fresh:  # an unknown key id: Vercel may have rotated its keys
                if now - source.refetched_at < REFETCH_INTERVAL:
                    raise _no_key(kid)
                source.refetched_at = now
            source.tried_at = now
            flight = source.flight = Future()
        # In the caller's context: the fetch's span belongs to the verification.
        threading.Thread(
            target=contextvars.copy_context().run,
            args=(self._fetch, url, flight),
            name="connect_auth-jwks",
            daemon=True,
        ).start()
        return flight

    def _fetch(self, url: str, flight: Future[dict[str, Any]]) -> None:
        try:
            report = Report("fetch_jwks")
            report.attempts = 1  # not retried: a failure is answered again for a while
            with reporting(report):
                keys, failure = download_jwks(url), None
        except WebhookVerificationError as exc:
            keys, failure = {}, exc
        except Exception as exc:  # never leave the waiters hanging
            keys, failure = {}, _unavailable(url, type(exc).__name__)
        with self._lock:
            source = self._sources[url]
            source.flight = None
            if failure is None:
                source.keys, source.fetched_at, source.failure = keys, self._clock(), None
            else:
                source.failure = failure.message
        if failure is None:
            flight.set_result(keys)
        else:
            flight.set_exception(failure)

    def clear(self) -> None:
        with self._lock:
            self._sources.clear()


_JWKS = _KeyCache()


def _key_after(found: Any, kid: str) -> Any:
    """The key once a fetch has answered: a known kid, or a refusal (never a new fetch)."""
    if not isinstance(found, Future):
        return found
    keys = result_of(found)
    if kid not in keys:
        raise _no_key(kid)
    return keys[kid]


def download_jwks(url: str) -> dict[str, Any]:
    """The RSA signing keys at ``url``, by key id, within `JWKS_DEADLINE` seconds in
    all and `MAX_JWKS_BYTES`: a slow or endless answer is cut off, not waited for."""
    from ._sync_deadline import bound_by_deadline
    from ._wire import attempt_deadline, up_to_cap

    reset = attempt_deadline.set(time.monotonic() + JWKS_DEADLINE)
    try:
        with httpx.Client(timeout=JWKS_DEADLINE, follow_redirects=False) as http:
            bound_by_deadline(http)
            headers = {"Accept": "application/json", "Accept-Encoding": "identity"}
            with http.stream("GET", url, headers=headers) as r:
                if r.status_code != 200:
                    raise _unavailable(url, f"HTTP {r.status_code}")
                if r.headers.get("content-encoding", "identity").lower() != "identity":
                    raise _unavailable(url, "the answer is compressed")  # no zip bombs
                if int(r.headers.get("content-length") or 0) > MAX_JWKS_BYTES:
                    raise _unavailable(url, "the answer is too large")
                body = b"".join(up_to_cap(r.iter_raw(), MAX_JWKS_BYTES))
                if len(body) > MAX_JWKS_BYTES:
                    raise _unavailable(url, "the answer is too large")
    except httpx.TimeoutException:
        raise _unavailable(url, f"no complete answer within {JWKS_DEADLINE:g} s") from None
    except (httpx.HTTPError, ValueError) as exc:
        raise _unavailable(url, type(exc).__name__) from None
    finally:
        attempt_deadline.reset(reset)
    return parse_jwks(url, body)


def _jose() -> Any:
    """joserfc (the ``webhooks`` extra), imported on the first verification."""
    try:
        import joserfc.errors
        import joserfc.jwk
        import joserfc.jwt
    except ImportError as exc:
        raise ImportError(
            "verifying Connect webhooks needs joserfc: pip install 'connect-auth[webhooks]'"
        ) from exc
    return joserfc


def parse_jwks(url: str, body: bytes) -> dict[str, Any]:
    """The RSA signature keys of a JWKS answer, by key id; whatever cannot be parsed
    is `jwks_unavailable`, never another exception."""
    jose = _jose()
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise _unavailable(url, "the answer is not JSON") from None
    raw = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(raw, list):
        raise _unavailable(url, "the answer has no 'keys' list")
    keys: dict[str, Any] = {}
    for item in raw:
        if not isinstance(item, dict) or item.get("kty") != "RSA":
            continue
        if not isinstance(item.get("kid"), str) or item.get("use", "sig") != "sig":
            continue
        public = {k: item[k] for k in ("kty", "n", "e") if k in item}
        try:
            keys[item["kid"]] = jose.jwk.RSAKey.import_key(public)  # public parts only
        except Exception:  # a key that does not import is not a key
            continue
    return keys


# -- the signature and the claims ---------------------------------------------------------


def _verified_claims(
    token: str, key: Any, expected: _Expected, clock: Callable[[], float]
) -> WebhookClaims:
    jose = _jose()
    try:
        claims = dict(jose.jwt.decode(token, key, algorithms=["RS256"]).claims)
    except (jose.errors.JoseError, ValueError, TypeError):
        raise _refused("the JWT signature is invalid", "webhook_unauthorized") from None
    except Exception:  # a hostile token must never become a 500
        raise _refused("the JWT is malformed", "webhook_unauthorized") from None
    return check_claims(claims, expected, clock())


def check_claims(claims: Mapping[str, Any], expected: _Expected, now: float) -> WebhookClaims:
    """The verified claims, or a refusal naming the first claim that does not match."""
    iss = claims.get("iss")
    if not isinstance(iss, str) or not (
        iss == expected.issuer
        if expected.issuer is not None
        else (iss == DEFAULT_ISSUER or _TEAM_ISSUER.fullmatch(iss) is not None)
    ):
        raise _refused("the token's issuer is not Vercel's (or the one configured)")
    exp = _number(claims, "exp")
    if exp is None:
        raise _refused("the token has no expiry")
    if exp + LEEWAY <= now:
        raise _refused("the token has expired")
    for name in ("nbf", "iat"):
        when = _number(claims, name)
        if when is not None and when - LEEWAY > now:
            raise _refused(f"the token's {name} is in the future")
    project, environment = claims.get("project_id"), claims.get("environment")
    if not isinstance(project, str) or not project:
        raise _refused("the token names no project")
    if not isinstance(environment, str) or not environment:
        raise _refused("the token names no environment")
    if expected.projects is not None and project not in expected.projects:
        raise _refused("the token is for another project")
    if expected.environments is not None and environment not in expected.environments:
        raise _refused("the token is for another environment")
    if expected.owner_id is not None and claims.get("owner_id") != expected.owner_id:
        raise _refused("the token is for another team")
    if expected.audience is not None:
        aud = claims.get("aud")
        audiences = aud if isinstance(aud, list) else [aud]
        if expected.audience not in audiences:
            raise _refused("the token is for another audience")
    owner = claims.get("owner_id")
    subject = claims.get("sub")
    return WebhookClaims(
        project_id=project,
        environment=environment,
        owner_id=owner if isinstance(owner, str) else None,
        issuer=iss,
        subject=subject if isinstance(subject, str) else None,
        claims=dict(claims),
    )


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _refused(f"the token's {name} is not a number")
    try:
        seconds = float(value)
    except OverflowError:  # an integer beyond any date
        seconds = math.inf
    if not math.isfinite(seconds):  # NaN compares false with everything: it never expires
        raise _refused(f"the token's {name} is not a finite number")
    return seconds


def _refused(why: str, code: str = "webhook_unauthorized") -> WebhookVerificationError:
    return WebhookVerificationError(f"webhook refused: {why}", code=code, status=401)


def _no_key(kid: str) -> WebhookVerificationError:
    return _refused(f"no signing key {kid[:40]!r} in the JWKS", "webhook_unauthorized")


def _unavailable(url: str, why: str) -> WebhookVerificationError:
    return WebhookVerificationError(
        f"webhook refused: the signing keys could not be fetched from {url} ({why})",
        code="jwks_unavailable",
        status=503,
    )


# -- middlewares ------------------------------------------------------------------------


class WebhookASGIMiddleware:
    """ASGI middleware that lets through only verified Connect webhook deliveries.

    An unverified request gets ``401`` (``503`` when the signing keys cannot be
    fetched) and never reaches the app; a verified one reaches it with the
    `WebhookClaims` in ``scope["connect_webhook"]``.

    Args:
        app: the ASGI app to protect.
        paths: only requests to these paths are checked (default: every HTTP
            request). A path is matched as the app routes it: inside a Starlette
            ``Mount``, a FastAPI sub-app or behind an ASGI ``root_path``, give the
            path the mounted app sees; repeated and trailing slashes do not matter.
        **options: the keyword arguments of `verify_connect_webhook`.
    """

    def __init__(self, app: Any, *, paths: Sequence[str] | None = None, **options: Any) -> None:
        self.app = app
        self.paths = _path_set(paths)
        self.options = _options(options)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not _guarded(
            self.paths, scope.get("path") or "", scope.get("root_path") or ""
        ):
            await self.app(scope, receive, send)
            return
        try:
            claims = await averify_connect_webhook(list(scope["headers"]), **self.options)
        except WebhookVerificationError as exc:
            log.warning("%s", exc.message)
            status, body = _answer(exc)
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self.app({**scope, "connect_webhook": claims}, receive, send)


class WebhookWSGIMiddleware:
    """WSGI middleware that lets through only verified Connect webhook deliveries.

    As `WebhookASGIMiddleware`; the claims are in ``environ["connect_webhook"]``.

    Args:
        app: the WSGI app to protect.
        paths: only requests to these paths are checked (default: every request).
            Matched with and without ``SCRIPT_NAME``; repeated and trailing
            slashes do not matter.
        **options: the keyword arguments of `verify_connect_webhook`.
    """

    def __init__(self, app: Any, *, paths: Sequence[str] | None = None, **options: Any) -> None:
        self.app = app
        self.paths = _path_set(paths)
        self.options = _options(options)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if not _guarded(
            self.paths, environ.get("PATH_INFO") or "", environ.get("SCRIPT_NAME") or ""
        ):
            return self.app(environ, start_response)  # type: ignore[no-any-return]
        auth = environ.get("HTTP_AUTHORIZATION")
        headers = {} if auth is None else {"authorization": auth}
        try:
            claims = verify_connect_webhook(headers, **self.options)
        except WebhookVerificationError as exc:
            log.warning("%s", exc.message)
            status, body = _answer(exc)
            start_response(
                f"{status} {'Unauthorized' if status == 401 else 'Service Unavailable'}",
                [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
            )
            return [body]
        environ["connect_webhook"] = claims
        return self.app(environ, start_response)  # type: ignore[no-any-return]


def _path_set(paths: Sequence[str] | None) -> frozenset[str] | None:
    """The guarded paths, normalized as `_guarded` compares them."""
    if paths is None:
        return None
    if isinstance(paths, str) or not all(isinstance(p, str) and p.startswith("/") for p in paths):
        raise TypeError("paths must be a list of paths that start with '/', such as ['/webhooks']")
    return frozenset(_normal(p) for p in paths)


def _guarded(paths: frozenset[str] | None, path: str, prefix: str) -> bool:
    """Whether a request must be verified: its path matches a guarded one in any way
    a framework may route it.

    A mounted app (Starlette ``Mount``, FastAPI sub-apps, an ASGI server's
    ``root_path``, WSGI's ``SCRIPT_NAME``) routes by the path without its mount
    prefix, while the server may give the path with it, or without. So the path
    as given, without the prefix and with it are all compared, slashes
    normalized; when in doubt, the request is verified.
    """
    if paths is None:
        return True
    candidates = {path, prefix + path}
    if prefix and path.startswith(prefix):
        candidates.add(path[len(prefix) :])
    return any(_normal(c) in paths for c in candidates)


def _normal(path: str) -> str:
    """``//a//b/`` as ``/a/b``: routers differ on repeated and trailing slashes."""
    return "/" + "/".join(part for part in path.split("/") if part)


_OPTION_NAMES = frozenset(
    {"project_id", "environment", "owner_id", "audience", "issuer", "jwks_url", "clock"}
)


def _options(options: dict[str, Any]) -> dict[str, Any]:
    """The middleware's verification options, checked at start-up rather than on the
    first delivery."""
    unknown = sorted(set(options) - _OPTION_NAMES)
    if unknown:
        raise TypeError(
            f"unknown option(s) {unknown}; the webhook middlewares take paths= and the "
            f"options of verify_connect_webhook: {sorted(_OPTION_NAMES)}"
        )
    for name in ("issuer", "jwks_url"):
        if options.get(name) is not None:
            _check_url(name, options[name])
    for name in ("project_id", "environment"):
        allowed_values(name, options.get(name))
    if not callable(options.get("clock", time.time)):
        raise TypeError("clock must be a function returning seconds since the epoch")
    return options


def _answer(exc: WebhookVerificationError) -> tuple[int, bytes]:
    """What an unverified delivery gets: no detail beyond the kind of refusal."""
    if exc.code == "jwks_unavailable":
        return 503, b'{"error":"webhook verification is unavailable"}'
    return 401, b'{"error":"unauthorized webhook"}'
