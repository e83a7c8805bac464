"""Models, embeddings and legacy completions through the official SDK."""

from __future__ import annotations

import base64
import struct
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import OpenProxy
from tests.peers.bots import POE_KEY
from tests.peers.openai_compat import CATALOG_FIELDS, EMBEDDING_BATCH_LIMIT, PeerState, vector

# -- models ----------------------------------------------------------------------------------


async def test_list_models(client: openai.AsyncOpenAI) -> None:
    page = await client.models.list()
    ids = [m.id for m in page.data]
    assert "echo" in ids and "claude-opus-4.5" in ids and "text-embedding-3-small" in ids
    assert all(m.object == "model" and m.owned_by == "poe" and m.created == 1700000000 for m in page.data)


async def test_every_field_of_poes_catalog_reaches_the_client(client: openai.AsyncOpenAI) -> None:
    """Pricing, context window, parameters, modalities, reasoning: what clients choose a model by."""
    listed = next(m for m in (await client.models.list()).data if m.id == "echo")
    one = await client.models.retrieve("echo")
    for model in (listed, one):
        assert {k: v for k, v in model.model_dump().items() if k in CATALOG_FIELDS} == CATALOG_FIELDS


@pytest.mark.parametrize("model_id", ["claude-opus-4.5", "CLAUDE-OPUS-4.5", "vendor/some-model.v2"])
async def test_retrieve_model_with_dots_slashes_and_any_case(
    client: openai.AsyncOpenAI, model_id: str
) -> None:
    model = await client.models.retrieve(model_id)
    assert model.id.lower() == model_id.lower()
    assert model.object == "model"


async def test_retrieve_unknown_model_is_404(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await client.models.retrieve("gpt-nonexistent")
    assert caught.value.code == "model_not_found"


async def test_model_list_is_cached_and_served_stale_when_poe_fails(
    open_proxy: OpenProxy, poe_state: PeerState
) -> None:
    # every call is a miss: always ask Poe
    async with open_proxy("bot", MODELS_CACHE_TTL="0").sdk() as sdk:
        before = poe_state.models_requests
        first = await sdk.models.list()
        assert poe_state.models_requests == before + 1
        poe_state.fail_models = True
        try:
            again = await sdk.models.list()  # Poe fails: the warm (stale) cache answers
            assert poe_state.models_requests == before + 2
            assert [m.id for m in again.data] == [m.id for m in first.data]
        finally:
            poe_state.fail_models = False
    async with open_proxy("bot", MODELS_CACHE_TTL="299").sdk() as sdk:  # a cold cache of its own
        before = poe_state.models_requests
        await sdk.models.list()
        await sdk.models.list()
        await sdk.models.retrieve("echo")
        assert poe_state.models_requests == before + 1  # one fetch serves the TTL


async def test_model_list_failure_with_cold_cache_is_an_error(
    open_proxy: OpenProxy, poe_state: PeerState
) -> None:
    poe_state.fail_models = True
    try:
        async with open_proxy("bot", MODELS_CACHE_TTL="298").sdk() as sdk:  # a cold cache of its own
            with pytest.raises(openai.APIStatusError) as caught:
                await sdk.models.list()
        assert caught.value.status_code == 502
    finally:
        poe_state.fail_models = False


# -- embeddings ------------------------------------------------------------------------------

TEXTS = ["the cat sat", "on the mat", "and purred"]


async def test_embeddings_float_with_dimensions(client: openai.AsyncOpenAI) -> None:
    result = await client.embeddings.create(
        input=TEXTS, model="text-embedding-3-small", dimensions=256, encoding_format="float"
    )
    assert result.object == "list"
    assert [d.index for d in result.data] == [0, 1, 2]
    assert all(len(d.embedding) == 256 for d in result.data)
    assert result.data[1].embedding == pytest.approx(vector("on the mat", 256))
    assert result.usage.prompt_tokens == 8


async def test_embeddings_base64_is_little_endian_float32_of_the_same_vectors(
    client: openai.AsyncOpenAI,
) -> None:
    floats = await client.embeddings.create(
        input=TEXTS, model="text-embedding-3-small", dimensions=256, encoding_format="float"
    )
    packed = await client.embeddings.create(
        input=TEXTS, model="text-embedding-3-small", dimensions=256, encoding_format="base64"
    )
    for f, b in zip(floats.data, packed.data, strict=True):
        raw = base64.b64decode(b.embedding) if isinstance(b.embedding, str) else None
        decoded = list(struct.unpack(f"<{len(raw) // 4}f", raw)) if raw else b.embedding
        assert decoded == pytest.approx(f.embedding, rel=1e-6)


async def test_sdk_default_base64_round_trip(client: openai.AsyncOpenAI) -> None:
    # The SDK asks for base64 by default and decodes it itself (with numpy if present).
    result = await client.embeddings.create(
        input="single string", model="text-embedding-3-small", dimensions=64
    )
    assert len(result.data) == 1
    assert list(result.data[0].embedding) == pytest.approx(vector("single string", 64), rel=1e-6)
    assert result.model == "text-embedding-3-small"


async def test_large_batches_are_split_and_rejoined_in_order(
    open_proxy: OpenProxy, poe_state: PeerState
) -> None:
    texts = [f"text number {i}" for i in range(40)]
    async with open_proxy("bot", EMBEDDING_BATCH_SIZE=str(EMBEDDING_BATCH_LIMIT)).sdk() as sdk:
        before = len(poe_state.embedding_batches)
        result = await sdk.embeddings.create(
            input=texts, model="text-embedding-3-small", dimensions=8, encoding_format="float"
        )
    assert sorted(poe_state.embedding_batches[before:]) == [8, 16, 16]
    assert [d.index for d in result.data] == list(range(40))
    for i, item in enumerate(result.data):
        assert item.embedding == pytest.approx(vector(texts[i], 8))


async def test_embedding_model_poe_does_not_serve_is_404_not_a_fake_vector(
    client: openai.AsyncOpenAI,
) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await client.embeddings.create(input="x", model="text-embedding-ada-999")
    assert caught.value.code == "model_not_found"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "input"),
        ({"input": ""}, "input[0]"),
        ({"input": []}, "input"),
        ({"input": [1, 2, 3]}, "input"),
        ({"input": [[1, 2], [3]]}, "input[0]"),
        ({"input": ["ok", 5]}, "input[1]"),
        ({"input": {"a": 1}}, "input"),
        ({"input": ["x"] * 2049}, "input"),
        ({"input": "x", "encoding_format": "hex"}, "encoding_format"),
        ({"input": "x", "dimensions": 0}, "dimensions"),
        ({"input": "x", "model": 3}, "model"),
    ],
)
async def test_embedding_errors(http: httpx.AsyncClient, body: dict[str, Any], param: str) -> None:
    response = await http.post("/v1/embeddings", json=body, headers={"Authorization": f"Bearer {POE_KEY}"})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


# -- legacy completions ----------------------------------------------------------------------


async def test_completion_non_streaming(client: openai.AsyncOpenAI) -> None:
    result = await client.completions.create(model="echo", prompt="roses are red", max_tokens=50)
    assert result.object == "text_completion"
    assert result.id.startswith("cmpl-")
    assert result.choices[0].text == "roses are red"
    assert result.choices[0].index == 0
    assert result.choices[0].finish_reason == "stop"
    assert result.choices[0].logprobs is None
    assert result.usage is not None and result.usage.completion_tokens > 0


async def test_completion_default_max_tokens_is_openais_16(client: openai.AsyncOpenAI) -> None:
    long_prompt = "x" * 200
    result = await client.completions.create(model="echo", prompt=long_prompt)
    assert result.choices[0].text == "x" * 64
    assert result.choices[0].finish_reason == "length"


async def test_completion_prompts_times_n_with_echo(client: openai.AsyncOpenAI) -> None:
    result = await client.completions.create(
        model="echo", prompt=["a b", "c d"], n=2, echo=True, max_tokens=20
    )
    assert [c.index for c in result.choices] == [0, 1, 2, 3]
    assert [c.text for c in result.choices] == ["a ba b", "a ba b", "c dc d", "c dc d"]


async def test_completion_streaming(client: openai.AsyncOpenAI) -> None:
    stream = await client.completions.create(
        model="echo",
        prompt="stream me please",
        max_tokens=50,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    assert all(c.object == "text_completion" for c in chunks)
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == "stream me please"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None


async def test_completion_streaming_echo_and_stop(client: openai.AsyncOpenAI) -> None:
    stream = await client.completions.create(
        model="echo", prompt="one two. three", echo=True, stop=".", max_tokens=50, stream=True
    )
    text = "".join([c.choices[0].text async for c in stream if c.choices])
    assert text == "one two. three" + "one two"


async def test_completion_best_of_beyond_n_is_refused(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.completions.create(model="echo", prompt="x", best_of=3, n=1)
    assert caught.value.param == "best_of"


async def test_completion_sends_an_instruction_and_the_prompt(bot_client: openai.AsyncOpenAI) -> None:
    import json as _json

    result = await bot_client.completions.create(
        model="inspect", prompt="Once upon", suffix="The end.", max_tokens=2000
    )
    seen = _json.loads(result.choices[0].text)
    roles = [m["role"] for m in seen["query"]]
    assert roles == ["system", "user"]
    assert seen["query"][1]["content"] == "Once upon"
    assert "The end." in seen["query"][0]["content"]


@pytest.mark.parametrize("prompt", [None, [], [1, 2], 5])
async def test_completion_bad_prompts(http: httpx.AsyncClient, prompt: Any) -> None:
    body: dict[str, Any] = {"model": "echo"}
    if prompt is not None:
        body["prompt"] = prompt
    response = await http.post("/v1/completions", json=body, headers={"Authorization": f"Bearer {POE_KEY}"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "prompt"
