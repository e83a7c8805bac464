"""The least an HTTP/1.1 call can be: request bytes written to a bare asyncio connection, the
response taken apart by httptools. No pool logic, timeouts or error paths: for the bench only
(the load generator, and the floor in the ablation and transport comparisons)."""

from __future__ import annotations

import asyncio
from typing import Any

import httptools


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: write a request's bytes, feed its body to a callback."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future[int] | None = None
        self.on_chunk: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_exception(ConnectionError("the server closed the connection"))

    def on_body(self, body: bytes) -> None:
        self.on_chunk(body)

    def on_message_complete(self) -> None:
        assert self.done is not None
        self.done.set_result(self.parser.get_status_code())

    async def call(self, raw: bytes, on_chunk: Any) -> int:
        """Send ``raw``; ``on_chunk(bytes)`` for each piece of the body; the status at its end."""
        assert self.transport is not None
        self.on_chunk, self.done = on_chunk, asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self.done
