"""Real streaming on every host: no buffering, a client that leaves cancels upstream, and a
client that stops reading stops the proxy reading from Poe.

``GatedBot`` sends "first " and then blocks until the test releases it, so these tests do not
time anything: if the proxy buffered, the first chunk could not arrive and the read would time
out; if the proxy did not cancel, the bot would never see its call end.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import uuid

import httpx

from tests.conftest import OpenProxy
from tests.hosts import NOTICES_A_CLIENT_LEAVING_BEFORE_THE_ANSWER, Target
from tests.peers.bots import FIREHOSE, FIREHOSE_PIECE_BYTES, FIREHOSE_PIECES, GATES, POE_KEY

WAIT = 10  # seconds before a missing event counts as a failure (never reached when passing)


def chat_body(token: str, **extra: object) -> dict[str, object]:
    return {"model": "gated", "messages": [{"role": "user", "content": token}], "stream": True, **extra}


def content_of(line: str) -> str:
    chunk = json.loads(line.removeprefix("data: "))
    return "".join(c["delta"].get("content") or "" for c in chunk["choices"])


def test_first_token_arrives_while_the_bot_is_still_writing(proxy_url: str) -> None:
    token = uuid.uuid4().hex
    release, cancelled = GATES.open(token)
    headers = {"Authorization": f"Bearer {POE_KEY}"}
    with httpx.stream(
        "POST", f"{proxy_url}/v1/chat/completions", json=chat_body(token), headers=headers, timeout=WAIT
    ) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        text = ""
        while "first" not in text:
            line = next(lines)
            if line.startswith("data: {"):
                text += content_of(line)
        assert not release.is_set()  # the bot is still blocked: nothing was buffered
        release.set()
        rest = [line for line in lines if line.startswith("data: ")]
    assert rest[-1] == "data: [DONE]"
    assert text + "".join(content_of(line) for line in rest[:-1]) == "first second"
    assert not cancelled.is_set()


def test_client_disconnect_cancels_the_upstream_call(proxy_url: str) -> None:
    token = uuid.uuid4().hex
    release, cancelled = GATES.open(token)
    headers = {"Authorization": f"Bearer {POE_KEY}"}
    with httpx.stream(
        "POST", f"{proxy_url}/v1/chat/completions", json=chat_body(token), headers=headers, timeout=WAIT
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data: {") and "first" in content_of(line):
                break
    # The connection is closed here, with the bot blocked mid-answer.
    assert cancelled.wait(WAIT), "the bot's call was not cancelled after the client left"
    assert not release.is_set()


def assert_early_leave_cancels(host: str, release: threading.Event, cancelled: threading.Event) -> None:
    """The client left before the answer's first byte: the bot's call is cancelled. Where the
    host may not notice that before it writes (Deno), the call is let finish: the proxy answers
    no one and goes on serving."""
    if NOTICES_A_CLIENT_LEAVING_BEFORE_THE_ANSWER[host]:
        assert cancelled.wait(WAIT), "the bot's call was not cancelled after the client left"
        assert not release.is_set()
    else:
        release.set()


def test_client_disconnect_cancels_non_streaming_calls_too(host: str, proxy: Target, proxy_url: str) -> None:
    mark = proxy.log_mark()
    token = uuid.uuid4().hex
    release, cancelled = GATES.open(token)
    headers = {"Authorization": f"Bearer {POE_KEY}"}
    with contextlib.suppress(httpx.ReadTimeout):  # the client gives up while the bot is blocked
        httpx.post(
            f"{proxy_url}/v1/chat/completions",
            json=chat_body(token, stream=False),
            headers=headers,
            timeout=0.5,
        )
    assert_early_leave_cancels(host, release, cancelled)
    # Logged as a client that left (nginx's 499), not as a failure of the proxy.
    logged = {499} if NOTICES_A_CLIENT_LEAVING_BEFORE_THE_ANSWER[host] else {499, 200}  # 200: to no one
    deadline = time.monotonic() + WAIT
    while not proxy.log_since(mark) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [line["status"] for line in proxy.log_since(mark)] in ([status] for status in logged)
    assert "ERROR" not in proxy.log_text()[mark:] and "Traceback" not in proxy.log_text()[mark:]


def test_client_leaving_before_the_first_token_cancels_the_call(host: str, proxy_url: str) -> None:
    # The bot is silent until released (a model that thinks first); the client gives up.
    token = uuid.uuid4().hex
    release, cancelled = GATES.open(token)
    body = {"model": "thinking", "messages": [{"role": "user", "content": token}], "stream": True}
    headers = {"Authorization": f"Bearer {POE_KEY}"}
    with contextlib.suppress(httpx.ReadTimeout):
        httpx.post(f"{proxy_url}/v1/chat/completions", json=body, headers=headers, timeout=0.5)
    assert_early_leave_cancels(host, release, cancelled)


def test_a_client_that_stops_reading_stops_the_proxy_pulling_from_poe(open_proxy: OpenProxy) -> None:
    """Backpressure end to end: a stalled client stalls the bot, and the proxy holds no backlog.

    The firehose bot can write 200 MB. Between it and the client sit only kernel socket buffers
    (a few MB on loopback) and the proxy; if the proxy kept reading while its client did not,
    the bot would write all 200 MB and the proxy would hold them.
    """
    with open_proxy("bot").served() as url:
        host, port = url.removeprefix("http://").split(":")
        token = uuid.uuid4().hex
        body = json.dumps(
            {"model": "firehose", "messages": [{"role": "user", "content": token}], "stream": True}
        ).encode()
        request = (
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {POE_KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        available = FIREHOSE_PIECES * FIREHOSE_PIECE_BYTES
        with socket.create_connection((host, int(port))) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(request)
            assert sock.recv(12).startswith(b"HTTP/1.1 200")
            time.sleep(3)  # read nothing; unthrottled, the bot writes 200 MB in about two seconds
            produced = FIREHOSE.get(token, 0)
        print(f"stalled client: the bot wrote {produced / 1e6:.1f} MB")
        assert 0 < produced < available / 8, (
            f"the bot wrote {produced / 1e6:.1f} MB for a client that read nothing"
        )
        after = httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": "echo", "messages": [{"role": "user", "content": "after"}]},
            headers={"Authorization": f"Bearer {POE_KEY}"},
            timeout=WAIT,
        )
        assert after.json()["choices"][0]["message"]["content"] == "after"
