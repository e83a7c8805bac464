"""A local stand-in for ``api.poe.com``: one server, both of Poe's APIs.

* ``/bot/<name>``: the bot protocol, served by real ``fastapi_poe`` bots (``bots.py``);
* ``/v1/...``: the OpenAI-compatible API (``openai_compat.py``), whose chat completions are
  answered by those same bots over the bot protocol;
* ``/poe_api/file_upload_3RD_PARTY_POST``: Poe's file upload API, and ``/poe_files/...``, the
  files it was given, public as on Poe's CDN (where the proxy and the media bots upload).
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import ASGIApp, Receive, Scope, Send

from .bots import Studio, make_bot_server
from .openai_compat import PeerState, make_openai_compat_routes


class KnowsItsOrigin:
    """Tells the media bots where the server they run in is (they upload to it, as to Poe)."""

    def __init__(self, app: ASGIApp, studio: Studio) -> None:
        self.app = app
        self.studio = studio

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.studio.origin:
            host, port = scope["server"]
            self.studio.origin = f"http://{host}:{port}"
        await self.app(scope, receive, send)


def make_poe_server(state: PeerState | None = None) -> Any:
    state = state or PeerState()
    routes = [*make_openai_compat_routes(state), Mount("/", make_bot_server(state.studio))]
    return KnowsItsOrigin(Starlette(routes=routes), state.studio)
