"""OpenAI chat requests, validated once into an immutable ``ChatRequest``.

``parse_chat_request`` is the only place that looks at the client's chat JSON (media parts are
read by ``core.media``). What is sent upstream is built from the ``ChatRequest`` by
``core.chat_upstream``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import InvalidRequestError
from .media import MediaPart, parse_media_part
from .models import resolve_bot_name
from .settings import Settings
from .sse import dumps
from .validate import (
    missing_parameter,
    opt_bool,
    opt_int,
    opt_list,
    opt_number,
    opt_object,
    opt_str,
    required_str,
    type_error,
)

MAX_STOP_SEQUENCES = 16
MAX_TOOLS = 128

Role = Literal["system", "user", "assistant", "tool"]

_ROLE_ALIASES: Mapping[str, Role] = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
    "function": "tool",
}
_FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Role
    content: str
    name: str | None = None
    media: tuple[MediaPart, ...] = ()
    tool_calls: tuple[dict[str, Any], ...] = ()
    tool_call_id: str | None = None


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A validated chat completion request, backend-neutral."""

    model: str
    bot: str
    messages: tuple[ChatMessage, ...]
    raw: Mapping[str, Any] = field(repr=False)
    stream: bool = False
    include_usage: bool = False
    n: int = 1
    stop: tuple[str, ...] = ()
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    seed: int | None = None
    logit_bias: dict[str, float] | None = None
    response_format: dict[str, Any] | None = None
    tools: tuple[dict[str, Any], ...] = ()
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    user: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def json_mode(self) -> Literal["json_object", "json_schema"] | None:
        kind = (self.response_format or {}).get("type")
        return kind if kind in ("json_object", "json_schema") else None

    @property
    def json_schema(self) -> dict[str, Any] | None:
        if self.json_mode != "json_schema":
            return None
        schema = (self.response_format or {}).get("json_schema", {}).get("schema")
        return schema if isinstance(schema, dict) else None

    @property
    def tools_enabled(self) -> bool:
        return bool(self.tools) and self.tool_choice != "none"

    def prompt_texts(self) -> list[str]:
        """Every piece of prompt text, for usage estimates."""
        texts = [m.content for m in self.messages]
        texts.extend(dumps(list(m.tool_calls)) for m in self.messages if m.tool_calls)
        texts.extend(dumps(t) for t in self.tools)
        return texts

    def media_parts(self) -> list[tuple[int, int, MediaPart]]:
        """``(message index, part index, part)`` for every media part, in order."""
        return [(i, j, part) for i, m in enumerate(self.messages) for j, part in enumerate(m.media)]


# ---------------------------------------------------------------------------------------------
# Validation


def parse_chat_request(
    body: Mapping[str, Any], settings: Settings, *, max_media_bytes: int | None = None
) -> ChatRequest:
    """Validate an OpenAI ``/v1/chat/completions`` body. Raises ``InvalidRequestError``."""
    model = opt_str(body, "model") or settings.default_chat_model
    bot = resolve_bot_name(model, settings.model_aliases)

    raw_messages = opt_list(body, "messages")
    if raw_messages is None:
        raise missing_parameter("messages")
    if not raw_messages:
        raise InvalidRequestError(
            "'messages' must contain at least one message.", param="messages", code="empty_array"
        )
    messages = tuple(_parse_message(m, f"messages[{i}]", max_media_bytes) for i, m in enumerate(raw_messages))

    stream_options = opt_object(body, "stream_options")
    include_usage = bool(
        stream_options and opt_bool(stream_options, "include_usage", param="stream_options.include_usage")
    )
    stream = bool(opt_bool(body, "stream"))

    n = opt_int(body, "n", 1, settings.max_n)
    max_tokens = opt_int(body, "max_completion_tokens", 1)
    if max_tokens is None:
        max_tokens = opt_int(body, "max_tokens", 1)

    tools, tool_choice = _parse_tools(body)
    return ChatRequest(
        model=model,
        bot=bot,
        messages=messages,
        raw=body,
        stream=stream,
        include_usage=include_usage,
        n=n or 1,
        stop=_parse_stop(body),
        max_tokens=max_tokens,
        temperature=opt_number(body, "temperature", 0, 2),
        top_p=opt_number(body, "top_p", 0, 1),
        frequency_penalty=opt_number(body, "frequency_penalty", -2, 2),
        presence_penalty=opt_number(body, "presence_penalty", -2, 2),
        seed=opt_int(body, "seed", -(2**63), 2**63 - 1),
        logit_bias=_parse_logit_bias(body),
        response_format=_parse_response_format(body),
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=opt_bool(body, "parallel_tool_calls"),
        user=opt_str(body, "user"),
        parameters=_parse_parameters(body),
    )


def _parse_message(raw: Any, param: str, max_media_bytes: int | None) -> ChatMessage:
    if not isinstance(raw, dict):
        raise type_error(param, "an object", raw)
    role_name = required_str(raw, "role", param=f"{param}.role")
    role = _ROLE_ALIASES.get(role_name)
    if role is None:
        raise InvalidRequestError(
            f"Invalid value for '{param}.role': {role_name!r} is not one of "
            "'system', 'developer', 'user', 'assistant', 'tool'.",
            param=f"{param}.role",
            code="invalid_value",
        )
    name = opt_str(raw, "name", param=f"{param}.name")
    text, media = _parse_content(raw.get("content"), f"{param}.content", role, max_media_bytes)
    tool_calls: tuple[dict[str, Any], ...] = ()
    tool_call_id = None
    if role == "assistant":
        tool_calls = _parse_tool_calls(raw, param)
        if raw.get("content") is None and not tool_calls and raw.get("refusal") is None:
            raise InvalidRequestError(
                f"'{param}' needs 'content' or 'tool_calls'.",
                param=f"{param}.content",
                code="missing_required_parameter",
            )
        if not text and isinstance(raw.get("refusal"), str):
            text = raw["refusal"]
    elif role == "tool":
        if role_name == "function":  # legacy function result: identified by name only
            tool_call_id = opt_str(raw, "tool_call_id", param=f"{param}.tool_call_id") or (name or "")
        else:
            tool_call_id = required_str(raw, "tool_call_id", param=f"{param}.tool_call_id")
    elif raw.get("content") is None:
        raise missing_parameter(f"{param}.content")
    return ChatMessage(
        role=role,
        content=text,
        name=name,
        media=media,
        tool_calls=tool_calls,
        tool_call_id=tool_call_id,
    )


def _parse_content(
    content: Any, param: str, role: Role, max_media_bytes: int | None
) -> tuple[str, tuple[MediaPart, ...]]:
    if content is None:
        return "", ()
    if isinstance(content, str):
        return content, ()
    if not isinstance(content, list):
        raise type_error(param, "a string or an array of content parts", content)
    texts: list[str] = []
    media: list[MediaPart] = []
    for i, part in enumerate(content):
        part_param = f"{param}[{i}]"
        if not isinstance(part, dict):
            raise type_error(part_param, "an object", part)
        kind = required_str(part, "type", param=f"{part_param}.type")
        if kind == "text":
            texts.append(required_str(part, "text", param=f"{part_param}.text"))
        elif kind == "refusal":
            texts.append(required_str(part, "refusal", param=f"{part_param}.refusal"))
        elif kind in ("image_url", "input_audio", "file"):
            if role not in ("user", "system"):
                raise InvalidRequestError(
                    f"Content parts of type '{kind}' are only allowed in user messages.",
                    param=f"{part_param}.type",
                    code="invalid_value",
                )
            media.append(parse_media_part(part, kind, part_param, max_media_bytes))
        else:
            raise InvalidRequestError(
                f"Invalid value for '{part_param}.type': {kind!r} is not one of "
                "'text', 'image_url', 'input_audio', 'file', 'refusal'.",
                param=f"{part_param}.type",
                code="invalid_value",
            )
    return "\n\n".join(texts), tuple(media)


def _parse_tool_calls(raw: dict[str, Any], param: str) -> tuple[dict[str, Any], ...]:
    calls = opt_list(raw, "tool_calls", param=f"{param}.tool_calls")
    legacy = opt_object(raw, "function_call", param=f"{param}.function_call")
    if calls is None and legacy is not None:
        calls = [{"id": legacy.get("name", "call_0"), "type": "function", "function": legacy}]
    result = []
    for i, call in enumerate(calls or []):
        call_param = f"{param}.tool_calls[{i}]"
        if not isinstance(call, dict):
            raise type_error(call_param, "an object", call)
        function = opt_object(call, "function", param=f"{call_param}.function")
        if function is None:
            raise missing_parameter(f"{call_param}.function")
        result.append(
            {
                "id": required_str(call, "id", param=f"{call_param}.id"),
                "type": "function",
                "function": {
                    "name": required_str(function, "name", param=f"{call_param}.function.name"),
                    "arguments": opt_str(function, "arguments", param=f"{call_param}.function.arguments")
                    or "{}",
                },
            }
        )
    return tuple(result)


def _parse_stop(body: Mapping[str, Any]) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    if isinstance(stop, str):
        return (stop,) if stop else ()
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise type_error("stop", "a string or an array of strings", stop)
    if len(stop) > MAX_STOP_SEQUENCES:
        raise InvalidRequestError(
            f"'stop' may hold at most {MAX_STOP_SEQUENCES} sequences.",
            param="stop",
            code="invalid_value",
        )
    return tuple(s for s in stop if s)


def _parse_logit_bias(body: Mapping[str, Any]) -> dict[str, float] | None:
    bias = opt_object(body, "logit_bias")
    if bias is None:
        return None
    return {str(k): opt_number(bias, k, -100, 100, param=f"logit_bias.{k}") or 0.0 for k in bias}


def _parse_response_format(body: Mapping[str, Any]) -> dict[str, Any] | None:
    spec = opt_object(body, "response_format")
    if spec is None:
        return None
    kind = required_str(spec, "type", param="response_format.type")
    if kind not in ("text", "json_object", "json_schema"):
        raise InvalidRequestError(
            f"Invalid value for 'response_format.type': {kind!r} is not one of "
            "'text', 'json_object', 'json_schema'.",
            param="response_format.type",
            code="invalid_value",
        )
    if kind == "json_schema":
        schema_spec = opt_object(spec, "json_schema", param="response_format.json_schema")
        if schema_spec is None:
            raise missing_parameter("response_format.json_schema")
        required_str(schema_spec, "name", param="response_format.json_schema.name")
        opt_object(schema_spec, "schema", param="response_format.json_schema.schema")
        opt_bool(schema_spec, "strict", param="response_format.json_schema.strict")
    return spec


def _parse_tools(
    body: Mapping[str, Any],
) -> tuple[tuple[dict[str, Any], ...], str | dict[str, Any] | None]:
    raw_tools = opt_list(body, "tools")
    choice: Any = body.get("tool_choice")
    if raw_tools is None and (legacy := opt_list(body, "functions")) is not None:
        raw_tools = [{"type": "function", "function": f} for f in legacy]
        legacy_choice = body.get("function_call")
        if isinstance(legacy_choice, dict):
            choice = {"type": "function", "function": legacy_choice}
        elif legacy_choice is not None:
            choice = legacy_choice
    tools = []
    names = set()
    if raw_tools is not None and len(raw_tools) > MAX_TOOLS:
        raise InvalidRequestError(
            f"'tools' may hold at most {MAX_TOOLS} tools.", param="tools", code="invalid_value"
        )
    for i, tool in enumerate(raw_tools or []):
        param = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise type_error(param, "an object", tool)
        if (tool.get("type") or "function") != "function":
            raise InvalidRequestError(
                f"Invalid value for '{param}.type': only 'function' tools are supported.",
                param=f"{param}.type",
                code="invalid_value",
            )
        function = opt_object(tool, "function", param=f"{param}.function")
        if function is None:
            raise missing_parameter(f"{param}.function")
        name = required_str(function, "name", param=f"{param}.function.name")
        if not _FUNCTION_NAME.match(name):
            raise InvalidRequestError(
                f"Invalid '{param}.function.name': {name!r} must be 1-64 letters, digits, '_' or '-'.",
                param=f"{param}.function.name",
                code="invalid_value",
            )
        names.add(name)
        parameters = opt_object(function, "parameters", param=f"{param}.function.parameters") or {}
        parameters = {"type": "object", "properties": {}, **parameters}
        if not isinstance(parameters["properties"], dict):
            raise type_error(f"{param}.function.parameters.properties", "an object", parameters["properties"])
        definition: dict[str, Any] = {
            "name": name,
            "description": opt_str(function, "description", param=f"{param}.function.description") or "",
            "parameters": parameters,
        }
        strict = opt_bool(function, "strict", param=f"{param}.function.strict")
        if strict is not None:
            definition["strict"] = strict
        tools.append({"type": "function", "function": definition})

    if choice is None:
        return tuple(tools), None
    if isinstance(choice, str):
        if choice not in ("none", "auto", "required"):
            raise InvalidRequestError(
                f"Invalid value for 'tool_choice': {choice!r} is not one of 'none', 'auto', 'required'.",
                param="tool_choice",
                code="invalid_value",
            )
        if choice == "required" and not tools:
            raise InvalidRequestError(
                "'tool_choice' is 'required' but no 'tools' were given.",
                param="tool_choice",
                code="invalid_value",
            )
        return tuple(tools), choice
    if isinstance(choice, dict):
        function = choice.get("function")
        chosen: Any = function.get("name") if isinstance(function, dict) else None
        if not isinstance(chosen, str):
            raise missing_parameter("tool_choice.function.name")
        if chosen not in names:
            raise InvalidRequestError(
                f"'tool_choice' names {chosen!r}, which is not in 'tools'.",
                param="tool_choice",
                code="invalid_value",
            )
        return tuple(tools), {"type": "function", "function": {"name": chosen}}
    raise type_error("tool_choice", "a string or an object", choice)


def _parse_parameters(body: Mapping[str, Any]) -> dict[str, Any]:
    """Poe bot parameters: ``extra_body={"parameters": {...}}`` plus mapped OpenAI fields."""
    parameters = dict(opt_object(body, "parameters") or {})
    effort = opt_str(body, "reasoning_effort")
    if effort is not None:
        parameters.setdefault("reasoning_effort", effort)
    return parameters
