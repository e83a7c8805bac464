"""The asyncio driver: the loop that performs what ``core.exchange`` asks for.

It knows nothing of OpenAI or Poe. It is written against two small interfaces: a ``Client``
(read the request body, send the response) and an ``Upstream`` (make one HTTP call to Poe and
read its body). The ASGI app gives it ASGI's ``receive``/``send`` and httpx's transport; a
Python host whose HTTP is ``fetch`` (Cloudflare's Python Workers) gives it others.

Calls are read where it costs least: while a single call is open (most requests) the loop reads
it itself; once several are (``n`` > 1), each gets a task that hands what it reads to the loop
through a queue, which also bounds how far a call may run ahead of a slow client. Where the
call's body is pushed to Python as it comes (a Worker's ``fetch``) and the client can take a
write at once, each chunk goes to core and its bytes to the client within the push itself
(``Lane``): the loop waits only for what needs waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, Protocol

from core.exchange import (
    READ_BODY,
    WAIT,
    Action,
    Exchange,
    FailureReason,
    Respond,
    StartCall,
    StopCall,
    Store,
    Write,
)

DRAIN_SECONDS = 1.0  # how long the end of a body whose last event has come may take


def new_token() -> str:
    """32 random lowercase hex digits, the randomness core asks its hosts for (ids)."""
    return os.urandom(16).hex()


class ClientGone(Exception):  # an event, not an error
    """The client broke the connection while its request body was being read."""


class Client(Protocol):
    """The client's side of one request."""

    async def read_body(self) -> tuple[bytes, bool]:
        """The next piece of the request body, and whether more follows; ``ClientGone`` if the
        client broke off its upload."""

    async def respond(self, response: Respond) -> None:
        """Send the head and first bytes (all of them, unless ``response.more``)."""

    async def write(self, data: bytes) -> None: ...

    # Optional: ``write_now(data) -> bool``, a write the client takes without waiting, if it can
    # (False: it cannot yet, and nothing was written). With a ``Pushing`` response, it lets
    # chunks through without a turn of the loop each (``Lane``).

    async def end(self) -> None:
        """The response is complete (a streamed body ends here)."""

    def calls_started(self) -> None:
        """Upstream calls are under way: a client that leaves from now on should cancel them."""


class KeyValueStore(Protocol):
    """Where a host keeps responses: bytes by key (``core.state`` decides what they hold)."""

    async def get(self, keys: Sequence[str]) -> list[bytes | None]:
        """Each key's value, None where there is none."""

    async def put(self, keys: Sequence[str], values: Sequence[bytes], ttl: int) -> None:
        """Write them; they may go after ``ttl`` seconds."""

    async def delete(self, keys: Sequence[str]) -> None: ...


class UpstreamResponse(Protocol):
    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]:
        """With case-insensitive names, or lowercase ones."""

    def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives (decoded if it came compressed)."""

    async def aclose(self) -> None:
        """Stop reading; closing the connection before the body's end cancels the call at Poe."""

    def finish_in_background(self, seconds: float) -> None:
        """Let the body's (near) end arrive without us, then keep the connection."""


class Pushing(Protocol):
    """An ``UpstreamResponse`` whose body can be handed over as it comes, chunk by chunk."""

    def push(self, take: Callable[[bytes | None], bool] | None) -> bool:
        """From now on, call ``take(chunk)`` with each chunk as it comes (its read timeout armed
        for the next), instead of keeping it for ``chunks()``, until ``take`` returns False or
        ``push(None)``; ``take(None)`` once the body has ended or failed (``chunks()`` says how).
        False, and nothing set: there are chunks kept already, or the body is over."""
        ...


class Upstream(Protocol):
    async def send(self, call: StartCall) -> UpstreamResponse:
        """Make the call; return once the response head has come. Raises ``CallFailed``."""


class CallFailed(Exception):
    """A call failed in transit; ``reason`` is what ``Exchange.failed`` takes."""

    def __init__(self, reason: FailureReason) -> None:
        super().__init__(reason)
        self.reason: FailureReason = reason


Event = tuple[Any, ...]  # ("answered", status, headers) | ("data", bytes) | ("ended",) | ("failed", reason)


class Call:
    """One upstream call: each ``read`` is the next thing to report about it."""

    __slots__ = ("_body", "_due", "_request", "_upstream", "id", "response")

    def __init__(self, upstream: Upstream, request: StartCall) -> None:
        self._upstream = upstream
        self._request = request
        self.id = request.call
        self.response: UpstreamResponse | None = None
        self._body: AsyncIterator[bytes] | None = None
        self._due: float | None = None  # the loop's time by which the call must be done, if any

    @property
    def whole_deadline(self) -> float | None:
        return self._request.deadline

    async def read(self) -> Event:
        if self._request.deadline is None:
            return await self._next()
        if self._due is None:
            self._due = asyncio.get_running_loop().time() + self._request.deadline
        try:
            async with asyncio.timeout_at(self._due):
                return await self._next()
        except TimeoutError:
            return ("failed", "timeout")

    async def _next(self) -> Event:
        try:
            if self.response is None:
                self.response = response = await self._upstream.send(self._request)
                self._body = response.chunks()
                return ("answered", response.status, response.headers)
            assert self._body is not None
            return ("data", await anext(self._body))
        except StopAsyncIteration:
            return ("ended",)
        except CallFailed as failure:
            return ("failed", failure.reason)

    async def stop(self, reuse: bool) -> None:
        response = self.response
        if response is not None:
            if reuse:
                response.finish_in_background(DRAIN_SECONDS)
            else:
                await response.aclose()


def report(exchange: Exchange, call: int, event: Event) -> bool:
    """Hand ``event`` to the exchange; whether the call has more to report."""
    kind = event[0]
    if kind == "data":
        exchange.data(call, event[1])
        return True
    if kind == "answered":
        exchange.answered(call, event[1], event[2])
        return True
    if kind == "ended":
        exchange.ended(call)
    else:
        exchange.failed(call, event[1])
    return False


class Lane:
    """Chunks of one call taken as they are pushed (``Pushing``): each goes to core, and what
    core then writes goes to the client at once, within the push; ``finished`` is set (with the
    action the loop is to do next, if any) once an action needs the loop, or the body is over."""

    __slots__ = ("_call", "_exchange", "_write_now", "finished")

    def __init__(self, exchange: Exchange, call: int, write_now: Callable[[bytes], bool]) -> None:
        self._exchange = exchange
        self._call = call
        self._write_now = write_now
        self.finished: asyncio.Future[Action | None] = asyncio.get_running_loop().create_future()

    def take(self, data: bytes | None) -> bool:
        finished = self.finished
        if finished.done():
            return False
        if data is None:  # the body is over: the loop reads how, as ever
            finished.set_result(None)
            return False
        exchange, write_now = self._exchange, self._write_now
        try:
            exchange.data(self._call, data)
            while True:
                action = exchange.next_action()
                if action is WAIT:
                    return True
                if not (isinstance(action, Write) and write_now(action.data)):
                    finished.set_result(action)
                    return False
        except Exception as exc:  # a failure of the client's: the loop raises it, as a write would
            finished.set_exception(exc)
            return False


class Calls:
    """The open calls of one request."""

    def __init__(self, exchange: Exchange, upstream: Upstream, client: Client | None = None) -> None:
        self._exchange = exchange
        self._upstream = upstream
        self._write_now: Callable[[bytes], bool] | None = getattr(client, "write_now", None)
        self._open: dict[int, Call] = {}
        self._pumps: dict[int, asyncio.Task[None]] = {}
        self._queue: asyncio.Queue[tuple[Call, Event]] | None = None

    @property
    def any_open(self) -> bool:
        return bool(self._open)

    def start(self, request: StartCall) -> None:
        self._open[request.call] = Call(self._upstream, request)

    async def stop(self, request: StopCall) -> None:
        call = self._open.pop(request.call, None)
        if call is None:
            return
        pump = self._pumps.pop(request.call, None)
        if pump is not None:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
        await call.stop(request.reuse)

    async def next_event(self) -> Action | None:
        """Wait for the next thing an open call reports, and report it to the exchange; an
        action core has already given, for the loop to do next (``Lane``), or None."""
        if len(self._open) == 1 and not self._pumps:
            call = next(iter(self._open.values()))
            push = getattr(call.response, "push", None)
            if push is not None and self._write_now is not None and call.whole_deadline is None:
                lane = Lane(self._exchange, call.id, self._write_now)
                if push(lane.take):
                    try:
                        return await lane.finished
                    finally:
                        push(None)
            event = await call.read()
        else:
            queue = self._queue
            if queue is None:
                queue = self._queue = asyncio.Queue(maxsize=max(len(self._open), 1))
            for call in self._open.values():
                if call.id not in self._pumps:
                    self._pumps[call.id] = asyncio.create_task(self._pump(call, queue))
            call, event = await queue.get()
            if call.id not in self._open:
                return None  # stopped after it read this
        if not report(self._exchange, call.id, event) and self._open.pop(call.id, None) is not None:
            self._pumps.pop(call.id, None)
            await call.stop(False)  # at the body's end this keeps the connection for reuse
        return None

    @staticmethod
    async def _pump(call: Call, queue: asyncio.Queue[tuple[Call, Event]]) -> None:
        while True:
            event = await call.read()
            await queue.put((call, event))
            if event[0] in ("ended", "failed"):
                return

    async def close(self) -> None:
        """Stop every call still open (the request is over, or the client left)."""
        for pump in self._pumps.values():
            pump.cancel()
        for pump in self._pumps.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump
        self._pumps.clear()
        calls, self._open = list(self._open.values()), {}
        for call in calls:
            with contextlib.suppress(Exception):
                await call.stop(False)


async def read_body(exchange: Exchange, client: Client, deadline: float) -> None:
    """Hand the exchange the body's next piece, or what stopped it: the body must be whole by
    ``deadline`` (the loop's clock), and a client that breaks off its upload ends the request."""
    try:
        async with asyncio.timeout_at(deadline):
            exchange.body(*await client.read_body())
    except TimeoutError:
        exchange.body_failed("timeout")
    except ClientGone:
        exchange.body_failed("aborted")


class Sealer(Protocol):
    """Seals and opens what the store keeps (``core.flow.Store.secret``): ``adapters.seal``'s
    with ``cryptography``, the Worker's with WebCrypto."""

    async def seal(self, secret: str, name: str, value: bytes) -> bytes:
        """``value``, to be kept at ``name``, sealed with ``secret``."""
        ...

    async def open(self, secret: str, name: str, value: bytes) -> bytes | None:
        """What ``seal`` sealed, or None for a value that does not open with ``secret`` there."""
        ...


async def perform(
    exchange: Exchange, store: KeyValueStore | None, action: Store, sealer: Sealer | None
) -> None:
    """Do what ``action`` asks of the store, sealing and opening its values where it says, and
    report it (a store that fails is no crash: core answers for it)."""
    secret, keys = action.secret, action.keys
    try:
        if store is None:
            raise RuntimeError("this host has no store")
        if secret and sealer is None:
            raise RuntimeError("this host cannot seal what it stores")
        if action.op == "get":
            found = await store.get(keys)
            if secret and sealer is not None:
                found = [
                    None if v is None else await sealer.open(secret, k, v)
                    for k, v in zip(keys, found, strict=True)
                ]
            exchange.stored(found)
            return
        if action.op == "put":
            values = action.values
            if secret and sealer is not None:
                values = tuple([await sealer.seal(secret, k, v) for k, v in zip(keys, values, strict=True)])
            await store.put(keys, values, action.ttl)
        else:
            await store.delete(keys)
    except Exception as exc:
        exchange.store_failed(f"{type(exc).__name__}: {exc}")
        return
    exchange.stored()


async def drive(
    exchange: Exchange,
    client: Client,
    upstream: Upstream,
    store: KeyValueStore | None = None,
    sealer: Sealer | None = None,
) -> None:
    """Run ``exchange`` to its end. If this task is cancelled (the client left), every call
    still open is closed, which cancels it at Poe."""
    calls = Calls(exchange, upstream, client)
    body_deadline = 0.0
    held: Action | None = None  # an action core gave a lane, for the loop to do
    try:
        while True:
            action, held = (held, None) if held is not None else (exchange.next_action(), None)
            if action is WAIT:
                held = await calls.next_event()
            elif isinstance(action, Write):
                await client.write(action.data)
            elif isinstance(action, StartCall):
                if not calls.any_open:
                    client.calls_started()
                calls.start(action)
            elif isinstance(action, StopCall):
                await calls.stop(action)
            elif isinstance(action, Respond):
                await client.respond(action)
            elif isinstance(action, Store):
                await perform(exchange, store, action, sealer)
            elif action is READ_BODY:
                if not body_deadline:
                    body_deadline = asyncio.get_running_loop().time() + exchange.body_timeout
                await read_body(exchange, client, body_deadline)
            else:  # DONE
                await client.end()
                return
    finally:
        await calls.close()
