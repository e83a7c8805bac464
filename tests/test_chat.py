"""Chat completions end to end: the official ``openai`` SDK -> our app -> a real Poe peer.

Every test runs on both backends (``bot``: fastapi_poe's protocol; ``openai``: the
OpenAI-compatible API) through the ``client`` fixture.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import OpenProxy
from tests.hosts import Target
from tests.peers.bots import POE_KEY
from tests.peers.openai_compat import PeerState


def script(*steps: Any) -> list[dict[str, str]]:
    """Messages asking the scripted bot to play ``steps``."""
    return [{"role": "user", "content": json.dumps(list(steps))}]


async def collect(stream: Any) -> tuple[list[Any], str]:
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return chunks, text


async def test_non_streaming_answer(client: openai.AsyncOpenAI) -> None:
    result = await client.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "hello there, bot"}]
    )
    assert result.object == "chat.completion"
    assert result.id.startswith("chatcmpl-")
    assert result.model == "echo"
    assert len(result.choices) == 1
    choice = result.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == "hello there, bot"
    assert choice.finish_reason == "stop"
    assert result.usage is not None
    assert result.usage.total_tokens == result.usage.prompt_tokens + result.usage.completion_tokens
    assert result.usage.completion_tokens > 0


async def test_the_openai_backend_asks_poe_for_one_answer_when_the_client_does_not_stream(
    open_proxy: OpenProxy, poe_state: PeerState
) -> None:
    """Poe's JSON answer, converted whole: the stop sequence and the length limit still apply
    to its text, tool calls come through, and Poe's usage is the answer's."""
    weather = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    said = [{"role": "user", "content": "one two three STOP four"}]
    poe_state.chat_streams.clear()
    async with open_proxy("openai").sdk() as client:
        stopped = await client.chat.completions.create(model="echo", messages=said, stop=["STOP"])  # type: ignore[arg-type]
        cut = await client.chat.completions.create(model="echo", messages=said, max_tokens=1)  # type: ignore[arg-type]
        called = await client.chat.completions.create(model="weather", messages=said, tools=[weather])  # type: ignore[arg-type,list-item]
        _, streamed = await collect(
            await client.chat.completions.create(model="echo", messages=said, stream=True)  # type: ignore[arg-type]
        )
    assert poe_state.chat_streams == [False, False, False, True]
    assert (stopped.choices[0].message.content, stopped.choices[0].finish_reason) == (
        "one two three ",
        "stop",
    )
    assert stopped.usage is not None and stopped.usage.prompt_tokens == 5  # Poe's count: its five words
    assert cut.choices[0].finish_reason == "length" and len(cut.choices[0].message.content or "") < len(
        said[0]["content"]
    )
    [call] = called.choices[0].message.tool_calls or []
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"city": "Paris"})  # type: ignore[union-attr]
    assert called.choices[0].finish_reason == "tool_calls"
    assert streamed == "one two three STOP four"


async def test_streaming_answer(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "one two three four"}], stream=True
    )
    chunks, text = await collect(stream)
    assert text == "one two three four"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])
    assert {c.id for c in chunks} == {chunks[0].id}
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert all(c.usage is None for c in chunks)


async def test_stream_include_usage_ends_with_usage_chunk(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="echo",
        messages=[{"role": "user", "content": "count these words please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks, text = await collect(stream)
    assert text == "count these words please"
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None and last.usage.completion_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])


async def test_default_model_is_claude_opus(client: openai.AsyncOpenAI, http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/v1/chat/completions",
        headers={"Authorization": f"Bearer {POE_KEY}"},
        json={"messages": [{"role": "user", "content": "default"}]},
    )
    assert response.status_code == 200, response.text
    assert response.json()["model"] == "claude-opus-4.5"
    assert response.json()["choices"][0]["message"]["content"] == "default"


async def test_route_without_v1_prefix(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/chat/completions",
        headers={"Authorization": f"Bearer {POE_KEY}"},
        json={"model": "echo", "messages": [{"role": "user", "content": "no prefix"}]},
    )
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "no prefix"


@pytest.mark.parametrize("stream", [False, True])
async def test_n_gives_independent_choices(client: openai.AsyncOpenAI, stream: bool) -> None:
    messages = [{"role": "user", "content": "same answer twice"}]
    if not stream:
        result = await client.chat.completions.create(model="echo", messages=messages, n=3)
        assert [c.index for c in result.choices] == [0, 1, 2]
        assert {c.message.content for c in result.choices} == {"same answer twice"}
        return
    chunks = [
        c
        async for c in await client.chat.completions.create(model="echo", messages=messages, n=3, stream=True)
    ]
    texts: dict[int, str] = {}
    finished = set()
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
            if choice.finish_reason:
                finished.add(choice.index)
    assert texts == {0: "same answer twice", 1: "same answer twice", 2: "same answer twice"}
    assert finished == {0, 1, 2}


@pytest.mark.parametrize("stream", [False, True])
async def test_stop_cuts_across_chunk_boundaries(client: openai.AsyncOpenAI, stream: bool) -> None:
    # "END" arrives split over three events; everything from it on must disappear.
    messages = script(["text", "alpha be"], ["text", "ta E"], ["text", "N"], ["text", "D gamma"])
    result = await client.chat.completions.create(
        model="script", messages=messages, stop=["END", "zzz"], stream=stream
    )
    if stream:
        chunks, text = await collect(result)
        assert text == "alpha beta "
        assert chunks[-1].choices[0].finish_reason == "stop"
    else:
        assert result.choices[0].message.content == "alpha beta "
        assert result.choices[0].finish_reason == "stop"


async def test_stop_as_single_string(client: openai.AsyncOpenAI) -> None:
    result = await client.chat.completions.create(
        model="script", messages=script(["text", "keep. drop"]), stop="."
    )
    assert result.choices[0].message.content == "keep"


async def test_max_tokens_truncates_with_length(client: openai.AsyncOpenAI) -> None:
    long_text = "word " * 50
    result = await client.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": long_text}], max_tokens=5
    )
    choice = result.choices[0]
    assert choice.finish_reason == "length"
    assert choice.message.content == long_text[:20]  # 5 tokens of 4 characters (README: estimates)
    assert result.usage is not None
    if result.usage.completion_tokens != 5:  # the openai backend reports upstream's own count
        assert result.usage.completion_tokens <= 50


async def test_max_completion_tokens_is_the_same_limit(client: openai.AsyncOpenAI) -> None:
    result = await client.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "abcdefghij" * 3}], max_completion_tokens=2
    )
    assert result.choices[0].message.content == "abcdefgh"
    assert result.choices[0].finish_reason == "length"


async def test_replace_response_non_streaming_is_exact(bot_client: openai.AsyncOpenAI) -> None:
    messages = script(["text", "Thinking..."], ["replace", "The answer"], ["text", " is 42."])
    result = await bot_client.chat.completions.create(model="script", messages=messages)
    assert result.choices[0].message.content == "The answer is 42."


async def test_replace_response_that_extends_streams_cleanly(bot_client: openai.AsyncOpenAI) -> None:
    messages = script(["text", "Hello"], ["replace", "Hello world"], ["text", "!"])
    _, text = await collect(
        await bot_client.chat.completions.create(model="script", messages=messages, stream=True)
    )
    assert text == "Hello world!"


async def test_replace_response_rewrite_streams_as_new_paragraph(bot_client: openai.AsyncOpenAI) -> None:
    messages = script(["text", "Thinking..."], ["replace", "Done"])
    _, text = await collect(
        await bot_client.chat.completions.create(model="script", messages=messages, stream=True)
    )
    assert text == "Thinking...\n\nDone"


async def test_bot_file_event_becomes_markdown_link(bot_client: openai.AsyncOpenAI) -> None:
    messages = script(["text", "Here:"], ["file", "https://files.example/cat.png", "image/png", "cat.png"])
    result = await bot_client.chat.completions.create(model="script", messages=messages)
    assert result.choices[0].message.content == "Here:\n\n![cat.png](https://files.example/cat.png)"


async def test_meta_and_unknown_events_are_ignored(client: openai.AsyncOpenAI) -> None:
    result = await client.chat.completions.create(model="script", messages=script(["meta"], ["text", "ok"]))
    assert result.choices[0].message.content == "ok"


async def test_bot_error_before_output_is_an_http_error(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        await client.chat.completions.create(model="script", messages=script(["error", "bot is sad", False]))
    assert caught.value.status_code >= 500
    body = caught.value.body
    assert isinstance(body, dict) and set(body) >= {"message", "type", "param", "code"}


async def test_bot_error_mid_stream_is_an_error_event(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="script",
        messages=script(["text", "partial"], ["sleep", 0.05], ["error", "broke", False]),
        stream=True,
    )
    received = []
    with pytest.raises(openai.APIError) as caught:
        async for chunk in stream:
            received.append(chunk)
    assert "".join(c.choices[0].delta.content or "" for c in received if c.choices) == "partial"
    assert "broke" in caught.value.message


async def test_bot_error_types_map_to_openai_statuses(bot_client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await bot_client.chat.completions.create(
            model="script", messages=script(["error", "too long", False, "user_message_too_long"])
        )
    assert caught.value.code == "context_length_exceeded"
    with pytest.raises(openai.APIStatusError) as quota:
        await bot_client.chat.completions.create(
            model="script", messages=script(["error", "no points", False, "insufficient_fund"])
        )
    assert quota.value.status_code == 402


async def test_unknown_bot_is_not_found(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await client.chat.completions.create(
            model="no-such-bot", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.code == "model_not_found"


async def test_wrong_key_is_401_and_key_is_not_echoed(proxy: Target) -> None:
    wrong = "wrong-key-" + "x" * 22
    async with proxy.sdk(api_key=wrong) as sdk:
        with pytest.raises(openai.AuthenticationError) as caught:
            await sdk.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}])
    assert wrong not in json.dumps(caught.value.body)
    assert wrong not in str(caught.value)


async def test_missing_key_is_401(http: httpx.AsyncClient) -> None:
    response = await http.post("/v1/chat/completions", json={"model": "echo", "messages": []})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert response.headers["access-control-allow-origin"] == "*"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        (b"[1, 2]", None),
        (b'{"model": "echo"}', "messages"),
        (b'{"model": "echo", "messages": []}', "messages"),
        (b'{"model": "echo", "messages": "hi"}', "messages"),
        (b'{"model": "echo", "messages": [{"role": "robot", "content": "x"}]}', "messages[0].role"),
        (b'{"model": "echo", "messages": [{"role": "user", "content": 5}]}', "messages[0].content"),
        (
            b'{"model": "echo", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}',
            "temperature",
        ),
        (
            b'{"model": "echo", "messages": [{"role": "user", "content": "x"}], "temperature": 3}',
            "temperature",
        ),
        (
            b'{"model": "echo", "messages": [{"role": "user", "content": "x"}], "max_tokens": -1}',
            "max_tokens",
        ),
        (b'{"model": "echo", "messages": [{"role": "user", "content": "x"}], "n": 1000}', "n"),
        (b'{"model": "echo", "messages": [{"role": "user", "content": "x"}], "stop": 7}', "stop"),
        (b'{"model": "echo", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}', "stream"),
        (b'{"model": 12, "messages": [{"role": "user", "content": "x"}]}', "model"),
        (b'{"model": "../admin", "messages": [{"role": "user", "content": "x"}]}', "model"),
        (b'{"model": "echo", "messages": [{"role": 5, "content": "x"}]}', "messages[0].role"),
        (b'{"model": "echo", "messages": [{"role": "user", "content": "x"}], "n": 1e9}', "n"),
        (b'{"a": ' + b"[" * 200 + b"]" * 200 + b"}", None),
    ],
)
async def test_bad_requests_are_400_naming_the_param(
    http: httpx.AsyncClient, body: bytes, param: str | None
) -> None:
    response = await http.post(
        "/v1/chat/completions",
        content=body,
        headers={"Authorization": f"Bearer {POE_KEY}", "Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert error["message"]


async def test_proxy_keeps_serving_after_bad_input(
    client: openai.AsyncOpenAI, http: httpx.AsyncClient
) -> None:
    for _ in range(3):
        assert (
            await http.post(
                "/v1/chat/completions", content=b"\xff\xfe", headers={"Authorization": "Bearer k"}
            )
        ).status_code == 400
    result = await client.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "still here"}]
    )
    assert result.choices[0].message.content == "still here"


async def test_options_preflight_on_any_path(http: httpx.AsyncClient) -> None:
    for path in ("/v1/chat/completions", "/anything/at/all", "/"):
        response = await http.options(
            path, headers={"Origin": "https://example.com", "Access-Control-Request-Method": "POST"}
        )
        assert response.status_code == 204
        assert response.headers["access-control-allow-origin"] == "*"
        assert "POST" in response.headers["access-control-allow-methods"]


async def test_root_and_unknown_routes_are_openai_404s(http: httpx.AsyncClient) -> None:
    for path in ("/", "/v1/nope"):
        response = await http.get(path)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "unknown_url"
        assert response.headers["access-control-allow-origin"] == "*"
        assert response.headers["x-request-id"].startswith("req_")


async def test_wrong_method_is_405(http: httpx.AsyncClient) -> None:
    response = await http.get("/v1/chat/completions")
    assert response.status_code == 405
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_streaming_response_headers(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/v1/chat/completions",
        headers={"Authorization": f"Bearer {POE_KEY}"},
        json={"model": "echo", "messages": [{"role": "user", "content": "hi"}], "stream": True},
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.text.endswith("data: [DONE]\n\n")


async def test_sync_client_works_too(proxy_url: str) -> None:
    sdk = openai.OpenAI(api_key=POE_KEY, base_url=f"{proxy_url}/v1", max_retries=0)
    result = sdk.chat.completions.create(model="echo", messages=[{"role": "user", "content": "sync hello"}])
    assert result.choices[0].message.content == "sync hello"
    text = "".join(
        c.choices[0].delta.content or ""
        for c in sdk.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "sync stream"}], stream=True
        )
        if c.choices
    )
    assert text == "sync stream"


PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="


async def test_image_by_url_reaches_the_bot_as_an_attachment(bot_client: openai.AsyncOpenAI) -> None:
    content = [
        {"type": "text", "text": "what is it?"},
        {"type": "image_url", "image_url": {"url": "https://img.example/cat.png"}},
    ]
    result = await bot_client.chat.completions.create(
        model="inspect", messages=[{"role": "user", "content": content}]
    )
    seen = json.loads(result.choices[0].message.content or "")
    attachment = seen["query"][0]["attachments"][0]
    assert (attachment["url"], attachment["content_type"], attachment["name"]) == (
        "https://img.example/cat.png",
        "image/png",
        "cat.png",
    )


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("data:image/png;base64,!!!", "invalid_base64"),
        ("data:text/plain;base64,aGk=", "invalid_image_format"),
        ("ftp://x/y.png", "invalid_url"),
    ],
)
async def test_invalid_image_urls_are_400(client: openai.AsyncOpenAI, url: str, code: str) -> None:
    content = [{"type": "image_url", "image_url": {"url": url}}]
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="echo", messages=[{"role": "user", "content": content}])
    assert caught.value.code == code
    assert caught.value.param == "messages[0].content[0].image_url.url"
