"""Real Poe bots, written with ``fastapi_poe`` and served over its own protocol.

Poe's ``api.poe.com/bot/<name>`` speaks exactly what a ``fastapi_poe`` server speaks, so these
are the upstream the proxy is tested against. Bots live at ``/bot/<name>`` like on Poe.

* ``echo`` (also serving the default model ``claude-opus-4.5``): streams the last user message
  back, a word at a time.
* ``inspect``: answers with the JSON of the ``QueryRequest`` it received.
* ``weather``: calls a tool, then answers from its result; ``reader``: asks Claude Code to read a
  file with its own ``Read`` tool, then quotes it.
* ``firehose``: 200 MB as fast as the reader takes it (``FIREHOSE`` counts what left).
* ``jsonbot``: structured output, fenced, in prose, or never valid (see the class).
* ``script``: the last user message is a JSON list of steps, played as bot output:
  ``["text", s]``, ``["replace", s]``, ``["sleep", seconds]``, ``["json", obj]``,
  ``["error", text, allow_retry, error_type]``, ``["meta"]``, ``["file", url, type, name]``,
  ``["raise"]``.
* ``GPT-Image-1``, ``DALL-E-3`` (``ImageBot``) and ``ElevenLabs-v2.5-Turbo``, ``ElevenLabs-v3``
  (``VoiceBot``): Poe's image and voice bots, answering with the file they made as a ``file``
  event, the file uploaded to (and served by) the stand-in Poe.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import struct
import threading
import uuid
import wave
import zlib
from collections.abc import AsyncIterable
from typing import Any

import fastapi_poe as fp
import httpx
from sse_starlette.event import ServerSentEvent

POE_KEY = "test-poe-key-0000000000000000000"
assert len(POE_KEY) == 32  # fastapi_poe wants 32-character access keys


def last_user_text(request: fp.QueryRequest) -> str:
    return next((m.content for m in reversed(request.query) if m.role == "user"), "")


class EchoBot(fp.PoeBot):
    async def get_response(self, request: fp.QueryRequest) -> AsyncIterable[fp.PartialResponse]:
        for word in re.findall(r"\S+\s*|\s+", last_user_text(request)) or [""]:
            yield fp.PartialResponse(text=word)


class InspectBot(fp.PoeBot):
    async def get_response(self, request: fp.QueryRequest) -> AsyncIterable[fp.PartialResponse]:
        seen = request.model_dump(
            mode="json",
            include={
                "query",
                "temperature",
                "stop_sequences",
                "logit_bias",
                "user_id",
                "conversation_id",
                "message_id",
                "tools",
                "tool_calls",
                "tool_results",
                "version",
                "type",
            },
        )
        yield fp.PartialResponse(text=json.dumps(seen))


class ScriptBot(fp.PoeBot):
    async def get_response(self, request: fp.QueryRequest) -> AsyncIterable[Any]:
        for step in json.loads(last_user_text(request)):
            kind, *args = step
            if kind == "text":
                yield fp.PartialResponse(text=args[0])
            elif kind == "replace":
                yield fp.PartialResponse(text=args[0], is_replace_response=True)
            elif kind == "sleep":
                await asyncio.sleep(args[0])
            elif kind == "json":
                yield ServerSentEvent(event="json", data=json.dumps(args[0]))
            elif kind == "error":
                allow_retry = args[1] if len(args) > 1 else True
                error_type = args[2] if len(args) > 2 else None
                yield fp.ErrorResponse(text=args[0], allow_retry=allow_retry, error_type=error_type)
            elif kind == "meta":
                yield fp.MetaResponse(text="", content_type="text/markdown")
            elif kind == "file":
                url, content_type, name = args
                yield fp.PartialResponse(
                    text="", attachment=fp.Attachment(url=url, content_type=content_type, name=name)
                )
            elif kind == "raise":
                raise RuntimeError("scripted failure")


class WeatherToolBot(fp.PoeBot):
    """Asks for ``get_weather`` when given tools; answers from the tool result when given one.

    Tool-call deltas go out as ``json`` events in OpenAI's chunk shape, arguments in fragments,
    which is how Poe streams function calls over the bot protocol.
    """

    async def get_response(self, request: fp.QueryRequest) -> AsyncIterable[Any]:
        if request.tool_results:
            result = request.tool_results[0]
            yield fp.PartialResponse(text=f"{result.name} said: {result.content}")
            return
        if not request.tools:
            yield fp.PartialResponse(text="no tools given")
            return
        name = request.tools[0].function.name
        fragments = ['{"ci', 'ty": "Par', 'is"}']
        first = {
            "index": 0,
            "id": "call_weather_1",
            "type": "function",
            "function": {"name": name, "arguments": ""},
        }
        for delta in [first] + [{"index": 0, "function": {"arguments": f}} for f in fragments]:
            chunk = {"choices": [{"index": 0, "delta": {"tool_calls": [delta]}, "finish_reason": None}]}
            yield ServerSentEvent(event="json", data=json.dumps(chunk))


class FileReaderBot(fp.PoeBot):
    """Claude Code's coworker: given its tools, asks it to ``Read`` ``notes.txt`` in the working
    directory its environment names; given the result, answers with it quoted."""

    async def get_response(self, request: fp.QueryRequest) -> AsyncIterable[Any]:
        if request.tool_results:
            yield fp.PartialResponse(text=f"The file says: {request.tool_results[0].content}")
            return
        said = "\n".join(message.content for message in request.query)
        directory = re.search(r"Primary working directory: (\S+)", said)
        if not any(tool.function.name == "Read" for tool in request.tools or []) or directory is None:
            yield fp.PartialResponse(text="I have no Read tool, or no working directory.")
            return
        arguments = json.dumps({"file_path": f"{directory.group(1)}/notes.txt"})
        call = {
            "index": 0,
            "id": "call_read_1",
            "type": "function",
            "function": {"name": "Read", "arguments": arguments},
        }
        chunk = {"choices": [{"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": None}]}
        yield ServerSentEvent(event="json", data=json.dumps(chunk))


class FirehoseBot(fp.PoeBot):
    """Writes ``FIREHOSE_PIECES`` pieces of 10 kB as fast as its reader takes them.

    The last user message is a token; ``FIREHOSE[token]`` counts the bytes written so far, so a
    test can see whether the proxy keeps pulling from Poe while its own client reads nothing.
    """

    async def get_response(self, request: fp.QueryRequest) -> AsyncIterable[fp.PartialResponse]:
        token = last_user_text(request)
        piece = "x" * FIREHOSE_PIECE_BYTES
        for _ in range(FIREHOSE_PIECES):
            yield fp.PartialResponse(text=piece)
            FIREHOSE[token] = FIREHOSE.get(token, 0) + len(piece)
            # Like Poe, stop when the caller hangs up: a disconnected uvicorn send returns at once,
            # so without a real await this loop would never see its cancellation.
            await asyncio.sleep(0)


FIREHOSE: dict[str, int] = {}
FIREHOSE_PIECE_BYTES = 10_000
FIREHOSE_PIECES = 20_000  # 200 MB: far more than any buffer between the bot and the client


class JsonBot(fp.PoeBot):
    """Structured output, the ways real models get it right and wrong.

    Refuses unless the proxy's JSON instruction reached it. The first user message picks the
    behaviour: ``{...}`` answers that JSON inside a Markdown code fence, in small pieces;
    ``prose:{...}`` wraps it in prose the first time and answers plainly when asked again;
    ``never:{...}`` is never valid.
    """

    async def get_response(self, request: fp.QueryRequest) -> AsyncIterable[fp.PartialResponse]:
        if not any(m.role == "system" and "JSON" in m.content for m in request.query):
            yield fp.PartialResponse(text="no JSON instruction reached me")
            return
        first = next(m.content for m in request.query if m.role == "user")
        mode, _, wanted = first.partition(":") if not first.startswith("{") else ("", "", first)
        corrected = any(m.role == "bot" for m in request.query)
        if mode == "" or (mode == "prose" and corrected):
            answer = wanted if corrected else f"```json\n{wanted}\n```"
        else:
            answer = f"Sure! Here it is ({'again' if corrected else 'first try'}): {wanted}"
        for start in range(0, len(answer), 3):
            yield fp.PartialResponse(text=answer[start : start + 3])


class Gates:
    """Cross-thread signals between a test and ``GatedBot`` (the bot server runs in-process)."""

    def __init__(self) -> None:
        self.release: dict[str, threading.Event] = {}
        self.cancelled: dict[str, threading.Event] = {}

    def open(self, token: str) -> tuple[threading.Event, threading.Event]:
        self.release[token] = threading.Event()
        self.cancelled[token] = threading.Event()
        return self.release[token], self.cancelled[token]


GATES = Gates()


class GatedBot(fp.PoeBot):
    """Sends "first ", then waits for the test to release it before "second".

    The last user message is the gate token. If the proxy buffered, the test could never see
    "first " before releasing: it would time out. If the call is cancelled while waiting (the
    client went away), the ``cancelled`` event is set.
    """

    think_first = False  # True: wait for the release before any output at all

    async def get_response(self, request: fp.QueryRequest) -> AsyncIterable[fp.PartialResponse]:
        token = last_user_text(request)
        release, cancelled = GATES.release[token], GATES.cancelled[token]
        finished = False
        try:
            if not self.think_first:
                yield fp.PartialResponse(text="first ")
            while not release.is_set():  # noqa: ASYNC110 - a threading.Event set from the test thread
                await asyncio.sleep(0.01)
            yield fp.PartialResponse(text="second")
            finished = True
        finally:
            if not finished:
                cancelled.set()


def assert_streams_token_by_token(
    base_url: str, headers: dict[str, str], *, timeout: float = 30
) -> httpx.Headers:
    """Through ``base_url``, the ``gated`` bot's first token reaches the client while the bot
    still waits to write its second: nothing on the way buffers. Returns the response headers."""
    token = uuid.uuid4().hex
    release, _ = GATES.open(token)
    body = {"model": "gated", "messages": [{"role": "user", "content": token}], "stream": True}
    with httpx.stream(
        "POST", f"{base_url}/v1/chat/completions", json=body, headers=headers, timeout=timeout
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.iter_lines()
        first = next(line for line in lines if line.startswith("data: {") and '"content"' in line)
        assert "first" in first
        assert not release.is_set()  # the bot still waits: the first token was not held back
        release.set()
        rest = [line for line in lines if line.startswith("data: ")]
    assert rest[-1] == "data: [DONE]"
    return response.headers


class ThinkingGatedBot(GatedBot):
    """Like ``GatedBot`` but silent until released: a bot that thinks before its first token."""

    think_first = True


def png(width: int, height: int, rgb: tuple[int, int, int] = (200, 80, 40)) -> bytes:
    """A real PNG of one colour."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunks = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def png_size(data: bytes) -> tuple[int, int]:
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def wav(text: str) -> bytes:
    """A real WAV, a tone a tenth of a second long per word of ``text``."""
    out = io.BytesIO()
    with wave.open(out, "wb") as recording:
        recording.setnchannels(1)
        recording.setsampwidth(2)
        recording.setframerate(8000)
        recording.writeframes(b"\x00\x10" * 800 * max(1, len(text.split())))
    return out.getvalue()


class Studio:
    """What the image and voice bots share with the tests: the stand-in's own origin (where
    they upload what they make, as a Poe bot uploads to Poe) and every request they got."""

    def __init__(self) -> None:
        self.origin = ""
        self.requests: list[tuple[str, fp.QueryRequest]] = []  # (bot, its request)

    def last(self, bot: str) -> fp.QueryRequest:
        return next(request for name, request in reversed(self.requests) if name == bot)


class MediaBot(fp.PoeBot):
    """Answers as Poe's media bots do: the file it made, uploaded with ``post_message_attachment``,
    leaves as a ``file`` event."""

    def __init__(self, studio: Studio, name: str) -> None:
        super().__init__(path=f"/bot/{name}", access_key=POE_KEY, should_insert_attachment_messages=False)
        self.studio = studio
        self.name = name

    async def attach(self, request: fp.QueryRequest, data: bytes, filename: str) -> None:
        await self.post_message_attachment(
            message_id=request.message_id,
            file_data=data,
            filename=filename,
            base_url=f"{self.studio.origin}/poe_api/",
        )

    async def get_response(self, request: fp.QueryRequest) -> AsyncIterable[fp.PartialResponse]:
        self.studio.requests.append((self.name, request))
        async for response in self.make(request, last_user_text(request)):
            yield response

    def make(self, request: fp.QueryRequest, prompt: str) -> AsyncIterable[fp.PartialResponse]:
        raise NotImplementedError


class ImageBot(MediaBot):
    """Draws a PNG whose shape is the ``--aspect`` asked for (8 px a unit; 1:1 without one).

    Given an image, it returns that image (an edit that changes nothing). A prompt that starts
    with "refuse" gets words and no image. ``revises``: it says the prompt it drew, as DALL-E 3
    rewrites prompts.
    """

    def __init__(self, studio: Studio, name: str, *, revises: bool = False) -> None:
        super().__init__(studio, name)
        self.revises = revises

    async def make(self, request: fp.QueryRequest, prompt: str) -> AsyncIterable[fp.PartialResponse]:
        if prompt.startswith("refuse"):
            yield fp.PartialResponse(text="I can't draw that. Shall I draw a cat instead?")
            return
        attachments = request.query[-1].attachments
        if attachments:
            async with httpx.AsyncClient() as client:
                image = (await client.get(attachments[0].url)).content
        else:
            aspect = re.search(r"--aspect (\d+):(\d+)", prompt)
            width, height = (int(aspect[1]), int(aspect[2])) if aspect else (1, 1)
            image = png(8 * width, 8 * height)
        await self.attach(request, image, "image.png")
        if self.revises:
            yield fp.PartialResponse(text=f"A picture of {prompt.split(' --')[0]}")


class VoiceBot(MediaBot):
    """Reads the text aloud: a WAV as long as the text (without its ``--voice`` flag)."""

    async def make(self, request: fp.QueryRequest, prompt: str) -> AsyncIterable[fp.PartialResponse]:
        await self.attach(request, wav(prompt.split(" --voice ")[0]), "speech.wav")
        return
        yield  # an async generator that answers with its file alone


VOICE_BOTS = ("ElevenLabs-v2.5-Turbo", "ElevenLabs-v3")

BOT_NAMES = (
    "echo", "claude-opus-4.5", "inspect", "script", "gated", "thinking", "weather", "reader", "firehose",
    "jsonbot",
)  # fmt: skip


def make_bot_server(studio: Studio) -> Any:
    """A FastAPI app serving every test bot (no settings sync: no bot_name is set)."""
    bots: list[fp.PoeBot] = [
        ImageBot(studio, "GPT-Image-1"),
        ImageBot(studio, "DALL-E-3", revises=True),
        *(VoiceBot(studio, name) for name in VOICE_BOTS),
        EchoBot(path="/bot/echo", access_key=POE_KEY),
        EchoBot(path="/bot/claude-opus-4.5", access_key=POE_KEY),
        InspectBot(path="/bot/inspect", access_key=POE_KEY),
        ScriptBot(path="/bot/script", access_key=POE_KEY),
        GatedBot(path="/bot/gated", access_key=POE_KEY),
        ThinkingGatedBot(path="/bot/thinking", access_key=POE_KEY),
        WeatherToolBot(path="/bot/weather", access_key=POE_KEY),
        FileReaderBot(path="/bot/reader", access_key=POE_KEY),
        FirehoseBot(path="/bot/firehose", access_key=POE_KEY),
        JsonBot(path="/bot/jsonbot", access_key=POE_KEY),
    ]
    return fp.make_app(bots)
