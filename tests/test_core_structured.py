"""Structured output in core: code fences stripped as text streams, answers checked by schema."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.chat_request import parse_chat_request
from core.chat_stream import CompletionMeta, PoeStreamToChatChunks
from core.settings import Settings
from core.sse import ServerSentEvent
from core.structured import (
    CodeFenceStripper,
    checked_schema_problem,
    json_answer_problem,
    with_json_correction,
)

DOC = '{"name": "Ada", "tags": ["a`b", "c"], "n": 1}'


def strip_in_pieces(text: str, cuts: list[int]) -> tuple[str, list[str]]:
    stripper = CodeFenceStripper()
    bounds = sorted({0, len(text), *(c % (len(text) + 1) for c in cuts)})
    out = [stripper.push(text[a:b]) for a, b in itertools.pairwise(bounds)]
    out.append(stripper.finish())
    return "".join(out), out


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        (f"```json\n{DOC}\n```", DOC),
        (f"  ```\n{DOC}```  \n", DOC),
        (DOC, DOC),
        (f"{DOC}\n", f"{DOC}\n"),
        ("`not a fence`", "`not a fence`"),
        ("", ""),
        ("```json\n{}", "{}"),  # an unclosed fence still loses its opening line
    ],
)
def test_fences_are_stripped(raw: str, clean: str) -> None:
    assert strip_in_pieces(raw, [])[0] == clean


@given(st.sampled_from([f"```json\n{DOC}\n```", DOC, f"\n```\n{DOC}\n```\n"]), st.lists(st.integers(0, 80)))
def test_any_split_strips_the_same(raw: str, cuts: list[int]) -> None:
    whole, _ = strip_in_pieces(raw, [])
    assert strip_in_pieces(raw, cuts)[0] == whole
    assert json.loads(whole) == json.loads(DOC)


def test_the_body_streams_without_waiting_for_the_end() -> None:
    stripper = CodeFenceStripper()
    assert stripper.push("```json\n") == ""
    assert stripper.push('{"a": 1,') == '{"a": 1,'  # released at once, not held to the end
    assert stripper.push(' "b": 2}\n``') == ' "b": 2}'
    assert stripper.push("`") == ""
    assert stripper.finish() == ""


SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "age": {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "null"}]},
        "pets": {"type": "array", "items": {"$ref": "#/$defs/Pet"}},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
    "$defs": {"Pet": {"type": "object", "properties": {"kind": {"enum": ["cat", "dog"]}}}},
}


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({"name": "Ada", "age": 36, "pets": [{"kind": "cat"}]}, None),
        ({"name": "Ada", "age": None}, None),
        ({"name": "Ada"}, "$ is missing the required property 'age'"),
        ({"name": "", "age": 1}, "$.name is shorter than 1"),
        ({"name": "Ada", "age": -1}, "$.age matches none of the allowed shapes"),
        ({"name": "Ada", "age": 1, "x": 0}, "$ has a property 'x' that the schema does not allow"),
        (
            {"name": "Ada", "age": 1, "pets": [{"kind": "cow"}]},
            '$.pets[0].kind should be one of ["cat", "dog"]',
        ),
        ([], "$ should be of type object"),
    ],
)
def test_schema_problems_name_the_place(value: Any, problem: str | None) -> None:
    assert checked_schema_problem(value, SCHEMA) == problem


def chat(response_format: dict[str, Any]) -> Any:
    body = {"messages": [{"role": "user", "content": "hi"}], "response_format": response_format}
    return parse_chat_request(body, Settings())


def test_answers_are_checked_against_the_requested_format() -> None:
    schema_request = chat({"type": "json_schema", "json_schema": {"name": "p", "schema": SCHEMA}})
    assert json_answer_problem(schema_request, '{"name": "Ada", "age": 3}') is None
    assert "not valid JSON" in (json_answer_problem(schema_request, "Sure: {}") or "")
    assert json_answer_problem(chat({"type": "json_object"}), "[1]") == "it is not a JSON object"
    assert json_answer_problem(chat({"type": "text"}), "anything") is None


def test_the_correction_is_part_of_both_backends_requests() -> None:
    request = chat({"type": "json_object"})
    fixed = with_json_correction(request, "Sure: {}", "it is not valid JSON")
    assert [m.role for m in fixed.messages] == ["user", "assistant", "user"]
    assert [m["role"] for m in fixed.raw["messages"]] == ["user", "assistant", "user"]
    assert "rejected because it is not valid JSON" in fixed.messages[-1].content
    assert len(request.messages) == 1  # the original is unchanged


def test_the_chunk_converter_strips_fences_in_json_mode_only() -> None:
    meta = CompletionMeta(id="c", created=0, model="m")
    for json_mode, expected in ((True, '{"a": 1}'), (False, '```json\n{"a": 1}\n```')):
        converter = PoeStreamToChatChunks(meta, json_mode=json_mode)
        for piece in ("``", '`json\n{"a"', ": 1}\n`", "``"):
            converter.feed(ServerSentEvent(event="text", data=json.dumps({"text": piece})))
        converter.feed(ServerSentEvent(event="done", data="{}"))
        assert converter.content == expected


@given(st.lists(st.integers(0, 40), max_size=8))
def test_tool_call_arguments_split_anywhere_reassemble(cuts: list[int]) -> None:
    arguments = json.dumps({"city": "Paris", "days": [1, 2], "note": 'a "quoted" word'})
    bounds = sorted({0, len(arguments), *(c % (len(arguments) + 1) for c in cuts)})
    fragments = [arguments[a:b] for a, b in itertools.pairwise(bounds)]
    first = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}
    deltas = [first] + [{"index": 0, "function": {"arguments": f}} for f in fragments]
    converter = PoeStreamToChatChunks(CompletionMeta(id="c", created=0, model="m"))
    streamed = ""
    for delta in deltas:
        payload = {"choices": [{"index": 0, "delta": {"tool_calls": [delta]}}]}
        for chunk in converter.feed(ServerSentEvent(event="json", data=json.dumps(payload))):
            for call in chunk["choices"][0]["delta"].get("tool_calls", []):
                streamed += call["function"].get("arguments", "")
    converter.feed(ServerSentEvent(event="done", data="{}"))
    assert converter.finish_reason == "tool_calls"
    assert json.loads(streamed) == json.loads(converter.message()["tool_calls"][0]["function"]["arguments"])
    assert json.loads(streamed) == json.loads(arguments)


@pytest.mark.parametrize(
    "schema", [{"allOf": 1}, {"required": 5}, {"required": [{}]}, {"required": "ab"}, {"type": [[]]}]
)
def test_malformed_schema_keywords_check_nothing(schema: dict[str, Any]) -> None:
    # Found by the fuzzer: a client's schema is arbitrary JSON, and a typo must not be a 500.
    assert checked_schema_problem({"a": 1}, schema) is None
