"""AWS Lambda: the Mangum handler answers every event shape Lambda hands it, and the Lambda Web
Adapter script serves the app with real streaming.

The handler runs in a fresh process, imported by the dotted name a deployment names it by, with
settings in the environment: what a cold Lambda instance does. Several events go to the same
process, as a warm instance receives them.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.peers.bots import GATES, POE_KEY
from tests.peers.lambda_events import SHAPES
from tests.peers.serve import free_port, serving_process

ROOT = Path(__file__).resolve().parent.parent
AUTH = {"Authorization": f"Bearer {POE_KEY}", "Content-Type": "application/json"}


def chat_body(content: str, **extra: Any) -> str:
    return json.dumps({"model": "echo", "messages": [{"role": "user", "content": content}], **extra})


def invoke(poe_server: str, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    env = {**os.environ, "POE_BASE_URL": poe_server, "LOG_LEVEL": "WARNING"}
    done = subprocess.run(
        [sys.executable, "-m", "tests.peers.lambda_events", "adapters.aws_lambda.handler"],
        input=json.dumps(events),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
        check=True,
    )
    return list(json.loads(done.stdout))


def body_of(response: dict[str, Any]) -> str:
    body = response.get("body") or ""
    return base64.b64decode(body).decode() if response.get("isBase64Encoded") else body


def headers_of(response: dict[str, Any]) -> dict[str, str]:
    single = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    multi = {k.lower(): v[-1] for k, v in (response.get("multiValueHeaders") or {}).items()}
    return {**multi, **single}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_every_event_shape_gets_the_proxys_answers(poe_server: str, shape: str) -> None:
    make = SHAPES[shape]
    events = [
        make("POST", "/v1/chat/completions", AUTH, chat_body("hello lambda")),
        make("POST", "/v1/chat/completions", AUTH, chat_body("streamed reply", stream=True)),
        make("OPTIONS", "/v1/chat/completions", {"Origin": "https://app.example"}, None),
        make("POST", "/v1/chat/completions", {"Content-Type": "application/json"}, chat_body("x")),
        make("GET", "/", {}, None),
        make("POST", "/chat/completions", AUTH, "{not json"),
    ]
    chat, stream, preflight, no_key, root, bad = invoke(poe_server, events)

    assert chat["statusCode"] == 200
    assert json.loads(body_of(chat))["choices"][0]["message"]["content"] == "hello lambda"

    # Buffered: the whole SSE stream arrives in one response, complete and in order.
    assert stream["statusCode"] == 200
    assert headers_of(stream)["content-type"].startswith("text/event-stream")
    data = [line[6:] for line in body_of(stream).splitlines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    text = "".join(json.loads(d)["choices"][0]["delta"].get("content") or "" for d in data[:-1])
    assert text == "streamed reply"

    assert preflight["statusCode"] == 204
    assert headers_of(preflight)["access-control-allow-origin"] == "*"
    for response, status, code in (
        (no_key, 401, "invalid_api_key"),
        (root, 404, "unknown_url"),
        (bad, 400, "invalid_json"),
    ):
        assert response["statusCode"] == status
        assert json.loads(body_of(response))["error"]["code"] == code
        assert headers_of(response)["access-control-allow-origin"] == "*"


@pytest.fixture
def web_adapter_app(poe_server: str) -> Iterator[str]:
    """``adapters/lambda_web_adapter.sh`` started as Lambda starts it: from the task root, with
    ``PORT`` and ``LAMBDA_TASK_ROOT`` set and ``python3`` on the PATH."""
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "LAMBDA_TASK_ROOT": str(ROOT),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "POE_BASE_URL": poe_server,
        "LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen([str(ROOT / "adapters" / "lambda_web_adapter.sh")], env=env, cwd="/")
    # The Lambda Web Adapter's readiness check takes any answer below 500 (``/`` is a 404 here).
    with serving_process(process, f"http://127.0.0.1:{port}") as url:
        yield url


def test_the_web_adapter_script_streams_token_by_token(web_adapter_app: str) -> None:
    token = uuid.uuid4().hex
    release, _ = GATES.open(token)
    body = {"model": "gated", "messages": [{"role": "user", "content": token}], "stream": True}
    with httpx.stream(
        "POST", f"{web_adapter_app}/v1/chat/completions", json=body, headers=AUTH, timeout=10
    ) as response:
        lines = response.iter_lines()
        first = next(line for line in lines if line.startswith("data: {") and '"content"' in line)
        assert "first" in first
        assert not release.is_set()  # the bot still waits: the first token was not held back
        release.set()
        rest = [line for line in lines if line.startswith("data: ")]
    assert rest[-1] == "data: [DONE]"
    assert httpx.get(web_adapter_app, timeout=5).status_code == 404  # readiness: below 500
