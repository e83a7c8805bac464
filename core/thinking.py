"""A thinking bot's reasoning, read out of its text (the bot backend).

Over the bot protocol a bot has only text to give (``text`` events). Poe's thinking bots give
their thinking as Poe's app shows it: a line ``*Thinking...*``, a blank line, the thinking as a
Markdown quote (each line begins ``> ``; its paragraphs are separated by ``>`` lines), then a
blank line and the answer. Poe's own transcripts read::

    *Thinking...*

    > **Clarifying PnL Reporting**
    >
    > I'm thinking about how mark-to-market fluctuations should ...

    The answer ...

``ThinkingSplitter`` reads that shape as the text streams in, one piece at a time, and says of
each piece what is reasoning (the quote, its ``> `` marks taken off) and what is the answer.
Text that does not open with ``*Thinking...*`` is all answer; a bot that thinks in any other
shape cannot be told from its answer, and its thinking stays in the answer.
"""

from __future__ import annotations

HEADER = "*Thinking...*"


class ThinkingSplitter:
    """Feed a bot's text as it comes; each call says ``(reasoning, answer)`` of what it can tell
    so far. It holds back only what it cannot yet tell: the header's first characters, a line
    whose first character has not come, and blank lines until the next line says what they are."""

    __slots__ = ("_blank", "_buffer", "_line_sent", "_said", "_state")

    def __init__(self) -> None:
        self._state = "start"  # start: is it the header?; thinking: in the quote; answer: the rest
        self._buffer = ""  # what is not yet told: the start, or the quote's unfinished line
        self._line_sent = 0  # how much of the unfinished quote line has gone out as reasoning
        self._blank = False  # blank lines since the last quote line: inside the quote, or its end
        self._said = False  # some reasoning has gone out

    @property
    def answering(self) -> bool:
        """The answer has begun: all that follows is answer."""
        return self._state == "answer"

    def feed(self, text: str) -> tuple[str, str]:
        if self._state == "answer":
            return "", text
        self._buffer += text
        if self._state == "start":
            opening = self._buffer.lstrip()
            if len(opening) < len(HEADER) and HEADER.startswith(opening):
                return "", ""  # could still be the header
            if not opening.startswith(HEADER):
                return self._answer(self._buffer)
            self._state, self._buffer = "thinking", opening[len(HEADER) :]
        return self._think(ended=False)

    def close(self) -> tuple[str, str]:
        """The text has ended: what was held back, told as best it can be."""
        if self._state == "start":
            return self._answer(self._buffer)
        if self._state == "thinking":
            return self._think(ended=True)
        return "", ""

    def _think(self, *, ended: bool) -> tuple[str, str]:
        reasoning: list[str] = []
        buffer = self._buffer
        while buffer:
            end = buffer.find("\n")
            line = buffer if end < 0 else buffer[:end]
            if line.startswith(">"):
                if end < 0 and line == ">" and not ended:
                    break  # its space, or the rest of the line, is still to come
                body = line[2:] if line.startswith("> ") else line[1:]
                if self._blank and self._said:
                    reasoning.append("\n")  # a paragraph break written as a blank line
                self._blank, self._said = False, True
                reasoning.append(body[self._line_sent :])
                if end < 0:  # unfinished: what came of it goes out, the line waits for the rest
                    self._line_sent = 0 if ended else len(body)
                    if ended:
                        buffer = ""
                    break
                reasoning.append("\n")
                self._line_sent = 0
                buffer = buffer[end + 1 :]
            elif not line.strip():
                if end < 0:
                    break  # a line not yet begun
                self._blank = True
                buffer = buffer[end + 1 :]
            else:  # a line that is not the quote's: the answer begins with it
                self._state = "answer"
                self._buffer = ""
                return "".join(reasoning), buffer
        self._buffer = buffer
        return "".join(reasoning), ""

    def _answer(self, text: str) -> tuple[str, str]:
        self._state, self._buffer = "answer", ""
        return "", text
