"""Images and speech in core, driven by hand: which file URLs the proxy fetches, redirects and
limits, the bot-protocol queries (checked against ``fastapi_poe``'s own types), the form parser."""

from __future__ import annotations

import base64
import json
from typing import Any

import fastapi_poe as fp
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import OpenAIError
from core.exchange import Proxy, StartCall, StopCall
from core.files import fetchable
from core.images import aspect_ratio, parse_edit_form, parse_image_request
from core.multipart import FormField, parse_form
from core.settings import Settings
from core.speech import parse_speech_request
from tests.test_core_exchange import AUTH, SETTINGS, Event, Host, request, sse
from tests.test_core_fuzz import FUZZ, bodies, only_openai_errors

POE = ("http://127.0.0.1:8080", "http://127.0.0.1:8080/poe_api/")
IMAGE = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


@pytest.mark.parametrize(
    ("url", "fetched"),
    [
        ("https://pfst.cf2.poecdn.net/base/image/abc.png", True),
        ("https://203.0.113.9/image.png", False),  # documentation range: not a global address
        ("https://8.8.8.8/image.png", True),
        ("http://127.0.0.1:8080/poe_files/1/image.png", True),  # Poe's own (local) origin
        ("http://127.0.0.1:8081/image.png", False),  # another port: another origin
        ("https://127.0.0.1:8080/image.png", False),  # another scheme: another origin
        ("http://169.254.169.254/latest/meta-data/", False),  # a cloud's metadata address
        ("https://169.254.169.254/latest/meta-data/", False),
        ("https://[::1]/image.png", False),
        ("https://[::ffff:127.0.0.1]/image.png", False),
        ("https://10.0.0.5/image.png", False),
        ("http://pfst.cf2.poecdn.net/image.png", False),  # plain HTTP outside Poe's origin
        ("https://user@pfst.cf2.poecdn.net/image.png", False),
        ("ftp://pfst.cf2.poecdn.net/image.png", False),
        ("https:///image.png", True),  # as a browser reads it: https://image.png/
        ("https://pfst.cf2.poecdn.net:99999/image.png", False),  # a port that cannot be
        ("https://[::1/image.png", False),  # not a URL at all
        # Every spelling of an internal address that a browser-style fetch would connect to.
        ("https://2130706433/", False),
        ("https://0x7f000001/", False),
        ("https://0177.0.0.1/", False),
        ("https://127.1/", False),
        ("https://127.0.0.1./", False),
        ("https://0/", False),
        ("https://%31%32%37.0.0.1/", False),
        ("https://\uff11\uff12\uff17\uff0e\uff10\uff0e\uff10\uff0e\uff11/", False),  # full-width
        ("https://10.1/", False),
        ("https://169.254.169.254./", False),
        ("https://2852039166/", False),  # 169.254.169.254 in decimal
        ("https://0xa9fea9fe/", False),  # and in hex
        ("https:\\\\169.254.169.254/", False),
        ("https://localhost:8443/", False),
        ("https://LOCALHOST./", False),
        ("https://metadata/", False),  # a single label: a name only a local resolver knows
        ("https://db.internal/", False),
        ("https://printer.local/", False),
        ("https://0x100000000/", False),  # past IPv4: does not parse
        ("https://1.2.3.4.5/", False),
        ("https://09.1.1.1/", False),  # not octal
        ("https://exa mple.com/", False),
    ],
)
def test_which_file_urls_the_proxy_fetches(url: str, fetched: bool) -> None:
    if fetched:
        fetchable(url, POE)
        return
    with pytest.raises(OpenAIError) as refused:
        fetchable(url, POE)
    assert (refused.value.status, refused.value.code) == (502, "upstream_file_refused")


@pytest.mark.parametrize(
    ("location", "leads_to"),
    [
        ("/b/c.png", "https://cdn.example.com/b/c.png"),
        ("c.png?x=1", "https://cdn.example.com/a/c.png?x=1"),
        ("//other.example.com/c.png", "https://other.example.com/c.png"),
        ("/\\other.example.com/c.png", "https://other.example.com/c.png"),  # \ is / in a special URL
        ("https:other.example.com", "https://cdn.example.com/a/other.example.com"),
        ("HTTPS://Other.Example.com:443/c.png", "https://other.example.com/c.png"),
    ],
)
def test_a_redirect_is_resolved_as_a_browser_resolves_it(location: str, leads_to: str) -> None:
    base = fetchable("https://cdn.example.com/a/b.png", POE)
    assert str(fetchable(location, POE, base)) == leads_to


def image_bot(url: str) -> list[Event]:
    file = {"url": url, "content_type": "image/png", "name": "image.png", "inline_ref": None}
    return [("answered", 200, {}), ("data", sse(("file", file), ("done", {}))), ("ended",)]


def generate(script: Any, settings: Settings = SETTINGS, **body: Any) -> Host:
    payload = json.dumps({"prompt": "a cat", "response_format": "b64_json", **body}).encode()
    return Host(script).run(
        request("POST", "/v1/images/generations", proxy=Proxy(settings, store_missing=None)), payload
    )


def test_a_redirect_is_followed_and_each_place_is_checked_first() -> None:
    def script(call: StartCall) -> list[Event]:
        if "/bot/" in call.url:
            return image_bot("https://cdn.poe.test/a.png")
        if call.url == "https://cdn.poe.test/a.png":
            return [("answered", 302, {"location": "/b.png"}), ("ended",)]
        assert call.url == "https://cdn.poe.test/b.png"
        return [("answered", 200, {"content-type": "image/png"}), ("data", IMAGE), ("ended",)]

    host = generate(script)
    assert base64.b64decode(host.json()["data"][0]["b64_json"]) == IMAGE
    bot, *gets = host.calls
    assert [(get.method, get.url) for get in gets] == [
        ("GET", "https://cdn.poe.test/a.png"),
        ("GET", "https://cdn.poe.test/b.png"),
    ]
    assert "authorization" in bot.headers and not any("authorization" in get.headers for get in gets)


def test_a_redirect_to_a_private_address_is_not_followed() -> None:
    def script(call: StartCall) -> list[Event]:
        if "/bot/" in call.url:
            return image_bot("https://cdn.poe.test/a.png")
        return [("answered", 307, {"location": "http://169.254.169.254/latest/meta-data/"}), ("ended",)]

    host = generate(script)
    assert host.response is not None and host.response.status == 502
    assert host.json()["error"]["code"] == "upstream_file_refused"
    assert len(host.calls) == 2  # the bot, the first GET: nothing at the address


@pytest.mark.parametrize(
    ("url", "status", "code"),
    [
        ("http://10.0.0.5/image.png", 502, "upstream_file_refused"),
        ("https://[::1/image.png", 502, "upstream_file_refused"),
        ("file:///etc/passwd", 400, "no_file_in_answer"),  # not even taken for a file
    ],
)
def test_a_file_at_a_url_the_proxy_does_not_fetch_is_an_error_and_no_call(
    url: str, status: int, code: str
) -> None:
    host = generate(lambda call: image_bot(url))
    assert host.response is not None and host.response.status == status
    assert host.json()["error"]["code"] == code
    assert len(host.calls) == 1  # the bot's


@pytest.mark.parametrize("declared", [True, False])
def test_a_file_over_the_limit_is_a_502_and_its_call_is_stopped(declared: bool) -> None:
    settings = Settings.from_mapping({"POE_BASE_URL": "http://poe.test", "MAX_FILE_BYTES": "1024"})
    headers = {"content-length": "4096"} if declared else {}

    def script(call: StartCall) -> list[Event]:
        if "/bot/" in call.url:
            return image_bot("https://cdn.poe.test/big.png")
        return [("answered", 200, headers), ("data", bytes(1000)), ("data", bytes(1000)), ("ended",)]

    host = generate(script, settings)
    assert host.response is not None and host.response.status == 502
    assert host.json()["error"]["code"] == "upstream_file_too_large"
    assert StopCall(1, False) in host.stopped  # the file's call: closed, not read on


def test_the_limit_holds_for_all_of_a_requests_files_together() -> None:
    settings = Settings.from_mapping({"POE_BASE_URL": "http://poe.test", "MAX_FILE_BYTES": "1024"})

    def script(call: StartCall) -> list[Event]:
        if "/bot/" in call.url:
            return image_bot("https://cdn.poe.test/half.png")
        return [("answered", 200, {"content-length": "700"}), ("data", bytes(700)), ("ended",)]

    alone = generate(script, settings)
    assert alone.response is not None and alone.response.status == 200
    two = generate(script, settings, n=2)  # 1,400 bytes in all
    assert two.response is not None and two.response.status == 502
    assert two.json()["error"]["code"] == "upstream_file_too_large"


def test_a_file_the_cdn_will_not_give_is_a_502() -> None:
    def script(call: StartCall) -> list[Event]:
        if "/bot/" in call.url:
            return image_bot("https://cdn.poe.test/gone.png")
        return [("answered", 404, {}), ("data", b"not here"), ("ended",)]

    host = generate(script)
    assert host.response is not None and host.response.status == 502
    error = host.json()["error"]
    assert error["code"] == "upstream_file_unavailable" and "cdn.poe.test answered 404" in error["message"]


def test_an_edit_is_a_query_fastapi_poe_reads_with_both_files_attached() -> None:
    uploads = iter(["https://poe.test/f/1", "https://poe.test/f/2"])

    def script(call: StartCall) -> list[Event]:
        if call.url.endswith("file_upload_3RD_PARTY_POST"):
            answer = {"attachment_url": next(uploads), "mime_type": "image/png"}
            return [("answered", 200, {}), ("data", json.dumps(answer).encode()), ("ended",)]
        return image_bot("https://cdn.poe.test/out.png")

    form = httpx.Request(
        "POST",
        "http://proxy/v1/images/edits",
        data={"prompt": "a hat", "n": "2", "size": "1024x1536", "user": "ada"},
        files=[("image", ("photo.png", IMAGE, "image/png")), ("mask", ("mask.png", IMAGE[:20], "image/png"))],
    )
    headers = {**AUTH, "content-type": form.headers["content-type"]}
    host = Host(script).run(request("POST", "/v1/images/edits", headers), form.read())
    uploads_made = [call for call in host.calls if call.url.endswith("file_upload_3RD_PARTY_POST")]
    queries = [
        fp.QueryRequest.model_validate(json.loads(call.body or b""))
        for call in host.calls
        if "/bot/" in call.url
    ]
    assert len(uploads_made) == 2 and len(queries) == 2  # two images: two calls, one upload each
    for query in queries:
        [message] = query.query
        assert message.content == "a hat --aspect 2:3"
        assert [(a.url, a.name) for a in message.attachments] == [
            ("https://poe.test/f/1", "photo.png"),
            ("https://poe.test/f/2", "mask.png"),
        ]
    assert len(host.json()["data"]) == 2


@pytest.mark.parametrize(
    ("size", "aspect"),
    [("1024x1024", "1:1"), ("1536x1024", "3:2"), ("1024x1792", "9:16"), ("1792x1024", "16:9"),
     ("256x256", "1:1"), ("1000x300", "10:3"), ("auto", None), (None, None)],
)  # fmt: skip
def test_a_size_is_the_aspect_ratio_image_bots_name(size: str | None, aspect: str | None) -> None:
    assert aspect_ratio(size) == aspect


def test_the_response_format_defaults_to_openais_for_the_model() -> None:
    assert parse_image_request({"prompt": "x"}, SETTINGS).response_format == "b64_json"  # GPT-Image-1
    assert (
        parse_image_request({"prompt": "x", "model": "gpt-image-1"}, SETTINGS).response_format == "b64_json"
    )
    assert parse_image_request({"prompt": "x", "model": "dall-e-3"}, SETTINGS).response_format == "url"
    assert parse_image_request({"prompt": "x", "model": "FLUX-pro"}, SETTINGS).bot == "FLUX-pro"


@pytest.mark.parametrize(
    ("field", "param"),
    [
        (FormField("n", b"two"), "n"),
        (FormField("stream", b"maybe"), "stream"),
        (FormField("prompt", b"\xff\xfe"), "prompt"),
        (FormField("prompt", b"x", filename="prompt.txt"), "prompt"),
        (FormField("mask", b"x"), "mask"),
    ],
)
def test_a_bad_form_field_is_a_400_naming_it(field: FormField, param: str) -> None:
    fields = [FormField("prompt", b"a hat"), FormField("image", IMAGE, "a.png", "image/png"), field]
    with pytest.raises(OpenAIError) as raised:
        parse_edit_form(fields, SETTINGS)
    assert (raised.value.status, raised.value.param) == (400, param)


def test_a_voice_is_sent_only_when_it_is_the_bots_own() -> None:
    def prompt(voice: Any) -> str:
        return parse_speech_request({"input": "hi", "voice": voice}, SETTINGS).bot_prompt()

    assert prompt("alloy") == prompt("Nova") == "hi"
    assert prompt("Eric") == prompt({"id": "Eric"}) == "hi --voice Eric"
    for bad in ("--aspect 1:1", "a\nb", "", 3):
        with pytest.raises(OpenAIError):
            prompt(bad)


@FUZZ
@given(bodies)
def test_media_request_parsing(body: dict[str, Any]) -> None:
    only_openai_errors(lambda: parse_image_request(body, SETTINGS).chat())
    only_openai_errors(lambda: parse_speech_request(body, SETTINGS).chat())


@FUZZ
@given(
    st.binary(max_size=300),
    st.sampled_from(["multipart/form-data; boundary=b", "multipart/form-data", "text/plain"]),
)
def test_any_body_is_a_form_or_a_400(body: bytes, content_type: str) -> None:
    for candidate in (body, b"--b\r\n" + body):  # as it is, and as the start of a first part
        only_openai_errors(lambda form=candidate: parse_edit_form(parse_form(form, content_type), SETTINGS))


def test_speech_takes_its_content_type_from_the_first_that_names_audio() -> None:
    def script(call: StartCall) -> list[Event]:
        if "/bot/" in call.url:
            file = {"url": "https://cdn.poe.test/s", "content_type": "", "name": "speech.mp3"}
            return [("answered", 200, {}), ("data", sse(("file", file), ("done", {}))), ("ended",)]
        return [("answered", 200, {"content-type": "application/octet-stream"}), ("data", b"ID3"), ("ended",)]

    body = json.dumps({"model": "tts-1", "voice": "alloy", "input": "hi"}).encode()
    host = Host(script).run(request("POST", "/v1/audio/speech"), body)
    assert host.response is not None and host.response.headers["content-type"] == "audio/mpeg"
    assert host.body == b"ID3"


def test_a_variation_the_bot_answers_without_an_image_names_the_image() -> None:
    """A variation has no prompt of the client's: the bot's refusal is about the image."""

    def script(call: StartCall) -> list[Event]:
        if "/bot/" in call.url:
            return [("answered", 200, {}), ("data", sse(("text", {"text": "No."}), ("done", {}))), ("ended",)]
        return [
            ("answered", 200, {}),
            ("data", b'{"attachment_url": "https://cdn.poe.test/a.png"}'),
            ("ended",),
        ]

    form = httpx.Request("POST", "http://x/", files={"image": ("a.png", IMAGE, "image/png")})
    headers = {**AUTH, "content-type": form.headers["content-type"]}
    host = Host(script).run(request("POST", "/v1/images/variations", headers), form.read())
    assert host.response is not None and host.response.status == 400
    assert (host.json()["error"]["param"], host.json()["error"]["code"]) == ("image", "no_file_in_answer")
