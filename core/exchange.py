"""One client request, from its first byte to its last, as a sans-I/O state machine.

This is all a host needs of ``core``. Like h11, it never touches a socket: a host makes one
``Proxy`` per process and, for each request, asks it for an ``Exchange``; then it runs a short
loop that performs whatever the exchange asks for and reports back what happened::

    exchange = proxy.request(method, path, headers, new_token=..., now=...)
    while (action := exchange.next_action()) is not DONE:
        READ_BODY  -> read some of the request body; exchange.body(data, more)
        StartCall  -> start that HTTP call to Poe; as it goes, report
                      exchange.answered(call, status, headers), exchange.data(call, bytes)...,
                      exchange.ended(call), or exchange.failed(call, reason) at any point
        StopCall   -> stop reading that call (``reuse``: its end is near, keep the connection;
                      otherwise close it, which cancels the call at Poe)
        Respond    -> send this status, these headers and this first body; ``more``: Writes follow
        Write      -> send these bytes to the client
        WAIT       -> wait for the next thing a running call reports (any call), and report it
    log exchange.record (and exchange.bug, with its traceback, if set)

Everything a client can see is decided in ``core``: routing, auth, validation, which calls to
make and in which order (uploads before a chat, one call per choice, a second call when a JSON
answer does not validate), and the exact bytes of every answer, errors included. A host whose
client left just stops every call it started.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from .flow import (
    DONE,
    READ_BODY,
    WAIT,
    Action,
    Context,
    Exchange,
    FailureReason,
    Respond,
    Signal,
    StartCall,
    StopCall,
    Write,
)
from .models import ModelListCache
from .routes import dispatch
from .settings import Settings

__all__ = [
    "DONE",
    "READ_BODY",
    "WAIT",
    "Action",
    "Exchange",
    "FailureReason",
    "Proxy",
    "Respond",
    "Signal",
    "StartCall",
    "StopCall",
    "Write",
]


class Proxy:
    """What lives as long as the host's process: settings and the model list cache."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.models_cache = ModelListCache(ttl=settings.models_cache_ttl)

    def request(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        *,
        new_token: Callable[[], str],
        now: float,
    ) -> Exchange:
        """A new request. ``headers`` have lowercase names; ``new_token`` returns 32 fresh random
        lowercase hex digits and ``now`` is the Unix time: the host's randomness and clock."""
        context = Context(self.settings, self.models_cache, method, path, headers, new_token, now)
        return Exchange(context, dispatch(context))
