"""The ASGI app: routes, authentication, CORS and streaming around the sans-I/O core.

``app`` (settings from the environment) is what uvicorn and every platform adapter serve;
``create_app`` builds one from explicit settings, which is how the tests make theirs.

Reading one chat request from top to bottom: ``Proxy.chat_completions`` reads and validates
the body (``core.chat_request``), opens one upstream call per choice (``ChoiceCall``), and
either streams the converters' chunks as SSE or waits and builds one ``chat.completion``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import quote

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.auth import resolve_poe_key
from core.chat_request import ChatRequest, QueryIds, openai_compat_body, parse_chat_request, poe_query
from core.chat_stream import (
    CompletionMeta,
    OpenAIStreamToChatChunks,
    PoeStreamToChatChunks,
    chat_completion,
    total_usage,
    usage_chunk,
)
from core.errors import MethodNotAllowedError, NotFoundError, OpenAIError
from core.settings import Settings
from core.sse import DONE_EVENT, encode_json_event
from core.usage import estimate_prompt_tokens
from core.validate import parse_json_object

from .calls import ChoiceCall, Converter, merge, run_all
from .http import OpenCORSMiddleware, cancel_on_disconnect, error_response, read_body
from .upstream import PoeUpstream

log = logging.getLogger("poe_openai_proxy")

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class Proxy:
    """The route handlers, sharing one ``Settings`` and one ``PoeUpstream``."""

    def __init__(self, settings: Settings, upstream: PoeUpstream) -> None:
        self.settings = settings
        self.upstream = upstream

    # -- chat -----------------------------------------------------------------------------

    async def chat_completions(self, request: Request) -> Response:
        api_key = resolve_poe_key(request.headers.get("authorization"), self.settings)
        body = parse_json_object(await read_body(request, self.settings.max_body_bytes))
        chat = parse_chat_request(body, self.settings, max_media_bytes=self.settings.max_body_bytes)
        note(request, model=chat.bot, stream=chat.stream)
        meta = CompletionMeta(
            id=f"chatcmpl-{uuid.uuid4().hex}",
            created=int(time.time()),
            model=chat.bot,
            include_usage=chat.stream and chat.include_usage,
        )
        calls = [self._choice_call(chat, meta, index, api_key) for index in range(chat.n)]
        prompt_tokens = estimate_prompt_tokens(chat.prompt_texts())
        if not chat.stream:
            await cancel_on_disconnect(request, run_all(calls))
            usage = total_usage([c.converter for c in calls], prompt_tokens)
            return JSONResponse(chat_completion(meta, [c.converter for c in calls], usage))

        chunks = merge(calls)
        # Wait for the first chunk before answering: an upstream that refuses the call (401,
        # 429, an error event) then gets a real HTTP error status instead of a broken stream.
        try:
            first = await anext(chunks)
        except StopAsyncIteration:
            first = []
        return StreamingResponse(
            self._sse(chat, meta, first, chunks, calls, prompt_tokens),
            media_type="text/event-stream",
            headers=SSE_HEADERS,
        )

    def _choice_call(self, chat: ChatRequest, meta: CompletionMeta, index: int, api_key: str) -> ChoiceCall:
        options: dict[str, Any] = {
            "index": index,
            "stop": chat.stop,
            "max_tokens": chat.max_tokens,
            "streaming": chat.stream,
        }
        converter: Converter
        if self.settings.backend == "openai":
            converter = OpenAIStreamToChatChunks(meta, **options)
            return ChoiceCall(
                self.upstream, "/v1/chat/completions", api_key, openai_compat_body(chat), converter
            )
        converter = PoeStreamToChatChunks(meta, **options)
        body = poe_query(chat, QueryIds.from_hex(uuid.uuid4().hex, chat.user))
        return ChoiceCall(self.upstream, f"/bot/{quote(chat.bot, safe='')}", api_key, body, converter)

    async def _sse(
        self,
        chat: ChatRequest,
        meta: CompletionMeta,
        first: list[dict[str, Any]],
        rest: AsyncIterator[list[dict[str, Any]]],
        calls: list[ChoiceCall],
        prompt_tokens: int,
    ) -> AsyncIterator[bytes]:
        try:
            if first:
                yield b"".join(encode_json_event(c) for c in first)
            async for chunks in rest:
                yield b"".join(encode_json_event(c) for c in chunks)
            if meta.include_usage:
                yield encode_json_event(
                    usage_chunk(meta, total_usage([c.converter for c in calls], prompt_tokens))
                )
            yield DONE_EVENT
        except OpenAIError as exc:
            # Mid-stream failure: an error event (the OpenAI SDK raises it) and no [DONE].
            log.warning("stream failed: %s", exc.message)
            yield encode_json_event(exc.to_dict())
        except Exception:
            log.exception("stream failed unexpectedly")
            yield encode_json_event(
                OpenAIError("The proxy failed while streaming.", code="internal_error").to_dict()
            )
        finally:
            aclose = getattr(rest, "aclose", None)
            if aclose is not None:
                await aclose()


def note(request: Request, **fields: Any) -> None:
    """Add fields to this request's log line."""
    record = request.scope.get("proxy.log")
    if isinstance(record, dict):
        record.update(fields)


class RequestLogMiddleware:
    """One structured log line per request, and an ``x-request-id`` on every response.

    Logged: method, path, status, duration, model, stream, request id. Never bodies or keys.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = f"req_{uuid.uuid4().hex}"
        record: dict[str, Any] = {"request_id": request_id, "method": scope["method"], "path": scope["path"]}
        scope["proxy.log"] = record
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                record["status"] = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # A bug, not a client's or Poe's fault: still an OpenAI-shaped 500, still with CORS.
            log.exception("unhandled error")
            if "status" in record:
                raise
            error = OpenAIError("The proxy failed unexpectedly.", code="internal_error")
            await error_response(error, request_id)(scope, receive, send_with_id)
            record["status"] = 500
        finally:
            record["duration_ms"] = round((time.perf_counter() - started) * 1000, 1)
            log.info(json.dumps(record, separators=(",", ":")))


async def _openai_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OpenAIError)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        return error_response(
            MethodNotAllowedError(f"Method {request.method} is not allowed on {request.url.path}.")
        )
    return error_response(
        NotFoundError(f"Unknown request URL: {request.method} {request.url.path}.", code="unknown_url")
    )


def create_app(settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None) -> Starlette:
    """An app for ``settings``; ``transport`` lets tests put a fault-injecting Poe underneath."""
    upstream = PoeUpstream(settings, transport)
    proxy = Proxy(settings, upstream)
    routes = [
        Route("/v1/chat/completions", proxy.chat_completions, methods=["POST"]),
        Route("/chat/completions", proxy.chat_completions, methods=["POST"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await upstream.aclose()

    app = Starlette(
        routes=routes,
        middleware=[Middleware(OpenCORSMiddleware), Middleware(RequestLogMiddleware)],
        exception_handlers={OpenAIError: _openai_error, HTTPException: _http_error},
        lifespan=lifespan,
    )
    app.state.proxy = proxy
    return app


def configure_logging(level: str) -> None:
    """Request lines go to stderr unless the host already set up logging (uvicorn does not)."""
    if not log.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        log.addHandler(handler)
    log.setLevel(level)


def app_from_environ(environ: Mapping[str, str] | None = None) -> Starlette:
    """The app every entry point serves: settings from the environment."""
    settings = Settings.from_mapping(os.environ if environ is None else environ)
    configure_logging(settings.log_level)
    return create_app(settings)


app = app_from_environ()
