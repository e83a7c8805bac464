"""The hosts the behaviour suite runs against, each started the way a user starts it.

* ``asgi``: the ASGI app in this process, reached through ``httpx.ASGITransport``;
* ``serve``: ``make serve`` (uvicorn) in its own process;
* ``netlify``: ``make serve-netlify`` (the Netlify function, core in Pyodide, under Node);
* ``deno``: ``make serve-deno`` (the same web-standard driver under Deno);
* ``cloudflare``: ``make serve-cloudflare`` (the Python Worker: the asyncio driver with the
  runtime's ``fetch``, in a stand-in of Cloudflare's Python Workers runtime).

A process host is started once per set of settings and kept for the test session: the
settings travel as environment variables, exactly as a deployment gets them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
import tracemalloc
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import anthropic
import httpx
import httpx2
import openai

from adapters.app import ProxyApp, create_app
from adapters.stores import store_from_environ
from core.settings import Settings
from tests.peers.bots import POE_KEY
from tests.peers.runtimes import ROOT
from tests.peers.serve import free_port, serve, serving_process

HOSTS = ("asgi", "serve", "netlify", "deno", "cloudflare")
MAKE_TARGETS = {
    "serve": "serve",
    "netlify": "serve-netlify",
    "deno": "serve-deno",
    "cloudflare": "serve-cloudflare",
}
# Variables a deployment is configured with: never inherited from the developer's shell.
SETTING_PREFIXES = (
    "POE_", "PROXY_", "MAX_", "MODEL", "DEFAULT_", "EMBEDDING_", "ALLOW_", "LOG_LEVEL",
    "STATE_DIR", "RESPONSES_", "FILE_TIMEOUT", "BODY_TIMEOUT",
)  # fmt: skip


# Deno.serve may notice a client that left only when it next writes to it (denoland/deno#21421;
# here it did for curl, not for httpx): a call made before the answer's first byte may then run
# until there is something to write (README, Deno).
NOTICES_A_CLIENT_LEAVING_BEFORE_THE_ANSWER = {
    "asgi": True,
    "serve": True,
    "netlify": True,
    "deno": False,
    "cloudflare": True,  # request.signal (the enable_request_signal flag)
}


def missing_tool(host: str) -> str | None:
    """Why ``host`` cannot run here (a missing optional tool), or None."""
    if host in ("netlify", "cloudflare") and shutil.which("node") is None:
        return "Node.js is not installed"
    if host == "deno" and not (ROOT / "deno" / ".installed").exists():
        return "make test installs Deno (deno/.installed)"
    return None


class AppTransport(httpx.ASGITransport):
    """``app`` in-process; closing the client closes the app's upstream pool, as its lifespan would."""

    async def aclose(self) -> None:
        assert isinstance(self.app, ProxyApp)
        await self.app.upstream.aclose()
        await super().aclose()


class Target:
    """One proxy to test: on a host, with settings. Make clients with ``sdk()`` and ``http()``;
    read what it logged with ``log_mark()`` and ``log_since(mark)``."""

    def __init__(
        self, *, url: str | None = None, app: ProxyApp | None = None, log: Path | None = None
    ) -> None:
        assert (url is None) != (app is None)
        self.app = app
        self.url = url or "http://proxy"
        self._log = log
        self._records: list[str] = []
        if app is not None:
            handler = logging.Handler()
            handler.emit = lambda record: self._records.append(record.getMessage())  # type: ignore[method-assign]
            logging.getLogger("poe_openai_proxy").addHandler(handler)
            self._handler = handler

    def log_text(self) -> str:
        """Everything the proxy has logged (for a process host, its stdout and stderr)."""
        if self._log is not None:
            return self._log.read_text(errors="replace")
        return "\n".join(self._records)

    def log_mark(self) -> int:
        return len(self.log_text())

    def log_since(self, mark: int) -> list[dict[str, Any]]:
        """The request lines logged since ``mark``, parsed."""
        lines = self.log_text()[mark:].splitlines()
        return [json.loads(line[line.index("{") :]) for line in lines if '{"request_id"' in line]

    @contextlib.contextmanager
    def served(self) -> Iterator[str]:
        """The proxy at a real URL, for clients that need one (the in-process app under uvicorn)."""
        if self.app is None:
            yield self.url
        else:
            with serve(self.app, lifespan="on") as url:
                yield url

    def close(self) -> None:
        if self.app is not None:
            logging.getLogger("poe_openai_proxy").removeHandler(self._handler)

    def _transport(self) -> httpx.AsyncBaseTransport | None:
        return AppTransport(app=self.app) if self.app is not None else None

    def http(self, **options: Any) -> httpx.AsyncClient:
        """A raw HTTP client, for what the SDK would not send."""
        return httpx.AsyncClient(transport=self._transport(), base_url=self.url, timeout=30, **options)

    def anthropic(self, *, api_key: str = POE_KEY, **options: Any) -> anthropic.AsyncAnthropic:
        """The official ``anthropic`` SDK, talking to this proxy (its base URL has no ``/v1``); it
        speaks httpx's fork ``httpx2``, whose ASGI transport reaches the app in this process."""
        transport = httpx2.ASGITransport(app=self.app) if self.app is not None else None
        http = httpx2.AsyncClient(transport=transport, base_url=self.url, timeout=60)
        return anthropic.AsyncAnthropic(
            api_key=api_key, base_url=self.url, http_client=http, max_retries=0, **options
        )

    def sdk(self, *, api_key: str = POE_KEY, **options: Any) -> openai.AsyncOpenAI:
        """The official async SDK, talking to this proxy."""
        http = httpx.AsyncClient(transport=self._transport(), base_url=self.url, timeout=60)
        return openai.AsyncOpenAI(
            api_key=api_key, base_url=f"{self.url}/v1", http_client=http, max_retries=0, **options
        )


class HostProcesses:
    """``make serve``/``make serve-<host>`` processes, one per (host, settings), for the session."""

    def __init__(self) -> None:
        self._running: dict[tuple[str, frozenset[tuple[str, str]]], tuple[str, Path]] = {}
        self._stack = contextlib.ExitStack()
        kept = os.environ.get("HOST_LOGS")  # a folder to keep each host's output in, to read afterwards
        self._logs = Path(kept) if kept else Path(self._stack.enter_context(tempfile.TemporaryDirectory()))
        self._logs.mkdir(parents=True, exist_ok=True)
        # Where every host of the session keeps its responses (each in its own store within).
        self.state_dir = self._stack.enter_context(tempfile.TemporaryDirectory())

    def start(self, host: str, environment: Mapping[str, str]) -> tuple[str, Path]:
        """The URL of ``host`` running with ``environment``, and the file its output goes to."""
        key = (host, frozenset(environment.items()))
        if key not in self._running:
            port = free_port()
            log = self._logs / f"{host}-{port}.log"
            inherited = {k: v for k, v in os.environ.items() if not k.startswith(SETTING_PREFIXES)}
            process = subprocess.Popen(
                ["make", "-s", MAKE_TARGETS[host], "HOST=127.0.0.1", f"PORT={port}"],
                cwd=ROOT,
                env={**inherited, "STATE_DIR": self.state_dir, **environment},
                stdout=self._stack.enter_context(log.open("wb")),
                stderr=subprocess.STDOUT,
                start_new_session=True,  # make runs the server as a child: stop the whole group
            )
            url = self._stack.enter_context(serving_process(process, f"http://127.0.0.1:{port}", timeout=120))
            self._running[key] = (url, log)
        return self._running[key]

    def escaped(self) -> list[str]:
        """Lines where a host logged that something escaped a request (its last resort caught it,
        or a runtime reported it): each is a bug, even though the host went on serving."""
        markers = ("unhandledRejection", "uncaughtException", "unhandled rejection", "Uncaught")
        return [
            f"{log.name}: {line[:300]}"
            for _, log in self._running.values()
            for line in log.read_text(errors="replace").splitlines()
            if any(marker in line for marker in markers)
        ]

    def close(self) -> None:
        self._stack.close()
        self._running.clear()


def target(host: str, processes: HostProcesses, environment: Mapping[str, str]) -> Target:
    if host == "asgi":
        store = store_from_environ({"STATE_DIR": processes.state_dir, **environment})
        return Target(app=create_app(Settings.from_mapping(environment), store=store))
    url, log = processes.start(host, environment)
    return Target(url=url, log=log)


def listening_pid(url: str) -> int:
    """The process listening at ``url``'s port on this machine (a host's server, under make)."""
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    inodes = {
        fields[9]
        for table in ("/proc/net/tcp", "/proc/net/tcp6")
        for fields in (line.split() for line in Path(table).read_text().splitlines()[1:])
        if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A"  # LISTEN
    }
    for process in Path("/proc").iterdir():
        if not process.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for descriptor in (process / "fd").iterdir():
                if os.readlink(descriptor).removeprefix("socket:[").removesuffix("]") in inodes:
                    return int(process.name)
    raise LookupError(f"nothing listens at {url}")


@contextlib.contextmanager
def peak_memory_growth(proxy: Target) -> Iterator[list[int]]:
    """How far the host's memory rose above where it stood, at its highest, over the block: the
    process's peak RSS (VmHWM, reset first) for a process host; the Python heap's peak
    (tracemalloc) for the app in this process. The figure is in the yielded list once it ends."""
    grown: list[int] = []
    if proxy.app is not None:
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            yield grown
            grown.append(tracemalloc.get_traced_memory()[1] - base)
        finally:
            tracemalloc.stop()
        return
    pid = listening_pid(proxy.url)
    status = Path(f"/proc/{pid}/status")

    def field(name: str) -> int:
        line = next(line for line in status.read_text().splitlines() if line.startswith(name))
        return int(line.split()[1]) * 1024

    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM from here on
    base = field("VmRSS:")
    yield grown
    grown.append(field("VmHWM:") - base)
