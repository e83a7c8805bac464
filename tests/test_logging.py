"""One structured line per request, with its id, and never a key or a body."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import httpx
import pytest

from adapters.app import create_app
from core.settings import Settings
from tests.conftest import OpenProxy
from tests.hosts import HostProcesses, Target, missing_tool, target
from tests.peers.bots import POE_KEY


async def logged(proxy: Target, mark: int, *responses: httpx.Response) -> list[dict[str, object]]:
    """The lines logged since ``mark`` for ``responses``, in their order (a host writes a line as
    its request finishes, so a line of an earlier test's request may come in between)."""
    ids = [response.headers["x-request-id"] for response in responses]
    for _ in range(200):
        lines = {line["request_id"]: line for line in proxy.log_since(mark)}
        if all(i in lines for i in ids):
            break
        await asyncio.sleep(0.025)
    return [lines[i] for i in ids if i in lines]


async def test_one_json_line_per_request_without_secrets(proxy: Target, http: httpx.AsyncClient) -> None:
    mark = proxy.log_mark()
    secret_text = "my secret prompt"
    response = await http.post(
        "/v1/chat/completions",
        headers={"Authorization": f"Bearer {POE_KEY}"},
        json={"model": "echo", "messages": [{"role": "user", "content": secret_text}], "stream": True},
    )
    assert response.status_code == 200
    lines = await logged(proxy, mark, response)
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
    duration = line["duration_ms"]  # a number: JavaScript hosts write 6 where Python writes 6.0
    assert isinstance(duration, int | float) and not isinstance(duration, bool) and duration >= 0
    everything = proxy.log_text()
    assert POE_KEY not in everything
    assert secret_text not in everything


async def test_the_line_tells_poe_status_apart_from_ours(proxy: Target, http: httpx.AsyncClient) -> None:
    mark = proxy.log_mark()
    response = await http.post(
        "/v1/chat/completions",
        headers={"Authorization": f"Bearer {POE_KEY}"},
        json={"model": "no-such-bot", "messages": [{"role": "user", "content": "x"}]},
    )
    bad = await http.post(
        "/v1/chat/completions", headers={"Authorization": f"Bearer {POE_KEY}"}, content=b"{"
    )
    lines = await logged(proxy, mark, response, bad)
    assert [(line["status"], line.get("upstream_status")) for line in lines] == [
        (response.status_code, 404),
        (bad.status_code, None),  # refused before anything reached Poe
    ]
    assert response.status_code == 404 and bad.status_code == 400


async def test_a_bug_in_the_host_is_a_500_and_one_logged_traceback(
    make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    """The ASGI host's own failure (here: its upstream raising what no transport should) still
    gets core's OpenAI-shaped 500, with CORS, and the traceback is logged once."""

    def broken(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("a bug in the host")

    app = create_app(make_settings("bot"), transport=httpx.MockTransport(broken))
    async with Target(app=app).http() as http:
        response = await http.post(
            "/v1/chat/completions",
            json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": f"Bearer {POE_KEY}"},
        )
    assert response.status_code == 500 and response.json()["error"]["code"] == "internal_error"
    assert response.headers["access-control-allow-origin"] == "*"
    tracebacks = [r for r in caplog.records if r.exc_info is not None]
    assert len(tracebacks) == 1 and "a bug in the host" in caplog.text


async def test_lines_below_log_level_are_not_written(open_proxy: OpenProxy, backend: str) -> None:
    """``LOG_LEVEL=WARNING``: a chat that went well writes nothing, one Poe failed writes its line."""
    proxy = open_proxy(backend, LOG_LEVEL="WARNING")
    mark = proxy.log_mark()
    headers = {"Authorization": f"Bearer {POE_KEY}"}
    async with proxy.http() as http:
        fine = await http.post(
            "/v1/chat/completions",
            headers=headers,
            json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]},
        )
        script = json.dumps([["error", "the bot broke", False]])
        failed = await http.post(
            "/v1/chat/completions",
            headers=headers,
            json={"model": "script", "messages": [{"role": "user", "content": script}]},
        )
    assert fine.status_code == 200 and failed.status_code >= 500
    [line] = await logged(proxy, mark, failed)  # written after fine's would have been
    assert line["status"] == failed.status_code
    assert fine.headers["x-request-id"] not in proxy.log_text()


@pytest.mark.parametrize("web_host", ["netlify", "deno"])
async def test_the_web_hosts_start_from_the_snapshot_their_build_made(
    web_host: str, host_processes: HostProcesses, poe_server: str
) -> None:
    """Netlify's and Deno Deploy's build commands make a Pyodide memory snapshot, which make
    serve-<host> runs too; a host that cannot use it says so in its log, and starts seconds later."""
    reason = missing_tool(web_host)
    if reason is not None:
        pytest.skip(reason)
    proxy = target(web_host, host_processes, {"POE_BACKEND": "bot", "POE_BASE_URL": poe_server})
    async with proxy.http() as http:
        response = await http.get("/v1/models", headers={"Authorization": f"Bearer {POE_KEY}"})
    assert response.status_code == 200
    assert "no memory snapshot" not in proxy.log_text()
