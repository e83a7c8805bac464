"""Images and speech on every host and both backends: the ``openai`` SDK and Open WebUI's own
requests, Poe's image and voice bots (``fastapi_poe`` bots that upload what they make and answer
with ``file`` events), the files served by the stand-in Poe."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socketserver
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import aiohttp
import httpx
import openai
import pytest

from tests.conftest import OpenProxy
from tests.hosts import Target, peak_memory_growth
from tests.peers.bots import GATES, POE_KEY, png, png_size, wav
from tests.peers.openai_compat import PeerState
from tests.peers.serve import threaded
from tests.test_hostile import still_serving
from tests.test_streaming import assert_early_leave_cancels

PHOTO = png(4, 4, (10, 120, 200))
MASK = png(4, 4, (0, 0, 0))
AUTH = {"authorization": f"Bearer {POE_KEY}"}


@pytest.fixture
def proxy(open_proxy: OpenProxy, backend: str, poe_server: str) -> Target:
    """The proxy (conftest's ``client`` and ``http`` use it), uploading to the stand-in Poe's
    file API: edits upload their images."""
    return open_proxy(backend, POE_UPLOAD_URL=f"{poe_server}/poe_api/")


def uploaded(poe_state: PeerState, data: bytes) -> list[str]:
    """The URLs at which Poe's file API got ``data``."""
    return [url for url, (_, _, kept, _) in poe_state.uploads.items() if kept == data]


async def test_gpt_image_answers_with_the_images_bytes(
    client: openai.AsyncOpenAI, poe_state: PeerState
) -> None:
    result = await client.images.generate(prompt="a red square", n=2)  # the default model: GPT-Image-1
    assert len(result.data) == 2
    images = [base64.b64decode(item.b64_json or "") for item in result.data]
    assert images == [png(8, 8)] * 2  # what the bot drew, fetched by the proxy
    assert result.output_format == "png"
    assert [item.revised_prompt for item in result.data] == [None, None]  # GPT-Image-1 says nothing
    assert poe_state.studio.last("GPT-Image-1").query[-1].content == "a red square"
    fetched = [auth for url, auth in poe_state.file_gets if url in uploaded(poe_state, png(8, 8))]
    assert fetched and set(fetched) == {None}  # fetched with no key: Poe's file URLs are public


async def test_size_and_quality_reach_the_bot_as_its_flags(
    client: openai.AsyncOpenAI, poe_state: PeerState
) -> None:
    result = await client.images.generate(
        model="gpt-image-1", prompt="a lighthouse", size="1536x1024", quality="high", background="opaque"
    )
    assert png_size(base64.b64decode(result.data[0].b64_json or "")) == (24, 16)  # a 3:2 image
    asked = poe_state.studio.last("GPT-Image-1").query[-1].content
    assert asked == "a lighthouse --aspect 3:2 --quality high"


async def test_dall_e_answers_with_poes_url_which_the_proxy_does_not_fetch(
    client: openai.AsyncOpenAI, poe_state: PeerState
) -> None:
    gets = len(poe_state.file_gets)
    result = await client.images.generate(
        model="dall-e-3", prompt="a lighthouse", size="1792x1024", quality="hd", style="vivid"
    )
    [image] = result.data
    assert image.url in poe_state.uploads and image.b64_json is None
    assert image.revised_prompt == "A picture of a lighthouse"  # the bot's own words
    assert len(poe_state.file_gets) == gets  # nothing fetched
    assert poe_state.studio.last("DALL-E-3").query[-1].content == "a lighthouse --aspect 16:9 --quality high"
    async with httpx.AsyncClient() as browser:  # the URL works for the client itself
        assert (await browser.get(image.url or "")).content == png(128, 72)  # 16:9, 8 px a unit


async def test_an_edit_uploads_the_image_and_its_mask_and_attaches_them(
    client: openai.AsyncOpenAI, poe_state: PeerState
) -> None:
    result = await client.images.edit(
        model="gpt-image-1",
        image=("photo.png", PHOTO, "image/png"),
        mask=("mask.png", MASK, "image/png"),
        prompt="make the sky green",
        size="1024x1024",
    )
    assert base64.b64decode(result.data[0].b64_json or "") == PHOTO  # the bot was given the photo
    message = poe_state.studio.last("GPT-Image-1").query[-1]
    assert message.content == "make the sky green --aspect 1:1"
    assert [(a.name, a.content_type) for a in message.attachments] == [
        ("photo.png", "image/png"),
        ("mask.png", "image/png"),
    ]
    assert [poe_state.uploads[a.url][2] for a in message.attachments] == [PHOTO, MASK]


async def test_an_edit_of_several_images_attaches_each(
    client: openai.AsyncOpenAI, poe_state: PeerState
) -> None:
    other = png(2, 2)
    result = await client.images.edit(
        model="dall-e-3",
        image=[("a.png", PHOTO, "image/png"), ("b.png", other, "image/png")],  # sent as image[]
        prompt="put them side by side",
        response_format="b64_json",
    )
    assert base64.b64decode(result.data[0].b64_json or "") == PHOTO
    attachments = poe_state.studio.last("DALL-E-3").query[-1].attachments
    assert [poe_state.uploads[a.url][2] for a in attachments] == [PHOTO, other]


@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")  # OpenAI deprecates variations
async def test_a_variation_asks_the_bot_for_one_of_the_image(
    client: openai.AsyncOpenAI, poe_state: PeerState
) -> None:
    result = await client.images.create_variation(
        image=("photo.png", PHOTO, "image/png"), size="512x512", extra_body={"prompt": "a dog instead"}
    )
    assert base64.b64decode(result.data[0].b64_json or "") == PHOTO
    message = poe_state.studio.last("GPT-Image-1").query[-1]
    assert message.content == "Make a variation of this image. --aspect 1:1"
    assert [poe_state.uploads[a.url][2] for a in message.attachments] == [PHOTO]


async def test_streamed_images_end_with_their_completed_events(client: openai.AsyncOpenAI) -> None:
    stream = await client.images.generate(
        model="gpt-image-1", prompt="a red square", size="1024x1536", stream=True
    )
    events = [event async for event in stream]
    assert [event.type for event in events] == ["image_generation.completed"]
    completed = events[0]
    assert completed.type == "image_generation.completed"
    assert png_size(base64.b64decode(completed.b64_json)) == (16, 24)
    assert (completed.size, completed.output_format) == ("1024x1536", "png")


async def test_speech_is_the_voice_bots_audio(client: openai.AsyncOpenAI, poe_state: PeerState) -> None:
    spoken = await client.audio.speech.create(model="tts-1", voice="alloy", input="hello from the proxy")
    assert spoken.content == wav("hello from the proxy")
    assert spoken.response.headers["content-type"].startswith("audio/")
    # OpenAI's voices are not ElevenLabs': the bot keeps its own default voice.
    assert poe_state.studio.last("ElevenLabs-v2.5-Turbo").query[-1].content == "hello from the proxy"


async def test_a_voice_of_the_bots_own_reaches_it_as_its_flag(
    client: openai.AsyncOpenAI, poe_state: PeerState
) -> None:
    spoken = await client.audio.speech.create(
        model="tts-1-hd", voice="Eric", input="good evening", response_format="mp3", speed=1.5
    )
    assert spoken.content == wav("good evening")
    assert poe_state.studio.last("ElevenLabs-v3").query[-1].content == "good evening --voice Eric"


async def test_speech_as_server_sent_events(http: httpx.AsyncClient) -> None:
    body = {"model": "gpt-4o-mini-tts", "voice": "coral", "input": "one two three", "stream_format": "sse"}
    response = await http.post("/v1/audio/speech", json=body, headers=AUTH)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]
    assert [event["type"] for event in events] == ["speech.audio.delta", "speech.audio.done"]
    assert base64.b64decode(events[0]["audio"]) == wav("one two three")


async def test_a_bot_that_answers_without_an_image_is_a_400_with_its_words(
    client: openai.AsyncOpenAI,
) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        await client.images.generate(model="dall-e-3", prompt="refuse: a dragon")
    error = raised.value.body
    assert isinstance(error, dict)
    assert (error["param"], error["code"]) == ("prompt", "no_file_in_answer")
    assert "Shall I draw a cat instead?" in error["message"]


def test_a_client_that_leaves_while_the_bot_draws_cancels_its_call(host: str, proxy_url: str) -> None:
    token = uuid.uuid4().hex  # the prompt: the bot that thinks first waits on it, silent
    release, cancelled = GATES.open(token)
    body = {"model": "thinking", "prompt": token, "response_format": "url"}
    with contextlib.suppress(httpx.ReadTimeout):  # the client gives up while the bot is blocked
        httpx.post(f"{proxy_url}/v1/images/generations", json=body, headers=AUTH, timeout=0.5)
    assert_early_leave_cancels(host, release, cancelled)


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("images/generations", {}, "prompt"),
        ("images/generations", {"prompt": "x", "n": 0}, "n"),
        ("images/generations", {"prompt": "x", "n": "two"}, "n"),
        ("images/generations", {"prompt": "x", "response_format": "gif"}, "response_format"),
        ("images/generations", {"prompt": "x", "size": "big"}, "size"),
        ("images/generations", {"prompt": "x", "quality": 3}, "quality"),
        ("images/generations", {"prompt": "x", "quality": "ultra"}, "quality"),
        ("images/generations", {"prompt": "x", "background": "clear"}, "background"),
        ("images/generations", {"prompt": "x", "style": "moody"}, "style"),
        ("images/generations", {"prompt": "x", "output_format": "bmp"}, "output_format"),
        ("audio/speech", {"model": "tts-1", "input": "hi"}, "voice"),
        ("audio/speech", {"model": "tts-1", "voice": "alloy"}, "input"),
        ("audio/speech", {"model": "tts-1", "voice": "alloy", "input": "hi", "response_format": "ogg"},
         "response_format"),
        ("audio/speech", {"model": "tts-1", "voice": "alloy", "input": "hi", "speed": 9}, "speed"),
    ],
)  # fmt: skip
async def test_a_bad_field_is_a_400_naming_it(
    http: httpx.AsyncClient, path: str, body: dict[str, Any], param: str
) -> None:
    response = await http.post(f"/v1/{path}", json=body, headers=AUTH)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


async def test_a_file_that_is_not_an_image_is_refused_before_it_is_uploaded(
    client: openai.AsyncOpenAI, poe_state: PeerState
) -> None:
    text = b"these are not the pixels you are looking for"
    with pytest.raises(openai.BadRequestError) as raised:
        await client.images.edit(model="gpt-image-1", prompt="a hat", image=("photo.png", text, "image/png"))
    error = raised.value.body
    assert isinstance(error, dict) and (error["param"], error["code"]) == ("image", "invalid_image")
    assert uploaded(poe_state, text) == []


async def test_an_edit_needs_a_form_with_an_image(http: httpx.AsyncClient) -> None:
    as_json = await http.post("/v1/images/edits", json={"prompt": "x"}, headers=AUTH)
    assert (as_json.status_code, as_json.json()["error"]["code"]) == (400, "invalid_content_type")
    no_image = await http.post(
        "/v1/images/edits", data={"prompt": "x"}, files={"mask": ("m.png", MASK)}, headers=AUTH
    )
    assert (no_image.status_code, no_image.json()["error"]["param"]) == (400, "image")
    cut = await http.post(
        "/v1/images/edits",
        content=b'--b\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nx',
        headers={**AUTH, "content-type": "multipart/form-data; boundary=b"},
    )
    assert (cut.status_code, cut.json()["error"]["code"]) == (400, "invalid_body")


async def test_open_webuis_own_requests(proxy: Target, poe_state: PeerState) -> None:
    """What Open WebUI sends (backend/open_webui/routers/images.py and audio.py, with aiohttp)."""
    with proxy.served() as url:
        async with aiohttp.ClientSession(headers=AUTH) as session:
            generation = {
                "model": "dall-e-3",
                "prompt": "a fox",
                "n": 1,
                "size": "512x512",
                "response_format": "b64_json",
            }
            async with session.post(f"{url}/v1/images/generations", json=generation) as response:
                assert response.status == 200
                [image] = (await response.json())["data"]
            assert png_size(base64.b64decode(image["b64_json"])) == (8, 8)

            form = aiohttp.FormData()
            fields = {
                "model": "gpt-image-1",
                "prompt": "a hat",
                "n": 1,
                "size": "1024x1024",
                "background": "transparent",
                "response_format": "b64_json",
            }
            for key, value in fields.items():
                form.add_field(key, str(value))
            form.add_field("image[]", PHOTO, filename="0f1e.png", content_type="image/png")
            async with session.post(f"{url}/v1/images/edits", data=form) as response:
                assert response.status == 200
                [edited] = (await response.json())["data"]
            assert base64.b64decode(edited["b64_json"]) == PHOTO

            speech = {"input": "hello there", "voice": "alloy", "model": "tts-1"}
            async with session.post(f"{url}/v1/audio/speech", json=speech) as response:
                assert response.status == 200
                assert await response.read() == wav("hello there")


class Knocks(socketserver.TCPServer):
    """Counts the connections made to it, and answers none."""

    allow_reuse_address = True
    knocks = 0

    def finish_request(self, request: Any, client_address: Any) -> None:
        self.knocks += 1


@pytest.fixture
def private_server() -> Iterator[Knocks]:
    with Knocks(("127.0.0.1", 0), socketserver.BaseRequestHandler) as server, threaded(server):
        yield server


def scripted_file(url: str) -> str:
    """The prompt that makes the script bot answer with a file at ``url``."""
    return json.dumps([["file", url, "image/png", "image.png"]])


async def assert_refused(client: openai.AsyncOpenAI, url: str) -> None:
    """A ``b64_json`` image whose file is at ``url`` is a 502 ``upstream_file_refused``."""
    with pytest.raises(openai.APIStatusError) as raised:
        await client.images.generate(model="script", prompt=scripted_file(url), response_format="b64_json")
    assert raised.value.status_code == 502
    assert isinstance(raised.value.body, dict) and raised.value.body["code"] == "upstream_file_refused"


async def test_a_file_at_a_private_plain_http_url_is_never_fetched(
    client: openai.AsyncOpenAI, private_server: Knocks
) -> None:
    """A bot's URL that is neither HTTPS nor Poe's own origin (here: another port on the host,
    as a VPC's service or a cloud's metadata address would be) gets a 502, and no connection."""
    url = f"http://127.0.0.1:{private_server.server_address[1]}/latest/meta-data/image.png"
    await assert_refused(client, url)
    assert private_server.knocks == 0
    handed_out = await client.images.generate(
        model="script", prompt=scripted_file(url), response_format="url"
    )
    assert handed_out.data[0].url == url  # as a URL it is the client's to fetch, or not
    assert private_server.knocks == 0


async def test_a_redirect_to_a_private_plain_http_url_is_not_followed(
    client: openai.AsyncOpenAI, poe_server: str, private_server: Knocks
) -> None:
    """Poe's own origin may redirect, but only to where the proxy may fetch: no host's HTTP
    client follows a redirect by itself (a browser-style ``fetch`` would, to anywhere)."""
    private = f"http://127.0.0.1:{private_server.server_address[1]}/latest/meta-data/image.png"
    await assert_refused(client, f"{poe_server}/poe_files/moved?{urlencode({'to': private})}")
    assert private_server.knocks == 0


# Spellings of 127.0.0.1 that a browser-style fetch connects to (the port is the private server's).
INTERNAL_SPELLINGS = [
    "https://2130706433:{port}/x.png",
    "https://0x7f000001:{port}/x.png",
    "https://0177.0.0.1:{port}/x.png",
    "https://127.1:{port}/x.png",
    "https://127.0.0.1.:{port}/x.png",
    "https://%31%32%37.0.0.1:{port}/x.png",
    "https://\uff11\uff12\uff17\uff0e\uff10\uff0e\uff10\uff0e\uff11:{port}/x.png",
    "https://localhost:{port}/x.png",
]


@pytest.mark.parametrize("spelling", INTERNAL_SPELLINGS)
async def test_every_spelling_of_an_internal_address_is_refused_without_a_connection(
    open_proxy: OpenProxy, poe_server: str, private_server: Knocks, spelling: str
) -> None:
    url = spelling.format(port=private_server.server_address[1])
    async with open_proxy("bot").sdk() as client:
        await assert_refused(client, url)
        await assert_refused(client, f"{poe_server}/poe_files/moved?{urlencode({'to': url})}")
    assert private_server.knocks == 0


async def test_five_redirects_are_followed_and_a_sixth_is_not(open_proxy: OpenProxy, poe_server: str) -> None:
    async with httpx.AsyncClient() as poe:
        answer = await poe.post(
            f"{poe_server}/poe_api/file_upload_3RD_PARTY_POST",
            headers={"authorization": POE_KEY},  # the bare key, as fastapi_poe sends it
            files={"file": ("r.png", PHOTO)},
        )
    url = answer.json()["attachment_url"]
    for _ in range(5):
        url = f"{poe_server}/poe_files/moved?{urlencode({'to': url})}"
    async with open_proxy("bot").sdk() as client:
        image = await client.images.generate(
            model="script", prompt=scripted_file(url), response_format="b64_json"
        )
        assert base64.b64decode(image.data[0].b64_json or "") == PHOTO
        once_more = f"{poe_server}/poe_files/moved?{urlencode({'to': url})}"
        with pytest.raises(openai.APIStatusError) as raised:
            await client.images.generate(
                model="script", prompt=scripted_file(once_more), response_format="b64_json"
            )
    assert raised.value.status_code == 502 and "more than 5 times" in raised.value.message


async def test_a_gzip_bomb_is_cut_off_before_it_grows_the_host(
    open_proxy: OpenProxy, poe_server: str
) -> None:
    """1 GB of zeros in 1 MB on the wire, for a proxy that takes 1 MiB of files: refused, and
    the host's memory never holds more than a few pieces of it (``make serve`` grew by 606 MB)."""
    proxy = open_proxy("bot", MAX_FILE_BYTES=str(1024 * 1024))
    bomb = scripted_file(f"{poe_server}/poe_files/bomb?mb=1024")
    async with proxy.sdk() as client:
        await client.images.generate(model="script", prompt=bomb, response_format="url")  # warm: no fetch
        with peak_memory_growth(proxy) as grown, pytest.raises(openai.APIStatusError) as raised:
            await client.images.generate(model="script", prompt=bomb, response_format="b64_json")
    assert raised.value.status_code == 502
    assert isinstance(raised.value.body, dict) and raised.value.body["code"] == "upstream_file_too_large"
    print(f"peak growth on the gzip bomb: {grown[0] / 1e6:.1f} MB")
    assert grown[0] < 1024 * 1024 + 32 * 1024 * 1024
    await still_serving(proxy)


async def test_a_file_sent_a_byte_at_a_time_is_cut_off_at_its_deadline(
    open_proxy: OpenProxy, poe_server: str
) -> None:
    """Every read comes within the read timeout, but the whole file takes a minute: a 504 once
    FILE_TIMEOUT has passed, not when the file ends."""
    proxy = open_proxy("bot", FILE_TIMEOUT="2")
    async with proxy.sdk() as client:
        started = asyncio.get_running_loop().time()
        with pytest.raises(openai.APIStatusError) as raised:
            await client.images.generate(
                model="script",
                prompt=scripted_file(f"{poe_server}/poe_files/trickle?bytes=120"),
                response_format="b64_json",
            )
        took = asyncio.get_running_loop().time() - started
    assert (raised.value.status_code, took < 30) == (504, True)
    await still_serving(proxy)
