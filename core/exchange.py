"""One client request, from its first byte to its last, as a sans-I/O state machine.

This is all a host needs of ``core``. Like h11, it never touches a socket: a host makes one
``Proxy`` per process and, for each request, asks it for an ``Exchange``; then it runs a short
loop that performs whatever the exchange asks for and reports back what happened::

    exchange = proxy.request(method, path, headers, new_token=..., now=...)
    while (action := exchange.next_action()) is not DONE:
        READ_BODY  -> read some of the request body; exchange.body(data, more), or
                      exchange.body_failed("timeout" | "aborted") when it does not come whole
                      within exchange.body_timeout seconds of the first READ_BODY
        StartCall  -> start that HTTP call to Poe; as it goes, report
                      exchange.answered(call, status, headers), exchange.data(call, bytes)...,
                      exchange.ended(call), or exchange.failed(call, reason) at any point
        StopCall   -> stop reading that call (``reuse``: its end is near, keep the connection;
                      otherwise close it, which cancels the call at Poe)
        Store      -> get, put or delete those keys in the host's store; report
                      exchange.stored(values or None), or exchange.store_failed(reason)
        Respond    -> send this status, these headers and this first body; ``more``: Writes follow
        Write      -> send these bytes to the client
        WAIT       -> wait for the next thing a running call reports (any call), and report it
    exchange.client_left() at any point when the client is gone (then stop every call)
    log exchange.record at exchange.level unless it is None (and exchange.bug, if set)

Everything a client can see is decided in ``core``: routing, auth, validation, which calls to
make and in which order (uploads before a chat, one call per choice, a second call when a JSON
answer does not validate), and the exact bytes of every answer, errors included. A host whose
client left just stops every call it started.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from urllib.parse import parse_qsl, unquote

from .flow import (
    DONE,
    READ_BODY,
    SEAL_INFO,
    SEAL_SALT,
    SEAL_VERSION,
    WAIT,
    Action,
    BodyFailure,
    Context,
    Exchange,
    FailureReason,
    Respond,
    Signal,
    StartCall,
    StopCall,
    Store,
    Write,
)
from .models import ModelListCache
from .routes import dispatch
from .settings import Settings
from .urls import public_address

__all__ = [
    "DONE",
    "READ_BODY",
    "SEAL_INFO",
    "SEAL_SALT",
    "SEAL_VERSION",
    "WAIT",
    "Action",
    "BodyFailure",
    "Exchange",
    "FailureReason",
    "Proxy",
    "Respond",
    "Signal",
    "StartCall",
    "StopCall",
    "Store",
    "Write",
    "public_address",
]


class Proxy:
    """What lives as long as the host's process: settings and the model list cache.

    ``store_missing``: None when the host performs ``Store`` actions (its platform's store);
    otherwise the host has none, and this says what to configure to give it one (a client that
    needs a stored response is told so).
    """

    def __init__(self, settings: Settings, *, store_missing: str | None) -> None:
        self.settings = settings
        self.store_missing = store_missing
        self.models_cache = ModelListCache(ttl=settings.models_cache_ttl)

    def request(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        *,
        new_token: Callable[[], str],
        now: float,
    ) -> Exchange:
        """A new request. ``target`` is the request target as it came (its path still
        percent-encoded, then its query, if any); ``headers`` have lowercase names, a repeated
        field's values joined with ", "; ``new_token`` returns 32 fresh random lowercase hex
        digits and ``now`` is the Unix time: the host's randomness and clock."""
        target, _, query = target.partition("?")
        context = Context(
            self.settings,
            self.models_cache,
            self.store_missing,
            method,
            request_path(target),
            dict(parse_qsl(query)),
            headers,
            new_token,
            now,
        )
        return Exchange(context, dispatch(context))


_DOT = re.compile(r"\.|%2e", re.IGNORECASE)


def request_path(target: str) -> str:
    """The path a request names, as every host must see it: dot segments removed as a URL parser
    removes them (``%2e`` is a dot; RFC 3986, section 5.2.4), then percent-decoded (bytes that
    are not UTF-8 become U+FFFD, so such a path matches no route). Web runtimes hand over
    targets already resolved this way, ASGI servers do not: this makes both alike."""
    if not target.startswith("/"):  # absolute form (http://host/path) or "*"
        target = "/" + target.partition("://")[2].partition("/")[2]
    segments: list[str] = []
    parts = target.split("/")
    for index, segment in enumerate(parts[1:], start=1):
        dots = _DOT.sub(".", segment) if "." in segment or "%" in segment else segment
        last = index == len(parts) - 1
        if dots == "..":
            if segments:
                segments.pop()
            if last:
                segments.append("")
        elif dots == ".":
            if last:
                segments.append("")
        else:
            segments.append(segment)
    return unquote("/" + "/".join(segments), errors="replace")
