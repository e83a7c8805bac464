"""The floor for an upstream call: request bytes written to a bare asyncio connection, the
response taken apart by httptools. No pool logic, timeouts or error paths: for the bench's
ablation and transport comparisons only."""

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

    def on_body(self, body: bytes) -> None:
        self.on_chunk(body)

    def on_message_complete(self) -> None:
        assert self.done is not None
        self.done.set_result(self.parser.get_status_code())

    async def call(self, raw: bytes, on_chunk: Any) -> int:
        assert self.transport is not None
        self.on_chunk, self.done = on_chunk, asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self.done
