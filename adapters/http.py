"""HTTP plumbing for the ASGI app: CORS on everything, bounded bodies, OpenAI-shaped errors."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from contextvars import ContextVar
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.errors import OpenAIError, RequestTooLargeError
from core.exchange import CORS_HEADERS

T = TypeVar("T")

_CORS_RAW = [(k.encode(), v.encode()) for k, v in CORS_HEADERS.items()]


class OpenCORSMiddleware:
    """``OPTIONS`` on any path is a 204 preflight; every response allows any origin.

    The proxy is called from browsers (chat UIs) with the user's own key, so there is no origin
    to protect; Starlette's CORSMiddleware would only answer "real" preflights.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS":
            await send({"type": "http.response.start", "status": 204, "headers": _CORS_RAW})
            await send({"type": "http.response.body", "body": b""})
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [
                    (k, v) for k, v in _CORS_RAW if k not in present
                ]
            await send(message)

        await self.app(scope, receive, send_with_cors)


# The log record of the request being served; set by the app's log middleware. Tasks started
# for the request (n > 1, streaming) inherit it, and all write into the same dict.
request_log: ContextVar[dict[str, Any] | None] = ContextVar("poe_proxy_request_log", default=None)


def note(**fields: Any) -> None:
    """Add fields to the current request's log line (no-op outside a request)."""
    record = request_log.get()
    if record is not None:
        record.update(fields)


def note_upstream_status(status: int) -> None:
    """Record Poe's HTTP status; with several calls (``n > 1``) the worst one is kept."""
    record = request_log.get()
    if record is not None and status >= record.get("upstream_status", 0):
        record["upstream_status"] = status


def error_response(error: OpenAIError, request_id: str | None = None) -> JSONResponse:
    headers = dict(error.headers)
    if request_id:
        headers["x-request-id"] = request_id
    return JSONResponse(error.to_dict(), status_code=error.status, headers=headers)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise RequestTooLargeError(f"The request body is larger than the limit of {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestTooLargeError(f"The request body is larger than the limit of {limit} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


async def cancel_on_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Run ``work``; if the client goes away first, cancel it (and so its upstream calls).

    Call only after the body has been read: from then on the next ASGI message is the disconnect.
    """
    task: asyncio.Future[T] = asyncio.ensure_future(work)

    async def watch() -> None:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                task.cancel()
                return

    watcher = asyncio.ensure_future(watch())
    try:
        return await task
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await watcher
