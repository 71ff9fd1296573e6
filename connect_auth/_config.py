"""Where the Connect API lives: base URL resolution, pure."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from urllib.parse import SplitResult, urlsplit

__all__ = [
    "DEFAULT_BASE_URL",
    "is_loopback_host",
    "is_secure_url",
    "resolve_base_url",
    "unambiguous_url",
]

DEFAULT_BASE_URL = "https://api.vercel.com"


def resolve_base_url(base_url: str | None, region: str | None, env: Mapping[str, str]) -> str:
    """Explicit ``base_url`` > ``CONNECT_AUTH_BASE_URL`` > ``region`` > ``VERCEL_REGION``.

    Plain ``http://`` is accepted only for loopback hosts, so a typo can never
    send a Vercel credential over cleartext to the network.
    """
    chosen = base_url if base_url is not None else (env.get("CONNECT_AUTH_BASE_URL") or None)
    if chosen is None:
        reg = region if region is not None else (env.get("VERCEL_REGION") or "").strip()
        if not isinstance(reg, str):
            raise TypeError(f"region must be a string, not {type(reg).__name__}")
        reg = reg.strip()
        if reg and not all(c.isalnum() or c == "-" for c in reg):
            raise ValueError(f"region {reg!r} is not a valid Vercel region id (e.g. 'iad1')")
        chosen = f"https://api-{reg}.vercel.com" if reg else DEFAULT_BASE_URL
    if not isinstance(chosen, str):
        raise TypeError(f"base_url must be a string, not {type(chosen).__name__}")
    chosen = chosen.strip()  # a pasted value's stray space or newline
    parts = unambiguous_url("base_url", chosen)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"base_url {chosen!r} must be an absolute http(s) URL")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname or ""):
        raise ValueError(f"base_url {chosen!r} uses plain http on a non-loopback host; use https")
    if parts.query or parts.fragment:
        raise ValueError(f"base_url {chosen!r} must not carry a query or fragment")
    return chosen.rstrip("/")


def unambiguous_url(name: str, url: object) -> SplitResult:
    """The parts of an absolute URL that every parser reads alike (the scheme is the
    caller's to check).

    Refused with a `ValueError` naming ``name``: spaces and control characters
    (a header or a log line could be split), a backslash (browsers and some HTTP
    clients read ``\\`` as ``/``, so ``http://evil.example\\@127.0.0.1`` goes to
    ``evil.example`` while `urllib.parse` sees 127.0.0.1), and a user name or
    password (``user@host`` hides the real host from a reader, and clients send it
    as credentials).
    """
    if not isinstance(url, str):
        raise TypeError(f"{name} must be a string, not {type(url).__name__}")
    if any(c.isspace() or ord(c) < 32 or 127 <= ord(c) < 160 for c in url):
        raise ValueError(f"{name} {url!r} must not contain spaces or control characters")
    if "\\" in url:
        raise ValueError(f"{name} {url!r} must not contain a backslash; write '/'")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError as exc:
        raise ValueError(f"{name} {url!r} is not a valid URL ({exc})") from None
    if not parts.scheme or not parts.hostname:
        raise ValueError(f"{name} {url!r} must be an absolute URL with a host")
    if "@" in parts.netloc:
        raise ValueError(
            f"{name} {url!r} must not carry a user name or password before '@'; give the host alone"
        )
    return parts


def is_secure_url(url: str) -> bool:
    """An unambiguous (see `unambiguous_url`) ``https://`` URL, or ``http://`` to a
    loopback host: where a credential or a signing key may be fetched from or sent to."""
    try:
        parts = unambiguous_url("url", url)
    except (ValueError, TypeError):
        return False
    host = parts.hostname or ""
    return parts.scheme == "https" or (parts.scheme == "http" and is_loopback_host(host))


def is_loopback_host(host: str) -> bool:
    """The one loopback rule: ``localhost`` and ``*.localhost`` names (RFC 6761 keeps
    them on this machine), and the loopback addresses 127.0.0.0/8 and ``::1``
    (bracketed or not). Plain ``http://`` is allowed only to these hosts: for
    Connect, JWKS and issuer URLs, the adapters' tokens, consent callbacks and the
    emulator's bind address."""
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False
