"""The driver's ``Upstream`` over httpx's transport interface: how the ASGI app reaches Poe.

Each call core asks for becomes an ``httpx.Request`` handed to an ``httpx.AsyncBaseTransport``:
in production ``HTTP1Transport`` (a keep-alive pool, ``adapters/transport.py``), in the tests
``httpx.MockTransport`` for fault injection. There is deliberately no ``httpx.AsyncClient`` in
between: of what it adds, the proxy wants no redirects and no auth flow, must not keep cookies
(every caller brings their own Poe key, so a cookie one caller's call set must never ride along
on another's), and it cost ~65 us of CPU per call over handing the request to the transport
directly. Timeouts travel in the request's ``timeout`` extension, as ``AsyncClient`` sends them.

httpx's exceptions become ``CallFailed`` with the reason core maps to the client's error.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import zlib
from collections.abc import AsyncIterator, Mapping

import httpx

from core.exchange import FailureReason, StartCall
from core.settings import Settings

from .driver import CallFailed
from .transport import HTTP1Transport, NotPublic


def failure_reason(exc: httpx.HTTPError) -> FailureReason:
    if isinstance(exc, NotPublic):
        return "not_public"
    if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
        return "connect_timeout"
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        return "refused"
    return "reset"  # the connection broke, or what came back is not HTTP


class HttpxUpstream:
    """Sends core's calls over one transport (one keep-alive pool) per app."""

    def __init__(self, settings: Settings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.transport = transport if transport is not None else HTTP1Transport()
        self._timeout = {
            "connect": settings.connect_timeout,
            "read": settings.read_timeout,
            "write": settings.read_timeout,
            "pool": settings.connect_timeout,
        }
        self._draining: set[asyncio.Task[None]] = set()

    async def aclose(self) -> None:
        await self.transport.aclose()

    @staticmethod
    @functools.lru_cache(maxsize=512)
    def _url(url: str) -> httpx.URL:  # parsing one costs ~7 us; calls go to a few URLs (one per bot)
        return httpx.URL(url)

    async def send(self, call: StartCall) -> HttpxResponse:
        url = self._url(call.url)
        # Every header given as bytes, the body as a stream: httpx takes them as they are, where
        # ``content=`` would build the headers twice over.
        headers = [(b"host", url.netloc), *((k.encode(), v.encode()) for k, v in call.headers.items())]
        body = call.body or b""
        if call.body is not None:
            headers.append((b"content-length", b"%d" % len(body)))
        request = httpx.Request(
            call.method,
            url,
            headers=headers,
            stream=httpx.ByteStream(body),
            extensions={"timeout": self._timeout, "public": call.public},
        )
        try:
            response = await self.transport.handle_async_request(request)
        except httpx.HTTPError as exc:
            raise CallFailed(failure_reason(exc)) from None
        return HttpxResponse(response, self._draining)


class HttpxResponse:
    __slots__ = ("_draining", "_response", "status")

    def __init__(self, response: httpx.Response, draining: set[asyncio.Task[None]]) -> None:
        self._response = response
        self._draining = draining
        self.status = response.status_code

    @property
    def headers(self) -> Mapping[str, str]:
        return self._response.headers

    def chunks(self) -> AsyncIterator[bytes]:
        response = self._response
        stream = response.stream
        assert isinstance(stream, httpx.AsyncByteStream)
        encoding = response.headers.get("content-encoding", "").strip().lower()
        if encoding in ("", "identity"):
            return _Body(aiter(stream))
        if encoding in _ZLIB_WINDOWS:  # compressed anyway (nothing asks for it): decoded in pieces
            return _Body(_decoded(aiter(stream), _ZLIB_WINDOWS[encoding]))
        return _Body(response.aiter_bytes())  # another coding: httpx decodes it (or refuses)

    async def aclose(self) -> None:
        await self._response.aclose()

    def finish_in_background(self, seconds: float) -> None:
        finish = getattr(self._response.stream, "finish_in_background", None)
        if finish is not None:  # our transport: the connection goes back to the pool by itself
            finish(seconds)
            return
        task = asyncio.get_running_loop().create_task(self._drain(seconds))
        self._draining.add(task)
        task.add_done_callback(self._draining.discard)

    async def _drain(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError, httpx.HTTPError):
            async with asyncio.timeout(seconds):
                async for _ in self._response.aiter_raw():
                    pass
        await self._response.aclose()


# zlib's window bits for each coding: gzip's header, or zlib's (a raw deflate stream is tried
# when the first bytes have no zlib header, as httpx tries it).
_ZLIB_WINDOWS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
DECODED_PIECE = 64 * 1024


async def _decoded(raw: AsyncIterator[bytes], window: int) -> AsyncIterator[bytes]:
    """A compressed body decoded at most ``DECODED_PIECE`` bytes at a time, each piece handed on
    before the next is made: core counts them against its limits as they come, so a small body
    that decompresses to a gigabyte never stands in memory (httpx decodes a whole read at once)."""
    decoder = zlib.decompressobj(window)
    started = False
    async for data in raw:
        while data:
            try:
                piece = decoder.decompress(data, DECODED_PIECE)
            except zlib.error:
                if started or window != zlib.MAX_WBITS:
                    raise httpx.DecodingError(
                        "The body does not decode as its Content-Encoding says."
                    ) from None
                decoder, window = zlib.decompressobj(-zlib.MAX_WBITS), -zlib.MAX_WBITS  # raw deflate
                continue
            started = True
            data = decoder.unconsumed_tail
            if piece:
                yield piece
    rest = decoder.flush()
    if rest:
        yield rest


class _Body:
    """A response body's chunks, with httpx's errors turned into ``CallFailed``."""

    __slots__ = ("_chunks",)

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks

    def __aiter__(self) -> _Body:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self._chunks.__anext__()
        except httpx.HTTPError as exc:
            raise CallFailed(failure_reason(exc)) from None
