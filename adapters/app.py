"""The ASGI app: ASGI's messages in and out around ``core.exchange``, through the asyncio driver.

``app`` (settings from the environment) is what uvicorn, Vercel and Lambda serve; ``create_app``
builds one from explicit settings, which is how the tests make theirs. It is a plain ASGI
callable: routing, auth, CORS, errors and every byte of every answer come from ``core``; this
module reads the request body, sends what core says, watches for a client that leaves, and logs
one line per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any
from urllib.parse import quote

import httpx

from core.exchange import Exchange, Proxy, Respond
from core.settings import Settings

from .driver import ClientGone, KeyValueStore, drive, new_token
from .seal import AESGCMSealer
from .stores import store_from_environ
from .upstream import HttpxUpstream

log = logging.getLogger("poe_openai_proxy")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class AsgiClient:
    """The driver's ``Client`` on ASGI's ``receive``/``send``.

    Once calls are under way, a client that leaves cancels the request's task (and so its calls
    at Poe). Watching for that takes a task of its own, made only once the request has run for
    ``grace`` seconds: a request over sooner pays for none, and a client that left meanwhile is
    noticed then (its disconnect message waits for us).
    """

    __slots__ = ("_receive", "_send", "_streaming", "_task", "_timer", "_watcher", "left")

    def __init__(self, receive: Receive, send: Send) -> None:
        self._receive = receive
        self._send = send
        self._task = asyncio.current_task()
        self._timer: asyncio.TimerHandle | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._streaming = False
        self.left = False

    async def read_body(self) -> tuple[bytes, bool]:
        message = await self._receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        return message.get("body", b""), message.get("more_body", False)

    async def respond(self, response: Respond) -> None:
        headers = [(k.encode(), v.encode()) for k, v in response.headers.items()]
        await self._send({"type": "http.response.start", "status": response.status, "headers": headers})
        await self._send({"type": "http.response.body", "body": response.body, "more_body": response.more})
        self._streaming = response.more

    async def write(self, data: bytes) -> None:
        await self._send({"type": "http.response.body", "body": data, "more_body": True})

    async def end(self) -> None:
        if self._streaming:
            self._streaming = False
            await self._send({"type": "http.response.body", "body": b"", "more_body": False})

    def calls_started(self, grace: float = 0.05) -> None:
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(grace, self._watch)

    def _watch(self) -> None:
        self._watcher = asyncio.get_running_loop().create_task(self._wait_for_disconnect())

    async def _wait_for_disconnect(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass  # the request body's messages, if the route did not read them
        self.left = True
        assert self._task is not None
        self._task.cancel()

    def stop_watching(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._watcher is not None:
            self._watcher.cancel()


class ProxyApp:
    """One ``core.exchange.Proxy`` and one upstream pool, serving ASGI."""

    def __init__(
        self,
        settings: Settings,
        transport: httpx.AsyncBaseTransport | None,
        store: tuple[KeyValueStore | None, str | None],
    ) -> None:
        self.store, missing = store
        self.sealer = AESGCMSealer()
        self.proxy = Proxy(settings, store_missing=missing)
        self.upstream = HttpxUpstream(settings, transport)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self.lifespan(receive, send)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        exchange = self.proxy.request(
            scope["method"],
            request_target(scope),
            request_headers(scope),
            new_token=new_token,
            now=time.time(),
        )
        client = AsgiClient(receive, send)
        try:
            await drive(exchange, client, self.upstream, self.store, self.sealer)
        except asyncio.CancelledError:
            if not client.left or asyncio.current_task().uncancel():  # type: ignore[union-attr]
                raise  # the server's cancellation, not ours
            exchange.client_left()
        except Exception as exc:  # a bug in this host: still an OpenAI-shaped answer if we can
            await answer_crash(exchange, exc, client, self.upstream)  # logged as exchange.bug
        finally:
            client.stop_watching()
            log_request(exchange, started)

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.upstream.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


def request_target(scope: Scope) -> str:
    """The target as it came (``raw_path``, percent-encoded, and the query); core resolves it."""
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if raw else quote(scope["path"])
    query = scope.get("query_string", b"")
    return f"{path}?{query.decode('latin-1')}" if query else path


def request_headers(scope: Scope) -> dict[str, str]:
    """Lowercase names (as ASGI gives them), latin-1 values, a repeated field's values joined
    with ", " as HTTP joins them."""
    headers: dict[str, str] = {}
    for name, value in scope["headers"]:
        key, text = name.decode("latin-1"), value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


async def answer_crash(
    exchange: Exchange, exc: Exception, client: AsgiClient, upstream: HttpxUpstream
) -> None:
    """Send what core answers to a failure of the host's own (a 500, or a stream's last event)."""
    exchange.crash(exc)
    with contextlib.suppress(Exception):  # the client is gone, or the answer had already begun
        await drive(exchange, client, upstream)


LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def log_request(exchange: Exchange, started: float) -> None:
    """One structured line per request, at the level core gives it: never a body or a key."""
    if exchange.bug is not None:
        log.error("the proxy failed", exc_info=exchange.bug)
    if exchange.level is not None:
        record = exchange.record
        record["duration_ms"] = round((time.perf_counter() - started) * 1000, 1)
        log.log(LEVELS[exchange.level], json.dumps(record, separators=(",", ":")))


def create_app(
    settings: Settings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    store: tuple[KeyValueStore | None, str | None] | None = None,
) -> ProxyApp:
    """An app for ``settings``; ``transport`` lets tests put a fault-injecting Poe underneath.
    ``store``: the store and what is missing without one (``store_from_environ``'s answer);
    by default, where this process runs decides."""
    return ProxyApp(settings, transport, store or store_from_environ(os.environ))


def configure_logging(level: str) -> None:
    """Request lines go to stderr unless the host already set up logging (uvicorn does not)."""
    if not log.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        log.addHandler(handler)
    log.setLevel(level)


YOUNG_GC_THRESHOLD = 10_000


def tune_gc() -> None:
    """Look for reference cycles among new objects every 10,000 allocations, not every 700.

    A request makes a few hundred short-lived objects and almost no cycles (refcounting frees
    them), so the default spends its scans on objects about to be freed anyway: measured,
    ~12% of the CPU under load (docs/benchmarks.md). Cycles are still collected, a little later.
    """
    young, middle, old = gc.get_threshold()
    gc.set_threshold(max(young, YOUNG_GC_THRESHOLD), middle, old)


def app_from_environ(environ: Mapping[str, str] | None = None) -> ProxyApp:
    """The app every entry point serves: settings from the environment, the process tuned."""
    settings = Settings.from_mapping(os.environ if environ is None else environ)
    configure_logging(settings.log_level)
    tune_gc()
    return create_app(settings, store=store_from_environ(os.environ if environ is None else environ))


app = app_from_environ()
