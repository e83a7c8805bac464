"""Netlify: ``netlify.toml`` read by Netlify's own config parser, and the function itself,
compiled by esbuild as Netlify's bundler compiles it, running under Node: Pyodide executes the
proxy's ``core/`` and JavaScript's ``fetch`` talks to local Poe peers.

``tests/peers/netlify_host.mjs`` stands in for Netlify's Functions runtime: it turns each HTTP
request into a WHATWG ``Request``, calls the function, and streams its ``Response`` back.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.peers.bots import POE_KEY, assert_streams_token_by_token
from tests.peers.runtimes import ROOT, npm_tool
from tests.peers.serve import free_port, serving_process

NODE = shutil.which("node")
ESBUILD = npm_tool("esbuild")
NETLIFY_CONFIG = npm_tool("netlify-config")
PYODIDE = ROOT / "netlify" / "node_modules" / "pyodide"

pytestmark = [
    pytest.mark.skipif(NODE is None, reason="Node.js is not installed"),
    pytest.mark.skipif(ESBUILD is None or NETLIFY_CONFIG is None, reason="make test installs tools/npm"),
    pytest.mark.skipif(not PYODIDE.is_dir(), reason="make test installs netlify/node_modules (npm ci)"),
]


def script(*steps: object) -> list[dict[str, str]]:
    return [{"role": "user", "content": json.dumps(steps)}]


def test_netlify_config_parses_and_names_the_function_setup() -> None:
    done = subprocess.run(
        [str(NETLIFY_CONFIG), "--offline", "--cwd", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NETLIFY_OFFLINE": "1"},
    )
    assert done.returncode == 0, done.stderr
    config = json.loads(done.stdout)["config"]
    assert config["build"]["command"] == "npm ci --prefix netlify"
    assert config["build"]["functions"].endswith("netlify/functions")
    assert config["build"]["publish"].endswith("netlify/public")
    functions = config["functions"]["*"]
    assert functions["node_bundler"] == "esbuild"
    assert functions["external_node_modules"] == ["pyodide"]
    assert functions["included_files"] == ["core/*.py"]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The function as Netlify's bundler makes it: TypeScript compiled and bundled by esbuild, with
    ``pyodide`` left as a package (``external_node_modules``) next to it."""
    out = tmp_path_factory.mktemp("netlify-function")
    (out / "node_modules").symlink_to(ROOT / "netlify" / "node_modules")
    bundle = out / "openai.mjs"
    source = ROOT / "netlify" / "functions" / "openai.mts"
    options = ["--bundle", "--platform=node", "--format=esm", "--target=node20", "--external:pyodide"]
    done = subprocess.run(
        [str(ESBUILD), str(source), *options, f"--outfile={bundle}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return bundle


@pytest.fixture(scope="module", params=["bot", "openai"])
def netlify_function(request: pytest.FixtureRequest, compiled: Path, poe_server: str) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "POE_BASE_URL": poe_server,
        "POE_BACKEND": request.param,
        "POE_PROXY_CORE_DIR": str(ROOT / "core"),
    }
    process = subprocess.Popen(
        [str(NODE), str(ROOT / "tests" / "peers" / "netlify_host.mjs"), str(compiled), str(port)],
        env=env,
        cwd=ROOT,
    )
    with serving_process(process, f"http://127.0.0.1:{port}", timeout=60) as url:
        yield url


@pytest.fixture
def sdk(netlify_function: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{netlify_function}/v1", api_key=POE_KEY, max_retries=0)


def test_chat_with_the_sdk(sdk: openai.OpenAI) -> None:
    reply = sdk.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "hello from netlify"}], n=2
    )
    assert [c.message.content for c in reply.choices] == ["hello from netlify"] * 2
    assert reply.usage is not None and reply.usage.completion_tokens > 0


def test_stream_with_usage_and_stop(sdk: openai.OpenAI) -> None:
    chunks = list(
        sdk.chat.completions.create(
            model="script",
            messages=script(["text", "alpha be"], ["text", "ta END"], ["text", " never"]),
            stop="END",
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "alpha beta "
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and not chunks[-1].choices


def test_stream_is_token_by_token(netlify_function: str) -> None:
    headers = assert_streams_token_by_token(netlify_function, {"Authorization": f"Bearer {POE_KEY}"})
    assert headers["access-control-allow-origin"] == "*"


def test_an_error_event_mid_stream_reaches_the_sdk(sdk: openai.OpenAI) -> None:
    stream = sdk.chat.completions.create(
        model="script", messages=script(["text", "partial "], ["error", "the bot broke", False]), stream=True
    )
    with pytest.raises(openai.APIError, match="the bot broke"):
        for _ in stream:
            pass


def test_models_embeddings_and_legacy_completions(sdk: openai.OpenAI) -> None:
    models = [m.id for m in sdk.models.list()]
    assert "claude-opus-4.5" in models
    assert sdk.models.retrieve("claude-opus-4.5").id == "claude-opus-4.5"
    vectors = sdk.embeddings.create(model="text-embedding-3-small", input=["a", "b"], dimensions=8)
    assert [len(d.embedding) for d in vectors.data] == [8, 8]
    legacy = sdk.completions.create(model="echo", prompt="say this", max_tokens=20)
    assert legacy.choices[0].text == "say this"


def test_edges_get_openai_shaped_answers(netlify_function: str) -> None:
    root = httpx.get(netlify_function, timeout=10)
    assert (root.status_code, root.json()["error"]["code"]) == (404, "unknown_url")
    preflight = httpx.options(f"{netlify_function}/v1/chat/completions", timeout=10)
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"
    no_key = httpx.post(f"{netlify_function}/v1/chat/completions", json={}, timeout=10)
    assert (no_key.status_code, no_key.json()["error"]["code"]) == (401, "invalid_api_key")
    headers = {"Authorization": f"Bearer {POE_KEY}"}
    bad = httpx.post(
        f"{netlify_function}/chat/completions", content=b"{not json", headers=headers, timeout=10
    )
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "invalid_json")
    wrong = httpx.post(
        f"{netlify_function}/v1/chat/completions", json={"model": "echo", "messages": "hi"}, headers=headers
    )
    assert (wrong.status_code, wrong.json()["error"]["param"]) == (400, "messages")
    unknown_bot = httpx.post(
        f"{netlify_function}/v1/chat/completions",
        json={"model": "no-such-bot", "messages": [{"role": "user", "content": "x"}]},
        headers=headers,
        timeout=10,
    )
    assert unknown_bot.status_code == 404
    assert "error" in unknown_bot.json()
