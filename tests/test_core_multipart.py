"""``core.multipart``: forms as real clients write them, read back whole; hostile ones refused
with a 400 that names the field."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core import multipart
from core.errors import InvalidRequestError
from core.multipart import MAX_FIELDS, MAX_PARAMETERS, FormField, header_parameters, parse_form
from tests.test_core_fuzz import FUZZ

BOUNDARY = "b0undary"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def encoded(data: dict[str, str], files: dict[str, Any]) -> tuple[bytes, str]:
    """What httpx (under the OpenAI SDK) sends for this form: its body and Content-Type."""
    request = httpx.Request("POST", "http://x/", data=data, files=files)
    return request.read(), request.headers["content-type"]


def form(*parts: bytes, boundary: str = BOUNDARY) -> bytes:
    return b"".join(b"--" + boundary.encode() + b"\r\n" + part + b"\r\n" for part in parts) + (
        b"--" + boundary.encode() + b"--\r\n"
    )


def refused(body: bytes, content_type: str = CONTENT_TYPE) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as raised:
        parse_form(body, content_type)
    assert raised.value.status == 400
    return raised.value


# httpx percent-encodes control characters in names; other text stands as it is.
names = st.text(st.characters(min_codepoint=0x20, blacklist_categories=("Cs",)), min_size=1, max_size=16)


@FUZZ
@given(
    st.dictionaries(names, st.text(max_size=40), max_size=5),
    st.lists(st.tuples(names, st.binary(max_size=200)), min_size=1, max_size=4),
)  # with no file httpx sends a form urlencoded
def test_what_httpx_writes_is_read_back_whole(fields: dict[str, str], files: list[tuple[str, bytes]]) -> None:
    uploads = {f"file{i}": (name, data, "image/png") for i, (name, data) in enumerate(files)}
    body, content_type = encoded(fields, uploads)
    parsed = parse_form(body, content_type)
    expected = [FormField(k, v.encode()) for k, v in fields.items()]
    expected += [FormField(f"file{i}", data, name, "image/png") for i, (name, data) in enumerate(files)]
    # httpx percent-encodes quotes and line breaks in names, as the WHATWG form encoding does.
    escape = {ord('"'): "%22", ord("\r"): "%0D", ord("\n"): "%0A"}
    for got, want in zip(parsed, expected, strict=True):
        assert got.name == want.name.translate(escape)
        assert got.data == want.data and got.content_type == want.content_type
        assert got.filename == (None if want.filename is None else want.filename.translate(escape))


def test_quoted_and_extended_parameters() -> None:
    part = (
        b'Content-Disposition: form-data; name="image"; filename="a \\"b\\".png"; '
        b"filename*=UTF-8''%E2%82%AC.png\r\nContent-Type: Image/PNG; charset=x\r\n\r\n\x89PNG"
    )
    [field] = parse_form(b"preamble\r\n" + form(part) + b"epilogue", CONTENT_TYPE)
    assert field == FormField("image", b"\x89PNG", "\u20ac.png", "image/png")
    assert header_parameters('form-data; name=plain ;x="a;b" ;') == (
        "form-data",
        {"name": "plain", "x": "a;b"},
    )


def test_a_bare_boundary_and_a_quoted_one() -> None:
    body = form(b'Content-Disposition: form-data; name="prompt"\r\n\r\na hat', boundary="q b")
    assert parse_form(body, 'multipart/form-data; boundary="q b"') == [FormField("prompt", b"a hat")]


@pytest.mark.parametrize(
    ("disposition", "param"),
    [
        # The request that ended a Pyodide host: a comment nested 400 deep (the email parser recursed).
        (b'form-data; name="image"; filename="a.png"' + b"(" * 400 + b")" * 400, "image"),
        # 80,000 parameters: quadratic in the email parser (a minute of a host's time per request),
        # here past the bound on a part's head before anything is parsed.
        (b'form-data; name="image"' + b"; a=b" * 80_000, None),
        (b'form-data; name="image"' + b"; a=b" * MAX_PARAMETERS, "image"),
        (b"form-data" + b"; a=b" * (MAX_PARAMETERS + 1), None),
        (b'form-data; name="x"; filename="open', "x"),
        (b"form-data; =x", None),
    ],
)
def test_a_hostile_content_disposition_is_a_400(disposition: bytes, param: str | None) -> None:
    error = refused(form(b"Content-Disposition: " + disposition + b"\r\n\r\nx"))
    assert (error.code, error.param) == ("invalid_body", param)


def test_bounds_on_parts_heads_and_nesting() -> None:
    field = b'Content-Disposition: form-data; name="n"\r\n\r\n1'
    assert len(parse_form(form(*[field] * MAX_FIELDS), CONTENT_TYPE)) == MAX_FIELDS
    assert "more than 64 parts" in refused(form(*[field] * (MAX_FIELDS + 1))).message
    long_head = b'Content-Disposition: form-data; name="n"\r\nX-Pad: ' + b"p" * multipart.MAX_PART_HEAD
    assert "longer than" in refused(form(long_head + b"\r\n\r\n1")).message
    many_lines = b"X: y\r\n" * multipart.MAX_PART_HEADERS + field
    assert "header lines" in refused(form(many_lines)).message
    nested = (
        b'Content-Disposition: form-data; name="image"\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n'
    )
    inner = form(b'Content-Disposition: form-data; name="x"\r\n\r\ny', boundary="c")
    assert refused(form(nested + inner)).param == "image"


@pytest.mark.parametrize(
    ("body", "content_type", "code"),
    [
        (b"x", "application/json", "invalid_content_type"),
        (b"x", "multipart/form-data", "invalid_body"),
        (b"x", "multipart/form-data; boundary=" + "b" * 71, "invalid_body"),
        (b"x", "multipart/form-data; boundary=\u00e9", "invalid_body"),
        (b"no boundary line", CONTENT_TYPE, "invalid_body"),
        (b"--b0undary\r\nContent-Disposition: form-data; name=x\r\n\r\ncut", CONTENT_TYPE, "invalid_body"),
        (b"--b0undaryjunk\r\n", CONTENT_TYPE, "invalid_body"),
        (form(b"Content-Disposition: attachment; name=x\r\n\r\n1"), CONTENT_TYPE, "invalid_body"),
        (form(b"Content-Type: text/plain\r\n\r\n1"), CONTENT_TYPE, "invalid_body"),
        (
            form(b" folded: x\r\nContent-Disposition: form-data; name=x\r\n\r\n1"),
            CONTENT_TYPE,
            "invalid_body",
        ),
        (
            form(b"Content-Disposition: form-data; name=x; filename*=nope''%ff\r\n\r\n1"),
            CONTENT_TYPE,
            "invalid_body",
        ),
    ],
)
def test_what_is_not_a_form_is_a_400(body: bytes, content_type: str, code: str) -> None:
    assert refused(body, content_type).code == code
