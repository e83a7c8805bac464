"""Groups of upstream calls a flow waits on: plain JSON calls, and one SSE call per choice.

A group starts its calls together. A call Poe refuses (any status but 200) or that fails in
transit fails the whole group with the OpenAI error for it, and the group's other calls are
stopped. ``JsonCalls`` gives the flow every call's parsed JSON answer; ``ChoiceCalls`` converts
each call's events as they arrive and, when the client asked for a stream, writes the chunks out
at once through a ``Wire`` (the event format of the client's API).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from .chat_stream import ChoiceReader, EventConverter, total_usage
from .errors import UPSTREAM_ERROR_BODY_LIMIT, OpenAIError, error_from_upstream_status, not_json
from .flow import (
    Action,
    Context,
    FailureReason,
    StartCall,
    Step,
    StopCall,
    UpstreamRequest,
    Write,
    transport_error,
)


class CallGroup(Step):
    """Calls started together; subclasses read the bodies of the ones Poe answered with 200."""

    def __init__(self, context: Context, requests: Sequence[UpstreamRequest]) -> None:
        self._context = context
        self._requests = requests
        self.calls = len(requests)
        self._open: set[int] = set()
        self._refused: dict[int, tuple[int, Mapping[str, str], bytearray]] = {}

    def start(self) -> list[Action]:
        self._open = set(range(self.calls))
        return [StartCall(self.first_call + i, *request) for i, request in enumerate(self._requests)]

    def answered(self, index: int, status: int, headers: Mapping[str, str]) -> list[Action]:
        if status != 200:  # read (the start of) its body: the error message is in there
            self._refused[index] = (status, headers, bytearray())
        return []

    def data(self, index: int, data: bytes) -> list[Action]:
        if index not in self._open:
            return []
        refused = self._refused.get(index)
        if refused is None:
            return self._body(index, data)
        refused[2].extend(data)
        return self._refuse(index) if len(refused[2]) >= UPSTREAM_ERROR_BODY_LIMIT else []

    def ended(self, index: int) -> list[Action]:
        if index not in self._open:
            return []
        self._open.discard(index)
        return self._refuse(index) if index in self._refused else self._end(index)

    def failed(self, index: int, reason: FailureReason) -> list[Action]:
        if index not in self._open:
            return []
        self._open.discard(index)
        if index in self._refused:  # its error body broke off: what came of it is enough
            return self._refuse(index)
        return self._fail(transport_error(reason))

    def _body(self, index: int, data: bytes) -> list[Action]:
        raise NotImplementedError

    def _end(self, index: int) -> list[Action]:
        raise NotImplementedError

    def _refuse(self, index: int) -> list[Action]:
        status, headers, body = self._refused[index]
        return self._fail(error_from_upstream_status(status, bytes(body), headers=headers))

    def _fail(self, error: OpenAIError) -> list[Action]:
        self.done, self.error = True, error
        stops: list[Action] = [StopCall(self.first_call + i, False) for i in sorted(self._open)]
        self._open.clear()
        return stops

    def _stop(self, index: int, *, reuse: bool) -> list[Action]:
        self._open.discard(index)
        return [StopCall(self.first_call + index, reuse)]


class JsonCalls(CallGroup):
    """Calls answered with JSON (models, embeddings, uploads); ``result``: the parsed answers."""

    def __init__(self, context: Context, requests: Sequence[UpstreamRequest]) -> None:
        super().__init__(context, requests)
        self._bodies = [bytearray() for _ in requests]
        self._left = len(requests)

    def _body(self, index: int, data: bytes) -> list[Action]:
        self._bodies[index].extend(data)
        return []

    def _end(self, index: int) -> list[Action]:
        self._left -= 1
        if self._left == 0:
            try:
                self.result = [json.loads(body) for body in self._bodies]
            except ValueError:
                return self._fail(not_json())
            self.done = True
        return []


class Wire(Protocol):
    """How a stream of chat chunks is written to the client, in its API's event format."""

    def head(self) -> bytes:
        """What goes first, with the response head."""

    def chunks(self, chunks: list[dict[str, Any]]) -> bytes:
        """Chunks just converted (possibly no bytes at all)."""

    def tail(self, usage: dict[str, Any]) -> bytes:
        """The end of a stream that went well."""

    def error(self, error: OpenAIError) -> bytes:
        """The last events of a stream that failed after it had begun."""


class ChoiceCalls(CallGroup):
    """One bot-protocol or OpenAI-compatible SSE call per choice; ``result``: the converters.

    With a ``wire`` (the client asked for a stream) each call's chunks leave as soon as they are
    converted. The response waits for the first of them, so that Poe refusing the call, or a bot
    failing before it says anything, still reaches the client as an HTTP error status.
    """

    def __init__(
        self,
        context: Context,
        planned: Sequence[tuple[UpstreamRequest, EventConverter]],
        prompt_tokens: Sequence[int],
        wire: Wire | None = None,
    ) -> None:
        super().__init__(context, [request for request, _ in planned])
        self.converters = [converter for _, converter in planned]
        self._readers = [ChoiceReader(converter) for converter in self.converters]
        self._prompt_tokens = prompt_tokens
        self._wire = wire
        self._streaming = False
        self._head = b""
        self._left = len(planned)

    def _body(self, index: int, data: bytes) -> list[Action]:
        reader = self._readers[index]
        return self._converted(index, reader, reader.feed(data), ended=False)

    def _end(self, index: int) -> list[Action]:
        reader = self._readers[index]
        return self._converted(index, reader, reader.close(), ended=True)

    def _converted(
        self, index: int, reader: ChoiceReader, chunks: list[dict[str, Any]], *, ended: bool
    ) -> list[Action]:
        actions: list[Action] = []
        if chunks and self._wire is not None:
            out = self._wire.chunks(chunks)
            if out:
                actions.append(self.send(out))
        if reader.error is not None:  # what came before it has gone out; the error ends the stream
            return actions + self._fail(reader.error)
        if not ended and reader.done:  # complete: nothing more Poe sends can change it
            actions += self._stop(index, reuse=not reader.cut)  # after a cut, closing stops Poe
            ended = True
        if ended:
            self._left -= 1
            if self._left == 0:
                self.done, self.result = True, self.converters
                if self._wire is not None:
                    tail = self._wire.tail(total_usage(self.converters, self._prompt_tokens))
                    if tail or not self._streaming:
                        actions.append(self.send(tail))
        return actions

    def start(self) -> list[Action]:
        if self._wire is not None:
            self._head = self._wire.head()  # first: the events after it are numbered after it
        return super().start()

    def send(self, out: bytes) -> Action:
        """Write ``out`` to the client (the stream's head goes with the first): chunks as they
        are converted, and a wire's held last events once the calls are done."""
        if self._streaming:
            return Write(out)
        self._streaming = True
        wire = self._wire
        assert wire is not None
        return self._context.stream_head(self._head + out, wire.error)
