"""The one refusal flow of every adapter: attach a token, send, judge the answer, and
on a refusal refresh once and resend once.

`refusal_flow` decides everything and does no I/O: it yields effects (`NEED_TOKEN`,
a `ReadBody`, or a request to send) and is sent their results. Two drivers run it:
`sending` in a thread and `asending` on an event loop. Both are generators that
yield only the requests to send, so httpx's auth flows are the drivers themselves,
and clients that send with a function (aiohttp's handler, a requests connection)
pump them with `pump` or `apump`. A client module is a `Binding`: how to read a
status and a header, set the token, replay a body and send again.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from ._flight import Done, send_into

if TYPE_CHECKING:
    from ._adapter import ConnectAuthBase, Rewind

__all__ = [
    "MAX_INSPECTED_BYTES",
    "NEED_TOKEN",
    "Binding",
    "ReadBody",
    "apump",
    "asending",
    "body_limit",
    "pump",
    "refusal_flow",
    "sending",
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
    """Effect: the driver reads the body of ``response`` if it is at most ``limit``
    bytes and sends it back, or sends back None; either way the caller can still read
    the whole body. ``whole``: the length is known to be within ``limit``."""

    response: Any
    limit: int
    whole: bool


class Binding(Protocol):
    """What a client module tells the flow about its requests and responses."""

    def url_parts(self, request: Any) -> tuple[str, str, int | None]:
        """``(scheme, host, port)`` of the request."""
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

    def header(self, response: Any, name: str) -> str | None:
        """One header of the response (``name`` in lower case), or None."""
        ...

    def same_hop(self, request: Any, response: Any) -> bool:
        """Whether ``response`` answers ``request`` on the origin the token was sent to
        (not a redirect elsewhere)."""
        ...

    def for_resend(self, request: Any, response: Any) -> Any:
        """Give up ``response`` (so its connection can be reused) and return the request
        to send again, carrying the token already set on ``request``."""
        ...


def body_limit(content_type: str | None, content_length: str | None) -> ReadBody | None:
    """Whether a predicate may see a body, from its headers alone: only JSON of at most
    `MAX_INSPECTED_BYTES` (or of unknown length, read no further than that)."""
    media = (content_type or "").partition(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        return None
    if content_length is None:
        return ReadBody(None, MAX_INSPECTED_BYTES, whole=False)
    try:
        size = int(content_length)
    except ValueError:
        return ReadBody(None, MAX_INSPECTED_BYTES, whole=False)
    if size > MAX_INSPECTED_BYTES:
        return None
    return ReadBody(None, MAX_INSPECTED_BYTES, whole=True)


def refusal_flow(
    auth: ConnectAuthBase, binding: Binding, request: Any
) -> Generator[Any, Any, None]:
    """Every decision of one request, as effects; the answer given back is the last
    response the driver received."""
    if not auth.attaches(*binding.url_parts(request)):
        yield request
        return
    rewind = binding.rewinder(request)
    token = yield NEED_TOKEN
    binding.set_token(request, token)
    response = yield request
    status = binding.status(response)
    if status not in auth.refresh_on:
        predicate = auth.refresh_if
        if predicate is None:
            return  # the common case
        read = body_limit(binding.header(response, "content-type"), binding.header(
            response, "content-length"))  # fmt: skip
        if read is None:
            return
        body = yield read._replace(response=response)
        if body is None or not predicate(status, body):
            return
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


def sending(
    flow: Generator[Any, Any, None],
    token: Callable[[], str],
    read: Callable[[ReadBody], bytes | None],
) -> Generator[Any, Any, None]:
    """Run ``flow`` in this thread; yields the requests to send, is sent their answers."""
    value: Any = None
    while type(effect := send_into(flow, value)) is not Done:
        value = (yield effect) if _is_send(effect) else _result(effect, token, read)


async def asending(
    flow: Generator[Any, Any, None],
    token: Callable[[], Awaitable[str]],
    read: Callable[[ReadBody], Awaitable[bytes | None]],
) -> AsyncGenerator[Any, Any]:
    """`sending` on an event loop: tokens and bodies are awaited."""
    value: Any = None
    while type(effect := send_into(flow, value)) is not Done:
        value = (yield effect) if _is_send(effect) else await _result(effect, token, read)


def pump(driver: Generator[Any, Any, None], response: Any, send: Callable[[Any], Any]) -> Any:
    """Feed ``response`` to a started driver, sending what it asks; the last response."""
    while type(request := send_into(driver, response)) is not Done:
        response = send(request)
    return response


async def apump(
    driver: AsyncGenerator[Any, Any], response: Any, send: Callable[[Any], Awaitable[Any]]
) -> Any:
    """`pump` for `asending`."""
    while type(request := await _asend_into(driver, response)) is not Done:
        response = await send(request)
    return response


async def _asend_into(generator: AsyncGenerator[Any, Any], value: Any) -> Any:
    """`send_into` for an async generator (which returns nothing)."""
    try:
        return await generator.asend(value)
    except StopAsyncIteration:
        return Done(None)


def _is_send(effect: Any) -> bool:
    return effect is not NEED_TOKEN and type(effect) is not ReadBody


def _result(effect: Any, token: Callable[[], Any], read: Callable[[ReadBody], Any]) -> Any:
    """What a token or body effect gets (an awaitable, for the async driver)."""
    return token() if effect is NEED_TOKEN else read(effect)
