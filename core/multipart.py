"""``multipart/form-data`` request bodies (``/v1/images/edits``), read in one linear pass.

RFC 7578 on RFC 2046's framing: a boundary line, each part's header lines, a blank line, its
bytes; the last boundary ends in ``--``. Every search moves forward through the body, and what a
client can make the parser hold or repeat is bounded: a part's head (``MAX_PART_HEAD`` bytes,
``MAX_PART_HEADERS`` lines), a header's parameters (``MAX_PARAMETERS``), the number of parts
(``MAX_FIELDS``); a part that is itself multipart is refused rather than descended into. Past a
bound the request is a 400 that names the field (the standard library's MIME parser, used here
before, recursed on a comment's parentheses and took time quadratic in a header's parameters:
a 1 KB header ended a Pyodide process).

``Content-Transfer-Encoding``, which RFC 7578 deprecates and no client sends, is not applied: a
part's bytes are taken as they came.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from .errors import InvalidRequestError

MAX_FIELDS = 64
MAX_PART_HEAD = 8 * 1024
MAX_PART_HEADERS = 16
MAX_PARAMETERS = 16
MAX_BOUNDARY = 70  # RFC 2046
_SEPARATORS = frozenset('()<>@,;:\\"/[]?={} \t')


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


def _malformed(detail: str, param: str | None = None) -> InvalidRequestError:
    return InvalidRequestError(
        f"The request body is not valid multipart/form-data: {detail}.", param=param, code="invalid_body"
    )


class HeaderError(ValueError):
    """A header value that does not parse, or has too many parameters; ``parameters``: the ones
    read before the fault (to name the field in the answer)."""

    def __init__(self, detail: str, parameters: dict[str, str]) -> None:
        super().__init__(detail)
        self.detail = detail
        self.parameters = parameters


def header_parameters(value: str, *, limit: int = MAX_PARAMETERS) -> tuple[str, dict[str, str]]:
    """A header's value split into its first word (lowercased) and its ``; name=value``
    parameters (names lowercased, quoted strings unquoted), in one pass over ``value`` that
    stops at the first fault or past ``limit`` parameters (``HeaderError``)."""
    end = value.find(";")
    first = (value if end < 0 else value[:end]).strip().lower()
    parameters: dict[str, str] = {}
    count = 0  # parameters read, a repeated name included
    at, size = (len(value) if end < 0 else end), len(value)
    while at < size:
        at += 1  # past the ";"
        while at < size and value[at] in " \t":
            at += 1
        if at == size:
            break  # a trailing ";"
        equals = value.find("=", at)
        if equals < 0:
            raise HeaderError("has a parameter with no value", parameters)
        name = value[at:equals].strip().lower()
        if not name or any(c in _SEPARATORS for c in name):
            raise HeaderError("has a parameter whose name is not a token", parameters)
        at = equals + 1
        while at < size and value[at] in " \t":
            at += 1
        if at < size and value[at] == '"':
            chars: list[str] = []
            at += 1
            while at < size and value[at] != '"':
                if value[at] == "\\" and at + 1 < size:
                    at += 1
                chars.append(value[at])
                at += 1
            if at == size:
                raise HeaderError("has a quoted string that is not closed", parameters)
            text, at = "".join(chars), at + 1
            next_semicolon = value.find(";", at)
            rest = value[at:] if next_semicolon < 0 else value[at:next_semicolon]
            if rest.strip():
                raise HeaderError("has text after a quoted string", parameters)
            at = size if next_semicolon < 0 else next_semicolon
        else:
            next_semicolon = value.find(";", at)
            stop = size if next_semicolon < 0 else next_semicolon
            text, at = value[at:stop].strip(), stop
        count += 1
        if count > limit:
            raise HeaderError(f"has more than {limit} parameters", parameters)
        parameters[name] = text
    return first, parameters


def _boundary(content_type: str) -> bytes:
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind != "multipart/form-data":
        raise InvalidRequestError(
            "This endpoint takes multipart/form-data (as the OpenAI SDKs send it); the request's "
            f"Content-Type is {kind[:100] or 'missing'}.",
            code="invalid_content_type",
        )
    if not content_type.isascii() or "\r" in content_type or "\n" in content_type:
        raise _malformed("the Content-Type header is not plain ASCII")
    try:
        _, parameters = header_parameters(content_type)
    except HeaderError as bad:
        raise _malformed(f"the Content-Type header {bad.detail}") from None
    boundary = parameters.get("boundary", "")
    if not 0 < len(boundary) <= MAX_BOUNDARY:
        raise _malformed(f"the Content-Type header has no boundary of 1 to {MAX_BOUNDARY} characters")
    return boundary.encode("ascii")


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")  # what HTTP header bytes were before UTF-8


def _part(head: bytes, data: bytes) -> FormField:
    """One part from its head (the header lines, without the blank line) and its bytes."""
    lines = head.split(b"\r\n") if head else []
    if len(lines) > MAX_PART_HEADERS:
        raise _malformed(f"a part has more than {MAX_PART_HEADERS} header lines")
    headers: dict[str, str] = {}
    for line in lines:
        header, colon, value = line.partition(b":")
        if not colon or not header or header.strip() != header:  # folded lines are obsolete
            raise _malformed("a part's header line does not parse")
        headers[header.decode("latin-1").lower()] = _decode(value).strip()
    disposition = headers.get("content-disposition")
    if disposition is None:
        raise _malformed("a part has no Content-Disposition")
    try:
        kind, parameters = header_parameters(disposition)
    except HeaderError as bad:
        raise _malformed(f"a part's Content-Disposition {bad.detail}", bad.parameters.get("name")) from None
    name = parameters.get("name")
    if kind != "form-data" or not name:
        raise _malformed("a part is not form-data with a name")
    filename = parameters.get("filename")
    extended = parameters.get("filename*", "")  # RFC 5987: charset'language'percent-encoded
    if extended.count("'") >= 2:
        charset, _, encoded = extended.split("'", 2)
        try:
            filename = unquote(encoded, encoding=charset or "utf-8", errors="strict")
        except (LookupError, UnicodeDecodeError):
            raise _malformed("a part's filename* does not decode", name) from None
    try:
        content_type = header_parameters(headers.get("content-type", "text/plain"))[0]
    except HeaderError as bad:
        raise _malformed(f"a part's Content-Type {bad.detail}", name) from None
    if content_type.startswith("multipart/"):
        raise _malformed("a part is itself multipart, which a form field cannot be", name)
    return FormField(name=name, data=data, filename=filename, content_type=content_type or "text/plain")


def parse_form(body: bytes, content_type: str) -> list[FormField]:
    """The parts of a ``multipart/form-data`` ``body`` sent with ``content_type``, in order."""
    delimiter = b"\r\n--" + _boundary(content_type)
    opening = delimiter[2:]  # the first boundary line may open the body, with no line break
    if body.startswith(opening):
        at = len(opening)
    else:
        found = body.find(delimiter)
        if found < 0:
            raise _malformed("it has no boundary line")
        at = found + len(delimiter)
    fields: list[FormField] = []
    while True:
        if body.startswith(b"--", at):
            return fields  # the closing boundary; what follows is an epilogue
        line_end = body.find(b"\r\n", at)
        if line_end < 0 or body[at:line_end].strip(b" \t"):
            raise _malformed("a boundary line is followed by something else")
        start = line_end + 2
        end = body.find(delimiter, start)
        if end < 0:
            raise _malformed("its parts or their boundaries are incomplete")
        if len(fields) == MAX_FIELDS:
            raise _malformed(f"it has more than {MAX_FIELDS} parts")
        if body.startswith(b"\r\n", start):  # a part with no headers at all
            head_end, data_start = start, start + 2
        else:
            head_end = body.find(b"\r\n\r\n", start, min(end, start + MAX_PART_HEAD + 4))
            if head_end < 0:
                raise _malformed(
                    f"a part's headers are missing their end or longer than {MAX_PART_HEAD} bytes"
                )
            data_start = head_end + 4
        fields.append(_part(body[start:head_end], body[data_start:end]))
        at = end + len(delimiter)
