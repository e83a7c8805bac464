"""A fast fake Poe on 127.0.0.1: the bot protocol (``POST /bot/<name>``: SSE ``text`` ... ``done``)
and the OpenAI-compatible API (``POST /v1/chat/completions``, streamed or not, with usage).

aiohttp on uvloop, so the upstream is not what the benchmark measures. Shape of every answer,
from the environment: FAKE_CHUNKS (default 32), FAKE_CHUNK_DELAY (s between chunks, default 0)
and FAKE_FIRST_DELAY (s before the first chunk, default 0), and FAKE_SPLIT (1: each event in a
write of its own even with no pause between them, as Poe streams a bot's tokens back to back;
default 0: events with no pause between them go out in one write, as a server's buffer would
send them). A bot or model whose name ends in
``-e<N>`` answers with N events instead (``fake-e300``); one whose name contains ``ttfb`` waits
50 ms before its first chunk (every proxy passes the model name through).
Usage: python bench/fake_upstream.py <port>
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import sys
import time
from collections.abc import AsyncIterator

import uvloop
from aiohttp import web

CHUNKS = int(os.environ.get("FAKE_CHUNKS", "32"))
CHUNK_DELAY = float(os.environ.get("FAKE_CHUNK_DELAY", "0"))
FIRST_DELAY = float(os.environ.get("FAKE_FIRST_DELAY", "0"))
SPLIT = os.environ.get("FAKE_SPLIT", "0") == "1"
WORD = "token "


def events(name: str) -> int:
    """How many content events ``name`` answers with."""
    head, _, count = name.rpartition("-e")
    return int(count) if head and count.isdigit() else CHUNKS


def delays(name: str) -> tuple[float, float]:
    return (0.05 if "ttfb" in name else FIRST_DELAY), CHUNK_DELAY


async def paced(name: str) -> AsyncIterator[list[int]]:
    """The chunk indexes, in groups: a group is what can be written at once (no pause inside)."""
    first, between = delays(name)
    group: list[int] = []
    for index in range(events(name)):
        pause = first if index == 0 else between
        if pause or SPLIT:
            if group:
                yield group
                group = []
            if pause:
                await asyncio.sleep(pause)
        group.append(index)
    if group:
        yield group


async def sse(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"content-type": "text/event-stream", "cache-control": "no-cache"})
    await response.prepare(request)
    return response


TEXT_EVENT = b'event: text\ndata: {"text": "' + WORD.encode() + b'"}\n\n'


async def bot(request: web.Request) -> web.StreamResponse:
    await request.read()
    response = await sse(request)
    head = b'event: meta\ndata: {"content_type": "text/markdown"}\n\n'
    async for group in paced(request.match_info["name"]):
        await response.write(head + TEXT_EVENT * len(group))
        head = b""
    await response.write(b"event: done\ndata: {}\n\n")
    return response


STARTED = int(time.time())


@functools.lru_cache(maxsize=64)
def chat_events(model: str) -> tuple[list[bytes], bytes, bytes]:
    """A model's stream, encoded once: the content chunks, the finish chunk, the usage chunk.
    (Encoding them per call would put the fake's JSON work on every measured request.)"""
    base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": STARTED, "model": model}

    def event(choices: list[dict[str, object]], usage: dict[str, int] | None = None) -> bytes:
        return b"data: " + json.dumps({**base, "choices": choices, "usage": usage}).encode() + b"\n\n"

    def choice(delta: dict[str, str], finish: str | None = None) -> dict[str, object]:
        return {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}

    content = [
        event([choice({"role": "assistant", "content": WORD} if i == 0 else {"content": WORD})])
        for i in range(events(model))
    ]
    return content, event([choice({}, "stop")]), event([], usage_of(model))


def usage_of(model: str) -> dict[str, int]:
    return {"prompt_tokens": 10, "completion_tokens": events(model), "total_tokens": 10 + events(model)}


async def chat(request: web.Request) -> web.StreamResponse:
    body = json.loads(await request.read())
    model = body.get("model", "fake")
    if not body.get("stream"):
        first, between = delays(model)
        if first or between:
            await asyncio.sleep(first + between * max(events(model) - 1, 0))
        message = {"role": "assistant", "content": WORD * events(model)}
        choice = {"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}
        answer = {"id": "chatcmpl-fake", "object": "chat.completion", "created": STARTED, "model": model}
        return web.json_response({**answer, "choices": [choice], "usage": usage_of(model)})
    response = await sse(request)
    content, finish, usage = chat_events(model)
    async for group in paced(model):
        await response.write(b"".join(content[i] for i in group))
    tail = finish + (usage if (body.get("stream_options") or {}).get("include_usage") else b"")
    await response.write(tail + b"data: [DONE]\n\n")
    return response


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/bot/{name}", bot)
    app.router.add_post("/v1/chat/completions", chat)
    return app


if __name__ == "__main__":
    uvloop.install()
    web.run_app(make_app(), host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
