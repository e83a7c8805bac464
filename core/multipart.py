"""``multipart/form-data`` request bodies (``/v1/images/edits``), read by the standard library's
MIME parser: the one every host has, Pyodide included."""

from __future__ import annotations

from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

from .errors import InvalidRequestError

MAX_FIELDS = 64


@dataclass(frozen=True, slots=True)
class FormField:
    """One part of a form: a plain field (``filename`` None) or a file."""

    name: str
    data: bytes
    filename: str | None = None
    content_type: str = "text/plain"

    def text(self) -> str:
        try:
            return self.data.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRequestError(
                f"The form field '{self.name}' is not UTF-8 text.", param=self.name, code="invalid_value"
            ) from None


def _malformed(detail: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"The request body is not valid multipart/form-data: {detail}.", code="invalid_body"
    )


def parse_form(body: bytes, content_type: str) -> list[FormField]:
    """The parts of a ``multipart/form-data`` ``body`` sent with ``content_type``, in order."""
    if content_type.split(";", 1)[0].strip().lower() != "multipart/form-data":
        raise InvalidRequestError(
            "This endpoint takes multipart/form-data (as the OpenAI SDKs send it); the request's "
            f"Content-Type is {content_type.split(';', 1)[0].strip() or 'missing'}.",
            code="invalid_content_type",
        )
    if not content_type.isascii() or "\r" in content_type or "\n" in content_type:
        raise _malformed("the Content-Type header is not plain ASCII")
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = BytesParser(policy=policy.HTTP).parsebytes(head + body)
    if not message.get_boundary():
        raise _malformed("the Content-Type header has no boundary")
    if message.defects or not message.is_multipart():
        raise _malformed("its parts or their boundaries are incomplete")
    assert isinstance(message, EmailMessage)  # what policy.HTTP makes
    fields: list[FormField] = []
    for part in message.iter_parts():
        if len(fields) == MAX_FIELDS:
            raise _malformed(f"it has more than {MAX_FIELDS} parts")
        assert isinstance(part, EmailMessage)
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str) or not name:
            raise _malformed("a part has no name")
        data = part.get_payload(decode=True)
        fields.append(
            FormField(
                name=name,
                data=data if isinstance(data, bytes) else b"",
                filename=part.get_filename(),
                content_type=part.get_content_type(),
            )
        )
    return fields
