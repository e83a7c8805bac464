"""core.chat_stream: Poe events in, OpenAI chunks out, fed one event at a time (no event loop)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from core.chat_stream import (
    ChatWire,
    CompletionMeta,
    OpenAIStreamToChatChunks,
    PoeStreamToChatChunks,
    chat_completion,
    completion_chunk,
    total_usage,
    usage_chunk,
)
from core.errors import InsufficientQuotaError, UpstreamError, UpstreamUnavailableError
from core.sse import ServerSentEvent

META = CompletionMeta(id="chatcmpl-test", created=1700000000, model="bot")


def ev(kind: str, data: Any) -> ServerSentEvent:
    return ServerSentEvent(event=kind, data=data if isinstance(data, str) else json.dumps(data))


def text(t: str) -> ServerSentEvent:
    return ev("text", {"text": t})


DONE = ev("done", "{}")


def feed_all(converter: Any, events: list[ServerSentEvent]) -> list[dict[str, Any]]:
    chunks = [c for e in events for c in converter.feed(e)]
    return chunks + converter.close()


def streamed_text(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def test_chunks_are_openai_chunks_role_first_finish_last() -> None:
    chunks = feed_all(PoeStreamToChatChunks(META), [ev("meta", {}), text("Hel"), text("lo"), DONE])
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "Hel"}
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert streamed_text(chunks) == "Hello"


def test_one_chunk_per_event_immediately() -> None:
    converter = PoeStreamToChatChunks(META)
    assert len(converter.feed(text("a"))) == 1
    assert len(converter.feed(text("b"))) == 1


def test_missing_done_is_an_error_not_a_truncation() -> None:
    converter = PoeStreamToChatChunks(META)
    converter.feed(text("partial"))
    with pytest.raises(UpstreamError) as caught:
        converter.close()
    assert caught.value.code == "upstream_incomplete"


@pytest.mark.parametrize("data", ["not json", "[1]", json.dumps({"no_text": 1})])
def test_malformed_events_are_upstream_errors(data: str) -> None:
    with pytest.raises(UpstreamError):
        PoeStreamToChatChunks(META).feed(ev("text", data))


def test_unknown_events_are_ignored() -> None:
    converter = PoeStreamToChatChunks(META)
    assert converter.feed(ev("brand_new_event", "whatever")) == []
    assert converter.feed(ev("suggested_reply", {"text": "ask me"})) == []


def test_error_events_map_by_type_and_retry() -> None:
    with pytest.raises(InsufficientQuotaError):
        PoeStreamToChatChunks(META).feed(ev("error", {"text": "no", "error_type": "insufficient_fund"}))
    with pytest.raises(UpstreamUnavailableError):
        PoeStreamToChatChunks(META).feed(ev("error", {"text": "try again", "allow_retry": True}))
    with pytest.raises(UpstreamError) as caught:
        PoeStreamToChatChunks(META).feed(ev("error", {"allow_retry": False}))
    assert caught.value.status == 502


def test_include_usage_adds_null_usage_and_a_final_usage_chunk() -> None:
    meta = CompletionMeta(id="c", created=1, model="m", include_usage=True)
    chunks = feed_all(PoeStreamToChatChunks(meta), [text("abcd"), DONE])
    assert all(c["usage"] is None for c in chunks)
    final = usage_chunk(meta, {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2})
    assert ChatCompletionChunk.model_validate(final).choices == []


def test_completion_is_an_openai_chat_completion() -> None:
    converter = PoeStreamToChatChunks(META, streaming=False)
    feed_all(converter, [text("Thinking"), ev("replace_response", {"text": "Answer"}), DONE])
    completion = chat_completion(META, [converter], total_usage([converter], prompt_tokens=10))
    parsed = ChatCompletion.model_validate(completion)
    assert parsed.choices[0].message.content == "Answer"
    assert (
        parsed.usage is not None and parsed.usage.completion_tokens == 2 and parsed.usage.prompt_tokens == 10
    )


def test_stop_reading_once_cut() -> None:
    converter = PoeStreamToChatChunks(META, stop=("STOP",))
    chunks = converter.feed(text("done STOP and more"))
    assert converter.finished and chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert converter.feed(text("ignored")) == []
    assert converter.close() == []


def test_openai_stream_is_normalised_and_reported_usage_kept() -> None:
    upstream = [
        {
            "id": "x",
            "object": "chat.completion.chunk",
            "created": 5,
            "model": "GPT",
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}],
        },
        {"id": "x", "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]},
        {"id": "x", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {"id": "x", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}},
    ]
    converter = OpenAIStreamToChatChunks(META, index=2)
    chunks = feed_all(
        converter, [ServerSentEvent(data=json.dumps(u)) for u in upstream] + [ServerSentEvent(data="[DONE]")]
    )
    assert {c["id"] for c in chunks} == {"chatcmpl-test"}
    assert {c["choices"][0]["index"] for c in chunks} == {2}
    assert streamed_text(chunks) == "Hi"
    assert total_usage([converter], prompt_tokens=99) == {
        "prompt_tokens": 3,
        "completion_tokens": 1,
        "total_tokens": 4,
    }


def test_openai_stream_error_payload_raises() -> None:
    with pytest.raises(UpstreamError):
        OpenAIStreamToChatChunks(META).feed(ServerSentEvent(data=json.dumps({"error": {"message": "boom"}})))


@given(
    pieces=st.lists(st.text(max_size=8), max_size=12),
    replace_at=st.none() | st.integers(min_value=0, max_value=12),
)
def test_any_split_of_the_same_text_gives_the_same_answer(pieces: list[str], replace_at: int | None) -> None:
    whole = "".join(pieces)
    events = [text(p) for p in pieces]
    if replace_at is not None:
        # A replacement with the text so far is a no-op for the final answer.
        at = min(replace_at, len(pieces))
        events.insert(at, ev("replace_response", {"text": "".join(pieces[:at])}))
    for streaming in (True, False):
        converter = PoeStreamToChatChunks(META, streaming=streaming)
        chunks = feed_all(converter, [*events, DONE])
        assert converter.content == whole
        assert streamed_text(chunks) == (whole if streaming else "")
        assert bool(chunks) == streaming  # nothing is built for a non-streaming answer


def test_openai_stream_stops_reading_after_a_cut_but_not_after_its_own_finish() -> None:
    cut = OpenAIStreamToChatChunks(META, stop=("STOP",))
    cut.feed(ServerSentEvent(data=json.dumps({"choices": [{"index": 0, "delta": {"content": "a STOP b"}}]})))
    assert cut.finished and not cut.wants_more  # upstream is still generating: hang up
    natural = OpenAIStreamToChatChunks(META)
    natural.feed(
        ServerSentEvent(
            data=json.dumps({"choices": [{"index": 0, "delta": {"content": "a"}, "finish_reason": "stop"}]})
        )
    )
    assert natural.finished and natural.wants_more  # usage and [DONE] follow: read them
    natural.feed(
        ServerSentEvent(
            data=json.dumps({"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1}})
        )
    )
    assert not natural.wants_more


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


@given(
    text=st.text(),
    model=st.text(min_size=1, max_size=12),
    index=st.integers(min_value=0, max_value=3),
    usage=st.booleans(),
    delta_extra=st.dictionaries(
        st.sampled_from(["role", "reasoning_content", "refusal"]), _JSON_VALUES, max_size=1
    ),
    top_extra=st.dictionaries(st.sampled_from(["service_tier", "provider"]), _JSON_VALUES, max_size=1),
    finish=st.sampled_from([None, "stop"]),
)
def test_the_wire_writes_a_chunk_as_its_json_whatever_it_holds(
    text: str,
    model: str,
    index: int,
    usage: bool,
    delta_extra: dict[str, Any],
    top_extra: dict[str, Any],
    finish: str | None,
) -> None:
    """Text chunks are written around their text, from bytes made once: those bytes are exactly
    the chunk's JSON, for text chunks and for every other chunk beside them."""
    meta = CompletionMeta(id="chatcmpl-x", created=1, model="bot", include_usage=usage)
    wire = ChatWire(meta)
    plain = completion_chunk(meta, index, {"content": text})
    plain["model"] = model
    other = {**completion_chunk(meta, index, {"content": text, **delta_extra}, finish), **top_extra}
    for chunk in (plain, other, plain):
        assert (
            wire.chunks([chunk])
            == b"data: " + json.dumps(chunk, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"
        )
