"""The load generator: one keep-alive connection per worker, asyncio protocols + httptools on
uvloop, in its own process (the runner pins it). It is lean on purpose: every microsecond it
spends is one the core it shares with the fake upstream cannot spend, and the runner checks its
headroom by driving the fake upstream directly.

Usage: python -m bench.load '<json spec>'; prints a JSON result. Specs:
  {"kind": "latency", "url": ..., "model": ..., "n": 200}             non-stream, one at a time
  {"kind": "throughput", "url": ..., "model": ..., "c": 32, "seconds": 5}  ("stream": true: streamed)
  {"kind": "stream", "url": ..., "model": ..., "c": 1, "n": 50}        time to first byte and total
Every loop is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from typing import Any
from urllib.parse import urlsplit

import uvloop

from bench.rawhttp import Connection

AUTH = b"Bearer sk-bench-000000000000000000000000"
DEADLINE = 120.0  # no run lasts longer, whatever happens


def request_bytes(url: str, model: str, stream: bool) -> bytes:
    """The request a chat client sends, or an Anthropic client's to ``/v1/messages``."""
    parts = urlsplit(url)
    request: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "Say something."}]}
    if parts.path.endswith("/messages"):
        request["max_tokens"] = 4096
    body = json.dumps({**request, "stream": stream}).encode()
    return (
        b"POST %b HTTP/1.1\r\nHost: %b\r\nAuthorization: %b\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%b"
    ) % (parts.path.encode(), parts.netloc.encode(), AUTH, len(body), body)


async def timed_call(connection: Connection, raw: bytes) -> tuple[float, float]:
    """(time to the first body byte, total) in seconds; raises on a non-200 answer."""
    first = 0.0

    def on_chunk(_: bytes) -> None:
        nonlocal first
        first = first or time.perf_counter()

    started = time.perf_counter()
    status = await connection.call(raw, on_chunk)
    finished = time.perf_counter()
    if status != 200:
        raise RuntimeError(f"status {status}")
    return (first or finished) - started, finished - started


async def connect(url: str) -> Connection:
    parts = urlsplit(url)
    loop = asyncio.get_running_loop()
    _, connection = await loop.create_connection(Connection, parts.hostname or "127.0.0.1", parts.port or 80)
    return connection


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    url, model, kind = spec["url"], spec["model"], spec["kind"]
    stop_at = time.perf_counter() + DEADLINE
    if kind == "latency":
        raw = request_bytes(url, model, stream=False)
        connection = await connect(url)
        for _ in range(20):
            await timed_call(connection, raw)
        totals = [
            (await timed_call(connection, raw))[1] for _ in range(spec["n"]) if time.perf_counter() < stop_at
        ]
        return {
            "p50_ms": 1000 * quantile(totals, 0.5),
            "p99_ms": 1000 * quantile(totals, 0.99),
            "n": len(totals),
        }
    if kind == "throughput":
        raw = request_bytes(url, model, stream=spec.get("stream", False))
        count = errors = 0
        end = time.perf_counter() + 1.0  # warm-up second, not counted

        async def worker() -> None:
            nonlocal count, errors
            connection = await connect(url)
            while time.perf_counter() < end:
                try:
                    await timed_call(connection, raw)
                    count += 1
                except (RuntimeError, ConnectionError):
                    errors += 1
                    connection = await connect(url)

        await asyncio.gather(*(worker() for _ in range(spec["c"])))
        count = errors = 0
        started = time.perf_counter()
        end = started + spec["seconds"]
        await asyncio.gather(*(worker() for _ in range(spec["c"])))
        return {"rps": count / (time.perf_counter() - started), "errors": errors}
    raw = request_bytes(url, model, stream=True)
    results: list[tuple[float, float]] = []
    per_worker = max(1, spec["n"] // spec["c"])

    async def streamer() -> None:
        connection = await connect(url)
        for _ in range(2):  # warm-up calls, not counted
            await timed_call(connection, raw)
        for _ in range(per_worker):
            if time.perf_counter() < stop_at:
                results.append(await timed_call(connection, raw))

    await asyncio.gather(*(streamer() for _ in range(spec["c"])))
    firsts = [r[0] for r in results]
    totals = [r[1] for r in results]
    return {
        "ttfb_p50_ms": 1000 * quantile(firsts, 0.5),
        "ttfb_p99_ms": 1000 * quantile(firsts, 0.99),
        "total_p50_ms": 1000 * quantile(totals, 0.5),
        "n": len(results),
    }


if __name__ == "__main__":
    result = uvloop.run(run(json.loads(sys.argv[1])))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["generator_cpu_s"] = usage.ru_utime + usage.ru_stime
    print(json.dumps(result))
