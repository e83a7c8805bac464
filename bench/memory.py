"""Memory over repeated rounds, per host: does it stay flat when clients stream and leave?

Each host is started as a user starts it (``make serve-<host>``, bot backend) against the fake
upstream, its events spaced (``FAKE_CHUNK_DELAY``) so that streams overlap and a client can leave
in the middle of one. A round is ``REQUESTS`` streamed chats of 300 events at ``CONCURRENCY``,
every other client leaving after its first chunk; the resident memory of the host's processes
is read after each round, once the last request has ended. Prints JSON; ``bench/run.py`` puts it
in docs/benchmarks.md. Usage: python -m bench.memory [host ...]
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from typing import Any

import httpx

from bench.hosts import HOSTS
from bench.support import AUTH, BENCH, LOAD_CORE, PYTHON, free_port, pinned, server, tree_rss_mb

ROUNDS = int(os.environ.get("ROUNDS", 8))
REQUESTS = 600
CONCURRENCY = 100
BODY = {"model": "fake-e300", "messages": [{"role": "user", "content": "hi"}], "stream": True}


async def one_round(url: str) -> dict[str, int]:
    """``REQUESTS`` streams; what each ended with (``full``, ``left``, or an error's name)."""
    outcomes: dict[str, int] = {}
    limit = asyncio.Semaphore(CONCURRENCY)
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)

    async def stream(index: int, client: httpx.AsyncClient) -> None:
        async with limit:
            try:
                async with client.stream("POST", url, json=BODY, headers=AUTH) as response:
                    async for _ in response.aiter_raw():
                        if index % 2:
                            outcome = "left"
                            break
                    else:
                        outcome = "full" if response.status_code == 200 else str(response.status_code)
            except httpx.HTTPError as exc:
                outcome = type(exc).__name__
            outcomes[outcome] = outcomes.get(outcome, 0) + 1

    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        await asyncio.gather(*(stream(i, client) for i in range(REQUESTS)))
    return outcomes


def host_rounds(upstream: str, host: str) -> dict[str, Any]:
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    env = {"POE_BASE_URL": upstream, "POE_BACKEND": "bot", "LOG_LEVEL": "WARNING"}
    with server(["make", "-s", HOSTS[host], f"PORT={port}"], env, url) as (process, _):
        rss = [tree_rss_mb(process.pid)]
        outcomes = []
        for _ in range(ROUNDS):
            outcomes.append(asyncio.run(one_round(url)))
            time.sleep(1)  # what a left client leaves behind has had time to go
            rss.append(tree_rss_mb(process.pid))
            print(f"-- {host}: {rss[-1]:.0f} MB after {outcomes[-1]}", file=sys.stderr, flush=True)
    return {"rss_mb": [round(mb, 1) for mb in rss], "outcomes": outcomes}


CHUNK_DELAY = "0.005"  # 300 events in about 1.5 s: a hundred streams overlap


def main() -> None:
    hosts = sys.argv[1:] or list(HOSTS)
    port = free_port()
    fake = subprocess.Popen(
        pinned(LOAD_CORE, [PYTHON, str(BENCH / "fake_upstream.py"), str(port)]),
        env={**os.environ, "FAKE_CHUNK_DELAY": CHUNK_DELAY},
        stderr=subprocess.DEVNULL,  # a call the proxy closes is logged there: expected, as clients leave
    )
    try:
        time.sleep(1.0)
        figures = {host: host_rounds(f"http://127.0.0.1:{port}", host) for host in hosts}
    finally:
        fake.terminate()
        fake.wait(timeout=10)
    print(json.dumps({"rounds": ROUNDS, "requests": REQUESTS, "concurrency": CONCURRENCY, "hosts": figures}))


if __name__ == "__main__":
    main()
