"""core.exchange without any I/O: what the Netlify function drives, fed by hand here."""

from __future__ import annotations

import json
from itertools import count

from hypothesis import given, settings
from hypothesis import strategies as st

from core.exchange import Exchange, Reply, start
from core.settings import Settings

SETTINGS = Settings.from_mapping({"POE_BASE_URL": "http://poe.test"})
AUTH = {"Authorization": "Bearer key-123"}
_tokens = count()


def new_token() -> str:
    return f"{next(_tokens):032x}"


def begin(
    method: str, path: str, body: object = None, headers: dict[str, str] | None = None
) -> Reply | Exchange:
    raw = b"" if body is None else json.dumps(body).encode()
    return start(
        method, path, AUTH if headers is None else headers, raw, SETTINGS, new_token=new_token, now=0
    )


def chat(**extra: object) -> dict[str, object]:
    return {"model": "echo", "messages": [{"role": "user", "content": "hi"}], **extra}


def test_edges_are_replies_with_cors() -> None:
    for method, path, body, headers, status in [
        ("OPTIONS", "/v1/anything", None, {}, 204),
        ("GET", "/", None, AUTH, 404),
        ("GET", "/v1/chat/completions", None, AUTH, 405),
        ("POST", "/v1/chat/completions", chat(), {}, 401),
        ("POST", "/v1/chat/completions", {"model": 1}, AUTH, 400),
    ]:
        reply = begin(method, path, body, headers)
        assert isinstance(reply, Reply)
        assert reply.status == status
        assert reply.headers["access-control-allow-origin"] == "*"


def test_a_bot_stream_becomes_openai_chunks_as_bytes_arrive() -> None:
    exchange = begin("POST", "/v1/chat/completions", chat(stream=True, n=2))
    assert isinstance(exchange, Exchange) and exchange.stream
    assert [c.url for c in exchange.calls] == ["http://poe.test/bot/echo"] * 2
    assert exchange.calls[0].headers["authorization"] == "Bearer key-123"
    out = exchange.feed(0, b'event: text\ndata: {"te')  # half an event: nothing yet
    assert out == b""
    out = exchange.feed(0, b'xt": "hello"}\n\nevent: done\ndata: {}\n\n')
    assert b'"content":"hello"' in out and b'"finish_reason":"stop"' in out
    assert not exchange.wants(0)  # complete: the host may stop reading
    exchange.end(0)
    exchange.feed(1, b'event: text\ndata: {"text": "x"}\n\nevent: done\ndata: {}\n\n')
    exchange.end(1)
    assert exchange.finish().endswith(b"data: [DONE]\n\n")


def test_an_error_event_after_text_keeps_the_text_then_ends_the_stream() -> None:
    exchange = begin("POST", "/v1/chat/completions", chat(stream=True))
    assert isinstance(exchange, Exchange)
    out = exchange.feed(
        0, b'event: text\ndata: {"text": "partial"}\n\nevent: error\ndata: {"text": "boom"}\n\n'
    )
    assert out.index(b"partial") < out.index(b'"error"')
    assert exchange.answered and exchange.finish() == b""  # no [DONE] after an error


def test_a_refused_call_maps_to_the_openai_error_without_the_key() -> None:
    exchange = begin("POST", "/v1/chat/completions", chat())
    assert isinstance(exchange, Exchange)
    reply = exchange.refused(0, 429, {"Retry-After": "7"}, b'{"error": {"message": "slow down key-123"}}')
    assert reply.status == 429 and reply.headers["retry-after"] == "7"
    assert b"key-123" not in reply.body


def test_models_are_listed_from_one_json_call() -> None:
    exchange = begin("GET", "/v1/models")
    assert isinstance(exchange, Exchange) and not exchange.stream
    (call,) = exchange.calls
    assert (call.method, call.url) == ("GET", "http://poe.test/v1/models")
    exchange.feed(0, b'{"object": "list", "data": [{"id": "Claude-Opus-4.5", "object": "model"}]}')
    reply = exchange.reply()
    assert reply.status == 200
    assert [m["id"] for m in json.loads(reply.body)["data"]] == ["Claude-Opus-4.5"]


@settings(max_examples=300, deadline=None)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "OPTIONS"]),
    path=st.sampled_from(["/v1/chat/completions", "/completions", "/v1/embeddings", "/v1/models/x", "/zz"]),
    body=st.binary(max_size=200)
    | st.builds(lambda d: json.dumps(d).encode(), st.dictionaries(st.text(), st.integers() | st.text())),
)
def test_start_never_raises(method: str, path: str, body: bytes) -> None:
    result = start(method, path, AUTH, body, SETTINGS, new_token=new_token, now=0)
    assert isinstance(result, Reply | Exchange)
