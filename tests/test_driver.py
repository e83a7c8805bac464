"""The asyncio driver's lane (``adapters.driver.Lane``): where Poe's body is pushed as it comes (a
Worker's ``fetch``) and the client takes a write at once, each chunk goes to core and its bytes
to the client within the push itself; what cannot be done at once goes back to the loop.

Driven here by hand, with core's real exchange: a response whose chunks the test pushes, and a
client that records what it got and how (at once, or through the loop's awaited write).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from adapters.driver import drive
from core.exchange import Exchange, Proxy, Respond, StartCall
from core.settings import Settings

SETTINGS = Settings.from_mapping({"POE_BASE_URL": "http://poe.test", "POE_BACKEND": "bot"})


def text(words: str) -> bytes:
    return f"event: text\ndata: {json.dumps({'text': words})}\n\n".encode()


DONE = b"event: done\ndata: {}\n\n"


class PushedResponse:
    """A 200 whose body the test pushes (``driver.Pushing``); what is pushed while no one takes
    it is kept for ``chunks()``."""

    status = 200
    headers: Mapping[str, str] = {"content-type": "text/event-stream"}

    def __init__(self) -> None:
        self.take: Callable[[bytes | None], bool] | None = None
        self.kept: list[bytes] = []
        self.over = False
        self.taking = asyncio.Event()
        self.closed = False

    def push(self, take: Callable[[bytes | None], bool] | None) -> bool:
        if take is not None and (self.kept or self.over):
            return False
        self.take = take
        if take is not None:
            self.taking.set()
        return True

    def send(self, data: bytes | None) -> bool:
        """Push ``data`` (None: the body's end); whether a lane took it."""
        if data is None:
            self.over = True
        take = self.take
        if take is None:
            if data is not None:
                self.kept.append(data)
            return False
        self.taking.clear()
        if not take(data):
            self.take = None
        else:
            self.taking.set()
        return True

    async def chunks(self) -> AsyncIterator[bytes]:
        while self.kept:
            yield self.kept.pop(0)
        assert self.over, "the test ends the body before the loop reads past what was kept"

    async def aclose(self) -> None:
        self.closed = True

    def finish_in_background(self, seconds: float) -> None:
        pass


class OneCall:
    def __init__(self, response: PushedResponse) -> None:
        self.response = response

    async def send(self, call: StartCall) -> PushedResponse:
        return self.response


class Client:
    """Takes writes at once while ``room``; records each write and how it came."""

    def __init__(self, body: bytes) -> None:
        self._body = body
        self.room = True
        self.got: list[tuple[str, bytes]] = []
        self.head: Respond | None = None

    async def read_body(self) -> tuple[bytes, bool]:
        return self._body, False

    async def respond(self, response: Respond) -> None:
        self.head = response
        self.got.append(("head", response.body))

    def write_now(self, data: bytes) -> bool:
        if not self.room:
            return False
        self.got.append(("at once", data))
        return True

    async def write(self, data: bytes) -> None:
        self.got.append(("awaited", data))

    async def end(self) -> None:
        pass

    def calls_started(self) -> None:
        pass


def streamed_chat() -> tuple[Exchange, Client]:
    body = json.dumps({"model": "bot", "messages": [{"role": "user", "content": "hi"}], "stream": True})
    exchange = Proxy(SETTINGS, store_missing="none").request(
        "POST", "/v1/chat/completions", {"authorization": "Bearer key"}, new_token=lambda: "0" * 32, now=0.0
    )
    return exchange, Client(body.encode())


def contents(got: list[tuple[str, bytes]]) -> list[tuple[str, str]]:
    """Each write's text content (its chunks' deltas), with how it came."""
    out = []
    for how, data in got:
        for line in data.decode().split("\n\n"):
            if line.startswith("data: {"):
                choice = json.loads(line[6:])["choices"]
                out.append((how, choice[0]["delta"].get("content") or "") if choice else (how, ""))
    return out


async def test_pushed_chunks_reach_the_client_within_the_push() -> None:
    exchange, client = streamed_chat()
    response = PushedResponse()
    driving = asyncio.create_task(drive(exchange, client, OneCall(response)))
    await asyncio.wait_for(response.taking.wait(), 1)
    assert response.send(text("Hello"))  # the first goes with the answer's head: the loop sends it
    await asyncio.wait_for(response.taking.wait(), 1)
    assert contents(client.got) == [("head", "Hello")]
    assert response.send(text(" there"))
    assert contents(client.got)[-1] == ("at once", " there")  # no turn of the loop in between
    assert response.send(text("!"))
    assert contents(client.got)[-1] == ("at once", "!")
    response.send(DONE)  # the answer is complete: core stops the call, which takes the loop
    response.send(None)
    await asyncio.wait_for(driving, 1)
    assert [c for _, c in contents(client.got)] == ["Hello", " there", "!", ""]
    assert client.got[-1][1].endswith(b"data: [DONE]\n\n")
    assert exchange.record["status"] == 200


async def test_a_write_the_client_cannot_take_now_goes_back_to_the_loop() -> None:
    exchange, client = streamed_chat()
    response = PushedResponse()
    driving = asyncio.create_task(drive(exchange, client, OneCall(response)))
    await asyncio.wait_for(response.taking.wait(), 1)
    response.send(text("Hello"))
    await asyncio.wait_for(response.taking.wait(), 1)
    client.room = False
    assert response.send(text(" there"))  # taken by the lane, which hands the write to the loop
    assert response.take is None
    await asyncio.wait_for(response.taking.wait(), 1)  # written, and pushing again
    assert contents(client.got) == [("head", "Hello"), ("awaited", " there")]
    client.room = True
    response.send(text("!"))
    assert contents(client.got)[-1] == ("at once", "!")
    response.send(DONE)
    response.send(None)
    await asyncio.wait_for(driving, 1)


async def test_what_came_before_the_lane_and_the_bodys_end_are_read_as_ever() -> None:
    """Chunks kept while no lane took them are read through ``chunks()``; so is a body that
    ends without its last event, which fails the stream as it does on every host."""
    exchange, client = streamed_chat()
    response = PushedResponse()
    response.kept.append(text("kept"))
    driving = asyncio.create_task(drive(exchange, client, OneCall(response)))
    await asyncio.wait_for(response.taking.wait(), 1)
    assert contents(client.got) == [("head", "kept")]
    response.send(None)  # cut before "done"
    await asyncio.wait_for(driving, 1)
    last: dict[str, Any] = json.loads(client.got[-1][1].decode().removeprefix("data: "))
    assert last["error"]["code"] is not None
