"""The Responses API (``/v1/responses``) through the official SDK's ``responses`` resource, the
OpenAI Agents SDK and raw HTTP, on every host and both backends."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
import openai
import pydantic
import pytest

from tests.peers.bots import GATES, POE_KEY
from tests.peers.runtimes import npm_tool

AUTH = {"Authorization": f"Bearer {POE_KEY}"}
WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
LIFECYCLE = ["response.created", "response.in_progress"]
TEXT_ITEM_OPEN = ["response.output_item.added", "response.content_part.added"]
TEXT_ITEM_CLOSE = ["response.output_text.done", "response.content_part.done", "response.output_item.done"]


def script(*steps: object) -> str:
    return json.dumps(steps)


async def test_create_answers_with_a_response_object(client: openai.AsyncOpenAI) -> None:
    response = await client.responses.create(model="echo", input="hello from responses")
    assert response.object == "response" and response.status == "completed"
    assert response.output_text == "hello from responses"
    assert response.usage is not None
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens > 0
    (message,) = response.output
    assert message.type == "message" and message.role == "assistant"


async def test_stream_is_the_full_event_sequence(client: openai.AsyncOpenAI) -> None:
    items = [{"role": "user", "content": [{"type": "input_text", "text": "three small words"}]}]
    async with client.responses.stream(model="echo", input=items) as stream:
        events = [event async for event in stream]
        final = await stream.get_final_response()
    kinds = [e.type for e in events]
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert kinds[:4] == [*LIFECYCLE, *TEXT_ITEM_OPEN] or kinds[:3] == ["response.created", *TEXT_ITEM_OPEN]
    assert kinds[-4:] == [*TEXT_ITEM_CLOSE, "response.completed"]
    assert set(kinds) - {*LIFECYCLE, *TEXT_ITEM_OPEN, *TEXT_ITEM_CLOSE, "response.completed"} == {
        "response.output_text.delta"
    }
    assert len(deltas) == 3 and "".join(deltas) == "three small words"  # token by token
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert final.output_text == "three small words" and final.usage is not None


class Person(pydantic.BaseModel):
    name: str
    born: int


async def test_parse_gives_the_pydantic_model(client: openai.AsyncOpenAI) -> None:
    ada = Person(name="Ada", born=1815)
    response = await client.responses.parse(model="jsonbot", input=ada.model_dump_json(), text_format=Person)
    assert response.output_parsed == ada


async def test_function_call_round_trip(client: openai.AsyncOpenAI) -> None:
    question: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    first = await client.responses.create(model="weather", input=question, tools=[WEATHER_TOOL])
    (call,) = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
    history = [
        *question,
        *[item.model_dump(exclude_none=True) for item in first.output],
        {"type": "function_call_output", "call_id": call.call_id, "output": '{"temp_c": 21}'},
    ]
    final = await client.responses.create(model="weather", input=history, tools=[WEATHER_TOOL])
    assert final.output_text == 'get_weather said: {"temp_c": 21}'


async def test_streamed_function_call_arguments(client: openai.AsyncOpenAI) -> None:
    async with client.responses.stream(
        model="weather", input="Weather in Paris?", tools=[WEATHER_TOOL]
    ) as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_response()
    assert "response.function_call_arguments.delta" in kinds
    assert kinds[-3:] == [
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    (call,) = [item for item in final.output if item.type == "function_call"]
    assert json.loads(call.arguments) == {"city": "Paris"}


async def test_tools_poe_cannot_run_are_left_out_not_refused(client: openai.AsyncOpenAI) -> None:
    tools: list[Any] = [
        {"type": "web_search"},
        {"type": "file_search", "vector_store_ids": ["vs_1"]},
        {"type": "custom", "name": "apply_patch", "description": "edit files"},
        {"type": "namespace", "name": "crm", "description": "the CRM", "tools": [{**WEATHER_TOOL}]},
    ]
    response = await client.responses.create(model="echo", input="still answered", tools=tools)
    assert response.output_text == "still answered"


async def test_the_agents_sdk_runs_a_function_tool(client: openai.AsyncOpenAI) -> None:
    agents = pytest.importorskip("agents", reason="make test installs openai-agents (the dev extra)")
    agents.set_tracing_disabled(True)
    calls: list[str] = []

    @agents.function_tool
    def get_weather(city: str) -> str:
        """Current weather for a city."""
        calls.append(city)
        return '{"temp_c": 21}'

    model = agents.OpenAIResponsesModel(model="weather", openai_client=client)
    agent = agents.Agent(name="forecaster", instructions="Use the tool.", tools=[get_weather], model=model)
    result = await agents.Runner.run(agent, "Weather in Paris?")
    assert calls == ["Paris"]
    assert result.final_output == 'get_weather said: {"temp_c": 21}'


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "echo"}, "input"),
        ({"model": "echo", "input": 5}, "input"),
        ({"model": "echo", "input": [{"role": "boss", "content": "hi"}]}, "input[0].role"),
        (
            {"model": "echo", "input": [{"role": "user", "content": [{"type": "input_text"}]}]},
            "input[0].content[0].text",
        ),
        ({"model": "echo", "input": [{"type": "wat"}]}, "input[0].type"),
        ({"model": "echo", "input": "x", "max_output_tokens": 0}, "max_output_tokens"),
        ({"model": "echo", "input": "x", "text": {"format": {"type": "yaml"}}}, "text.format.type"),
        (
            {"model": "echo", "input": "x", "tools": [{"type": "function", "name": "bad name!"}]},
            "tools[0].name",
        ),
        ({"model": "echo", "input": "x", "background": True}, "background"),
    ],
)
async def test_bad_requests_name_the_responses_field(
    http: httpx.AsyncClient, body: dict[str, Any], param: str
) -> None:
    response = await http.post("/v1/responses", json=body, headers=AUTH)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


async def test_a_failure_mid_stream_ends_with_response_failed(http: httpx.AsyncClient) -> None:
    body = {
        "model": "script",
        "input": script(["text", "partial "], ["error", "the bot broke", False]),
        "stream": True,
    }
    response = await http.post("/v1/responses", json=body, headers=AUTH)
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]
    assert response.status_code == 200
    assert any(e["type"] == "response.output_text.delta" for e in events)
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["status"] == "failed" and events[-1]["response"]["error"]["message"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))


async def test_an_unknown_model_is_an_http_error_before_any_event(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        await client.responses.create(model="no-such-bot", input="x", stream=True)


def said(role: str, text: str) -> dict[str, Any]:
    return {"type": "message", "role": role, "content": [{"type": "input_text", "text": text}]}


CODEX_REQUEST: dict[str, Any] = {
    # The shape Codex CLI 0.169.0 sends (recorded from a real run), with shorter texts.
    "model": "echo",
    "instructions": "You are Codex, a coding agent.",
    "input": [
        said("developer", "<permissions>"),
        said("developer", "<collaboration>"),
        said("user", "<environment_context>"),
        said("user", "say hi"),
    ],
    "tools": [
        {"type": "function", "name": "shell", "description": "Runs a command", "strict": False,
         "parameters": {"type": "object", "properties": {"command": {"type": "string"}}}},
        {"type": "namespace", "name": "mcp__files", "description": "Files",
         "tools": [{"type": "function", "name": "read", "parameters": {"type": "object"}}]},
        {"type": "web_search", "external_web_access": False},
    ],
    "tool_choice": "auto",
    "parallel_tool_calls": True,
    "reasoning": {"summary": "auto"},
    "store": False,
    "stream": True,
    "include": ["reasoning.encrypted_content"],
    "prompt_cache_key": "0199-session",
    "client_metadata": {"originator": "codex_exec"},
}  # fmt: skip


async def test_what_codex_sends_is_answered(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/v1/responses", json=CODEX_REQUEST, headers={**AUTH, "accept": "text/event-stream"}
    )
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]
    assert events[-1]["type"] == "response.completed"
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert text == "say hi"


def test_first_token_arrives_while_the_bot_is_still_writing(proxy_url: str) -> None:
    token = uuid.uuid4().hex
    release, _ = GATES.open(token)
    body = {"model": "gated", "input": token, "stream": True}
    with httpx.stream("POST", f"{proxy_url}/v1/responses", json=body, headers=AUTH, timeout=10) as response:
        lines = response.iter_lines()
        first = next(line for line in lines if line.startswith("data: ") and "output_text.delta" in line)
        assert "first" in first
        assert not release.is_set()  # the bot still waits: nothing held the first token back
        release.set()
        rest = [line for line in lines if line.startswith("data: ")]
    assert json.loads(rest[-1][6:])["type"] == "response.completed"


CODEX = npm_tool("codex")


@pytest.mark.skipif(CODEX is None, reason="make test installs @openai/codex into tools/npm")
def test_codex_cli_runs_a_turn_through_the_proxy(proxy_url: str, tmp_path: Path) -> None:
    """Codex CLI (pinned in tools/npm) with a provider whose base URL is the proxy: ``codex exec``
    streams one turn over the Responses API and prints the answer."""
    (tmp_path / "home").mkdir()
    (tmp_path / "work").mkdir()
    provider = f'{{name="Poe", base_url="{proxy_url}/v1", env_key="POE_TEST_KEY", wire_api="responses"}}'
    done = subprocess.run(
        [str(CODEX), "exec", "--skip-git-repo-check", "-m", "echo", "-c", "model_provider=poe",
         "-c", f"model_providers.poe={provider}", "hello from codex"],
        cwd=tmp_path / "work",
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path / "home"), "POE_TEST_KEY": POE_KEY},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "hello from codex"
