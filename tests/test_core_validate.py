"""core.validate: the request body as a JSON object, or a 400 that says what is wrong."""

from __future__ import annotations

import json

import pytest

from core.errors import InvalidRequestError
from core.validate import MAX_JSON_DEPTH, parse_json_object


def nested(depth: int) -> bytes:
    """A JSON object ``depth`` levels deep: {"a": [[...[1]...]]}."""
    return b'{"a": ' + b"[" * (depth - 1) + b"1" + b"]" * (depth - 1) + b"}"


def test_nesting_up_to_the_limit_is_accepted() -> None:
    value = parse_json_object(nested(MAX_JSON_DEPTH))
    assert isinstance(value["a"], list)


def test_nesting_beyond_the_limit_is_a_400() -> None:
    with pytest.raises(InvalidRequestError, match="nested too deeply"):
        parse_json_object(nested(MAX_JSON_DEPTH + 1))


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    text = "[" * (2 * MAX_JSON_DEPTH)
    assert parse_json_object(json.dumps({"text": text}).encode()) == {"text": text}


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"", "empty"),
        (b"  ", "empty"),
        (b"\xff{}", "UTF-8"),
        (b"{oops", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
    ],
)
def test_bad_bodies_say_what_is_wrong(body: bytes, says: str) -> None:
    with pytest.raises(InvalidRequestError, match=says) as caught:
        parse_json_object(body)
    assert caught.value.status == 400
