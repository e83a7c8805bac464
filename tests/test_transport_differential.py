"""Our HTTP/1.1 transport against httpx's default one (httpcore), request for request.

Each case runs the same request through ``adapters.transport.HTTP1Transport`` and through
``httpx.AsyncHTTPTransport`` and asserts the two outcomes are the same: the status and the body's
bytes (decoded, as httpx decodes them), or the kind of failure the proxy reports for it
(``adapters.upstream.failure_reason``). The servers are independent implementations run here -
uvicorn with h11 and with httptools (plain and over TLS), aiohttp's server, Node's ``http``,
Python's ``http.server`` - plus a raw socket for what no well-behaved server sends: bodies
delimited by the connection's close, informational (1xx) answers, trailers, a reset mid-body,
oversized and slow headers, and a server that closes a kept-alive connection as the next request
arrives (a POST must then fail loudly, never be lost).
"""

from __future__ import annotations

import asyncio
import gzip
import http.server
import shutil
import subprocess
import textwrap
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
import uvicorn
from aiohttp import web

from adapters.transport import HTTP1Transport
from adapters.upstream import failure_reason
from tests.peers.serve import free_port, serving_process, threaded

DATA = bytes(range(256)) * 40  # 10 KiB, every byte value
PIECES = [DATA[i : i + 1000] for i in range(0, len(DATA), 1000)]
TIMEOUT = {"connect": 5.0, "read": 5.0, "write": 5.0, "pool": 5.0}
Outcome = tuple[Any, ...]


async def outcome(
    transport: httpx.AsyncBaseTransport, method: str, url: str, body: bytes | None = None
) -> Outcome:
    """What ``transport`` makes of one request: ("ok", status, decoded body) or ("error", reason)."""
    request = httpx.Request(method, url, content=body, extensions={"timeout": TIMEOUT})
    try:
        response = await transport.handle_async_request(request)
        try:
            content = b"".join([chunk async for chunk in response.aiter_bytes()])
        finally:
            await response.aclose()
        return ("ok", response.status_code, content)
    except httpx.HTTPError as exc:
        return ("error", failure_reason(exc))


@asynccontextmanager
async def both() -> AsyncIterator[tuple[httpx.AsyncBaseTransport, httpx.AsyncBaseTransport]]:
    ours, theirs = HTTP1Transport(), httpx.AsyncHTTPTransport()
    try:
        yield ours, theirs
    finally:
        await ours.aclose()
        await theirs.aclose()


# -- well-behaved servers: the same five routes on each ------------------------------------------


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body, more = b"", True
    while more:
        message = await receive()
        body, more = body + message.get("body", b""), message.get("more_body", False)
    path = scope["path"]
    headers: list[tuple[bytes, bytes]] = []
    pieces = [DATA]
    if path == "/chunked":
        pieces = PIECES
    elif path == "/gzip":
        headers, pieces = [(b"content-encoding", b"gzip")], [gzip.compress(DATA)]
    elif path == "/echo":
        pieces = [body]
    elif path == "/port":
        pieces = [str(scope["client"][1]).encode()]
    if path != "/chunked":
        headers.append((b"content-length", str(sum(map(len, pieces))).encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for piece in pieces:
        await send({"type": "http.response.body", "body": piece, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


@contextmanager
def uvicorn_server(http: str, tls: tuple[str, str] | None = None) -> Iterator[str]:
    options: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "http": http,
        "log_level": "warning",
        "lifespan": "off",
    }
    if tls:
        options.update(ssl_certfile=tls[0], ssl_keyfile=tls[1])
    server = uvicorn.Server(uvicorn.Config(asgi_app, **options))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        threading.Event().wait(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def aiohttp_server() -> Iterator[str]:
    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if request.path == "/chunked":
            response = web.StreamResponse()
            response.enable_chunked_encoding()
            await response.prepare(request)
            for piece in PIECES:
                await response.write(piece)
            await response.write_eof()
            return response
        if request.path == "/gzip":
            return web.Response(body=gzip.compress(DATA), headers={"content-encoding": "gzip"})
        if request.path == "/echo":
            return web.Response(body=body)
        if request.path == "/port":
            peer = request.transport.get_extra_info("peername") if request.transport else ("", 0)
            return web.Response(body=str(peer[1]).encode())
        return web.Response(body=DATA)

    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    port = free_port()

    def run() -> None:
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        with serving_process_like(f"http://127.0.0.1:{port}"):
            yield f"http://127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


@contextmanager
def serving_process_like(url: str) -> Iterator[None]:
    """Wait until something answers at ``url``."""
    for _ in range(500):
        try:
            httpx.get(url, timeout=1)
            break
        except httpx.TransportError:
            threading.Event().wait(0.01)
    yield


NODE_SERVER = textwrap.dedent(
    """
    const http = require("node:http");
    const zlib = require("node:zlib");
    const DATA = Buffer.alloc(10240);
    for (let i = 0; i < DATA.length; i++) DATA[i] = i % 256;
    http.createServer((req, res) => {
      const chunks = [];
      req.on("data", (c) => chunks.push(c));
      req.on("end", () => {
        if (req.url === "/chunked") {
          res.writeHead(200);
          for (let i = 0; i < DATA.length; i += 1000) res.write(DATA.subarray(i, i + 1000));
          return res.end();
        }
        const body = req.url === "/gzip" ? zlib.gzipSync(DATA)
          : req.url === "/echo" ? Buffer.concat(chunks)
          : req.url === "/port" ? Buffer.from(String(req.socket.remotePort)) : DATA;
        const headers = { "content-length": body.length };
        if (req.url === "/gzip") headers["content-encoding"] = "gzip";
        res.writeHead(200, headers);
        res.end(body);
      });
    }).listen(Number(process.argv[2]), "127.0.0.1");
    """
)


@contextmanager
def node_server(tmp: Path) -> Iterator[str]:
    script = tmp / "server.cjs"
    script.write_text(NODE_SERVER)
    port = free_port()
    process = subprocess.Popen(["node", str(script), str(port)])
    with serving_process(process, f"http://127.0.0.1:{port}") as url:
        yield url


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.answer(b"")

    def do_POST(self) -> None:
        self.answer(self.rfile.read(int(self.headers.get("content-length", "0"))))

    def answer(self, body: bytes) -> None:
        self.send_response(200)
        if self.path == "/chunked":
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for piece in PIECES:
                self.wfile.write(b"%x\r\n%b\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
            return
        content = {"/gzip": gzip.compress(DATA), "/echo": body, "/port": str(self.client_address[1]).encode()}
        payload = content.get(self.path, DATA)
        if self.path == "/gzip":
            self.send_header("content-encoding", "gzip")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@contextmanager
def stdlib_server() -> Iterator[str]:
    with threaded(http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, str]:
    authority = trustme.CA()
    cert = authority.issue_cert("127.0.0.1")
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file, ca_file = folder / "cert.pem", folder / "key.pem", folder / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    authority.cert_pem.write_to_path(str(ca_file))
    return str(cert_file), str(key_file), str(ca_file)


SERVERS = ["uvicorn-h11", "uvicorn-httptools", "uvicorn-httptools-tls", "aiohttp", "node", "http.server"]


@pytest.fixture(scope="module", params=SERVERS)
def server(
    request: pytest.FixtureRequest, tls_files: tuple[str, str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    name = request.param
    if name == "node" and shutil.which("node") is None:
        pytest.skip("Node.js is not installed")
    with pytest.MonkeyPatch.context() as env:
        if name.endswith("-tls"):
            env.setenv("SSL_CERT_FILE", tls_files[2])  # both transports trust what httpx is told to
        contexts = {
            "uvicorn-h11": lambda: uvicorn_server("h11"),
            "uvicorn-httptools": lambda: uvicorn_server("httptools"),
            "uvicorn-httptools-tls": lambda: uvicorn_server("httptools", tls_files[:2]),
            "aiohttp": aiohttp_server,
            "node": lambda: node_server(tmp_path_factory.mktemp("node")),
            "http.server": stdlib_server,
        }
        with contexts[name]() as url:
            yield url


@pytest.mark.parametrize(
    ("method", "path", "body", "expected"),
    [
        ("GET", "/sized", None, DATA),
        ("GET", "/chunked", None, DATA),
        ("GET", "/gzip", None, DATA),
        ("POST", "/echo", b'{"a": 1}' * 1000, b'{"a": 1}' * 1000),
        ("POST", "/echo", b"", b""),
    ],
)
async def test_well_formed_answers_are_read_alike(
    server: str, method: str, path: str, body: bytes | None, expected: bytes
) -> None:
    async with both() as (ours, theirs):
        mine, reference = (
            await outcome(ours, method, server + path, body),
            await outcome(theirs, method, server + path, body),
        )
    assert mine == reference
    assert mine == ("ok", 200, expected)  # and both are right


async def test_keep_alive_reuse_is_alike(server: str) -> None:
    """Two calls in a row on one transport: the second on the first's connection, for both."""
    async with both() as (ours, theirs):
        reuse = []
        for transport in (ours, theirs):
            first = await outcome(transport, "GET", f"{server}/port")
            second = await outcome(transport, "GET", f"{server}/port")
            reuse.append(first[2] == second[2])
    assert reuse == [True, True]


# -- what no well-behaved server sends: exact bytes from a raw socket ---------------------------

Answer = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


def raw(data: bytes, *, then: str = "keep") -> Answer:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> None:
        writer.write(data)
        await writer.drain()
        if then == "close":
            writer.close()
        elif then == "reset":
            writer.transport.abort()
        elif then == "stall":
            await asyncio.sleep(10)

    return answer


async def close_on_second(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> None:
    """Answer the first request (keep-alive, as far as it says) and drop the connection when the
    next request arrives on it, without a word: the race of a server timing out an idle connection."""
    if index == 0:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfirst")
        await writer.drain()
    else:
        writer.transport.abort()


@asynccontextmanager
async def raw_server(answer: Answer) -> AsyncIterator[str]:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = 0
        try:
            while not writer.is_closing():
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":", 1)[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                await reader.readexactly(length)
                await answer(reader, writer, index)
                index += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    listening = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{listening.sockets[0].getsockname()[1]}"
    finally:
        listening.close()


CHUNKED_WITH_TRAILERS = (
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-sum\r\n\r\n"
    + b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in PIECES)
    + b"0\r\nx-sum: 1234\r\n\r\n"
)
RAW_CASES: dict[str, tuple[Answer, Outcome]] = {
    "a body delimited by the close": (
        raw(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n" + DATA, then="close"),
        ("ok", 200, DATA),
    ),
    "informational answers first": (
        raw(
            b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\n"
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfinal"
        ),
        ("ok", 200, b"final"),
    ),
    "trailers after a chunked body": (raw(CHUNKED_WITH_TRAILERS), ("ok", 200, DATA)),
    "a reset mid-body": (
        raw(b"HTTP/1.1 200 OK\r\ncontent-length: 10240\r\n\r\n" + DATA[:100], then="reset"),
        ("error", "reset"),
    ),
    "a body shorter than it said, then the close": (
        raw(b"HTTP/1.1 200 OK\r\ncontent-length: 10240\r\n\r\n" + DATA[:100], then="close"),
        ("error", "reset"),
    ),
    "an oversized header": (
        raw(b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * 200_000 + b"\r\ncontent-length: 2\r\n\r\nok"),
        ("error", "reset"),
    ),
    "headers that never end": (raw(b"HTTP/1.1 200 OK\r\nx-slow: 1\r\n", then="stall"), ("error", "timeout")),
    "not HTTP at all": (raw(b"SSH-2.0-OpenSSH_9.6\r\n", then="close"), ("error", "reset")),
}


@pytest.mark.parametrize("case", list(RAW_CASES))
async def test_malformed_and_edge_answers_fail_or_succeed_alike(
    case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    answer, expected = RAW_CASES[case]
    monkeypatch.setitem(TIMEOUT, "read", 1.0)
    async with raw_server(answer) as url, both() as (ours, theirs):
        mine, reference = await outcome(ours, "GET", f"{url}/x"), await outcome(theirs, "GET", f"{url}/x")
    assert mine == reference
    assert mine == expected


async def test_a_post_on_a_connection_the_server_drops_is_never_lost_silently() -> None:
    async with raw_server(close_on_second) as url, both() as (ours, theirs):
        results = []
        for transport in (ours, theirs):
            first = await outcome(transport, "POST", f"{url}/x", b'{"n": 1}')
            second = await outcome(transport, "POST", f"{url}/x", b'{"n": 2}')
            results.append((first, second))
    assert results[0] == results[1]
    first, second = results[0]
    assert first == ("ok", 200, b"first")
    assert second == ("error", "reset")  # said, not swallowed: the proxy answers 502 and the client decides
