"""Cloudflare Workers: the proxy as a native Python Worker.

How the platform calls it: ``wrangler.toml`` names this module as ``main`` with the
``python_workers`` compatibility flag; workerd runs it in Pyodide and calls ``Default.fetch`` for
each request, with the Worker's variables and secrets in ``self.env`` (the same names as every
other host's environment).

What it does: the asyncio driver (``adapters/driver.py``) runs ``core.exchange`` exactly as under
uvicorn; only the two sides of the I/O differ. Calls to Poe go through the runtime's ``fetch``
(``FetchUpstream``), and the answer goes back as a JavaScript ``Response``.

How it streams: for real. At ``Respond`` with more to come, the Response is returned at once
around a ``TransformStream`` whose writable side receives each write; ``ctx.waitUntil`` keeps
the request's work alive while it streams. A client that leaves aborts ``request.signal`` (the
``enable_request_signal`` flag) and errors the stream: either ends the driver, and so closes
the calls to Poe, before or after the answer began.

Every JavaScript promise is awaited through ``.catch``: a promise may reject with something
that is not an Error (a stream cancelled with no reason), which Pyodide cannot raise.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import js  # type: ignore[import-not-found]
from pyodide.ffi import JsException, create_once_callable, create_proxy, to_js  # type: ignore[import-not-found]
from workers import WorkerEntrypoint  # type: ignore[import-not-found]

from core.exchange import Exchange, FailureReason, Proxy, Respond, StartCall
from core.settings import Settings

from .driver import CallFailed, ClientGone, KeyValueStore, drive, new_token


def _buffer(data: bytes) -> Any:
    """``data`` as a JavaScript Uint8Array (a copy: the Python bytes may go away)."""
    return to_js(data)


def _reason(error: BaseException, answered: bool) -> FailureReason:
    cause = getattr(getattr(error, "js_error", None), "cause", None)  # Node's fetch names it there
    text = f"{error} {getattr(cause, 'code', '')} {cause or ''}"
    if "TimeoutError" in text or isinstance(error, TimeoutError):
        return "timeout"
    if answered:
        return "reset"
    return "refused" if "refused" in text.lower() or "dns" in text.lower() else "reset"


class Deadline:
    """A call's timeout: each ``arm()`` gives it ``seconds`` more (the head, then each read), and
    when a deadline passes unmet the call is aborted, which is what the pending ``fetch`` or read
    then fails with. One timer per call, moved along rather than a task per read."""

    def __init__(self, abort: Any, seconds: float) -> None:
        self._abort = abort
        self._seconds = seconds
        self._at = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self.expired = False

    def arm(self) -> None:
        loop = asyncio.get_running_loop()
        self._at = loop.time() + self._seconds
        if self._timer is None:
            self._timer = loop.call_later(self._seconds, self._check)

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        loop = asyncio.get_running_loop()
        left = self._at - loop.time()
        if left > 0:  # moved since: wait for the rest (as a delay: Pyodide's loop refuses, with
            # an exception that would leave the call without a timeout, a time just past)
            self._timer = loop.call_later(left, self._check)
        else:
            self._timer, self.expired = None, True
            self._abort.abort()


BUFFER_BYTES = 64 * 1024


def _body_reader(body: Any) -> tuple[Any, Any]:
    """A reader of ``body`` and the buffer it reads into (None: a default reader, which makes a new
    buffer per read; an answer is hundreds of reads, hundreds of buffers for the collector)."""
    try:
        byob = to_js({"mode": "byob"}, dict_converter=js.Object.fromEntries)
        return body.getReader(byob), js.ArrayBuffer.new(BUFFER_BYTES)
    except JsException:  # not a byte stream
        return body.getReader(), None


class FetchResponse:
    """A ``fetch`` Response as the driver's ``UpstreamResponse``."""

    def __init__(self, response: Any, abort: Any, deadline: Deadline) -> None:
        self._response = response
        self._abort = abort
        self._deadline = deadline
        self.status = int(response.status)
        self.headers: Mapping[str, str] = js.Object.fromEntries(response.headers).to_py()

    async def chunks(self) -> AsyncIterator[bytes]:
        reader, buffer = _body_reader(self._response.body)
        deadline = self._deadline
        while True:
            deadline.arm()
            try:
                result = await (reader.read() if buffer is None else reader.read(js.Uint8Array.new(buffer)))
            except JsException as exc:
                deadline.disarm()
                raise CallFailed("timeout" if deadline.expired else _reason(exc, answered=True)) from None
            if result.done:
                deadline.disarm()
                return
            value = result.value
            if buffer is not None:
                buffer = value.buffer  # the same memory, handed back for the next read
            yield value.to_bytes()

    async def aclose(self) -> None:
        self._deadline.disarm()
        self._abort.abort()  # closing the connection cancels the call at Poe

    def finish_in_background(self, seconds: float) -> None:
        self._deadline.disarm()  # the runtime reads and pools what is left itself


class FetchUpstream:
    """The driver's ``Upstream`` on the runtime's ``fetch``, with the settings' timeouts."""

    def __init__(self, settings: Settings) -> None:
        self._read_timeout = settings.read_timeout

    async def send(self, call: StartCall) -> FetchResponse:
        abort = js.AbortController.new()
        # "manual": a redirect is core's to follow or not (it checks where one leads), as on the
        # asyncio hosts, whose client follows none.
        init: dict[str, Any] = {
            "method": call.method,
            "headers": call.headers,
            "signal": abort.signal,
            "redirect": "manual",
        }
        if call.body is not None:
            init["body"] = _buffer(call.body)
        deadline = Deadline(abort, self._read_timeout)  # the head (connecting included), then each read
        deadline.arm()
        try:
            response = await js.fetch(call.url, to_js(init, dict_converter=js.Object.fromEntries))
        except JsException as exc:
            deadline.disarm()
            raise CallFailed("timeout" if deadline.expired else _reason(exc, answered=False)) from None
        except asyncio.CancelledError:  # the client left before Poe's head: stop the call there
            deadline.disarm()
            abort.abort()
            raise
        return FetchResponse(response, abort, deadline)


def _init(status: int, headers: Any) -> Any:
    return to_js({"status": status, "headers": headers}, dict_converter=js.Object.fromEntries)


class WorkerClient:
    """The driver's ``Client`` on a Worker's request and Response."""

    def __init__(self, request: Any) -> None:
        self._request = request
        self.response: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._writer: Any = None
        self._body: Any = None  # the request body's reader
        self._watcher: asyncio.Task[None] | None = None
        self._on_abort: Any = None
        self.left = False
        # The stream's promises may reject with a reason that is not an Error (a cancel's), which
        # Pyodide cannot raise: each is awaited through ``.catch(self._failed)`` instead.
        self._failed = create_proxy(lambda reason: True)

    async def read_body(self) -> tuple[bytes, bool]:
        """A piece at a time, so that core can refuse a body as it grows."""
        if self._body is None:
            if self._request.body is None:
                return b"", False
            self._body = self._request.body.getReader()
        read = await self._body.read().catch(self._failed)
        if read is True:  # the upload broke off
            raise ClientGone
        if read.done:
            return b"", False
        return read.value.to_bytes(), True

    async def respond(self, response: Respond) -> None:
        if self._body is not None:  # what the answer did not need of the body is not read
            self._body.cancel().catch(self._failed)
            self._body = None
        headers = to_js(response.headers, dict_converter=js.Object.fromEntries)
        status = response.status
        if not response.more:
            body = None if status == 204 else _buffer(response.body)
            self.response.set_result(js.Response.new(body, _init(status, headers)))
            return
        stream = js.TransformStream.new()
        self._writer = stream.writable.getWriter()
        self._watcher = asyncio.ensure_future(self._watch(asyncio.current_task()))
        self.response.set_result(js.Response.new(stream.readable, _init(status, headers)))
        await self.write(response.body)

    async def _watch(self, driver: asyncio.Task[Any] | None) -> None:
        """A client that leaves cancels the stream's readable side, which errors the writer: stop
        the driver then, even while it waits for Poe (and so close the calls to Poe)."""
        if await self._writer.closed.catch(self._failed):
            self.left = True
            if driver is not None:
                driver.cancel()

    async def write(self, data: bytes) -> None:
        if data and await self._writer.write(_buffer(data)).catch(self._failed):
            self.left = True
            raise ConnectionResetError("the client left")

    async def end(self) -> None:
        if self._writer is not None and not self.left:
            await self._writer.close().catch(self._failed)

    def stop_watching(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
        if self._on_abort is not None:
            self._request.signal.removeEventListener("abort", self._on_abort)
            self._on_abort.destroy()
            self._on_abort = None
        self._failed.destroy()

    def calls_started(self) -> None:
        """A client that leaves before its answer aborts ``request.signal``: stop the driver."""
        signal = getattr(self._request, "signal", None)
        if signal is None or self._on_abort is not None:
            return
        driver = asyncio.current_task()

        def left(event: Any) -> None:
            self.left = True
            if driver is not None:
                driver.cancel()

        self._on_abort = create_proxy(left)
        signal.addEventListener("abort", self._on_abort)


def log(exchange: Exchange, started: float) -> None:
    """The request's one log line, at core's level (Workers Logs keeps what the Worker writes to
    the console); a bug's type and message before it, never a body."""
    if exchange.bug is not None:
        js.console.error(f"the proxy failed: {type(exchange.bug).__name__}: {str(exchange.bug)[:300]}")
    if exchange.level is None:  # below LOG_LEVEL
        return
    record = exchange.record
    record["duration_ms"] = round((time.perf_counter() - started) * 1000, 1)
    line = js.JSON.stringify(to_js(record, dict_converter=js.Object.fromEntries))
    {"error": js.console.error, "warning": js.console.warn}.get(exchange.level, js.console.log)(line)


class KvStore:
    """Workers KV (the ``RESPONSES`` binding) as the driver's store: values up to 25 MiB, each
    kept at least 60 s (KV's least ``expirationTtl``). KV is eventually consistent across
    locations (a write can take up to 60 s to be seen elsewhere); one location sees its own
    writes at once."""

    def __init__(self, namespace: Any) -> None:
        self._kv = namespace
        self._failed = create_proxy(lambda reason: True)  # lives as long as the isolate

    async def _settled(self, promise: Any) -> Any:
        value = await promise.catch(self._failed)
        if value is True:
            raise RuntimeError("a Workers KV operation failed")
        return value

    async def get(self, keys: Sequence[str]) -> list[bytes | None]:
        found = await asyncio.gather(*(self._settled(self._kv.get(key, "arrayBuffer")) for key in keys))
        # a missing key is JavaScript's null (Pyodide's jsnull): anything without bytes
        return [
            js.Uint8Array.new(value).to_bytes() if hasattr(value, "byteLength") else None for value in found
        ]

    async def put(self, keys: Sequence[str], values: Sequence[bytes], ttl: int) -> None:
        options = to_js({"expirationTtl": max(ttl, 60)}, dict_converter=js.Object.fromEntries)
        writes = (
            self._settled(self._kv.put(key, _buffer(v), options)) for key, v in zip(keys, values, strict=True)
        )
        await asyncio.gather(*writes)

    async def delete(self, keys: Sequence[str]) -> None:
        await asyncio.gather(*(self._settled(self._kv.delete(key)) for key in keys))


NO_KV = "Bind a Workers KV namespace as RESPONSES (wrangler.toml's [[kv_namespaces]])."

_proxies: dict[tuple[tuple[str, str], ...], tuple[Proxy, FetchUpstream, KeyValueStore | None]] = {}


class _Timer(asyncio.Handle):
    """A delayed call that lets go when cancelled: its JavaScript timer is cleared."""

    __slots__ = ("_fire", "_timer")
    _fire: Any  # the once-callable the timer holds; None once run or cancelled
    _timer: Any

    def cancel(self) -> None:
        if self._fire is not None:  # not yet run
            js.clearTimeout(self._timer)
            self._fire.destroy()
            self._fire = None
        super().cancel()


def _timers_that_let_go(loop: Any) -> None:
    """Give Pyodide's event loop timers that a cancel takes back.

    Its ``call_later`` sets a JavaScript timer and, cancelled, only marks the handle: the timer
    stays pending and holds the handle, and the handle what it would have run, until it fires.
    Each call's read deadline (``POE_READ_TIMEOUT``) and each body's (``BODY_TIMEOUT``) is such a
    timer, cancelled as the request ends, so every finished request was kept for minutes (measured
    with make bench's rounds: 234 to 350 MB over ten, and growing). Immediate calls (a delay of 0)
    keep Pyodide's own scheduling: they run at once, and nothing cancels them."""
    if id(loop) in _loops_seen:  # one loop per isolate: this runs once
        return
    _loops_seen.add(id(loop))
    call_later = loop.call_later

    def timer(delay: float, callback: Any, *args: Any, context: Any = None) -> asyncio.Handle:
        if delay <= 0:
            return call_later(delay, callback, *args, context=context)
        handle = _Timer(callback, args, loop, context=context)

        def fire() -> None:
            handle._fire = None  # the once-callable goes by itself
            if not handle.cancelled():
                handle._run()

        handle._fire = create_once_callable(fire)
        handle._timer = js.setTimeout(handle._fire, delay * 1000)
        return handle

    try:
        loop.call_later = timer
    except AttributeError:  # a loop that takes no new attributes: its own timers, then
        js.console.warn("the event loop's timers could not be replaced: cancelled ones stay pending")


_loops_seen: set[int] = set()


def _proxy(env: Any) -> tuple[Proxy, FetchUpstream, KeyValueStore | None]:
    """One proxy (and so one model list cache) per isolate and set of variables."""
    variables = tuple(sorted((str(k), v) for k, v in js.Object.entries(env) if isinstance(v, str)))
    if variables not in _proxies:
        settings = Settings.from_mapping(dict(variables))
        namespace = getattr(env, "RESPONSES", None)
        store = None if namespace is None else KvStore(namespace)
        proxy = Proxy(settings, store_missing=NO_KV if store is None else None)
        _proxies[variables] = (proxy, FetchUpstream(settings), store)
    return _proxies[variables]


class Default(WorkerEntrypoint):  # type: ignore[misc]
    async def fetch(self, request: Any) -> Any:
        started = time.perf_counter()
        _timers_that_let_go(asyncio.get_running_loop())
        request = getattr(request, "js_object", request)
        proxy, upstream, store = _proxy(self.env)
        headers = js.Object.fromEntries(request.headers).to_py()  # names come lowercase
        url = js.URL.new(request.url)
        target = url.pathname + url.search  # percent-encoded: core resolves it
        exchange = proxy.request(request.method, target, headers, new_token=new_token, now=time.time())
        client = WorkerClient(request)
        task = asyncio.ensure_future(run(exchange, client, upstream, store, started))
        response = await client.response
        keep = create_proxy(task)
        self.ctx.waitUntil(keep)
        # The runtime holds the task until it is done; then its proxy goes (with the request).
        task.add_done_callback(lambda _: asyncio.get_running_loop().call_soon(keep.destroy))
        return response


async def run(
    exchange: Exchange,
    client: WorkerClient,
    upstream: FetchUpstream,
    store: KeyValueStore | None,
    started: float,
) -> None:
    """Drive one request; whatever happens, it ends here and is logged, and the Response is
    settled exactly once."""
    try:
        await drive(exchange, client, upstream, store)
    except asyncio.CancelledError:
        if not client.left:
            raise
        exchange.client_left()
    except Exception as exc:
        if client.left or client.response.done():  # a write failed: the client left
            exchange.client_left()
        else:  # a failure of this host's own: core still answers (a 500)
            exchange.crash(exc)
            with contextlib.suppress(Exception):  # the answer is settled below, whatever happens
                await drive(exchange, client, upstream, store)
    finally:
        client.stop_watching()
        if not client.response.done():  # never left without an answer
            client.response.set_result(js.Response.new(None, _init(500, to_js({}))))
        log(exchange, started)
