"""Where ours spends its time: the same request path with layers taken away, one at a time.

ASGI apps for ``make bench`` (``uvicorn bench.ablations:app``, the variant named by ABLATION):

* ``driver_raw``: our ASGI app and asyncio driver, with the upstream call written as bytes to a
  bare asyncio + httptools connection instead of httpx's request/response over our transport.
* ``exchange_raw``: no app and no driver: a bare ASGI function runs ``core.exchange``'s actions
  in the simplest loop that works for one non-streamed call, over the same bare connection:
  about the floor of this design (the whole conversion, nothing around it).

None of these is a product: they have no disconnect handling, no timeouts and no error paths
worth the name. They exist to put numbers on what each layer of the real one costs.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from adapters.app import create_app
from adapters.driver import new_token
from bench.rawhttp import Connection
from core.exchange import DONE, READ_BODY, WAIT, Proxy, Respond, StartCall
from core.settings import Settings

Scope = dict[str, Any]


class RawUpstream:
    """The driver's ``Upstream`` over bare keep-alive connections: the body is read whole, then
    handed over as one chunk."""

    def __init__(self, base_url: str) -> None:
        self._idle: list[Connection] = []
        self._host, port = base_url.removeprefix("http://").split(":")
        self._port = int(port)

    async def call(self, call: StartCall, on_chunk: Callable[[bytes], None]) -> int:
        path = call.url.split(f":{self._port}", 1)[1].encode()
        fields = b"".join(b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in call.headers.items())
        body = call.body or b""
        raw = b"%s %s HTTP/1.1\r\nHost: %s\r\n%sContent-Length: %d\r\n\r\n%s" % (
            call.method.encode(),
            path,
            self._host.encode(),
            fields,
            len(body),
            body,
        )
        if self._idle:
            connection = self._idle.pop()
        else:
            loop = asyncio.get_running_loop()
            _, connection = await loop.create_connection(Connection, self._host, self._port)
        status = await connection.call(raw, on_chunk)
        self._idle.append(connection)
        return status

    async def send(self, call: StartCall) -> RawResponse:
        chunks: list[bytes] = []
        status = await self.call(call, chunks.append)
        return RawResponse(status, chunks)

    async def aclose(self) -> None:
        self._idle.clear()


class RawResponse:
    def __init__(self, status: int, chunks: list[bytes]) -> None:
        self.status = status
        self.headers: dict[str, str] = {}
        self._chunks = chunks

    async def chunks(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk

    async def aclose(self) -> None:
        return None

    def finish_in_background(self, seconds: float) -> None:
        return None


def exchange_app(settings: Settings) -> Any:
    """A bare ASGI function around ``core.exchange``: one call per request (n = 1), no streaming."""
    proxy = Proxy(settings, store_missing=None)
    upstream = RawUpstream(settings.poe_base_url)

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        exchange = proxy.request(
            scope["method"], scope["path"], headers, new_token=new_token, now=time.time()
        )
        while (action := exchange.next_action()) is not DONE:
            if action is READ_BODY:
                message = await receive()
                exchange.body(message.get("body", b""), message.get("more_body", False))
            elif isinstance(action, StartCall):
                chunks: list[bytes] = []
                exchange.answered(action.call, await upstream.call(action, chunks.append), {})
                for chunk in chunks:
                    exchange.data(action.call, chunk)
                exchange.ended(action.call)
            elif isinstance(action, Respond):
                headers_out = [(k.encode(), v.encode()) for k, v in action.headers.items()]
                await send({"type": "http.response.start", "status": action.status, "headers": headers_out})
                await send({"type": "http.response.body", "body": action.body})
            elif action is WAIT:
                raise RuntimeError("one non-streamed call only")

    return app


def ablation(name: str, settings: Settings) -> Any:
    if name == "driver_raw":
        app = create_app(settings)
        app.upstream = RawUpstream(settings.poe_base_url)  # type: ignore[assignment]
        return app
    if name == "exchange_raw":
        return exchange_app(settings)
    raise ValueError(f"unknown ablation {name!r}")


app = ablation(os.environ.get("ABLATION", "driver_raw"), Settings.from_mapping(os.environ))
