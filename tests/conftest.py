"""Fixtures: real peers on 127.0.0.1, the proxy on every host, the official ``openai`` SDK.

The behaviour suite is every test that talks to the proxy through ``client``, ``http``,
``bot_client``, ``proxy_url`` or ``open_proxy``: each runs once per backend and once per host
(``tests/hosts.py``), from this one set of fixtures.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import openai
import pytest

from core.settings import Settings
from tests.hosts import HOSTS, HostProcesses, Target, missing_tool, target
from tests.peers.faulty import FaultyPoe
from tests.peers.openai_compat import PeerState
from tests.peers.poe import make_poe_server
from tests.peers.serve import STARTED, running, serve

BACKENDS = ["bot", "openai"]

OpenProxy = Callable[..., Target]


@pytest.fixture(scope="session")
def poe_state() -> PeerState:
    return PeerState()


@pytest.fixture(scope="session")
def poe_server(poe_state: PeerState) -> Iterator[str]:
    """A local api.poe.com: bots at ``<url>/bot/<name>``, the OpenAI-compatible API at ``<url>/v1``."""
    with serve(make_poe_server(poe_state)) as url:
        yield url


@pytest.fixture(scope="session")
def faulty_poe() -> Iterator[FaultyPoe]:
    """A Poe that misbehaves as each test says (``tests/peers/faulty.py``)."""
    with FaultyPoe().running() as peer:
        yield peer


@pytest.fixture(scope="session")
def host_processes() -> Iterator[HostProcesses]:
    processes = HostProcesses()
    try:
        yield processes
        escaped = processes.escaped()
        assert not escaped, "something escaped a request on a host:\n" + "\n".join(escaped)
    finally:
        processes.close()


@pytest.fixture
def make_settings(poe_server: str) -> Callable[..., Settings]:
    def make(backend: str = "bot", **env: str) -> Settings:
        return Settings.from_mapping({"POE_BACKEND": backend, "POE_BASE_URL": poe_server, **env})

    return make


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=HOSTS)
def host(request: pytest.FixtureRequest) -> str:
    reason = missing_tool(request.param)
    if reason is not None:
        pytest.skip(reason)
    return str(request.param)


@pytest.fixture
def open_proxy(host: str, host_processes: HostProcesses, poe_server: str) -> Iterator[OpenProxy]:
    """``open_proxy(backend, **env)``: the proxy on this test's host, configured by ``env`` on top
    of the local Poe (``POE_BASE_URL`` may be overridden, e.g. with a fault-injecting peer)."""

    opened: list[Target] = []

    def open_(backend: str = "bot", **env: str) -> Target:
        environment = {"POE_BACKEND": backend, "POE_BASE_URL": poe_server, **env}
        opened.append(target(host, host_processes, environment))
        return opened[-1]

    yield open_
    for proxy in opened:
        proxy.close()


@pytest.fixture
def proxy(open_proxy: OpenProxy, backend: str) -> Target:
    return open_proxy(backend)


@pytest.fixture
async def client(proxy: Target) -> AsyncIterator[openai.AsyncOpenAI]:
    async with proxy.sdk() as sdk:
        yield sdk


@pytest.fixture
async def http(proxy: Target) -> AsyncIterator[httpx.AsyncClient]:
    """A raw HTTP client on the proxy, for what the SDK would not send."""
    async with proxy.http() as raw:
        yield raw


@pytest.fixture
async def bot_client(open_proxy: OpenProxy) -> AsyncIterator[openai.AsyncOpenAI]:
    """For bot-protocol behaviour that the OpenAI-compatible API has no words for."""
    async with open_proxy("bot").sdk() as sdk:
        yield sdk


@pytest.fixture
def proxy_url(proxy: Target) -> Iterator[str]:
    """The proxy at a real URL, for clients that need one (the in-process app under uvicorn)."""
    with proxy.served() as url:
        yield url


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """No process a test started may outlive the run (a server left listening fails it)."""
    left = sorted(pid for pid, _ in running(STARTED))
    if left:
        print(f"\nprocesses the tests started still running after them: {left}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
