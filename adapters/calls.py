"""Upstream calls that produce choices: one call per choice, ``n`` of them merged.

A ``ChoiceCall`` owns one upstream request and the core converter that turns its events into
chunks; ``merge`` interleaves several calls' chunks as they arrive (``n > 1`` is emulated by
parallel calls), with a bounded queue so a slow client slows the producers instead of
growing memory.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Mapping, Sequence
from typing import Any, TypeVar

from core.chat_stream import ChoiceReader, Converter

from .upstream import PoeUpstream, finish_body, raw_chunks, upstream_faults

T = TypeVar("T")
Chunks = list[dict[str, Any]]
DRAIN_SECONDS = 1.0  # how long the end of a body whose last event has come may take


class ChoiceCall:
    def __init__(
        self, upstream: PoeUpstream, path: str, api_key: str, body: Mapping[str, Any], converter: Converter
    ) -> None:
        self._upstream = upstream
        self._path = path
        self._api_key = api_key
        self._body = body
        self.converter = converter

    async def chunks(self) -> AsyncGenerator[Chunks, None]:
        """Chunks as upstream bytes arrive; stops reading once the choice is complete."""
        reader = ChoiceReader(self.converter)
        response = await self._upstream.open_stream(self._path, self._api_key, self._body)
        try:
            body = aiter(raw_chunks(response))
            with upstream_faults():
                async for data in body:
                    chunks = reader.feed(data)
                    if chunks:
                        yield chunks
                    if reader.done:
                        break
                else:
                    chunks = reader.close()
                    if chunks:
                        yield chunks
            if reader.error is not None:
                raise reader.error
            if not reader.cut:
                # Upstream said it is done and its body ends right behind that: let the end come,
                # so the connection goes back to the pool instead of being closed. (After a cut by
                # the proxy, closing it is the point: that stops Poe generating.)
                await finish_body(response, body, DRAIN_SECONDS)
        finally:
            await response.aclose()

    async def run(self) -> None:
        """Consume the whole call (non-streaming responses read the converter afterwards)."""
        async for _ in self.chunks():
            pass


async def gather_or_fail(*work: Awaitable[T]) -> list[T]:
    """Run ``work`` concurrently; the first failure cancels the rest and is raised as it is.

    (``asyncio.TaskGroup`` would wrap it in an ``ExceptionGroup``; callers want the OpenAIError.)
    """
    tasks = [asyncio.ensure_future(w) for w in work]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        return [task.result() for task in tasks]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def run_all(calls: Sequence[ChoiceCall]) -> None:
    """Run every call to completion; the first failure cancels the others."""
    if len(calls) == 1:
        await calls[0].run()
        return
    await gather_or_fail(*(call.run() for call in calls))


_END = object()


def merge(calls: Sequence[ChoiceCall]) -> AsyncGenerator[Chunks, None]:
    """All calls' chunks, in arrival order. The first failure ends the merge and cancels the rest."""
    return calls[0].chunks() if len(calls) == 1 else _interleave(calls)


async def _interleave(calls: Sequence[ChoiceCall]) -> AsyncGenerator[Chunks, None]:
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=len(calls))

    async def pump(call: ChoiceCall) -> None:
        # Not in a ``finally``: once cancelled, a put into a full queue would wait forever.
        try:
            async for chunks in call.chunks():
                await queue.put(chunks)
        except Exception as exc:  # handed to the consumer, which re-raises it
            await queue.put(exc)
            return
        await queue.put(_END)

    tasks = [asyncio.create_task(pump(call)) for call in calls]
    try:
        running = len(tasks)
        while running:
            item = await queue.get()
            if item is _END:
                running -= 1
            elif isinstance(item, Exception):
                raise item
            else:
                yield item
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
