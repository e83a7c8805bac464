"""OpenAI's ``/v1/audio/speech`` on Poe's voice bots.

The text to speak is the user message of one bot-protocol call. A voice that is not one of
OpenAI's own goes to the bot as ``--voice <name>``, as Poe's voice bots take it (ElevenLabs'
voices are named ``Jessica``, ``Eric``, ...); OpenAI's voice names are not theirs, so with one of
those the bot speaks in its default voice. The answer is the audio file the bot made, its bytes
fetched by the proxy, with the content type its server gave.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .chat_request import ChatMessage, ChatRequest
from .errors import InvalidRequestError
from .models import resolve_bot_name
from .settings import Settings
from .sse import dumps
from .usage import estimate_prompt_tokens
from .validate import missing_parameter, opt_number, opt_object, opt_str, required_str, type_error

MAX_INPUT_CHARS = 4096  # OpenAI's limit
OPENAI_VOICES = frozenset(
    {
        "alloy",
        "ash",
        "ballad",
        "coral",
        "echo",
        "fable",
        "onyx",
        "nova",
        "sage",
        "shimmer",
        "verse",
        "marin",
        "cedar",
    }
)
FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")


@dataclass(frozen=True, slots=True)
class SpeechRequest:
    model: str
    bot: str
    input: str
    voice: str
    stream_format: str = "audio"
    user: str | None = None
    parameters: Mapping[str, Any] | None = None

    def bot_prompt(self) -> str:
        if self.voice.lower() in OPENAI_VOICES:
            return self.input
        return f"{self.input} --voice {self.voice}"

    def chat(self) -> ChatRequest:
        return ChatRequest(
            model=self.model,
            bot=self.bot,
            messages=(ChatMessage(role="user", content=self.bot_prompt()),),
            raw={},
            user=self.user,
            parameters=dict(self.parameters or {}),
        )


def parse_speech_request(body: Mapping[str, Any], settings: Settings) -> SpeechRequest:
    text = required_str(body, "input")
    if not text.strip():
        raise InvalidRequestError("'input' must not be empty.", param="input", code="invalid_value")
    if len(text) > MAX_INPUT_CHARS:
        raise InvalidRequestError(
            f"'input' is longer than {MAX_INPUT_CHARS} characters.",
            param="input",
            code="string_above_max_length",
        )
    model = opt_str(body, "model") or settings.default_speech_model
    voice = body.get("voice")
    if isinstance(voice, dict):  # a custom voice: {"id": "..."}
        voice = required_str(voice, "id", param="voice.id")
    if voice is None:
        raise missing_parameter("voice")
    if not isinstance(voice, str):
        raise type_error("voice", "a string or an object", voice)
    if not voice.strip() or any(c in voice for c in "\r\n") or voice.strip().startswith("-"):
        raise InvalidRequestError(
            f"Invalid value for 'voice': {voice!r}.", param="voice", code="invalid_value"
        )
    response_format = opt_str(body, "response_format")
    if response_format is not None and response_format not in FORMATS:
        raise InvalidRequestError(
            f"Invalid value for 'response_format': {response_format!r}; expected one of "
            + ", ".join(repr(f) for f in FORMATS)
            + ".",
            param="response_format",
            code="invalid_value",
        )
    stream_format = opt_str(body, "stream_format") or "audio"
    if stream_format not in ("audio", "sse"):
        raise InvalidRequestError(
            f"Invalid value for 'stream_format': {stream_format!r}; expected 'audio' or 'sse'.",
            param="stream_format",
            code="invalid_value",
        )
    opt_str(body, "instructions")
    opt_number(body, "speed", 0.25, 4.0)
    return SpeechRequest(
        model=model,
        bot=resolve_bot_name(model, settings.model_aliases),
        input=text,
        voice=voice.strip(),
        stream_format=stream_format,
        user=opt_str(body, "user"),
        parameters=opt_object(body, "parameters"),
    )


def speech_events(request: SpeechRequest, audio: bytes) -> bytes:
    """``stream_format: "sse"``: the audio as one ``speech.audio.delta``, then ``speech.audio.done``."""
    tokens = estimate_prompt_tokens([request.input])
    delta = {"type": "speech.audio.delta", "audio": base64.b64encode(audio).decode()}
    done = {
        "type": "speech.audio.done",
        "usage": {"input_tokens": tokens, "output_tokens": 0, "total_tokens": tokens},
    }
    return f"data: {dumps(delta)}\n\ndata: {dumps(done)}\n\n".encode()
