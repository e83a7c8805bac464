"""Upstream failures, injected with ``httpx.MockTransport`` under the real app and SDK."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable

import httpx
import openai
import pytest

from adapters.app import create_app
from core.settings import Settings
from tests.conftest import AppTransport, asgi_client
from tests.peers.bots import POE_KEY

Handler = Callable[[httpx.Request], httpx.Response]
MESSAGES = [{"role": "user", "content": "hi"}]


def faulty(handler: Handler, backend: str = "bot") -> openai.AsyncOpenAI:
    settings = Settings.from_mapping({"POE_BACKEND": backend, "POE_BASE_URL": "http://poe.invalid"})
    return asgi_client(create_app(settings, transport=httpx.MockTransport(handler)))


def sse(*events: str) -> httpx.Response:
    return httpx.Response(
        200, headers={"content-type": "text/event-stream"}, content="".join(events).encode()
    )


@pytest.mark.parametrize("backend", ["bot", "openai"])
async def test_429_keeps_retry_after(backend: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "7"}, json={"error": {"message": "slow down"}})

    async with faulty(handler, backend) as sdk:
        with pytest.raises(openai.RateLimitError) as caught:
            await sdk.chat.completions.create(model="echo", messages=MESSAGES)
    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.code == "rate_limit_exceeded"
    assert "slow down" in caught.value.message


@pytest.mark.parametrize(
    ("status", "body", "expected", "code"),
    [
        (403, "forbidden", 403, "permission_denied"),
        (500, "<html><body>Internal Server Error</body></html>", 502, "upstream_error"),
        (503, "", 503, "upstream_unavailable"),
        (504, "gateway timeout", 504, "upstream_timeout"),
    ],
)
async def test_upstream_statuses_map_to_openai_errors(
    status: int, body: str, expected: int, code: str
) -> None:
    async with faulty(lambda request: httpx.Response(status, text=body)) as sdk:
        with pytest.raises(openai.APIStatusError) as caught:
            await sdk.chat.completions.create(model="echo", messages=MESSAGES)
    assert caught.value.status_code == expected
    assert caught.value.code == code
    assert "<html" not in caught.value.message


async def test_upstream_text_never_carries_the_key() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, text=f"bad key {request.headers['authorization']}")

    async with faulty(handler) as sdk:
        with pytest.raises(openai.AuthenticationError) as caught:
            await sdk.chat.completions.create(model="echo", messages=MESSAGES)
    assert POE_KEY not in caught.value.message


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (httpx.ConnectTimeout("slow"), 504, "upstream_timeout"),
        (httpx.ReadTimeout("slow"), 504, "upstream_timeout"),
        (httpx.ConnectError("refused"), 503, "upstream_connect_error"),
        (httpx.RemoteProtocolError("reset"), 502, "upstream_connection_reset"),
    ],
)
async def test_transport_faults(error: Exception, status: int, code: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    async with faulty(handler) as sdk:
        with pytest.raises(openai.APIStatusError) as caught:
            await sdk.chat.completions.create(model="echo", messages=MESSAGES)
    assert (caught.value.status_code, caught.value.code) == (status, code)


async def test_stream_without_done_is_an_error_not_a_short_answer() -> None:
    async with faulty(lambda request: sse('event: text\ndata: {"text": "half"}\n\n')) as sdk:
        with pytest.raises(openai.APIStatusError) as caught:
            await sdk.chat.completions.create(model="echo", messages=MESSAGES)
        assert caught.value.code == "upstream_incomplete"
        stream = await sdk.chat.completions.create(model="echo", messages=MESSAGES, stream=True)
        with pytest.raises(openai.APIError) as mid:
            [chunk async for chunk in stream]
        assert "before it was complete" in mid.value.message


async def test_an_event_stream_compressed_anyway_is_still_read() -> None:
    events = b'event: text\ndata: {"text": "squeezed"}\n\nevent: done\ndata: {}\n\n'
    answer = httpx.Response(
        200,
        headers={"content-type": "text/event-stream", "content-encoding": "gzip"},
        content=gzip.compress(events),
    )
    async with faulty(lambda request: answer) as sdk:
        result = await sdk.chat.completions.create(model="echo", messages=MESSAGES)
    assert result.choices[0].message.content == "squeezed"


async def test_malformed_event_json_is_a_502() -> None:
    async with faulty(
        lambda request: sse("event: text\ndata: {oops\n\n", "event: done\ndata: {}\n\n")
    ) as sdk:
        with pytest.raises(openai.APIStatusError) as caught:
            await sdk.chat.completions.create(model="echo", messages=MESSAGES)
    assert (caught.value.status_code, caught.value.code) == (502, "upstream_malformed")


async def test_unknown_events_and_comments_are_ignored() -> None:
    body = sse(
        ": hi\n\n",
        "event: surprise\ndata: ???\n\n",
        'event: text\ndata: {"text": "fine"}\n\n',
        "event: done\ndata: {}\n\n",
    )
    async with faulty(lambda request: body) as sdk:
        result = await sdk.chat.completions.create(model="echo", messages=MESSAGES)
    assert result.choices[0].message.content == "fine"


class BrokenBody(httpx.AsyncByteStream):
    """An SSE body that delivers its first event, then fails the way a network does."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def __aiter__(self):  # type: ignore[no-untyped-def]
        yield b'event: text\ndata: {"text": "partial"}\n\n'
        raise self.error


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (httpx.ReadTimeout("silence"), "upstream_timeout"),
        (httpx.ReadError("reset by peer"), "upstream_connection_reset"),
    ],
)
async def test_mid_stream_faults_become_an_error_event_without_done(error: Exception, code: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=BrokenBody(error))

    settings = Settings.from_mapping({"POE_BASE_URL": "http://poe.invalid"})
    app = create_app(settings, transport=httpx.MockTransport(handler))
    async with httpx.AsyncClient(transport=AppTransport(app=app), base_url="http://proxy") as http:
        response = await http.post(
            "/v1/chat/completions",
            json={"model": "echo", "messages": MESSAGES, "stream": True},
            headers={"Authorization": f"Bearer {POE_KEY}"},
        )
    events = [line.removeprefix("data: ") for line in response.text.splitlines() if line.startswith("data: ")]
    assert response.status_code == 200
    assert "partial" in events[0]
    assert json.loads(events[-1])["error"]["code"] == code
    assert "[DONE]" not in events
