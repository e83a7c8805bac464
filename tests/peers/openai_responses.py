"""A stand-in for Poe's own ``/v1/responses`` (what the proxy's openai backend forwards to).

Like the chat stand-in, it answers with the test bots over the bot protocol: the Responses input
becomes a chat body for ``to_query``, and the bot's text and tool calls come back as a
``response`` object or as the Responses event sequence, each checked against the ``openai``
SDK's own types before it leaves. It is written apart from the proxy's ``core/responses.py`` on
purpose: the two must agree through the wire, not through shared code.

It keeps what it answers, as Poe does (in memory: a stand-in has one process): with
``previous_response_id`` the earlier input and output come first, an ``item_reference`` is the
item it names, and a kept response can be retrieved, its input items listed, and deleted.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import fastapi_poe as fp
import pydantic
from openai.types.responses import Response as ResponseObject
from openai.types.responses import ResponseStreamEvent
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .bots import BOT_NAMES

EVENT = pydantic.TypeAdapter(ResponseStreamEvent)


def text_of(content: Any) -> str:
    if isinstance(content, list):
        return "\n\n".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


def chat_body(body: dict[str, Any]) -> dict[str, Any]:
    """The Responses request as the chat body ``to_query`` reads."""
    items = body["input"]
    messages: list[dict[str, Any]] = []
    if body.get("instructions"):
        messages.append({"role": "system", "content": body["instructions"]})
    for item in [{"role": "user", "content": items}] if isinstance(items, str) else items:
        kind = item.get("type", "message")
        if kind == "message":
            messages.append({"role": item["role"], "content": text_of(item["content"])})
        elif kind == "function_call":
            function = {"name": item["name"], "arguments": item["arguments"]}
            call = {"id": item["call_id"], "type": "function", "function": function}
            if messages and messages[-1]["role"] == "assistant":
                messages[-1].setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": "", "tool_calls": [call]})
        elif kind == "function_call_output":
            messages.append(
                {"role": "tool", "tool_call_id": item["call_id"], "content": text_of(item["output"])}
            )
    tools = [
        {"type": "function", "function": {k: t[k] for k in ("name", "description", "parameters") if k in t}}
        for t in body.get("tools") or []
        if t.get("type") == "function"
    ]
    return {"model": body["model"], "messages": messages, **({"tools": tools} if tools else {})}


class Answer:
    """The output items of one answer, and the events that build them, from chat deltas."""

    def __init__(self) -> None:
        self.output: list[dict[str, Any]] = []
        self.text = ""
        self._message: dict[str, Any] | None = None
        self._calls: dict[int, dict[str, Any]] = {}

    def delta(self, delta: dict[str, Any]) -> Iterator[dict[str, Any]]:
        if delta.get("content"):
            yield from self._text(delta["content"])
        for call in delta.get("tool_calls") or []:
            yield from self._call(call)

    def _text(self, text: str) -> Iterator[dict[str, Any]]:
        message = self._message
        if message is None:
            message = {"id": f"msg_{uuid.uuid4().hex}", "type": "message", "role": "assistant"}
            message.update(status="in_progress", content=[])
            self._message = message
            self.output.append(message)
            yield {
                "type": "response.output_item.added",
                "output_index": len(self.output) - 1,
                "item": dict(message),
            }
            part = {"type": "output_text", "text": "", "annotations": []}
            yield {"type": "response.content_part.added", **self._where(message), "part": part}
        self.text += text
        yield {"type": "response.output_text.delta", **self._where(message), "delta": text, "logprobs": []}

    def _where(self, message: dict[str, Any]) -> dict[str, Any]:
        return {"item_id": message["id"], "output_index": self.output.index(message), "content_index": 0}

    def _call(self, call: dict[str, Any]) -> Iterator[dict[str, Any]]:
        function = call.get("function") or {}
        item = self._calls.get(call["index"])
        if item is None:
            item = {"id": f"fc_{uuid.uuid4().hex}", "type": "function_call", "status": "in_progress"}
            item.update(call_id=call.get("id") or f"call_{uuid.uuid4().hex}", name=function.get("name"))
            item["arguments"] = ""
            self._calls[call["index"]] = item
            self.output.append(item)
            yield {
                "type": "response.output_item.added",
                "output_index": len(self.output) - 1,
                "item": dict(item),
            }
        fragment = function.get("arguments") or ""
        item["arguments"] += fragment
        if fragment:
            index = self.output.index(item)
            yield {
                "type": "response.function_call_arguments.delta",
                "item_id": item["id"],
                "output_index": index,
                "delta": fragment,
            }

    def close(self) -> Iterator[dict[str, Any]]:
        message = self._message
        if message is not None:
            part = {"type": "output_text", "text": self.text, "annotations": []}
            message.update(status="completed", content=[part])
            where = self._where(message)
            yield {"type": "response.output_text.done", **where, "text": self.text, "logprobs": []}
            yield {"type": "response.content_part.done", **where, "part": part}
            yield {
                "type": "response.output_item.done",
                "output_index": where["output_index"],
                "item": message,
            }
        for item in self._calls.values():
            item["status"] = "completed"
            index = self.output.index(item)
            yield {
                "type": "response.function_call_arguments.done",
                "item_id": item["id"],
                "output_index": index,
                "arguments": item["arguments"],
            }
            yield {"type": "response.output_item.done", "output_index": index, "item": item}


def invalid(status: int, message: str, param: str | None, code: str) -> Response:
    error = {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    return JSONResponse({"error": error}, status)


def as_kept(item: dict[str, Any]) -> dict[str, Any]:
    """An input item as OpenAI lists it back: with an id, a message's text as content parts."""
    kept = {"id": f"msg_{uuid.uuid4().hex}", **item}
    if kept.get("type", "message") == "message":
        kept["type"] = "message"
        if isinstance(kept["content"], str):
            kind = "output_text" if kept["role"] == "assistant" else "input_text"
            kept["content"] = [{"type": kind, "text": kept["content"]}]
    return kept


class Kept:
    """The responses answered with ``store`` on, and every item of theirs, by id."""

    def __init__(self) -> None:
        self.responses: dict[str, dict[str, Any]] = {}  # id -> {"response", "input"}
        self.items: dict[str, dict[str, Any]] = {}

    def resolve(self, body: dict[str, Any]) -> list[dict[str, Any]] | Response:
        """The whole input: what ``previous_response_id`` carries, then ``input`` with each
        reference replaced by its item; or the 400 for an id not kept."""
        given = body["input"]
        items = [{"type": "message", "role": "user", "content": given}] if isinstance(given, str) else given
        earlier: list[dict[str, Any]] = []
        previous = body.get("previous_response_id")
        if previous is not None:
            if previous not in self.responses:
                message = f"Previous response with id '{previous}' not found."
                return invalid(400, message, "previous_response_id", "previous_response_not_found")
            kept = self.responses[previous]
            earlier = kept["input"] + kept["response"]["output"]
        whole = list(earlier)
        for index, item in enumerate(items):
            if item.get("type") == "item_reference":
                if item["id"] not in self.items:
                    message = f"Item with id '{item['id']}' not found."
                    return invalid(400, message, f"input[{index}]", "item_not_found")
                whole.append(self.items[item["id"]])
            else:
                whole.append(as_kept(item))
        return whole

    def keep(self, response: dict[str, Any], input_items: list[dict[str, Any]]) -> None:
        self.responses[response["id"]] = {"response": response, "input": input_items}
        for item in [*input_items, *response["output"]]:
            self.items[item["id"]] = item

    def routes(self, authorized: Callable[[Request], Response | None]) -> list[Route]:
        async def one(request: Request) -> Response:
            refused = authorized(request)
            if refused is not None:
                return refused
            response_id = request.path_params["id"]
            kept = self.responses.get(response_id)
            if kept is None:
                return invalid(404, f"Response with id '{response_id}' not found.", None, "not_found")
            if request.method == "DELETE":
                del self.responses[response_id]
                return JSONResponse({"id": response_id, "object": "response", "deleted": True})
            if request.url.path.endswith("/input_items"):
                return input_items(kept["input"], request.query_params)
            return JSONResponse(kept["response"])

        return [
            Route("/v1/responses/{id}", one, methods=["GET", "DELETE"]),
            Route("/v1/responses/{id}/input_items", one, methods=["GET"]),
        ]


def input_items(items: list[dict[str, Any]], query: Any) -> Response:
    """A page of a response's input items, as OpenAI's API pages them."""
    limit = int(query.get("limit", "20"))
    if not 1 <= limit <= 100:
        return invalid(400, "limit must be between 1 and 100", "limit", "invalid_value")
    data = items if query.get("order") == "asc" else list(reversed(items))
    if "after" in query:
        data = data[[item["id"] for item in data].index(query["after"]) + 1 :]
    page = data[:limit]
    first, last = (page[0]["id"], page[-1]["id"]) if page else (None, None)
    listed = {
        "object": "list",
        "data": page,
        "first_id": first,
        "last_id": last,
        "has_more": len(data) > limit,
    }
    return JSONResponse(listed)


def responses_routes(
    bot_messages: Callable[[dict[str, Any], str], AsyncIterator[fp.PartialResponse]],
    deltas: Callable[[fp.PartialResponse], list[dict[str, Any]]],
    authorized: Callable[[Request], Response | None],
    bodies: list[dict[str, Any]],
) -> list[Route]:
    """``POST /v1/responses`` and what the kept responses answer; each body is added to
    ``bodies`` as it came."""
    kept = Kept()

    async def responses(request: Request) -> Response:
        refused = authorized(request)
        if refused is not None:
            return refused
        body = await request.json()
        bodies.append(body)
        if body["model"].lower() not in BOT_NAMES:
            error = {
                "message": f"The model `{body['model']}` does not exist",
                "type": "invalid_request_error",
            }
            return JSONResponse({"error": {**error, "param": None, "code": "model_not_found"}}, 404)
        whole = kept.resolve(body)
        if isinstance(whole, Response):
            return whole
        chat = chat_body({**body, "input": whole})
        prompt = sum(len(text_of(m.get("content")).split()) for m in chat["messages"])
        response_id, created = f"resp_{uuid.uuid4().hex}", int(time.time())
        messages = bot_messages(chat, str(request.base_url))

        def response(status: str, answer: Answer, error: dict[str, str] | None = None) -> dict[str, Any]:
            words = len(answer.text.split())
            usage = {
                "input_tokens": prompt,
                "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                "output_tokens": words,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": prompt + words,
            }
            value = {
                "id": response_id,
                "object": "response",
                "created_at": created,
                "status": status,
                "error": error,
                "model": body["model"],
                "previous_response_id": body.get("previous_response_id"),
                "store": body.get("store", True),
                "output": answer.output,
                "parallel_tool_calls": True,
                "tool_choice": body.get("tool_choice", "auto"),
                "tools": body.get("tools") or [],
                "usage": usage if status == "completed" else None,
            }
            return ResponseObject.model_validate(value).model_dump(mode="json", exclude_unset=True)

        async def events() -> AsyncIterator[dict[str, Any]]:
            """The event sequence, as the bot's messages arrive."""
            answer = Answer()
            yield {"type": "response.created", "response": response("in_progress", Answer())}
            try:
                async for partial in messages:
                    for delta in deltas(partial):
                        for event in answer.delta(delta):
                            yield event
            except fp.client.BotError as exc:
                failure = {"code": "server_error", "message": f"bot error: {exc}"}
                yield {"type": "response.failed", "response": response("failed", answer, failure)}
                return
            for event in answer.close():
                yield event
            completed = response("completed", answer)
            if body.get("store", True):
                kept.keep(completed, whole)
            yield {"type": "response.completed", "response": completed}

        if not body.get("stream"):
            final: dict[str, Any] = {}
            async for event in events():
                final = event
            return JSONResponse(final["response"])

        async def stream() -> AsyncIterator[bytes]:
            sequence = 0
            async for event in events():
                checked = EVENT.validate_python({**event, "sequence_number": sequence})
                data = json.dumps(checked.model_dump(mode="json", exclude_unset=True))
                yield f"event: {event['type']}\ndata: {data}\n\n".encode()
                sequence += 1

        return StreamingResponse(stream(), media_type="text/event-stream")

    return [Route("/v1/responses", responses, methods=["POST"]), *kept.routes(authorized)]
