"""The load generator: aiohttp client in its own process (the runner pins it to a core).

Usage: python bench/load.py '<json spec>'; prints a JSON result. Specs:
  {"kind": "latency", "url": ..., "model": ..., "n": 200}             non-stream, one at a time
  {"kind": "throughput", "url": ..., "model": ..., "c": 32, "seconds": 5}
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

import aiohttp

HEADERS = {"Authorization": "Bearer sk-bench-000000000000000000000000", "Content-Type": "application/json"}
DEADLINE = 120.0  # no run lasts longer, whatever happens


def body(model: str, stream: bool) -> bytes:
    return json.dumps(
        {"model": model, "messages": [{"role": "user", "content": "Say something."}], "stream": stream}
    ).encode()


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def one(session: aiohttp.ClientSession, url: str, payload: bytes) -> tuple[float, float]:
    """(time to first body byte, total) in seconds; raises on a non-200 answer."""
    started = time.perf_counter()
    first = None
    async with session.post(url, data=payload, headers=HEADERS) as response:
        if response.status != 200:
            raise RuntimeError(f"{response.status}: {(await response.text())[:200]}")
        async for _ in response.content.iter_any():
            if first is None:
                first = time.perf_counter()
    done = time.perf_counter()
    return (first or done) - started, done - started


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    url, model = spec["url"], spec["model"]
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        stop_at = time.perf_counter() + DEADLINE
        if spec["kind"] == "latency":
            payload = body(model, False)
            for _ in range(20):
                await one(session, url, payload)
            totals = [
                (await one(session, url, payload))[1]
                for _ in range(spec["n"])
                if time.perf_counter() < stop_at
            ]
            return {
                "p50_ms": 1000 * quantile(totals, 0.5),
                "p99_ms": 1000 * quantile(totals, 0.99),
                "n": len(totals),
            }
        if spec["kind"] == "throughput":
            payload = body(model, False)
            count = errors = 0
            end = time.perf_counter() + 1.0  # warm-up second, not counted

            async def worker() -> None:
                nonlocal count, errors
                while time.perf_counter() < end:
                    try:
                        await one(session, url, payload)
                        count += 1
                    except Exception:
                        errors += 1

            await asyncio.gather(*(worker() for _ in range(spec["c"])))
            count = errors = 0
            started = time.perf_counter()
            end = started + spec["seconds"]
            await asyncio.gather(*(worker() for _ in range(spec["c"])))
            return {"rps": count / (time.perf_counter() - started), "errors": errors}
        payload = body(model, True)
        for _ in range(5):
            await one(session, url, payload)
        results: list[tuple[float, float]] = []
        per_worker = max(1, spec["n"] // spec["c"])

        async def streamer() -> None:
            for _ in range(per_worker):
                if time.perf_counter() < stop_at:
                    results.append(await one(session, url, payload))

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
    result = asyncio.run(run(json.loads(sys.argv[1])))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["generator_cpu_s"] = usage.ru_utime + usage.ru_stime
    print(json.dumps(result))
