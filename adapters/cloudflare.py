"""Cloudflare Workers: the proxy as a native Python Worker.

How the platform calls it: ``wrangler.toml`` names this module as ``main`` with the
``python_workers`` compatibility flag; workerd runs it in Pyodide and calls ``Default.fetch`` for
each request, with the Worker's variables and secrets in ``self.env`` (the same names as every
other host's environment).

What it does: the asyncio driver (``adapters/driver.py``) runs ``core.exchange`` exactly as under
uvicorn; only the two sides of the I/O differ. Calls to Poe go through the runtime's ``fetch``
(``FetchUpstream``), and the answer goes back as a JavaScript ``Response``.

How it streams: for real, both ways. Poe's body is piped into a sink whose ``write`` is Python's
(``BodySink``), and the chunk goes to core, and core's bytes to the answer, within that one
call (the driver's lane, ``driver.Lane``); the answer is a ``ReadableStream`` the client pulls,
returned at ``Respond`` with more to come (``WorkerClient``); ``ctx.waitUntil`` keeps the
request's work alive while it streams. Each side waits for the other: a client that stops
reading stops the proxy reading from Poe. A client that
leaves aborts ``request.signal`` (the ``enable_request_signal`` flag) or cancels the stream: either
ends the driver, and so closes the calls to Poe, before or after the answer began.

The promises Python awaits (the request body's reads, Workers KV) are awaited through
``.catch``: a promise may reject with something that is not an Error (a stream cancelled with no
reason), which Pyodide cannot raise.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import js  # type: ignore[import-not-found]
from pyodide.ffi import JsException, create_once_callable, create_proxy, to_js  # type: ignore[import-not-found]
from workers import WorkerEntrypoint  # type: ignore[import-not-found]

from core.exchange import (
    SEAL_INFO,
    SEAL_SALT,
    SEAL_VERSION,
    Exchange,
    FailureReason,
    Proxy,
    Respond,
    StartCall,
)
from core.settings import Settings

from .driver import CallFailed, ClientGone, KeyValueStore, drive, new_token


def _future() -> asyncio.Future[Any]:
    """A future to wait on: a plain one. Pyodide's ``loop.create_future()`` gives each one a done
    callback of its own (its count of pending work), and every callback is a turn of the loop, a
    JavaScript callback: waits for chunks, one per chunk, would pay it each time."""
    return asyncio.Future(loop=asyncio.get_running_loop())


def _buffer(data: bytes) -> Any:
    """``data`` as a JavaScript Uint8Array (a copy: the Python bytes may go away)."""
    return to_js(data)


def _reason(error: BaseException) -> FailureReason:
    """Why a ``fetch`` failed before Poe answered."""
    cause = getattr(getattr(error, "js_error", None), "cause", None)  # Node's fetch names it there
    text = f"{error} {getattr(cause, 'code', '')} {cause or ''}"
    if "TimeoutError" in text or isinstance(error, TimeoutError):
        return "timeout"
    return "refused" if "refused" in text.lower() or "dns" in text.lower() else "reset"


class Deadline:
    """A call's timeout: each ``arm()`` gives it ``seconds`` more (the head, then each wait for the
    body), and when a deadline passes unmet the call is aborted, which is what the pending
    ``fetch`` or the body's pipe then fails with. One timer per call, moved along rather than a
    task per wait."""

    def __init__(self, abort: Any, seconds: float, whole: float | None = None) -> None:
        """``whole``: seconds the whole call may take (``StartCall.deadline``), if bounded."""
        self._abort = abort
        self._seconds = seconds
        self._at = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self.expired = False
        self._due = None if whole is None else asyncio.get_running_loop().time() + whole

    def arm(self, seconds: float | None = None) -> None:
        """``seconds`` more (the call's timeout unless given), never past the whole call's due."""
        loop = asyncio.get_running_loop()
        seconds = self._seconds if seconds is None else seconds
        if self._due is not None:
            seconds = max(0.0, min(seconds, self._due - loop.time()))
        self._at = loop.time() + seconds
        if self._timer is None:
            self._timer = loop.call_later(seconds, self._check)

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


HIGH_WATER = 64 * 1024  # body bytes taken from the pipe but not yet by the driver: the pipe waits
OUT_HIGH_WATER = 64 * 1024  # answer bytes written but not yet taken by the client: the write waits


class BodySink:
    """A ``fetch`` body's chunks, pushed from JavaScript: the body is piped (``pipeTo``) into a
    WritableStream whose ``write`` is this object's, so a chunk costs one call into Python. While
    the driver's lane takes chunks (``push``), each goes to it within that call; otherwise it is
    kept for ``take``, and the driver's task it wakes runs within the same call.

    Read from Python instead (``await reader.read()``), a chunk cost a promise turned into a Python
    future and two turns of the loop, each a JavaScript callback of its own: measured in Pyodide
    under Node, 29 us for the promise alone and about 13 us for each turn.

    A pipe reads with a default reader, so each chunk is a buffer the runtime's ``fetch`` made for
    it: Node's holds what arrived. (The web driver reads into one buffer of its own because Deno's
    fetch makes 64 KiB per read; what workerd's makes only Cloudflare shows.)

    The pipe waits while ``HIGH_WATER`` bytes are here untaken (the client is slow), so the body is
    never read faster than it is used. Its AbortSignal is the call's: an abort (the client left, the
    deadline passed) cancels the body and fails the sink at once, whatever the runtime's fetch does
    with a body being read. JavaScript holds this object's callbacks until the pipe ends (``close``
    or ``abort``); then they are let go."""

    def __init__(self, body: Any, signal: Any) -> None:
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None
        self._room: Any = None  # the pipe's write waiting for room: its promise's resolve
        self._take: Callable[[bytes | None], bool] | None = None  # chunks go here as they come
        self.ended = False
        self.failed = False
        self.timed_out = False  # the runtime's fetch gave up waiting for the body
        self._discard = False
        self._callbacks = [create_proxy(self._write), create_proxy(self._close), create_proxy(self._abort)]
        if body is None:  # no body at all (a 204, a 304)
            self._done(failed=False)
            return
        write, close, abort = self._callbacks
        sink = js.WritableStream.new(
            to_js({"write": write, "close": close, "abort": abort}, dict_converter=js.Object.fromEntries)
        )
        options = to_js({"signal": signal}, dict_converter=js.Object.fromEntries)
        body.pipeTo(sink, options).add_done_callback(_settled)

    def _write(self, chunk: Any, controller: Any = None) -> Any:
        if self._discard:
            return None
        data = chunk.to_bytes()
        if self._take is not None and not self._chunks:
            _run_inline(lambda: self._push(data))  # the driver's lane takes it, within this call
            return None
        self._chunks.append(data)
        self._buffered += len(data)
        _run_inline(self._wake)  # the driver takes the chunk now, within this call
        if self._buffered < HIGH_WATER:
            return None
        return js.Promise.new(create_once_callable(self._hold))

    def _hold(self, resolve: Any, reject: Any) -> None:
        self._room = resolve

    def _close(self, controller: Any = None) -> None:
        self._done(failed=False)

    def _abort(self, reason: Any = None) -> None:
        self.timed_out = "TimeoutError" in str(reason)
        self._done(failed=True)

    def push(self, take: Callable[[bytes | None], bool] | None) -> bool:
        """Hand each chunk to ``take`` as it comes (``driver.Pushing``); False if there are
        chunks here already, or the body is over."""
        if take is not None and (self._chunks or self.ended):
            return False
        self._take = take
        return True

    def _push(self, data: bytes | None) -> None:
        take = self._take
        if take is not None and not take(data):
            self._take = None

    def _done(self, failed: bool) -> None:
        self.ended, self.failed = True, failed
        self._push(None)
        self._wake()
        asyncio.get_running_loop().call_soon(self._let_go)  # not while JavaScript is in a callback

    def _let_go(self) -> None:
        for callback in self._callbacks:
            callback.destroy()
        self._callbacks.clear()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def take(self) -> bytes | None:
        """The next chunk, if one is here."""
        if not self._chunks:
            return None
        data = self._chunks.popleft()
        self._buffered -= len(data)
        if self._buffered < HIGH_WATER:
            self._resume()
        return data

    def _resume(self) -> None:
        """The pipe's write waiting for room ends: the pipe reads on."""
        if self._room is not None:
            self._room()
            self._room = None

    async def arrival(self) -> None:
        """Until a chunk comes, or the body ends."""
        self._waiter = _future()
        await self._waiter

    def discard(self) -> None:
        """The rest is not wanted: drop what is here and what comes, and never hold the pipe."""
        self._discard = True
        self._take = None
        self._chunks.clear()
        self._resume()


def _settled(piped: asyncio.Future[Any]) -> None:
    """The pipe's promise (the sink has said how it ended): its failure is taken, not left to be
    logged as never retrieved."""
    if not piped.cancelled():
        piped.exception()


class FetchResponse:
    """A ``fetch`` Response as the driver's ``UpstreamResponse``."""

    def __init__(self, response: Any, abort: Any, deadline: Deadline) -> None:
        self._abort = abort
        self._deadline = deadline
        self.status = int(response.status)
        self.headers: Mapping[str, str] = js.Object.fromEntries(response.headers).to_py()
        self._body = BodySink(response.body, abort.signal)

    async def chunks(self) -> AsyncIterator[bytes]:
        body, deadline = self._body, self._deadline
        while True:
            data = body.take()
            if data is not None:
                yield data
            elif body.ended:
                deadline.disarm()
                if body.failed:
                    raise CallFailed("timeout" if deadline.expired or body.timed_out else "reset")
                return
            else:
                deadline.arm()
                await body.arrival()

    def push(self, take: Callable[[bytes | None], bool] | None) -> bool:
        """``driver.Pushing``: each chunk to ``take`` as it comes, the read timeout armed for the
        next (and disarmed once the body is over)."""
        if take is None:
            return self._body.push(None)
        deadline = self._deadline

        def taken(data: bytes | None) -> bool:
            if data is None:
                deadline.disarm()
            else:
                deadline.arm()
            return take(data)

        if not self._body.push(taken):
            return False
        deadline.arm()
        return True

    async def aclose(self) -> None:
        self._deadline.disarm()
        # A pipe waiting for room would hold the abort until its write ended, and so never let go.
        self._body.discard()
        self._abort.abort()  # closing the connection cancels the call at Poe

    def finish_in_background(self, seconds: float) -> None:
        """Let the rest of the body come, for ``seconds`` at most (then the call is aborted)."""
        self._body.discard()
        self._deadline.disarm()
        if not self._body.ended:
            self._deadline.arm(seconds)


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
        # The head (connecting included), then each read; and the whole call, where core bounds it.
        deadline = Deadline(abort, self._read_timeout, call.deadline)
        deadline.arm()
        try:
            response = await js.fetch(call.url, to_js(init, dict_converter=js.Object.fromEntries))
        except JsException as exc:
            deadline.disarm()
            raise CallFailed("timeout" if deadline.expired else _reason(exc)) from None
        except asyncio.CancelledError:  # the client left before Poe's head: stop the call there
            deadline.disarm()
            abort.abort()
            raise
        return FetchResponse(response, abort, deadline)


def _init(status: int, headers: Any) -> Any:
    return to_js({"status": status, "headers": headers}, dict_converter=js.Object.fromEntries)


class WorkerClient:
    """The driver's ``Client`` on a Worker's request and Response.

    A streamed answer is a ``ReadableStream`` the client pulls from (its high-water mark is 0, so
    the stream pulls only when the client is waiting for bytes). A write made while the client
    waits goes to it at once, with one call into JavaScript; what is written while the client is
    still busy with what came before waits here, and goes out as one chunk at its next pull. The
    client's own pace coalesces writes, and adds no wait. Past ``OUT_HIGH_WATER`` bytes waiting,
    a write waits for the client (and so the driver stops reading Poe)."""

    def __init__(self, request: Any) -> None:
        self._request = request
        self.response: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._controller: Any = None  # the answer's stream, once it has begun
        self._waiting: list[bytes] = []  # written while the client was busy: its next chunk
        self._waiting_bytes = 0
        self._wanted = False  # the client is waiting for bytes: the stream pulled and got none
        self._room: asyncio.Future[None] | None = None  # a write (or the end) waiting for a pull
        self._callbacks: list[Any] = []  # what JavaScript holds of ours: destroyed at the end
        self._closed = False
        self._body: Any = None  # the request body's reader
        self._driver: asyncio.Task[Any] | None = None
        self._on_abort: Any = None
        self.left = False
        # The body's promises may reject with a reason that is not an Error (a cancel's), which
        # Pyodide cannot raise: each is awaited through ``.catch(self._failed)`` instead.
        self._failed = self._callback(lambda reason: True)

    def _callback(self, function: Any) -> Any:
        proxy = create_proxy(function)
        self._callbacks.append(proxy)
        return proxy

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
        self._driver = asyncio.current_task()
        source = {"start": self._callback(self._start), "pull": self._callback(self._pull),
                  "cancel": self._callback(self._cancel)}  # fmt: skip
        stream = js.ReadableStream.new(_object(**source), _object(highWaterMark=0))
        self.response.set_result(js.Response.new(stream, _init(status, headers)))
        await self.write(response.body)

    def _start(self, controller: Any) -> None:
        self._controller = controller

    def _pull(self, controller: Any) -> None:
        """The client waits for bytes: what is waiting here goes, or the next write will."""
        if self._waiting:
            self._flush()
        else:
            self._wanted = True

    def _flush(self) -> None:
        data = self._waiting[0] if len(self._waiting) == 1 else b"".join(self._waiting)
        self._waiting.clear()
        self._waiting_bytes = 0
        self._controller.enqueue(_buffer(data))
        if self._room is not None and not self._room.done():
            self._room.set_result(None)

    def _cancel(self, reason: Any = None) -> None:
        """The client left: stop the driver, even while it waits for Poe (and so close the calls
        to Poe)."""
        self._left()

    def _left(self) -> None:
        self.left = True
        if self._driver is not None:
            self._driver.cancel()

    def write_now(self, data: bytes) -> bool:
        """A write that does not wait (``driver.Client``), if it need not: False, and nothing
        written, when it would leave ``OUT_HIGH_WATER`` bytes or more waiting for the client."""
        if self.left or (not self._wanted and self._waiting_bytes + len(data) >= OUT_HIGH_WATER):
            return False
        if data:
            if self._wanted:
                self._wanted = False
                self._controller.enqueue(_buffer(data))
            else:
                self._waiting.append(data)
                self._waiting_bytes += len(data)
        return True

    async def write(self, data: bytes) -> None:
        if self.left:
            raise ConnectionResetError("the client left")
        if not self.write_now(data):  # it waits here, and the driver with it
            self._waiting.append(data)
            self._waiting_bytes += len(data)
            await self._taken()

    async def _taken(self) -> None:
        """Until the client has taken what waits here (its next pull)."""
        self._room = _future()
        await self._room

    async def end(self) -> None:
        """Close the answer once the client has taken all of it: a stream closed with chunks still
        to be read stays open until they are, and could call back (a cancel) into a request that
        is over. (Every chunk enqueued went to a read waiting for it: the stream's queue holds
        none.)"""
        controller = self._controller
        if controller is None or self.left:
            return
        while self._waiting:
            await self._taken()
        controller.close()
        self._closed = True

    def stop_watching(self) -> None:
        """The request is over: JavaScript lets go of what it held of ours. An answer that did
        not end (this host failed even to say so) is broken off, not left open."""
        if self._controller is not None and not self.left and not self._closed:
            with contextlib.suppress(JsException):
                self._controller.error(js.Error.new("the proxy failed"))
        if self._on_abort is not None:
            self._request.signal.removeEventListener("abort", self._on_abort)
            self._on_abort = None
        for callback in self._callbacks:
            callback.destroy()
        self._callbacks.clear()

    def calls_started(self) -> None:
        """A client that leaves before its answer aborts ``request.signal``: stop the driver."""
        signal = getattr(self._request, "signal", None)
        if signal is None or self._on_abort is not None:
            return
        self._driver = asyncio.current_task()
        self._on_abort = self._callback(lambda event: self._left())
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


def _object(**fields: Any) -> Any:
    return to_js(fields, dict_converter=js.Object.fromEntries)


class WebCryptoSealer:
    """Seals and opens what the store keeps as ``core.flow.Store`` says, with the runtime's
    WebCrypto (``crypto.subtle``: the ``cryptography`` package is not among the Worker's)."""

    def __init__(self) -> None:
        self._keys: dict[str, Any] = {}  # a CryptoKey per credential, derived once per isolate

    async def _key(self, secret: str) -> Any:
        key = self._keys.get(secret)
        if key is None:
            subtle = js.crypto.subtle
            usages = to_js(["deriveKey"])
            base = await subtle.importKey("raw", _buffer(secret.encode()), "HKDF", False, usages)
            hkdf = _object(name="HKDF", hash="SHA-256", salt=_buffer(SEAL_SALT), info=_buffer(SEAL_INFO))
            aes = _object(name="AES-GCM", length=256)
            key = await subtle.deriveKey(hkdf, base, aes, False, to_js(["encrypt", "decrypt"]))
            if len(self._keys) >= 1024:
                self._keys.pop(next(iter(self._keys)))
            self._keys[secret] = key
        return key

    async def seal(self, secret: str, name: str, value: bytes) -> bytes:
        nonce = os.urandom(12)
        algorithm = _object(name="AES-GCM", iv=_buffer(nonce), additionalData=_buffer(name.encode()))
        sealed = await js.crypto.subtle.encrypt(algorithm, await self._key(secret), _buffer(value))
        return bytes(SEAL_VERSION + nonce + js.Uint8Array.new(sealed).to_bytes())

    async def open(self, secret: str, name: str, value: bytes) -> bytes | None:
        if value[:1] != SEAL_VERSION or len(value) < 29:
            return None
        algorithm = _object(name="AES-GCM", iv=_buffer(value[1:13]), additionalData=_buffer(name.encode()))
        try:
            opened = await js.crypto.subtle.decrypt(algorithm, await self._key(secret), _buffer(value[13:]))
        except JsException:
            return None  # another's, or not what this wrote
        return bytes(js.Uint8Array.new(opened).to_bytes())


SEALER = WebCryptoSealer()
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


class _Scheduler:
    """What the Worker's event loop runs soon, and later, done more cheaply than Pyodide's loop
    does it (``tune_event_loop``)."""

    CHAIN = 100  # drains in a row that may each schedule the next as a microtask

    def __init__(self, loop: Any) -> None:
        self._loop = loop
        self._ready: collections.deque[asyncio.Handle] = collections.deque()
        self._scheduled = False  # a drain is due
        self._running = False  # handles are being run
        self._inline = False  # a callback from JavaScript runs what it readies itself
        self._chained = 0
        self._drain_proxy = create_proxy(self._drain)  # lives as long as the isolate

    def call_soon(self, callback: Any, *args: Any, context: Any = None) -> asyncio.Handle:
        handle = asyncio.Handle(callback, args, self._loop, context=context)
        self._ready.append(handle)
        if not (self._scheduled or self._inline):
            if not self._running:
                self._chained = 0  # called from JavaScript: a new chain
            self._schedule()
        return handle

    def _schedule(self) -> None:
        self._scheduled = True
        if self._chained < self.CHAIN:
            js.queueMicrotask(self._drain_proxy)
        else:  # a chain this long: let JavaScript's other work in first
            js.setTimeout(self._drain_proxy, 0)

    def run_inline(self, wake: Callable[[], None]) -> None:
        """``wake()``, a callback from JavaScript that readies tasks (a chunk of Poe's body has
        come), then what it readied, here: within this one crossing, not in another."""
        if self._inline or self._running:
            wake()
            return
        self._inline = True
        try:
            wake()
            self._run()
        finally:
            self._inline = False
        if self._ready and not self._scheduled:
            self._schedule()

    def _drain(self) -> None:
        self._scheduled = False
        self._chained += 1
        self._run()

    def _run(self) -> None:
        """Run what is ready now; what that readies runs in the next drain."""
        self._running = True
        ready = self._ready
        try:
            for _ in range(len(ready)):
                handle = ready.popleft()
                if not handle._cancelled:
                    handle._run()  # reports its own failure to the loop's exception handler
        finally:
            self._running = False

    def call_later(self, delay: float, callback: Any, *args: Any, context: Any = None) -> asyncio.Handle:
        if delay <= 0:
            return self.call_soon(callback, *args, context=context)
        handle = _Timer(callback, args, self._loop, context=context)

        def fire() -> None:
            handle._fire = None  # the once-callable goes by itself
            if not handle.cancelled():
                handle._run()

        handle._fire = create_once_callable(fire)
        handle._timer = js.setTimeout(handle._fire, delay * 1000)
        return handle


def tune_event_loop(loop: Any) -> None:
    """Give Pyodide's event loop a cheaper ``call_soon``, and timers that a cancel takes back.

    - **Soon**: Pyodide's loop makes each ``call_soon`` a JavaScript task of its own (a proxy made
      for the callback, then ``setImmediate``, or a new ``MessageChannel`` where there is none),
      and asyncio calls it for every step of a task, every future's callbacks: a streamed chunk
      took about two, a request about thirty. Here they wait in one queue that a microtask runs
      (``_Scheduler``): one crossing from JavaScript runs every step that is ready.
    - **Later**: its ``call_later`` sets a JavaScript timer and, cancelled, only marks the handle:
      the timer stays pending and holds the handle, and the handle what it would have run, until
      it fires. Each call's read deadline (``POE_READ_TIMEOUT``) and each body's
      (``BODY_TIMEOUT``) is such a timer, cancelled as the request ends, so every finished
      request was kept for minutes (measured with make bench's rounds: 234 to 350 MB over ten,
      and growing). Here a cancel clears the JavaScript timer."""
    if id(loop) in _schedulers:  # one loop per isolate: this runs once
        return
    scheduler = _schedulers[id(loop)] = _Scheduler(loop)
    try:
        loop.call_soon = scheduler.call_soon
        loop.call_later = scheduler.call_later
    except AttributeError:  # a loop that takes no new attributes: its own scheduling, then
        js.console.warn("the event loop's scheduling could not be replaced: cancelled timers stay pending")


_schedulers: dict[int, _Scheduler] = {}  # by the id of the loop tuned (one an isolate)


def _run_inline(wake: Callable[[], None]) -> None:
    """``wake()``, and the tasks it readies (``_Scheduler.run_inline``), once the loop is tuned."""
    scheduler = _schedulers.get(id(asyncio.get_running_loop()))
    if scheduler is not None:
        scheduler.run_inline(wake)
    else:
        wake()


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
        tune_event_loop(asyncio.get_running_loop())
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
        await drive(exchange, client, upstream, store, SEALER)
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
                await drive(exchange, client, upstream, store, SEALER)
    finally:
        client.stop_watching()
        if not client.response.done():  # never left without an answer
            client.response.set_result(js.Response.new(None, _init(500, to_js({}))))
        log(exchange, started)
