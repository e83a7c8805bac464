"""Fixtures: real peers on 127.0.0.1 and the official ``openai`` SDK as the client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import openai
import pytest

from adapters.app import create_app
from core.settings import Settings
from tests.peers.bots import POE_KEY
from tests.peers.openai_compat import PeerState
from tests.peers.poe import make_poe_server
from tests.peers.serve import serve

BACKENDS = ["bot", "openai"]


@pytest.fixture(scope="session")
def poe_state() -> PeerState:
    return PeerState()


@pytest.fixture(scope="session")
def poe_server(poe_state: PeerState) -> Iterator[str]:
    """A local api.poe.com: bots at ``<url>/bot/<name>``, the OpenAI-compatible API at ``<url>/v1``."""
    with serve(make_poe_server(poe_state)) as url:
        yield url


@pytest.fixture
def make_settings(poe_server: str) -> Callable[..., Settings]:
    def make(backend: str = "bot", **env: str) -> Settings:
        return Settings.from_mapping({"POE_BACKEND": backend, "POE_BASE_URL": poe_server, **env})

    return make


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(make_settings: Callable[..., Settings], backend: str) -> Settings:
    return make_settings(backend)


class AppTransport(httpx.ASGITransport):
    """``app`` in-process; closing the client closes the app's upstream pool, as its lifespan would."""

    async def aclose(self) -> None:
        await self.app.state.proxy.upstream.aclose()
        await super().aclose()


def asgi_client(app: Any, *, api_key: str = POE_KEY, **options: Any) -> openai.AsyncOpenAI:
    """The official async SDK talking to ``app`` in-process."""
    http = httpx.AsyncClient(transport=AppTransport(app=app), base_url="http://proxy")
    return openai.AsyncOpenAI(
        api_key=api_key, base_url="http://proxy/v1", http_client=http, max_retries=0, **options
    )


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[openai.AsyncOpenAI]:
    async with asgi_client(create_app(settings)) as sdk:
        yield sdk


@pytest.fixture
async def http(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A raw HTTP client on the app, for what the SDK would not send."""
    transport = AppTransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as raw:
        yield raw


@pytest.fixture
def proxy_url(settings: Settings) -> Iterator[str]:
    """The app under a real uvicorn on 127.0.0.1, for real streaming."""
    with serve(create_app(settings), lifespan="on") as url:
        yield url


@pytest.fixture
async def bot_client(make_settings: Callable[..., Settings]) -> AsyncIterator[openai.AsyncOpenAI]:
    """For bot-protocol behaviour that the OpenAI-compatible API has no words for."""
    async with asgi_client(create_app(make_settings("bot"))) as sdk:
        yield sdk
