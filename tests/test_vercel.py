"""Vercel: ``vercel build`` (the pinned CLI, no account) turns a copy of the project into Vercel's
Build Output, and ``vercel dev --local`` serves the built function's environment the way Vercel's
Python runtime does (its vendored uvicorn over ``adapters/vercel.py``'s ``app``).

Offline: the CLI's Python builder resolves and installs with uv from the build cache that
``make test`` warms once (``tools/vercel-cache``, as Vercel keeps one between deploys), with
Python 3.12 as the runtime requires. Stored responses go to Redis (``REDIS_URL``, as Vercel's
Redis integrations set it), here a Redis server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from adapters.app import create_app
from adapters.stores import store_from_environ
from core.settings import Settings
from tests.hosts import Target
from tests.peers.bots import POE_KEY, assert_streams_token_by_token, wav
from tests.peers.runtimes import ROOT, npm_tool, python312
from tests.peers.serve import free_port, serving_process
from tests.peers.stores import redis_server

VERCEL = npm_tool("vercel")
VERCEL_CACHE = ROOT / "tools" / "vercel-cache"
PYTHON312 = python312()

pytestmark = [
    pytest.mark.skipif(
        VERCEL is None, reason="the Vercel CLI is not installed (make test installs tools/npm)"
    ),
    pytest.mark.skipif(PYTHON312 is None, reason="Python 3.12 (Vercel's runtime) is not installed"),
    pytest.mark.skipif(
        not (VERCEL_CACHE / "uv").is_dir(), reason="no warmed build cache (make test warms it)"
    ),
]

# What a `vercel deploy` uploads: the tracked files minus .vercelignore (tests, tools, ...).
PROJECT_FILES = ["core", "adapters", "pyproject.toml", "README.md", "vercel.json", ".vercelignore"]


def cli_environment(home: Path) -> dict[str, str]:
    venv_bin = Path(sys.executable).parent  # uv comes with the dev dependencies
    return {
        "PATH": f"{Path(str(PYTHON312)).parent}:{venv_bin}:{os.environ['PATH']}",
        "HOME": str(home),
        "VERCEL_TELEMETRY_DISABLED": "1",
        "NO_UPDATE_NOTIFIER": "1",
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_OFFLINE": "1",  # everything comes from the warmed build cache
    }


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the project after ``vercel build --yes``."""
    project = tmp_path_factory.mktemp("vercel-project")
    for name in PROJECT_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, project / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, project / name)
    # What `vercel link` would write; with it, `vercel build` needs no account.
    (project / ".vercel" / "python").mkdir(parents=True)
    shutil.copytree(VERCEL_CACHE, project / ".vercel" / "python" / "cache")
    stub = {"projectId": "_", "orgId": "_", "settings": {"framework": "python"}}
    (project / ".vercel" / "project.json").write_text(json.dumps(stub))
    done = subprocess.run(
        [str(VERCEL), "build", "--yes"],
        cwd=project,
        env=cli_environment(tmp_path_factory.mktemp("home")),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return project


@pytest.fixture(scope="module")
def function_config(project: Path) -> dict[str, Any]:
    functions = list((project / ".vercel" / "output" / "functions").glob("*.func"))
    assert len(functions) == 1  # one function serves every path
    return dict(json.loads((functions[0] / ".vc-config.json").read_text()))


def test_build_makes_one_streaming_python_312_function(function_config: dict[str, Any]) -> None:
    assert function_config["runtime"] == "python3.12"
    assert function_config["supportsResponseStreaming"] is True
    assert function_config["maxDuration"] == 300  # vercel.json: long streams are not cut at the default


def test_the_function_holds_the_app_and_not_the_rest(function_config: dict[str, Any]) -> None:
    files = set(function_config["filePathMap"])
    assert {"adapters/vercel.py", "adapters/app.py", "core/chat_stream.py"} <= files
    assert any(f.startswith("_vendor/httpx/") for f in files)
    assert any(f.startswith("_vendor/httptools/") for f in files)
    assert not any(f.startswith("_vendor/starlette/") for f in files)  # the app is plain ASGI
    assert not [f for f in files if f.split("/")[0] in {"tests", "tools", "bench", "docs", "build"}]


def test_every_path_is_routed_to_the_function(project: Path, function_config: dict[str, Any]) -> None:
    routes = json.loads((project / ".vercel" / "output" / "config.json").read_text())["routes"]
    (catch_all,) = [r for r in routes if r.get("src") == "/(.*)"]
    function_name = next((project / ".vercel" / "output" / "functions").glob("*.func")).name
    assert catch_all["dest"] == "/" + function_name.removesuffix(".func")


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


@pytest.fixture(scope="module")
def vercel_dev(
    project: Path, poe_server: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """``vercel dev --local`` on the built project, in the virtualenv the build made, with a
    Redis database connected."""
    (project / ".vercel" / "project.json").unlink()  # --local: no project to fetch
    venv = project / ".vercel" / "python" / ".venv"
    env = cli_environment(tmp_path_factory.mktemp("home"))
    env.update(VIRTUAL_ENV=str(venv), PATH=f"{venv / 'bin'}:{env['PATH']}", POE_BASE_URL=poe_server)
    env["REDIS_URL"] = redis_url
    env["UV_CACHE_DIR"] = str(project / ".vercel" / "python" / "cache" / "uv")  # dev adds vercel-runtime
    port = free_port()
    command = [str(VERCEL), "dev", "--local", "--yes", "--listen", f"127.0.0.1:{port}"]
    log = (project / "dev.log").open("wb")
    process = subprocess.Popen(
        command,
        cwd=project,
        env=env,
        start_new_session=True,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    # Vercel's dev proxy answers (502) before the app has started behind it: wait for the app.
    app_answers = lambda response: "x-request-id" in response.headers  # noqa: E731
    with serving_process(process, f"http://127.0.0.1:{port}/v1/models", timeout=90, ready=app_answers) as url:
        yield url.removesuffix("/v1/models")


def test_vercel_dev_streams_token_by_token(vercel_dev: str) -> None:
    assert_streams_token_by_token(vercel_dev, {"Authorization": f"Bearer {POE_KEY}"})


def test_vercel_dev_answers_the_sdk_and_the_edges(vercel_dev: str) -> None:
    client = openai.OpenAI(base_url=f"{vercel_dev}/v1", api_key=POE_KEY, max_retries=0)
    reply = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi vercel"}])
    assert reply.choices[0].message.content == "hi vercel"
    spoken = client.audio.speech.create(model="tts-1", voice="alloy", input="hi vercel")
    assert spoken.content == wav("hi vercel")  # a file's bytes, unchanged on the way

    root = httpx.get(vercel_dev, timeout=10)
    assert root.status_code == 404
    assert root.json()["error"]["code"] == "unknown_url"
    preflight = httpx.options(
        f"{vercel_dev}/v1/chat/completions",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
        timeout=10,
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"
    no_key = httpx.get(f"{vercel_dev}/v1/models", timeout=10)
    assert no_key.status_code == 401
    assert no_key.json()["error"]["code"] == "invalid_api_key"


def test_vercel_dev_keeps_responses_where_every_instance_finds_them(
    vercel_dev: str, redis_url: str, poe_server: str
) -> None:
    client = openai.OpenAI(base_url=f"{vercel_dev}/v1", api_key=POE_KEY, max_retries=0)
    with client.responses.stream(model="echo", input="kept in Redis") as stream:
        first = stream.get_final_response()
    assert first.store is True

    async def another_instance() -> list[tuple[str, str]]:
        """The app as a new Vercel instance starts it: Vercel's environment, REDIS_URL in it."""
        environment = {"VERCEL": "1", "REDIS_URL": redis_url, "POE_BASE_URL": poe_server}
        target = Target(
            app=create_app(Settings.from_mapping(environment), store=store_from_environ(environment))
        )
        async with target.sdk() as sdk:
            following = await sdk.responses.create(
                model="inspect", input="and then?", previous_response_id=first.id
            )
        return [(m["role"], m["content"]) for m in json.loads(following.output_text)["query"]]

    assert asyncio.run(another_instance())[:2] == [("user", "kept in Redis"), ("bot", "kept in Redis")]
    assert client.responses.retrieve(first.id).output_text == "kept in Redis"
