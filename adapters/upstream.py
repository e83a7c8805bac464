"""The one place that talks to Poe: an ``httpx.AsyncClient`` with timeouts, and fault mapping.

Everything it raises is an ``OpenAIError`` from ``core.errors``: HTTP errors are mapped by
``core.errors.error_from_upstream_status``; transport faults (timeouts, resets, refused
connections) are mapped here. No key is ever put into a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator, Mapping
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
from core.sse import ServerSentEvent, SSEDecoder
from core.uploads import Upload, attachment_from_upload, upload_headers, upload_url

from .http import note_upstream_status

USER_AGENT = "poe-openai-proxy/0.1"


@contextlib.contextmanager
def upstream_faults() -> Iterator[None]:
    """Turn httpx transport exceptions into OpenAI errors (504 for timeouts, 502/503 otherwise)."""
    try:
        yield
    except httpx.TimeoutException as exc:
        phase = (
            "connecting to" if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout) else "waiting for"
        )
        raise UpstreamTimeoutError(f"Timed out {phase} Poe.") from None
    except httpx.ConnectError:
        raise connection_refused() from None
    except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
        raise connection_reset() from None
    except httpx.HTTPError as exc:
        raise UpstreamError(f"Talking to Poe failed ({type(exc).__name__}).") from None


class PoeUpstream:
    """Sends requests to Poe. One instance per app; the client is made lazily, per event loop."""

    def __init__(self, settings: Settings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._settings = settings
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        # A pooled connection belongs to the loop that opened it; some hosts (Mangum on Lambda)
        # may run each invocation on a new loop, so a new loop gets a new client.
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            timeout = httpx.Timeout(
                connect=self._settings.connect_timeout,
                read=self._settings.read_timeout,
                write=self._settings.read_timeout,
                pool=self._settings.connect_timeout,
            )
            self._client = httpx.AsyncClient(
                transport=self._transport,
                timeout=timeout,
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
                headers={"User-Agent": USER_AGENT},
                follow_redirects=False,
            )
            self._loop = loop
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            with contextlib.suppress(RuntimeError):  # its loop may be gone already
                await self._client.aclose()
            self._client = None

    def url(self, path: str) -> str:
        return f"{self._settings.poe_base_url}{path}"

    @contextlib.asynccontextmanager
    async def stream_events(
        self, path: str, api_key: str, body: Mapping[str, Any]
    ) -> AsyncIterator[AsyncIterator[ServerSentEvent]]:
        """POST ``body`` and yield the response's server-sent events as they arrive.

        Raises the mapped ``OpenAIError`` before yielding if Poe answers with an error status.
        Leaving the block closes the upstream connection, which cancels the call at Poe.
        """
        request = self.client.build_request(
            "POST",
            self.url(path),
            content=json.dumps(body, separators=(",", ":")).encode(),
            headers={
                "Authorization": f"Bearer {api_key}",
                "Content-Type": "application/json",
                "Accept": "text/event-stream",
            },
        )
        with upstream_faults():
            response = await self.client.send(request, stream=True)
        note_upstream_status(response.status_code)
        try:
            if response.status_code != 200:
                raise await self._error_from(response, api_key)
            yield self._events(response)
        finally:
            await response.aclose()

    async def _events(self, response: httpx.Response) -> AsyncIterator[ServerSentEvent]:
        decoder = SSEDecoder()
        with upstream_faults():
            async for chunk in response.aiter_bytes():
                for event in decoder.feed(chunk):
                    yield event
        for event in decoder.close():
            yield event

    async def request_json(
        self, method: str, path: str, api_key: str, body: Mapping[str, Any] | None = None
    ) -> Any:
        """A plain JSON call (models, embeddings). Returns the parsed body of a 200 answer."""
        headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json"}
        content = None
        if body is not None:
            content = json.dumps(body, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        with upstream_faults():
            response = await self.client.request(method, self.url(path), content=content, headers=headers)
        return await self._json_answer(response, api_key)

    async def upload(self, upload: Upload, api_key: str) -> dict[str, Any]:
        """Send inline media to Poe's file upload API; returns the Poe ``Attachment`` dict."""
        part = upload.part
        with upstream_faults():
            response = await self.client.post(
                upload_url(self._settings.poe_upload_url),
                files={"file": (part.name, upload.data, part.mime_type)},
                headers=upload_headers(api_key),
            )
        return attachment_from_upload(await self._json_answer(response, api_key), upload)

    async def _json_answer(self, response: httpx.Response, api_key: str) -> Any:
        note_upstream_status(response.status_code)
        if response.status_code != 200:
            raise await self._error_from(response, api_key)
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
