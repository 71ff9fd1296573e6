"""Descriptions of the parameters many public callables share, written once.

`shared_args` adds the ones a docstring does not describe itself to its ``Args:``
section, so `help()`, IDEs and the API reference list every parameter where it is
used. A parameter described neither there nor here fails at import.
"""

from __future__ import annotations

import inspect
import re
import textwrap
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["ARGS", "args_of", "shared_args"]

_T = TypeVar("_T")

#: Shared descriptions, by parameter name.
ARGS: dict[str, str] = {
    "connector": 'the connector uid (``"slack/acme-slack"``) or id.',
    "subject": (
        "who the token represents: `AppSubject`, `UserSubject`, `JwtBearerSubject`, "
        '`TokenExchangeSubject`, or their dict form (``{"type": "user", "id": '
        '"u_123"}``).'
    ),
    "installation_id": (
        "the provider installation (a Slack workspace, a GitHub org) to use when the "
        "connector has several; default: the connector's default installation."
    ),
    "audience": "audiences to ask the provider to put in the token (a list of strings).",
    "scopes": (
        'OAuth scopes to ask for (a list of strings); default ``["*"]``: every scope '
        "the connector was granted. Different scopes are different cache entries."
    ),
    "resources": "RFC 8707 resource indicators (a list of URLs).",
    "authorization_details": "RFC 9396 authorization details (a list of JSON objects).",
    "validity_buffer_ms": (
        "how long, in milliseconds, a token must still be valid to be served from the "
        "cache (default 30 000, or the client's ``validity_buffer_ms``); also sent to "
        "Connect, which then never returns a token closer to expiry."
    ),
    "vercel_token": (
        "the Vercel credential (an OIDC token) for this call, or a function returning "
        "one (sync, or async for the async API), called each time a request is sent to "
        "Connect. Default: the client's, else looked up per call (request scope, "
        "``VERCEL_OIDC_TOKEN``, ``.env.local``)."
    ),
    "force_refresh": ("``True`` to skip the cache and fetch a new token (stored for later calls)."),
    "no_cache": (
        "``True`` to fetch a token that is neither read from nor stored in any cache "
        "(identical concurrent calls still share one fetch)."
    ),
    "region": (
        "A Vercel region id for this call (``https://api-<region>.vercel.com``), unless "
        "the client was given a ``base_url`` (or ``CONNECT_AUTH_BASE_URL`` is set); "
        '``""`` is the global host.'
    ),
    "callback_url": (
        "where the browser returns after consent: ``https:``, or ``http:`` on a "
        "loopback host (``localhost``, ``*.localhost``, 127.0.0.0/8, [::1]). Sent as "
        "``returnUrl``."
    ),
    "webhook": "an ``https:`` URL Connect calls when the flow ends.",
    "device_code": (
        "``True`` for the device-code flow (the user types a code at ``url``). With "
        "``VERCEL_CONNECT_INTERACTIVE_AUTH_MODE=detached`` it defaults to ``True`` and "
        "``callback_url`` is dropped with a warning."
    ),
    "expires_in_ms": "how long the authorization request stays open, in milliseconds.",
    "prompt": 'the OAuth ``prompt`` passed to the provider (for example ``"consent"``).',
    "tenant_id": "the provider tenant to install into.",
    "timeout": "seconds to wait in all before ``TimeoutError``.",
    "interval": "seconds between two asks (``slow_down`` answers add 5 each).",
    "client": (
        "the `ConnectClient` to use; by default the process-wide one, so adapters and "
        "`get_token` share tokens."
    ),
    "refresh_on": 'HTTP statuses that mean "this token was refused" (default ``(401,)``).',
    "hosts": (
        "if given, only requests to these hosts get a token: names with an optional "
        'port (``"api.github.com"``, ``"ghe.example.com:8443"``); a name alone matches '
        "the scheme's default port only. Whatever this says, a token goes only over "
        "https (plain http only to a loopback host)."
    ),
    "refresh_if": (
        "``(status, body) -> bool`` for providers that report a bad token in a 2xx body. "
        'The default, ``"auto"``, applies `slack_invalid_auth` when Connect reports '
        "the connector's type as ``slack``; ``None`` never looks at bodies. A body is "
        "read for it only when it is JSON of at most 64 KiB, and the caller can still "
        "read (or stream) the whole of it; any other body is never inspected."
    ),
}

_ARGS = re.compile(r"^(Args|Arguments|Parameters):$")
_SECTION = re.compile(r"^[A-Z][A-Za-z ]*:$")  # Returns:, Raises:, Example:...
_ENTRY = re.compile(r"^    \**(\w+)(?: \([^)]*\))?:")


def shared_args(obj: _T) -> _T:
    """Complete ``obj``'s docstring with `ARGS` entries for the parameters it does not
    describe. A class gets its constructor's, and each of its public functions is
    completed too. Raises ``KeyError`` naming a parameter described nowhere."""
    return _complete(obj, {})


def args_of(source: Callable[..., Any]) -> Callable[[_T], _T]:
    """`shared_args`, taking descriptions from ``source``'s docstring first (for an
    async twin of a sync function)."""
    lines = inspect.cleandoc(source.__doc__ or "").splitlines()
    return lambda obj: _complete(obj, _args_section(lines)[2])


def _complete(obj: _T, borrowed: dict[str, list[str]]) -> _T:
    target: Any = obj
    if isinstance(obj, type):
        for name, value in vars(obj).items():
            if inspect.isfunction(value) and not name.startswith("_"):
                _complete(value, borrowed)
        target = obj.__init__  # type: ignore[misc]
    lines = inspect.cleandoc(obj.__doc__ or "").splitlines()
    names = [
        name
        for name in inspect.signature(target).parameters
        if name not in ("self", "cls") and not name.startswith("_")
    ]
    start, end, described = _args_section(lines)
    unknown = [n for n in names if n not in described and n not in borrowed and n not in ARGS]
    if unknown:
        raise KeyError(f"{getattr(obj, '__qualname__', obj)}: describe {unknown} in its docstring")
    if all(name in described for name in names):
        return obj
    entries = [  # in signature order, then any the docstring adds (such as **kwargs)
        *(described.pop(name, []) or borrowed.get(name) or _entry(name) for name in names),
        *described.values(),
    ]
    section = ["Args:", *(line for entry in entries for line in entry)]
    if start == end:  # a new section, before Returns:/Raises:... or at the end
        section = [*section, ""] if end < len(lines) else ["", *section]
    obj.__doc__ = "\n".join([*lines[:start], *section, *lines[end:]])
    return obj


def _entry(name: str) -> list[str]:
    return textwrap.wrap(
        f"{name}: {ARGS[name]}", 88, initial_indent="    ", subsequent_indent="        "
    )


def _args_section(lines: list[str]) -> tuple[int, int, dict[str, list[str]]]:
    """Where the Args section is (``start == end``: where one goes) and its entries."""
    start = next((i for i, line in enumerate(lines) if _ARGS.match(line)), None)
    if start is None:
        at = next((i for i, line in enumerate(lines) if i and _SECTION.match(line)), len(lines))
        return at, at, {}
    entries: dict[str, list[str]] = {}
    end = start + 1
    while end < len(lines) and (not lines[end] or lines[end].startswith(" ")):
        if entry := _ENTRY.match(lines[end]):
            entries[entry.group(1)] = [lines[end]]
        elif lines[end]:
            entries[next(reversed(entries))].append(lines[end])
        end += 1
    while lines[end - 1] == "":
        end -= 1
    return start, end, entries
