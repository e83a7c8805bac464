"""A stand-in for Poe's OpenAI-compatible API (``/v1``): chat, models and embeddings.

Chat completions are answered by the real ``fastapi_poe`` bots of ``bots.py``, called with
``fastapi_poe``'s own client, so the same scripted bots drive both backends. Responses are
built from the ``openai`` SDK's own pydantic types, so their shape is OpenAI's. Usage is
reported as one token per word, a count the proxy's own estimate never gives, so tests can
tell reported usage from estimated usage.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import random
import time
import zlib
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import fastapi_poe as fp
import fastapi_poe.client
import httpx
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from .bots import BOT_NAMES, POE_KEY, Studio
from .openai_responses import responses_routes
from .recordings import RECORDINGS, recorded, recorded_chunks

T = TypeVar("T")

ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "bot"}


async def cancel_on_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await ``work``, cancelling it if the client leaves first (checked every 50 ms)."""
    task = asyncio.ensure_future(work)
    while not (await asyncio.wait({task}, timeout=0.05))[0]:
        if await request.is_disconnected():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            raise asyncio.CancelledError
    return task.result()


def words(text: str) -> int:
    return len(text.split())


def error(
    status: int, message: str, code: str | None = None, kind: str = "invalid_request_error"
) -> Response:
    return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": code}}, status)


def content_text(content: Any) -> str:
    if isinstance(content, list):
        return "\n\n".join(p.get("text", "") for p in content if p.get("type") == "text")
    return content or ""


def to_query(body: dict[str, Any]) -> tuple[fp.QueryRequest, dict[str, Any]]:
    messages = body["messages"]
    extra: dict[str, Any] = {}
    # A trailing tool round goes to tool_calls/tool_results, as the bot protocol wants it.
    end = len(messages)
    while end > 0 and messages[end - 1]["role"] == "tool":
        end -= 1
    if end < len(messages) and body.get("tools"):
        calls = messages[end - 1]["tool_calls"]
        names = {c["id"]: c["function"]["name"] for c in calls}
        extra["tool_calls"] = [fp.ToolCallDefinition(**c) for c in calls]
        extra["tool_results"] = [
            fp.ToolResultDefinition(
                role="tool",
                name=names[m["tool_call_id"]],
                tool_call_id=m["tool_call_id"],
                content=content_text(m["content"]),
            )
            for m in messages[end:]
        ]
        messages = messages[: end - 1]
    query = []
    for m in messages:
        attachments = [
            fp.Attachment(url=p["image_url"]["url"], content_type="image/png", name="image")
            for p in (m["content"] if isinstance(m.get("content"), list) else [])
            if p.get("type") == "image_url"
        ]
        role = ROLES.get(m["role"], "user")
        query.append(
            fp.ProtocolMessage(role=role, content=content_text(m.get("content")), attachments=attachments)
        )
    stop = body.get("stop") or []
    request = fp.QueryRequest(
        version="1.2",
        type="query",
        query=query,
        user_id="",
        conversation_id="",
        message_id="",
        temperature=body.get("temperature"),
        stop_sequences=[stop] if isinstance(stop, str) else stop,
    )
    if body.get("tools"):
        extra["tools"] = [fp.ToolDefinition(**t) for t in body["tools"]]
    return request, extra


EMBEDDING_MODELS = ("text-embedding-3-small", "text-embedding-3-large")
EMBEDDING_BATCH_LIMIT = 16
EXTRA_MODELS = ("vendor/some-model.v2",)


def vector(text: str, dimensions: int) -> list[float]:
    """A deterministic unit vector for ``text``."""
    rng = random.Random(hashlib.sha256(text.encode()).digest())
    raw = [rng.gauss(0, 1) for _ in range(dimensions)]
    norm = math.sqrt(sum(x * x for x in raw))
    return [x / norm for x in raw]


# What Poe's catalog says of a model beyond OpenAI's four fields, shaped as its live /v1/models
# answer is (its fields as clients of it read them: supported_endpoints, architecture, reasoning,
# context_window; each model's own parameters as JSON Schema, such as enable_thinking).
CATALOG_FIELDS: dict[str, Any] = {
    "description": "A bot on the stand-in Poe.",
    "root": "stand-in",
    "architecture": {
        "input_modalities": ["text", "image"],
        "output_modalities": ["text"],
        "modality": "text->text",
    },
    "pricing": {"prompt": "0.0000011", "completion": "0.0000044", "request": None},
    "context_window": {"context_length": 262144, "max_output_tokens": 65536},
    "context_length": 262144,
    "reasoning": {"supports_reasoning_effort": True, "budget": None},
    "supported_endpoints": ["/v1/chat/completions", "/v1/responses"],
    "supported_features": ["tools", "web_search"],
    "parameters": {"enable_thinking": {"type": "boolean", "default": False}},
    "metadata": {"display_name": "Stand-in"},
}


class PeerState:
    """What tests may inspect or switch on the stand-in."""

    def __init__(self) -> None:
        self.embedding_batches: list[int] = []
        self.chat_streams: list[bool] = []  # for each chat call: whether it asked for a stream
        self.chat_bodies: list[dict[str, Any]] = []  # each chat (and Responses) call's body, as it came
        self.models_requests = 0
        self.fail_models = False
        # What Poe's file upload API received: attachment URL -> (name, content type, bytes, auth).
        self.uploads: dict[str, tuple[str, str, bytes, str | None]] = {}
        # Each GET of an uploaded file: (its URL, the Authorization header it came with).
        self.file_gets: list[tuple[str, str | None]] = []
        self.studio = Studio()


def make_openai_compat_routes(state: PeerState) -> list[Route]:
    """Routes of Poe's OpenAI-compatible API; chat calls the bots on the same server."""
    session = httpx.AsyncClient(timeout=30)

    async def messages_from_bot(body: dict[str, Any], bot_base_url: str) -> AsyncIterator[fp.PartialResponse]:
        request, extra = to_query(body)
        async for message in fp.client.stream_request_base(
            request,
            body["model"],
            POE_KEY,
            base_url=f"{bot_base_url}bot/",
            session=session,
            num_tries=1,
            on_error=lambda e, m: None,
            **extra,
        ):
            yield message

    def deltas(message: fp.PartialResponse) -> list[dict[str, Any]]:
        if message.data is not None:
            choice = message.data.get("choices", [{}])[0]
            return [choice.get("delta", {})]
        return [{"content": message.text}] if message.text else []

    async def chat(request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {POE_KEY}":
            return error(401, "Invalid API key", "invalid_api_key")
        body = await request.json()
        state.chat_streams.append(bool(body.get("stream")))
        state.chat_bodies.append(body)
        prompt = sum(words(content_text(m.get("content"))) for m in body["messages"])
        cid, created, model = "chatcmpl-upstream", int(time.time()), body["model"]
        if model.startswith("recorded-") and model[9:] in RECORDINGS:  # Poe's own answer, replayed
            if not body.get("stream"):
                return JSONResponse(recorded(model[9:]))
            lines = [f"data: {json.dumps(chunk)}\n\n" for chunk in recorded_chunks(model[9:])]
            return StreamingResponse(iter([*lines, "data: [DONE]\n\n"]), media_type="text/event-stream")
        if model.lower() not in BOT_NAMES:
            return error(404, f"The model `{model}` does not exist", "model_not_found")
        stream = messages_from_bot(body, str(request.base_url))

        async def first_message() -> fp.PartialResponse | None:
            try:
                return await anext(stream)
            except StopAsyncIteration:
                return None

        try:
            # Like a real server: a client that leaves while the bot thinks cancels the bot call.
            first = await cancel_on_disconnect(request, first_message())
        except fp.client.BotError as exc:
            return error(500, f"bot error: {exc}", None, "server_error")

        async def all_messages() -> AsyncIterator[fp.PartialResponse]:
            if first is not None:
                yield first
            async for message in stream:
                yield message

        if not body.get("stream"):
            text, calls = "", {}

            async def read_all() -> None:
                nonlocal text
                async for message in all_messages():
                    for delta in deltas(message):
                        text += delta.get("content") or ""
                        for call in delta.get("tool_calls") or []:
                            slot = calls.setdefault(
                                call["index"],
                                {
                                    "id": call.get("id"),
                                    "type": "function",
                                    "function": {"name": "", "arguments": ""},
                                },
                            )
                            slot["function"]["name"] += call.get("function", {}).get("name") or ""
                            slot["function"]["arguments"] += call.get("function", {}).get("arguments") or ""

            # As for a stream: a client that leaves while the bot answers cancels the bot call.
            await cancel_on_disconnect(request, read_all())
            message: dict[str, Any] = {"role": "assistant", "content": text or None}
            if calls:
                message["tool_calls"] = [calls[i] for i in sorted(calls)]
            completion = ChatCompletion.model_validate(
                {
                    "id": cid,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}
                    ],
                    "usage": {
                        "prompt_tokens": prompt,
                        "completion_tokens": words(text),
                        "total_tokens": prompt + words(text),
                    },
                }
            )
            return JSONResponse(completion.model_dump(mode="json", exclude_unset=True))

        def sse(
            delta: dict[str, Any],
            finish: str | None = None,
            usage: dict[str, int] | None = None,
            empty: bool = False,
        ) -> bytes:
            chunk = ChatCompletionChunk.model_validate(
                {
                    "id": cid,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [] if empty else [{"index": 0, "delta": delta, "finish_reason": finish}],
                    **({"usage": usage} if usage else {}),
                }
            )
            return f"data: {json.dumps(chunk.model_dump(mode='json', exclude_unset=True))}\n\n".encode()

        async def events() -> AsyncIterator[bytes]:
            yield sse({"role": "assistant", "content": ""})
            text, saw_tools = "", False
            try:
                async for message in all_messages():
                    for delta in deltas(message):
                        saw_tools = saw_tools or bool(delta.get("tool_calls"))
                        text += delta.get("content") or ""
                        if delta.get("content") or delta.get("tool_calls"):
                            yield sse({k: v for k, v in delta.items() if k in ("content", "tool_calls")})
            except fp.client.BotError as exc:
                failure = {"error": {"message": str(exc), "type": "server_error"}}
                yield f"data: {json.dumps(failure)}\n\n".encode()
                return
            yield sse({}, "tool_calls" if saw_tools else "stop")
            if (body.get("stream_options") or {}).get("include_usage"):
                yield sse(
                    {},
                    usage={
                        "prompt_tokens": prompt,
                        "completion_tokens": words(text),
                        "total_tokens": prompt + words(text),
                    },
                    empty=True,
                )
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def models(request: Request) -> Response:
        state.models_requests += 1
        if state.fail_models:
            return error(500, "models are down", None, "server_error")
        ids = [*BOT_NAMES, *EMBEDDING_MODELS, *EXTRA_MODELS]
        entry = {"object": "model", "created": 1700000000, "owned_by": "poe", **CATALOG_FIELDS}
        return JSONResponse({"object": "list", "data": [{"id": i, **entry} for i in ids]})

    async def embeddings(request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {POE_KEY}":
            return error(401, "Invalid API key", "invalid_api_key")
        body = await request.json()
        if body["model"] not in EMBEDDING_MODELS:
            return error(404, f"The model `{body['model']}` does not exist", "model_not_found")
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        if len(inputs) > EMBEDDING_BATCH_LIMIT:
            return error(400, f"at most {EMBEDDING_BATCH_LIMIT} inputs per request")
        state.embedding_batches.append(len(inputs))
        dims = body.get("dimensions") or 1536
        data = [
            {"object": "embedding", "index": i, "embedding": vector(t, dims)} for i, t in enumerate(inputs)
        ]
        tokens = sum(words(t) for t in inputs)
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def file_upload(request: Request) -> Response:
        """Poe's ``file_upload_3RD_PARTY_POST``, as ``fastapi_poe.upload_file`` calls it."""
        auth = request.headers.get("authorization")
        if auth != POE_KEY:  # the bare key, not "Bearer <key>"
            return error(401, "Invalid API key", "invalid_api_key")
        form = await request.form()
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            return error(400, "no file")
        data = await upload.read()
        digest = hashlib.sha256(data).hexdigest()[:16]
        url = f"{str(request.base_url).rstrip('/')}/poe_files/{digest}/{upload.filename}"
        mime_type = upload.content_type or "application/octet-stream"
        state.uploads[url] = (upload.filename or "", mime_type, data, auth)
        return JSONResponse({"attachment_url": url, "mime_type": mime_type})

    async def poe_file(request: Request) -> Response:
        """A file on "Poe's CDN": what the upload API was given, public (no key asked)."""
        url = str(request.url)
        state.file_gets.append((url, request.headers.get("authorization")))
        if url not in state.uploads:
            return error(404, "no such file")
        _, mime_type, data, _ = state.uploads[url]
        return Response(data, media_type=mime_type)

    async def bomb_file(request: Request) -> Response:
        """``?mb=`` megabytes of zeros, gzipped (a thousandth of that on the wire), sent as a
        compressed PNG whatever was asked: what a hostile file server may answer."""
        megabytes = int(request.query_params["mb"])
        if megabytes not in bombs:
            packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
            zeros = bytes(1024 * 1024)
            bombs[megabytes] = b"".join([*(packer.compress(zeros) for _ in range(megabytes)), packer.flush()])
        headers = {"content-encoding": "gzip"}
        return Response(bombs[megabytes], media_type="image/png", headers=headers)

    bombs: dict[int, bytes] = {}

    async def trickled_file(request: Request) -> Response:
        """A file sent a byte every half second, for ``?bytes=`` bytes: no read waits long."""

        async def trickle() -> AsyncIterator[bytes]:
            for _ in range(int(request.query_params["bytes"])):
                yield b"\0"
                await asyncio.sleep(0.5)

        return StreamingResponse(trickle(), media_type="image/png")

    async def moved_file(request: Request) -> Response:
        """A file that has moved to ``?to=`` (a CDN redirecting elsewhere)."""
        state.file_gets.append((str(request.url), request.headers.get("authorization")))
        return RedirectResponse(request.query_params["to"], 302)

    def authorized(request: Request) -> Response | None:
        if request.headers.get("authorization") != f"Bearer {POE_KEY}":
            return error(401, "Invalid API key", "invalid_api_key")
        return None

    return [
        *responses_routes(messages_from_bot, deltas, authorized, state.chat_bodies),
        Route("/poe_api/file_upload_3RD_PARTY_POST", file_upload, methods=["POST"]),
        Route("/poe_files/moved", moved_file, methods=["GET"]),
        Route("/poe_files/bomb", bomb_file, methods=["GET"]),
        Route("/poe_files/trickle", trickled_file, methods=["GET"]),
        Route("/poe_files/{digest}/{name}", poe_file, methods=["GET"]),
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
    ]
