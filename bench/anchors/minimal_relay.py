"""Anchor: the minimal relay. Starlette + httpx with their defaults, under plain uvicorn: what a
reasonable person writes in 40 lines to pass OpenAI requests through to an OpenAI-compatible
upstream. No conversion, no validation. Usage: UPSTREAM=http://127.0.0.1:9000 uvicorn ...:app
"""

from __future__ import annotations

import os

import httpx
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

UPSTREAM = os.environ["UPSTREAM"]
client = httpx.AsyncClient(base_url=UPSTREAM, timeout=600)


async def relay(request: Request) -> Response:
    headers = {"authorization": request.headers.get("authorization", ""), "content-type": "application/json"}
    upstream = client.build_request("POST", request.url.path, content=await request.body(), headers=headers)
    response = await client.send(upstream, stream=True)
    return StreamingResponse(
        response.aiter_raw(),
        status_code=response.status_code,
        media_type=response.headers.get("content-type"),
        background=BackgroundTask(response.aclose),
    )


app = Starlette(routes=[Route("/v1/chat/completions", relay, methods=["POST"])])
