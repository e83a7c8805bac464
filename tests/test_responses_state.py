"""The Responses API's state on every host (bot backend): ``previous_response_id``, item
references, retrieve, input items and delete, through the official SDK and the Agents SDK.

Each host keeps responses in its own platform's store (``make serve``: SQLite; Deno: Deno KV;
Netlify: Netlify Blobs; Cloudflare: Workers KV) with no set-up; a second instance started with
the same settings continues what the first began, and what one key made no other key can see.
The suite also runs on the ASGI app with each database a platform connects to it (Redis on
Vercel, DynamoDB on AWS Lambda); ``test_vercel.py`` and ``test_aws_lambda.py`` run those
platforms' own builds on them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import uuid
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import agents
import openai
import pytest

from adapters.app import create_app
from adapters.driver import KeyValueStore
from adapters.stores import DynamoStore, RedisStore, store_from_environ
from core.settings import Settings
from tests.conftest import OpenProxy
from tests.hosts import HOSTS, HostProcesses, Target, missing_tool
from tests.peers.bots import POE_KEY
from tests.peers.runtimes import ROOT, npm_tool
from tests.peers.stores import aws_server, create_table, dynamodb, redis_server

WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


# The ASGI app with the store Vercel's deploys use, and the one Lambda's use.
DATABASES = ("asgi+redis", "asgi+dynamodb")


@pytest.fixture(params=[*HOSTS, *DATABASES])
def host(request: pytest.FixtureRequest) -> str:
    reason = missing_tool(request.param) if request.param in HOSTS else None
    if reason is not None:
        pytest.skip(reason)
    return str(request.param)


@pytest.fixture(scope="module")
def databases() -> Iterator[dict[str, Callable[[], KeyValueStore]]]:
    """How to connect to each database: every call, as a new instance would."""
    with redis_server() as redis_url, aws_server() as aws:
        create_table(aws, "responses")
        yield {
            "asgi+redis": lambda: RedisStore(redis_url),
            "asgi+dynamodb": lambda: DynamoStore("responses", dynamodb(aws)),
        }


@pytest.fixture
def open_proxy(
    open_proxy: OpenProxy, host: str, poe_server: str, request: pytest.FixtureRequest
) -> OpenProxy:
    if host not in DATABASES:
        return open_proxy
    connect = request.getfixturevalue("databases")[host]

    def open_(backend: str = "bot", **env: str) -> Target:
        settings = Settings.from_mapping({"POE_BACKEND": backend, "POE_BASE_URL": poe_server, **env})
        return Target(app=create_app(settings, store=(connect(), None)))

    return open_


@pytest.fixture
def stateful(open_proxy: OpenProxy) -> Target:
    return open_proxy("bot")


def seen(response: Any) -> list[tuple[str, str]]:
    """What the ``inspect`` bot was sent: each message's role and text."""
    return [(m["role"], m["content"]) for m in json.loads(response.output_text)["query"]]


async def test_previous_response_id_carries_the_conversation(stateful: Target) -> None:
    async with stateful.sdk() as client:
        first = await client.responses.create(model="echo", input="my name is Ada", instructions="be brief")
        second = await client.responses.create(
            model="inspect", input="what is my name?", previous_response_id=first.id
        )
    assert first.store is True and second.previous_response_id == first.id
    # the earlier instructions are not carried over, as OpenAI documents
    assert seen(second) == [
        ("user", "my name is Ada"),
        ("bot", "my name is Ada"),
        ("user", "what is my name?"),
    ]


async def test_a_long_chain_is_followed_to_its_start(stateful: Target) -> None:
    async with stateful.sdk() as client:
        previous = None
        for turn in range(12):
            response = await client.responses.create(
                model="echo", input=f"turn {turn}", previous_response_id=previous
            )
            previous = response.id
        last = await client.responses.create(
            model="inspect", input="which turns?", previous_response_id=previous
        )
    said = [text for role, text in seen(last) if role == "user"]
    assert said == [f"turn {turn}" for turn in range(12)] + ["which turns?"]


async def test_a_streamed_response_is_kept_as_it_was_sent(stateful: Target) -> None:
    async with stateful.sdk() as client:
        stream = await client.responses.create(model="echo", input="stream me", stream=True)
        events = [event async for event in stream]
        created, completed = events[0], events[-1]
        assert created.type == "response.created" and completed.type == "response.completed"
        # the id a client reads first already leads to the whole response
        kept = await client.responses.retrieve(created.response.id)
        items = await client.responses.input_items.list(created.response.id)
    assert kept.model_dump() == completed.response.model_dump()
    assert [(item.type, item.role, item.content[0].text) for item in items.data] == [  # type: ignore[union-attr]
        ("message", "user", "stream me")
    ]


async def test_an_item_reference_is_the_item_it_names(stateful: Target) -> None:
    """What the AI SDK sends on its second turn, with ``store`` on: the first answer by id."""
    async with stateful.sdk() as client:
        first = await client.responses.create(model="echo", input="remember 42")
        message = first.output[0]
        second = await client.responses.create(
            model="inspect",
            input=[
                {"role": "user", "content": "remember 42"},
                {"type": "item_reference", "id": message.id},
                {"role": "user", "content": "what number?"},
            ],
        )
    assert seen(second) == [("user", "remember 42"), ("bot", "remember 42"), ("user", "what number?")]


async def test_the_documented_tool_loop_sends_only_the_output(stateful: Target) -> None:
    """OpenAI's agent loop: the function call's output, and the response that asked for it."""
    async with stateful.sdk() as client:
        first = await client.responses.create(
            model="weather", input="Weather in Paris?", tools=[WEATHER_TOOL]
        )
        call = first.output[-1]
        assert call.type == "function_call"
        second = await client.responses.create(
            model="weather",
            previous_response_id=first.id,
            input=[{"type": "function_call_output", "call_id": call.call_id, "output": '{"temp_c": 21}'}],
            tools=[WEATHER_TOOL],
        )
    assert second.output_text == 'get_weather said: {"temp_c": 21}'


async def test_the_agents_sdk_chains_its_turns_by_id(stateful: Target) -> None:
    calls = []

    @agents.function_tool
    def get_weather(city: str) -> str:
        """Current weather for a city."""
        calls.append(city)
        return '{"temp_c": 21}'

    async with stateful.sdk() as client:
        model = agents.OpenAIResponsesModel(model="weather", openai_client=client)
        agent = agents.Agent(
            name="forecaster", instructions="Use the tool.", tools=[get_weather], model=model
        )
        result = await agents.Runner.run(agent, "Weather in Paris?", auto_previous_response_id=True)
    assert calls == ["Paris"]
    assert result.final_output == 'get_weather said: {"temp_c": 21}'
    assert result.last_response_id is not None


async def test_a_second_instance_continues_what_the_first_began(open_proxy: OpenProxy) -> None:
    one = open_proxy("bot")
    two = open_proxy("bot", PROXY_INSTANCE="2")  # the same settings, another process
    async with one.sdk() as first_client, two.sdk() as second_client:
        first = await first_client.responses.create(model="echo", input="said to the first")
        second = await second_client.responses.create(
            model="inspect", input="and to the second", previous_response_id=first.id
        )
        kept = await second_client.responses.retrieve(first.id)
    assert seen(second)[0] == ("user", "said to the first")
    assert kept.output_text == "said to the first"


async def test_a_response_belongs_to_the_key_that_made_it(stateful: Target) -> None:
    async with stateful.sdk() as client, stateful.sdk(api_key=f"{POE_KEY}-other") as stranger:
        mine = await client.responses.create(model="echo", input="private")
        with pytest.raises(openai.BadRequestError) as continued:
            await stranger.responses.create(model="echo", input="tell me", previous_response_id=mine.id)
        with pytest.raises(openai.NotFoundError):
            await stranger.responses.retrieve(mine.id)
        with pytest.raises(openai.BadRequestError) as referenced:
            await stranger.responses.create(
                model="echo", input=[{"type": "item_reference", "id": mine.output[0].id}]
            )
    assert (continued.value.param, continued.value.code) == (
        "previous_response_id",
        "previous_response_not_found",
    )
    assert (referenced.value.param, referenced.value.code) == ("input[0]", "item_not_found")
    assert "private" not in str(continued.value.body) + str(referenced.value.body)


async def test_unknown_ids_and_stored_prompts_are_400s_that_say_what_to_do(stateful: Target) -> None:
    async with stateful.sdk() as client:
        with pytest.raises(openai.BadRequestError) as previous:
            await client.responses.create(model="echo", input="x", previous_response_id="resp_nope")
        with pytest.raises(openai.BadRequestError) as item:
            await client.responses.create(
                model="echo",
                input=[{"role": "user", "content": "x"}, {"type": "item_reference", "id": "msg_nope"}],
            )
        with pytest.raises(openai.BadRequestError) as prompt:
            await client.responses.create(model="echo", input="x", prompt={"id": "pmpt_1"})
    assert (previous.value.param, previous.value.code) == (
        "previous_response_id",
        "previous_response_not_found",
    )
    assert (item.value.param, item.value.code) == ("input[1]", "item_not_found")
    assert prompt.value.param == "prompt"
    for caught in (previous, item):
        assert "'input'" in caught.value.message  # what to do instead


async def test_a_reference_to_an_input_item_says_only_output_items_can_be(stateful: Target) -> None:
    async with stateful.sdk() as client:
        first = await client.responses.create(model="echo", input="remember me")
        [said] = (await client.responses.input_items.list(first.id)).data
        with pytest.raises(openai.BadRequestError) as refused:
            await client.responses.create(model="echo", input=[{"type": "item_reference", "id": said.id}])
        answer = await client.responses.create(
            model="inspect",
            input=[{"type": "item_reference", "id": first.output[0].id}, {"role": "user", "content": "and?"}],
        )
    assert (refused.value.param, refused.value.code) == ("input[0]", "item_not_found")
    assert "only the output items" in refused.value.message and "input_items" in refused.value.message
    assert seen(answer) == [("bot", "remember me"), ("user", "and?")]  # an output item can be


async def test_store_false_keeps_nothing(stateful: Target) -> None:
    async with stateful.sdk() as client:
        response = await client.responses.create(model="echo", input="forget me", store=False)
        assert response.store is False
        with pytest.raises(openai.NotFoundError):
            await client.responses.retrieve(response.id)
        with pytest.raises(openai.BadRequestError):
            await client.responses.create(model="echo", input="x", previous_response_id=response.id)


def readable_in(root: Path, phrase: bytes) -> tuple[int, list[str]]:
    """How many files there are under ``root``, and those in which ``phrase`` can be read: as it
    is, or inside any zlib stream that starts anywhere in them (what the store kept before it
    sealed)."""
    files = [p for p in root.rglob("*") if p.is_file()]
    found = []
    for path in files:
        data = path.read_bytes()
        if phrase in data:
            found.append(str(path))
            continue
        for header in re.finditer(rb"\x78[\x01\x5e\x9c\xda]", data):
            with contextlib.suppress(zlib.error):
                if phrase in zlib.decompressobj().decompress(data[header.start() :], 1 << 24):
                    found.append(f"{path}, compressed at {header.start()}")
                    break
    return len(files), found


@pytest.mark.parametrize("host", HOSTS, indirect=True)
async def test_what_a_conversation_said_cannot_be_read_from_the_store(
    stateful: Target, host_processes: HostProcesses
) -> None:
    """Sealed under the caller's credential on every host, in the files of each one's store (a
    database's values are sealed by the same driver as the ASGI app's files)."""
    phrase = f"the vault code is {uuid.uuid4().hex}"
    async with stateful.sdk() as client:
        first = await client.responses.create(model="echo", input=phrase)
        second = await client.responses.create(model="inspect", input="and?", previous_response_id=first.id)
    assert ("user", phrase) in seen(second)  # kept, and read back with the key that made it
    files, found = readable_in(Path(host_processes.state_dir), phrase.encode())
    assert files > 0 and found == []


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Callable[[], None]]:
    """A small filesystem of its own (tmpfs) for a host's STATE_DIR, and a call that fills it."""
    mount = tmp_path / "state"
    mount.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"a tmpfs cannot be mounted here (it takes root): {mounted.stderr.decode()[:200]}")

    def fill() -> None:
        with (mount / "filler").open("wb") as filler, contextlib.suppress(OSError):
            while True:
                filler.write(bytes(64 * 1024))
                filler.flush()

    try:
        yield fill
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)  # lazily: the host keeps files open


@pytest.mark.parametrize("host", HOSTS, indirect=True)
async def test_on_a_full_disk_a_response_says_it_was_not_stored(
    open_proxy: OpenProxy, tmp_path: Path, full_disk: Callable[[], None]
) -> None:
    """Each host's own store on a disk with no room left: the answer is whole, says
    ``store: false`` (streamed: in ``response.completed``), and the header says why."""
    proxy = open_proxy("bot", STATE_DIR=str(tmp_path / "state"))
    async with proxy.sdk() as client:
        kept = await client.responses.create(model="echo", input="while there is room")  # opens the store
        full_disk()
        raw = await client.responses.with_raw_response.create(model="echo", input="no room")
        answered = raw.parse()
        stream = await client.responses.create(model="echo", input="no room either", stream=True)
        completed = [event async for event in stream][-1]
    assert (answered.store, answered.output_text) == (False, "no room")
    assert raw.headers["x-store-error"].startswith("store_unavailable")
    assert completed.type == "response.completed" and completed.response.store is False
    assert kept.store is True


class FullStore:
    """A store that reads but takes no more (full, or read-only)."""

    def __init__(self, store: KeyValueStore) -> None:
        self.get = store.get
        self.delete = store.delete

    async def put(self, keys: Any, values: Any, ttl: int) -> None:
        raise OSError("database or disk is full")


async def test_a_response_the_store_could_not_keep_says_so(
    make_settings: Callable[..., Settings], tmp_path: Any
) -> None:
    store, _ = store_from_environ({"STATE_DIR": str(tmp_path)})
    assert store is not None
    proxy = Target(app=create_app(make_settings(), store=(FullStore(store), None)))
    mark = proxy.log_mark()
    async with proxy.sdk() as client:
        raw = await client.responses.with_raw_response.create(model="echo", input="keep me")
        answered = raw.parse()
        stream = await client.responses.create(model="echo", input="keep me too", stream=True)
        completed = [event async for event in stream][-1]
        with pytest.raises(openai.NotFoundError):
            await client.responses.retrieve(answered.id)
    assert (answered.store, raw.headers["x-store-error"]) == (
        False,
        "store_unavailable: the response was not stored",
    )
    assert completed.type == "response.completed" and completed.response.store is False
    assert answered.output_text == "keep me" and completed.response.output_text == "keep me too"
    logged = [line for line in proxy.log_since(mark) if line["path"] == "/v1/responses"]
    assert [line["store_error"] for line in logged] == ["OSError: database or disk is full"] * 2
    proxy.close()


async def test_delete_removes_the_response_and_its_items(stateful: Target) -> None:
    async with stateful.sdk() as client:
        response = await client.responses.create(model="echo", input="short-lived")
        await client.responses.delete(response.id)
        with pytest.raises(openai.NotFoundError):
            await client.responses.retrieve(response.id)
        with pytest.raises(openai.BadRequestError) as referenced:
            await client.responses.create(
                model="echo", input=[{"type": "item_reference", "id": response.output[0].id}]
            )
    assert referenced.value.code == "item_not_found"


async def test_a_conversation_past_its_bound_is_a_400_naming_previous_response_id(
    open_proxy: OpenProxy,
) -> None:
    """Each turn within the body's limit, the chain of them within MAX_CONVERSATION_BYTES."""
    async with open_proxy("bot", MAX_CONVERSATION_BYTES="4096").sdk() as client:
        previous, turns = None, 0
        with pytest.raises(openai.BadRequestError) as refused:
            while turns < 10:
                response = await client.responses.create(
                    model="echo", input="x" * 500, previous_response_id=previous
                )
                previous, turns = response.id, turns + 1
        short = await client.responses.create(model="echo", input="a new start")
    # every turn is its 500 characters said and echoed: four fit in 4 KiB, the fifth does not
    assert turns == 4
    assert (refused.value.param, refused.value.code) == ("previous_response_id", "conversation_too_large")
    assert "MAX_CONVERSATION_BYTES" in refused.value.message and short.output_text == "a new start"


async def test_a_large_turn_is_kept_in_parts(stateful: Target) -> None:
    """A turn larger than one value of the smallest store (Deno KV: 64 KiB) comes back whole."""
    big = os.urandom(150_000).hex()  # 300 kB that hardly compresses
    async with stateful.sdk() as client:
        first = await client.responses.create(model="echo", input=big)
        second = await client.responses.create(model="inspect", input="size?", previous_response_id=first.id)
    assert seen(second)[:2] == [("user", big), ("bot", big)]


async def test_without_a_store_the_400_says_what_to_configure(make_settings: Callable[..., Settings]) -> None:
    target = Target(app=create_app(make_settings(), store=(None, "Bind a store as STORE.")))
    async with target.sdk() as client:
        response = await client.responses.create(model="echo", input="hi")
        with pytest.raises(openai.BadRequestError) as caught:
            await client.responses.create(model="echo", input="x", previous_response_id=response.id)
    assert response.store is False  # what was asked could not be done: the answer says so
    assert (caught.value.param, caught.value.code) == ("previous_response_id", "store_unavailable")
    assert "Bind a store as STORE." in caught.value.message


@pytest.mark.parametrize(
    ("platform", "store", "to_set"),
    [
        ({"VERCEL": "1"}, None, "REDIS_URL"),
        ({"VERCEL": "1", "REDIS_URL": "rediss://default:secret@example.upstash.io:6379"}, RedisStore, None),
        ({"AWS_LAMBDA_FUNCTION_NAME": "stream"}, None, "RESPONSES_TABLE"),
        ({"AWS_LAMBDA_FUNCTION_NAME": "stream", "RESPONSES_TABLE": "proxy-responses"}, DynamoStore, None),
    ],
)
def test_each_platform_finds_its_database_or_says_what_to_set(
    platform: dict[str, str], store: type | None, to_set: str | None
) -> None:
    found, missing = store_from_environ(platform)
    assert found is None if store is None else isinstance(found, store)
    assert missing is None if to_set is None else to_set in missing


async def test_conversations_are_refused_naming_the_field(stateful: Target) -> None:
    async with stateful.sdk() as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.responses.create(model="echo", input="x", conversation="conv_1")
    assert caught.value.param == "conversation" and "previous_response_id" in caught.value.message


async def test_what_a_response_says_of_itself_is_consistent(stateful: Target) -> None:
    """A message cut by the length limit is incomplete like its response; verbosity is echoed;
    a failed stream's response keeps the text that had streamed."""
    steps = json.dumps([["text", "partial "], ["error", "the bot broke", False]])
    async with stateful.sdk() as client:
        cut = await client.responses.create(
            model="echo", input="one two three four five six", max_output_tokens=2, text={"verbosity": "low"}
        )
        stream = await client.responses.create(model="script", input=steps, stream=True)
        events = [event async for event in stream]
    assert cut.status == "incomplete" and cut.output[0].status == "incomplete"
    assert cut.text is not None and cut.text.verbosity == "low"
    failed = events[-1]
    assert failed.type == "response.failed"
    assert failed.response.output[0].content[0].text == "partial "  # type: ignore[union-attr]


async def test_on_the_openai_backend_poe_keeps_them(open_proxy: OpenProxy) -> None:
    """The openai backend passes every stateful request to Poe's ``/v1/responses`` as it is."""
    async with open_proxy("openai").sdk() as client:
        stream = await client.responses.create(model="echo", input="kept by Poe", stream=True)
        first = [event async for event in stream][-1].response
        referenced = await client.responses.create(
            model="inspect",
            input=[{"type": "item_reference", "id": first.output[0].id}, {"role": "user", "content": "next"}],
        )
        chained = await client.responses.create(model="inspect", input="and?", previous_response_id=first.id)
        kept = await client.responses.retrieve(first.id)
        items = await client.responses.input_items.list(first.id)
        await client.responses.delete(first.id)
        with pytest.raises(openai.NotFoundError):
            await client.responses.retrieve(first.id)
        with pytest.raises(openai.BadRequestError) as unknown:
            await client.responses.create(model="echo", input="x", previous_response_id=first.id)
    assert seen(referenced) == [("bot", "kept by Poe"), ("user", "next")]
    assert seen(chained) == [("user", "kept by Poe"), ("bot", "kept by Poe"), ("user", "and?")]
    assert chained.previous_response_id == first.id
    assert kept.model_dump() == first.model_dump()
    assert [item.content[0].text for item in items.data] == ["kept by Poe"]  # type: ignore[union-attr]
    assert (unknown.value.param, unknown.value.code) == (
        "previous_response_id",
        "previous_response_not_found",
    )


async def test_input_items_come_a_page_at_a_time(open_proxy: OpenProxy, backend: str) -> None:
    def texts(items: Any) -> list[str]:
        return [item.content[0].text for item in items]

    async with open_proxy(backend).sdk() as client:
        parts = [{"role": "user", "content": f"part {i}"} for i in range(5)]
        response = await client.responses.create(model="echo", input=parts)  # type: ignore[arg-type]
        newest = await client.responses.input_items.list(response.id, limit=2)
        oldest = await client.responses.input_items.list(response.id, order="asc", limit=2)
        rest = await client.responses.input_items.list(response.id, order="asc", after=oldest.last_id)
        every = [item async for item in client.responses.input_items.list(response.id, limit=2)]
        with pytest.raises(openai.BadRequestError) as caught:
            await client.responses.input_items.list(response.id, limit=0)
    assert (texts(newest.data), newest.has_more) == (["part 4", "part 3"], True)
    assert (texts(oldest.data), oldest.has_more) == (["part 0", "part 1"], True)
    assert (texts(rest.data), rest.has_more) == (["part 2", "part 3", "part 4"], False)
    assert texts(every) == ["part 4", "part 3", "part 2", "part 1", "part 0"]  # the SDK follows the pages
    assert caught.value.param == "limit"


NODE = npm_tool("node")  # Node 22, which the AI SDK needs


@pytest.mark.skipif(
    NODE is None or not (ROOT / "tools/npm/node_modules/ai").is_dir(),
    reason="make test installs the AI SDK and Node 22 into tools/npm",
)
@pytest.mark.parametrize("backend", ["bot", "openai"])
def test_the_ai_sdk_sends_earlier_answers_by_reference(open_proxy: OpenProxy, backend: str) -> None:
    """Vercel's AI SDK with its defaults (Responses API, ``store`` on): a second turn built from
    the first's ``response.messages``, the first generated or streamed, and a tool loop."""
    with open_proxy(backend).served() as url:
        done = subprocess.run(
            [str(NODE), str(ROOT / "tests" / "peers" / "ai_sdk.mjs"), f"{url}/v1", POE_KEY],
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    for first in ("generated", "streamed"):
        assert got[first]["sent"] == [["user"], ["user", "item_reference", "user"]]  # a reference went out
        assert got[first]["seen"] == [
            ["user", "what is the capital of France?"],
            ["bot", "what is the capital of France?"],
            ["user", "and of Italy?"],
        ]
    assert got["tools"] == {
        "text": "get_weather said: sunny in Paris",
        "steps": 2,
        "sent": [["user"], ["user", "function_call", "function_call_output"]],
    }
