"""HTTP plumbing for the ASGI app: the edge layer (CORS, request ids, logs), bounded bodies, errors."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, TypeVar

from starlette import responses
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.errors import OpenAIError, RequestTooLargeError
from core.exchange import CORS_HEADERS

T = TypeVar("T")
log = logging.getLogger("poe_openai_proxy")


def new_token() -> str:
    """32 random lowercase hex digits, for ids (uuid4().hex, without building a UUID)."""
    return os.urandom(16).hex()


class Endpoint:
    """A route's ASGI app from a ``handler(request) -> response``: the request in, its response out.

    Starlette wraps a plain function this way too (``request_response``), but adds a second
    exception layer per call that the app's ExceptionMiddleware already provides (OpenAIError
    and HTTPException are handled there, identically): measured, ~8 us of a ~170 us call. Being
    a class instance, not a function, tells Starlette's Route to take it as it is.
    """

    def __init__(self, handler: Callable[[Request], Awaitable[responses.Response]]) -> None:
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.handler(Request(scope, receive, send))
        await response(scope, receive, send)


class JSONResponse(responses.JSONResponse):
    """Starlette's, with its encoder made once: ``json.dumps`` with options builds one per call."""

    _encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))

    def render(self, content: Any) -> bytes:
        return self._encoder.encode(content).encode()


_CORS_RAW = [(k.encode(), v.encode()) for k, v in CORS_HEADERS.items()]


class EdgeMiddleware:
    """What every request and response goes through, in one layer (each layer costs every call):

    * ``OPTIONS`` on any path is a 204 preflight, and every response allows any origin. The proxy
      is called from browsers (chat UIs) with the user's own key, so there is no origin to
      protect; Starlette's CORSMiddleware would only answer "real" preflights. No response sets
      CORS headers of its own: this layer owns them.
    * Every response carries an ``x-request-id``, and each request gets one structured log line:
      method, path, status, duration, model, stream, Poe's status, request id; never bodies or
      keys.
    * A bug still answers an OpenAI-shaped 500 (with CORS); a client that hung up is logged as 499.
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
        request_id = f"req_{new_token()}"
        record: dict[str, Any] = {"request_id": request_id, "method": scope["method"], "path": scope["path"]}
        token = request_log.set(record)
        started = time.perf_counter()
        edge_headers = [*_CORS_RAW, (b"x-request-id", request_id.encode())]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                record["status"] = message["status"]
                message["headers"] = [*message.get("headers", ()), *edge_headers]
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except ClientDisconnected:
            record.setdefault("status", 499)  # nginx's "client closed request": nothing to send
        except Exception:
            # A bug, not a client's or Poe's fault: still an OpenAI-shaped 500, still with CORS.
            log.exception("unhandled error")
            if "status" in record:
                raise
            error = OpenAIError("The proxy failed unexpectedly.", code="internal_error")
            await error_response(error)(scope, receive, send_with_headers)
        finally:
            request_log.reset(token)
            if log.isEnabledFor(logging.INFO):
                record["duration_ms"] = round((time.perf_counter() - started) * 1000, 1)
                log.info(json.dumps(record, separators=(",", ":")))


# The log record of the request being served; set by EdgeMiddleware. Tasks started
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


def error_response(error: OpenAIError) -> JSONResponse:
    return JSONResponse(error.to_dict(), status_code=error.status, headers=error.headers)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise RequestTooLargeError(f"The request body is larger than the limit of {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    while True:  # the ASGI messages themselves: Request.stream() would add a generator per call
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise RequestTooLargeError(f"The request body is larger than the limit of {limit} bytes.")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class ClientDisconnected(Exception):  # an event, not an error
    """The client hung up before its answer was ready; there is no one left to answer."""


async def cancel_on_disconnect(request: Request, work: Awaitable[T], *, grace: float = 0.05) -> T:
    """Await ``work``; if the client goes away first, cancel it (and so its upstream calls) and
    raise ``ClientDisconnected``.

    ``work`` runs in the calling task. Watching for the disconnect takes a task of its own, made
    only once ``work`` has run for ``grace`` seconds: a call over sooner pays for no task, and a
    client that left in the meantime is noticed then (its disconnect message waits for us). Call
    only after the body has been read: from then on the next ASGI message is the disconnect.
    """
    current = asyncio.current_task()
    assert current is not None
    loop = asyncio.get_running_loop()
    left = False
    watcher: asyncio.Task[None] | None = None

    async def watch() -> None:
        nonlocal left
        while (await request.receive())["type"] != "http.disconnect":
            pass
        left = True
        current.cancel()

    def start_watching() -> None:
        nonlocal watcher
        watcher = loop.create_task(watch())

    timer = loop.call_later(grace, start_watching)
    try:
        return await work
    except asyncio.CancelledError:
        if left and current.uncancel() == 0:  # our cancellation, not the server's
            raise ClientDisconnected from None
        raise
    finally:
        timer.cancel()
        if watcher is not None:
            watcher.cancel()
