"""Structured output and inline media, end to end: the openai SDK, the proxy, fastapi_poe bots."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import openai
import pydantic
import pytest

from tests.conftest import OpenProxy
from tests.peers.openai_compat import PeerState

PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="


class Person(pydantic.BaseModel):
    name: str
    age: int | None
    languages: list[str]


ADA = Person(name="Ada", age=36, languages=["en", "fr"])


def ask(content: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": content}]


async def test_parse_with_a_pydantic_model_through_a_fenced_answer(client: openai.AsyncOpenAI) -> None:
    result = await client.chat.completions.parse(
        model="jsonbot", messages=ask(ADA.model_dump_json()), response_format=Person
    )
    assert result.choices[0].message.parsed == ADA
    assert json.loads(result.choices[0].message.content or "") == ADA.model_dump()  # no fence left


async def test_an_invalid_answer_is_asked_for_once_more(client: openai.AsyncOpenAI) -> None:
    result = await client.chat.completions.parse(
        model="jsonbot", messages=ask("prose:" + ADA.model_dump_json()), response_format=Person
    )
    assert result.choices[0].message.parsed == ADA
    one_call = await client.chat.completions.create(
        model="jsonbot", messages=ask(ADA.model_dump_json()), response_format={"type": "json_object"}
    )
    assert result.usage and one_call.usage
    assert result.usage.completion_tokens > one_call.usage.completion_tokens  # both calls count


async def test_after_one_retry_the_raw_answer_is_returned(client: openai.AsyncOpenAI) -> None:
    result = await client.chat.completions.create(
        model="jsonbot", messages=ask("never:{}"), response_format={"type": "json_object"}
    )
    choice = result.choices[0]
    assert choice.message.content == "Sure! Here it is (again): {}"
    assert choice.finish_reason == "stop"


async def test_streamed_json_arrives_without_its_fence(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="jsonbot",
        messages=ask(ADA.model_dump_json()),
        response_format={"type": "json_object"},
        stream=True,
    )
    pieces = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    assert sum(1 for p in pieces if p) > 3  # it streamed in pieces
    assert Person.model_validate_json("".join(pieces)) == ADA


@pytest.fixture
def bot_backend(open_proxy: OpenProxy, poe_server: str) -> Callable[..., openai.AsyncOpenAI]:
    def make(**env: str) -> openai.AsyncOpenAI:
        return open_proxy("bot", POE_UPLOAD_URL=f"{poe_server}/poe_api/", **env).sdk()

    return make


async def test_inline_image_is_uploaded_to_poe_and_attached(
    bot_backend: Callable[..., openai.AsyncOpenAI], poe_state: PeerState
) -> None:
    content = [
        {"type": "text", "text": "what is it?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}", "detail": "low"}},
    ]
    async with bot_backend() as sdk:
        result = await sdk.chat.completions.create(
            model="inspect", messages=[{"role": "user", "content": content}]
        )
    attachment = json.loads(result.choices[0].message.content or "")["query"][0]["attachments"][0]
    name, mime_type, data, auth = poe_state.uploads[attachment["url"]]
    assert (attachment["content_type"], attachment["name"]) == ("image/png", "image.png")
    assert (name, mime_type, data) == ("image.png", "image/png", base64.b64decode(PIXEL))
    assert auth is not None and not auth.startswith("Bearer")  # Poe's upload API takes the bare key


async def test_audio_and_files_are_uploaded_too(
    bot_backend: Callable[..., openai.AsyncOpenAI], poe_state: PeerState
) -> None:
    pdf = base64.b64encode(b"%PDF-1.4 tiny").decode()
    wav = base64.b64encode(b"RIFF....WAVE").decode()
    content = [
        {
            "type": "file",
            "file": {"filename": "paper.pdf", "file_data": f"data:application/pdf;base64,{pdf}"},
        },
        {"type": "input_audio", "input_audio": {"data": wav, "format": "wav"}},
    ]
    async with bot_backend() as sdk:
        result = await sdk.chat.completions.create(
            model="inspect", messages=[{"role": "user", "content": content}]
        )
    attachments = json.loads(result.choices[0].message.content or "")["query"][0]["attachments"]
    assert [(a["name"], a["content_type"]) for a in attachments] == [
        ("paper.pdf", "application/pdf"),
        ("audio.wav", "audio/wav"),
    ]
    assert [poe_state.uploads[a["url"]][2] for a in attachments] == [b"%PDF-1.4 tiny", b"RIFF....WAVE"]


async def test_an_upload_poe_refuses_is_its_error(bot_backend: Callable[..., openai.AsyncOpenAI]) -> None:
    content = [{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}}]
    async with bot_backend() as sdk:
        with pytest.raises(openai.AuthenticationError):
            await sdk.with_options(api_key="wrong-key").chat.completions.create(
                model="inspect", messages=[{"role": "user", "content": content}]
            )


async def test_media_over_the_limit_is_a_400_naming_the_part(
    bot_backend: Callable[..., openai.AsyncOpenAI],
) -> None:
    big = base64.b64encode(b"\x89PNG" + bytes(2000)).decode()
    content = [
        {"type": "text", "text": "hi"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{big}"}},
    ]
    async with bot_backend(MAX_MEDIA_BYTES="1024") as sdk:
        with pytest.raises(openai.BadRequestError) as caught:
            await sdk.chat.completions.create(
                model="inspect", messages=[{"role": "user", "content": content}]
            )
    assert caught.value.param == "messages[0].content[1].image_url.url"
    assert caught.value.code == "file_too_large"


async def test_vision_on_the_openai_backend_passes_the_image_through(open_proxy: OpenProxy) -> None:
    content = [{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}}]
    async with open_proxy("openai").sdk() as sdk:
        result = await sdk.chat.completions.create(
            model="inspect", messages=[{"role": "user", "content": content}]
        )
    attachment = json.loads(result.choices[0].message.content or "")["query"][0]["attachments"][0]
    assert attachment["url"] == f"data:image/png;base64,{PIXEL}"


async def test_every_openai_chat_parameter_is_accepted(client: openai.AsyncOpenAI) -> None:
    """The README's parameter table: none of these may be rejected, on either backend."""
    result = await client.chat.completions.create(
        model="echo",
        messages=[
            {"role": "developer", "content": "be brief"},
            {"role": "user", "content": "hello there", "name": "ada"},
        ],
        frequency_penalty=0.5,
        presence_penalty=-0.5,
        logit_bias={"50256": -100},
        logprobs=True,
        top_logprobs=2,
        max_completion_tokens=50,
        modalities=["text"],
        audio={"voice": "alloy", "format": "wav"},
        prediction={"type": "content", "content": "hello"},
        reasoning_effort="low",
        metadata={"purpose": "test"},
        store=False,
        service_tier="auto",
        seed=7,
        temperature=0.2,
        top_p=0.9,
        parallel_tool_calls=False,
        user="user-1",
        extra_body={"parameters": {"web_search": False}},
    )
    assert result.choices[0].message.content == "hello there"
    assert result.choices[0].logprobs is None
