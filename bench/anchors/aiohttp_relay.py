"""Anchor: the hand-tuned relay. aiohttp server + one aiohttp ClientSession (keep-alive pool,
no per-request setup), streaming bytes through as they come. Usage: python ... <port> <upstream>
"""

from __future__ import annotations

import sys

import aiohttp
from aiohttp import web


async def relay(request: web.Request) -> web.StreamResponse:
    session: aiohttp.ClientSession = request.app["session"]
    headers = {"authorization": request.headers.get("authorization", ""), "content-type": "application/json"}
    async with session.post(
        request.app["upstream"] + request.path, data=await request.read(), headers=headers
    ) as up:
        response = web.StreamResponse(status=up.status, headers={"content-type": up.headers["content-type"]})
        await response.prepare(request)
        async for chunk in up.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
        return response


async def start(app: web.Application) -> None:
    app["session"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=None))


async def stop(app: web.Application) -> None:
    await app["session"].close()


if __name__ == "__main__":
    app = web.Application()
    app["upstream"] = sys.argv[2]
    app.router.add_post("/v1/chat/completions", relay)
    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
