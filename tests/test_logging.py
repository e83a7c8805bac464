"""One structured line per request, with its id, and never a key or a body."""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from tests.peers.bots import POE_KEY


async def test_one_json_line_per_request_without_secrets(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="poe_openai_proxy")
    secret_text = "my secret prompt"
    response = await http.post(
        "/v1/chat/completions",
        headers={"Authorization": f"Bearer {POE_KEY}"},
        json={"model": "echo", "messages": [{"role": "user", "content": secret_text}], "stream": True},
    )
    assert response.status_code == 200
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.getMessage().startswith("{")]
    assert len(lines) == 1
    line = lines[0]
    assert line["request_id"] == response.headers["x-request-id"]
    assert (line["method"], line["path"], line["status"], line["model"], line["stream"]) == (
        "POST",
        "/v1/chat/completions",
        200,
        "echo",
        True,
    )
    assert line["upstream_status"] == 200
    assert isinstance(line["duration_ms"], float)
    everything = caplog.text
    assert POE_KEY not in everything
    assert secret_text not in everything


async def test_the_line_tells_poe_status_apart_from_ours(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="poe_openai_proxy")
    response = await http.post(
        "/v1/chat/completions",
        headers={"Authorization": f"Bearer {POE_KEY}"},
        json={"model": "no-such-bot", "messages": [{"role": "user", "content": "x"}]},
    )
    bad = await http.post(
        "/v1/chat/completions", headers={"Authorization": f"Bearer {POE_KEY}"}, content=b"{"
    )
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.getMessage().startswith("{")]
    assert [(line["status"], line.get("upstream_status")) for line in lines] == [
        (response.status_code, 404),
        (bad.status_code, None),  # refused before anything reached Poe
    ]
    assert response.status_code == 404 and bad.status_code == 400
