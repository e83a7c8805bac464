"""Upstream events in, OpenAI ``chat.completion.chunk`` dicts out: one state machine per choice.

Each converter is fed ``ServerSentEvent``s from one upstream call and returns the chunks to send
for it (often one, sometimes none). It never buffers beyond what a stop sequence needs, and
keeps the final message, finish reason and usage so that a non-streaming response is built
from the very same state (``chat_completion``).

* ``PoeStreamToChatChunks`` reads Poe's bot protocol (``text``, ``replace_response``, ``json``,
  ``file``, ``error``, ``done``; ``meta`` and the rest are ignored).
* ``OpenAIStreamToChatChunks`` reads Poe's OpenAI-compatible stream and normalises it.
* ``OpenAICompletionToChat`` reads its one JSON answer to a call that does not stream.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .errors import (
    InsufficientQuotaError,
    InvalidRequestError,
    OpenAIError,
    PermissionDeniedError,
    UpstreamError,
    UpstreamUnavailableError,
    summarize_upstream_text,
)
from .sse import DONE_EVENT, ServerSentEvent, SSEDecoder, dumps, encode_json_event, json_value
from .structured import CodeFenceStripper
from .text import TextGate
from .thinking import ThinkingSplitter
from .usage import estimate_tokens, max_chars_for_tokens, usage_dict

# A message's (or delta's) fields the proxy decides; Poe's others are passed on as they came.
_DECIDED_MESSAGE_FIELDS = frozenset({"role", "content", "tool_calls"})
# The fields of an answer (or chunk) the proxy decides; Poe's others are passed on.
_DECIDED_ANSWER_FIELDS = frozenset(
    {"id", "object", "created", "model", "choices", "usage", "system_fingerprint", "error"}
)
# A tool call's fields the proxy decides (it numbers and names calls itself); the rest pass.
_TOOL_CALL_FIELDS = frozenset({"index", "id", "type", "function"})

# Bot-protocol events that carry nothing for an OpenAI client.
_IGNORED_POE_EVENTS = frozenset({"meta", "suggested_reply", "data", "ping"})


@dataclass(frozen=True, slots=True)
class CompletionMeta:
    """What every chunk of one completion shares."""

    id: str
    created: int
    model: str
    include_usage: bool = False


def completion_chunk(
    meta: CompletionMeta, index: int, delta: dict[str, Any], finish_reason: str | None = None
) -> dict[str, Any]:
    chunk: dict[str, Any] = {
        "id": meta.id,
        "object": "chat.completion.chunk",
        "created": meta.created,
        "model": meta.model,
        "system_fingerprint": None,
        "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }
    if meta.include_usage:
        chunk["usage"] = None  # as OpenAI does: null on every chunk but the last
    return chunk


def usage_chunk(meta: CompletionMeta, usage: Mapping[str, Any]) -> dict[str, Any]:
    """The final chunk of ``stream_options.include_usage``: no choices, only usage."""
    return {
        "id": meta.id,
        "object": "chat.completion.chunk",
        "created": meta.created,
        "model": meta.model,
        "system_fingerprint": None,
        "choices": [],
        "usage": dict(usage),
    }


# The keys of a chunk that carries only text: all but the text is the same on every such chunk of
# a choice, so its bytes are written once (``ChatWire``).
_TEXT_CHUNK_KEYS = frozenset({"id", "object", "created", "model", "system_fingerprint", "choices"})
_TEXT_CHUNK_KEYS_WITH_USAGE = _TEXT_CHUNK_KEYS | {"usage"}


class ChatWire:
    """Chat chunks as ``data:`` events, the usage chunk if asked for, then ``[DONE]``; a failure
    after the stream began is one error event and no ``[DONE]`` (the OpenAI SDK raises it).

    Most chunks of an answer carry one piece of text and nothing else: for those, only the text
    is encoded, between the bytes every such chunk of its choice shares, made once (the same
    bytes as encoding the whole chunk: encoding it was most of the proxy's work per event)."""

    def __init__(self, meta: CompletionMeta) -> None:
        self.meta = meta
        self._model = meta.model  # as the chunks name it (Poe's name, where Poe gave one)
        self._text_keys = _TEXT_CHUNK_KEYS_WITH_USAGE if meta.include_usage else _TEXT_CHUNK_KEYS
        self._frames: dict[tuple[Any, ...], tuple[bytes, bytes]] = {}  # a text chunk's bytes around its text

    def head(self) -> bytes:
        return b""

    def chunks(self, chunks: list[dict[str, Any]]) -> bytes:
        self._model = chunks[-1]["model"]
        if len(chunks) == 1:
            return self._encode(chunks[0])
        return b"".join(map(self._encode, chunks))

    def _encode(self, chunk: dict[str, Any]) -> bytes:
        if chunk.keys() == self._text_keys and chunk.get("usage") is None:
            choices = chunk["choices"]
            choice = choices[0] if len(choices) == 1 else None
            if choice is not None and choice["finish_reason"] is None and choice["logprobs"] is None:
                delta = choice["delta"]
                text = delta.get("content")
                if len(delta) == 1 and type(text) is str and len(choice) == 4:
                    key = (chunk["id"], chunk["created"], chunk["model"], choice["index"])
                    frame = self._frames.get(key) or self._frame(key, chunk)
                    return frame[0] + dumps(text).encode() + frame[1]
        return encode_json_event(chunk)

    def _frame(self, key: tuple[Any, ...], chunk: dict[str, Any]) -> tuple[bytes, bytes]:
        """The bytes of ``chunk`` (a text chunk) before its text and after it."""
        mark = "\x00"  # the text is the chunk's last string: nothing after it can be taken for it
        encoded = encode_json_event(
            {**chunk, "choices": [{**chunk["choices"][0], "delta": {"content": mark}}]}
        )
        before, _, after = encoded.rpartition(dumps(mark).encode())
        frame = self._frames[key] = (before, after)
        return frame

    def tail(self, usage: dict[str, Any]) -> bytes:
        if not self.meta.include_usage:
            return DONE_EVENT
        return encode_json_event({**usage_chunk(self.meta, usage), "model": self._model}) + DONE_EVENT

    def error(self, error: OpenAIError) -> bytes:
        return encode_json_event(error.to_dict())


def error_from_poe_error_event(data: Mapping[str, Any]) -> OpenAIError:
    """Map a bot-protocol ``error`` event (``text``, ``allow_retry``, ``error_type``)."""
    text = data.get("text")
    detail = summarize_upstream_text(text) if isinstance(text, str) and text else "the bot reported an error"
    error_type = data.get("error_type")
    if error_type == "insufficient_fund":
        return InsufficientQuotaError(f"Poe reports insufficient points: {detail}")
    if error_type == "user_message_too_long":
        return InvalidRequestError(
            f"The conversation is too long for this bot: {detail}",
            param="messages",
            code="context_length_exceeded",
        )
    if error_type == "privacy_authorization_error":
        return PermissionDeniedError(f"Poe denied access: {detail}")
    if error_type == "user_caused_error":
        return InvalidRequestError(f"The bot rejected the request: {detail}", code="bot_rejected_request")
    if data.get("allow_retry", True) is False:
        return UpstreamError(f"The bot failed: {detail}", code="bot_error")
    return UpstreamUnavailableError(f"The bot failed (retrying may help): {detail}", code="bot_error")


class _ChoiceStream:
    """State shared by both converters: text gate, tool calls, finish reason, usage.

    ``streaming``: chunks are wanted as they come. Without it ``feed`` returns no chunks at all
    (nothing leaves the proxy before the end) and a ``replace_response`` may rewrite the answer.
    """

    def __init__(
        self,
        meta: CompletionMeta,
        *,
        index: int = 0,
        stop: Sequence[str] = (),
        max_tokens: int | None = None,
        streaming: bool = True,
        json_mode: bool = False,
    ) -> None:
        self.meta = meta
        self.index = index
        self._stop = tuple(stop)
        self._max_chars = max_chars_for_tokens(max_tokens)
        self._streaming = streaming
        self._json_mode = json_mode
        self._reset_text()
        self._started = False
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None
        self.upstream_usage: dict[str, Any] | None = None
        # What Poe said beside the text that the proxy does not decide: the message's other
        # fields (reasoning_content, reasoning, annotations, ...; text fields as they add up)
        # and the model Poe named. Both reach the client as they came.
        self.passed: dict[str, Any] = {}
        self.upstream_model: str | None = None
        self.passed_top: dict[str, Any] = {}  # fields of Poe's answer itself the proxy does not decide

    def _reset_text(self) -> None:
        """Text pipeline: upstream text -> code-fence stripper (JSON mode) -> stop/length gate."""
        self._gate = TextGate(self._stop, self._max_chars)
        self._fence = CodeFenceStripper() if self._json_mode else None
        self._raw: list[str] = []  # the text as upstream sent it, for replace_response
        self._parts: list[str] = []  # the text as the client gets it

    @property
    def finished(self) -> bool:
        """The choice is complete; stop reading its upstream."""
        return self.finish_reason is not None

    @property
    def content(self) -> str:
        return "".join(self._parts)

    @property
    def wants_more(self) -> bool:
        """Finished, but still worth reading upstream (for its usage report)."""
        return False

    @property
    def cut(self) -> bool:
        """The proxy ended the answer (a stop sequence, the length limit), not upstream."""
        return self._gate.reason is not None

    def message(self) -> dict[str, Any]:
        """The assistant message of a non-streaming response."""
        content = self.content
        message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None, **self.passed}
        if self.tool_calls:
            message["tool_calls"] = [self.tool_calls[i] for i in sorted(self.tool_calls)]
            if not content:
                message["content"] = None
        return message

    @property
    def stop_sequence(self) -> str | None:
        """The stop sequence that ended the answer, if one did."""
        return self._gate.matched if self._gate.reason == "stop" else None

    @property
    def reasoning(self) -> str:
        """What the model said while it thought (``reasoning_content``), if anything."""
        said = self.passed.get("reasoning_content")
        return said if isinstance(said, str) else ""

    def completion_tokens(self) -> int:
        arguments = "".join(c["function"]["arguments"] for c in self.tool_calls.values())
        return estimate_tokens(self.content) + estimate_tokens(arguments) + estimate_tokens(self.reasoning)

    def close(self) -> list[dict[str, Any]]:
        """Upstream ended. Unless it said it was done, the answer may be cut short: an error."""
        if not self.finished:
            raise UpstreamError("Poe ended the response before it was complete.", code="upstream_incomplete")
        return []

    # -- building blocks ------------------------------------------------------------------

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        # Only called when streaming: a non-streaming answer is read from the state at the end.
        if not self._started:
            self._started = True
            delta = {"role": "assistant", **delta}
        chunk = completion_chunk(self.meta, self.index, delta, finish_reason)
        if self.upstream_model is not None:
            chunk["model"] = self.upstream_model
        if self.passed_top:
            chunk.update(self.passed_top)
        return chunk

    def _note_answer(self, data: Mapping[str, Any]) -> None:
        """The model Poe named in its answer, and its fields beside the ones the proxy decides:
        every chunk and the completion carry them."""
        if self.upstream_model is None:
            model = data.get("model")
            if isinstance(model, str) and model:
                self.upstream_model = model
        if not data.keys() <= _DECIDED_ANSWER_FIELDS:  # most chunks have no field of Poe's own
            for name in data.keys() - _DECIDED_ANSWER_FIELDS:
                self.passed_top[name] = data[name]

    def _pass(self, fields: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Fields of Poe's message the proxy does not decide: kept for the message (text adds
        up, as a stream's deltas do), and streamed as their own delta, before any content."""
        if self.finished or not fields:
            return []
        for name, value in fields.items():
            kept = self.passed.get(name)
            self.passed[name] = kept + value if isinstance(kept, str) and isinstance(value, str) else value
        return [self._chunk(dict(fields))] if self._streaming else []

    def _reason(self, text: str) -> list[dict[str, Any]]:
        """Reasoning the proxy read out of a bot's text, in the fields clients read it from."""
        return self._pass({"reasoning_content": text, "reasoning": text}) if text else []

    def _text(self, text: str) -> list[dict[str, Any]]:
        if self.finished:
            return []
        self._raw.append(text)
        if self._fence is not None:
            text = self._fence.push(text)
        chunks = self._content(self._gate.push(text))
        if self._gate.closed:
            chunks.extend(self._finish(self._gate.reason or "stop"))
        return chunks

    def _content(self, text: str) -> list[dict[str, Any]]:
        if not text:
            return []
        self._parts.append(text)
        return [self._chunk({"content": text})] if self._streaming else []

    def _replace(self, text: str) -> list[dict[str, Any]]:
        """``replace_response``: the bot's whole answer so far is now ``text``."""
        if self.finished:
            return []
        sent = "".join(self._raw)
        if text.startswith(sent):
            return self._text(text[len(sent) :])
        if not self._streaming:
            # Nothing has left the proxy yet: start the answer over, exactly as the bot says.
            self._reset_text()
            return self._text(text)
        # Sent text cannot be unsent: the rewrite follows as a new paragraph (see README).
        return self._text(("\n\n" if sent else "") + text)

    def _tool_call_deltas(self, deltas: Any) -> list[dict[str, Any]]:
        if self.finished or not isinstance(deltas, list):
            return []
        out = []
        for position, raw in enumerate(deltas):
            if not isinstance(raw, dict):
                raise UpstreamError("upstream sent a malformed tool call")
            index = raw.get("index", position)
            if not isinstance(index, int):
                raise UpstreamError("upstream sent a tool call without a valid index")
            function: dict[str, Any] = raw.get("function") or {}
            if not isinstance(function, dict):
                raise UpstreamError("upstream sent a malformed tool call")
            name = function.get("name")
            arguments = function.get("arguments") or ""
            if not isinstance(arguments, str):
                arguments = json.dumps(arguments)
            delta: dict[str, Any] = {"index": index}
            call = self.tool_calls.get(index)
            if call is None:
                call_id = raw.get("id")
                if not isinstance(call_id, str) or not call_id:
                    digest = hashlib.sha256(f"{self.meta.id}/{self.index}/{index}".encode()).hexdigest()
                    call_id = f"call_{digest[:24]}"
                # Fields of Poe's beside the call's own (Gemini's extra_content: its thought
                # signature, wanted back with the next turn) stay with it.
                extra = {k: v for k, v in raw.items() if k not in _TOOL_CALL_FIELDS}
                call = {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name or "", "arguments": ""},
                    **extra,
                }
                self.tool_calls[index] = call
                delta.update(
                    id=call_id,
                    type="function",
                    function={"name": call["function"]["name"], "arguments": arguments},
                    **extra,
                )
            else:
                if isinstance(name, str) and name and not call["function"]["name"]:
                    call["function"]["name"] = name
                delta["function"] = {"arguments": arguments}
            call["function"]["arguments"] += arguments
            out.append(delta)
        return [self._chunk({"tool_calls": out})] if out and self._streaming else []

    def _finish(self, reason: str | None = None) -> list[dict[str, Any]]:
        """Close the choice. The reason: a cut by the gate, else upstream's, else what happened."""
        if self.finished:
            return []
        chunks = []
        if self._fence is not None and not self._gate.closed:
            chunks.extend(self._content(self._gate.push(self._fence.finish())))
        chunks.extend(self._content(self._gate.finish()))
        if self._gate.reason is not None:
            reason = self._gate.reason
        elif self.tool_calls and reason in (None, "stop", "function_call"):
            reason = "tool_calls"
        for index, call in self.tool_calls.items():
            if not call["function"]["arguments"].strip():
                # Arguments must be a JSON document once complete; an empty one means "{}".
                call["function"]["arguments"] = "{}"
                if self._streaming:
                    chunks.append(
                        self._chunk({"tool_calls": [{"index": index, "function": {"arguments": "{}"}}]})
                    )
        self.finish_reason = reason or "stop"
        if self._streaming:
            chunks.append(self._chunk({}, self.finish_reason))
        return chunks


@dataclass(frozen=True, slots=True)
class BotFile:
    """A file a bot answered with (an image, a recording), as its ``file`` event named it."""

    url: str
    content_type: str
    name: str


class PoeStreamToChatChunks(_ChoiceStream):
    """Poe bot-protocol events -> chat completion chunks, for one choice.

    The files the bot answers with are kept in ``files``; ``file_links``: each is also a Markdown
    link in the content (a chat client has nowhere else to show it).
    """

    def __init__(self, meta: CompletionMeta, *, file_links: bool = True, **options: Any) -> None:
        super().__init__(meta, **options)
        self._file_links = file_links
        self.files: list[BotFile] = []
        # Telling thinking from the answer, until the answer has begun (then None: the rest is it).
        self._thinking: ThinkingSplitter | None = ThinkingSplitter()

    def feed(self, event: ServerSentEvent) -> list[dict[str, Any]]:
        kind = event.event
        if kind == "text":  # nearly every event: first
            text = _text_field(_json_object(event, kind), kind)
            return self._text(text) if self._thinking is None else self._said(*self._thinking.feed(text))
        if kind in _IGNORED_POE_EVENTS:
            return []
        if kind == "done":
            held = self._said(*self._thinking.close()) if self._thinking is not None else []
            return held + self._finish()
        if kind not in ("replace_response", "json", "file", "error"):
            return []  # unknown events are ignored, as the protocol asks of clients
        data = _json_object(event, kind)
        if kind == "replace_response":
            return self._rewrite(_text_field(data, kind))
        if kind == "json":
            return self._json(data)
        if kind == "file":
            return self._file(data)
        raise error_from_poe_error_event(data)

    def _said(self, reasoning: str, answer: str) -> list[dict[str, Any]]:
        """What the bot's text was, told apart (``core.thinking``): its reasoning, then answer."""
        if self._thinking is not None and self._thinking.answering:
            self._thinking = None
        chunks = self._reason(reasoning)
        if answer:
            chunks += self._text(answer)
        return chunks

    def _rewrite(self, text: str) -> list[dict[str, Any]]:
        """``replace_response``: the whole text so far, thinking and answer, told apart anew.
        Reasoning sent cannot be unsent: only what extends it goes out."""
        self._thinking = ThinkingSplitter()
        reasoning, answer = self._thinking.feed(text)
        if self._thinking.answering:
            self._thinking = None
        said = self.reasoning
        chunks = self._reason(reasoning[len(said) :] if reasoning.startswith(said) else "")
        return chunks + self._replace(answer)

    def _json(self, data: Mapping[str, Any]) -> list[dict[str, Any]]:
        # Tool calls arrive as OpenAI-shaped deltas: {"choices": [{"delta": {...}, "finish_reason"}]}.
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return []
        delta = choices[0].get("delta")
        if not isinstance(delta, dict):
            return []
        chunks = self._tool_call_deltas(delta.get("tool_calls"))
        content = delta.get("content")
        if isinstance(content, str) and content:
            chunks.extend(self._text(content))
        return chunks

    def _file(self, data: Mapping[str, Any]) -> list[dict[str, Any]]:
        url, name, content_type = data.get("url"), data.get("name"), data.get("content_type")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            return []
        label = name if isinstance(name, str) and name else "file"
        content_type = content_type if isinstance(content_type, str) else ""
        self.files.append(BotFile(url, content_type, label))
        if not self._file_links:
            return []
        bang = "!" if content_type.startswith("image/") else ""
        prefix = "\n\n" if self.content else ""
        return self._text(f"{prefix}{bang}[{label}]({url})")


class OpenAIStreamToChatChunks(_ChoiceStream):
    """Poe's OpenAI-compatible chunks -> our chunks: ids, model and index made ours."""

    def __init__(self, meta: CompletionMeta, **options: Any) -> None:
        super().__init__(meta, **options)
        self._upstream_done = False

    @property
    def wants_more(self) -> bool:
        """Upstream finished on its own: its usage chunk and ``[DONE]`` follow at once.

        Not after a cut by the proxy (stop, length): upstream is still generating then.
        """
        return self._gate.reason is None and not self._upstream_done and self.upstream_usage is None

    def feed(self, event: ServerSentEvent) -> list[dict[str, Any]]:
        if event.data[:1] != "{" and event.data.strip() == "[DONE]":  # chunks are objects: "{..."
            self._upstream_done = True
            return self._finish()
        data = _json_object(event, "chunk")
        error = data.get("error")
        if error is not None:
            message = error.get("message") if isinstance(error, dict) else error
            raise UpstreamError(f"Poe failed mid-stream: {summarize_upstream_text(str(message))}")
        usage = data.get("usage")
        if isinstance(usage, dict):
            self.upstream_usage = dict(usage)
        self._note_answer(data)
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return []
        choice = choices[0]
        chunks: list[dict[str, Any]] = []
        delta = choice.get("delta")
        if isinstance(delta, dict):
            if not delta.keys() <= _DECIDED_MESSAGE_FIELDS:  # most deltas have only content
                chunks += self._pass({k: v for k, v in delta.items() if k not in _DECIDED_MESSAGE_FIELDS})
            tool_calls = delta.get("tool_calls")
            if tool_calls is not None:
                chunks += self._tool_call_deltas(tool_calls)
            content = delta.get("content")
            if isinstance(content, str) and content:
                chunks += self._text(content)
        reason = choice.get("finish_reason")
        if isinstance(reason, str) and reason:
            chunks += self._finish(reason)
        return chunks


class OpenAICompletionToChat(_ChoiceStream):
    """Poe's OpenAI-compatible answer to a call that does not stream (a client that does not):
    one JSON completion, which its reader hands over whole, as one event, once the body ends.
    It leaves the state a stream would: the text through the same stop and length gate (and
    JSON mode's fence), tool calls, finish reason, usage."""

    whole_body = True

    def feed(self, event: ServerSentEvent) -> list[dict[str, Any]]:
        data = _json_object(event, "completion")
        usage = data.get("usage")
        if isinstance(usage, dict):
            self.upstream_usage = dict(usage)
        self._note_answer(data)
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise UpstreamError("Poe sent a completion without a choice.", code="upstream_malformed")
        choice = choices[0]
        message = choice.get("message")
        if not isinstance(message, dict):
            raise UpstreamError("Poe sent a completion without a message.", code="upstream_malformed")
        self._pass({k: v for k, v in message.items() if k not in _DECIDED_MESSAGE_FIELDS})
        tool_calls = message.get("tool_calls")
        if tool_calls:
            self._tool_call_deltas(tool_calls)
        content = message.get("content")
        if isinstance(content, str) and content:
            self._text(content)
        reason = choice.get("finish_reason")
        self._finish(reason if isinstance(reason, str) and reason else None)
        return []


Converter = PoeStreamToChatChunks | OpenAIStreamToChatChunks | OpenAICompletionToChat


class EventConverter(Protocol):
    """What ``ChoiceReader`` reads one call's events with: the chat converters above, or another
    event format's (``core.responses.ResponsesRelay``)."""

    finish_reason: str | None
    upstream_usage: dict[str, Any] | None

    @property
    def finished(self) -> bool: ...

    @property
    def wants_more(self) -> bool: ...

    @property
    def cut(self) -> bool: ...

    def feed(self, event: ServerSentEvent) -> list[dict[str, Any]]: ...

    def close(self) -> list[dict[str, Any]]: ...

    def completion_tokens(self) -> int: ...


class WholeBody:
    """A body that is one JSON document: kept as it comes, one event of it at its end."""

    LIMIT = 32 * 1024 * 1024  # far beyond any answer: a bound on what a broken upstream can cost

    __slots__ = ("_parts", "_size")

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._size = 0

    def feed(self, data: bytes) -> list[ServerSentEvent]:
        self._size += len(data)
        if self._size > self.LIMIT:
            raise UpstreamError("Poe's answer is larger than any completion.", code="upstream_malformed")
        self._parts.append(data)
        return []

    def close(self) -> list[ServerSentEvent]:
        text = b"".join(self._parts).decode("utf-8", errors="replace")
        self._parts.clear()
        return [ServerSentEvent(data=text)]


class ChoiceReader:
    """One upstream call's response body, bytes in, chunks out: SSE decoding, then conversion.

    ``feed`` the body's bytes as they arrive and ``close`` at its end. Neither raises: a failure
    (a malformed event, an error event, a body that ends too soon) is kept in ``error``, and the
    chunks converted before it are returned, so that what came first still goes out. Once
    ``done``, stop reading: the choice is complete (or failed) and nothing more from upstream can
    change it. ``cut`` says the proxy ended it (a stop sequence, the length limit) while upstream
    was still generating: close the connection, which stops Poe.
    """

    __slots__ = ("_decoder", "converter", "error")

    def __init__(self, converter: EventConverter) -> None:
        self.converter = converter
        self.error: OpenAIError | None = None
        self._decoder: SSEDecoder | WholeBody = (
            WholeBody() if getattr(converter, "whole_body", False) else SSEDecoder()
        )

    @property
    def done(self) -> bool:
        converter = self.converter
        return self.error is not None or (converter.finished and not converter.wants_more)

    @property
    def cut(self) -> bool:
        return self.converter.cut

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        return self._convert(lambda: self._decoder.feed(data), closing=False)

    def close(self) -> list[dict[str, Any]]:
        """The body ended: a last event without its blank line counts; an unfinished answer fails."""
        return self._convert(self._decoder.close, closing=True)

    def _convert(self, events: Callable[[], list[ServerSentEvent]], *, closing: bool) -> list[dict[str, Any]]:
        chunks: list[dict[str, Any]] = []
        if self.done:
            return chunks
        converter = self.converter
        convert = converter.feed
        try:
            for event in events():
                chunks += convert(event)
                if converter.finish_reason is not None and not converter.wants_more:
                    break  # complete: what follows cannot change it
            if closing:
                chunks += self.converter.close()
        except OpenAIError as exc:
            self.error = exc
        return chunks


def _json_object(event: ServerSentEvent, kind: str) -> dict[str, Any]:
    try:
        data = json_value(event.data)
    except (ValueError, RecursionError):
        raise UpstreamError(f"Poe sent a malformed '{kind}' event.", code="upstream_malformed") from None
    if not isinstance(data, dict):
        raise UpstreamError(f"Poe sent a malformed '{kind}' event.", code="upstream_malformed")
    return data


def _text_field(data: Mapping[str, Any], kind: str) -> str:
    text = data.get("text")
    if not isinstance(text, str):
        raise UpstreamError(f"Poe sent a '{kind}' event without text.", code="upstream_malformed")
    return text


def total_usage(choices: Sequence[EventConverter], prompt_tokens: int | Sequence[int]) -> dict[str, Any]:
    """Usage over all choices: upstream's figures where it reported them, else estimates.

    Each choice is its own upstream call, so each call's prompt counts (that is what Poe bills).
    ``prompt_tokens`` is the estimate for every choice, or one estimate per choice.
    """
    estimates = [prompt_tokens] * len(choices) if isinstance(prompt_tokens, int) else list(prompt_tokens)
    prompt = completion = 0
    details: dict[str, Any] = {}  # Poe's other usage fields (reasoning and cached tokens, ...)
    for choice, estimate in zip(choices, estimates, strict=True):
        reported = choice.upstream_usage
        if (
            reported
            and isinstance(reported.get("prompt_tokens"), int)
            and isinstance(reported.get("completion_tokens"), int)
        ):
            prompt += reported["prompt_tokens"]
            completion += reported["completion_tokens"]
            details = add_up(details, reported)
        else:
            prompt += estimate
            completion += choice.completion_tokens()
            reasoning = estimate_tokens(getattr(choice, "reasoning", ""))
            if reasoning:  # estimated, as the rest: part of completion_tokens, as OpenAI counts it
                details = add_up(details, {"completion_tokens_details": {"reasoning_tokens": reasoning}})
    return {**details, **usage_dict(prompt, completion)}


def add_up(total: Mapping[str, Any], more: Mapping[str, Any]) -> dict[str, Any]:
    """Two usage reports as one: numbers summed, field by field and within nested ones; any other
    value as the first report had it (Poe's fields whatever they are: they pass through)."""
    out = dict(total)
    for name, value in more.items():
        kept = out.get(name)
        if isinstance(kept, int) and isinstance(value, int) and not isinstance(value, bool):
            out[name] = kept + value
        elif isinstance(kept, Mapping) and isinstance(value, Mapping):
            out[name] = add_up(kept, value)
        elif name not in out or kept is None:
            out[name] = value
    return out


def chat_completion(
    meta: CompletionMeta, choices: Sequence[_ChoiceStream], usage: Mapping[str, Any]
) -> dict[str, Any]:
    """The non-streaming ``chat.completion`` built from finished converters."""
    passed = {k: v for c in choices for k, v in c.passed_top.items()}
    return {
        **passed,
        "id": meta.id,
        "object": "chat.completion",
        "created": meta.created,
        "model": next((c.upstream_model for c in choices if c.upstream_model), meta.model),
        "system_fingerprint": None,
        "choices": [
            {
                "index": c.index,
                "message": c.message(),
                "logprobs": None,
                "finish_reason": c.finish_reason or "stop",
            }
            for c in choices
        ],
        "usage": dict(usage),
    }
