"""What a chat request becomes upstream, for either backend.

* ``poe_query``: the body of a Poe bot-protocol ``query`` request (the shape of
  ``fastapi_poe.types.QueryRequest``), with inline media as the attachments Poe's upload API
  gave back;
* ``openai_compat_body``: the body for Poe's OpenAI-compatible ``/v1/chat/completions``.

Both ask for what the bot protocol has no field for (JSON answers, a required tool) as a system
instruction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .chat_request import ChatMessage, ChatRequest
from .sse import dumps

PROTOCOL_VERSION = "1.2"


@dataclass(frozen=True, slots=True)
class QueryIds:
    """Poe identifiers for one upstream call (``^[a-z]{1,3}-[a-z0-9=]{32}$``)."""

    conversation_id: str
    message_id: str
    user_id: str

    @classmethod
    def from_hex(cls, token: str, user: str | None) -> QueryIds:
        """``token`` is 32 lowercase hex characters (e.g. ``uuid4().hex``)."""
        user_hash = hashlib.sha256((user or "anonymous").encode()).hexdigest()[:32]
        return cls(conversation_id=f"c-{token}", message_id=f"m-{token}", user_id=f"u-{user_hash}")


def json_instruction(request: ChatRequest) -> str | None:
    """The instruction that asks a bot for JSON when ``response_format`` wants it."""
    if request.json_mode == "json_object":
        return "Respond with a single valid JSON object and nothing else: no prose, no code fences."
    if request.json_mode == "json_schema":
        schema = request.json_schema or {}
        return (
            "Respond with a single JSON value that validates against this JSON Schema, and nothing "
            f"else: no prose, no code fences.\nJSON Schema: {dumps(schema)}"
        )
    return None


def tool_choice_instruction(request: ChatRequest) -> str | None:
    """What the bot protocol cannot say natively about ``tool_choice``, said as an instruction."""
    if not request.tools_enabled:
        return None
    if request.tool_choice == "required":
        return "You must call at least one of the provided tools in this response."
    if isinstance(request.tool_choice, dict):
        return f"You must call the tool named {request.tool_choice['function']['name']!r} in this response."
    return None


def _system_additions(request: ChatRequest) -> list[str]:
    return [text for text in (json_instruction(request), tool_choice_instruction(request)) if text]


def poe_query(
    request: ChatRequest,
    ids: QueryIds,
    attachments: Mapping[tuple[int, int], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The body of a Poe bot-protocol ``query`` request (``fastapi_poe.types.QueryRequest``).

    ``attachments`` maps ``(message index, part index)`` to a Poe ``Attachment`` dict for
    media that had to be uploaded first; media with an http(s) URL are attached by URL.
    """
    attachments = attachments or {}
    messages = list(request.messages)
    tool_calls: list[dict[str, Any]] | None = None
    tool_results: list[dict[str, Any]] | None = None

    # A trailing tool round (assistant tool_calls, then their results) is what the bot acts on
    # now: Poe takes it as top-level tool_calls/tool_results. Earlier rounds stay in the history.
    trailing = _trailing_tool_round(messages)
    if trailing is not None and request.tools:
        start = trailing
        call_message = messages[start]
        names = {c["id"]: c["function"]["name"] for c in call_message.tool_calls}
        tool_calls = [dict(c) for c in call_message.tool_calls]
        tool_results = [
            {
                "role": "tool",
                "name": names.get(m.tool_call_id or "", ""),
                "tool_call_id": m.tool_call_id or "",
                "content": m.content,
            }
            for m in messages[start + 1 :]
        ]
        messages = messages[:start]

    query = []
    last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=None)
    names_by_id = {c["id"]: c["function"]["name"] for m in messages for c in m.tool_calls}
    for index, message in enumerate(messages):
        query.append(
            _protocol_message(
                message,
                index,
                attachments,
                names_by_id,
                parameters=request.parameters if index == last_user else None,
            )
        )

    additions = _system_additions(request)
    if additions:
        text = "\n\n".join(additions)
        if query and query[0]["role"] == "system":
            query[0]["content"] = f"{query[0]['content']}\n\n{text}" if query[0]["content"] else text
        else:
            query.insert(0, _text_message("system", text))

    body: dict[str, Any] = {
        "version": PROTOCOL_VERSION,
        "type": "query",
        "query": query,
        "user_id": ids.user_id,
        "conversation_id": ids.conversation_id,
        "message_id": ids.message_id,
        "metadata": "",
        "temperature": request.temperature,
        "skip_system_prompt": False,
        "logit_bias": dict(request.logit_bias or {}),
        "stop_sequences": list(request.stop),
        "language_code": "en",
        "bot_query_id": "",
        "users": [],
    }
    if request.tools_enabled:
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    k: v for k, v in t["function"].items() if k in ("name", "description", "parameters")
                },
            }
            for t in request.tools
        ]
        if tool_calls is not None:
            body["tool_calls"] = tool_calls
            body["tool_results"] = tool_results
    return body


def _trailing_tool_round(messages: Sequence[ChatMessage]) -> int | None:
    """Index of the assistant message whose tool calls the trailing tool messages answer."""
    index = len(messages)
    while index > 0 and messages[index - 1].role == "tool":
        index -= 1
    if index == len(messages) or index == 0:
        return None
    candidate = messages[index - 1]
    if candidate.role == "assistant" and candidate.tool_calls:
        return index - 1
    return None


def _text_message(role: str, content: str) -> dict[str, Any]:
    return {
        "role": role,
        "content": content,
        "content_type": "text/markdown",
        "attachments": [],
        "parameters": {},
    }


def _protocol_message(
    message: ChatMessage,
    index: int,
    uploaded: Mapping[tuple[int, int], dict[str, Any]],
    tool_names: Mapping[str, str],
    *,
    parameters: Mapping[str, Any] | None,
) -> dict[str, Any]:
    if message.role == "assistant":
        result = _text_message("bot", message.content)
        if message.tool_calls:
            # An earlier tool round, kept in the history so the bot sees what it did.
            result["message_type"] = "function_call"
            result["content"] = message.content or dumps(list(message.tool_calls))
            result["metadata"] = dumps({"tool_calls": list(message.tool_calls)})
    elif message.role == "tool":
        result = _text_message("tool", message.content)
        result["metadata"] = dumps(
            {
                "tool_call_id": message.tool_call_id,
                "name": tool_names.get(message.tool_call_id or "", ""),
            }
        )
    else:
        result = _text_message(message.role, message.content)
    if message.name:
        result["sender"] = {"name": message.name}
    attachments = []
    for part_index, part in enumerate(message.media):
        attachment = uploaded.get((index, part_index))
        if attachment is None and part.url is not None:
            attachment = {"url": part.url, "content_type": part.mime_type, "name": part.name}
        if attachment is None:
            raise ValueError(f"media part {part.param} was not uploaded")  # a caller bug, not a client's
        attachments.append(attachment)
    result["attachments"] = attachments
    if parameters:
        result["parameters"] = dict(parameters)
    return result


# ---------------------------------------------------------------------------------------------
# Conversion: Poe's OpenAI-compatible API

# Fields the proxy implements itself, or that only mean something between client and proxy.
_PROXY_FIELDS = frozenset({"n", "stream", "stream_options", "parameters", "model"})


def openai_compat_body(request: ChatRequest) -> dict[str, Any]:
    """The body for Poe's ``/v1/chat/completions``: the client's own, minus what we emulate.

    Streamed upstream (with usage) when the client streams, one JSON answer when it does not;
    ``n`` is emulated by parallel calls, so each call asks for one choice.
    """
    body = {k: v for k, v in request.raw.items() if k not in _PROXY_FIELDS}
    body["model"] = request.bot
    body["stream"] = request.stream
    if request.stream:
        body["stream_options"] = {"include_usage": True}
    for legacy in ("functions", "function_call", "tools", "tool_choice"):
        body.pop(legacy, None)
    if request.tools_enabled:  # validated and normalised: description filled, legacy functions as tools
        body["tools"] = [dict(t) for t in request.tools]
        if request.tool_choice is not None:
            body["tool_choice"] = request.tool_choice
    for key, value in request.parameters.items():  # extra_body fields travel at the top level
        body.setdefault(key, value)
    instruction = json_instruction(request)
    if instruction:  # Poe's chat API does not enforce response_format (README): ask as well
        body["messages"] = [{"role": "system", "content": instruction}, *body.get("messages", [])]
    return body
