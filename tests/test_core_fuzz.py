"""Every core entry point, fed arbitrary JSON: only the OpenAIError family may escape."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.chat_request import parse_chat_request
from core.chat_stream import CompletionMeta, OpenAIStreamToChatChunks, PoeStreamToChatChunks
from core.chat_upstream import QueryIds, openai_compat_body, poe_query
from core.completions import parse_completion_request
from core.embeddings import parse_embeddings_request
from core.errors import OpenAIError
from core.models import openai_model_list
from core.settings import Settings
from core.sse import ServerSentEvent, SSEDecoder
from core.structured import (
    CodeFenceStripper,
    checked_schema_problem,
    json_answer_problem,
    with_json_correction,
)
from core.uploads import attachment_from_upload, pending_uploads
from core.validate import parse_json_object

SETTINGS = Settings()
META = CompletionMeta(id="c", created=0, model="m")
IDS = QueryIds.from_hex("0" * 32, None)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=12)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=25,
)
KEYS = """model messages role content type text image_url url tools tool_choice function name arguments
tool_calls tool_call_id stop n max_tokens temperature stream stream_options include_usage response_format
json_schema logit_bias prompt input dimensions encoding_format parameters echo best_of file file_data
input_audio data format"""
keys = st.sampled_from(KEYS.split())
shaped = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=6),
    max_leaves=40,
)
bodies = st.dictionaries(keys, shaped, max_size=8)
FUZZ = settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)


def only_openai_errors(call: Any) -> Any:
    try:
        return call()
    except OpenAIError:
        return None


@FUZZ
@given(bodies)
def test_chat_request_parsing_and_conversion(body: dict[str, Any]) -> None:
    request = only_openai_errors(lambda: parse_chat_request(body, SETTINGS, max_media_bytes=1024))
    if request is not None:
        json.dumps(openai_compat_body(request))
        if not any(part.data for _, _, part in request.media_parts()):
            json.dumps(poe_query(request, IDS))


@FUZZ
@given(bodies)
def test_completion_and_embedding_parsing(body: dict[str, Any]) -> None:
    only_openai_errors(lambda: parse_completion_request(body, SETTINGS))
    only_openai_errors(lambda: parse_embeddings_request(body, SETTINGS))


@FUZZ
@given(st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_body_parsing(raw: bytes) -> None:
    only_openai_errors(lambda: parse_json_object(raw))


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                ["text", "replace_response", "json", "file", "error", "done", "meta", "x", "message"]
            ),
            st.text(max_size=30) | json_values.map(json.dumps),
        ),
        max_size=8,
    )
)
def test_stream_converters(events: list[tuple[str, str]]) -> None:
    for converter in (PoeStreamToChatChunks(META, stop=("a",), max_tokens=3), OpenAIStreamToChatChunks(META)):

        def run(converter: Any = converter) -> None:
            for kind, data in events:
                converter.feed(ServerSentEvent(event=kind, data=data))
            converter.close()

        only_openai_errors(run)


@FUZZ
@given(st.binary(max_size=300))
def test_sse_decoder(raw: bytes) -> None:
    decoder = SSEDecoder(max_line=64)
    only_openai_errors(lambda: (decoder.feed(raw), decoder.close()))


@FUZZ
@given(json_values)
def test_model_list_normalisation(value: Any) -> None:
    only_openai_errors(lambda: openai_model_list(value, created=0))


SCHEMA_KEYS = """type properties required additionalProperties items enum const anyOf oneOf allOf $ref $defs
minimum maximum exclusiveMinimum exclusiveMaximum minLength maxLength minItems maxItems object array
string integer number boolean null"""
schemas = st.recursive(
    scalars | st.sampled_from(["#", "#/$defs/a", "#/$defs", "object", "string"]),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(SCHEMA_KEYS.split()) | st.text(max_size=3), inner, max_size=5)
    ),
    max_leaves=30,
)


@FUZZ
@given(json_values, schemas)
def test_schema_checker_answers_every_schema(value: Any, schema: Any) -> None:
    # A client's schema is arbitrary JSON, even self-referencing: an answer, never an exception.
    problem = checked_schema_problem(value, schema)
    assert problem is None or problem.startswith("$")


@FUZZ
@given(st.lists(st.text(alphabet='`\n {}json"a', max_size=10), max_size=10))
def test_fence_stripper_never_invents_text(pieces: list[str]) -> None:
    stripper = CodeFenceStripper()
    out = "".join(stripper.push(p) for p in pieces) + stripper.finish()
    assert out in "".join(pieces)  # only ever removes a fence: what is left is a piece of the input


@FUZZ
@given(bodies, json_values)
def test_structured_output_and_upload_answers(body: dict[str, Any], answer: Any) -> None:
    request = only_openai_errors(lambda: parse_chat_request(body, SETTINGS, max_media_bytes=1000))
    if request is None:
        return
    text = answer if isinstance(answer, str) else json.dumps(answer)
    problem = json_answer_problem(request, text)
    if problem is not None:
        only_openai_errors(lambda: openai_compat_body(with_json_correction(request, text, problem)))
    for upload in pending_uploads(request):
        only_openai_errors(lambda: attachment_from_upload(answer, upload))  # noqa: B023 - called at once
