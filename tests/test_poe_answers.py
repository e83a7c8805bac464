"""Everything Poe says reaches the client, on every host: Poe's own recorded answers replayed
through the ``openai`` backend (``tests/peers/recordings.py``), and a thinking bot's reasoning
through the bot backend, streamed and not, read with the official ``openai`` SDK and raw."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.conftest import OpenProxy
from tests.peers.bots import POE_KEY
from tests.peers.faulty import Answer, FaultyPoe
from tests.peers.openai_compat import PeerState
from tests.peers.recordings import recorded

AUTH = {"Authorization": f"Bearer {POE_KEY}"}


async def chat(http: httpx.AsyncClient, model: str, **body: Any) -> dict[str, Any]:
    messages = body.pop("messages", [{"role": "user", "content": "What is 7 * 8?"}])
    response = await http.post(
        "/v1/chat/completions", headers=AUTH, json={"model": model, "messages": messages, **body}
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def chat_stream(http: httpx.AsyncClient, model: str, **body: Any) -> list[dict[str, Any]]:
    """The chunks of a streamed chat, with its usage chunk."""
    messages = body.pop("messages", [{"role": "user", "content": "What is 7 * 8?"}])
    payload = {
        "model": model,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    async with http.stream(
        "POST", "/v1/chat/completions", headers=AUTH, json={**payload, **body}
    ) as response:
        assert response.status_code == 200
        lines = [line async for line in response.aiter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    return [json.loads(line[6:]) for line in lines[:-1]]


def joined(chunks: list[dict[str, Any]], field: str) -> str:
    return "".join(c["choices"][0]["delta"].get(field) or "" for c in chunks if c["choices"])


def first_with(chunks: list[dict[str, Any]], field: str) -> int:
    return next(i for i, c in enumerate(chunks) if c["choices"] and c["choices"][0]["delta"].get(field))


@pytest.mark.parametrize("name", ["grok-3-mini-reasoning", "gemini-3-pro-reasoning"])
async def test_a_recorded_reasoning_answer_arrives_whole(open_proxy: OpenProxy, name: str) -> None:
    poe = recorded(name)
    async with open_proxy("openai").http() as http:
        answer = await chat(http, f"recorded-{name}")
        chunks = await chat_stream(http, f"recorded-{name}")
    said = poe["choices"][0]["message"]
    assert answer["choices"][0]["message"] == {**said, "refusal": None}  # every field Poe sent
    assert answer["usage"] == poe["usage"]  # reasoning and cached tokens too
    assert answer["model"] == poe["model"] and {c["model"] for c in chunks} == {poe["model"]}
    # Streamed: reasoning as it comes, before the content, in both fields clients read.
    assert joined(chunks, "reasoning_content") == joined(chunks, "reasoning") == said["reasoning_content"]
    assert joined(chunks, "content") == said["content"]
    assert first_with(chunks, "reasoning_content") < first_with(chunks, "content")
    assert len([c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("reasoning_content")]) > 1
    assert chunks[-1]["usage"] == poe["usage"]


async def test_a_recorded_gemini_tool_call_keeps_its_thought_signature(open_proxy: OpenProxy) -> None:
    poe = recorded("gemini-3-flash-tool-call")
    [call] = poe["choices"][0]["message"]["tool_calls"]
    async with open_proxy("openai").sdk() as sdk:
        answer = await sdk.chat.completions.create(
            model="recorded-gemini-3-flash-tool-call", messages=[{"role": "user", "content": "weather?"}]
        )
        stream = await sdk.chat.completions.create(
            model="recorded-gemini-3-flash-tool-call",
            messages=[{"role": "user", "content": "weather?"}],
            stream=True,
        )
        deltas = [chunk.choices[0].delta async for chunk in stream if chunk.choices]
    [got] = answer.choices[0].message.tool_calls or []
    assert (got.id, got.function.name, got.function.arguments) == (
        call["id"],
        "getWeather",
        call["function"]["arguments"],
    )
    assert got.model_extra == {"extra_content": call["extra_content"]}  # the SDK keeps it for the next turn
    [streamed] = [call for delta in deltas for call in delta.tool_calls or []]
    assert (streamed.model_extra or {})["extra_content"] == call["extra_content"]
    assert answer.choices[0].finish_reason == "tool_calls"


THINKING_BOT = [
    ["text", "*Thinking...*\n\n> **Working it"],
    ["text", " out**\n>\n> 7 times 8"],
    ["text", " is 56.\n\n"],
    ["text", "7 times 8 is "],
    ["text", "56."],
]


async def test_a_thinking_bots_reasoning_reaches_chat_clients(open_proxy: OpenProxy) -> None:
    """The bot backend: a bot that thinks as Poe's thinking bots do (``core/thinking.py``)."""
    script = json.dumps(THINKING_BOT)
    messages = [{"role": "user", "content": script}]
    async with open_proxy("bot").http() as http:
        answer = await chat(http, "script", messages=messages)
        chunks = await chat_stream(http, "script", messages=messages)
    thought = "**Working it out**\n\n7 times 8 is 56.\n"
    message = answer["choices"][0]["message"]
    assert (message["content"], message["reasoning_content"], message["reasoning"]) == (
        "7 times 8 is 56.",
        thought,
        thought,
    )
    assert answer["usage"]["completion_tokens_details"]["reasoning_tokens"] > 0
    assert (joined(chunks, "reasoning_content"), joined(chunks, "content")) == (thought, "7 times 8 is 56.")
    assert first_with(chunks, "reasoning_content") < first_with(chunks, "content")


async def test_a_thinking_bots_reasoning_reaches_responses_clients(open_proxy: OpenProxy) -> None:
    """A reasoning item with its summary, streamed with its summary events, before the message;
    what Codex asks for (``include: ["reasoning.encrypted_content"]``) answered honestly: null."""
    script = json.dumps(THINKING_BOT)
    thought = "**Working it out**\n\n7 times 8 is 56.\n"
    async with open_proxy("bot").sdk() as sdk:
        answer = await sdk.responses.create(
            model="script", input=script, include=["reasoning.encrypted_content"]
        )
        stream = await sdk.responses.create(model="script", input=script, stream=True)
        events = [event async for event in stream]
    reasoning, message = answer.output
    assert reasoning.type == "reasoning" and [s.text for s in reasoning.summary] == [thought]
    assert message.type == "message"
    assert reasoning.encrypted_content is None
    assert answer.output_text == "7 times 8 is 56."
    assert answer.usage is not None and answer.usage.output_tokens_details.reasoning_tokens > 0
    kinds = [event.type for event in events]
    assert kinds[:7] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.delta",
    ]
    deltas = "".join(e.delta for e in events if e.type == "response.reasoning_summary_text.delta")  # type: ignore[union-attr]
    done = next(e for e in events if e.type == "response.reasoning_summary_text.done")
    assert deltas == done.text == thought  # type: ignore[union-attr]
    assert kinds.index("response.reasoning_summary_part.done") < kinds.index("response.output_text.delta")
    completed = events[-1]
    assert completed.type == "response.completed"
    assert [item.type for item in completed.response.output] == ["reasoning", "message"]
    assert [s.text for s in completed.response.output[0].summary] == [thought]  # type: ignore[union-attr]


async def test_reasoning_effort_becomes_the_parameter_the_model_declares(
    open_proxy: OpenProxy, backend: str, poe_state: PeerState
) -> None:
    """The stand-in's catalog declares ``enable_thinking`` for every model (as Poe's does for
    Kimi, GLM, DeepSeek): chat's ``reasoning_effort`` and Responses' ``reasoning.effort`` ask
    for it, on either backend; a client that names the model's parameter itself is left alone."""
    async with open_proxy(backend).sdk() as sdk:
        for effort, on in (("high", True), ("none", False)):
            answer = await sdk.chat.completions.create(
                model="inspect", messages=[{"role": "user", "content": "hi"}], reasoning_effort=effort
            )
            assert sent_parameters(backend, answer.choices[0].message.content, poe_state) == {
                "enable_thinking": on
            }
        response = await sdk.responses.create(model="inspect", input="hi", reasoning={"effort": "low"})
        assert sent_parameters(backend, response.output_text, poe_state) == {"enable_thinking": True}
        own = await sdk.chat.completions.create(
            model="inspect",
            messages=[{"role": "user", "content": "hi"}],
            reasoning_effort="high",
            extra_body={"parameters": {"enable_thinking": False}},
        )
        assert sent_parameters(backend, own.choices[0].message.content, poe_state)["enable_thinking"] is False


def sent_parameters(backend: str, inspected: str | None, poe_state: PeerState) -> dict[str, Any]:
    """The reasoning parameters the model got: in the bot query's last message (``inspect``
    shows it), or at the top of Poe's chat body (the stand-in kept it)."""
    if backend == "bot":
        parameters: dict[str, Any] = json.loads(inspected or "")["query"][-1]["parameters"]
        return parameters
    body = poe_state.chat_bodies[-1]
    return {k: body[k] for k in ("enable_thinking", "thinking_budget", "thinking_level") if k in body}


async def test_a_field_poe_adds_next_arrives_too(open_proxy: OpenProxy, faulty_poe: FaultyPoe) -> None:
    """Fields no recording has yet, at every level: the answer's, the message's, the tool call's."""
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "f", "arguments": "{}"},
        "extra_content": {"x": 1},
    }
    message = {
        "role": "assistant",
        "content": "ok",
        "annotations": [{"type": "url_citation"}],
        "tool_calls": [call],
    }
    answer = {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "new-model",
        "provider": "xai",
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2, "cost": {"points": 30}},
    }  # fmt: skip
    faulty_poe.handler = lambda request: Answer.json(200, answer)
    async with open_proxy("openai", POE_BASE_URL=faulty_poe.url).http() as http:
        got = await chat(http, "new-model")
    assert (got["provider"], got["model"]) == ("xai", "new-model")
    assert got["choices"][0]["message"]["annotations"] == [{"type": "url_citation"}]
    assert got["choices"][0]["message"]["tool_calls"][0]["extra_content"] == {"x": 1}
    assert got["usage"]["cost"] == {"points": 30}
