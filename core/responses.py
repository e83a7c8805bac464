"""The Responses API (``/v1/responses``), on the chat path.

A Responses request is translated into a chat request (``parse_responses_request``) and answered
by the very flow that answers a chat completion: the same validation, tools, JSON mode and its
retry, inline media, one upstream call. What comes back is presented as a ``response`` object
(``response_object``) or, streamed, as the Responses event sequence (``ResponsesWire``).

What a response leaves behind for later requests (``previous_response_id``, item references,
retrieve) is kept in the host's store (``core.state``); ``core.routes`` reads and writes it, and
this module turns what was kept back into the conversation. ``conversation`` and ``background``
are refused with a 400 that names the parameter. Tools Poe cannot run (web search, file search,
MCP servers, custom tools...) are left out, never refused: the README lists them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .chat_request import ChatRequest, parse_chat_request
from .chat_stream import Converter
from .errors import InvalidRequestError, OpenAIError, RateLimitError, UpstreamError, scrub_all, scrub_response
from .settings import Settings
from .sse import ServerSentEvent, dumps, json_value
from .validate import missing_parameter, opt_bool, opt_list, opt_object, opt_str, required_str, type_error

# What the chat validation calls a field, and what the Responses API calls it.
_RENAMED = {
    "max_completion_tokens": "max_output_tokens",
    "response_format.json_schema": "text.format",
    "response_format": "text.format",
    "reasoning_effort": "reasoning.effort",
}
NO_FILES = (
    "this proxy has no Files API, so there is no uploaded file to use. Send the file's data inline "
    "instead ('file_data', or a data URL in 'image_url')"
)


@dataclass(frozen=True, slots=True)
class ResponsesRequest:
    """A validated Responses request: the chat request that answers it, and what its response
    object repeats back."""

    chat: ChatRequest
    echo: dict[str, Any]
    namespaces: Mapping[str, tuple[str, str]]  # chat tool name -> (namespace, name)


def parse_responses_request(
    body: Mapping[str, Any],
    settings: Settings,
    *,
    history: Sequence[Mapping[str, Any]] = (),
    stored: bool = False,
) -> ResponsesRequest:
    """Validate a ``/v1/responses`` body. Raises ``InvalidRequestError`` naming the Responses field.

    ``history``: the items of the responses before this one (``previous_response_id``), which
    come before ``input``; ``stored``: whether the response is kept (its ``store``).
    Item references left in ``input`` are skipped (the openai backend's Poe resolves them)."""
    if body.get("prompt") is not None:
        raise unsupported(
            "prompt",
            "Stored prompts are not supported: this proxy keeps no prompt templates. Send the "
            "prompt's text in 'instructions' and 'input' instead.",
        )
    if opt_bool(body, "background"):
        raise unsupported(
            "background", "'background' responses are not supported: stream the response, or wait for it."
        )
    opt_str(body, "previous_response_id")
    tools, tool_params, namespaces = _tools(body)
    messages, sources = _messages(body, history)
    chat_body: dict[str, Any] = {"messages": messages}
    for responses_field, chat_field in (
        ("model", "model"),
        ("stream", "stream"),
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("max_output_tokens", "max_completion_tokens"),
        ("parallel_tool_calls", "parallel_tool_calls"),
        ("user", "user"),
        ("parameters", "parameters"),  # Poe bot parameters, as with chat (extra_body)
    ):
        if body.get(responses_field) is not None:
            chat_body[chat_field] = body[responses_field]
    if tools:
        chat_body["tools"] = tools
        choice = _tool_choice(body.get("tool_choice"))
        if choice is not None:
            chat_body["tool_choice"] = choice
    text = opt_object(body, "text") or {}
    text_format = opt_object(text, "format", param="text.format")
    if text_format is not None:
        chat_body["response_format"] = _response_format(text_format)
    reasoning = opt_object(body, "reasoning") or {}
    effort = opt_str(reasoning, "effort", param="reasoning.effort")
    if effort is not None:
        chat_body["reasoning_effort"] = effort
    try:
        chat = parse_chat_request(chat_body, settings, max_media_bytes=settings.max_media_bytes)
    except OpenAIError as exc:
        raise _renamed(exc, sources, tool_params) from None
    verbosity = opt_str(text, "verbosity", param="text.verbosity") or "medium"
    echo = {
        "instructions": body.get("instructions"),
        "max_output_tokens": chat.max_tokens,
        "metadata": body.get("metadata") or {},
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": effort, "summary": reasoning.get("summary")},
        "store": stored,
        "temperature": chat.temperature if chat.temperature is not None else 1.0,
        "text": {"format": text_format or {"type": "text"}, "verbosity": verbosity},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": list(body.get("tools") or []),
        "top_p": chat.top_p if chat.top_p is not None else 1.0,
        "truncation": body.get("truncation") or "disabled",
        "user": chat.user,
    }
    return ResponsesRequest(chat, echo, namespaces)


def unsupported(param: str, message: str) -> InvalidRequestError:
    return InvalidRequestError(message, param=param, code="unsupported_parameter")


def _messages(
    body: Mapping[str, Any], history: Sequence[Mapping[str, Any]]
) -> tuple[list[dict[str, Any]], list[str]]:
    """Chat messages for ``instructions``, ``history`` and ``input``, and the Responses field each
    came from."""
    messages: list[dict[str, Any]] = []
    sources: list[str] = []
    instructions = opt_str(body, "instructions")
    if instructions:
        messages.append({"role": "system", "content": instructions})
        sources.append("instructions")
    items = body.get("input")
    if items is None:
        raise missing_parameter("input")
    if isinstance(items, str):
        given: list[tuple[Any, str]] = [({"role": "user", "content": items}, "input")]
    elif isinstance(items, list):
        given = [(item, f"input[{i}]") for i, item in enumerate(items)]
    else:
        raise type_error("input", "a string or an array of input items", items)
    for item, param in [*((item, "previous_response_id") for item in history), *given]:
        if not isinstance(item, dict):
            raise type_error(param, "an object", item)
        kind = item.get("type", "message")
        if kind == "message":
            content = item.get("content")
            if isinstance(content, list):
                content = [_part(part, f"{param}.content[{j}]") for j, part in enumerate(content)]
            messages.append({"role": item.get("role"), "content": content})
        elif kind == "function_call":
            call = {
                "id": required_str(item, "call_id", param=f"{param}.call_id"),
                "type": "function",
                "function": {
                    "name": qualified(
                        opt_str(item, "namespace"), required_str(item, "name", param=f"{param}.name")
                    ),
                    "arguments": opt_str(item, "arguments", param=f"{param}.arguments") or "{}",
                },
            }
            if messages and messages[-1]["role"] == "assistant":  # the same turn: one message
                messages[-1].setdefault("tool_calls", []).append(call)
                continue
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            if isinstance(output, list):  # content parts: their text
                output = "\n\n".join(p.get("text", "") for p in output if isinstance(p, dict))
            if not isinstance(output, str):
                raise type_error(f"{param}.output", "a string or an array of content parts", output)
            call_id = required_str(item, "call_id", param=f"{param}.call_id")
            messages.append({"role": "tool", "tool_call_id": call_id, "content": output})
        elif kind in ("reasoning", "item_reference") or (
            isinstance(kind, str) and kind.endswith(("_call", "_call_output"))
        ):
            # reasoning, the calls of tools this proxy does not run, item references left for
            # Poe to resolve (the openai backend): nothing to send on
            continue
        else:
            raise InvalidRequestError(
                f"Invalid value for '{param}.type': {kind!r} is not one of 'message', 'function_call', "
                "'function_call_output'.",
                param=f"{param}.type",
                code="invalid_value",
            )
        sources.append(param)
    return messages, sources


def _part(part: Any, param: str) -> Any:
    """A Responses content part as the chat content part that means the same."""
    if not isinstance(part, dict):
        return part  # the chat validation names what is wrong with it
    kind = part.get("type")
    if kind in ("input_text", "output_text"):
        return {"type": "text", "text": part.get("text")}
    if kind == "input_image":
        if part.get("image_url") is None and part.get("file_id") is not None:
            raise _unsupported_file_id(f"{param}.file_id")
        image = {"url": part.get("image_url")}
        if part.get("detail") is not None:
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file":
        if part.get("file_data") is None:
            if part.get("file_id") is not None:
                raise _unsupported_file_id(f"{param}.file_id")
            if part.get("file_url") is not None:
                raise unsupported(
                    f"{param}.file_url", "Files by URL are not supported; send 'file_data' (base64) instead."
                )
        return {
            "type": "file",
            "file": {"filename": part.get("filename"), "file_data": part.get("file_data")},
        }
    return part  # text, refusal, input_audio: the chat names are the same


def _unsupported_file_id(param: str) -> InvalidRequestError:
    return unsupported(param, f"File ids are not supported: {NO_FILES}.")


def qualified(namespace: str | None, name: str) -> str:
    """The chat tool name of function ``name`` in ``namespace`` (Codex groups tools so)."""
    return f"{namespace}__{name}" if namespace else name


def _tools(
    body: Mapping[str, Any],
) -> tuple[list[dict[str, Any]], list[str], dict[str, tuple[str, str]]]:
    """Chat tools for the function tools (those in namespaces too), where each came from, and the
    namespaced names. Other tools are left out: Poe's bot protocol has no way to run them."""
    tools: list[dict[str, Any]] = []
    params: list[str] = []
    namespaces: dict[str, tuple[str, str]] = {}
    for i, tool in enumerate(opt_list(body, "tools") or []):
        if not isinstance(tool, dict):
            raise type_error(f"tools[{i}]", "an object", tool)
        if tool.get("type") == "function":
            tools.append(_function(tool, tool.get("name")))
            params.append(f"tools[{i}]")
        elif tool.get("type") == "namespace":
            namespace = required_str(tool, "name", param=f"tools[{i}].name")
            for j, inner in enumerate(opt_list(tool, "tools", param=f"tools[{i}].tools") or []):
                if isinstance(inner, dict) and inner.get("type") == "function":
                    name = required_str(inner, "name", param=f"tools[{i}].tools[{j}].name")
                    namespaces[qualified(namespace, name)] = (namespace, name)
                    tools.append(_function(inner, qualified(namespace, name)))
                    params.append(f"tools[{i}].tools[{j}]")
    return tools, params, namespaces


def _function(tool: Mapping[str, Any], name: Any) -> dict[str, Any]:
    fields = {
        "name": name,
        **{k: tool[k] for k in ("description", "parameters", "strict") if tool.get(k) is not None},
    }
    return {"type": "function", "function": fields}


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, dict):
        if choice.get("type") == "function":
            name = choice.get("name")
            if not isinstance(name, str):
                return {"type": "function", "function": {}}  # the chat validation names what is missing
            return {"type": "function", "function": {"name": qualified(choice.get("namespace"), name)}}
        return "auto"  # a hosted tool, an allowed-tools list, MCP: the functions remain on offer
    return choice


def _response_format(text_format: Mapping[str, Any]) -> dict[str, Any]:
    if text_format.get("type") != "json_schema":
        return dict(text_format)
    schema = {k: text_format[k] for k in ("name", "description", "schema", "strict") if k in text_format}
    return {"type": "json_schema", "json_schema": schema}


def _renamed(error: OpenAIError, sources: Sequence[str], tool_params: Sequence[str]) -> OpenAIError:
    """``error`` from the chat validation, naming the Responses field it is about."""
    param = error.param
    if param is None:
        return error
    new = param
    head, dot, rest = param.partition(".")
    if head.startswith("messages[") and head.endswith("]"):
        new = sources[int(head[9:-1])] + dot + rest
    elif head.startswith("tools[") and head.endswith("]"):
        new = tool_params[int(head[6:-1])] + dot + rest.removeprefix("function.").removeprefix("function")
        new = new.rstrip(".")
    else:
        for chat_field, responses_field in _RENAMED.items():
            if param == chat_field or param.startswith(chat_field + "."):
                new = responses_field + param[len(chat_field) :]
                break
    error.message = error.message.replace(f"'{param}'", f"'{new}'")
    error.param = new
    return error


# -- answers ---------------------------------------------------------------------------------


def usage(chat_usage: Mapping[str, Any]) -> dict[str, Any]:
    """Chat usage as the Responses API counts it (reasoning and cached tokens where counted)."""
    prompt = chat_usage.get("prompt_tokens_details") or {}
    completion = chat_usage.get("completion_tokens_details") or {}
    return {
        "input_tokens": chat_usage["prompt_tokens"],
        "input_tokens_details": {"cached_tokens": prompt.get("cached_tokens") or 0, "cache_write_tokens": 0},
        "output_tokens": chat_usage["completion_tokens"],
        "output_tokens_details": {"reasoning_tokens": completion.get("reasoning_tokens") or 0},
        "total_tokens": chat_usage["total_tokens"],
    }


def summary_part(text: str) -> dict[str, Any]:
    return {"type": "summary_text", "text": text}


def reasoning_item(item_id: str, text: str) -> dict[str, Any]:
    """What the model thought, as a ``reasoning`` item: its text as the item's one summary part.
    Poe gives no encrypted reasoning, so ``encrypted_content`` is null, asked for or not."""
    summary = [summary_part(text)] if text else []
    return {"type": "reasoning", "id": item_id, "summary": summary, "encrypted_content": None}


@dataclass(frozen=True, slots=True)
class ResponseMeta:
    """What every event and the response object of one response share."""

    id: str
    created: int
    model: str
    request: ResponsesRequest
    new_id: Callable[[str], str]  # prefix -> a fresh id ("msg_...", "fc_...")

    def response(
        self,
        status: str,
        output: list[dict[str, Any]],
        usage: dict[str, Any] | None = None,
        *,
        error: dict[str, Any] | None = None,
        incomplete: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created,
            "status": status,
            "error": error,
            "incomplete_details": incomplete,
            "model": self.model,
            "output": output,
            **self.request.echo,
            "usage": usage,
        }


def message_item(item_id: str, text: str, status: str) -> dict[str, Any]:
    content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
    return {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": content}


def function_call_item(
    meta: ResponseMeta, item_id: str, call: Mapping[str, Any], status: str
) -> dict[str, Any]:
    name = call["function"]["name"]
    item = {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "call_id": call["id"],
        "name": name,
        "arguments": call["function"]["arguments"],
    }
    if name in meta.request.namespaces:
        item["namespace"], item["name"] = meta.request.namespaces[name]
    return item


def failure(error: OpenAIError) -> dict[str, Any]:
    """A failed response's ``error``: its code is one of the Responses API's few (the ``error``
    event before it carries the proxy's own, more precise code)."""
    if isinstance(error, RateLimitError):
        code = "rate_limit_exceeded"
    elif isinstance(error, InvalidRequestError):
        code = "invalid_prompt"
    else:
        code = "server_error"
    return {"code": code, "message": error.message}


def _ending(finish_reason: str | None) -> tuple[str, dict[str, Any] | None]:
    if finish_reason == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    return "completed", None


def _message_status(finish_reason: str | None) -> str:
    """A message cut by the length limit is incomplete, as the response it ends is."""
    return "incomplete" if finish_reason == "length" else "completed"


def response_object(meta: ResponseMeta, answer: Converter, chat_usage: Mapping[str, Any]) -> dict[str, Any]:
    """The ``response`` of a finished answer (not streamed)."""
    output = []
    if answer.reasoning:
        output.append(reasoning_item(meta.new_id("rs"), answer.reasoning))
    if answer.content:
        output.append(message_item(meta.new_id("msg"), answer.content, _message_status(answer.finish_reason)))
    output += [
        function_call_item(meta, meta.new_id("fc"), call, "completed") for call in answer.tool_calls.values()
    ]
    status, incomplete = _ending(answer.finish_reason)
    return meta.response(status, output, usage(chat_usage), incomplete=incomplete)


def response_text(response: Any) -> tuple[str, bool]:
    """A response object's text (its messages' ``output_text``), and whether it calls a function."""
    output = response.get("output") if isinstance(response, dict) else None
    text, calls = [], False
    for item in output if isinstance(output, list) else []:
        if not isinstance(item, dict):
            continue
        calls = calls or item.get("type") == "function_call"
        content = item.get("content") if item.get("type") == "message" else None
        for part in content if isinstance(content, list) else []:
            if (
                isinstance(part, dict)
                and part.get("type") == "output_text"
                and isinstance(part.get("text"), str)
            ):
                text.append(part["text"])
    return "".join(text), calls


def encode_response_event(event: dict[str, Any]) -> bytes:
    return f"event: {event['type']}\ndata: {dumps(event)}\n\n".encode()


class ResponsesWire:
    """One choice's chat chunks as the Responses event sequence, each event numbered:
    ``response.created``, ``response.in_progress``; per message, ``output_item.added``,
    ``content_part.added``, ``output_text.delta``..., ``output_text.done``, ``content_part.done``,
    ``output_item.done``; per function call, ``output_item.added``,
    ``function_call_arguments.delta``..., ``function_call_arguments.done``, ``output_item.done``;
    then ``response.completed`` (or ``response.incomplete``) with usage, or ``error`` and
    ``response.failed``.

    ``hold``: the last events are not written by ``tail`` but kept until ``release`` (the
    response is stored first, so that a client who has seen it complete finds it stored, and is
    told in ``response.completed`` when the store failed to keep it)."""

    def __init__(self, meta: ResponseMeta, *, hold: bool = False) -> None:
        self.meta = meta
        self.hold = hold
        self.held = b""
        self.response: dict[str, Any] = {}  # the last response object sent, or to be sent
        self._sequence = 0
        self._output: list[dict[str, Any]] = []  # items as they stand, in output order
        self._message: dict[str, Any] | None = None  # the message item being written
        self._reasoning: dict[str, Any] | None = None  # the reasoning item being written
        self._thought: list[str] = []
        self._text: list[str] = []
        self._calls: dict[int, dict[str, Any]] = {}  # open function call items, by tool call index
        self._finish_reason: str | None = None

    def _event(self, kind: str, **fields: Any) -> bytes:
        event = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return encode_response_event(event)

    def head(self) -> bytes:
        response = self.meta.response("in_progress", [])
        return self._event("response.created", response=response) + self._event(
            "response.in_progress", response=response
        )

    def chunks(self, chunks: list[dict[str, Any]]) -> bytes:
        out = []
        for chunk in chunks:
            choice = chunk["choices"][0]
            delta = choice["delta"]
            thought = delta.get("reasoning_content")
            if thought and isinstance(thought, str):
                out.append(self._reasoning_delta(thought))
            content = delta.get("content")
            if content:
                out.append(self._text_delta(content))
            for call in delta.get("tool_calls") or ():
                out.append(self._call_delta(call))
            if choice["finish_reason"] is not None:
                self._finish_reason = choice["finish_reason"]
                out.append(self._close_all())
        return b"".join(out)

    def _reasoning_delta(self, text: str) -> bytes:
        out = b""
        item = self._reasoning
        if item is None:
            item = self._reasoning = reasoning_item(self.meta.new_id("rs"), "")
            self._output.append(item)
            out += self._event(
                "response.output_item.added", output_index=len(self._output) - 1, item=dict(item)
            )
            part = summary_part("")
            out += self._event("response.reasoning_summary_part.added", **self._summary(item), part=part)
        self._thought.append(text)
        return out + self._event("response.reasoning_summary_text.delta", **self._summary(item), delta=text)

    def _summary(self, item: dict[str, Any]) -> dict[str, Any]:
        return {"item_id": item["id"], "output_index": self._output.index(item), "summary_index": 0}

    def _close_reasoning(self) -> bytes:
        item, self._reasoning = self._reasoning, None
        if item is None:
            return b""
        text, self._thought = "".join(self._thought), []
        part = summary_part(text)
        item["summary"] = [part]
        where = self._summary(item)
        return (
            self._event("response.reasoning_summary_text.done", **where, text=text)
            + self._event("response.reasoning_summary_part.done", **where, part=part)
            + self._event("response.output_item.done", output_index=where["output_index"], item=item)
        )

    def _text_delta(self, text: str) -> bytes:
        out = self._close_reasoning()  # the model has stopped thinking: its answer begins
        message = self._message
        if message is None:
            message = self._message = message_item(self.meta.new_id("msg"), "", "in_progress")
            message["content"] = []
            self._output.append(message)
            added = dict(message, content=[])
            out += self._event("response.output_item.added", output_index=len(self._output) - 1, item=added)
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            out += self._event("response.content_part.added", **self._where(message), part=part)
        self._text.append(text)
        return out + self._event(
            "response.output_text.delta", **self._where(message), delta=text, logprobs=[]
        )

    def _where(self, item: dict[str, Any], content: bool = True) -> dict[str, Any]:
        where = {"item_id": item["id"], "output_index": self._output.index(item)}
        return {**where, "content_index": 0} if content else where

    def _close_message(self) -> bytes:
        message, self._message = self._message, None
        if message is None:
            return b""
        text, self._text = "".join(self._text), []
        where = self._where(message)
        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        message.update(status=_message_status(self._finish_reason), content=[part])
        return (
            self._event("response.output_text.done", **where, text=text, logprobs=[])
            + self._event("response.content_part.done", **where, part=part)
            + self._event("response.output_item.done", output_index=where["output_index"], item=message)
        )

    def _call_delta(self, delta: dict[str, Any]) -> bytes:
        out = b""
        item = self._calls.get(delta["index"])
        if item is None:
            out += self._close_reasoning() + self._close_message()  # a call after text: that is complete
            call = {"id": delta["id"], "function": {"name": delta["function"]["name"], "arguments": ""}}
            item = function_call_item(self.meta, self.meta.new_id("fc"), call, "in_progress")
            self._calls[delta["index"]] = item
            self._output.append(item)
            out += self._event(
                "response.output_item.added", output_index=len(self._output) - 1, item=dict(item)
            )
        arguments = delta.get("function", {}).get("arguments") or ""
        if arguments:
            item["arguments"] += arguments
            out += self._event(
                "response.function_call_arguments.delta", **self._where(item, False), delta=arguments
            )
        return out

    def _close_all(self) -> bytes:
        out = self._close_reasoning() + self._close_message()
        for item in self._calls.values():
            item["status"] = "completed"
            where = self._where(item, False)
            out += self._event("response.function_call_arguments.done", **where, arguments=item["arguments"])
            out += self._event("response.output_item.done", output_index=where["output_index"], item=item)
        self._calls = {}
        return out

    def tail(self, chat_usage: dict[str, Any]) -> bytes:
        out = self._close_all()
        status, incomplete = _ending(self._finish_reason)
        response = self.meta.response(status, self._output, usage(chat_usage), incomplete=incomplete)
        self.response = response
        if self.hold:
            self.held = out
            return b""
        return out + self._event(f"response.{status}", response=response)

    def release(self, *, kept: bool) -> bytes:
        """The held events, the response's last event saying whether it was ``kept``."""
        response = self.response if kept else {**self.response, "store": False}
        return self.held + self._event(f"response.{response['status']}", response=response)

    def error(self, error: OpenAIError) -> bytes:
        if self._reasoning is not None:  # what it thought before it failed stays too
            self._reasoning["summary"] = [summary_part("".join(self._thought))]
        if self._message is not None:  # what it said before it failed stays said
            text = "".join(self._text)
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            self._message.update(status="incomplete", content=[part])
        response = self.meta.response("failed", self._output, error=failure(error))
        event = self._event("error", code=error.code, message=error.message, param=error.param)
        return event + self._event("response.failed", response=response)


class ResponsesRelay:
    """Poe's own ``/v1/responses`` stream (the openai backend), passed on event by event. It
    is complete at ``response.completed``, ``response.incomplete`` or ``response.failed``; a body
    that ends before one of those is an error, like any stream cut short. Works as a ``ChoiceCalls``
    converter with ``RelayWire``."""

    _TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
    wants_more = False
    cut = False
    upstream_usage: dict[str, Any] | None = None

    def __init__(self, key: str) -> None:
        self.finish_reason: str | None = None
        self.last_sequence = -1
        self.response: dict[str, Any] = {}
        self._key = key  # the key the call was made with: Poe's error events are scrubbed of it

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    def feed(self, event: ServerSentEvent) -> list[dict[str, Any]]:
        if event.data == "[DONE]" or self.finish_reason is not None:
            return []
        try:
            data = json_value(event.data)
        except (ValueError, RecursionError):
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("type"), str):
            raise upstream_malformed()
        if data["type"] == "error":  # Poe's own words: they may hold the key
            data = scrub_all(data, self._key)
        elif isinstance(data.get("response"), dict):  # the fields Poe fills, but the model's words
            data = {**data, "response": scrub_response(data["response"], self._key)}
        if isinstance(data.get("sequence_number"), int):
            self.last_sequence = data["sequence_number"]
        if isinstance(data.get("response"), dict):
            self.response = data["response"]
        if data["type"] in self._TERMINAL:
            self.finish_reason = "stop"
        return [data]

    def close(self) -> list[dict[str, Any]]:
        if self.finish_reason is None:
            raise UpstreamError("Poe's stream ended before it was complete.", code="upstream_incomplete")
        return []

    def completion_tokens(self) -> int:
        return 0


def upstream_malformed() -> OpenAIError:
    return UpstreamError("Poe sent a malformed Responses event.", code="upstream_malformed")


class RelayWire:
    """Poe's Responses events as they came; a failure after the stream began is an ``error`` and
    a ``response.failed`` numbered after the last event Poe sent."""

    def __init__(self, relay: ResponsesRelay) -> None:
        self._relay = relay

    def head(self) -> bytes:
        return b""

    def chunks(self, chunks: list[dict[str, Any]]) -> bytes:
        return b"".join(map(encode_response_event, chunks))

    def tail(self, chat_usage: dict[str, Any]) -> bytes:
        return b""

    def error(self, error: OpenAIError) -> bytes:
        sequence = self._relay.last_sequence + 1
        response = {**self._relay.response, "status": "failed", "error": failure(error)}
        said = {"code": error.code, "message": error.message, "param": error.param}
        events: list[dict[str, Any]] = [
            {"type": "error", "sequence_number": sequence, **said},
            {"type": "response.failed", "sequence_number": sequence + 1, "response": response},
        ]
        return b"".join(map(encode_response_event, events))
