"""Upstream clients side by side: CPU per call, 32 calls at a time, against the fake upstream.

What chose adapters/transport.py: the same POST to the fake's bot protocol, its body read to the
end, through (1) httpx's default transport (httpcore), (2) an aiohttp ClientSession, (3) ours
under httpx's Request and Response, and (4) bare bytes on an asyncio + httptools connection, the
floor. Usage: python -m bench.transports <upstream url>; prints a JSON object (us per call).
The runner pins it to the proxies' core.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import aiohttp
import httpx
import uvloop

from adapters.transport import HTTP1Transport
from bench.rawhttp import Connection

BODY = json.dumps({"version": "1.2", "type": "query", "query": [{"role": "user", "content": "hi"}]}).encode()
TIMEOUT = {"connect": 10.0, "read": 120.0, "write": 120.0, "pool": 10.0}
CONCURRENCY, CALLS = 32, 200


async def cpu_per_call(call: Callable[[], Awaitable[None]]) -> float:
    async def worker(count: int) -> None:
        for _ in range(count):
            await call()

    await asyncio.gather(*(worker(20) for _ in range(CONCURRENCY)))  # connections made, caches warm
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        await asyncio.gather(*(worker(CALLS) for _ in range(CONCURRENCY)))
        best = min(best, (time.process_time() - started) / (CONCURRENCY * CALLS))
    return best * 1e6


async def main(upstream: str) -> dict[str, float]:
    url = httpx.URL(f"{upstream}/bot/fake")
    fields = [
        (b"Host", url.netloc),
        (b"Content-Type", b"application/json"),
        (b"Content-Length", b"%d" % len(BODY)),
    ]

    def request() -> httpx.Request:
        return httpx.Request(
            "POST", url, headers=fields, stream=httpx.ByteStream(BODY), extensions={"timeout": TIMEOUT}
        )

    async def through(transport: httpx.AsyncBaseTransport) -> None:
        response = await transport.handle_async_request(request())
        async for _ in response.aiter_raw():
            pass
        await response.aclose()

    httpcore_transport = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=None))
    ours = HTTP1Transport()
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), cookie_jar=aiohttp.DummyCookieJar()
    )

    async def with_aiohttp() -> None:
        async with session.post(
            str(url), data=BODY, headers={"Content-Type": "application/json"}
        ) as response:
            while await response.content.readany():
                pass

    idle: list[Connection] = []
    parts = urlsplit(str(url))
    raw = (
        b"POST %b HTTP/1.1\r\nHost: %b\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%b"
        % (
            parts.path.encode(),
            parts.netloc.encode(),
            len(BODY),
            BODY,
        )
    )

    async def bare() -> None:
        if idle:
            connection = idle.pop()
        else:
            loop = asyncio.get_running_loop()
            _, connection = await loop.create_connection(Connection, parts.hostname or "", parts.port or 80)
        await connection.call(raw, lambda chunk: None)
        idle.append(connection)

    figures = {
        "httpx default transport (httpcore)": await cpu_per_call(lambda: through(httpcore_transport)),
        "aiohttp ClientSession": await cpu_per_call(with_aiohttp),
        "ours (adapters/transport.py) under httpx's Request and Response": await cpu_per_call(
            lambda: through(ours)
        ),
        "bare bytes on an asyncio + httptools connection": await cpu_per_call(bare),
    }
    await httpcore_transport.aclose()
    await ours.aclose()
    await session.close()
    return figures


if __name__ == "__main__":
    print(json.dumps(uvloop.run(main(sys.argv[1]))))
