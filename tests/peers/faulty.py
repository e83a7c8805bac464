"""A Poe that answers however a test says, over real HTTP on 127.0.0.1: fault injection that
reaches every host the same way (a host in another process cannot be handed a mock transport).

Set ``handler``: it gets each request (an ``httpx.Request`` with its body read) and returns an
``Answer``. An answer is a status, headers and body pieces, then what the connection does:
``end`` (the body is complete), ``reset`` (the connection is dropped without a proper end) or
``stall`` (nothing more is sent, until the caller gives up). An answer with no status is a
connection dropped before any response.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx


@dataclass
class Answer:
    status: int | None = 200
    headers: dict[str, str] = field(default_factory=dict)
    pieces: list[bytes] = field(default_factory=list)
    then: Literal["end", "reset", "stall"] = "end"

    @classmethod
    def json(cls, status: int, payload: Any, **headers: str) -> Answer:
        return cls(status, {"content-type": "application/json", **headers}, [json.dumps(payload).encode()])

    @classmethod
    def text(cls, status: int, text: str) -> Answer:
        return cls(status, {"content-type": "text/plain"}, [text.encode()])

    @classmethod
    def sse(cls, *events: str, then: Literal["end", "reset", "stall"] = "end") -> Answer:
        return cls(200, {"content-type": "text/event-stream"}, [e.encode() for e in events], then)


RESET = Answer(status=None)
STALL = Answer(status=None, then="stall")

Handler = Callable[[httpx.Request], Answer]


class FaultyPoe:
    """The server; ``requests`` lists what reached it."""

    def __init__(self) -> None:
        self.handler: Handler = lambda request: Answer.text(500, "no handler set")
        self.requests: list[httpx.Request] = []
        self.url = ""

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                method, target, _ = head[0].split(" ", 2)
                headers = [tuple(line.split(": ", 1)) for line in head[1:] if line]
                length = int(next((v for k, v in headers if k.lower() == "content-length"), "0"))
                body = await reader.readexactly(length)
                request = httpx.Request(method, f"{self.url}{target}", headers=headers, content=body)
                self.requests.append(request)
                if not await self._answer(self.handler(request), writer):
                    return

    async def _answer(self, answer: Answer, writer: asyncio.StreamWriter) -> bool:
        """Write ``answer``; whether the connection may serve another request."""
        if answer.status is not None:
            complete = answer.then == "end"
            headers = dict(answer.headers)
            if complete:
                headers["content-length"] = str(sum(map(len, answer.pieces)))
            else:
                headers["transfer-encoding"] = "chunked"
            lines = [f"HTTP/1.1 {answer.status} X", *(f"{k}: {v}" for k, v in headers.items())]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            for piece in answer.pieces:
                writer.write(piece if complete else b"%x\r\n%s\r\n" % (len(piece), piece))
                await writer.drain()
            if complete:
                return True
        if answer.then == "stall":
            await asyncio.sleep(3600)
        writer.transport.abort()  # a reset: no proper end of the body
        return False

    @contextlib.contextmanager
    def running(self) -> Iterator[FaultyPoe]:
        loop = asyncio.new_event_loop()
        started = threading.Event()
        server: asyncio.Server | None = None

        async def start() -> None:
            nonlocal server
            server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
            self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
            started.set()

        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        asyncio.run_coroutine_threadsafe(start(), loop)
        started.wait(10)

        async def stop() -> None:
            assert server is not None
            server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            yield self
        finally:
            asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
