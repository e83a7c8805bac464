"""A local stand-in for ``api.poe.com``: one server, both of Poe's APIs.

* ``/bot/<name>``: the bot protocol, served by real ``fastapi_poe`` bots (``bots.py``);
* ``/v1/...``: the OpenAI-compatible API (``openai_compat.py``), whose chat completions are
  answered by those same bots over the bot protocol.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import Mount

from .bots import make_bot_server
from .openai_compat import PeerState, make_openai_compat_routes


def make_poe_server(state: PeerState | None = None) -> Starlette:
    app = Starlette(routes=[*make_openai_compat_routes(state or PeerState()), Mount("/", make_bot_server())])
    return app
