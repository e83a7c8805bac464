"""core's Responses API, driven by hand (no I/O): every event and response object it makes is
validated strictly against the ``openai`` SDK's own types, and the translation to a chat request
is checked field by field."""

from __future__ import annotations

import json
from typing import Any

import pydantic
import pytest
from openai.types.responses import Response, ResponseStreamEvent

from core.errors import InvalidRequestError
from core.responses import parse_responses_request
from core.settings import Settings
from tests.test_core_exchange import Host, StartCall, request, sse

EVENT = pydantic.TypeAdapter(ResponseStreamEvent)
SETTINGS = Settings()


def bot(*events: tuple[str, object]) -> Any:
    def script(call: StartCall) -> list[Any]:
        return [("answered", 200, {}), ("data", sse(*events)), ("ended",)]

    return script


def run(body: dict[str, Any], *events: tuple[str, object]) -> Host:
    return Host(bot(*events)).run(request("POST", "/v1/responses"), json.dumps(body).encode())


def streamed(host: Host) -> list[Any]:
    assert host.response is not None and host.response.status == 200
    events = [json.loads(line) for line in host.events()]
    return [EVENT.validate_python(event) for event in events]  # strict: every field as the SDK types it


TOOL_CALL = (
    "json",
    {"choices": [{"delta": {"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
     "function": {"name": "crm__lookup", "arguments": '{"who": "ada"}'}}]}}]},
)  # fmt: skip
NAMESPACE = {
    "type": "namespace",
    "name": "crm",
    "description": "CRM",
    "tools": [{"type": "function", "name": "lookup"}],
}


def test_a_streamed_answer_is_valid_events_in_order() -> None:
    events = streamed(run({"model": "echo", "input": "hi", "stream": True}, ("text", {"text": "Hel"}),
                          ("text", {"text": "lo"}), ("done", {})))  # fmt: skip
    assert [e.type for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(10))
    completed = events[-1].response
    assert completed.output_text == "Hello" and completed.usage.total_tokens > 0
    assert {e.item_id for e in events if hasattr(e, "item_id")} == {completed.output[0].id}


def test_text_then_a_namespaced_call_streams_as_two_items() -> None:
    body = {"model": "echo", "input": "x", "stream": True, "tools": [NAMESPACE]}
    events = streamed(run(body, ("text", {"text": "Looking."}), TOOL_CALL, ("done", {})))
    kinds = [e.type for e in events]
    assert kinds.index("response.output_item.done") < kinds.index("response.function_call_arguments.delta")
    final = events[-1].response
    message, call = final.output
    assert (message.type, call.type) == ("message", "function_call")
    assert (call.namespace, call.name, call.call_id, call.arguments) == (
        "crm",
        "lookup",
        "call_1",
        '{"who": "ada"}',
    )


def test_a_response_object_is_valid_and_maps_the_namespace_back() -> None:
    host = run(
        {"model": "echo", "input": "x", "tools": [NAMESPACE], "metadata": {"k": "v"}}, TOOL_CALL, ("done", {})
    )
    response = Response.model_validate(host.json())
    (call,) = response.output
    assert call.type == "function_call" and (call.namespace, call.name) == ("crm", "lookup")
    assert response.metadata == {"k": "v"} and response.store is True


def test_a_length_cut_is_incomplete() -> None:
    host = run(
        {"model": "echo", "input": "x", "max_output_tokens": 1}, ("text", {"text": "a long answer " * 5})
    )
    response = Response.model_validate(host.json())
    assert response.status == "incomplete" and response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"


def test_a_failure_after_output_is_error_then_response_failed() -> None:
    events = streamed(run({"model": "echo", "input": "x", "stream": True}, ("text", {"text": "part"}),
                          ("error", {"text": "boom", "allow_retry": False})))  # fmt: skip
    assert [e.type for e in events[-2:]] == ["error", "response.failed"]
    assert events[-1].response.error is not None and "boom" in events[-1].response.error.message


def test_the_input_becomes_the_chat_request() -> None:
    chat = parse_responses_request(
        {
            "model": "gpt-4o",
            "instructions": "be brief",
            "input": [
                {"role": "developer", "content": "rules"},
                {"type": "message", "role": "user", "content": [
                    {"type": "input_text", "text": "look"},
                    {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "low"}]},
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {"type": "function_call", "call_id": "c1", "name": "lookup", "namespace": "crm",
                 "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "found"},
            ],
            "tools": [NAMESPACE, {"type": "web_search"}],
            "tool_choice": {"type": "function", "name": "lookup", "namespace": "crm"},
            "text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}}},
            "reasoning": {"effort": "high"},
            "max_output_tokens": 50,
        },
        SETTINGS,
    ).chat  # fmt: skip
    assert [m.role for m in chat.messages] == ["system", "system", "user", "assistant", "tool"]
    assert chat.messages[2].media[0].url == "https://example.com/a.png"
    assert chat.messages[3].tool_calls[0]["function"]["name"] == "crm__lookup"
    assert [t["function"]["name"] for t in chat.tools] == ["crm__lookup"]  # web_search left out
    assert chat.tool_choice == {"type": "function", "function": {"name": "crm__lookup"}}
    assert chat.json_mode == "json_schema" and chat.max_tokens == 50
    assert chat.parameters == {"reasoning_effort": "high"}


IMAGE_BY_ID = {"type": "input_image", "file_id": "file_1"}
F = {"type": "function", "name": "f"}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "x", "previous_response_id": 1}, "previous_response_id"),
        ({"input": "x", "prompt": {"id": "pmpt_1"}}, "prompt"),
        ({"input": "x", "text": {"verbosity": 2}}, "text.verbosity"),
        ({"input": [{"role": "user", "content": [IMAGE_BY_ID]}]}, "input[0].content[0].file_id"),
        ({"input": "x", "instructions": 5}, "instructions"),
        ({"input": "x", "tools": [{**F, "parameters": 3}]}, "tools[0].parameters"),
        ({"input": "x", "tools": [F], "tool_choice": {"type": "function", "name": "g"}}, "tool_choice"),
        ({"input": "x", "reasoning": {"effort": 3}}, "reasoning.effort"),
    ],
)  # fmt: skip
def test_errors_name_the_responses_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_responses_request(body, SETTINGS)
    assert caught.value.param == param
    assert "messages[" not in caught.value.message
