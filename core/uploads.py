"""Inline media for the bot backend: what to upload to Poe, and the attachment Poe gives back.

The bot protocol carries media as ``Attachment``s (a URL, a content type, a name). An http(s)
URL from the client is attached as it is (Poe fetches it; the proxy never does). Inline bytes
(``data:`` URLs, ``input_audio``, ``file_data``) must first go to Poe's file upload API, the one
``fastapi_poe.upload_file`` calls: ``POST <POE_UPLOAD_URL>/file_upload_3RD_PARTY_POST`` with a
multipart ``file``, answered with ``{"attachment_url", "mime_type"}``. This module writes the
request, to its last byte, and reads the answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .chat_request import ChatRequest
from .errors import UpstreamError
from .flow import USER_AGENT, UpstreamRequest
from .media import MediaPart

UPLOAD_ENDPOINT = "file_upload_3RD_PARTY_POST"


@dataclass(frozen=True, slots=True)
class Upload:
    """One inline media part to upload, and where its attachment goes in the query."""

    message_index: int
    part_index: int
    part: MediaPart

    @property
    def key(self) -> tuple[int, int]:
        return (self.message_index, self.part_index)

    @property
    def data(self) -> bytes:
        assert self.part.data is not None  # only inline parts become uploads
        return self.part.data


def upload_request(upload: Upload, *, upload_url: str, api_key: str, boundary: str) -> UpstreamRequest:
    """The multipart POST that uploads ``upload`` (``boundary``: random, not in the data)."""
    part = upload.part
    # Quotes and line breaks cannot stand in a quoted filename; percent-encode them, as httpx does.
    filename = part.name.translate({ord('"'): "%22", ord("\r"): "%0D", ord("\n"): "%0A"})
    body = b"".join(
        [
            f"--{boundary}\r\n".encode(),
            f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'.encode(),
            f"Content-Type: {part.mime_type}\r\n\r\n".encode(),
            upload.data,
            f"\r\n--{boundary}--\r\n".encode(),
        ]
    )
    headers = {
        "user-agent": USER_AGENT,
        "authorization": api_key,  # the bare key, not "Bearer <key>" (as fastapi_poe sends it)
        "accept": "application/json",
        "content-type": f"multipart/form-data; boundary={boundary}",
    }
    return UpstreamRequest("POST", f"{upload_url.rstrip('/')}/{UPLOAD_ENDPOINT}", headers, body)


def pending_uploads(request: ChatRequest) -> list[Upload]:
    """The media parts of ``request`` that carry bytes and so must be uploaded first."""
    return [Upload(m, p, part) for m, p, part in request.media_parts() if part.data is not None]


def attachment_from_upload(answer: Any, upload: Upload) -> dict[str, Any]:
    """A Poe ``Attachment`` dict from the upload API's JSON answer."""
    if not isinstance(answer, Mapping):
        raise UpstreamError("Poe's file upload answered with something that is not an object.")
    url, mime_type = answer.get("attachment_url"), answer.get("mime_type")
    if not isinstance(url, str) or not url:
        raise UpstreamError(
            f"Poe's file upload gave no attachment URL for '{upload.part.param}'.", code="upstream_malformed"
        )
    return {
        "url": url,
        "content_type": mime_type if isinstance(mime_type, str) and mime_type else upload.part.mime_type,
        "name": upload.part.name,
    }
