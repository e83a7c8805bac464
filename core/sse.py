"""Server-sent events, both ways, with no I/O.

``SSEDecoder`` follows the WHATWG event-stream parsing rules: feed it bytes as they arrive,
in pieces of any size, and take out complete events. ``encode_*`` build the bytes we send.
"""

from __future__ import annotations

import codecs
import json
import re
from dataclasses import dataclass
from typing import Any

from .errors import UpstreamError

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
DEFAULT_MAX_LINE = 16 * 1024 * 1024

DONE_EVENT = b"data: [DONE]\n\n"


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None

    def json(self) -> Any:
        """The data field parsed as JSON (raises ``json.JSONDecodeError``)."""
        return json.loads(self.data)


class SSEDecoder:
    """Incremental ``text/event-stream`` parser: ``feed(bytes) -> events``, then ``close()``."""

    def __init__(self, *, max_line: int = DEFAULT_MAX_LINE) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._max_line = max_line
        self._event = ""
        self._data: list[str] = []
        self._last_id: str | None = None
        self._retry: int | None = None

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        return self._feed_text(self._utf8.decode(chunk))

    def close(self) -> list[ServerSentEvent]:
        """End of stream: a last unterminated line counts; an unfinished event does not."""
        events = self._feed_text(self._utf8.decode(b"", final=True))
        if self._buffer:
            line, self._buffer = self._buffer.rstrip("\r"), ""
            event = self._process_line(line)
            if event is not None:
                events.append(event)
        return events

    def _feed_text(self, text: str) -> list[ServerSentEvent]:
        if not text:
            return []
        buffer = self._buffer + text
        # A trailing CR may be the first half of CRLF: keep it until the next byte says.
        held_cr = buffer.endswith("\r")
        if held_cr:
            buffer = buffer[:-1]
        lines = _LINE_BREAK.split(buffer)
        rest = lines.pop()
        if held_cr:
            rest += "\r"
        if len(rest) > self._max_line:
            raise UpstreamError("upstream sent an event-stream line longer than the limit")
        self._buffer = rest
        events = []
        for line in lines:
            event = self._process_line(line)
            if event is not None:
                events.append(event)
        return events

    def _process_line(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._last_id = value
        elif name == "retry" and value.isdigit():
            self._retry = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        if not self._data:
            self._event = ""
            return None
        event = ServerSentEvent(
            event=self._event or "message",
            data="\n".join(self._data),
            id=self._last_id,
            retry=self._retry,
        )
        self._event = ""
        self._data = []
        return event


def dumps(obj: Any) -> str:
    """Compact JSON as OpenAI sends it (UTF-8 kept as is)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def encode_json_event(obj: Any) -> bytes:
    """One ``data:`` event carrying ``obj`` as JSON (JSON has no raw newlines, so one line)."""
    return b"data: " + dumps(obj).encode() + b"\n\n"


def encode_event(data: str, *, event: str | None = None) -> bytes:
    """A general event; multi-line ``data`` becomes several ``data:`` lines."""
    head = f"event: {event}\n" if event else ""
    body = "".join(f"data: {line}\n" for line in data.split("\n"))
    return (head + body + "\n").encode()
