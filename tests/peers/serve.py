"""Serve an ASGI app with a real uvicorn on 127.0.0.1 (a free port) in a background thread."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
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
    with contextlib.suppress(ProcessLookupError):
        if os.getpgid(process.pid) == process.pid:
            GROUPS.add(process.pid)
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


# The process groups tests started: none may outlive the test session (``conftest.py`` checks).
GROUPS: set[int] = set()


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop ``process``, and every process of its group when it leads one
    (``start_new_session=True``: ``make`` and CLIs such as ``vercel dev`` run the server in a
    child, which may outlive its parent)."""
    try:
        leads_group = os.getpgid(process.pid) == process.pid  # a zombie leader still answers
    except ProcessLookupError:
        leads_group = process.pid in GROUPS
    if not leads_group:
        process.terminate()
        process.wait(timeout=10)
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)
    group_alive = True
    for _ in range(100):  # what did not end on SIGTERM gets SIGKILL
        if not (group_alive := alive(process.pid)):
            break
        time.sleep(0.05)
    if group_alive:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def alive(group: int) -> bool:
    """Whether any process of ``group`` is still running (zombies are not)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == group and fields[0] != "Z":
                return True
    return False
