"""What each endpoint does with a request, read top to bottom: one flow per route.

A flow is a generator (see ``core.flow``): it yields the steps it waits on (the request body,
``JsonCalls``, ``ChoiceCalls``), receives their results, and returns the response, or None when
the stream it started is the response. Errors are raised as ``OpenAIError`` and reach the client
as they are, before or during a stream.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Generator, Mapping
from functools import partial
from typing import Any
from urllib.parse import quote

from .calls import ChoiceCalls, JsonCalls, Wire
from .chat_request import ChatRequest, parse_chat_request
from .chat_stream import (
    ChatWire,
    CompletionMeta,
    Converter,
    OpenAIStreamToChatChunks,
    PoeStreamToChatChunks,
    chat_completion,
    total_usage,
)
from .chat_upstream import QueryIds, json_instruction, openai_compat_body, poe_query
from .completions import CompletionWire, parse_completion_request, text_completion
from .embeddings import join_embeddings, parse_embeddings_request, upstream_batches
from .errors import InvalidRequestError, MethodNotAllowedError, NotFoundError, OpenAIError, scrub_all
from .flow import Context, Flow, Respond, Step, UpstreamRequest
from .models import find_model, openai_model_list
from .responses import (
    NO_STATE,
    RelayWire,
    ResponseMeta,
    ResponsesRelay,
    ResponsesWire,
    parse_responses_request,
    response_object,
    response_text,
)
from .structured import json_answer_problem, json_correction, with_json_correction
from .uploads import attachment_from_upload, pending_uploads, upload_request
from .usage import estimate_prompt_tokens
from .validate import parse_json_object

Attachments = Mapping[tuple[int, int], dict[str, Any]]
# A host name or address, with an optional port (RFC 3986's reg-name, IPv6 in brackets).
VALID_HOST = re.compile(r"[A-Za-z0-9._~%!$&'()*+,;=-]*(?::[0-9]*)?|\[[0-9A-Fa-f:.]+\](?::[0-9]*)?")


def dispatch(context: Context) -> Flow:
    """Route, check the method and authenticate; then the route's own flow."""
    method, path = context.method, context.path
    host = context.headers.get("host")
    if host is not None and not VALID_HOST.fullmatch(host):  # a URL built from it would mislead
        raise InvalidRequestError("The Host header is not a valid host.", code="invalid_host")
    if method == "OPTIONS":  # a preflight on any path; every answer allows any origin
        return Respond(204, dict(context.response_headers), b"")
    route = path[4:] if path.startswith("/v1/") else path[1:]
    found = ROUTES.get(route)
    if found is None and route.startswith("models/") and len(route) > len("models/"):
        found = ("GET", lambda context: model(context, route[len("models/") :]))
    if found is None and route.startswith("responses/"):  # retrieve, cancel, delete, input items
        message = f"No stored responses: {NO_STATE} of 'previous_response_id'."
        raise NotFoundError(message, code="response_not_found")
    if found is None:
        raise NotFoundError(f"Unknown request URL: {method} {path}.", code="unknown_url")
    wanted, flow = found
    if method != wanted:
        allow = {"Allow": f"{wanted}, OPTIONS"}
        raise MethodNotAllowedError(f"Method {method} is not allowed on {path}.", headers=allow)
    context.authenticate()  # before the body is read: no key, no reading
    return (yield from flow(context))


# -- chat and legacy completions --------------------------------------------------------------


def chat_completions(context: Context) -> Flow:
    payload = parse_json_object((yield from context.read_body()))
    settings = context.settings
    chat = parse_chat_request(payload, settings, max_media_bytes=settings.max_media_bytes)
    context.note(model=chat.bot, stream=chat.stream)
    meta = new_meta(context, "chatcmpl", chat.bot, chat.stream and chat.include_usage)
    return (yield from answer_chat(context, chat, meta, ChatWire(meta), partial(chat_completion, meta)))


def answer_chat(
    context: Context,
    chat: ChatRequest,
    meta: CompletionMeta,
    wire: Wire,
    present: Callable[[list[Converter], dict[str, Any]], dict[str, Any]],
) -> Flow:
    """Answer ``chat``: streamed through ``wire``, or as what ``present`` makes of the answers and
    their usage. Chat completions and the Responses API differ only in those two."""
    attachments = yield from upload_media(context, chat)
    estimates = [estimate_prompt_tokens(chat.prompt_texts())] * chat.n
    planned = [choice_call(context, chat, meta, index, attachments) for index in range(chat.n)]
    if chat.stream:
        yield ChoiceCalls(context, planned, estimates, wire)
        return None

    answers: list[Converter] = yield ChoiceCalls(context, planned, estimates)
    spent: list[Converter] = []  # answers a retry replaced: Poe billed them, usage counts them
    spent_estimates: list[int] = []
    retries = json_retries(chat, answers)
    if retries:  # one more call for each answer that is not the JSON response_format asked for
        calls = [choice_call(context, fixed, meta, answers[i].index, attachments) for i, fixed in retries]
        fixed_estimates = [estimate_prompt_tokens(fixed.prompt_texts()) for _, fixed in retries]
        redone: list[Converter] = yield ChoiceCalls(context, calls, fixed_estimates)
        for (position, _), answer, estimate in zip(retries, redone, fixed_estimates, strict=True):
            spent.append(answers[position])
            spent_estimates.append(estimates[position])
            answers[position], estimates[position] = answer, estimate
    usage = total_usage([*answers, *spent], estimates + spent_estimates)
    return context.json(200, present(answers, usage))


def json_retries(chat: ChatRequest, answers: list[Converter]) -> list[tuple[int, ChatRequest]]:
    """``(position, corrected request)`` for each answer that failed its JSON ``response_format``."""
    retries = []
    for position, answer in enumerate(answers):
        problem = None if answer.tool_calls else json_answer_problem(chat, answer.content)
        if problem is not None:
            retries.append((position, with_json_correction(chat, answer.content, problem)))
    return retries


def completions(context: Context) -> Flow:
    payload = parse_json_object((yield from context.read_body()))
    legacy = parse_completion_request(payload, context.settings)
    context.note(model=legacy.bot, stream=legacy.stream)
    meta = new_meta(context, "cmpl", legacy.bot, legacy.stream and legacy.include_usage)
    planned = [choice_call(context, chat, meta, index, {}) for index, chat in legacy.choice_requests()]
    estimates = legacy.prompt_tokens_per_choice()
    if legacy.stream:
        yield ChoiceCalls(context, planned, estimates, CompletionWire(meta, legacy))
        return None
    answers: list[Converter] = yield ChoiceCalls(context, planned, estimates)
    return context.json(200, text_completion(meta, legacy, answers, total_usage(answers, estimates)))


def new_meta(context: Context, prefix: str, model: str, include_usage: bool) -> CompletionMeta:
    return CompletionMeta(f"{prefix}-{context.new_token()}", int(context.now), model, include_usage)


def choice_call(
    context: Context, chat: ChatRequest, meta: CompletionMeta, index: int, attachments: Attachments
) -> tuple[UpstreamRequest, Converter]:
    """The upstream call of one choice, and the converter of its events, for the backend."""
    options: dict[str, Any] = {
        "index": index,
        "stop": chat.stop,
        "max_tokens": chat.max_tokens,
        "streaming": chat.stream,
        "json_mode": chat.json_mode is not None,
    }
    accept = "text/event-stream"
    if context.settings.backend == "openai":
        body = openai_compat_body(chat)
        converter: Converter = OpenAIStreamToChatChunks(meta, **options)
        return context.upstream("POST", "/v1/chat/completions", body, accept=accept), converter
    query = poe_query(chat, QueryIds.from_hex(context.new_token(), chat.user), attachments)
    path = f"/bot/{quote(chat.bot, safe='')}"
    return context.upstream("POST", path, query, accept=accept), PoeStreamToChatChunks(meta, **options)


def upload_media(context: Context, chat: ChatRequest) -> Generator[Step, Any, Attachments]:
    """Bot backend: inline media goes to Poe's upload API first (the OpenAI one takes it inline)."""
    uploads = pending_uploads(chat) if context.settings.backend == "bot" else []
    if not uploads:
        return {}
    url, key = context.settings.poe_upload_url, context.api_key
    requests = [upload_request(u, upload_url=url, api_key=key, boundary=context.new_token()) for u in uploads]
    answers = yield JsonCalls(context, requests)
    return {u.key: attachment_from_upload(answer, u) for u, answer in zip(uploads, answers, strict=True)}


# -- the Responses API --------------------------------------------------------------------------


def responses(context: Context) -> Flow:
    payload = parse_json_object((yield from context.read_body()))
    request = parse_responses_request(payload, context.settings)
    chat = request.chat
    context.note(model=chat.bot, stream=chat.stream)
    if context.settings.backend == "openai":  # Poe serves the Responses API itself
        return (yield from relay_responses(context, {**payload, "model": chat.bot}, chat))
    meta = ResponseMeta(
        f"resp_{context.new_token()}",
        int(context.now),
        chat.bot,
        request,
        lambda prefix: f"{prefix}_{context.new_token()}",
    )
    chat_meta = CompletionMeta(meta.id, meta.created, chat.bot)

    def present(answers: list[Converter], usage: dict[str, Any]) -> dict[str, Any]:
        return response_object(meta, answers[0], usage)

    return (yield from answer_chat(context, chat, chat_meta, ResponsesWire(meta), present))


def relay_responses(context: Context, body: dict[str, Any], chat: ChatRequest) -> Flow:
    """The openai backend: Poe's own ``/v1/responses``, its answer passed on as it is. As on the
    chat path, JSON is asked for in words too, and a non-streamed answer that is not the JSON
    asked for gets one more call."""
    instruction = json_instruction(chat)
    if instruction:
        body["instructions"] = "\n\n".join(filter(None, [body.get("instructions"), instruction]))
    if chat.stream:
        relay = ResponsesRelay(context.api_key)
        call = context.upstream("POST", "/v1/responses", body, accept="text/event-stream")
        yield ChoiceCalls(context, [(call, relay)], [0], RelayWire(relay))
        return None
    [answer] = yield JsonCalls(
        context, [context.upstream("POST", "/v1/responses", body, accept="application/json")]
    )
    text, calls = response_text(answer)
    problem = None if calls else json_answer_problem(chat, text)
    if problem is not None:
        items = (
            [{"role": "user", "content": body["input"]}] if isinstance(body["input"], str) else body["input"]
        )
        retry = [
            *items,
            {"role": "assistant", "content": text},
            {"role": "user", "content": json_correction(problem)},
        ]
        call = context.upstream("POST", "/v1/responses", {**body, "input": retry}, accept="application/json")
        [answer] = yield JsonCalls(context, [call])
    if answer.get("error") is not None:  # a failed response: Poe's words, which may hold the key
        answer = {**answer, "error": scrub_all(answer["error"], context.api_key)}
    return context.json(200, answer)


# -- models and embeddings (Poe's OpenAI-compatible API, whatever the backend) -----------------


def models(context: Context) -> Flow:
    return context.json(200, (yield from model_list(context)))


def model(context: Context, model_id: str) -> Flow:
    listed = yield from model_list(context)
    return context.json(200, find_model(listed, model_id, context.settings.model_aliases))


def model_list(context: Context) -> Generator[Step, Any, dict[str, Any]]:
    """Poe's model list, cached; a stale copy answers when Poe fails."""
    cache, now = context.models_cache, context.now
    cached = cache.get(now)
    if cached is not None:
        return cached
    try:
        [upstream] = yield JsonCalls(
            context, [context.upstream("GET", "/v1/models", accept="application/json")]
        )
    except OpenAIError:
        stale = cache.fallback()
        if stale is None:
            raise
        context.note(served_stale=True)
        return stale
    listed = openai_model_list(upstream, created=int(now))
    cache.put(listed, now)
    return listed


def embeddings(context: Context) -> Flow:
    payload = parse_json_object((yield from context.read_body()))
    wanted = parse_embeddings_request(payload, context.settings)
    context.note(model=wanted.model)
    batch_size = context.settings.embedding_batch_size
    batches = upstream_batches(wanted, batch_size)
    calls = [context.upstream("POST", "/v1/embeddings", b, accept="application/json") for b in batches]
    answers = yield JsonCalls(context, calls)
    return context.json(200, join_embeddings(wanted, answers, batch_size))


ROUTES: dict[str, tuple[str, Callable[[Context], Flow]]] = {
    "chat/completions": ("POST", chat_completions),
    "completions": ("POST", completions),
    "responses": ("POST", responses),
    "embeddings": ("POST", embeddings),
    "models": ("GET", models),
}
