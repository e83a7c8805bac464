"""Media in chat messages: images, audio and files, by URL or inline bytes.

``parse_media_part`` reads one ``image_url``, ``input_audio`` or ``file`` content part into a
``MediaPart``. An http(s) URL is kept as a URL (Poe fetches it itself); inline data (``data:``
URLs, base64) is decoded, checked against the size limit, and uploaded to Poe before the query
(``core.uploads``).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any, Literal

from .errors import InvalidRequestError
from .validate import missing_parameter, opt_object, opt_str, required_str, type_error

MediaKind = Literal["image", "audio", "file"]

_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[^,;]*)*),(?P<data>.*)$", re.S)
_AUDIO_MIME = {"wav": "audio/wav", "mp3": "audio/mpeg", "flac": "audio/flac", "ogg": "audio/ogg"}


@dataclass(frozen=True, slots=True)
class MediaPart:
    """An image, audio clip or file from a message's content parts.

    Exactly one of ``url`` (an http(s) URL Poe can fetch itself) and ``data`` (inline bytes
    that must be uploaded to Poe first) is set.
    """

    kind: MediaKind
    mime_type: str
    name: str
    param: str
    url: str | None = None
    data: bytes | None = None
    detail: str | None = None


def parse_media_part(part: dict[str, Any], kind: str, param: str, max_bytes: int | None) -> MediaPart:
    """One ``image_url``, ``input_audio`` or ``file`` part (``kind``) at ``param``."""
    if kind == "image_url":
        spec = part.get("image_url")
        if isinstance(spec, str):  # some clients send the bare URL
            spec = {"url": spec}
        if not isinstance(spec, dict):
            raise type_error(f"{param}.image_url", "an object", spec)
        url = required_str(spec, "url", param=f"{param}.image_url.url")
        detail = opt_str(spec, "detail", param=f"{param}.image_url.detail")
        if detail is not None and detail not in ("auto", "low", "high"):
            raise InvalidRequestError(
                f"Invalid value for '{param}.image_url.detail': {detail!r}.",
                param=f"{param}.image_url.detail",
                code="invalid_value",
            )
        return _media_from_url(url, "image", f"{param}.image_url.url", max_bytes, name="image", detail=detail)
    if kind == "input_audio":
        spec = opt_object(part, "input_audio", param=f"{param}.input_audio") or {}
        data = required_str(spec, "data", param=f"{param}.input_audio.data")
        fmt = required_str(spec, "format", param=f"{param}.input_audio.format")
        if fmt not in _AUDIO_MIME:
            raise InvalidRequestError(
                f"Invalid value for '{param}.input_audio.format': {fmt!r} is not one of "
                + ", ".join(repr(f) for f in _AUDIO_MIME)
                + ".",
                param=f"{param}.input_audio.format",
                code="invalid_value",
            )
        raw = _decode_base64(data, f"{param}.input_audio.data", max_bytes)
        return MediaPart(
            kind="audio",
            mime_type=_AUDIO_MIME[fmt],
            name=f"audio.{fmt}",
            param=f"{param}.input_audio",
            data=raw,
        )
    spec = opt_object(part, "file", param=f"{param}.file") or {}
    filename = opt_str(spec, "filename", param=f"{param}.file.filename") or "file"
    file_data = opt_str(spec, "file_data", param=f"{param}.file.file_data")
    if file_data is None:
        if opt_str(spec, "file_id", param=f"{param}.file.file_id") is not None:
            raise InvalidRequestError(
                "Uploaded file ids are not supported by this proxy; send 'file_data' instead.",
                param=f"{param}.file.file_id",
                code="unsupported_parameter",
            )
        raise missing_parameter(f"{param}.file.file_data")
    if file_data.startswith("data:"):
        return _media_from_url(file_data, "file", f"{param}.file.file_data", max_bytes, name=filename)
    raw = _decode_base64(file_data, f"{param}.file.file_data", max_bytes)
    return MediaPart(
        kind="file", mime_type=guess_mime(filename), name=filename, param=f"{param}.file", data=raw
    )


def _media_from_url(
    url: str,
    kind: MediaKind,
    param: str,
    max_bytes: int | None,
    *,
    name: str,
    detail: str | None = None,
) -> MediaPart:
    if url.startswith("data:"):
        match = _DATA_URL.match(url)
        if match is None or ";base64" not in match.group("params"):
            raise InvalidRequestError(
                f"Invalid data URL in '{param}': expected data:<mime type>;base64,<data>.",
                param=param,
                code="invalid_data_url",
            )
        mime = match.group("mime") or "application/octet-stream"
        if kind == "image" and not mime.startswith("image/"):
            raise InvalidRequestError(
                f"Unsupported image type {mime!r} in '{param}'.",
                param=param,
                code="invalid_image_format",
            )
        raw = _decode_base64(match.group("data"), param, max_bytes)
        extension = mime.split("/", 1)[1].split("+")[0]
        filename = name if "." in name else f"{name}.{extension}"
        return MediaPart(kind=kind, mime_type=mime, name=filename, param=param, data=raw, detail=detail)
    if url.startswith(("https://", "http://")):
        filename = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or name
        return MediaPart(
            kind=kind,
            mime_type=guess_mime(filename, kind),
            name=filename,
            param=param,
            url=url,
            detail=detail,
        )
    raise InvalidRequestError(
        f"Invalid URL in '{param}': expected an http(s) URL or a base64 data URL.",
        param=param,
        code="invalid_url",
    )


def _decode_base64(data: str, param: str, max_bytes: int | None) -> bytes:
    if max_bytes is not None and len(data) * 3 // 4 > max_bytes:
        raise InvalidRequestError(
            f"The data in '{param}' is larger than the limit of {max_bytes} bytes.",
            param=param,
            code="file_too_large",
        )
    try:
        raw = base64.b64decode("".join(data.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequestError(
            f"'{param}' is not valid base64.", param=param, code="invalid_base64"
        ) from None
    if not raw:
        raise InvalidRequestError(f"'{param}' is empty.", param=param, code="invalid_base64")
    return raw


_MIME_BY_EXTENSION = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
    "pdf": "application/pdf",
    "txt": "text/plain",
    "md": "text/markdown",
    "csv": "text/csv",
    "json": "application/json",
    "mp3": "audio/mpeg",
    "wav": "audio/wav",
}


def guess_mime(filename: str, kind: MediaKind = "file") -> str:
    extension = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    fallback = "image/jpeg" if kind == "image" else "application/octet-stream"
    return _MIME_BY_EXTENSION.get(extension, fallback)
