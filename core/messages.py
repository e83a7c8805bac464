"""Anthropic's Messages API (``POST /v1/messages``): what Claude Code and the ``anthropic`` SDKs
speak, on any Poe bot.

A pair of pure converters around the one internal chat request, as chat and Responses are:
``messages_chat_body`` turns a Messages request into the chat body ``parse_chat_request`` reads
(so every check, limit, upload and tool rule of chat holds), and the chat chunks of the answer
become Anthropic's event sequence (``MessagesWire``) or its message object (``message_object``).

What the request says, and where it goes:

- ``system`` (a string or text blocks): the system message; ``messages``: ``text``, ``image``
  (base64 or url), ``document`` (a PDF, base64 or url; plain text), ``tool_use`` (the assistant's
  tool calls) and ``tool_result`` (a tool message each, ``is_error`` said in its text);
  ``thinking`` and ``redacted_thinking`` blocks a client sends back are dropped (Poe's bots
  cannot take them), as are ``cache_control`` marks;
- ``tools``: custom tools (``input_schema`` as the function's parameters); Anthropic's own server
  tools (``web_search_…``, ``bash_…``, …) are dropped, since no Poe bot runs them;
- ``tool_choice``: ``auto``, ``any`` (``required``), ``tool`` (that function), ``none``;
  ``disable_parallel_tool_use`` as ``parallel_tool_calls``;
- ``max_tokens`` (required, as Anthropic requires it), ``stop_sequences``, ``temperature``,
  ``top_p``, ``stream``, ``metadata.user_id`` (``user``); ``top_k`` is accepted and not sent (no
  Poe field); ``thinking.budget_tokens``: the reasoning control (``core.reasoning``).

Claude Code sends more than the documented API (seen from version 2.1.332): messages with the
``system`` role (its environment, a system message where it stands), ``thinking: {"type":
"adaptive"}`` (left to the model), ``output_config.effort`` (the reasoning control's effort) and
``context_management`` (nothing to manage: the proxy keeps no context).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .chat_stream import Converter
from .errors import InvalidRequestError, OpenAIError
from .reasoning import EFFORTS as _SCALE
from .sse import dumps
from .validate import missing_parameter, opt_int, opt_object, opt_str, required_str, type_error

# Anthropic's error types, by the status the proxy answers with.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "timeout_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
}
OVERLOADED = 529  # Anthropic's status for an overloaded service: a 503 of the proxy's
# Anthropic's efforts (output_config.effort) on the scale of reasoning efforts.
EFFORTS = {**{effort: effort for effort in _SCALE}, "max": "xhigh"}


def error_status(error: OpenAIError) -> int:
    return OVERLOADED if error.status == 503 else error.status


def error_body(error: OpenAIError) -> dict[str, Any]:
    """The body Anthropic sends for ``error``."""
    kind = ERROR_TYPES.get(error.status, "api_error" if error.status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": error.message}}


@dataclass(frozen=True, slots=True)
class MessagesRequest:
    """A Messages request as chat: its body, and what chat has no word for."""

    chat_body: dict[str, Any]
    model: str
    budget: int | None  # thinking.budget_tokens, for the reasoning control


def _text_of(content: Any, param: str) -> str:
    """A string, or text blocks' texts joined (``system``, a ``tool_result``'s content)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise type_error(param, "a string or an array of text blocks", content)
    texts = []
    for i, block in enumerate(content):
        if not isinstance(block, dict):
            raise type_error(f"{param}[{i}]", "an object", block)
        if block.get("type") == "text":
            texts.append(required_str(block, "text", param=f"{param}[{i}].text"))
    return "\n\n".join(texts)


def _source_url(source: Mapping[str, Any], param: str) -> str:
    kind = source.get("type")
    if kind == "base64":
        media_type = required_str(source, "media_type", param=f"{param}.media_type")
        return f"data:{media_type};base64,{required_str(source, 'data', param=f'{param}.data')}"
    if kind == "url":
        return required_str(source, "url", param=f"{param}.url")
    raise InvalidRequestError(
        f"Invalid value for '{param}.type': {kind!r}; expected 'base64' or 'url'.",
        param=f"{param}.type",
        code="invalid_value",
    )


def _blocks(blocks: list[Any], param: str) -> Iterator[tuple[str, Any, dict[str, Any]]]:
    """Each content block with where it is (for an error's ``param``) and its type."""
    for i, block in enumerate(blocks):
        where = f"{param}[{i}]"
        if not isinstance(block, dict):
            raise type_error(where, "an object", block)
        yield where, block.get("type"), block


def _user_parts(blocks: list[Any], param: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A user turn's blocks as chat content parts, and its tool results as tool messages."""
    parts: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for where, kind, block in _blocks(blocks, param):
        if kind == "text":
            parts.append({"type": "text", "text": required_str(block, "text", param=f"{where}.text")})
        elif kind == "image":
            source = opt_object(block, "source", param=f"{where}.source") or {}
            parts.append({"type": "image_url", "image_url": {"url": _source_url(source, f"{where}.source")}})
        elif kind == "document":
            source = opt_object(block, "source", param=f"{where}.source") or {}
            if source.get("type") == "text":
                parts.append(
                    {"type": "text", "text": required_str(source, "data", param=f"{where}.source.data")}
                )
            else:
                name = opt_str(block, "title", param=f"{where}.title") or "document.pdf"
                url = _source_url(source, f"{where}.source")
                parts.append({"type": "file", "file": {"file_data": url, "filename": name}})
        elif kind == "tool_result":
            text = _text_of(block.get("content", ""), f"{where}.content")
            if block.get("is_error") is True:
                text = f"Error: {text}"
            call_id = required_str(block, "tool_use_id", param=f"{where}.tool_use_id")
            results.append({"role": "tool", "tool_call_id": call_id, "content": text})
        elif kind in ("thinking", "redacted_thinking"):
            continue
        else:
            raise InvalidRequestError(
                f"Invalid value for '{where}.type': {kind!r} is not a content block this proxy takes.",
                param=f"{where}.type",
                code="invalid_value",
            )
    return parts, results


def _assistant_turn(blocks: list[Any], param: str) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for where, kind, block in _blocks(blocks, param):
        if kind == "text":
            texts.append(required_str(block, "text", param=f"{where}.text"))
        elif kind == "tool_use":
            arguments = block.get("input", {})
            if not isinstance(arguments, dict):
                raise type_error(f"{where}.input", "an object", arguments)
            calls.append(
                {
                    "id": required_str(block, "id", param=f"{where}.id"),
                    "type": "function",
                    "function": {
                        "name": required_str(block, "name", param=f"{where}.name"),
                        "arguments": json.dumps(arguments),
                    },
                }
            )
        elif kind not in ("thinking", "redacted_thinking"):
            raise InvalidRequestError(
                f"Invalid value for '{where}.type': {kind!r} is not a block an assistant turn takes.",
                param=f"{where}.type",
                code="invalid_value",
            )
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        message["tool_calls"] = calls
    return message


def _tools(tools: Any) -> list[dict[str, Any]]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise type_error("tools", "an array", tools)
    chat_tools = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise type_error(f"tools[{i}]", "an object", tool)
        if tool.get("type", "custom") != "custom":
            continue  # one of Anthropic's own server tools: no Poe bot runs it (README)
        function: dict[str, Any] = {"name": required_str(tool, "name", param=f"tools[{i}].name")}
        if isinstance(tool.get("description"), str):
            function["description"] = tool["description"]
        schema = opt_object(tool, "input_schema", param=f"tools[{i}].input_schema")
        function["parameters"] = schema or {"type": "object"}
        chat_tools.append({"type": "function", "function": function})
    return chat_tools


def _tool_choice(choice: Any) -> tuple[Any, bool | None]:
    """Chat's ``tool_choice``, and ``parallel_tool_calls`` where the client said."""
    if choice is None:
        return None, None
    if not isinstance(choice, dict):
        raise type_error("tool_choice", "an object", choice)
    kind = choice.get("type")
    parallel = (
        None if choice.get("disable_parallel_tool_use") is None else not choice["disable_parallel_tool_use"]
    )
    if kind == "auto":
        return "auto", parallel
    if kind == "any":
        return "required", parallel
    if kind == "none":
        return "none", parallel
    if kind == "tool":
        name = required_str(choice, "name", param="tool_choice.name")
        return {"type": "function", "function": {"name": name}}, parallel
    raise InvalidRequestError(
        f"Invalid value for 'tool_choice.type': {kind!r}; expected 'auto', 'any', 'tool' or 'none'.",
        param="tool_choice.type",
        code="invalid_value",
    )


def messages_chat_body(body: Mapping[str, Any], *, counting: bool = False) -> MessagesRequest:
    """A Messages request as the chat body ``parse_chat_request`` takes. ``counting``: for
    ``count_tokens``, which has no ``max_tokens``."""
    model = required_str(body, "model")
    max_tokens = opt_int(body, "max_tokens", 1, None)
    if max_tokens is None and not counting:
        raise missing_parameter("max_tokens")
    chat: list[dict[str, Any]] = []
    system = body.get("system")
    if system is not None:
        chat.append({"role": "system", "content": _text_of(system, "system")})
    turns = body.get("messages")
    if not isinstance(turns, list) or not turns:
        raise type_error("messages", "a non-empty array", turns)
    for i, turn in enumerate(turns):
        param = f"messages[{i}]"
        if not isinstance(turn, dict):
            raise type_error(param, "an object", turn)
        role, content = turn.get("role"), turn.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if not isinstance(blocks, list):
            raise type_error(f"{param}.content", "a string or an array of content blocks", content)
        if role == "user":
            parts, results = _user_parts(blocks, f"{param}.content")
            chat += results
            if parts:
                chat.append({"role": "user", "content": parts})
        elif role == "assistant":
            chat.append(_assistant_turn(blocks, f"{param}.content"))
        elif role == "system":  # Claude Code's mid-conversation instructions (its environment)
            chat.append({"role": "system", "content": _text_of(blocks, f"{param}.content")})
        else:
            raise InvalidRequestError(
                f"Invalid value for '{param}.role': {role!r}; expected 'user', 'assistant' or 'system'.",
                param=f"{param}.role",
                code="invalid_value",
            )
    chat_body: dict[str, Any] = {
        "model": model,
        "messages": chat,
        "stream": body.get("stream", False) is True,
    }
    if max_tokens is not None:
        chat_body["max_tokens"] = max_tokens
    tools = _tools(body.get("tools"))
    if tools:
        chat_body["tools"] = tools
        choice, parallel = _tool_choice(body.get("tool_choice"))
        if choice is not None:
            chat_body["tool_choice"] = choice
        if parallel is not None:
            chat_body["parallel_tool_calls"] = parallel
    stops = body.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise type_error("stop_sequences", "an array of strings", stops)
        chat_body["stop"] = stops
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            chat_body[name] = body[name]
    metadata = opt_object(body, "metadata") or {}
    if isinstance(metadata.get("user_id"), str):
        chat_body["user"] = metadata["user_id"]
    thinking = opt_object(body, "thinking") or {}
    budget = None
    if thinking.get("type") == "enabled":
        budget = opt_int(thinking, "budget_tokens", 0, None, param="thinking.budget_tokens")
    elif thinking.get("type") == "disabled":
        budget = 0
    # "adaptive" thinking leaves it to the model; an effort (Claude Code's output_config) is one.
    effort = opt_str(opt_object(body, "output_config") or {}, "effort", param="output_config.effort")
    if effort is not None and budget is None:
        chat_body["reasoning_effort"] = EFFORTS.get(effort, effort)
    if chat_body["stream"]:
        chat_body["stream_options"] = {"include_usage": True}
    return MessagesRequest(chat_body, model, budget)


# -- answers ---------------------------------------------------------------------------------


def tool_use_id(call_id: str) -> str:
    """A tool call's id as Anthropic's clients expect it (``toolu_…``); sent back, it is
    passed to the bot as it came, so either spelling finds its call."""
    return call_id if call_id.startswith("toolu_") else f"toolu_{call_id}"


def stop_reason(answer: Converter) -> tuple[str, str | None]:
    """Anthropic's ``stop_reason`` and ``stop_sequence`` for a finished answer."""
    if answer.finish_reason == "length":
        return "max_tokens", None
    if answer.finish_reason == "tool_calls":
        return "tool_use", None
    if answer.stop_sequence is not None:
        return "stop_sequence", answer.stop_sequence
    return "end_turn", None


def anthropic_usage(chat_usage: Mapping[str, Any]) -> dict[str, Any]:
    cached = (chat_usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    return {
        "input_tokens": chat_usage["prompt_tokens"] - cached,
        "output_tokens": chat_usage["completion_tokens"],
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
    }


def message_object(
    message_id: str, model: str, answer: Converter, chat_usage: Mapping[str, Any]
) -> dict[str, Any]:
    """The message of a finished answer (not streamed)."""
    content: list[dict[str, Any]] = []
    if answer.reasoning:
        content.append({"type": "thinking", "thinking": answer.reasoning, "signature": ""})
    if answer.content:
        content.append({"type": "text", "text": answer.content})
    for call in answer.tool_calls.values():
        arguments = call["function"]["arguments"]
        content.append(
            {
                "type": "tool_use",
                "id": tool_use_id(call["id"]),
                "name": call["function"]["name"],
                "input": _input(arguments),
            }
        )
    reason, sequence = stop_reason(answer)
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": anthropic_usage(chat_usage),
    }


def _input(arguments: str) -> Any:
    try:
        parsed = json.loads(arguments or "{}")
    except ValueError:
        return {"_raw": arguments}  # what the bot gave, where it gave no JSON object
    return parsed if isinstance(parsed, dict) else {"_value": parsed}


def event(kind: str, data: Mapping[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {dumps({'type': kind, **data})}\n\n".encode()


class MessagesWire:
    """One choice's chat chunks as Anthropic's event sequence: ``message_start``, ``ping``; for
    each block (``thinking``, ``text``, ``tool_use``) ``content_block_start``, its deltas
    (``thinking_delta``, ``text_delta``, ``input_json_delta``), ``content_block_stop``; then
    ``message_delta`` (stop reason, output tokens) and ``message_stop``. A failure after the
    stream began is an ``error`` event."""

    def __init__(self, message_id: str, model: str, input_tokens: int, answer: Sequence[Converter]) -> None:
        self._id = message_id
        self._model = model
        self._input_tokens = input_tokens
        self._answer = answer  # the converter whose finish says the stop reason, once it is known
        self._index = -1
        self._open: str | None = None  # the kind of the block being written
        self._call: int | None = None  # the tool call whose block is being written, by its index

    def head(self) -> bytes:
        message: dict[str, Any] = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": self._input_tokens, "output_tokens": 0},
        }
        return event("message_start", {"message": message}) + event("ping", {})

    def _start(self, kind: str, block: dict[str, Any]) -> bytes:
        out = self._stop()
        self._index += 1
        self._open = kind
        return out + event("content_block_start", {"index": self._index, "content_block": block})

    def _stop(self) -> bytes:
        if self._open is None:
            return b""
        self._open = None
        return event("content_block_stop", {"index": self._index})

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return event("content_block_delta", {"index": self._index, "delta": delta})

    def chunks(self, chunks: list[dict[str, Any]]) -> bytes:
        out = []
        for chunk in chunks:
            choice = chunk["choices"][0]
            delta = choice["delta"]
            thought = delta.get("reasoning_content")
            if isinstance(thought, str) and thought:
                if self._open != "thinking":
                    out.append(self._start("thinking", {"type": "thinking", "thinking": "", "signature": ""}))
                out.append(self._delta({"type": "thinking_delta", "thinking": thought}))
            text = delta.get("content")
            if text:
                if self._open != "text":
                    out.append(self._start("text", {"type": "text", "text": ""}))
                out.append(self._delta({"type": "text_delta", "text": text}))
            for call in delta.get("tool_calls") or ():
                if "id" in call:  # a new call
                    block = {
                        "type": "tool_use",
                        "id": tool_use_id(call["id"]),
                        "name": call["function"]["name"],
                        "input": {},
                    }
                    out.append(self._start("tool_use", block))
                    self._call = call["index"]
                arguments = call.get("function", {}).get("arguments") or ""
                # A call's arguments go in its own block; an earlier call's closing "{}" (its
                # arguments were empty) has nowhere to go, and its input is {} already.
                if arguments and self._open == "tool_use" and self._call == call["index"]:
                    out.append(self._delta({"type": "input_json_delta", "partial_json": arguments}))
            if choice["finish_reason"] is not None:
                out.append(self._stop())
        return b"".join(out)

    def tail(self, chat_usage: dict[str, Any]) -> bytes:
        reason, sequence = stop_reason(self._answer[0])
        usage = anthropic_usage(chat_usage)
        delta = {"delta": {"stop_reason": reason, "stop_sequence": sequence}, "usage": usage}
        return self._stop() + event("message_delta", delta) + event("message_stop", {})

    def error(self, error: OpenAIError) -> bytes:
        return event("error", {"error": error_body(error)["error"]})
