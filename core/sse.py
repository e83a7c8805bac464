"""Server-sent events, both ways, with no I/O.

``SSEDecoder`` follows the WHATWG event-stream parsing rules: feed it bytes as they arrive,
in pieces of any size, and take out complete events. ``encode_*`` build the bytes we send.
"""

from __future__ import annotations

import codecs
import json
import json.scanner
import re
from typing import Any, NamedTuple, cast

from .errors import UpstreamError

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
# A block of an optional "event: <name>" line and one "data: <data>" line, then a blank line.
_SIMPLE_BLOCK = re.compile(r"(?:event: ([^\n]*)\n)?data: ([^\n]*)\n\n")
_SIMPLE_BLOCKS = re.compile(r"(?:(?:event: [^\n]*\n)?data: [^\n]*\n\n)+")
DEFAULT_MAX_LINE = 16 * 1024 * 1024

DONE_EVENT = b"data: [DONE]\n\n"


class ServerSentEvent(NamedTuple):
    """One dispatched event. A tuple: made for every upstream event, so it must be cheap."""

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None

    def json(self) -> Any:
        """The data field parsed as JSON (raises ``json.JSONDecodeError``)."""
        return json.loads(self.data)


class SSEDecoder:
    """Incremental ``text/event-stream`` parser: ``feed(bytes) -> events``, then ``close()``.

    Only the unterminated last line is carried to the next feed, so nothing is parsed twice;
    whole ``event:``/``data:`` blocks, the usual shape, are matched by a regular expression.
    """

    def __init__(self, *, max_line: int = DEFAULT_MAX_LINE) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._utf8_pending = False  # the incremental decoder holds part of a character
        self._buffer = ""
        self._max_line = max_line
        self._event = ""
        self._data: list[str] = []
        self._last_id: str | None = None
        self._retry: int | None = None

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        return self._feed_text(self._decode(chunk))

    def close(self) -> list[ServerSentEvent]:
        """End of stream: a last unterminated line counts; an unfinished event does not."""
        events = self._feed_text(self._utf8.decode(b"", final=True))
        if self._buffer:
            line, self._buffer = self._buffer.rstrip("\r"), ""
            self._lines([line], events)
        return events

    def _decode(self, chunk: bytes) -> str:
        if not self._utf8_pending:
            try:
                return chunk.decode()  # the usual case, in C: whole characters, valid UTF-8
            except UnicodeDecodeError:
                pass
        text = self._utf8.decode(chunk)
        self._utf8_pending = bool(self._utf8.getstate()[0])
        return text

    def _feed_text(self, text: str) -> list[ServerSentEvent]:
        if not text:
            return []
        buffer = self._buffer + text if self._buffer else text
        events: list[ServerSentEvent] = []
        if not self._data and not self._event and "\r" not in buffer:
            # The usual shape - whole "event: x" / "data: y" blocks, nothing else - is matched in C;
            # anything else, or what follows the last whole block, goes line by line below.
            end = buffer.rfind("\n\n") + 2
            if end > 1 and _SIMPLE_BLOCKS.fullmatch(buffer, 0, end):
                events = [
                    ServerSentEvent(name or "message", data, self._last_id, self._retry)
                    for name, data in _SIMPLE_BLOCK.findall(buffer, 0, end)
                ]
                buffer = buffer[end:]
                if not buffer:
                    self._buffer = ""
                    return events
        if "\r" in buffer:
            # Rare: CR or CRLF line ends. A trailing CR may be the first half of CRLF: keep it.
            held_cr = buffer.endswith("\r")
            lines = _LINE_BREAK.split(buffer[:-1] if held_cr else buffer)
            rest = lines.pop() + ("\r" if held_cr else "")
        else:
            lines = buffer.split("\n")
            rest = lines.pop()
        if len(rest) > self._max_line:
            raise UpstreamError("upstream sent an event-stream line longer than the limit")
        self._buffer = rest
        if lines:
            self._lines(lines, events)
        return events

    def _lines(self, lines: list[str], events: list[ServerSentEvent]) -> None:
        """Process complete lines, appending each event they dispatch to ``events``."""
        data = self._data
        for line in lines:
            # The two lines nearly every event has, first: "data: ..." and "event: ...".
            if line[:6] == "data: ":
                data.append(line[6:])
                continue
            if line[:7] == "event: ":
                self._event = line[7:]
                continue
            if not line:  # a blank line dispatches the event
                if data:
                    events.append(
                        ServerSentEvent(self._event or "message", "\n".join(data), self._last_id, self._retry)
                    )
                    data = self._data = []
                self._event = ""
                continue
            name, colon, value = line.partition(":")
            if colon and value[:1] == " ":
                value = value[1:]
            if name == "data":
                data.append(value)
            elif name == "event":
                self._event = value
            elif name == "id":
                if "\0" not in value:
                    self._last_id = value
            elif name == "retry" and value.isdigit():
                self._retry = int(value)
            # anything else, comments (an empty name) included, is ignored


# The C scanner behind json.loads (typeshed types its argument as the scanner's own class).
_scan = json.scanner.make_scanner(cast(Any, json.JSONDecoder()))


def json_value(text: str) -> Any:
    """``json.loads(text)`` for the small JSON documents events carry, without its per-call
    overhead: one C scan when ``text`` is exactly one JSON value, else ``json.loads`` itself
    (which then raises its usual errors or accepts the surrounding whitespace)."""
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        return json.loads(text)
    return value if end == len(text) else json.loads(text)


# One encoder, made once: ``json.dumps`` with options builds a new one per call (~1.5 us).
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def dumps(obj: Any) -> str:
    """Compact JSON as OpenAI sends it (UTF-8 kept as is)."""
    return _COMPACT.encode(obj)


def encode_json_event(obj: Any) -> bytes:
    """One ``data:`` event carrying ``obj`` as JSON (JSON has no raw newlines, so one line)."""
    return b"data: " + dumps(obj).encode() + b"\n\n"


def encode_event(data: str, *, event: str | None = None) -> bytes:
    """A general event; multi-line ``data`` becomes several ``data:`` lines."""
    head = f"event: {event}\n" if event else ""
    body = "".join(f"data: {line}\n" for line in data.split("\n"))
    return (head + body + "\n").encode()
