"""The refusal flow bound to httpx-style clients (httpx and its httpx2 fork).

httpx's auth flows are generators that yield requests and are sent responses:
each yields what `advance` (or `aadvance`) says to send next.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from typing import Any

from ._adapter import ConnectAuthBase, Rewind, no_rewind, rewinder, same_origin
from ._private import iterator_source
from ._refusal import Done, ReadBody, aadvance, advance, refusal_flow

__all__ = ["HttpxFlow"]


class HttpxFlow(ConnectAuthBase):
    """``ConnectAuth`` for an httpx-style library. Subclasses name the library's
    ``ByteStream`` and the stream classes its responses must hold."""

    _byte_stream: type | tuple[type, ...] = bytes
    _sync_stream: type | tuple[type, ...] = object
    _async_stream: type | tuple[type, ...] = object

    def sync_auth_flow(self, request: Any) -> Generator[Any, Any, None]:
        """httpx's sync hook: arm, send, and run the refusal flow in this thread."""
        armed = self.arm(request)
        response = yield request
        if armed is None or not self.may_refuse(response.status_code):
            return
        if not self.refused(response):
            return
        flow = refusal_flow(self, self, request, response, armed)
        answer = None
        while type(to_send := advance(flow, answer, self)) is not Done:
            answer = yield to_send

    async def async_auth_flow(self, request: Any) -> AsyncGenerator[Any, Any]:
        """httpx's async hook: the same, never blocking the event loop."""
        armed = await self.aarm(request)
        response = yield request
        if armed is None or not self.may_refuse(response.status_code):
            return
        if not await self.arefused(response):
            return
        flow = refusal_flow(self, self, request, response, armed)
        answer = None
        while type(to_send := await aadvance(flow, answer, self)) is not Done:
            answer = yield to_send

    # -- the binding ----------------------------------------------------------------

    def scheme_of(self, request: Any) -> str:
        return str(request.url.scheme)

    def host_and_port(self, request: Any) -> tuple[str, int | None]:
        url = request.url
        return url.host, url.port

    def body_headers(self, response: Any) -> tuple[str | None, str | None]:
        # One pass over the raw pairs: httpx's Headers.get scans them once per name.
        content_type = length = None
        for name, value in response.headers.raw:
            name = name.lower()
            if name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"content-length":
                length = value.decode("latin-1")
        return content_type, length

    def same_hop(self, request: Any, response: Any) -> bool:
        # After a redirect elsewhere, httpx hands the auth flow the other origin's answer.
        return response.request is request or same_origin(
            str(response.request.url), str(request.url)
        )

    def for_resend(self, request: Any, response: Any) -> Any:
        return request  # the original, never response.request: it may be elsewhere

    def rewinder(self, request: Any) -> Rewind | None:
        stream = request.stream
        if isinstance(stream, self._byte_stream):
            return no_rewind
        fields = getattr(stream, "fields", None)
        if fields is not None:  # multipart: httpx itself seeks each file to 0 per send
            files = [getattr(f, "file", None) for f in fields]
            ok = all(f is None or rewinder(f) is not None for f in files)
            return no_rewind if ok else None
        inner = iterator_source(stream)  # IteratorByteStream over a file object
        if inner is not None and hasattr(inner, "read"):
            return rewinder(inner)
        return None

    # -- reading a body for the predicate, within the bound ---------------------------

    def read_body(self, read: ReadBody) -> bytes | None:
        response = read.response
        if read.whole:
            return bytes(response.read())
        stream = response.stream
        rest = iter(stream)
        chunks: list[bytes] = []
        size = 0
        for chunk in rest:
            chunks.append(chunk)
            size += len(chunk)
            if size > read.limit:
                response.stream = self._sync_replay(chunks, rest, stream)
                return None  # too large to be a refusal: the caller reads it all
        response.stream = self._sync_replay(chunks, iter(()), stream)
        return bytes(response.read())

    async def aread_body(self, read: ReadBody) -> bytes | None:
        response = read.response
        if read.whole:
            return bytes(await response.aread())
        stream = response.stream
        rest = stream.__aiter__()
        chunks: list[bytes] = []
        size = 0
        async for chunk in rest:
            chunks.append(chunk)
            size += len(chunk)
            if size > read.limit:
                response.stream = self._async_replay(chunks, rest, stream)
                return None
        response.stream = self._async_replay(chunks, _nothing(), stream)
        return bytes(await response.aread())

    def _sync_replay(self, chunks: list[bytes], rest: Iterator[bytes], stream: Any) -> Any:
        return _replay_class(_SyncReplay, self._sync_stream)(chunks, rest, stream)

    def _async_replay(self, chunks: list[bytes], rest: AsyncIterator[bytes], stream: Any) -> Any:
        return _replay_class(_AsyncReplay, self._async_stream)(chunks, rest, stream)


class _SyncReplay:
    """A response stream that yields the chunks already read, then the rest of the
    original, and closes the original: the caller sees the whole body as if nothing
    had been read."""

    def __init__(self, chunks: list[bytes], rest: Iterator[bytes], original: Any) -> None:
        self._chunks = chunks
        self._rest = rest
        self._original = original

    def __iter__(self) -> Iterator[bytes]:
        yield from self._chunks
        yield from self._rest

    def close(self) -> None:
        self._original.close()


class _AsyncReplay:
    """`_SyncReplay` for async streams."""

    def __init__(self, chunks: list[bytes], rest: AsyncIterator[bytes], original: Any) -> None:
        self._chunks = chunks
        self._rest = rest
        self._original = original

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk
        async for chunk in self._rest:
            yield chunk

    async def aclose(self) -> None:
        await self._original.aclose()


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield b""  # an async generator that yields nothing


@functools.cache
def _replay_class(replay: type, stream_base: type | tuple[type, ...]) -> type:
    """``replay`` as a subclass of the library's stream class (or classes, for an auth
    that serves httpx and httpx2), which httpx checks."""
    bases = stream_base if isinstance(stream_base, tuple) else (stream_base,)
    return type(f"Replay{bases[0].__name__}", (replay, *bases), {})
