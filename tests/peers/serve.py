"""Serve an ASGI app with a real uvicorn on 127.0.0.1 (a free port) in a background thread."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import socketserver
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn


@contextmanager
def serve(app: Any, **options: Any) -> Iterator[str]:
    """Yield the base URL (``http://127.0.0.1:<port>``) while the server runs."""
    settings = {"host": "127.0.0.1", "port": 0, "log_level": "warning", "lifespan": "off", **options}
    config = uvicorn.Config(app, **settings)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def threaded(server: socketserver.BaseServer) -> Iterator[int]:
    """A socketserver serving from a thread: its port while it runs."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])  # type: ignore[index]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving_process(
    process: subprocess.Popen[bytes],
    url: str,
    *,
    timeout: float = 20,
    ready: Callable[[httpx.Response], bool] = lambda response: True,
) -> Iterator[str]:
    """Wait until the server ``process`` answers at ``url`` (any status, or one ``ready`` accepts),
    yield, then stop it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if ready(httpx.get(url, timeout=1)):
                break
            raise httpx.TransportError("not ready yet")
        except httpx.TransportError:
            if time.monotonic() > deadline or process.poll() is not None:
                stop(process)
                raise RuntimeError(f"{process.args!r} did not start serving {url}") from None
            time.sleep(0.05)
    try:
        yield url
    finally:
        stop(process)


# Every process a test started and every process those started (a CLI may start its server in
# a session of its own, out of reach of its process group), as (pid, start time): none may
# outlive the test session (``conftest.py`` checks).
STARTED: set[tuple[int, int]] = set()


def _table() -> dict[int, tuple[int, str, int]]:
    """Every process now: pid -> (parent pid, state, start time)."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            table[int(stat.parent.name)] = (int(fields[1]), fields[0], int(fields[19]))
    return table


def family(pid: int) -> set[tuple[int, int]]:
    """``pid`` and its descendants, as (pid, start time)."""
    table = _table()
    members, pending = set(), [pid]
    while pending:
        current = pending.pop()
        if current in table:
            members.add((current, table[current][2]))
            pending += [child for child, (parent, _, _) in table.items() if parent == current]
    return members


def running(members: set[tuple[int, int]]) -> set[tuple[int, int]]:
    """Those of ``members`` still running (not zombies, nor new processes that reuse a pid)."""
    table = _table()
    alive = set()
    for pid, born in members:
        entry = table.get(pid)
        if entry is not None and entry[1] != "Z" and entry[2] == born:
            alive.add((pid, born))
    return alive


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop ``process`` and everything it started: SIGTERM, then SIGKILL for what is left."""
    members = family(process.pid)
    STARTED.update(members)
    for pid, _ in members:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)
    for _ in range(100):
        if not running(members):
            break
        time.sleep(0.05)
    for pid, _ in running(members):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait(timeout=10)
