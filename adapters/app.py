"""The ASGI app: routes, authentication, CORS and streaming around the sans-I/O core.

``app`` (settings from the environment) is what uvicorn and every platform adapter serve;
``create_app`` builds one from explicit settings, which is how the tests make theirs.

Reading one chat request from top to bottom: ``Proxy.chat_completions`` reads and validates
the body (``core.chat_request``), opens one upstream call per choice (``ChoiceCall``), and
either streams the converters' chunks as SSE or waits and builds one ``chat.completion``.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from core.auth import resolve_poe_key
from core.chat_request import ChatRequest, QueryIds, parse_chat_request
from core.chat_stream import (
    CompletionMeta,
    Converter,
    chat_completion,
    total_usage,
    usage_chunk,
)
from core.completions import (
    completion_chunk_from_chat,
    completion_usage_chunk,
    echo_chunks,
    parse_completion_request,
    text_completion,
)
from core.embeddings import join_embeddings, parse_embeddings_request, upstream_batches
from core.errors import MethodNotAllowedError, NotFoundError, OpenAIError
from core.exchange import SSE_HEADERS, choice_call
from core.models import ModelListCache, find_model, openai_model_list
from core.settings import Settings
from core.sse import DONE_EVENT, encode_json_event
from core.structured import json_answer_problem, with_json_correction
from core.uploads import Upload, pending_uploads
from core.usage import estimate_prompt_tokens
from core.validate import parse_json_object

from .calls import ChoiceCall, gather_or_fail, merge, run_all
from .http import (
    EdgeMiddleware,
    Endpoint,
    JSONResponse,
    cancel_on_disconnect,
    error_response,
    log,
    new_token,
    note,
    read_body,
)
from .upstream import PoeUpstream

ChunkShaper = Callable[[dict[str, Any]], dict[str, Any] | None]


class Proxy:
    """The route handlers, sharing one ``Settings`` and one ``PoeUpstream``."""

    def __init__(self, settings: Settings, upstream: PoeUpstream) -> None:
        self.settings = settings
        self.upstream = upstream
        self.models_cache = ModelListCache(ttl=settings.models_cache_ttl)

    async def _body(self, request: Request) -> tuple[str, dict[str, Any]]:
        """Authenticate, then read and parse the JSON body (in that order: no key, no reading)."""
        api_key = resolve_poe_key(request.headers.get("authorization"), self.settings)
        body = parse_json_object(await read_body(request, self.settings.max_body_bytes))
        return api_key, body

    # -- chat and legacy completions ------------------------------------------------------

    async def chat_completions(self, request: Request) -> Response:
        api_key, body = await self._body(request)
        chat = parse_chat_request(body, self.settings, max_media_bytes=self.settings.max_media_bytes)
        note(model=chat.bot, stream=chat.stream)
        meta = self._meta("chatcmpl", chat.bot, chat.stream and chat.include_usage)
        uploads = pending_uploads(chat) if self.settings.backend == "bot" else []
        attachments = await cancel_on_disconnect(request, self._upload(uploads, api_key)) if uploads else {}
        calls = [self._choice_call(chat, meta, index, api_key, attachments) for index in range(chat.n)]
        prompt_tokens = [estimate_prompt_tokens(chat.prompt_texts())] * chat.n

        def complete(usage: dict[str, Any]) -> dict[str, Any]:
            return chat_completion(meta, [c.converter for c in calls], usage)

        def json_retries(done: list[ChoiceCall]) -> list[tuple[int, ChoiceCall, int]]:
            """One more call for each answer that is not the JSON ``response_format`` asked for."""
            retries = []
            for position, call in enumerate(done):
                answer = call.converter
                problem = None if answer.tool_calls else json_answer_problem(chat, answer.content)
                if problem is not None:
                    fixed = with_json_correction(chat, answer.content, problem)
                    retry = self._choice_call(fixed, meta, answer.index, api_key, attachments)
                    retries.append((position, retry, estimate_prompt_tokens(fixed.prompt_texts())))
            return retries

        return await self._respond(
            request, meta, calls, chat.stream, prompt_tokens, complete, retries=json_retries
        )

    async def _upload(self, uploads: list[Upload], api_key: str) -> dict[tuple[int, int], dict[str, Any]]:
        """Bot backend: inline media goes to Poe's upload API first (the OpenAI one takes it inline)."""
        attachments = await gather_or_fail(*(self.upstream.upload(u, api_key) for u in uploads))
        return {u.key: attachment for u, attachment in zip(uploads, attachments, strict=True)}

    async def completions(self, request: Request) -> Response:
        api_key, body = await self._body(request)
        legacy = parse_completion_request(body, self.settings)
        note(model=legacy.bot, stream=legacy.stream)
        meta = self._meta("cmpl", legacy.bot, legacy.stream and legacy.include_usage)
        calls = [self._choice_call(chat, meta, index, api_key) for index, chat in legacy.choice_requests()]

        def complete(usage: dict[str, Any]) -> dict[str, Any]:
            return text_completion(meta, legacy, [c.converter for c in calls], usage)

        return await self._respond(
            request,
            meta,
            calls,
            legacy.stream,
            legacy.prompt_tokens_per_choice(),
            complete,
            shape=completion_chunk_from_chat,
            prelude=echo_chunks(meta, legacy),
            final_usage=completion_usage_chunk,
        )

    @staticmethod
    def _meta(prefix: str, model: str, include_usage: bool) -> CompletionMeta:
        return CompletionMeta(
            id=f"{prefix}-{new_token()}",
            created=int(time.time()),
            model=model,
            include_usage=include_usage,
        )

    def _choice_call(
        self,
        chat: ChatRequest,
        meta: CompletionMeta,
        index: int,
        api_key: str,
        attachments: dict[tuple[int, int], dict[str, Any]] | None = None,
    ) -> ChoiceCall:
        ids = QueryIds.from_hex(new_token(), chat.user)
        path, body, converter = choice_call(self.settings, chat, meta, index, ids, attachments)
        return ChoiceCall(self.upstream, path, api_key, body, converter)

    async def _respond(
        self,
        request: Request,
        meta: CompletionMeta,
        calls: list[ChoiceCall],
        stream: bool,
        prompt_tokens: list[int],
        complete: Callable[[dict[str, Any]], dict[str, Any]],
        *,
        shape: ChunkShaper | None = None,
        prelude: list[dict[str, Any]] | None = None,
        final_usage: Callable[[CompletionMeta, dict[str, Any]], dict[str, Any]] = usage_chunk,
        retries: Callable[[list[ChoiceCall]], list[tuple[int, ChoiceCall, int]]] | None = None,
    ) -> Response:
        """Run the calls; answer with one JSON object, or stream their chunks as they come.

        ``retries`` (non-streaming only) looks at the finished calls and names the ones to make
        again: ``(position, new call, its prompt estimate)``. Every call made counts in usage.
        """
        if not stream:
            await cancel_on_disconnect(request, run_all(calls))
            estimates = list(prompt_tokens)  # one per call; retries replace theirs
            spent: list[tuple[Converter, int]] = []
            redo = retries(calls) if retries is not None else []
            if redo:
                await cancel_on_disconnect(request, run_all([call for _, call, _ in redo]))
                for position, call, estimate in redo:
                    spent.append((calls[position].converter, estimates[position]))
                    calls[position], estimates[position] = call, estimate
            converters = [c.converter for c in calls] + [converter for converter, _ in spent]
            usage = total_usage(converters, estimates + [estimate for _, estimate in spent])
            return JSONResponse(complete(usage))

        chunks = merge(calls)

        async def first_batch() -> list[dict[str, Any]]:
            try:
                return await anext(chunks)
            except StopAsyncIteration:
                return []

        # Wait for the first chunk before answering: an upstream that refuses the call (401,
        # 429, an error event) then gets a real HTTP error status instead of a broken stream.
        # A client that leaves meanwhile (a bot can think for a minute) cancels the calls.
        first = await cancel_on_disconnect(request, first_batch())

        def wire(batch: list[dict[str, Any]]) -> bytes:
            shaped = batch if shape is None else [c for c in map(shape, batch) if c is not None]
            return b"".join(encode_json_event(c) for c in shaped)

        async def body() -> AsyncIterator[bytes]:
            try:
                if prelude:
                    yield b"".join(encode_json_event(c) for c in prelude)
                yield wire(first)
                async for batch in chunks:
                    yield wire(batch)
                if meta.include_usage:
                    usage = total_usage([c.converter for c in calls], prompt_tokens)
                    yield encode_json_event(final_usage(meta, usage))
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
                await chunks.aclose()

        return StreamingResponse(body(), headers=SSE_HEADERS)

    # -- models and embeddings (Poe's OpenAI-compatible API, whatever the backend) ---------

    async def _model_list(self, request: Request) -> dict[str, Any]:
        api_key = resolve_poe_key(request.headers.get("authorization"), self.settings)
        now = time.monotonic()
        cached = self.models_cache.get(now)
        if cached is not None:
            return cached
        try:
            upstream = await self.upstream.request_json("GET", "/v1/models", api_key)
        except OpenAIError:
            stale = self.models_cache.fallback()
            if stale is None or not isinstance(stale, dict):
                raise
            log.warning("model list: Poe failed, serving the cached list")
            return stale
        models = openai_model_list(upstream, created=int(time.time()))
        self.models_cache.put(models, now)
        return models

    async def models(self, request: Request) -> Response:
        return JSONResponse(await self._model_list(request))

    async def model(self, request: Request) -> Response:
        model_id = request.path_params["model"]
        return JSONResponse(
            find_model(await self._model_list(request), model_id, self.settings.model_aliases)
        )

    async def embeddings(self, request: Request) -> Response:
        api_key, body = await self._body(request)
        wanted = parse_embeddings_request(body, self.settings)
        note(model=wanted.model)
        batch_size = self.settings.embedding_batch_size
        bodies = upstream_batches(wanted, batch_size)

        fetches = (self.upstream.request_json("POST", "/v1/embeddings", api_key, b) for b in bodies)
        answers = await cancel_on_disconnect(request, gather_or_fail(*fetches))
        return JSONResponse(join_embeddings(wanted, answers, batch_size))


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
    routes = []
    for prefix in ("/v1", ""):  # OpenAI clients use /v1; some tools drop it
        routes += [
            Route(f"{prefix}/chat/completions", Endpoint(proxy.chat_completions), methods=["POST"]),
            Route(f"{prefix}/completions", Endpoint(proxy.completions), methods=["POST"]),
            Route(f"{prefix}/embeddings", Endpoint(proxy.embeddings), methods=["POST"]),
            Route(f"{prefix}/models", Endpoint(proxy.models), methods=["GET"]),
            Route(f"{prefix}/models/{{model:path}}", Endpoint(proxy.model), methods=["GET"]),
        ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await upstream.aclose()

    app = Starlette(
        routes=routes,
        middleware=[Middleware(EdgeMiddleware)],
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


YOUNG_GC_THRESHOLD = 10_000


def tune_gc() -> None:
    """Look for reference cycles among new objects every 10,000 allocations, not every 700.

    A request makes a few hundred short-lived objects and almost no cycles (refcounting frees
    them), so the default spends its scans on objects about to be freed anyway: measured,
    ~12% of the CPU under load (docs/benchmarks.md). Cycles are still collected, a little later.
    """
    young, middle, old = gc.get_threshold()
    gc.set_threshold(max(young, YOUNG_GC_THRESHOLD), middle, old)


def app_from_environ(environ: Mapping[str, str] | None = None) -> Starlette:
    """The app every entry point serves: settings from the environment, the process tuned."""
    settings = Settings.from_mapping(os.environ if environ is None else environ)
    configure_logging(settings.log_level)
    tune_gc()
    return create_app(settings)


app = app_from_environ()
