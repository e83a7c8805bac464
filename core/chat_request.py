"""OpenAI chat requests: validate once into ``ChatRequest``, then convert for either backend.

``parse_chat_request`` is the only place that looks at the client's JSON. Everything after it
works on the normalised, immutable ``ChatRequest``:

* ``poe_query`` builds the body of a Poe bot-protocol ``query`` request (the shape of
  ``fastapi_poe.types.QueryRequest``);
* ``openai_compat_body`` builds the body for Poe's OpenAI-compatible ``/v1/chat/completions``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import InvalidRequestError
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

PROTOCOL_VERSION = "1.2"
MAX_STOP_SEQUENCES = 16
MAX_TOOLS = 128

Role = Literal["system", "user", "assistant", "tool"]
MediaKind = Literal["image", "audio", "file"]

_ROLE_ALIASES: Mapping[str, Role] = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
    "function": "tool",
}
_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[^,;]*)*),(?P<data>.*)$", re.S)
_AUDIO_MIME = {"wav": "audio/wav", "mp3": "audio/mpeg", "flac": "audio/flac", "ogg": "audio/ogg"}
_FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True, slots=True)
class MediaPart:
    """An image, audio clip or file from a message's content parts.

    Exactly one of ``url`` (an http(s) URL Poe can fetch itself) and ``data`` (inline bytes
    that must be uploaded to Poe first) is set.
    """

    kind: MediaKind
    mime_type: str
    name: str
    param: str
    url: str | None = None
    data: bytes | None = None
    detail: str | None = None


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
            media.append(_parse_media(part, kind, part_param, max_media_bytes))
        else:
            raise InvalidRequestError(
                f"Invalid value for '{part_param}.type': {kind!r} is not one of "
                "'text', 'image_url', 'input_audio', 'file', 'refusal'.",
                param=f"{part_param}.type",
                code="invalid_value",
            )
    return "\n\n".join(texts), tuple(media)


def _parse_media(part: dict[str, Any], kind: str, param: str, max_bytes: int | None) -> MediaPart:
    if kind == "image_url":
        spec = part.get("image_url")
        if isinstance(spec, str):  # some clients send the bare URL
            spec = {"url": spec}
        if not isinstance(spec, dict):
            raise type_error(f"{param}.image_url", "an object", spec)
        url = required_str(spec, "url", param=f"{param}.image_url.url")
        detail = opt_str(spec, "detail", param=f"{param}.image_url.detail")
        if detail is not None and detail not in ("auto", "low", "high"):
            raise InvalidRequestError(
                f"Invalid value for '{param}.image_url.detail': {detail!r}.",
                param=f"{param}.image_url.detail",
                code="invalid_value",
            )
        return _media_from_url(url, "image", f"{param}.image_url.url", max_bytes, name="image", detail=detail)
    if kind == "input_audio":
        spec = opt_object(part, "input_audio", param=f"{param}.input_audio") or {}
        data = required_str(spec, "data", param=f"{param}.input_audio.data")
        fmt = required_str(spec, "format", param=f"{param}.input_audio.format")
        if fmt not in _AUDIO_MIME:
            raise InvalidRequestError(
                f"Invalid value for '{param}.input_audio.format': {fmt!r} is not one of "
                + ", ".join(repr(f) for f in _AUDIO_MIME)
                + ".",
                param=f"{param}.input_audio.format",
                code="invalid_value",
            )
        raw = _decode_base64(data, f"{param}.input_audio.data", max_bytes)
        return MediaPart(
            kind="audio",
            mime_type=_AUDIO_MIME[fmt],
            name=f"audio.{fmt}",
            param=f"{param}.input_audio",
            data=raw,
        )
    spec = opt_object(part, "file", param=f"{param}.file") or {}
    filename = opt_str(spec, "filename", param=f"{param}.file.filename") or "file"
    file_data = opt_str(spec, "file_data", param=f"{param}.file.file_data")
    if file_data is None:
        if opt_str(spec, "file_id", param=f"{param}.file.file_id") is not None:
            raise InvalidRequestError(
                "Uploaded file ids are not supported by this proxy; send 'file_data' instead.",
                param=f"{param}.file.file_id",
                code="unsupported_parameter",
            )
        raise missing_parameter(f"{param}.file.file_data")
    if file_data.startswith("data:"):
        return _media_from_url(file_data, "file", f"{param}.file.file_data", max_bytes, name=filename)
    raw = _decode_base64(file_data, f"{param}.file.file_data", max_bytes)
    return MediaPart(
        kind="file", mime_type=_guess_mime(filename), name=filename, param=f"{param}.file", data=raw
    )


def _media_from_url(
    url: str,
    kind: MediaKind,
    param: str,
    max_bytes: int | None,
    *,
    name: str,
    detail: str | None = None,
) -> MediaPart:
    if url.startswith("data:"):
        match = _DATA_URL.match(url)
        if match is None or ";base64" not in match.group("params"):
            raise InvalidRequestError(
                f"Invalid data URL in '{param}': expected data:<mime type>;base64,<data>.",
                param=param,
                code="invalid_data_url",
            )
        mime = match.group("mime") or "application/octet-stream"
        if kind == "image" and not mime.startswith("image/"):
            raise InvalidRequestError(
                f"Unsupported image type {mime!r} in '{param}'.",
                param=param,
                code="invalid_image_format",
            )
        raw = _decode_base64(match.group("data"), param, max_bytes)
        extension = mime.split("/", 1)[1].split("+")[0]
        filename = name if "." in name else f"{name}.{extension}"
        return MediaPart(kind=kind, mime_type=mime, name=filename, param=param, data=raw, detail=detail)
    if url.startswith(("https://", "http://")):
        filename = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or name
        return MediaPart(
            kind=kind,
            mime_type=_guess_mime(filename, kind),
            name=filename,
            param=param,
            url=url,
            detail=detail,
        )
    raise InvalidRequestError(
        f"Invalid URL in '{param}': expected an http(s) URL or a base64 data URL.",
        param=param,
        code="invalid_url",
    )


def _decode_base64(data: str, param: str, max_bytes: int | None) -> bytes:
    if max_bytes is not None and len(data) * 3 // 4 > max_bytes:
        raise InvalidRequestError(
            f"The data in '{param}' is larger than the limit of {max_bytes} bytes.",
            param=param,
            code="file_too_large",
        )
    try:
        raw = base64.b64decode("".join(data.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequestError(
            f"'{param}' is not valid base64.", param=param, code="invalid_base64"
        ) from None
    if not raw:
        raise InvalidRequestError(f"'{param}' is empty.", param=param, code="invalid_base64")
    return raw


_MIME_BY_EXTENSION = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
    "pdf": "application/pdf",
    "txt": "text/plain",
    "md": "text/markdown",
    "csv": "text/csv",
    "json": "application/json",
    "mp3": "audio/mpeg",
    "wav": "audio/wav",
}


def _guess_mime(filename: str, kind: MediaKind = "file") -> str:
    extension = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    fallback = "image/jpeg" if kind == "image" else "application/octet-stream"
    return _MIME_BY_EXTENSION.get(extension, fallback)


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


# ---------------------------------------------------------------------------------------------
# Conversion: Poe bot protocol


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

    Always streamed upstream with usage, so one code path serves both kinds of client call;
    ``n`` is emulated by parallel calls, so each call asks for one choice.
    """
    body = {k: v for k, v in request.raw.items() if k not in _PROXY_FIELDS}
    body["model"] = request.bot
    body["stream"] = True
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
