"""core.chat_request: validation, and the requests built for both Poe backends."""

from __future__ import annotations

import re
from typing import Any

import fastapi_poe as fp
import pytest

from core.chat_request import parse_chat_request
from core.chat_upstream import QueryIds, openai_compat_body, poe_query
from core.errors import InvalidRequestError
from core.settings import Settings

SETTINGS = Settings()
IDS = QueryIds.from_hex("0123456789abcdef0123456789abcdef", "alice")
POE_ID = re.compile(r"^[a-z]{1,3}-[a-z0-9=]{32}$")


def parse(**body: Any) -> Any:
    body.setdefault("messages", [{"role": "user", "content": "hi"}])
    return parse_chat_request(body, SETTINGS)


def query_for(**body: Any) -> dict[str, Any]:
    return poe_query(parse(**body), IDS)


def test_query_is_a_valid_fastapi_poe_query_request() -> None:
    body = query_for(
        model="GPT-4o",
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "developer", "content": "really brief"},
            {
                "role": "user",
                "content": [{"type": "text", "text": "look"}, {"type": "text", "text": "here"}],
                "name": "al",
            },
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "again"},
        ],
        temperature=0.3,
        stop=["\n\n", "END"],
        logit_bias={"50256": -100},
        user="alice",
    )
    request = fp.QueryRequest.model_validate(body)
    assert [m.role for m in request.query] == ["system", "system", "user", "bot", "user"]
    assert request.query[2].content == "look\n\nhere"
    assert request.query[2].sender is not None and request.query[2].sender.name == "al"
    assert request.temperature == 0.3
    assert request.stop_sequences == ["\n\n", "END"]
    assert request.logit_bias == {"50256": -100.0}
    assert request.version == "1.2" and request.type == "query"
    for identifier in (request.user_id, request.conversation_id, request.message_id):
        assert POE_ID.match(identifier)


def test_same_user_same_user_id_different_users_differ() -> None:
    assert QueryIds.from_hex("a" * 32, "bob").user_id == QueryIds.from_hex("b" * 32, "bob").user_id
    assert QueryIds.from_hex("a" * 32, "bob").user_id != QueryIds.from_hex("a" * 32, "eve").user_id


def test_bot_parameters_go_on_the_last_user_message() -> None:
    body = query_for(
        messages=[
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "b"},
            {"role": "user", "content": "c"},
        ],
        parameters={"aspect": "16:9"},
        reasoning_effort="high",
    )
    request = fp.QueryRequest.model_validate(body)
    assert request.query[0].parameters == {}
    assert request.query[2].parameters == {"aspect": "16:9", "reasoning_effort": "high"}


def test_json_mode_adds_an_instruction_to_the_system_prompt() -> None:
    body = query_for(
        messages=[{"role": "system", "content": "You are terse."}, {"role": "user", "content": "data?"}],
        response_format={"type": "json_object"},
    )
    assert body["query"][0]["content"].startswith("You are terse.\n\n")
    assert "JSON" in body["query"][0]["content"]
    without_system = query_for(response_format={"type": "json_object"})
    assert without_system["query"][0]["role"] == "system"


def test_model_aliases_resolve_to_poe_bots() -> None:
    assert parse(model="gpt-4o").bot == "GPT-4o"
    assert parse(model="gpt-4o-2024-08-06").bot == "GPT-4o"
    assert parse(model="claude-3-5-sonnet-20241022").bot == "Claude-Sonnet-3.5"
    assert parse(model="Some-Poe-Bot").bot == "Some-Poe-Bot"
    assert parse().bot == "claude-opus-4.5"
    custom = Settings.from_mapping({"MODEL_ALIASES": "fast=Gemini-2.5-Flash"})
    assert (
        parse_chat_request({"model": "FAST", "messages": [{"role": "user", "content": "x"}]}, custom).bot
        == "Gemini-2.5-Flash"
    )


def test_openai_compat_body_keeps_client_fields_but_emulated_ones() -> None:
    request = parse(
        model="gpt-4o",
        n=3,
        stream=False,
        top_p=0.5,
        seed=7,
        stop="x",
        max_tokens=9,
        stream_options={"include_usage": False},
    )
    body = openai_compat_body(request)
    assert body["model"] == "GPT-4o"
    assert "n" not in body
    assert body["stream"] is False and "stream_options" not in body  # one JSON answer
    assert body["top_p"] == 0.5 and body["seed"] == 7 and body["stop"] == "x" and body["max_tokens"] == 9
    streamed = openai_compat_body(parse(stream=True, stream_options={"include_usage": False}))
    assert streamed["stream"] is True and streamed["stream_options"] == {"include_usage": True}  # always


def test_parameters_ride_on_the_top_level_for_openai_compat() -> None:
    body = openai_compat_body(parse(parameters={"thinking_budget": 100}))
    assert body["thinking_budget"] == 100 and "parameters" not in body


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": None}, "messages"),
        ({"messages": [{"content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": [{"type": "video"}]}]}, "messages[0].content[0].type"),
        ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages[0].content[0].text"),
        ({"messages": [{"role": "assistant"}]}, "messages[0].content"),
        ({"messages": [{"role": "tool", "content": "r"}]}, "messages[0].tool_call_id"),
        ({"top_p": 1.5}, "top_p"),
        ({"presence_penalty": -3}, "presence_penalty"),
        ({"frequency_penalty": True}, "frequency_penalty"),
        ({"seed": 1.5}, "seed"),
        ({"stop": ["a", 1]}, "stop"),
        ({"logit_bias": {"1": 500}}, "logit_bias.1"),
        ({"response_format": {"type": "yaml"}}, "response_format.type"),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
        ({"stream_options": {"include_usage": "y"}}, "stream_options.include_usage"),
        ({"user": 5}, "user"),
        ({"n": 0}, "n"),
        ({"max_completion_tokens": 0}, "max_completion_tokens"),
    ],
)
def test_invalid_fields_name_their_param(body: dict[str, Any], param: str) -> None:
    full = {"messages": [{"role": "user", "content": "hi"}], **body}
    if full["messages"] is None:
        del full["messages"]
    with pytest.raises(InvalidRequestError) as caught:
        parse_chat_request(full, SETTINGS)
    assert caught.value.param == param
    assert caught.value.status == 400


def test_unknown_fields_are_accepted() -> None:
    request = parse(
        metadata={"a": "b"}, store=True, service_tier="auto", modalities=["text"], some_vendor_field=1
    )
    assert request.messages[0].content == "hi"


def test_image_url_becomes_an_attachment_by_url() -> None:
    content = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "https://img.example/a/cat.png?x=1", "detail": "low"}},
    ]
    request = fp.QueryRequest.model_validate(query_for(messages=[{"role": "user", "content": content}]))
    attachment = request.query[0].attachments[0]
    assert (attachment.url, attachment.content_type, attachment.name) == (
        "https://img.example/a/cat.png?x=1",
        "image/png",
        "cat.png",
    )
