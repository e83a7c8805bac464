"""``make serve``: the ASGI app under uvicorn, with a bound on how long a request's head may take.

uvicorn bounds a head's size and how long an idle keep-alive connection is kept, but not how long
a client may take to send a head: one that sends a byte a second holds its connection for as long
as it likes, and a hundred such clients hold a hundred. Here a head must be complete within
``HEAD_TIMEOUT`` seconds of the connection (its first request) or of its first byte (a later
one), as nginx's ``client_header_timeout`` has it; past that the client gets a 408 in the
proxy's shape and the connection is closed. The body's own time limit is core's
(``BODY_TIMEOUT``).

Usage: ``python -m adapters.serve HOST PORT`` (what ``make serve`` runs).
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from core.errors import RequestTimeoutError

HEAD_TIMEOUT = 10.0


def _refusal() -> bytes:
    error = RequestTimeoutError(f"The request's head did not arrive within {HEAD_TIMEOUT:g} s.")
    body = json.dumps(error.to_dict()).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
        f"access-control-allow-origin: *\r\nconnection: close\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class HeadTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with one timer per connection while a head is awaited."""

    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_timer is None:  # a later request on a kept connection: timed from its first byte
            self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._head_timer = self.loop.call_later(HEAD_TIMEOUT, self._too_slow)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _too_slow(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.write(_refusal())
            self.transport.close()


def main(host: str, port: int) -> None:
    config = uvicorn.Config(
        "adapters.app:app", host=host, port=port, access_log=False, http=HeadTimeoutProtocol
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
