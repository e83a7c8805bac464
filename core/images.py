"""OpenAI's image endpoints on Poe's image bots: ``/v1/images/generations`` and ``/v1/images/edits``.

A request becomes one bot-protocol call per image asked for (``n``), its prompt a user message.
What OpenAI says in fields, Poe's image bots take as flags at the end of the prompt, as their own
descriptions ask: ``size`` as ``--aspect W:H``, ``quality`` as ``--quality``. Images to edit (and
a mask) are uploaded to Poe and attached to that message. The bot answers with ``file`` events;
their URLs are the answer (``url``), or the files' bytes (``b64_json``, fetched by the proxy).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .chat_request import ChatMessage, ChatRequest
from .errors import InvalidRequestError
from .media import MediaPart, guess_mime
from .models import resolve_bot_name
from .multipart import FormField
from .settings import Settings
from .sse import dumps
from .usage import estimate_prompt_tokens
from .validate import missing_parameter, opt_bool, opt_int, opt_object, opt_str, required_str, type_error

ResponseFormat = Literal["url", "b64_json"]
_SIZE = re.compile(r"^([1-9][0-9]{0,4})x([1-9][0-9]{0,4})$")
# The aspect ratios image bots name; a size within 3% of one is sent as it.
_RATIOS = ((1, 1), (16, 9), (9, 16), (4, 3), (3, 4), (3, 2), (2, 3), (21, 9), (9, 21), (5, 4), (4, 5))
# OpenAI's qualities as image bots name them ("auto" leaves it to the bot).
_QUALITY_FLAG = {
    "low": "low",
    "medium": "medium",
    "standard": "medium",
    "high": "high",
    "hd": "high",
    "xhigh": "high",
    "max": "high",
}
_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/webp": "webp", "image/gif": "gif"}
# The values OpenAI documents for each option (each model takes some of them; Poe's bots get the
# ones they have a flag for). Anything else is a 400 naming the field, as OpenAI answers it.
_CHOICES = {
    "quality": ("auto", *_QUALITY_FLAG),
    "style": ("vivid", "natural"),
    "background": ("auto", "transparent", "opaque"),
    "output_format": ("png", "jpeg", "webp"),
    "moderation": ("auto", "low"),
    "input_fidelity": ("high", "low"),
}
# How each image format an edit takes begins (its magic bytes): a file that is none is no image.
_IMAGE_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a")
VARIATION_PROMPT = "Make a variation of this image."
# Fields of a form (``/v1/images/edits``) that are numbers or booleans in JSON.
_FORM_INTEGERS = ("n", "output_compression", "partial_images")
_FORM_BOOLEANS = ("stream",)


@dataclass(frozen=True, slots=True)
class ImageRequest:
    """A validated image generation or edit request."""

    model: str
    bot: str
    prompt: str
    n: int
    response_format: ResponseFormat
    size: str | None = None
    quality: str | None = None
    background: str | None = None
    stream: bool = False
    user: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    images: tuple[MediaPart, ...] = ()  # to edit; the mask, if any, is the last
    variation: bool = False  # of its image, with the proxy's prompt

    @property
    def edit(self) -> bool:
        """An edit (or a variation): there are images to work on."""
        return bool(self.images)

    def bot_prompt(self) -> str:
        """The prompt as the bot gets it: the client's, then the flags for its options."""
        flags = []
        aspect = aspect_ratio(self.size)
        if aspect is not None:
            flags.append(f"--aspect {aspect}")
        quality = _QUALITY_FLAG.get(self.quality or "")
        if quality is not None:
            flags.append(f"--quality {quality}")
        return " ".join([self.prompt, *flags])

    def chat(self) -> ChatRequest:
        """The chat request whose answers are the images: one choice per image."""
        message = ChatMessage(role="user", content=self.bot_prompt(), media=self.images)
        return ChatRequest(
            model=self.model,
            bot=self.bot,
            messages=(message,),
            raw={},
            n=self.n,
            user=self.user,
            parameters=self.parameters,
        )


def aspect_ratio(size: str | None) -> str | None:
    """``WxH`` as the aspect ratio image bots take (``1536x1024`` -> ``3:2``); None for ``auto``."""
    match = _SIZE.match(size or "")
    if match is None:
        return None
    width, height = int(match[1]), int(match[2])
    for w, h in _RATIOS:
        if abs(width * h / (height * w) - 1) <= 0.03:
            return f"{w}:{h}"
    divisor = math.gcd(width, height)
    return f"{width // divisor}:{height // divisor}"


def parse_image_request(
    body: Mapping[str, Any], settings: Settings, *, images: Sequence[MediaPart] = (), variation: bool = False
) -> ImageRequest:
    """Validate a generation body (JSON), or an edit's fields with its ``images``."""
    prompt = required_str(body, "prompt")
    if not prompt.strip():
        raise InvalidRequestError("'prompt' must not be empty.", param="prompt", code="invalid_value")
    model = opt_str(body, "model") or settings.default_image_model
    size = opt_str(body, "size")
    if size is not None and size != "auto" and _SIZE.match(size) is None:
        raise InvalidRequestError(
            f"Invalid value for 'size': {size!r}; expected 'auto' or WIDTHxHEIGHT (e.g. '1024x1024').",
            param="size",
            code="invalid_value",
        )
    response_format = opt_str(body, "response_format")
    if response_format is None:  # OpenAI's default for the model: bytes for its GPT image models
        response_format = "b64_json" if model.lower().startswith("gpt-image") else "url"
    if response_format not in ("url", "b64_json"):
        raise InvalidRequestError(
            f"Invalid value for 'response_format': {response_format!r}; expected 'url' or 'b64_json'.",
            param="response_format",
            code="invalid_value",
        )
    chosen = {name: _choice(body, name, choices) for name, choices in _CHOICES.items()}
    opt_int(body, "output_compression", 0, 100)
    opt_int(body, "partial_images", 0, 3)
    return ImageRequest(
        model=model,
        bot=resolve_bot_name(model, settings.model_aliases),
        prompt=prompt,
        n=opt_int(body, "n", 1, settings.max_n) or 1,
        response_format=response_format,  # type: ignore[arg-type]  # checked above
        size=size,
        quality=chosen["quality"],
        background=chosen["background"],
        stream=bool(opt_bool(body, "stream")),
        user=opt_str(body, "user") or opt_str(body, "safety_identifier"),
        parameters=dict(opt_object(body, "parameters") or {}),
        images=tuple(images),
        variation=variation,
    )


def _choice(body: Mapping[str, Any], name: str, choices: Sequence[str]) -> str | None:
    value = opt_str(body, name)
    if value is not None and value not in choices:
        raise InvalidRequestError(
            f"Invalid value for '{name}': {value!r}; expected one of {', '.join(map(repr, choices))}.",
            param=name,
            code="invalid_value",
        )
    return value


def parse_edit_form(
    fields: Sequence[FormField], settings: Settings, *, variation: bool = False
) -> ImageRequest:
    """An edit's form: its files (``image`` or ``image[]``, one or more; ``mask``) and fields.
    A ``variation`` (``/v1/images/variations``) has no prompt: the bot is asked for one."""
    body: dict[str, Any] = {"prompt": VARIATION_PROMPT} if variation else {}
    images: list[MediaPart] = []
    mask: MediaPart | None = None
    for form_field in fields:
        name = form_field.name
        if name in ("image", "image[]", "mask"):
            part = _image_part(form_field, settings)
            if name == "mask":
                mask = part
            else:
                images.append(part)
        elif variation and name == "prompt":
            continue  # a variation's prompt is the proxy's: the client's would make it an edit
        elif form_field.filename is not None:
            raise InvalidRequestError(
                f"The form field '{name}' is a file; only 'image' and 'mask' take files.",
                param=name,
                code="invalid_value",
            )
        else:
            body[name] = _form_value(name, form_field.text())
    if not images:
        raise missing_parameter("image")
    return parse_image_request(
        body, settings, images=[*images, *([mask] if mask else [])], variation=variation
    )


def _form_value(name: str, text: str) -> Any:
    if name in _FORM_INTEGERS:
        try:
            return int(text)
        except ValueError:
            raise type_error(name, "an integer", text) from None
    if name in _FORM_BOOLEANS:
        if text.lower() not in ("true", "false"):
            raise type_error(name, "a boolean", text)
        return text.lower() == "true"
    return text


def _image_part(form_field: FormField, settings: Settings) -> MediaPart:
    name = form_field.name
    if form_field.filename is None:
        raise type_error(name, "a file", form_field.text())
    if not form_field.data:
        raise InvalidRequestError(f"The file in '{name}' is empty.", param=name, code="invalid_value")
    if len(form_field.data) > settings.max_media_bytes:
        raise InvalidRequestError(
            f"The file in '{name}' is larger than the limit of {settings.max_media_bytes} bytes.",
            param=name,
            code="file_too_large",
        )
    data = form_field.data
    if not (data.startswith(_IMAGE_SIGNATURES) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")):
        raise InvalidRequestError(
            f"The file in '{name}' is not an image: PNG, JPEG, WebP or GIF.", param=name, code="invalid_image"
        )
    filename = form_field.filename or "image.png"
    mime = form_field.content_type
    if not mime.startswith("image/"):  # no type, or a generic one: the file's name says
        mime = guess_mime(filename, "image")
    return MediaPart(kind="image", mime_type=mime, name=filename, param=name, data=form_field.data)


def output_format(content_type: str) -> str | None:
    return _FORMATS.get(content_type.split(";", 1)[0].strip().lower())


def images_response(created: int, data: list[dict[str, Any]], content_types: Sequence[str]) -> dict[str, Any]:
    """OpenAI's ``ImagesResponse``; ``output_format`` too when every image has the same known one."""
    response: dict[str, Any] = {"created": created, "data": data}
    formats = {output_format(content_type) for content_type in content_types}
    if len(formats) == 1 and None not in formats:
        response["output_format"] = formats.pop()
    return response


def image_events(
    request: ImageRequest, created: int, data: list[dict[str, Any]], content_types: Sequence[str]
) -> bytes:
    """A streamed answer (``stream: true``): one ``*.completed`` event per image, as OpenAI ends
    its image streams (no partial images: Poe's image bots send none)."""
    kind = "image_edit.completed" if request.edit else "image_generation.completed"
    prompt_tokens = estimate_prompt_tokens([request.prompt])
    events = []
    for item, content_type in zip(data, content_types, strict=True):
        event = {
            "type": kind,
            "b64_json": item["b64_json"],
            "created_at": created,
            "size": request.size or "auto",
            "quality": request.quality or "auto",
            "background": request.background or "auto",
            "output_format": output_format(content_type) or "png",
            "usage": {  # the prompt's tokens estimated; Poe reports none
                "input_tokens": prompt_tokens,
                "input_tokens_details": {"text_tokens": prompt_tokens, "image_tokens": 0},
                "output_tokens": 0,
                "total_tokens": prompt_tokens,
            },
        }
        events.append(f"event: {kind}\ndata: {dumps(event)}\n\n")
    return "".join(events).encode()
