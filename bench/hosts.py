"""Every host, started as a user starts it (``make serve-<host>``), bot backend: cold start
(spawn to first answered chat, once make has built what it builds on first use), memory, and
the CPU each request costs the host's processes for answers of 32 and 300 events, streamed and
not; with the floor for one event (decoding the upstream event's JSON and encoding the chunk's,
once each) and core's own CPU per request in Pyodide; and the CPU of streamed answers whose
events arrive one per network chunk, as Poe streams them, against relays' for the same chunks on
each host's platform (Python, Node, Deno). Used by ``bench/run.py``."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.support import PYTHON, ROOT, SERVER_CORE, free_port, load, pinned, server, tree_rss_mb

HOSTS = {"serve": "serve", "netlify": "serve-netlify", "deno": "serve-deno", "cloudflare": "serve-cloudflare"}
ANSWERS = [("fake", 32), ("fake-e300", 300)]
CALLS = 300


def tree_cpu_seconds(pid: int) -> float:
    """User and system CPU of ``pid`` and its descendants so far."""
    ticks = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue
    return ticks / 100  # USER_HZ


def cpu_per_call_ms(pid: int, spec: dict[str, Any], runs: int = 3) -> float:
    """The least of ``runs`` measurements: what this machine's neighbours add is never less."""
    load({**spec, "n": 20})  # warm-up
    figures = []
    for _ in range(runs):
        before = tree_cpu_seconds(pid)
        load({**spec, "n": CALLS})
        figures.append(1000 * (tree_cpu_seconds(pid) - before) / CALLS)
    return min(figures)


# How events come, one per network chunk, as Poe streams a bot's tokens: 2 ms apart ("paced"),
# or back to back ("b2b", so that a host slower than its upstream finds several in one read); and
# how many calls measure each (a 300-event answer takes 0.6 s paced).
STREAMS = {"paced": 30, "b2b": 100}


def chunked_cpu_ms(pid: int, url: str, model: str, calls: int) -> float:
    """CPU per streamed call when the answer's events arrive one per network chunk: the least of
    two runs."""
    spec = {"kind": "stream", "url": url, "model": model, "c": 1}
    load({**spec, "n": 3})  # warm-up
    figures = []
    for _ in range(2):
        before = tree_cpu_seconds(pid)
        load({**spec, "n": calls})
        figures.append(1000 * (tree_cpu_seconds(pid) - before) / calls)
    return min(figures)


def chunked_costs(pid: int, url: str, stream: str) -> dict[str, float]:
    """``{stream}_cpu_ms_{events}_stream`` for answers of 32 and 300 events."""
    return {
        f"{stream}_cpu_ms_{events}_stream": chunked_cpu_ms(pid, url, model, STREAMS[stream])
        for model, events in ANSWERS
    }


# Each host's platform, and the relay that is its floor for events one per chunk: the same
# chunks read and written, each through the platform's own code, and nothing else.
PLATFORMS = {"serve": "python", "netlify": "node", "deno": "deno", "cloudflare": "node"}
WEB_RELAY = str(ROOT / "bench" / "anchors" / "web_relay.mjs")


def relay_costs(streams: dict[str, str]) -> dict[str, dict[str, float]]:
    """The floors for events one per chunk, one per platform, for each way of streaming
    (``streams``: its upstream's URL by name): the aiohttp relay (Python's asyncio, as ``make
    serve``), and the web-standard relay under Node (as Netlify's and the Cloudflare stand-in's)
    and under Deno."""
    figures: dict[str, dict[str, float]] = {}
    for platform in ("python", "node", "deno"):
        figures[platform] = {}
        for stream, upstream in streams.items():
            port = free_port()
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            commands = {
                "python": [PYTHON, str(ROOT / "bench" / "anchors" / "aiohttp_relay.py"), str(port), upstream],
                "node": ["node", str(ROOT / "tools" / "serve-web.mjs"), WEB_RELAY, "127.0.0.1", str(port)],
                "deno": [str(Path(PYTHON).parent / "deno"), "run", "--allow-net", "--allow-env", WEB_RELAY,
                         "127.0.0.1", str(port)],
            }  # fmt: skip
            print(f"-- relay: {platform}, {stream}", flush=True, file=sys.stderr)
            with server(commands[platform], {"UPSTREAM": upstream}, url) as (process, _):
                figures[platform].update(chunked_costs(process.pid, url, stream))
    return figures


def host_costs(upstream: str, streams: dict[str, str]) -> dict[str, dict[str, Any]]:
    """``streams``: the same fake upstream with its events one per chunk (``STREAMS``), by name."""
    figures: dict[str, dict[str, Any]] = {}
    for host, target in HOSTS.items():
        port = free_port()
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        env = {"POE_BASE_URL": upstream, "POE_BACKEND": "bot", "LOG_LEVEL": "WARNING"}
        print(f"-- host: {host}", flush=True, file=sys.stderr)
        command = ["make", "-s", target, f"PORT={port}"]
        with server(command, env, url):
            pass  # once first: what make builds on first use (a snapshot, a bundle) is not a cold start
        with server(command, env, url) as (process, cold):
            row: dict[str, Any] = {"cold_start_ms": 1000 * cold}
            for model, events in ANSWERS:
                row[f"cpu_ms_{events}"] = cpu_per_call_ms(
                    process.pid, {"kind": "latency", "url": url, "model": model}
                )
                row[f"cpu_ms_{events}_stream"] = cpu_per_call_ms(
                    process.pid, {"kind": "stream", "url": url, "model": model, "c": 1}
                )
            row["rss_mb"] = tree_rss_mb(process.pid)
        for stream, chunked in streams.items():
            with server(command, {**env, "POE_BASE_URL": chunked}, url) as (process, _):
                row.update(chunked_costs(process.pid, url, stream))
        figures[host] = row
    return figures


def floor_us_per_event() -> float:
    """Decoding one upstream event's JSON and encoding one chat chunk's, in this Python: the least
    any converting proxy does per event."""
    data = '{"text": "token "}'
    chunk = {
        "id": "chatcmpl-0123456789abcdef0123456789abcdef",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "fake",
        "system_fingerprint": None,
        "choices": [{"index": 0, "delta": {"content": "token "}, "logprobs": None, "finish_reason": None}],
    }
    encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
    rounds = 200_000
    started = time.process_time()
    for _ in range(rounds):
        json.loads(data)
        encoder.encode(chunk).encode()
    return 1e6 * (time.process_time() - started) / rounds


def pyodide_cpu() -> dict[str, Any]:
    """core's CPU per request in Pyodide, and Pyodide's start (``bench/pyodide_cpu.mjs``)."""
    done = subprocess.run(
        pinned(SERVER_CORE, ["node", str(ROOT / "bench" / "pyodide_cpu.mjs"), str(ROOT)]),
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return dict(json.loads(done.stdout))
