"""``core.messages``: a Messages request as the chat body, field by field, and its refusals."""

from __future__ import annotations

import json
from typing import Any

import pytest

from core.chat_stream import CompletionMeta, completion_chunk
from core.errors import InvalidRequestError, UpstreamUnavailableError
from core.messages import MessagesWire, error_body, error_status, messages_chat_body

PDF = {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQ="}
FAILED_READ = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "no such file", "is_error": True}


def test_every_block_and_field_finds_its_place_in_chat() -> None:
    asked = messages_chat_body(
        {
            "model": "claude-sonnet-4-5-20250929",
            "max_tokens": 64,
            "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": [
                    {"type": "document", "source": PDF, "title": "spec.pdf"},
                    {"type": "document", "source": {"type": "text", "data": "plain words"}},
                    {"type": "text", "text": "read these"},
                ]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hm", "signature": "sig"},
                    {"type": "text", "text": "calling"},
                    {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"path": "a"}},
                ]},
                {"role": "user", "content": [FAILED_READ]},
                {"role": "system", "content": [{"type": "text", "text": "the environment"}]},
            ],
            "tools": [
                {"name": "Read", "input_schema": {"type": "object", "properties": {}}},
                {"type": "web_search_20250305", "name": "web_search"},
            ],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
            "stop_sequences": ["END"],
            "top_k": 5,
            "metadata": {"user_id": "u-1"},
            "output_config": {"effort": "max"},
            "thinking": {"type": "adaptive"},
            "context_management": {"edits": []},
        }
    )  # fmt: skip
    body = asked.chat_body
    assert (asked.model, asked.budget, body["max_tokens"], body["stop"], body["user"]) == (
        "claude-sonnet-4-5-20250929", None, 64, ["END"], "u-1",
    )  # fmt: skip
    assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "tool", "system"]
    assert body["messages"][1]["content"] == [
        {
            "type": "file",
            "file": {"file_data": "data:application/pdf;base64,JVBERi0xLjQ=", "filename": "spec.pdf"},
        },
        {"type": "text", "text": "plain words"},
        {"type": "text", "text": "read these"},
    ]
    assistant = body["messages"][2]
    assert (assistant["content"], assistant["tool_calls"][0]["function"]) == (
        "calling", {"name": "Read", "arguments": '{"path": "a"}'},
    )  # fmt: skip
    assert body["messages"][3] == {
        "role": "tool",
        "tool_call_id": "toolu_1",
        "content": "Error: no such file",
    }
    assert [t["function"]["name"] for t in body["tools"]] == ["Read"]  # the server tool is dropped
    assert (body["tool_choice"], body["parallel_tool_calls"], body["reasoning_effort"]) == (
        "required",
        False,
        "xhigh",
    )


def asking(**fields: Any) -> dict[str, Any]:
    """A small valid request, with ``fields`` in it."""
    return {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}], **fields}


VIDEO = [{"role": "user", "content": [{"type": "video"}]}]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m", "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
        (asking(messages=[]), "messages"),
        (asking(messages=[{"role": "robot", "content": "x"}]), "messages[0].role"),
        (asking(messages=VIDEO), "messages[0].content[0].type"),
        (asking(tool_choice={"type": "some"}, tools=[{"name": "f"}]), "tool_choice.type"),
        (asking(thinking={"type": "enabled", "budget_tokens": -1}), "thinking.budget_tokens"),
    ],
)
def test_what_does_not_fit_is_a_400_naming_it(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        messages_chat_body(body)
    assert refused.value.param == param


def test_a_budget_of_thinking_and_the_error_shape() -> None:
    asked = messages_chat_body(asking(thinking={"type": "enabled", "budget_tokens": 2048}))
    assert asked.budget == 2048 and "reasoning_effort" not in asked.chat_body
    unavailable = UpstreamUnavailableError("Poe is down")
    body = {"type": "error", "error": {"type": "overloaded_error", "message": "Poe is down"}}
    assert (error_status(unavailable), error_body(unavailable)) == (529, body)


def test_each_tool_calls_arguments_go_in_its_own_block() -> None:
    """Two calls, the first with empty arguments: the chat converter closes it with "{}" at the
    end, when its block is long closed; that "{}" goes nowhere (its input is {} already)."""
    meta = CompletionMeta("m", 0, "bot")
    first = {"index": 0, "id": "call_a", "type": "function", "function": {"name": "f", "arguments": ""}}
    second = {"index": 1, "id": "call_b", "type": "function", "function": {"name": "g", "arguments": '{"x":'}}
    chunks = [
        completion_chunk(meta, 0, {"tool_calls": [first]}),
        completion_chunk(meta, 0, {"tool_calls": [second]}),
        completion_chunk(meta, 0, {"tool_calls": [{"index": 1, "function": {"arguments": " 1}"}}]}),
        completion_chunk(
            meta, 0, {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}, "tool_calls"
        ),
    ]
    wire = MessagesWire("msg_1", "bot", 3, [])
    events = [
        json.loads(line[6:])
        for line in wire.chunks(chunks).decode().splitlines()
        if line.startswith("data: ")
    ]
    starts = [(e["index"], e["content_block"]["id"]) for e in events if e["type"] == "content_block_start"]
    deltas = [(e["index"], e["delta"]["partial_json"]) for e in events if e["type"] == "content_block_delta"]
    assert starts == [(0, "toolu_call_a"), (1, "toolu_call_b")]
    assert deltas == [(1, '{"x":'), (1, " 1}")]
    assert [e["type"] for e in events][-1] == "content_block_stop"
