"""What each endpoint does with a request, read top to bottom: one flow per route.

A flow is a generator (see ``core.flow``): it yields the steps it waits on (the request body,
``JsonCalls``, ``ChoiceCalls``), receives their results, and returns the response, or None when
the stream it started is the response. Errors are raised as ``OpenAIError`` and reach the client
as they are, before or during a stream.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Generator, Mapping
from dataclasses import replace
from functools import partial
from typing import Any
from urllib.parse import quote, urlencode

from . import messages as messages_api
from .calls import ChoiceCalls, JsonCalls, Wire
from .chat_request import ChatRequest, parse_chat_request
from .chat_stream import (
    BotFile,
    ChatWire,
    CompletionMeta,
    Converter,
    OpenAICompletionToChat,
    OpenAIStreamToChatChunks,
    PoeStreamToChatChunks,
    chat_completion,
    total_usage,
)
from .chat_upstream import QueryIds, json_instruction, openai_compat_body, poe_query
from .completions import CompletionWire, parse_completion_request, text_completion
from .embeddings import join_embeddings, parse_embeddings_request, upstream_batches
from .errors import (
    InvalidRequestError,
    MethodNotAllowedError,
    NotFoundError,
    OpenAIError,
    scrub_response,
    summarize_upstream_text,
)
from .files import fetch_files
from .flow import Context, Emit, Flow, Respond, Step, UpstreamRequest
from .images import ImageRequest, image_events, images_response, parse_edit_form, parse_image_request
from .media import guess_mime
from .models import find_model, openai_model_list
from .multipart import parse_form
from .reasoning import MODEL_OWN_PARAMETERS, reasoning_parameters
from .responses import (
    RelayWire,
    ResponseMeta,
    ResponsesRelay,
    ResponsesWire,
    parse_responses_request,
    response_object,
    response_text,
    unsupported,
)
from .speech import parse_speech_request, speech_events
from .state import answer_stored, earlier_items, keep_response
from .structured import json_answer_problem, json_correction, with_json_correction
from .uploads import attachment_from_upload, pending_uploads, upload_request
from .usage import estimate_prompt_tokens
from .validate import opt_bool, parse_json_object

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
    found = ROUTES.get(route) or _with_id(route)
    if found is None:
        raise NotFoundError(f"Unknown request URL: {method} {path}.", code="unknown_url")
    flow = found.get(method)
    if flow is None:
        allow = {"Allow": ", ".join([*found, "OPTIONS"])}
        raise MethodNotAllowedError(f"Method {method} is not allowed on {path}.", headers=allow)
    if route.startswith("messages"):  # Anthropic's clients read Anthropic's errors
        context.error_shape = lambda error: (messages_api.error_status(error), messages_api.error_body(error))
    context.authenticate()  # before the body is read: no key, no reading
    return (yield from flow(context))


def _with_id(route: str) -> Routes | None:
    """The routes whose path holds an id: a model, a stored response and its input items."""
    kind, _, rest = route.partition("/")
    if kind == "models" and rest:
        return {"GET": partial(model, model_id=rest)}
    response_id, _, action = rest.partition("/")
    if kind != "responses" or not response_id:
        return None
    if action == "":
        return {
            "GET": partial(stored_response, response_id=response_id, action=""),
            "DELETE": partial(stored_response, response_id=response_id, action="delete"),
        }
    if action in ("input_items", "cancel"):
        method = "GET" if action == "input_items" else "POST"
        return {method: partial(stored_response, response_id=response_id, action=action)}
    return None


# -- chat and legacy completions --------------------------------------------------------------


def chat_completions(context: Context) -> Flow:
    payload = parse_json_object((yield from context.read_body()))
    settings = context.settings
    chat = parse_chat_request(payload, settings, max_media_bytes=settings.max_media_bytes)
    context.note(model=chat.bot, stream=chat.stream)
    chat = yield from reasoning_controls(context, chat)
    meta = new_meta(context, "chatcmpl", chat.bot, chat.stream and chat.include_usage)
    return (yield from answer_chat(context, chat, meta, ChatWire(meta), partial(chat_completion, meta)))


def reasoning_controls(
    context: Context, chat: ChatRequest, *, budget: int | None = None
) -> Generator[Step, Any, ChatRequest]:
    """``chat`` with its reasoning effort (or a Messages ``budget`` of thinking tokens) as the
    parameter its model declares in Poe's catalog; as it came where the catalog is out of
    reach or declares none, and untouched where the client named the model's own parameter."""
    parameters = chat.parameters
    effort = parameters.get("reasoning_effort")
    if (not isinstance(effort, str) and budget is None) or parameters.keys() & MODEL_OWN_PARAMETERS:
        return chat
    try:
        listed = yield from model_list(context)
    except OpenAIError:
        listed = {"data": []}
    entry = next((m for m in listed["data"] if m["id"].lower() == chat.bot.lower()), None)
    asked = reasoning_parameters(entry, effort=effort if isinstance(effort, str) else None, budget=budget)
    kept = {k: v for k, v in parameters.items() if k != "reasoning_effort"}
    return replace(chat, parameters={**kept, **asked})


def answer_chat(
    context: Context,
    chat: ChatRequest,
    meta: CompletionMeta,
    wire: Wire,
    present: Callable[[list[Converter], dict[str, Any]], dict[str, Any]],
) -> Flow:
    """Answer ``chat``: streamed through ``wire``, or as what ``present`` makes of the answers and
    their usage. Chat completions and the Responses API differ only in those two."""
    if chat.stream:
        yield from stream_chat(context, chat, meta, wire)
        return None
    return context.json(200, (yield from complete_chat(context, chat, meta, present)))


def planned_calls(
    context: Context, chat: ChatRequest, meta: CompletionMeta
) -> Generator[Step, Any, tuple[Attachments, list[int], list[tuple[UpstreamRequest, Converter]]]]:
    """The media uploaded first, then one call per choice, with their prompts' token estimates."""
    attachments = yield from upload_media(context, chat)
    estimates = [estimate_prompt_tokens(chat.prompt_texts())] * chat.n
    planned = [choice_call(context, chat, meta, index, attachments) for index in range(chat.n)]
    return attachments, estimates, planned


def stream_chat(
    context: Context, chat: ChatRequest, meta: CompletionMeta, wire: Wire
) -> Generator[Step, Any, ChoiceCalls]:
    """Stream the answer to ``chat`` through ``wire``; the calls, once they are done."""
    _, estimates, planned = yield from planned_calls(context, chat, meta)
    calls = ChoiceCalls(context, planned, estimates, wire)
    yield calls
    return calls


def complete_chat(
    context: Context,
    chat: ChatRequest,
    meta: CompletionMeta,
    present: Callable[[list[Converter], dict[str, Any]], dict[str, Any]],
) -> Generator[Step, Any, dict[str, Any]]:
    """The answer to ``chat``, whole, as ``present`` makes it of the answers and their usage."""
    attachments, estimates, planned = yield from planned_calls(context, chat, meta)
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
    return present(answers, total_usage([*answers, *spent], estimates + spent_estimates))


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
        if not chat.stream:  # one JSON answer, converted whole
            call = context.upstream("POST", "/v1/chat/completions", body, accept="application/json")
            return call, OpenAICompletionToChat(meta, **options)
        converter: Converter = OpenAIStreamToChatChunks(meta, **options)
        return context.upstream("POST", "/v1/chat/completions", body, accept=accept), converter
    return bot_call(context, chat, index, attachments, PoeStreamToChatChunks(meta, **options))


def bot_call(
    context: Context, chat: ChatRequest, index: int, attachments: Attachments, converter: Converter
) -> tuple[UpstreamRequest, Converter]:
    """The bot-protocol call of one choice (``index``), read by ``converter``."""
    query = poe_query(chat, QueryIds.from_hex(context.new_token(), chat.user), attachments)
    path = f"/bot/{quote(chat.bot, safe='')}"
    return context.upstream("POST", path, query, accept="text/event-stream"), converter


def upload_media(
    context: Context, chat: ChatRequest, *, bot: bool = False
) -> Generator[Step, Any, Attachments]:
    """Inline media goes to Poe's upload API first on the bot protocol (the bot backend, or
    ``bot``); the OpenAI-compatible API takes it inline."""
    uploads = pending_uploads(chat) if bot or context.settings.backend == "bot" else []
    if not uploads:
        return {}
    url, key = context.settings.poe_upload_url, context.api_key
    requests = [upload_request(u, upload_url=url, api_key=key, boundary=context.new_token()) for u in uploads]
    answers = yield JsonCalls(context, requests)
    return {u.key: attachment_from_upload(answer, u) for u, answer in zip(uploads, answers, strict=True)}


# -- the Responses API --------------------------------------------------------------------------


def responses(context: Context) -> Flow:
    payload = parse_json_object((yield from context.read_body()))
    if context.settings.backend == "openai":  # Poe serves the Responses API, and keeps it, itself
        chat = parse_responses_request(payload, context.settings).chat
        context.note(model=chat.bot, stream=chat.stream)
        controlled = yield from reasoning_controls(context, chat)  # reasoning.effort stays too
        own = {k: v for k, v in controlled.parameters.items() if k in MODEL_OWN_PARAMETERS}
        return (yield from relay_responses(context, {**payload, **own, "model": chat.bot}, chat))
    if payload.get("conversation") is not None:
        raise unsupported(
            "conversation",
            "Conversations are not supported: continue a conversation with "
            "'previous_response_id', or send the whole of it in 'input'.",
        )
    earlier = yield from earlier_items(context, payload)
    stored = opt_bool(payload, "store") is not False and context.store_missing is None
    request = parse_responses_request(earlier.body, context.settings, history=earlier.history, stored=stored)
    chat = yield from reasoning_controls(context, request.chat)
    context.note(model=chat.bot, stream=chat.stream)
    meta = ResponseMeta(
        f"resp_{context.new_token()}",
        int(context.now),
        chat.bot,
        request,
        lambda prefix: f"{prefix}_{context.new_token()}",
    )
    chat_meta = CompletionMeta(meta.id, meta.created, chat.bot)

    if chat.stream:
        wire = ResponsesWire(meta, hold=stored)
        calls = yield from stream_chat(context, chat, chat_meta, wire)
        if stored and wire.response:  # the answer is complete (a failure ended the stream)
            kept = yield from keep_response(context, wire.response, earlier)
            yield Emit([calls.send(wire.release(kept=kept))])
        return None

    def present(answers: list[Converter], usage: dict[str, Any]) -> dict[str, Any]:
        return response_object(meta, answers[0], usage)

    response = yield from complete_chat(context, chat, chat_meta, present)
    if stored and not (yield from keep_response(context, response, earlier)):
        response = {**response, "store": False}
    return context.json(200, response)


def stored_response(context: Context, *, response_id: str, action: str) -> Flow:
    """``GET /v1/responses/{id}`` (``action`` ""), ``DELETE`` ("delete"), ``GET .../input_items``
    and ``POST .../cancel``: from the store (``core.state``), or on the openai backend from Poe."""
    if context.settings.backend != "openai":
        return (yield from answer_stored(context, response_id, action))
    suffix = f"/{action}" if action in ("input_items", "cancel") else ""
    path = f"/v1/responses/{quote(response_id, safe='')}{suffix}"
    if context.query:
        path += f"?{urlencode(context.query)}"
    body: dict[str, Any] | None = {} if context.method == "POST" else None
    [answer] = yield JsonCalls(
        context, [context.upstream(context.method, path, body, accept="application/json")]
    )
    return context.json(200, scrub_response(answer, context.api_key))


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
    return context.json(200, scrub_response(answer, context.api_key))


# -- Anthropic's Messages API ---------------------------------------------------------------------


def read_messages_request(
    context: Context, *, counting: bool = False
) -> Generator[Step, Any, tuple[messages_api.MessagesRequest, ChatRequest]]:
    """The body of a Messages request, as Anthropic wrote it and as the chat request it is."""
    asked = messages_api.messages_chat_body(
        parse_json_object((yield from context.read_body())), counting=counting
    )
    settings = context.settings
    return asked, parse_chat_request(asked.chat_body, settings, max_media_bytes=settings.max_media_bytes)


def messages(context: Context) -> Flow:
    """``POST /v1/messages``: a Messages request answered as chat is, in Anthropic's shapes."""
    asked, chat = yield from read_messages_request(context)
    context.note(model=chat.bot, stream=chat.stream)
    chat = yield from reasoning_controls(context, chat, budget=asked.budget)
    message_id = f"msg_{context.new_token()}"
    meta = CompletionMeta(message_id, int(context.now), chat.bot)
    if chat.stream:
        _, estimates, planned = yield from planned_calls(context, chat, meta)
        answers = [converter for _, converter in planned]
        wire = messages_api.MessagesWire(message_id, asked.model, estimates[0], answers)
        yield ChoiceCalls(context, planned, estimates, wire)
        return None

    def present(answers: list[Converter], usage: dict[str, Any]) -> dict[str, Any]:
        return messages_api.message_object(message_id, asked.model, answers[0], usage)

    return context.json(200, (yield from complete_chat(context, chat, meta, present)))


def count_tokens(context: Context) -> Flow:
    """``POST /v1/messages/count_tokens``: the request's input, estimated as usage is."""
    _, chat = yield from read_messages_request(context, counting=True)
    return context.json(200, {"input_tokens": estimate_prompt_tokens(chat.prompt_texts())})


# -- models and embeddings (Poe's OpenAI-compatible API, whatever the backend) -----------------


def models(context: Context) -> Flow:
    return context.json(200, (yield from model_list(context)))


def model(context: Context, *, model_id: str) -> Flow:
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


# -- images and speech (Poe's image and voice bots, over the bot protocol whatever the backend) --


def image_generations(context: Context) -> Flow:
    payload = parse_json_object((yield from context.read_body()))
    return (yield from answer_images(context, parse_image_request(payload, context.settings)))


def image_edits(context: Context, *, variation: bool = False) -> Flow:
    body = yield from context.read_body()
    fields = parse_form(body, context.headers.get("content-type", ""))
    wanted = parse_edit_form(fields, context.settings, variation=variation)
    return (yield from answer_images(context, wanted))


def answer_images(context: Context, wanted: ImageRequest) -> Flow:
    """The images the bot answers ``wanted`` with: their URLs, or their bytes."""
    context.note(model=wanted.bot, stream=wanted.stream)
    # A bot that answers without an image was given a prompt, or (a variation) only the image.
    found = yield from bot_files(
        context, wanted.chat(), "image", param="image" if wanted.variation else "prompt"
    )
    created = int(context.now)
    content_types = [file.content_type for file, _ in found]
    if wanted.response_format == "url" and not wanted.stream:
        data = [{"url": file.url, **revised_prompt(words)} for file, words in found]
        return context.json(200, images_response(created, data, content_types))
    fetched = yield from fetch_files(context, [file.url for file, _ in found])
    data = [
        {"b64_json": base64.b64encode(file.data).decode(), **revised_prompt(words)}
        for file, (_, words) in zip(fetched, found, strict=True)
    ]
    if wanted.stream:
        return context.stream(image_events(wanted, created, data, content_types))
    return context.json(200, images_response(created, data, content_types))


def revised_prompt(words: str) -> dict[str, str]:
    """What the bot said with its image (a bot that rewrites prompts says how), if anything."""
    return {"revised_prompt": words} if words else {}


def speech(context: Context) -> Flow:
    payload = parse_json_object((yield from context.read_body()))
    wanted = parse_speech_request(payload, context.settings)
    context.note(model=wanted.bot)
    [(file, _), *_] = yield from bot_files(context, wanted.chat(), "audio", param="input")
    [audio] = yield from fetch_files(context, [file.url])
    if wanted.stream_format == "sse":
        return context.stream(speech_events(wanted, audio.data))
    said = (audio.content_type, file.content_type, guess_mime(file.name))  # the server's first
    return context.content(next((t for t in said if t.startswith("audio/")), "audio/mpeg"), audio.data)


def bot_files(
    context: Context, chat: ChatRequest, kind: str, *, param: str
) -> Generator[Step, Any, list[tuple[BotFile, str]]]:
    """Ask ``chat.bot`` ``chat.n`` times; the files of type ``kind`` (``image``, ``audio``) in
    its answers, each with the words of its answer. An answer without one is a 400 that carries
    the bot's words (a refusal, a question back)."""
    attachments = yield from upload_media(context, chat, bot=True)
    meta = new_meta(context, "media", chat.bot, False)
    planned = [
        bot_call(
            context,
            chat,
            index,
            attachments,
            PoeStreamToChatChunks(meta, index=index, streaming=False, file_links=False),
        )
        for index in range(chat.n)
    ]
    answers: list[PoeStreamToChatChunks] = yield ChoiceCalls(context, planned, [0] * chat.n)
    found = []
    for answer in answers:
        words = answer.content.strip()
        files = [
            file
            for file in answer.files
            if (file.content_type or guess_mime(file.name)).startswith(f"{kind}/")
        ]
        if not files:
            said = f": {summarize_upstream_text(words)}" if words else ", and said nothing"
            raise InvalidRequestError(
                f"The bot {chat.bot!r} answered without {'an image' if kind == 'image' else 'audio'}{said}",
                param=param,
                code="no_file_in_answer",
            )
        found += [(file, words) for file in files]
    return found


Routes = Mapping[str, Callable[[Context], Flow]]  # method -> flow
ROUTES: dict[str, Routes] = {
    "chat/completions": {"POST": chat_completions},
    "completions": {"POST": completions},
    "responses": {"POST": responses},
    "messages": {"POST": messages},
    "messages/count_tokens": {"POST": count_tokens},
    "embeddings": {"POST": embeddings},
    "models": {"GET": models},
    "images/generations": {"POST": image_generations},
    "images/edits": {"POST": image_edits},
    "images/variations": {"POST": partial(image_edits, variation=True)},
    "audio/speech": {"POST": speech},
}
