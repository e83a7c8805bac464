"""Anthropic's Messages API on every host and both backends, through the official ``anthropic``
SDK: answers, streams (raw events and the ``messages.stream`` helper), a tool round trip, an
image, stop sequences, thinking, token counting and errors in Anthropic's shape."""

from __future__ import annotations

import base64
import json

import anthropic
import pytest

from tests.conftest import OpenProxy
from tests.hosts import Target
from tests.peers.bots import POE_KEY, png
from tests.peers.recordings import recorded
from tests.test_poe_answers import THINKING_BOT

WEATHER = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture
def proxy(open_proxy: OpenProxy, backend: str, poe_server: str) -> Target:
    return open_proxy(backend, POE_UPLOAD_URL=f"{poe_server}/poe_api/")


async def test_an_answer_in_anthropics_shape(proxy: Target) -> None:
    async with proxy.anthropic() as client:
        message = await client.messages.create(
            model="echo", max_tokens=100, system=[{"type": "text", "text": "be brief"}],
            messages=[{"role": "user", "content": "hi there"}],
        )  # fmt: skip
    assert message.id.startswith("msg_") and message.type == "message" and message.role == "assistant"
    assert [(b.type, b.text) for b in message.content] == [("text", "hi there")]  # type: ignore[union-attr]
    assert (message.model, message.stop_reason, message.stop_sequence) == ("echo", "end_turn", None)
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0


async def test_a_stream_of_anthropics_events_and_the_stream_helper(proxy: Target) -> None:
    async with proxy.anthropic() as client:
        stream = await client.messages.create(
            model="echo",
            max_tokens=100,
            messages=[{"role": "user", "content": "tokens leave as they come"}],
            stream=True,
        )
        kinds = [event.type async for event in stream]
        async with client.messages.stream(
            model="echo", max_tokens=100, messages=[{"role": "user", "content": "through the helper"}]
        ) as helper:
            text = await helper.get_final_text()
            final = await helper.get_final_message()
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(kinds[2:-3]) == {"content_block_delta"}
    assert text == "through the helper" and final.stop_reason == "end_turn" and final.usage.output_tokens > 0


@pytest.mark.parametrize("stream", [False, True])
async def test_a_tool_round_trip(proxy: Target, stream: bool) -> None:
    asked = [{"role": "user", "content": "Weather in Paris?"}]
    async with proxy.anthropic() as client:
        if stream:
            async with client.messages.stream(
                model="weather", max_tokens=200, messages=asked, tools=[WEATHER]
            ) as s:
                first = await s.get_final_message()
        else:
            first = await client.messages.create(
                model="weather", max_tokens=200, messages=asked, tools=[WEATHER]
            )
        [call] = first.content
        assert call.type == "tool_use" and call.id.startswith("toolu_")
        assert (call.name, call.input, first.stop_reason) == ("get_weather", {"city": "Paris"}, "tool_use")
        result = {
            "type": "tool_result",
            "tool_use_id": call.id,
            "content": [{"type": "text", "text": '{"temp_c": 21}'}],
        }
        final = await client.messages.create(
            model="weather",
            max_tokens=200,
            tools=[WEATHER],
            messages=[
                *asked,
                {"role": "assistant", "content": first.content},
                {"role": "user", "content": [result]},
            ],
        )
    assert final.content[0].text == 'get_weather said: {"temp_c": 21}'  # type: ignore[union-attr]


async def test_an_image_reaches_the_bot(proxy: Target) -> None:
    image = base64.b64encode(png(2, 2, (200, 10, 10))).decode()
    block = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": image}}
    async with proxy.anthropic() as client:
        message = await client.messages.create(
            model="inspect", max_tokens=4000,
            messages=[{"role": "user", "content": [block, {"type": "text", "text": "what is this?"}]}],
        )  # fmt: skip
    [said] = json.loads(message.content[0].text)["query"]  # type: ignore[union-attr]
    assert said["content"] == "what is this?" and [a["content_type"] for a in said["attachments"]] == [
        "image/png"
    ]


async def test_stop_sequences(proxy: Target) -> None:
    async with proxy.anthropic() as client:
        message = await client.messages.create(
            model="echo", max_tokens=100, stop_sequences=["STOP", "two"],
            messages=[{"role": "user", "content": "one two three"}],
        )  # fmt: skip
    assert (message.content[0].text, message.stop_reason, message.stop_sequence) == (
        "one ",
        "stop_sequence",
        "two",
    )  # type: ignore[union-attr]


async def test_a_thinking_bots_reasoning_as_thinking_blocks(open_proxy: OpenProxy) -> None:
    script = json.dumps(THINKING_BOT)
    async with open_proxy("bot").anthropic() as client:
        message = await client.messages.create(
            model="script", max_tokens=500, messages=[{"role": "user", "content": script}]
        )
        async with client.messages.stream(
            model="script", max_tokens=500, messages=[{"role": "user", "content": script}]
        ) as s:
            deltas = [event.delta.type async for event in s if event.type == "content_block_delta"]
            streamed = await s.get_final_message()
    thought = "**Working it out**\n\n7 times 8 is 56.\n"
    for answer in (message, streamed):
        assert [b.type for b in answer.content] == ["thinking", "text"]
        assert (answer.content[0].thinking, answer.content[1].text) == (thought, "7 times 8 is 56.")  # type: ignore[union-attr]
    assert deltas.index("thinking_delta") < deltas.index("text_delta")


async def test_count_tokens_and_both_ways_of_sending_the_key(proxy: Target) -> None:
    async with proxy.anthropic() as client:
        counted = await client.messages.count_tokens(
            model="echo", messages=[{"role": "user", "content": "count these words"}]
        )
    async with proxy.anthropic(api_key=None, auth_token=POE_KEY) as bearer:  # ANTHROPIC_AUTH_TOKEN's way
        message = await bearer.messages.create(
            model="echo", max_tokens=10, messages=[{"role": "user", "content": "ok"}]
        )
    assert counted.input_tokens > 0 and message.content[0].text == "ok"  # type: ignore[union-attr]


async def test_errors_in_anthropics_shape(proxy: Target) -> None:
    async with proxy.http() as http:  # the SDK itself refuses a request without max_tokens
        missing = await http.post(
            "/v1/messages",
            headers={"x-api-key": POE_KEY},
            json={"model": "echo", "messages": [{"role": "user", "content": "x"}]},
        )
    async with proxy.anthropic(api_key="not-a-key") as client:
        with pytest.raises(anthropic.AuthenticationError) as refused:
            await client.messages.create(
                model="echo", max_tokens=10, messages=[{"role": "user", "content": "x"}]
            )
    assert missing.status_code == 400 and missing.json()["type"] == "error"
    assert (
        missing.json()["error"]["type"] == "invalid_request_error"
        and "max_tokens" in missing.json()["error"]["message"]
    )
    assert refused.value.status_code == 401 and refused.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]


async def test_a_failure_after_the_stream_began_is_an_error_event(open_proxy: OpenProxy) -> None:
    script = json.dumps([["text", "partial "], ["error", "the bot broke", False]])
    async with open_proxy("bot").http() as http:
        response = await http.post(
            "/v1/messages?beta=true",
            headers={
                "x-api-key": POE_KEY,
                "anthropic-version": "2023-06-01",
                "anthropic-beta": "claude-code-20250219",
            },
            json={
                "model": "script",
                "max_tokens": 50,
                "stream": True,
                "messages": [{"role": "user", "content": script}],
            },
        )
    assert response.status_code == 200
    events = [block.split("\n", 1)[0] for block in response.text.strip().split("\n\n")]
    assert events[0] == "event: message_start" and events[-1] == "event: error"
    error = json.loads(response.text.strip().split("\n\n")[-1].split("data: ", 1)[1])
    assert (
        error["type"] == "error"
        and error["error"]["type"] == "api_error"
        and "the bot broke" in error["error"]["message"]
    )


async def test_a_client_refused_before_its_stream_gets_an_http_error(proxy: Target) -> None:
    async with proxy.http() as http:
        response = await http.post(
            "/v1/messages",
            headers={"x-api-key": POE_KEY},
            json={
                "model": "no such bot!",
                "max_tokens": 5,
                "stream": True,
                "messages": [{"role": "user", "content": "x"}],
            },
        )
    assert response.status_code == 400
    assert response.json() == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": response.json()["error"]["message"]},
    }


async def test_poes_recorded_reasoning_as_thinking_blocks(open_proxy: OpenProxy) -> None:
    """The openai backend: Poe's own reasoning (a recorded answer, tests/peers/recordings.py)."""
    poe = recorded("grok-3-mini-reasoning")["choices"][0]["message"]
    asked = {
        "model": "recorded-grok-3-mini-reasoning",
        "max_tokens": 500,
        "messages": [{"role": "user", "content": "7*8?"}],
    }
    async with open_proxy("openai").anthropic() as client:
        message = await client.messages.create(**asked)  # type: ignore[arg-type]
        async with client.messages.stream(**asked) as stream:  # type: ignore[arg-type]
            streamed = await stream.get_final_message()
    for answer in (message, streamed):
        assert [b.type for b in answer.content] == ["thinking", "text"]
        assert (answer.content[0].thinking, answer.content[1].text) == (
            poe["reasoning_content"],
            poe["content"],
        )  # type: ignore[union-attr]
