"""Upstream failures, injected by a Poe peer that misbehaves on request (``tests/peers/faulty.py``),
under the real SDK, on every host."""

from __future__ import annotations

import gzip
import json
import socket
from collections.abc import Callable, Iterator

import httpx
import openai
import pytest

from adapters.upstream import failure_reason
from tests.conftest import OpenProxy
from tests.hosts import Target
from tests.peers.bots import POE_KEY
from tests.peers.faulty import RESET, STALL, Answer, FaultyPoe, Handler

MESSAGES = [{"role": "user", "content": "hi"}]
Faulty = Callable[..., openai.AsyncOpenAI]


@pytest.fixture
def faulty(open_proxy: OpenProxy, faulty_poe: FaultyPoe) -> Iterator[Faulty]:
    """``faulty(handler, backend)``: an SDK on the proxy whose Poe answers with ``handler``."""

    def make(handler: Handler, backend: str = "bot") -> openai.AsyncOpenAI:
        faulty_poe.handler = handler
        return proxy_on(open_proxy, faulty_poe, backend).sdk()

    yield make
    faulty_poe.handler = lambda request: Answer.text(500, "no handler set")


def proxy_on(open_proxy: OpenProxy, peer: FaultyPoe, backend: str = "bot") -> Target:
    return open_proxy(backend, POE_BASE_URL=peer.url, POE_READ_TIMEOUT="1")


@pytest.mark.parametrize("backend", ["bot", "openai"])
async def test_429_keeps_retry_after(faulty: Faulty, backend: str) -> None:
    def handler(request: httpx.Request) -> Answer:
        return Answer.json(429, {"error": {"message": "slow down"}}, **{"retry-after": "7"})

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
    faulty: Faulty, status: int, body: str, expected: int, code: str
) -> None:
    async with faulty(lambda request: Answer.text(status, body)) as sdk:
        with pytest.raises(openai.APIStatusError) as caught:
            await sdk.chat.completions.create(model="echo", messages=MESSAGES)
    assert caught.value.status_code == expected
    assert caught.value.code == code
    assert "<html" not in caught.value.message


async def test_upstream_text_never_carries_the_key(faulty: Faulty) -> None:
    def handler(request: httpx.Request) -> Answer:
        return Answer.text(401, f"bad key {request.headers['authorization']}")

    async with faulty(handler) as sdk:
        with pytest.raises(openai.AuthenticationError) as caught:
            await sdk.chat.completions.create(model="echo", messages=MESSAGES)
    assert POE_KEY not in caught.value.message


@pytest.mark.parametrize(
    ("answer", "status", "code"),
    [
        (STALL, 504, "upstream_timeout"),  # no answer within POE_READ_TIMEOUT
        (RESET, 502, "upstream_connection_reset"),  # the connection dropped, no answer at all
    ],
)
async def test_transport_faults(faulty: Faulty, answer: Answer, status: int, code: str) -> None:
    async with faulty(lambda request: answer) as sdk:
        with pytest.raises(openai.APIStatusError) as caught:
            await sdk.chat.completions.create(model="echo", messages=MESSAGES)
    assert (caught.value.status_code, caught.value.code) == (status, code)


@pytest.fixture(scope="session")
def closed_port() -> Iterator[int]:
    """A port nothing listens on, kept bound (not listening) so no server can take it meanwhile."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


async def test_poe_unreachable_is_503(open_proxy: OpenProxy, closed_port: int) -> None:
    nobody = f"http://127.0.0.1:{closed_port}"
    async with open_proxy("bot", POE_BASE_URL=nobody).sdk() as sdk:
        with pytest.raises(openai.APIStatusError) as caught:
            await sdk.chat.completions.create(model="echo", messages=MESSAGES)
    assert (caught.value.status_code, caught.value.code) == (503, "upstream_connect_error")


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (httpx.ConnectTimeout("slow"), "connect_timeout"),
        (httpx.PoolTimeout("busy"), "connect_timeout"),
        (httpx.ReadTimeout("slow"), "timeout"),
        (httpx.ConnectError("refused"), "refused"),
        (httpx.RemoteProtocolError("reset"), "reset"),
        (httpx.ReadError("reset"), "reset"),
    ],
)
def test_httpx_failures_name_their_reason(error: httpx.HTTPError, reason: str) -> None:
    """What the asyncio host reports to core for each of httpx's transport errors."""
    assert failure_reason(error) == reason


async def test_stream_without_done_is_an_error_not_a_short_answer(faulty: Faulty) -> None:
    async with faulty(lambda request: Answer.sse('event: text\ndata: {"text": "half"}\n\n')) as sdk:
        with pytest.raises(openai.APIStatusError) as caught:
            await sdk.chat.completions.create(model="echo", messages=MESSAGES)
        assert caught.value.code == "upstream_incomplete"
        stream = await sdk.chat.completions.create(model="echo", messages=MESSAGES, stream=True)
        with pytest.raises(openai.APIError) as mid:
            [chunk async for chunk in stream]
        assert "before it was complete" in mid.value.message


async def test_an_event_stream_compressed_anyway_is_still_read(faulty: Faulty) -> None:
    events = b'event: text\ndata: {"text": "squeezed"}\n\nevent: done\ndata: {}\n\n'
    headers = {"content-type": "text/event-stream", "content-encoding": "gzip"}
    answer = Answer(200, headers, [gzip.compress(events)])
    async with faulty(lambda request: answer) as sdk:
        result = await sdk.chat.completions.create(model="echo", messages=MESSAGES)
    assert result.choices[0].message.content == "squeezed"


async def test_malformed_event_json_is_a_502(faulty: Faulty) -> None:
    async with faulty(
        lambda request: Answer.sse("event: text\ndata: {oops\n\n", "event: done\ndata: {}\n\n")
    ) as sdk:
        with pytest.raises(openai.APIStatusError) as caught:
            await sdk.chat.completions.create(model="echo", messages=MESSAGES)
    assert (caught.value.status_code, caught.value.code) == (502, "upstream_malformed")


async def test_unknown_events_and_comments_are_ignored(faulty: Faulty) -> None:
    body = Answer.sse(
        ": hi\n\n",
        "event: surprise\ndata: ???\n\n",
        'event: text\ndata: {"text": "fine"}\n\n',
        "event: done\ndata: {}\n\n",
    )
    async with faulty(lambda request: body) as sdk:
        result = await sdk.chat.completions.create(model="echo", messages=MESSAGES)
    assert result.choices[0].message.content == "fine"


@pytest.mark.parametrize(
    ("then", "code"), [("stall", "upstream_timeout"), ("reset", "upstream_connection_reset")]
)
async def test_mid_stream_faults_become_an_error_event_without_done(
    open_proxy: OpenProxy, faulty_poe: FaultyPoe, then: str, code: str
) -> None:
    partial = 'event: text\ndata: {"text": "partial"}\n\n'
    faulty_poe.handler = lambda request: Answer.sse(partial, then=then)  # type: ignore[arg-type]
    async with proxy_on(open_proxy, faulty_poe).http() as http:
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
