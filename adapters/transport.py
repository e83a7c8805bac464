"""The proxy's upstream sockets: httpx's transport interface over asyncio and httptools.

Why not httpx's default transport (httpcore on anyio), nor aiohttp's client under it: measured on
one core, 32 calls at a time (``bench/transports.py``, figures in docs/benchmarks.md), a call cost
~600 us of CPU through httpcore, ~57 through an aiohttp ClientSession, ~33 through this module
with httpx's Request and Response around it, and ~21 as bare bytes on a socket. This module does
only what a keep-alive HTTP/1.1 call needs. Parsing is httptools' (the C parser uvicorn serves
with), so framing - chunked or sized bodies, malformed input - is not ours.

What it does: one pool of idle keep-alive connections per origin and event loop; TLS with httpx's
own certificate settings; timeouts from the request's ``timeout`` extension, as ``AsyncClient``
sends them (``connect`` to open a connection, ``read`` for each wait for the next bytes); reading
paused while a slow consumer has 64 KiB unread; a body left unread closes its connection (that is
how a cut stream stops Poe generating), a body read to its end returns it to the pool, and so does
one whose reader declares it done (``finish_in_background``): its last bytes may come later. A proxy
named by the environment (``HTTPS_PROXY`` ...) is honoured by handing those calls to httpx's own
transport. Every failure is the httpx exception for it: ``ConnectError``, ``ConnectTimeout``,
``ReadTimeout``, ``ReadError``, ``RemoteProtocolError``.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import socket
import ssl
import time
import urllib.request
from collections.abc import Callable
from typing import Any, cast

import httptools
import httpx

from core.exchange import public_address

HIGH_WATER = 64 * 1024  # unread body bytes at which reading from the socket pauses
MAX_HEAD_BYTES = 100 * 1024  # a response head over this is refused, as httpcore refuses it
MAX_IDLE_PER_ORIGIN = 128
DEFAULT_PORTS = {"http": 80, "https": 443}

Origin = tuple[str, str, int]


class NotPublic(httpx.ConnectError):
    """A request that may reach only public addresses (the ``public`` extension) named a host
    that resolves to another: no connection was made."""


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: write a request, then take its response apart as it arrives."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop  # the loop it belongs to
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._paused = False
        self.lost = False
        self.idle_since = 0.0
        self._then: Callable[[], None] | None = None  # run once the current response has ended
        self._give_up: asyncio.TimerHandle | None = None
        self._start_response()

    def _start_response(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.complete = False
        self.keep_alive = False
        self.in_flight = False  # a request has been sent on it (bytes before one are an error)
        self._informational = False
        self._until_eof = False
        self._head_size = 0
        self._error: httpx.TransportError | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is one, unregistered

    def data_received(self, data: bytes) -> None:
        if self.complete or not self.in_flight:  # bytes no request asked for: state unknown
            self._fail(httpx.RemoteProtocolError("The server sent data outside a response."))
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self._head_size > MAX_HEAD_BYTES:
                self._fail(httpx.RemoteProtocolError(f"The response's head is over {MAX_HEAD_BYTES} bytes."))
            else:
                self._fail(httpx.RemoteProtocolError(f"Malformed HTTP response: {exc}"))

    def eof_received(self) -> bool:
        return False  # the peer is done sending: close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._then = None
        if self._give_up is not None:
            self._give_up.cancel()
            self._give_up = None
        if self.head_done and self._until_eof and exc is None:
            self.complete = True  # a body without length or chunks ends with the connection
        elif not self.complete and self._error is None:
            if exc is not None:
                self._error = httpx.ReadError(f"The connection to the server broke: {exc}")
            elif not self.head_done:
                self._error = httpx.RemoteProtocolError("Server disconnected without sending a response.")
            else:
                self._error = httpx.RemoteProtocolError("The server closed the connection mid-body.")
        self._wake()

    # -- httptools callbacks ---------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value)
        if self._head_size > MAX_HEAD_BYTES:
            raise ValueError("head too large")  # stops the parser; data_received says why
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:  # informational (103 Early Hints...): the answer comes after it
            self._informational = True
            return
        self.status = status
        self.keep_alive = self._parser.should_keep_alive()
        names = {name.lower() for name, _ in self.headers}
        self._until_eof = b"content-length" not in names and b"transfer-encoding" not in names
        self.head_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self._then is not None:  # the caller is done with the body: its rest is dropped
            return
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered >= HIGH_WATER and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            self.headers = []
            self._head_size = 0
            return
        self.complete = True
        self.keep_alive = self.keep_alive and self._parser.should_keep_alive()
        self._wake()
        then = self._then
        if then is not None:
            self._then = None
            if self._give_up is not None:
                self._give_up.cancel()
                self._give_up = None
            then()

    # -- used by the transport ---------------------------------------------------------------

    def finish_then(self, then: Callable[[], None], within: float) -> None:
        """Drop the rest of the current response as it arrives and call ``then`` once it has all
        come; close the connection if that takes longer than ``within`` seconds."""
        self._chunks.clear()
        self._buffered = 0
        if self._paused and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()
        if self.complete or self.lost:
            then()
            return
        self._then = then
        self._give_up = self.loop.call_later(within, self.close)

    @property
    def reusable(self) -> bool:
        return self.complete and self.keep_alive and not self.lost and self._error is None

    def send(self, head: bytes, body: bytes) -> None:
        assert self._transport is not None
        self._start_response()
        self.in_flight = True
        if self._chunks:  # what the last caller left unread of its (complete) response
            self._chunks.clear()
            self._buffered = 0
        if self._paused:
            self._paused = False
            self._transport.resume_reading()
        self._transport.write(head + body if len(body) < 65536 else head)
        if len(body) >= 65536:
            self._transport.write(body)

    async def response_head(self, max_wait: float | None) -> None:
        while not self.head_done:
            await self._wait(max_wait)

    async def read(self, max_wait: float | None) -> bytes:
        """The body bytes received so far (waiting for some if there are none); b"" at the end."""
        while not self._chunks:
            if self.complete:
                return b""
            await self._wait(max_wait)
        chunk = self._chunks.popleft() if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        if self._paused and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()
        return chunk

    async def _wait(self, max_wait: float | None) -> None:
        """Until the connection has news; ``max_wait`` seconds of silence is a ``ReadTimeout``.
        (A timer handle, not ``asyncio.timeout``: it is set for every read, and must close the
        connection when it fires.)"""
        if self._error is not None:
            raise self._error
        if self.lost:
            raise httpx.RemoteProtocolError("The connection to the server is closed.")
        waiter = self._waiter = self.loop.create_future()
        timer = None if max_wait is None else self.loop.call_later(max_wait, self._time_out, waiter)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()
        if self._error is not None:
            raise self._error

    def _time_out(self, waiter: asyncio.Future[None]) -> None:
        if not waiter.done():
            waiter.set_exception(httpx.ReadTimeout("Timed out waiting for the server."))
        self.close()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: httpx.TransportError) -> None:
        if self._error is None:
            self._error = error
        self.close()
        self._wake()

    def close(self) -> None:
        self.lost = True
        if self._transport is not None:
            self._transport.close()


class _ResponseBody(httpx.AsyncByteStream):
    """A response's body, read from its connection; the connection's end decides its reuse.

    Its own iterator (not an async generator): one is made for every call.
    """

    def __init__(self, pool: HTTP1Transport, origin: Origin, connection: _Connection, max_wait: float | None):
        self._pool = pool
        self._origin = origin
        self._connection = connection
        self._max_wait = max_wait
        self._closed = False

    def finish_in_background(self, within: float) -> None:
        """The caller has what it wanted, and the few bytes that end the body are on their way:
        let them come after the caller has moved on, then pool the connection (or close it if
        they have not come within ``within`` seconds). Waiting for them first would put one more
        round of the event loop on every call's path."""
        if not self._closed:
            self._closed = True
            self._connection.finish_then(lambda: self._pool.release(self._origin, self._connection), within)

    def __aiter__(self) -> _ResponseBody:
        return self

    async def __anext__(self) -> bytes:
        chunk = await self._connection.read(self._max_wait)
        if not chunk:
            raise StopAsyncIteration
        return chunk

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._pool.release(self._origin, self._connection)


class HTTP1Transport(httpx.AsyncBaseTransport):
    """Keep-alive HTTP/1.1 calls under httpx's transport interface (see the module docstring)."""

    def __init__(self, *, keepalive_seconds: float = 15.0) -> None:
        """``keepalive_seconds``: how long an idle connection is trusted (servers drop theirs,
        typically after a minute or more; one this old is closed rather than reused)."""
        self._keepalive_seconds = keepalive_seconds
        self._idle: dict[Origin, list[_Connection]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ssl: ssl.SSLContext | None = None
        self._proxies = urllib.request.getproxies()  # like httpx's trust_env, read once
        self._proxied: dict[str, httpx.AsyncHTTPTransport] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        proxy = self._proxy_for(url)
        if proxy is not None:
            return await self._through_proxy(proxy, request)
        timeouts: dict[str, Any] = request.extensions.get("timeout", {})
        origin = (url.scheme, url.host, url.port or DEFAULT_PORTS.get(url.scheme, 80))
        fields = request.headers.raw
        # httpx frames a body of unknown length as chunked (a body in memory has its length).
        chunked = not isinstance(request.stream, httpx.ByteStream) and (b"transfer-encoding", b"chunked") in [
            (name.lower(), value.lower()) for name, value in fields
        ]
        # The body as bytes: read in place when it is in memory already (it nearly always is).
        body = request.read() if isinstance(request.stream, httpx.SyncByteStream) else await request.aread()
        if chunked:
            body = (b"%x\r\n%b\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
        head = b"%b %b HTTP/1.1\r\n%b\r\n\r\n" % (
            request.method.encode(),
            url.raw_path,
            b"\r\n".join([b"%b: %b" % field for field in fields]),
        )
        connection = self._checkout(origin) or await self._connect(
            origin, timeouts.get("connect"), public=request.extensions.get("public", False)
        )
        try:
            connection.send(head, body)
            await connection.response_head(timeouts.get("read"))
        except BaseException:
            connection.close()
            raise
        return httpx.Response(
            connection.status,
            headers=connection.headers,
            stream=_ResponseBody(self, origin, connection, timeouts.get("read")),
            extensions={"http_version": b"HTTP/1.1"},
            request=request,
        )

    # -- the pool --------------------------------------------------------------------------

    def _checkout(self, origin: Origin) -> _Connection | None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # connections belong to the loop that opened them
            self._drop_all()
            self._loop = loop
        idle = self._idle.get(origin)
        oldest = time.monotonic() - self._keepalive_seconds
        while idle:
            connection = idle.pop()
            if not connection.lost and connection.idle_since > oldest:
                return connection
            connection.close()
        return None

    def release(self, origin: Origin, connection: _Connection) -> None:
        """A response is finished with: keep its connection for the next call, or close it."""
        idle = self._idle.setdefault(origin, [])
        if connection.reusable and len(idle) < MAX_IDLE_PER_ORIGIN and connection.loop is self._loop:
            connection.idle_since = time.monotonic()
            idle.append(connection)
        else:
            connection.close()

    async def _connect(self, origin: Origin, connect_timeout: float | None, *, public: bool) -> _Connection:
        """A new connection to ``origin``; if ``public``, only to an address that is public, the
        one checked being the one connected to (a name is resolved once, here)."""
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        tls = self._tls() if scheme == "https" else None
        try:
            async with asyncio.timeout(connect_timeout):
                address = await _public_address(loop, host, port) if public else host
                _, connection = await loop.create_connection(
                    lambda: _Connection(loop), address, port, ssl=tls, server_hostname=host if tls else None
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"Timed out connecting to {host}:{port}.") from None
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(f"Could not connect to {host}:{port}: {exc}") from None
        return connection

    def _tls(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = httpx.create_ssl_context()  # certifi, or SSL_CERT_FILE / SSL_CERT_DIR
            self._ssl.set_alpn_protocols(["http/1.1"])
        return self._ssl

    def _drop_all(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()

    # -- proxies ---------------------------------------------------------------------------

    def _proxy_for(self, url: httpx.URL) -> str | None:
        if not self._proxies or urllib.request.proxy_bypass(url.host):
            return None
        return self._proxies.get(url.scheme) or self._proxies.get("all")

    async def _through_proxy(self, proxy: str, request: httpx.Request) -> httpx.Response:
        transport = self._proxied.get(proxy)
        if transport is None:
            transport = self._proxied[proxy] = httpx.AsyncHTTPTransport(proxy=proxy)
        return await transport.handle_async_request(request)

    async def aclose(self) -> None:
        self._drop_all()
        for transport in self._proxied.values():
            await transport.aclose()
        self._proxied.clear()


async def _public_address(loop: asyncio.AbstractEventLoop, host: str, port: int) -> str:
    """The first address ``host`` resolves to, if every one is public (``NotPublic`` otherwise:
    a name with one private address among public ones could be made to connect there)."""
    found = await loop.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    addresses = [str(info[4][0]) for info in found]
    for address in addresses:
        if not public_address(ipaddress.ip_address(address.partition("%")[0])):
            raise NotPublic(f"{host} resolves to {address}, which is not a public address.")
    if not addresses:
        raise httpx.ConnectError(f"{host} resolves to no address.")
    return addresses[0]
