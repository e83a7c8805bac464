"""Function calling end to end: a fastapi_poe bot that really requests a tool call."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
QUESTION = [{"role": "user", "content": "Weather in Paris?"}]


async def test_agent_loop_call_then_result_then_answer(client: openai.AsyncOpenAI) -> None:
    first = await client.chat.completions.create(model="weather", messages=QUESTION, tools=TOOLS)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.id == "call_weather_1"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}

    messages: list[Any] = [
        *QUESTION,
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 21}'},
    ]
    final = await client.chat.completions.create(model="weather", messages=messages, tools=TOOLS)
    assert final.choices[0].message.content == 'get_weather said: {"temp_c": 21}'
    assert final.choices[0].finish_reason == "stop"


async def test_streamed_tool_call_fragments_reassemble(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="weather", messages=QUESTION, tools=TOOLS, stream=True
    )
    calls: dict[int, dict[str, str]] = {}
    finish = None
    async for chunk in stream:
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        for delta in choice.delta.tool_calls or []:
            slot = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            slot["id"] += delta.id or ""
            if delta.function:
                slot["name"] += delta.function.name or ""
                slot["arguments"] += delta.function.arguments or ""
    assert finish == "tool_calls"
    assert calls[0]["id"] == "call_weather_1" and calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris"}


async def test_tool_choice_none_sends_no_tools(client: openai.AsyncOpenAI) -> None:
    result = await client.chat.completions.create(
        model="weather", messages=QUESTION, tools=TOOLS, tool_choice="none"
    )
    assert result.choices[0].message.content == "no tools given"
    assert result.choices[0].finish_reason == "stop"


@pytest.mark.parametrize(
    ("tools", "tool_choice", "param"),
    [
        ([{"type": "retrieval"}], None, "tools[0].type"),
        ([{"type": "function", "function": {"name": "bad name!"}}], None, "tools[0].function.name"),
        (TOOLS, "sometimes", "tool_choice"),
        (TOOLS, {"type": "function", "function": {"name": "other"}}, "tool_choice"),
    ],
)
async def test_bad_tool_definitions_are_400(
    client: openai.AsyncOpenAI, tools: Any, tool_choice: Any, param: str
) -> None:
    extra = {} if tool_choice is None else {"tool_choice": tool_choice}
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="weather", messages=QUESTION, tools=tools, **extra)
    assert caught.value.param == param


async def test_tools_without_description_and_legacy_functions_work(client: openai.AsyncOpenAI) -> None:
    bare: list[Any] = [{"type": "function", "function": {"name": "get_weather"}}]  # description is optional
    result = await client.chat.completions.create(model="weather", messages=QUESTION, tools=bare)
    assert result.choices[0].message.tool_calls is not None
    legacy = await client.chat.completions.create(
        model="weather",
        messages=QUESTION,
        functions=[{"name": "get_weather", "parameters": {"type": "object", "properties": {}}}],
    )
    assert legacy.choices[0].finish_reason == "tool_calls"
