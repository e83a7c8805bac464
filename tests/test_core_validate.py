"""core.validate: the request body as a JSON object, or a 400 that says what is wrong."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


def depth(value: object) -> int:
    """How deep ``value``'s arrays and objects nest (the decoded truth)."""
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    return 0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab'),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(alphabet='[]{}"\\a', max_size=3), inner, max_size=3)
    ),
    max_leaves=200,
)


@settings(max_examples=300, deadline=None)
@given(json_values, st.integers(min_value=0, max_value=80))
def test_the_depth_check_on_the_raw_text_agrees_with_the_decoded_value(value: object, wrap: int) -> None:
    # The check runs before decoding (it must not recurse); brackets and escaped quotes inside
    # strings must not fool it.
    body = {"x": value}
    for _ in range(wrap):
        body = {"x": [body]}
    text = json.dumps(body)
    if depth(body) > MAX_JSON_DEPTH:
        with pytest.raises(InvalidRequestError, match="nested too deeply"):
            parse_json_object(text)
    else:
        assert parse_json_object(text) == body


def test_deep_nesting_is_refused_without_decoding_it() -> None:
    # 100,000 levels: a decoder would recurse (and in Pyodide, overflow the stack and end the
    # process); the check does not.
    with pytest.raises(InvalidRequestError, match="nested too deeply"):
        parse_json_object(b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")


@pytest.mark.parametrize(
    ("text", "param"),
    [
        ('{"a": "\\ud800"}', "a"),
        ('{"a": ["ok", {"b": "x\\udfffy"}]}', "a[1].b"),
        ('{"a": "\\ude00\\ud83d"}', "a"),  # the halves in the wrong order
        ('{"\\ud800": 1}', None),  # a key: named by where it is, the top
    ],
)
def test_a_lone_surrogate_is_a_400_naming_where(text: str, param: str | None) -> None:
    with pytest.raises(InvalidRequestError) as raised:
        parse_json_object(text)
    assert (raised.value.param, raised.value.code) == (param, "invalid_encoding")


@pytest.mark.parametrize("text", ['{"a": "\\ud83d\\ude00"}', '{"a": "\\\\ud800"}', '{"a": "\\\\\\\\ud800"}'])
def test_pairs_and_escaped_backslashes_are_not_lone_surrogates(text: str) -> None:
    assert parse_json_object(text) == json.loads(text)
