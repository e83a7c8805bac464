"""A bounded soak: 2,000 mixed requests against a separate proxy process.

Normal, streamed and aborted requests, upstream errors and bad input are mixed. Afterwards the
process must be alive, every answer must be the expected one, its open sockets must be back
near the baseline (plus the idle keep-alive pool), and its RSS growth under ``RSS_GROWTH_LIMIT``.
Bounded in count and time, 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.peers.bots import POE_KEY
from tests.peers.serve import free_port, serving_process

REQUESTS = 2000
CONCURRENCY = 16
TIME_LIMIT = 60.0  # seconds; the run normally takes a fraction of this
RSS_GROWTH_LIMIT = 40 * 1024 * 1024  # bytes, measured after a warm-up of the same mix
HEADERS = {"Authorization": f"Bearer {POE_KEY}"}
ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def open_sockets(pid: int) -> int:
    return sum(1 for fd in Path(f"/proc/{pid}/fd").iterdir() if os.readlink(fd).startswith("socket:"))


@pytest.fixture
def proxy_process(poe_server: str, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    env = {**os.environ, "POE_BASE_URL": poe_server, "LOG_LEVEL": "WARNING"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "adapters.app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "proxy.log").open("wb"),  # a pipe no one reads would block its writes
    )
    with serving_process(process, f"http://127.0.0.1:{port}") as url:
        yield url, process


def chat(model: str, content: str, **extra: object) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


async def one(http: httpx.AsyncClient, i: int) -> str:
    kind = i % 6
    if kind == 0:
        r = await http.post("/v1/chat/completions", json=chat("echo", f"hello {i}"))
        ok = r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == f"hello {i}"
        return "chat" if ok else f"bad chat {r.status_code}"
    if kind == 1:
        async with http.stream(
            "POST", "/v1/chat/completions", json=chat("echo", f"stream {i}", stream=True)
        ) as r:
            text = await r.aread()
        return "stream" if text.endswith(b"data: [DONE]\n\n") else "bad stream"
    if kind == 2:  # the client leaves mid-stream, while the bot is still writing
        steps = json.dumps([["text", "part "], ["sleep", 0.2], ["text", "never read"]])
        async with http.stream("POST", "/v1/chat/completions", json=chat("script", steps, stream=True)) as r:
            async for _ in r.aiter_bytes():
                break
        return "abort"
    if kind == 3:
        r = await http.post("/v1/chat/completions", json=chat("script", json.dumps([["error", "x", False]])))
        return "upstream error" if r.status_code == 502 else f"bad upstream error {r.status_code}"
    if kind == 4:
        r = await http.post(
            "/v1/chat/completions", content=b"{broken", headers={"Content-Type": "application/json"}
        )
        return "bad input" if r.status_code == 400 else f"bad bad input {r.status_code}"
    r = await http.post("/v1/chat/completions", json=chat("no-such-bot", "x"))
    return "not found" if r.status_code == 404 else f"bad not found {r.status_code}"


async def run(url: str, count: int) -> Counter[str]:
    results: Counter[str] = Counter()
    queue = iter(range(count))
    started = time.monotonic()

    async def worker(http: httpx.AsyncClient) -> None:
        for i in queue:
            if time.monotonic() - started > TIME_LIMIT:
                results["out of time"] += 1
                return
            results[await one(http, i)] += 1

    async with httpx.AsyncClient(base_url=url, headers=HEADERS, timeout=20) as http:
        await asyncio.gather(*(worker(http) for _ in range(CONCURRENCY)))
    return results


def test_soak(proxy_process: tuple[str, subprocess.Popen[bytes]]) -> None:
    url, process = proxy_process
    asyncio.run(run(url, 300))  # warm-up: imports, pools, caches
    time.sleep(0.5)
    rss_before, sockets_before = rss(process.pid), open_sockets(process.pid)

    results = asyncio.run(run(url, REQUESTS))

    time.sleep(1.0)  # let aborted upstream calls finish closing
    assert process.poll() is None, "the proxy died"
    expected = {"chat", "stream", "abort", "upstream error", "bad input", "not found"}
    assert set(results) == expected, results
    assert sum(results.values()) == REQUESTS
    growth = rss(process.pid) - rss_before
    print(f"soak: {dict(results)}; RSS {rss_before / 1e6:.1f} MB -> {(rss_before + growth) / 1e6:.1f} MB; "
          f"sockets {sockets_before} -> {open_sockets(process.pid)}")  # fmt: skip
    assert growth < RSS_GROWTH_LIMIT, f"RSS grew by {growth / 1e6:.1f} MB"
    # Idle keep-alive connections to Poe stay open for reuse: at most one per concurrent caller.
    # A leak would grow with the 2,000 requests instead.
    sockets_after = open_sockets(process.pid)
    assert sockets_after <= sockets_before + CONCURRENCY, (sockets_before, sockets_after)
