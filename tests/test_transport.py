"""adapters.transport.HTTP1Transport against real sockets on 127.0.0.1, and the app's use of it.

Each peer here is a small asyncio server that answers with exactly the bytes a test wants -
well-formed, broken, slow or silent - and counts the connections it was given. TLS uses a
throwaway certificate authority (trustme) that the transport is told to trust the way a user
would tell httpx: ``SSL_CERT_FILE``.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trustme

from adapters.app import create_app
from adapters.transport import HIGH_WATER, HTTP1Transport, NotPublic
from core.settings import Settings
from tests.hosts import Target

Answer = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
TIMEOUT = {"connect": 5.0, "read": 5.0, "write": 5.0, "pool": 5.0}


class Peer:
    """A server on 127.0.0.1 that hands every request on every connection to ``answer``."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.connections = 0
        self.requests: list[bytes] = []
        self.closed_by_client = asyncio.Event()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":", 1)[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                self.requests.append(head + await reader.readexactly(length))
                await self.answer(reader, writer)
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed_by_client.set()
        finally:
            writer.close()


@asynccontextmanager
async def peer(answer: Answer, tls: ssl.SSLContext | None = None) -> AsyncIterator[tuple[Peer, str]]:
    server_peer = Peer(answer)
    server = await asyncio.start_server(server_peer.serve, "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    try:
        yield server_peer, f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        server.close()


def request(url: str, content: bytes = b"{}") -> httpx.Request:
    return httpx.Request("POST", f"{url}/bot/x", content=content, extensions={"timeout": TIMEOUT})


async def call(transport: HTTP1Transport, url: str) -> tuple[int, bytes]:
    response = await transport.handle_async_request(request(url))
    try:
        return response.status_code, b"".join([chunk async for chunk in response.aiter_raw()])
    finally:
        await response.aclose()


def reply(raw: bytes, *, close: bool = False) -> Answer:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(raw)
        await writer.drain()
        if close:
            writer.close()

    return answer


SSE = b"event: text\ndata: {}\n\nevent: done\ndata: {}\n\n"
CHUNKED = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    + b"%x\r\n%b\r\n0\r\n\r\n" % (len(SSE), SSE)
)


async def test_keep_alive_reuses_one_connection_for_sequential_calls() -> None:
    async with peer(reply(CHUNKED)) as (server, url):
        transport = HTTP1Transport()
        for _ in range(5):
            assert await call(transport, url) == (200, SSE)
        await transport.aclose()
    assert server.connections == 1
    assert len(server.requests) == 5
    head = server.requests[0].split(b"\r\n\r\n")[0].lower()
    assert head.startswith(b"post /bot/x http/1.1") and b"\r\ncontent-length: 2" in head


async def test_a_request_body_of_unknown_length_goes_chunked() -> None:
    received = b""

    async def read_chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal received
        received = await reader.readuntil(b"0\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")

    async def parts() -> AsyncIterator[bytes]:
        yield b'{"a":'
        yield b"1}"

    async with peer(read_chunked) as (server, url):
        transport = HTTP1Transport()
        answer = await transport.handle_async_request(
            httpx.Request("POST", f"{url}/x", content=parts(), extensions={"timeout": TIMEOUT})
        )
        assert (answer.status_code, await answer.aread()) == (200, b"ok")
        await transport.aclose()
    assert b"transfer-encoding: chunked" in server.requests[0].lower()
    assert received == b'7\r\n{"a":1}\r\n0\r\n\r\n'


async def test_sized_chunked_and_until_close_bodies() -> None:
    sized = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"
    until_close = b"HTTP/1.0 200 OK\r\n\r\nto the end"
    async with peer(reply(sized)) as (_, a), peer(reply(until_close, close=True)) as (server, b):
        transport = HTTP1Transport()
        assert await call(transport, a) == (200, b"hello")
        assert await call(transport, b) == (200, b"to the end")
        assert await call(transport, b) == (200, b"to the end")  # not reusable: a new connection
        await transport.aclose()
    assert server.connections == 2


async def test_a_body_left_unread_closes_its_connection() -> None:
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        while True:
            writer.write(b"6\r\ntoken \r\n")
            await writer.drain()
            await asyncio.sleep(0.01)

    async with peer(endless) as (server, url):
        transport = HTTP1Transport()
        response = await transport.handle_async_request(request(url))
        async for _ in response.aiter_raw():
            break  # the proxy cut the answer: it stops reading
        await response.aclose()
        await asyncio.wait_for(server.closed_by_client.wait(), 5)  # the peer sees the hang-up
        await transport.aclose()


async def test_a_complete_body_left_partly_unread_is_reused_without_its_leftovers() -> None:
    two = b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nfirst."
    async with peer(reply(two)) as (server, url):
        transport = HTTP1Transport()
        response = await transport.handle_async_request(request(url))
        await asyncio.sleep(0.05)  # all of it has arrived; the caller reads none of it
        await response.aclose()
        assert await call(transport, url) == (200, b"first.")  # not "first.first."
        await transport.aclose()
    assert server.connections == 1


async def test_an_informational_response_is_not_taken_for_the_answer() -> None:
    hints = b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>\r\n\r\n"
    async with peer(reply(hints + b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")) as (server, url):
        transport = HTTP1Transport()
        response = await transport.handle_async_request(request(url))
        assert (response.status_code, await response.aread()) == (200, b"ok")
        assert "link" not in response.headers
        assert await call(transport, url) == (200, b"ok")  # and the connection is still sound
        await transport.aclose()
    assert server.connections == 1


async def test_bytes_on_an_idle_connection_retire_it() -> None:
    async def answer_then_babble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nstale")  # nobody asked

    async with peer(answer_then_babble) as (server, url):
        transport = HTTP1Transport()
        assert await call(transport, url) == (200, b"ok")
        await asyncio.sleep(0.2)
        assert await call(transport, url) == (200, b"ok")  # not "stale": a fresh connection
        await transport.aclose()
    assert server.connections == 2


def tail_after(pause: float) -> Answer:
    """An event stream whose final empty chunk comes ``pause`` seconds after its last event."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n%x\r\n%b\r\n" % (len(SSE), SSE))
        await writer.drain()
        await asyncio.sleep(pause)
        writer.write(b"0\r\n\r\n")

    return answer


async def read_events_then_hand_off(transport: HTTP1Transport, url: str, within: float) -> float:
    """Read the events, hand the body's end off; seconds the caller spent after the events."""
    response = await transport.handle_async_request(request(url))
    body = aiter(response.aiter_raw())
    assert await anext(body) == SSE
    started = time.monotonic()
    response.stream.finish_in_background(within)  # type: ignore[attr-defined]
    await response.aclose()
    return time.monotonic() - started


async def test_a_body_handed_off_before_its_end_still_returns_its_connection() -> None:
    async with peer(tail_after(0.2)) as (server, url):
        transport = HTTP1Transport()
        assert await read_events_then_hand_off(transport, url, within=5) < 0.1  # no waiting for it
        await asyncio.sleep(0.4)  # the end arrives meanwhile
        assert await read_events_then_hand_off(transport, url, within=5) < 0.1
        await transport.aclose()
    assert server.connections == 1


async def test_a_body_whose_end_does_not_come_in_time_closes_its_connection() -> None:
    async with peer(tail_after(1.0)) as (server, url):
        transport = HTTP1Transport()
        await read_events_then_hand_off(transport, url, within=0.1)
        await asyncio.wait_for(server.closed_by_client.wait(), 5)  # given up on: closed
        await transport.aclose()


async def test_an_idle_connection_the_server_closed_is_not_reused() -> None:
    async with peer(reply(CHUNKED, close=True)) as (server, url):
        transport = HTTP1Transport()
        assert await call(transport, url) == (200, SSE)
        await asyncio.sleep(0.1)  # the server's close arrives while the connection is idle
        assert await call(transport, url) == (200, SSE)
        await transport.aclose()
    assert server.connections == 2


async def test_refused_connection_is_a_connect_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: refused
        with pytest.raises(httpx.ConnectError):
            await HTTP1Transport().handle_async_request(request(f"http://127.0.0.1:{port}"))


async def test_silence_is_a_read_timeout_before_and_after_the_head() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(10)

    async def stalls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhalf")
        await asyncio.sleep(10)

    quick = {**TIMEOUT, "read": 0.2}
    async with peer(silent) as (_, a), peer(stalls) as (_, b):
        transport = HTTP1Transport()
        with pytest.raises(httpx.ReadTimeout):
            await transport.handle_async_request(
                httpx.Request("POST", f"{a}/x", content=b"{}", extensions={"timeout": quick})
            )
        response = await transport.handle_async_request(
            httpx.Request("POST", f"{b}/x", content=b"{}", extensions={"timeout": quick})
        )
        with pytest.raises(httpx.ReadTimeout):
            [chunk async for chunk in response.aiter_raw()]
        await transport.aclose()


async def test_a_short_timeout_on_a_connection_that_had_a_long_one_still_fires_on_time() -> None:
    answered = 0

    async def once_then_silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal answered
        answered += 1
        if answered == 1:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        else:
            await asyncio.sleep(10)

    async with peer(once_then_silent) as (server, url):
        transport = HTTP1Transport()
        assert await call(transport, url) == (200, b"ok")  # read timeout 5 s: a timer for later
        quick = httpx.Request("POST", f"{url}/x", content=b"{}", extensions={"timeout": {"read": 0.2}})
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            await transport.handle_async_request(quick)
        assert time.monotonic() - started < 2
        await transport.aclose()
    assert server.connections == 1  # the same connection both times


def rst(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset instead of a FIN, as a crashed peer or a middlebox does."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (reply(b"", close=True), httpx.RemoteProtocolError),  # hung up without answering
        (reply(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhalf", close=True), httpx.RemoteProtocolError),
        (reply(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n"), httpx.RemoteProtocolError),
        (reply(b"SMTP ready\r\n\r\n"), httpx.RemoteProtocolError),  # not HTTP at all
    ],
)
async def test_broken_answers_are_protocol_errors(answer: Answer, error: type[Exception]) -> None:
    async with peer(answer) as (_, url):
        with pytest.raises(error):
            await call(HTTP1Transport(), url)


async def test_a_reset_mid_body_is_a_read_error() -> None:
    async def resets(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nsome")
        await writer.drain()
        await asyncio.sleep(0.05)
        rst(writer)

    async with peer(resets) as (_, url):
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)) as caught:
            await call(HTTP1Transport(), url)
    assert "broke" in str(caught.value) or "closed" in str(caught.value)


async def test_a_consumer_that_does_not_read_stops_the_socket_being_read() -> None:
    sent = 0
    total = 64 * 1024 * 1024

    async def firehose(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % total)
        piece = b"x" * 65536
        while sent < total:
            writer.write(piece)
            sent += len(piece)
            await writer.drain()

    async with peer(firehose) as (_, url):
        transport = HTTP1Transport()
        response = await transport.handle_async_request(request(url))
        await asyncio.sleep(0.5)  # the consumer reads nothing meanwhile
        # What the peer got out is the socket buffers plus our one pause's worth, not the 64 MB.
        assert sent < 16 * 1024 * 1024, sent
        first = await anext(aiter(response.aiter_raw()))
        assert 0 < len(first) <= HIGH_WATER + 65536 * 4
        await response.aclose()
        await transport.aclose()


async def test_tls_with_the_certificates_httpx_is_told_to_trust(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    authority = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server_tls)
    ca_file = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    async with peer(reply(CHUNKED), tls=server_tls) as (server, url):
        with pytest.raises(httpx.ConnectError):  # by default, certifi's roots: this CA is unknown
            await call(HTTP1Transport(), url)
        monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
        transport = HTTP1Transport()
        assert await call(transport, url) == (200, SSE)
        assert await call(transport, url) == (200, SSE)
        await transport.aclose()
    assert server.connections == 1  # one kept-alive TLS connection (the refused handshake never got here)


async def test_a_proxy_named_by_the_environment_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    async with peer(reply(b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\nproxied")) as (proxy, url):
        monkeypatch.setenv("HTTP_PROXY", url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        transport = HTTP1Transport()
        assert await call(transport, "http://poe.invalid") == (200, b"proxied")
        await transport.aclose()
    assert proxy.requests[0].startswith(b"POST http://poe.invalid/bot/x HTTP/1.1")  # absolute form


def test_a_pool_survives_a_new_event_loop() -> None:
    async def both(transport: HTTP1Transport) -> tuple[int, bytes]:
        async with peer(reply(CHUNKED)) as (_, url):
            return await call(transport, url)

    transport = HTTP1Transport()
    assert asyncio.run(both(transport)) == (200, SSE)
    assert asyncio.run(both(transport)) == (200, SSE)  # connections of the old loop are dropped


def bot_answer(*texts: str, ends: bool = True, ended: asyncio.Event | None = None) -> Answer:
    """A bot-protocol answer: the texts as events, then done (or, if not ``ends``, text forever).
    The body's end comes 0.3 s after done; ``ended`` is set once it has been sent."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def chunk(event: bytes) -> bytes:
            return b"%x\r\n%b\r\n" % (len(event), event)

        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        for text in texts:
            writer.write(chunk(b'event: text\ndata: {"text": "%b"}\n\n' % text.encode()))
        if ends:
            writer.write(chunk(b"event: done\ndata: {}\n\n"))
            await writer.drain()
            await asyncio.sleep(0.3)
            writer.write(b"0\r\n\r\n")
            if ended is not None:
                ended.set()
            return
        while True:
            writer.write(chunk(b'event: text\ndata: {"text": "more "}\n\n'))
            await writer.drain()
            await asyncio.sleep(0.01)

    return answer


async def test_the_app_reuses_a_connection_after_done_and_closes_it_after_a_cut() -> None:
    messages = [{"role": "user", "content": "hi"}]
    ended = asyncio.Event()
    async with peer(bot_answer("Hello", " there", ended=ended)) as (server, url):
        app = create_app(Settings.from_mapping({"POE_BASE_URL": url}))
        async with Target(app=app).sdk() as sdk:
            for _ in range(3):
                ended.clear()
                answer = await sdk.chat.completions.create(model="bot", messages=messages)
                assert answer.choices[0].message.content == "Hello there"
                assert not ended.is_set()  # answered without waiting for the body's end
                await asyncio.wait_for(ended.wait(), 5)
                await asyncio.sleep(0.05)  # the end arrives: the connection goes back to the pool
    assert server.connections == 1  # one connection, kept alive across the three calls

    async with peer(bot_answer("one STOP two", ends=False)) as (server, url):
        app = create_app(Settings.from_mapping({"POE_BASE_URL": url}))
        async with Target(app=app).sdk() as sdk:
            answer = await sdk.chat.completions.create(model="bot", messages=messages, stop="STOP")
            assert (answer.choices[0].message.content, answer.choices[0].finish_reason) == ("one ", "stop")
            await asyncio.wait_for(server.closed_by_client.wait(), 5)  # the bot is told to stop


async def test_a_public_only_call_to_a_name_that_resolves_inside_connects_nowhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bot's file at ``files.example.com`` that DNS answers with 127.0.0.1 (or with a public
    address and a private one): refused before any connection; Poe's own calls are not public-only."""
    async with peer(reply(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")) as (server, url):
        port = int(url.rsplit(":", 1)[1])
        loop = asyncio.get_running_loop()
        for answers in (["127.0.0.1"], ["93.184.215.14", "10.0.0.1"], ["::ffff:127.0.0.1"]):

            async def resolve(host: str, *args: object, found: list[str] = answers, **kwargs: object) -> list:  # type: ignore[type-arg]
                family = socket.AF_INET6 if ":" in found[0] else socket.AF_INET
                return [(family, socket.SOCK_STREAM, 6, "", (address, port)) for address in found]

            monkeypatch.setattr(loop, "getaddrinfo", resolve)
            transport = HTTP1Transport()
            public = httpx.Request(
                "GET", f"http://files.example.com:{port}/x", extensions={"timeout": TIMEOUT, "public": True}
            )
            with pytest.raises(NotPublic):
                await transport.handle_async_request(public)
            await transport.aclose()
        assert server.connections == 0
        monkeypatch.setattr(loop, "getaddrinfo", lambda *a, **k: resolve("", found=["127.0.0.1"]))
        transport = HTTP1Transport()
        assert await call(transport, f"http://files.example.com:{port}") == (200, b"ok")  # not public-only
        await transport.aclose()
    assert server.connections == 1
