"""One client request through the proxy, with the I/O left to the host.

This is what the Netlify function runs in Pyodide, where JavaScript's ``fetch`` does the HTTP
(``netlify/functions/openai.mts``). ``start`` authenticates, routes and validates exactly like the
ASGI app, and returns either a ``Reply`` to send as it is, or an ``Exchange``: the upstream
``calls`` to make and a state machine to feed with what Poe answers. The host's loop::

    exchange = start(method, path, headers, body, settings, new_token=..., now=...)
    if isinstance(exchange, Reply): send it; stop
    make every call in exchange.calls at once; for each, as soon as it is answered:
        not 200      -> send exchange.refused(i, status, headers, body) (a Reply); stop
        fetch failed -> send exchange.unreachable(timed_out) (a Reply); stop
    (reading a body fails midway -> exchange.lost(i), then go on as if it ended)
    streaming (exchange.stream):
        send exchange.head, then exchange.feed(i, chunk) for every chunk of every call as it
        arrives, exchange.end(i) when call i ends, and exchange.finish() when all have ended;
        stop reading call i once exchange.wants(i) is false (that cancels it at Poe)
    not streaming: feed and end the same way, then send exchange.reply()

``choice_call`` (one upstream call per choice) is shared with the ASGI app.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from .auth import resolve_poe_key
from .chat_request import ChatRequest, QueryIds, openai_compat_body, parse_chat_request, poe_query
from .chat_stream import (
    ChoiceReader,
    CompletionMeta,
    Converter,
    OpenAIStreamToChatChunks,
    PoeStreamToChatChunks,
    chat_completion,
    total_usage,
    usage_chunk,
)
from .completions import (
    completion_chunk_from_chat,
    completion_usage_chunk,
    echo_chunks,
    parse_completion_request,
    text_completion,
)
from .embeddings import join_embeddings, parse_embeddings_request, upstream_batches
from .errors import (
    InvalidRequestError,
    MethodNotAllowedError,
    NotFoundError,
    OpenAIError,
    RequestTooLargeError,
    UpstreamTimeoutError,
    connection_refused,
    connection_reset,
    error_from_upstream_status,
    not_json,
)
from .models import find_model, openai_model_list
from .settings import Settings
from .sse import DONE_EVENT, dumps, encode_json_event
from .uploads import pending_uploads
from .usage import estimate_prompt_tokens
from .validate import parse_json_object

ChunkShaper = Callable[[dict[str, Any]], dict[str, Any] | None]

CORS_HEADERS = {
    "access-control-allow-origin": "*",
    "access-control-allow-methods": "GET, POST, OPTIONS",
    "access-control-allow-headers": "*",
    "access-control-expose-headers": "x-request-id, retry-after",
    "access-control-max-age": "86400",
}
SSE_HEADERS = {"content-type": "text/event-stream", "cache-control": "no-cache", "x-accel-buffering": "no"}
JSON_HEADERS = {"content-type": "application/json"}


@dataclass(frozen=True)
class UpstreamCall:
    """One HTTP request to Poe, ready for ``fetch``."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None = None


@dataclass(frozen=True)
class Reply:
    """A whole HTTP response (CORS headers included)."""

    status: int
    headers: dict[str, str]
    body: bytes

    @classmethod
    def json(cls, status: int, payload: Any) -> Reply:
        return cls(status, {**JSON_HEADERS, **CORS_HEADERS}, _dumps(payload))

    @classmethod
    def error(cls, error: OpenAIError) -> Reply:
        headers = {**JSON_HEADERS, **CORS_HEADERS, **{k.lower(): v for k, v in error.headers.items()}}
        return cls(error.status, headers, _dumps(error.to_dict()))


def upstream_headers(api_key: str, accept: str) -> dict[str, str]:
    return {"authorization": f"Bearer {api_key}", "content-type": "application/json", "accept": accept}


def choice_call(
    settings: Settings,
    chat: ChatRequest,
    meta: CompletionMeta,
    index: int,
    ids: QueryIds,
    attachments: Mapping[tuple[int, int], dict[str, Any]] | None = None,
) -> tuple[str, dict[str, Any], Converter]:
    """The upstream path, body and converter of one choice, for the configured backend."""
    options: dict[str, Any] = {
        "index": index,
        "stop": chat.stop,
        "max_tokens": chat.max_tokens,
        "streaming": chat.stream,
        "json_mode": chat.json_mode is not None,
    }
    if settings.backend == "openai":
        return "/v1/chat/completions", openai_compat_body(chat), OpenAIStreamToChatChunks(meta, **options)
    body = poe_query(chat, ids, dict(attachments or {}))
    return f"/bot/{quote(chat.bot, safe='')}", body, PoeStreamToChatChunks(meta, **options)


class Exchange:
    """The upstream calls of one request and what to answer from their responses."""

    stream = False
    head = b""
    answered = False  # streaming: whether any chunk has gone out (then errors can only be events)

    def __init__(self, calls: list[UpstreamCall], api_key: str) -> None:
        self.calls = calls
        self._api_key = api_key
        self._reset = False

    def refused(self, index: int, status: int, headers: Mapping[str, str], body: bytes) -> Reply:
        """Poe answered call ``index`` with an error status: the client gets the mapped error."""
        error = error_from_upstream_status(
            status, bytes(body), headers=dict(headers), secrets=(self._api_key,)
        )
        return Reply.error(error)

    def unreachable(self, timed_out: bool) -> Reply:
        """``fetch`` itself failed (no connection, reset, timeout)."""
        if timed_out:
            return Reply.error(UpstreamTimeoutError("Timed out waiting for Poe."))
        return Reply.error(connection_refused())

    def wants(self, index: int) -> bool:
        return True

    def lost(self, index: int) -> bytes:
        """Reading call ``index`` failed midway (reset, timeout)."""
        self._reset = True
        return b""

    def feed(self, index: int, chunk: bytes) -> bytes:
        raise NotImplementedError

    def end(self, index: int) -> bytes:
        raise NotImplementedError

    def finish(self) -> bytes:
        return b""

    def reply(self) -> Reply:
        raise NotImplementedError


class ChoicesExchange(Exchange):
    """Chat (or legacy) completions: one SSE call per choice, converted as the events arrive."""

    def __init__(
        self,
        planned: list[tuple[UpstreamCall, Converter]],
        api_key: str,
        *,
        meta: CompletionMeta,
        stream: bool,
        prompt_tokens: list[int],
        complete: Callable[[list[Converter], dict[str, Any]], dict[str, Any]],
        shape: ChunkShaper | None = None,
        prelude: Sequence[dict[str, Any]] = (),
        final_usage: Callable[[CompletionMeta, dict[str, Any]], dict[str, Any]] = usage_chunk,
    ) -> None:
        super().__init__([call for call, _ in planned], api_key)
        self.stream = stream
        self.head = b"".join(encode_json_event(c) for c in prelude) if stream else b""
        self._meta = meta
        self._converters = [converter for _, converter in planned]
        self._readers = [ChoiceReader(converter) for _, converter in planned]
        self._prompt_tokens = prompt_tokens
        self._complete = complete
        self._shape = shape
        self._final_usage = final_usage
        self._error: OpenAIError | None = None

    @property
    def failed(self) -> bool:
        return self._error is not None

    def lost(self, index: int) -> bytes:
        if self.failed:
            return b""
        self._error = connection_reset()
        return encode_json_event(self._error.to_dict()) if self.stream else b""

    def wants(self, index: int) -> bool:
        return not self.failed and not self._readers[index].done

    def feed(self, index: int, chunk: bytes) -> bytes:
        return self._convert(index, lambda reader: reader.feed(bytes(chunk)))

    def end(self, index: int) -> bytes:
        return self._convert(index, ChoiceReader.close)

    def _convert(self, index: int, read: Callable[[ChoiceReader], list[dict[str, Any]]]) -> bytes:
        if self.failed:
            return b""
        reader = self._readers[index]
        chunks = read(reader)
        error = reader.error
        out = self._wire(chunks) if self.stream else b""
        self.answered = self.answered or bool(out)
        if error is not None:
            self._error = error  # what came before it still goes out; the error event ends the stream
            out += encode_json_event(error.to_dict()) if self.stream else b""
        return out

    def _wire(self, chunks: list[dict[str, Any]]) -> bytes:
        shaped = chunks if self._shape is None else [c for c in map(self._shape, chunks) if c is not None]
        return b"".join(encode_json_event(c) for c in shaped)

    def _usage(self) -> dict[str, Any]:
        return total_usage(self._converters, self._prompt_tokens)

    def finish(self) -> bytes:
        if self.failed:
            return b""  # the error event was the last word: no [DONE]
        tail = (
            encode_json_event(self._final_usage(self._meta, self._usage()))
            if self._meta.include_usage
            else b""
        )
        return tail + DONE_EVENT

    def reply(self) -> Reply:
        if self._error is not None:
            return Reply.error(self._error)
        return Reply.json(200, self._complete(self._converters, self._usage()))


class JsonExchange(Exchange):
    """Models and embeddings: plain JSON calls, joined into one answer at the end."""

    def __init__(
        self, calls: list[UpstreamCall], api_key: str, answer: Callable[[list[Any]], dict[str, Any]]
    ) -> None:
        super().__init__(calls, api_key)
        self._bodies = [bytearray() for _ in calls]
        self._answer = answer

    def feed(self, index: int, chunk: bytes) -> bytes:
        self._bodies[index] += bytes(chunk)
        return b""

    def end(self, index: int) -> bytes:
        return b""

    def reply(self) -> Reply:
        if self._reset:
            return Reply.error(connection_reset())
        try:
            answers = [json.loads(body) for body in self._bodies]
        except ValueError:
            return Reply.error(not_json())
        try:
            return Reply.json(200, self._answer(answers))
        except OpenAIError as exc:
            return Reply.error(exc)


ROUTES = ("chat/completions", "completions", "embeddings", "models")


def start(
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    settings: Settings,
    *,
    new_token: Callable[[], str],
    now: float,
) -> Reply | Exchange:
    """Route, authenticate and validate one request. ``new_token`` returns a fresh random string
    of 32 lowercase hex digits and ``now`` is the Unix time: the host's randomness and clock."""
    try:
        return _start(
            method, path, {k.lower(): v for k, v in headers.items()}, bytes(body), settings, new_token, now
        )
    except OpenAIError as exc:
        return Reply.error(exc)


def _start(
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes,
    settings: Settings,
    new_token: Callable[[], str],
    now: float,
) -> Reply | Exchange:
    if method == "OPTIONS":
        return Reply(204, dict(CORS_HEADERS), b"")
    route = path.removeprefix("/v1/") if path.startswith("/v1/") else path.removeprefix("/")
    model_id = route.removeprefix("models/") if route.startswith("models/") and len(route) > 7 else None
    if route not in ROUTES and model_id is None:
        raise NotFoundError(f"Unknown request URL: {method} {path}.", code="unknown_url")
    wanted = "GET" if route == "models" or model_id is not None else "POST"
    if method != wanted:
        raise MethodNotAllowedError(f"Method {method} is not allowed on {path}.")

    api_key = resolve_poe_key(headers.get("authorization"), settings)
    base = settings.poe_base_url
    if wanted == "GET":
        call = UpstreamCall("GET", f"{base}/v1/models", upstream_headers(api_key, "application/json"))

        def models(answers: list[Any]) -> dict[str, Any]:
            listed = openai_model_list(answers[0], created=int(now))
            return listed if model_id is None else find_model(listed, model_id, settings.model_aliases)

        return JsonExchange([call], api_key, models)

    if len(body) > settings.max_body_bytes:
        raise RequestTooLargeError(
            f"The request body is larger than the limit of {settings.max_body_bytes} bytes."
        )
    payload = parse_json_object(body)
    if route == "embeddings":
        wanted_embeddings = parse_embeddings_request(payload, settings)
        batches = upstream_batches(wanted_embeddings, settings.embedding_batch_size)
        calls = [
            UpstreamCall(
                "POST", f"{base}/v1/embeddings", upstream_headers(api_key, "application/json"), _dumps(b)
            )
            for b in batches
        ]
        return JsonExchange(
            calls,
            api_key,
            lambda answers: join_embeddings(wanted_embeddings, answers, settings.embedding_batch_size),
        )

    def new_meta(prefix: str, model: str, include_usage: bool) -> CompletionMeta:
        return CompletionMeta(f"{prefix}-{new_token()}", int(now), model, include_usage)

    def plan(
        meta: CompletionMeta, chats: Iterable[tuple[int, ChatRequest]]
    ) -> list[tuple[UpstreamCall, Converter]]:
        """One SSE call per choice, with the converter of its events."""
        planned = []
        for index, chat in chats:
            ids = QueryIds.from_hex(new_token(), chat.user)
            path_, body_, converter = choice_call(settings, chat, meta, index, ids)
            headers = upstream_headers(api_key, "text/event-stream")
            planned.append((UpstreamCall("POST", f"{base}{path_}", headers, _dumps(body_)), converter))
        return planned

    if route == "completions":
        legacy = parse_completion_request(payload, settings)
        meta = new_meta("cmpl", legacy.bot, legacy.stream and legacy.include_usage)
        return ChoicesExchange(
            plan(meta, legacy.choice_requests()),
            api_key,
            meta=meta,
            stream=legacy.stream,
            prompt_tokens=legacy.prompt_tokens_per_choice(),
            complete=lambda converters, usage: text_completion(meta, legacy, converters, usage),
            shape=completion_chunk_from_chat,
            prelude=echo_chunks(meta, legacy),
            final_usage=completion_usage_chunk,
        )

    chat = parse_chat_request(payload, settings, max_media_bytes=settings.max_media_bytes)
    if settings.backend == "bot" and pending_uploads(chat):
        raise InvalidRequestError(
            "Inline images and files need Poe's upload API, which this deployment cannot reach; "
            "send them as https URLs, or use POE_BACKEND=openai.",
            param="messages",
            code="inline_media_unsupported",
        )
    meta = new_meta("chatcmpl", chat.bot, chat.stream and chat.include_usage)
    return ChoicesExchange(
        plan(meta, [(index, chat) for index in range(chat.n)]),
        api_key,
        meta=meta,
        stream=chat.stream,
        prompt_tokens=[estimate_prompt_tokens(chat.prompt_texts())] * chat.n,
        complete=functools.partial(chat_completion, meta),
    )


def _dumps(body: Any) -> bytes:
    return dumps(body).encode()
