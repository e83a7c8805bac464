"""core.exchange without any I/O: the request state machine every host drives, driven by hand.

``Host`` is the smallest possible host: a loop that performs each action against scripted
answers (no sockets, no event loop) and records what was asked and what the client got.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import count
from typing import Any

import fastapi_poe as fp
from hypothesis import given, settings
from hypothesis import strategies as st

from core.exchange import (
    DONE,
    READ_BODY,
    WAIT,
    Exchange,
    Proxy,
    Respond,
    StartCall,
    StopCall,
    Store,
    Write,
)
from core.settings import Settings

SETTINGS = Settings.from_mapping({"POE_BASE_URL": "http://poe.test", "POE_UPLOAD_URL": "http://up.test/"})
AUTH = {"authorization": "Bearer key-123"}
_tokens = count()

Event = tuple[Any, ...]  # ("answered", status, headers) | ("data", bytes) | ("ended",) | ("failed", reason)
Script = Callable[[StartCall], list[Event]]


def new_token() -> str:
    return f"{next(_tokens):032x}"


def sse(*events: tuple[str, object]) -> bytes:
    return b"".join(f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode() for kind, data in events)


def bot_says(text: str) -> list[Event]:
    return [("answered", 200, {}), ("data", sse(("text", {"text": text}), ("done", {}))), ("ended",)]


@dataclass
class Host:
    """Performs an exchange's actions: each call is answered by ``script``, in order."""

    script: Script
    calls: list[StartCall] = field(default_factory=list)
    stopped: list[StopCall] = field(default_factory=list)
    response: Respond | None = None
    body: bytes = b""
    store: dict[str, bytes] = field(default_factory=dict)  # the host's store, a dict

    def run(self, exchange: Exchange, request_body: bytes = b"") -> Host:
        pending: deque[tuple[int, Event]] = deque()
        while (action := exchange.next_action()) is not DONE:
            if action is READ_BODY:
                exchange.body(request_body, False)
            elif isinstance(action, StartCall):
                self.calls.append(action)
                pending.extend((action.call, event) for event in self.script(action))
            elif isinstance(action, StopCall):
                self.stopped.append(action)
                pending = deque(item for item in pending if item[0] != action.call)
            elif isinstance(action, Respond):
                assert self.response is None, "two responses"
                self.response, self.body = action, action.body
            elif isinstance(action, Write):
                assert self.response is not None and self.response.more
                self.body += action.data
            elif isinstance(action, Store):
                if action.op == "get":
                    exchange.stored([self.store.get(key) for key in action.keys])
                    continue
                for i, key in enumerate(action.keys):
                    if action.op == "put":
                        self.store[key] = action.values[i]
                    else:
                        self.store.pop(key, None)
                exchange.stored()
            else:
                assert action is WAIT and pending, "waiting on nothing"
                call, (kind, *args) = pending.popleft()
                getattr(exchange, kind)(call, *args)
        assert exchange.bug is None, exchange.bug
        return self

    def json(self) -> Any:
        return json.loads(self.body)

    def events(self) -> list[str]:
        return [
            line.removeprefix("data: ")
            for line in self.body.decode().splitlines()
            if line.startswith("data: ")
        ]


def request(
    method: str, path: str, headers: dict[str, str] | None = None, proxy: Proxy | None = None
) -> Exchange:
    proxy = proxy or Proxy(SETTINGS, store_missing=None)
    return proxy.request(method, path, AUTH if headers is None else headers, new_token=new_token, now=0)


def chat(**extra: object) -> bytes:
    return json.dumps({"model": "echo", "messages": [{"role": "user", "content": "hi"}], **extra}).encode()


def test_edges_are_answered_with_cors_and_no_call() -> None:
    for method, path, body, headers, status in [
        ("OPTIONS", "/v1/anything", b"", {}, 204),
        ("GET", "/", b"", AUTH, 404),
        ("GET", "/v1/chat/completions", b"", AUTH, 405),
        ("POST", "/v1/chat/completions", chat(), {}, 401),
        ("POST", "/v1/chat/completions", b'{"model": 1}', AUTH, 400),
        ("POST", "/v1/chat/completions", b"{", AUTH, 400),
    ]:
        host = Host(lambda call: []).run(request(method, path, headers), body)
        assert host.calls == []
        assert host.response is not None and host.response.status == status
        assert host.response.headers["access-control-allow-origin"] == "*"
        assert host.response.headers["x-request-id"].startswith("req_")


def test_no_key_means_the_body_is_never_read() -> None:
    exchange = request("POST", "/v1/chat/completions", {})
    assert isinstance(exchange.next_action(), Respond)  # 401 at once: no READ_BODY first
    assert exchange.next_action() is DONE


def test_a_declared_body_over_the_limit_is_refused_unread() -> None:
    headers = {**AUTH, "content-length": str(SETTINGS.max_body_bytes + 1)}
    response = request("POST", "/v1/chat/completions", headers).next_action()
    assert isinstance(response, Respond) and response.status == 413


def test_a_bot_stream_is_converted_as_bytes_arrive() -> None:
    exchange = request("POST", "/v1/chat/completions")
    assert exchange.next_action() is READ_BODY
    exchange.body(chat(stream=True, n=2), False)
    first, second = exchange.next_action(), exchange.next_action()
    assert isinstance(first, StartCall) and isinstance(second, StartCall)
    assert (first.url, first.headers["authorization"]) == ("http://poe.test/bot/echo", "Bearer key-123")
    fp.QueryRequest.model_validate(json.loads(first.body or b""))  # fastapi_poe's own type
    assert exchange.next_action() is WAIT
    exchange.answered(0, 200, {})
    exchange.data(0, b'event: text\ndata: {"te')  # half an event: nothing to send yet
    assert exchange.next_action() is WAIT
    exchange.data(0, b'xt": "hello"}\n\nevent: done\ndata: {}\n\n')
    head = exchange.next_action()
    assert isinstance(head, Respond) and head.more and head.headers["content-type"] == "text/event-stream"
    assert b'"content":"hello"' in head.body
    assert exchange.next_action() == StopCall(0, True)  # complete: keep the connection for reuse
    exchange.answered(1, 200, {})
    exchange.data(1, sse(("text", {"text": "x"}), ("done", {})))
    assert isinstance(exchange.next_action(), Write)  # the second choice's chunks
    assert exchange.next_action() == StopCall(1, True)
    tail = exchange.next_action()
    assert isinstance(tail, Write) and tail.data.endswith(b"data: [DONE]\n\n")
    assert exchange.next_action() is DONE


def test_an_error_event_after_text_keeps_the_text_then_ends_the_stream() -> None:
    events = sse(("text", {"text": "partial"}), ("error", {"text": "boom"}))
    host = Host(lambda call: [("answered", 200, {}), ("data", events)]).run(
        request("POST", "/v1/chat/completions"), chat(stream=True)
    )
    assert host.response is not None and host.response.status == 200
    assert "partial" in host.events()[0]
    assert json.loads(host.events()[-1])["error"]["code"] == "bot_error"  # no [DONE] after an error
    assert host.stopped == [StopCall(0, False)]


def test_a_refused_call_maps_to_the_openai_error_without_the_key() -> None:
    body = b'{"error": {"message": "slow down key-123"}}'
    host = Host(lambda call: [("answered", 429, {"retry-after": "7"}), ("data", body), ("ended",)])
    host.run(request("POST", "/v1/chat/completions"), chat(stream=True))
    assert host.response is not None and host.response.status == 429  # a stream refused at once
    assert host.response.headers["retry-after"] == "7"
    assert b"key-123" not in host.body


def test_one_refused_choice_stops_the_others() -> None:
    def script(call: StartCall) -> list[Event]:
        return [("answered", 503, {}), ("ended",)] if call.call == 1 else [("answered", 200, {})]

    host = Host(script).run(request("POST", "/v1/chat/completions"), chat(n=2))
    assert host.response is not None and host.response.status == 503
    assert host.stopped == [StopCall(0, False)]


def test_transport_failures_are_gateway_errors() -> None:
    for reason, status in [("timeout", 504), ("connect_timeout", 504), ("refused", 503), ("reset", 502)]:
        host = Host(lambda call, r=reason: [("failed", r)]).run(
            request("POST", "/v1/chat/completions"), chat()
        )
        assert host.response is not None and host.response.status == status


def test_inline_media_is_uploaded_before_the_chat_and_attached() -> None:
    image = "data:image/png;base64,iVBORw0KGgo="
    content = [{"type": "text", "text": "what?"}, {"type": "image_url", "image_url": {"url": image}}]
    body = json.dumps({"model": "echo", "messages": [{"role": "user", "content": content}]}).encode()
    uploaded = {"attachment_url": "https://poe.test/file/1", "mime_type": "image/png"}

    def script(call: StartCall) -> list[Event]:
        if call.url.startswith("http://up.test/"):
            return [("answered", 200, {}), ("data", json.dumps(uploaded).encode()), ("ended",)]
        return bot_says("a pixel")

    host = Host(script).run(request("POST", "/v1/chat/completions"), body)
    upload, query = host.calls
    assert upload.url == "http://up.test/file_upload_3RD_PARTY_POST"
    assert upload.headers["authorization"] == "key-123"  # the bare key, as fastapi_poe sends it
    assert upload.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert b'name="file"; filename="image.png"' in (upload.body or b"")
    attachment = fp.QueryRequest.model_validate(json.loads(query.body or b"")).query[0].attachments[0]
    assert (attachment.url, attachment.content_type) == ("https://poe.test/file/1", "image/png")
    assert host.json()["choices"][0]["message"]["content"] == "a pixel"


def test_json_mode_makes_one_more_call_when_the_answer_is_not_json() -> None:
    answers = iter(["not json at all", '{"ok": true}'])
    host = Host(lambda call: bot_says(next(answers))).run(
        request("POST", "/v1/chat/completions"), chat(response_format={"type": "json_object"})
    )
    _, retry = host.calls
    assert b"not json at all" in (retry.body or b"")  # the retry shows the bot its answer
    result = host.json()
    assert json.loads(result["choices"][0]["message"]["content"]) == {"ok": True}
    assert result["usage"]["completion_tokens"] > 1  # both calls were billed, both count


def test_models_are_cached_by_the_proxy_and_served_stale_when_poe_fails() -> None:
    settings = Settings.from_mapping({"POE_BASE_URL": "http://poe.test", "MODELS_CACHE_TTL": "0"})
    proxy = Proxy(settings, store_missing=None)
    listed = b'{"object": "list", "data": [{"id": "Claude-Opus-4.5", "object": "model"}]}'
    ok = Host(lambda call: [("answered", 200, {}), ("data", listed), ("ended",)])
    assert [m["id"] for m in ok.run(request("GET", "/v1/models", proxy=proxy)).json()["data"]] == [
        "Claude-Opus-4.5"
    ]
    failing = Host(lambda call: [("failed", "refused")]).run(request("GET", "/v1/models", proxy=proxy))
    assert failing.response is not None and failing.response.status == 200  # the stale list
    assert len(failing.calls) == 1  # Poe was asked first (the TTL is 0)
    cold = Host(lambda call: [("failed", "refused")]).run(request("GET", "/v1/models"))
    assert cold.response is not None and cold.response.status == 503


def test_a_bug_is_a_500_not_an_exception() -> None:
    exchange = request("POST", "/v1/chat/completions")
    assert exchange.next_action() is READ_BODY
    exchange.body(chat(), False)
    assert isinstance(exchange.next_action(), StartCall)
    exchange.answered(0, 200, {})
    exchange.data(0, None)  # type: ignore[arg-type]  # not bytes: the converter fails
    assert exchange.bug is not None
    assert exchange.next_action() == StopCall(0, False)
    response = exchange.next_action()
    assert isinstance(response, Respond) and response.status == 500
    assert exchange.next_action() is DONE


@settings(max_examples=300, deadline=None)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "OPTIONS"]),
    path=st.sampled_from(["/v1/chat/completions", "/completions", "/v1/embeddings", "/v1/models/x", "/zz"]),
    body=st.binary(max_size=200)
    | st.builds(lambda d: json.dumps(d).encode(), st.dictionaries(st.text(), st.integers() | st.text())),
    answer=st.binary(max_size=200),
)
def test_any_request_and_answer_ends_in_one_response(
    method: str, path: str, body: bytes, answer: bytes
) -> None:
    host = Host(lambda call: [("answered", 200, {}), ("data", answer), ("ended",)])
    host.run(request(method, path), body)
    assert host.response is not None
