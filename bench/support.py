"""What the bench's runners share: where things are, pinning to a core, starting a server and
waiting until it answers a chat, driving the load generator, measuring memory."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PYTHON = sys.executable
LITELLM = BENCH / ".venv-litellm" / "bin" / "litellm"
SERVER_CORE, LOAD_CORE = "0", "1"
PAYLOAD = {"model": "fake", "messages": [{"role": "user", "content": "hi"}]}
AUTH = {"Authorization": "Bearer sk-bench-000000000000000000000000"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(core: str, command: list[str]) -> list[str]:
    return ["taskset", "-c", core, *command]


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> float:
    """Seconds from now until ``url`` answers a chat with 200."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.post(url, json=PAYLOAD, headers=AUTH, timeout=2).status_code == 200:
                return time.perf_counter() - started
        time.sleep(0.01)
    raise RuntimeError(f"{process.args!r} did not answer at {url}")


def tree_rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its descendants, leaving out ``make`` itself."""
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        with contextlib.suppress(FileNotFoundError):
            status = Path(f"/proc/{current}/status").read_text()
            name = status.split("\n", 1)[0].split()[-1]
            if name != "make":
                total += int(
                    next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))
                )
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
    return total / 1024


@contextlib.contextmanager
def server(
    command: list[str], env: dict[str, str], url: str
) -> Iterator[tuple[subprocess.Popen[bytes], float]]:
    started = time.perf_counter()
    process = subprocess.Popen(
        pinned(SERVER_CORE, command),
        env={**os.environ, **env},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_ready(url, process)
        yield process, time.perf_counter() - started
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 15)
        process.wait(timeout=20)


def load(spec: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(
        pinned(LOAD_CORE, [PYTHON, "-m", "bench.load", json.dumps(spec)]),
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
        cwd=ROOT,
    )
    return dict(json.loads(done.stdout))
