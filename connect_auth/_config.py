"""Where the Connect API lives: base URL resolution (decision 0.6), pure."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from urllib.parse import urlsplit

__all__ = ["DEFAULT_BASE_URL", "is_loopback_host", "is_secure_url", "resolve_base_url"]

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
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in chosen):
        raise ValueError(f"base_url {chosen!r} must not contain spaces or control characters")
    parts = urlsplit(chosen)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"base_url {chosen!r} must be an absolute http(s) URL")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ValueError(f"base_url {chosen!r} uses plain http on a non-loopback host; use https")
    if parts.query or parts.fragment:
        raise ValueError(f"base_url {chosen!r} must not carry a query or fragment")
    return chosen.rstrip("/")


def is_secure_url(url: str) -> bool:
    """An absolute ``https://`` URL, or ``http://`` to a loopback host: where a
    credential or a signing key may be fetched from or sent to."""
    parts = urlsplit(url)
    if not parts.hostname:
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and is_loopback_host(parts.hostname))


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
