"""core.sse: the event-stream decoder and encoders."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import UpstreamError
from core.sse import DONE_EVENT, ServerSentEvent, SSEDecoder, encode_event, encode_json_event


def decode_all(*chunks: bytes) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    events = [e for chunk in chunks for e in decoder.feed(chunk)]
    return events + decoder.close()


def test_events_with_names_ids_and_multiline_data() -> None:
    raw = b'event: text\ndata: {"text": "a"}\n\n: a comment\nid: 7\nretry: 100\ndata: line1\ndata: line2\n\n'
    assert decode_all(raw) == [
        ServerSentEvent(event="text", data='{"text": "a"}'),
        ServerSentEvent(event="message", data="line1\nline2", id="7", retry=100),
    ]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_every_line_ending(newline: bytes) -> None:
    raw = b"event: done" + newline + b"data: {}" + newline + newline
    assert decode_all(raw) == [ServerSentEvent(event="done", data="{}")]


def test_crlf_split_between_chunks_is_one_line_break() -> None:
    assert decode_all(b"data: a\r", b"\n\r", b"\ndata: b\r\n\r\n") == [
        ServerSentEvent(data="a"),
        ServerSentEvent(data="b"),
    ]


def test_field_without_space_and_without_value() -> None:
    assert decode_all(b"data:x\nevent\ndata\n\n") == [ServerSentEvent(data="x\n")]


def test_event_without_data_is_not_dispatched() -> None:
    assert decode_all(b"event: ping\n\n") == []


def test_unfinished_event_at_end_is_dropped_but_last_line_counts() -> None:
    assert decode_all(b"data: complete\n\ndata: partial") == [ServerSentEvent(data="complete")]


def test_overlong_line_is_an_upstream_error() -> None:
    decoder = SSEDecoder(max_line=10)
    with pytest.raises(UpstreamError):
        decoder.feed(b"data: " + b"x" * 20)


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    assert decode_all(b"data: \xff\n\n") == [ServerSentEvent(data="\ufffd")]


STREAM = (
    'event: text\ndata: {"text": "h\u00e9llo \u4e16\u754c \U0001f600"}\n\n'
    'event: replace_response\r\ndata: {"text": "x"}\r\n\r\n'
    ": keepalive\n\nevent: done\rdata: {}\r\r"
).encode()


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=20))
def test_any_split_gives_the_same_events(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    pieces = [STREAM[a:b] for a, b in zip([0, *points], [*points, len(STREAM)], strict=True)]
    assert decode_all(*pieces) == decode_all(STREAM)
    assert [e.event for e in decode_all(STREAM)] == ["text", "replace_response", "done"]


def test_encoders_round_trip() -> None:
    assert encode_json_event({"a": "\u00e9"}) == 'data: {"a":"\u00e9"}\n\n'.encode()
    assert decode_all(encode_event("one\ntwo", event="x")) == [ServerSentEvent(event="x", data="one\ntwo")]
    assert decode_all(DONE_EVENT) == [ServerSentEvent(data="[DONE]")]


def reference_decode(raw: bytes) -> list[ServerSentEvent]:
    """The WHATWG event-stream algorithm, line by line, written the plain way."""
    text = raw.decode("utf-8", errors="replace")
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    lines.pop()  # an unterminated last line ends no event
    events, name, data, last_id, retry = [], "", [], None, None
    for line in lines:
        if not line:
            if data:
                events.append(ServerSentEvent(name or "message", "\n".join(data), last_id, retry))
            name, data = "", []
            continue
        field, colon, value = line.partition(":")
        value = value[1:] if colon and value.startswith(" ") else value
        if field == "data":
            data.append(value)
        elif field == "event":
            name = value
        elif field == "id" and "\0" not in value:
            last_id = value
        elif field == "retry" and value.isdigit():
            retry = int(value)
    return events


# Lines of the shapes upstreams send, and of the shapes they might: the decoder's fast path for
# whole "event:"/"data:" blocks must agree with the plain algorithm on all of them.
LINE = st.sampled_from(
    [
        "event: text",
        "event: done",
        "event:",
        "event:x",
        'data: {"text": "a"}',
        "data: b: c",
        "data:",
        "data",
        ": comment",
        "id: 7",
        "retry: 10",
        "",
        "",
        "",
    ]
)


@given(
    lines=st.lists(LINE, max_size=30),
    newline=st.sampled_from(["\n", "\n", "\r\n"]),
    cuts=st.lists(st.integers(min_value=0, max_value=600), max_size=6),
)
def test_the_decoder_agrees_with_the_plain_algorithm(lines: list[str], newline: str, cuts: list[int]) -> None:
    raw = newline.join(lines).encode() + newline.encode()
    points = sorted({c for c in cuts if c <= len(raw)})
    pieces = [raw[a:b] for a, b in zip([0, *points], [*points, len(raw)], strict=True)]
    decoder = SSEDecoder()
    events = [e for piece in pieces for e in decoder.feed(piece)]
    assert events == reference_decode(raw)
