"""Serve an ASGI app with a real uvicorn on 127.0.0.1 (a free port) in a background thread."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate ``process``, and its children too when it leads its own process group
    (``start_new_session=True``: CLIs such as ``vercel dev`` run the app in a child)."""
    leads_group = os.getpgid(process.pid) == process.pid if process.poll() is None else False
    if leads_group:
        os.killpg(process.pid, signal.SIGTERM)
    else:
        process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        (os.killpg if leads_group else os.kill)(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
