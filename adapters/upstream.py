"""The one place that talks to Poe: httpx requests through one transport, and fault mapping.

Requests are ``httpx.Request`` objects handed to an ``httpx.AsyncBaseTransport``: in production
``HTTP1Transport`` (a keep-alive pool), in the tests ``httpx.MockTransport`` for fault
injection. There is deliberately no ``httpx.AsyncClient`` in between: of what it adds, the proxy
wants no redirects and no auth flow, must not keep cookies (every caller brings their own Poe
key, so a cookie one caller's call set must never ride along on another's), and it cost ~65 us
of CPU per call over handing the request to the transport directly (measured with a transport
that answers at once). Timeouts travel in the request's ``timeout`` extension, as
``AsyncClient`` would send them.

Everything it raises is an ``OpenAIError`` from ``core.errors``: HTTP errors are mapped by
``core.errors.error_from_upstream_status``; transport faults (timeouts, resets, refused
connections) are mapped here. No key is ever put into a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from typing import Any

import httpx

from core.errors import (
    UPSTREAM_ERROR_BODY_LIMIT,
    OpenAIError,
    UpstreamError,
    UpstreamTimeoutError,
    connection_refused,
    connection_reset,
    error_from_upstream_status,
    not_json,
)
from core.settings import Settings
from core.sse import dumps
from core.uploads import Upload, attachment_from_upload, upload_headers, upload_url

from .http import note_upstream_status
from .transport import HTTP1Transport

USER_AGENT = "poe-openai-proxy/0.1"


def openai_error_for(exc: httpx.HTTPError) -> OpenAIError:
    """The OpenAI error for an httpx transport failure (504 for timeouts, 502/503 otherwise)."""
    if isinstance(exc, httpx.TimeoutException):
        connecting = isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout)
        return UpstreamTimeoutError(f"Timed out {'connecting to' if connecting else 'waiting for'} Poe.")
    if isinstance(exc, httpx.ConnectError):
        return connection_refused()
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
        return connection_reset()
    return UpstreamError(f"Talking to Poe failed ({type(exc).__name__}).")


class upstream_faults:  # used as a function: ``with upstream_faults():``
    """Turn httpx transport exceptions into OpenAI errors. A class, not ``@contextmanager``:
    it wraps every upstream call twice, and a generator-based manager costs ~1.5 us each time."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, httpx.HTTPError):
            raise openai_error_for(exc) from None


def raw_chunks(response: httpx.Response) -> AsyncIterable[bytes]:
    """A streamed response's body as its bytes arrive: the transport's own stream, unless the
    server compressed it anyway (then httpx decodes it)."""
    if any(name.lower() == b"content-encoding" for name, _ in response.headers.raw):
        return response.aiter_bytes()
    assert isinstance(response.stream, AsyncIterable)
    return response.stream


async def finish_body(response: httpx.Response, chunks: AsyncIterator[bytes], seconds: float) -> None:
    """The caller has all it wants of a body whose end is on its way: let the connection be
    reused. A transport that can (``stream.finish_in_background``) lets the end arrive after the
    caller has moved on; otherwise what is left is read here, for at most ``seconds``."""
    finish_in_background = getattr(response.stream, "finish_in_background", None)
    if finish_in_background is not None:
        finish_in_background(seconds)
        return
    with contextlib.suppress(TimeoutError, httpx.HTTPError):
        async with asyncio.timeout(seconds):
            async for _ in chunks:
                pass


class PoeUpstream:
    """Sends requests to Poe over one transport (one keep-alive pool) per app."""

    def __init__(self, settings: Settings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._settings = settings
        self._transport = transport if transport is not None else HTTP1Transport()
        self._timeout = {
            "connect": settings.connect_timeout,
            "read": settings.read_timeout,
            "write": settings.read_timeout,
            "pool": settings.connect_timeout,
        }
        # Parsing a URL costs ~7 us; a call's URL is one of a few paths (one per bot).
        self.url = functools.lru_cache(maxsize=512)(self._url)

    async def aclose(self) -> None:
        await self._transport.aclose()

    def _url(self, path: str) -> httpx.URL:
        return httpx.URL(f"{self._settings.poe_base_url}{path}")

    def _request(
        self, method: str, url: httpx.URL | str, headers: dict[str, str], **body: Any
    ) -> httpx.Request:
        headers["User-Agent"] = USER_AGENT
        return httpx.Request(method, url, headers=headers, extensions={"timeout": self._timeout}, **body)

    async def _send(self, request: httpx.Request) -> httpx.Response:
        with upstream_faults():
            response = await self._transport.handle_async_request(request)
        note_upstream_status(response.status_code)
        return response

    async def open_stream(self, path: str, api_key: str, body: Mapping[str, Any]) -> httpx.Response:
        """POST ``body``; the response, once Poe has answered 200 (else the mapped ``OpenAIError``).

        Read it with ``raw_chunks`` inside ``upstream_faults()``, and ``aclose`` it: before the
        body's end that closes the connection, which cancels the call at Poe; after it, the
        connection goes back to the pool.
        """
        content = dumps(body).encode()
        url = self.url(path)
        # Every header given as bytes, body as a stream: httpx takes them as they are, where
        # ``content=`` would build the headers twice over (~7 us of a call's ~150).
        request = httpx.Request(
            "POST",
            url,
            headers=[
                (b"Host", url.netloc),
                (b"User-Agent", USER_AGENT.encode()),
                (b"Authorization", b"Bearer " + api_key.encode("ascii")),  # ASCII: core.auth checked
                (b"Content-Type", b"application/json"),
                (b"Accept", b"text/event-stream"),
                (b"Accept-Encoding", b"identity"),  # tokens must not wait in a compressor's buffer
                (b"Content-Length", b"%d" % len(content)),
            ],
            stream=httpx.ByteStream(content),
            extensions={"timeout": self._timeout},
        )
        response = await self._send(request)
        if response.status_code != 200:
            try:
                raise await self._error_from(response, api_key)
            finally:
                await response.aclose()
        return response

    async def request_json(
        self, method: str, path: str, api_key: str, body: Mapping[str, Any] | None = None
    ) -> Any:
        """A plain JSON call (models, embeddings). Returns the parsed body of a 200 answer."""
        headers = {
            "Authorization": f"Bearer {api_key}",
            "Accept": "application/json",
            "Accept-Encoding": "gzip, deflate",
        }
        content = None
        if body is not None:
            content = dumps(body).encode()
            headers["Content-Type"] = "application/json"
        return await self._json_answer(
            self._request(method, self.url(path), headers, content=content), api_key
        )

    async def upload(self, upload: Upload, api_key: str) -> dict[str, Any]:
        """Send inline media to Poe's file upload API; returns the Poe ``Attachment`` dict."""
        part = upload.part
        request = self._request(
            "POST",
            upload_url(self._settings.poe_upload_url),
            upload_headers(api_key),
            files={"file": (part.name, upload.data, part.mime_type)},
        )
        return attachment_from_upload(await self._json_answer(request, api_key), upload)

    async def _json_answer(self, request: httpx.Request, api_key: str) -> Any:
        response = await self._send(request)
        try:
            if response.status_code != 200:
                raise await self._error_from(response, api_key)
            with upstream_faults():
                await response.aread()
        finally:
            await response.aclose()
        try:
            return response.json()
        except ValueError:
            raise not_json() from None

    async def _error_from(self, response: httpx.Response, api_key: str) -> OpenAIError:
        raw = b""
        with contextlib.suppress(httpx.HTTPError):
            async for chunk in response.aiter_bytes():
                raw += chunk
                if len(raw) >= UPSTREAM_ERROR_BODY_LIMIT:
                    break
        return error_from_upstream_status(
            response.status_code, raw, headers=response.headers, secrets=(api_key,)
        )
