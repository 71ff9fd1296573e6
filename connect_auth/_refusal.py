"""The one refusal flow of every adapter: attach a token, send, judge the answer, and
on a refusal refresh once and resend once.

A request is armed first (`ConnectAuthBase.arm`: the attach decision, the body's
rewind, the token) and sent. Most answers end there (`ConnectAuthBase.may_refuse`
says no), at the cost of two method calls. Any other answer is judged
(`ConnectAuthBase.refused`: `verdict` decides from the status and headers, and asks
for a bounded body read when a predicate needs one). A refusal goes to
`refusal_flow`, which decides everything else and does no I/O: it yields effects
(`NEED_TOKEN`, or a request to send) and is sent their results. Two drivers run it
from one send to the next: `advance` in a thread, `aadvance` on an event loop. A
client module sends what they return in its own way (httpx yields it from its auth
flow, aiohttp calls its handler, requests and niquests send from a response hook),
and is a `Binding`: how to read a status and a header, set the token, replay a body
and send again.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from ._flight import Done, send_into

if TYPE_CHECKING:
    from ._adapter import Armed, ConnectAuthBase, Rewind

__all__ = [
    "MAX_INSPECTED_BYTES",
    "NEED_TOKEN",
    "Binding",
    "Done",
    "ReadBody",
    "aadvance",
    "advance",
    "inspectable",
    "refusal_flow",
    "verdict",
]

#: A refusal in a 2xx body (Slack's ``{"ok": false, "error": "invalid_auth"}``) is a
#: small JSON answer: no larger body, and none that is not JSON, is ever read for it.
MAX_INSPECTED_BYTES = 64 * 1024


class _NeedToken:
    """Effect: the driver obtains a token (sync or async) and sends it back."""

    def __repr__(self) -> str:
        return "NEED_TOKEN"


NEED_TOKEN = _NeedToken()


class ReadBody(NamedTuple):
    """A body read a predicate needs: the body of ``response`` if it is at most
    ``limit`` bytes, else None; either way the caller can still read the whole body.
    ``whole``: the length is known to be within ``limit``. ``status``: the answer's."""

    response: Any
    limit: int
    whole: bool
    status: int


class Binding(Protocol):
    """What a client module tells the flow about its requests and responses. The
    adapter object is its own binding; besides these, the drivers call its
    ``token``/``cached_token``/``atoken`` and ``read_body``/``aread_body`` (a
    body within a `ReadBody`'s bound, the response still whole for the caller)."""

    def scheme_of(self, request: Any) -> str:
        """The request URL's scheme, lower case (for the attach decision)."""
        ...

    def host_and_port(self, request: Any) -> tuple[str, int | None]:
        """The request URL's host and port (for the attach decision)."""
        ...

    def rewinder(self, request: Any) -> Rewind | None:
        """How to send the request's body again (called before the first send)."""
        ...

    def set_token(self, request: Any, token: str) -> None:
        """Put ``Authorization: Bearer <token>`` on the request."""
        ...

    def status(self, response: Any) -> int:
        """The response's status code."""
        ...

    def body_headers(self, response: Any) -> tuple[str | None, str | None]:
        """The response's ``Content-Type`` and ``Content-Length`` (None when absent)."""
        ...

    def same_hop(self, request: Any, response: Any) -> bool:
        """Whether ``response`` answers ``request`` on the origin the token was sent to
        (not a redirect elsewhere)."""
        ...

    def for_resend(self, request: Any, response: Any) -> Any:
        """The request to send again, carrying the token already set on ``request``
        (the driver gives up ``response`` before sending it)."""
        ...


def inspectable(content_type: str | None, length: str | None) -> bool | None:
    """Whether a predicate may see a body, from its headers alone: only JSON of at most
    `MAX_INSPECTED_BYTES`. True: read it whole (its length is known to fit); False:
    read no further than the bound (its length is unknown); None: do not read it."""
    media = (content_type or "").partition(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        return None
    if length is None or not length.isdigit():
        return False
    return True if int(length) <= MAX_INSPECTED_BYTES else None


def verdict(auth: ConnectAuthBase, response: Any) -> bool | ReadBody:
    """Whether an answer that `ConnectAuthBase.may_refuse` is a refusal, from its
    status and headers (read through the adapter's binding): True or False, or the
    `ReadBody` that ``refresh_if`` needs to decide (never for a body that cannot be a
    small JSON refusal)."""
    status = auth.status(response)
    if status in auth.refresh_on:
        return True
    if auth.refresh_if is None:
        return False
    whole = inspectable(*auth.body_headers(response))
    if whole is None:
        return False
    return ReadBody(response, MAX_INSPECTED_BYTES, whole, status)


def refusal_flow(
    auth: ConnectAuthBase, binding: Binding, request: Any, response: Any, armed: Armed
) -> Generator[Any, Any, None]:
    """Every decision after a refusal (`ConnectAuthBase.refused`), as effects; the
    answer given back is the last response the driver received. ``armed`` is what
    `ConnectAuthBase.arm` put on ``request`` before it was sent."""
    token, rewind = armed
    if not binding.same_hop(request, response):
        return
    auth.discard(token)
    if rewind is None:
        yield NEED_TOKEN  # refresh now so the next request finds a good token
        auth.not_resent("its body is a one-shot stream (generator or iterator)")
        return
    rewind()
    binding.set_token(request, (yield NEED_TOKEN))
    yield binding.for_resend(request, response)


# -- drivers ------------------------------------------------------------------------------


def advance(flow: Generator[Any, Any, None], value: Any, auth: Any) -> Any:
    """Run ``flow`` in this thread up to its next send: sends ``value`` in, meets every
    token effect on the way, and returns the request to send, or `Done`."""
    while (effect := send_into(flow, value)) is NEED_TOKEN:
        value = auth.token()
    return effect


async def aadvance(flow: Generator[Any, Any, None], value: Any, auth: Any) -> Any:
    """`advance` on an event loop: a cached token is taken without an await; a fetch
    is awaited."""
    while (effect := send_into(flow, value)) is NEED_TOKEN:
        value = auth.cached_token() or await auth.atoken()
    return effect
