"""Where ours spends its time: the same conversion with layers taken away, one at a time.

ASGI apps for ``make bench`` (``uvicorn bench.ablations:app``, the variant named by ABLATION):

* ``no_starlette``: our app's own chat handler and edge layer (CORS, ids, logs), without
  Starlette's router and middleware around them.
* ``exchange_httpx``: no app at all: a bare ASGI function drives ``core.exchange`` (what the
  Netlify function runs) and sends its calls as ``httpx.Request``s through our transport.
* ``exchange_raw``: the same, with the upstream call written as bytes to a bare asyncio +
  httptools connection: about the floor of a converting proxy in Python.

None of these is a product: they have no disconnect handling, no timeouts and no error paths
worth the name. They exist to put numbers on what each layer of the real one costs.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import httpx

from adapters.app import create_app
from adapters.http import EdgeMiddleware, Endpoint, new_token
from adapters.transport import HTTP1Transport
from bench.rawhttp import Connection
from core.exchange import Exchange, Reply, start
from core.settings import Settings

Scope = dict[str, Any]


async def read_body(receive: Any) -> bytes:
    body, more = b"", True
    while more:
        message = await receive()
        body, more = body + message.get("body", b""), message.get("more_body", False)
    return body


async def answer(send: Any, reply: Reply) -> None:
    headers = [(k.encode(), v.encode()) for k, v in reply.headers.items()]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})


def exchange_app(settings: Settings, call_upstream: Any) -> Any:
    """A bare ASGI app around ``core.exchange``: one call per request (n = 1), no streaming."""

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        started = start(
            scope["method"],
            scope["path"],
            headers,
            await read_body(receive),
            settings,
            new_token=new_token,
            now=time.time(),
        )
        if isinstance(started, Exchange):
            await call_upstream(started)
            started.end(0)
            started = started.reply()
        await answer(send, started)

    return app


def with_httpx(settings: Settings) -> Any:
    transport = HTTP1Transport()
    timeouts = {"connect": settings.connect_timeout, "read": settings.read_timeout}

    async def call_upstream(exchange: Exchange) -> None:
        call = exchange.calls[0]
        request = httpx.Request(
            call.method, call.url, headers=call.headers, content=call.body, extensions={"timeout": timeouts}
        )
        response = await transport.handle_async_request(request)
        async for chunk in response.aiter_raw():
            exchange.feed(0, chunk)

    return exchange_app(settings, call_upstream)


def with_raw_connection(settings: Settings) -> Any:
    idle: list[Connection] = []
    host, port = settings.poe_base_url.removeprefix("http://").split(":")

    async def call_upstream(exchange: Exchange) -> None:
        call = exchange.calls[0]
        path = call.url.removeprefix(settings.poe_base_url).encode()
        fields = b"".join(b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in call.headers.items())
        body = call.body or b""
        raw = b"POST %s HTTP/1.1\r\nHost: %s:%s\r\n%sContent-Length: %d\r\n\r\n%s" % (
            path,
            host.encode(),
            port.encode(),
            fields,
            len(body),
            body,
        )
        if idle:
            connection = idle.pop()
        else:
            _, connection = await asyncio.get_running_loop().create_connection(Connection, host, int(port))
        await connection.call(raw, lambda chunk: exchange.feed(0, chunk))
        idle.append(connection)

    return exchange_app(settings, call_upstream)


def ablation(name: str, settings: Settings) -> Any:
    if name == "no_starlette":
        proxy = create_app(settings).state.proxy
        return EdgeMiddleware(Endpoint(proxy.chat_completions))
    if name == "exchange_httpx":
        return with_httpx(settings)
    if name == "exchange_raw":
        return with_raw_connection(settings)
    raise ValueError(f"unknown ablation {name!r}")


app = ablation(os.environ.get("ABLATION", "no_starlette"), Settings.from_mapping(os.environ))
