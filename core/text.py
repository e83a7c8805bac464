"""Stop sequences and length limits applied to text that arrives in pieces.

Poe bots may ignore ``stop`` and ``max_tokens``; the proxy enforces both itself. To cut at a
stop sequence that straddles two chunks, the gate holds back only the tail of the text that
could still become a stop sequence - never more - so streaming stays immediate.
"""

from __future__ import annotations

from typing import Literal

GateReason = Literal["stop", "length"]


class TextGate:
    """Feed text with ``push``; emit what it returns; call ``finish`` at the end of the stream."""

    __slots__ = ("_held", "_max_chars", "_stops", "emitted_chars", "matched", "reason")

    def __init__(self, stop: tuple[str, ...] = (), max_chars: int | None = None) -> None:
        self._stops = tuple(s for s in stop if s)
        self._max_chars = max_chars
        self._held = ""
        self.emitted_chars = 0
        self.reason: GateReason | None = None
        self.matched: str | None = None  # the stop sequence that ended the text, if one did

    @property
    def closed(self) -> bool:
        """True once a stop sequence or the length limit ended the text: drop the rest."""
        return self.reason is not None

    def push(self, text: str) -> str:
        if self.reason is not None or not text:
            return ""
        if not self._stops and self._max_chars is None:
            self.emitted_chars += len(text)
            return text
        buffer = self._held + text
        stop_at = self._first_stop(buffer)
        hold_from = len(buffer) - self._partial_stop_length(buffer)
        if stop_at is not None and stop_at <= hold_from:
            return self._cut(buffer, stop_at)
        # A longer stop sequence may yet start before a complete shorter one ("DND" vs "N" in
        # "DDN"): hold from the earliest possible start; the held text is shorter than a stop.
        self._held = buffer[hold_from:]
        return self._release(buffer[:hold_from], None)

    def finish(self) -> str:
        """The stream ended: cut the held text at a stop sequence it holds, or release it all."""
        if self.reason is not None:
            return ""
        held, self._held = self._held, ""
        stop_at = self._first_stop(held)
        if stop_at is not None:
            return self._cut(held, stop_at)
        return self._release(held, None)

    def _cut(self, buffer: str, stop_at: int) -> str:
        """``buffer`` up to the stop sequence found at ``stop_at``, which ends the text."""
        self.matched = next(stop for stop in self._stops if buffer.startswith(stop, stop_at))
        return self._release(buffer[:stop_at], "stop")

    def _release(self, text: str, reason: GateReason | None) -> str:
        if self._max_chars is not None and self.emitted_chars + len(text) > self._max_chars:
            text = text[: self._max_chars - self.emitted_chars]
            reason = "length"
        if reason is not None:
            self.reason = reason
            self._held = ""
        self.emitted_chars += len(text)
        return text

    def _first_stop(self, buffer: str) -> int | None:
        best: int | None = None
        for stop in self._stops:
            at = buffer.find(stop)
            if at != -1 and (best is None or at < best):
                best = at
        return best

    def _partial_stop_length(self, buffer: str) -> int:
        """Length of the longest tail of ``buffer`` that is a proper prefix of a stop sequence."""
        longest = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(buffer)), longest, -1):
                if buffer.endswith(stop[:size]):
                    longest = size
                    break
        return longest
