"""Keys and access: pass-through mode, owner mode, and a refusal to run as an open relay."""

from __future__ import annotations

import httpx
import openai
import pytest

from adapters.seal import AESGCMSealer
from core.auth import resolve_poe_key
from core.errors import AuthenticationError
from core.exchange import SEAL_VERSION
from core.settings import ConfigError, Settings
from tests.conftest import OpenProxy
from tests.peers.bots import POE_KEY
from tests.peers.faulty import FaultyPoe

MESSAGES = [{"role": "user", "content": "owner pays"}]


OWNER_MODE = {"POE_API_KEY": POE_KEY, "PROXY_ACCESS_TOKEN": "team-token-1, team-token-2"}


@pytest.mark.parametrize("token", ["team-token-1", "team-token-2"])
async def test_owner_mode_uses_the_server_key_for_valid_tokens(
    open_proxy: OpenProxy, backend: str, token: str
) -> None:
    async with open_proxy(backend, **OWNER_MODE).sdk(api_key=token) as sdk:
        result = await sdk.chat.completions.create(model="echo", messages=MESSAGES)
    assert result.choices[0].message.content == "owner pays"


async def test_owner_mode_refuses_other_tokens_before_reaching_poe(
    open_proxy: OpenProxy, faulty_poe: FaultyPoe
) -> None:
    before = len(faulty_poe.requests)
    proxy = open_proxy("bot", **OWNER_MODE, POE_BASE_URL=faulty_poe.url)
    for key in (POE_KEY, "team-token", "team-token-1x"):  # even the owner's Poe key is not a token
        async with proxy.sdk(api_key=key) as sdk:
            with pytest.raises(openai.AuthenticationError):
                await sdk.chat.completions.create(model="echo", messages=MESSAGES)
    assert len(faulty_poe.requests) == before


def test_owner_key_without_access_tokens_refuses_to_start() -> None:
    with pytest.raises(ConfigError, match="PROXY_ACCESS_TOKEN"):
        Settings.from_mapping({"POE_API_KEY": POE_KEY})
    relay = Settings.from_mapping({"POE_API_KEY": POE_KEY, "ALLOW_OPEN_RELAY": "true"})
    assert resolve_poe_key("Bearer anything", relay) == POE_KEY


@pytest.mark.parametrize(
    "header", [None, "", "Bearer", "Bearer   ", "Basic abc", "token abc", "Bearer k\u00e9y", "Bearer a\x00b"]
)
def test_missing_or_malformed_authorization_is_401(header: str | None) -> None:
    with pytest.raises(AuthenticationError):
        resolve_poe_key(header, Settings())


def test_pass_through_mode_forwards_the_clients_key() -> None:
    assert resolve_poe_key("bearer  my-poe-key ", Settings()) == "my-poe-key"


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"POE_BACKEND": "grpc"}, "POE_BACKEND"),
        ({"POE_BASE_URL": "ftp://x"}, "POE_BASE_URL"),
        ({"POE_READ_TIMEOUT": "soon"}, "POE_READ_TIMEOUT"),
        ({"MAX_BODY_BYTES": "10"}, "MAX_BODY_BYTES"),
        ({"MODEL_ALIASES": "{bad json"}, "MODEL_ALIASES"),
        ({"MODEL_ALIASES": "no-equals-sign"}, "MODEL_ALIASES"),
        ({"POE_API_KEY": "k\u00e9y", "ALLOW_OPEN_RELAY": "1"}, "POE_API_KEY"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_mapping(env)


async def test_oversized_body_is_413_before_reading_it_all(open_proxy: OpenProxy) -> None:
    async with open_proxy("bot", MAX_BODY_BYTES="2048").http() as http:
        declared = await http.post(
            "/v1/chat/completions", content=b"x" * 4096, headers={"Authorization": "Bearer k"}
        )

        async def undeclared() -> object:  # chunked: no content-length to refuse it by
            for _ in range(8):
                yield b"y" * 1024

        streamed = await http.post(
            "/v1/chat/completions", content=undeclared(), headers={"Authorization": "Bearer k"}
        )
    for response in (declared, streamed):
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "request_too_large"


async def test_a_key_that_is_not_ascii_is_a_401_not_a_crash(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/v1/chat/completions",
        json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": "Bearer k\xe9y".encode("latin-1")},
    )
    assert response.status_code == 401
    assert "malformed" in response.json()["error"]["message"]


async def test_a_sealed_value_opens_only_with_its_credential_at_its_key() -> None:
    """``adapters.seal``: what the store keeps is opened by the credential that sealed it, at the
    key it was sealed for, untouched; anything else reads as absent (None), never as an error."""
    sealer = AESGCMSealer()
    sealed = await sealer.seal("key-a", "resp:1", b"what was said")
    assert b"what was said" not in sealed and sealed[:1] == SEAL_VERSION
    assert await sealer.open("key-a", "resp:1", sealed) == b"what was said"
    assert await sealer.seal("key-a", "resp:1", b"what was said") != sealed  # a fresh nonce each time
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    for secret, name, value in [
        ("key-b", "resp:1", sealed),  # another credential
        ("key-a", "resp:2", sealed),  # moved to another key
        ("key-a", "resp:1", tampered),
        ("key-a", "resp:1", b"Z" + sealed[1:]),  # not of this version
        ("key-a", "resp:1", sealed[:20]),
    ]:
        assert await sealer.open(secret, name, value) is None
