"""The Python half of the web-standard driver (``adapters/web.mts``), run inside Pyodide.

It only converts: JavaScript values in (``Uint8Array`` bodies, header objects) become bytes and
dicts for ``core.exchange``, and actions go out as plain JavaScript arrays. Each report (a
chunk of Poe's answer, a piece of the body, a store's answer) returns every action core then
has, up to the first that waits on the host: one crossing between the two languages per chunk,
and no Python proxies kept alive. ``to_js`` and ``to_bytes`` are Pyodide's; nothing here
decides anything.
"""

from __future__ import annotations

from typing import Any

from js import Object  # type: ignore[import-not-found]
from pyodide.ffi import to_js  # type: ignore[import-not-found]

from core.exchange import (
    SEAL_INFO,
    SEAL_SALT,
    SEAL_VERSION,
    WAIT,
    Exchange,
    Proxy,
    Respond,
    StartCall,
    StopCall,
    Store,
    Write,
)
from core.settings import Settings

# How the store's values are sealed (core.flow.Store), for the driver's WebCrypto: as text and a number.
SEAL = {"salt": SEAL_SALT.decode(), "info": SEAL_INFO.decode(), "version": SEAL_VERSION[0]}


def start(environment: Any, store_missing: str | None) -> Proxy:
    """The process's proxy, from the host's environment (a JavaScript object of strings) and
    what it lacks to have a store (null: it has one). Invalid settings raise ``ConfigError``
    here, as the ASGI app refuses to start."""
    return Proxy(Settings.from_mapping(environment.to_py()), store_missing=store_missing)


def request(proxy: Proxy, method: str, path: str, headers: Any, new_token: Any, now: float) -> Exchange:
    """``headers``: a JavaScript object with lowercase names (``Object.fromEntries(request.headers)``)."""
    return proxy.request(method, path, headers.to_py(), new_token=new_token, now=now)


def _fields(action: Any) -> list[Any]:
    """One action as ``[kind, ...fields]``."""
    if isinstance(action, Write):
        return ["write", action.data]
    if isinstance(action, StartCall):
        return ["call", action.call, action.method, action.url, action.headers, action.body, action.deadline]
    if isinstance(action, StopCall):
        return ["stop", action.call, action.reuse]
    if isinstance(action, Respond):
        return ["respond", action.status, action.headers, action.body, action.more]
    if isinstance(action, Store):
        return ["store", action.op, list(action.keys), list(action.values), action.ttl, action.secret]
    return [action.kind]


# What the host does without waiting for anything: more actions may follow at once.
_AT_ONCE = (Write, StartCall, StopCall, Respond)


def next_actions(exchange: Exchange) -> Any:
    """Every action core has now, up to and including the first that waits on the host (``wait``,
    ``read_body``, ``store``, ``done``): a JavaScript array of ``[kind, ...fields]`` arrays; or,
    for the commonest answer to a chunk of Poe's (bytes to write, then wait), just those bytes as
    a ``Uint8Array`` (converting the arrays cost more than core's conversion of the chunk)."""
    actions = []
    while True:
        action = exchange.next_action()
        actions.append(action)
        if not isinstance(action, _AT_ONCE):
            break
    if action is WAIT and all(type(a) is Write for a in actions[:-1]):
        if len(actions) == 2:
            return to_js(actions[0].data)  # type: ignore[union-attr]
        return to_js(b"".join(a.data for a in actions[:-1]))  # type: ignore[union-attr]
    return to_js([_fields(a) for a in actions], dict_converter=Object.fromEntries)


# Each report returns the actions it leads to (``next_actions``).


def body(exchange: Exchange, data: Any, more: bool) -> Any:
    exchange.body(data.to_bytes(), more)
    return next_actions(exchange)


def answered(exchange: Exchange, call: int, status: int, headers: Any) -> Any:
    exchange.answered(call, status, headers.to_py())
    return next_actions(exchange)


def data(exchange: Exchange, call: int, chunk: Any) -> Any:
    exchange.data(call, chunk.to_bytes())
    return next_actions(exchange)


def ended(exchange: Exchange, call: int) -> Any:
    exchange.ended(call)
    return next_actions(exchange)


def failed(exchange: Exchange, call: int, reason: Any) -> Any:
    exchange.failed(call, reason)
    return next_actions(exchange)


def body_failed(exchange: Exchange, reason: Any) -> Any:
    exchange.body_failed(reason)
    return next_actions(exchange)


def stored(exchange: Exchange, values: Any) -> Any:
    """``values``: null, or an array of ``Uint8Array`` or null (a ``get``)."""
    if values is None:
        exchange.stored()
    else:
        exchange.stored([None if v is None else v.to_bytes() for v in values])
    return next_actions(exchange)


def store_failed(exchange: Exchange, reason: str) -> Any:
    exchange.store_failed(reason)
    return next_actions(exchange)


def client_left(exchange: Exchange) -> None:
    exchange.client_left()


def crash(exchange: Exchange, message: str) -> Any:
    """The JavaScript side failed: core answers with its 500 (or a stream's last event)."""
    exchange.crash(RuntimeError(message))
    return next_actions(exchange)


def record(exchange: Exchange) -> Any:
    """``[level, fields]``: the request's log line, and how to write it (the host adds the
    duration); ``null`` when the line is below ``LOG_LEVEL``."""
    if exchange.level is None:
        return None
    return to_js([exchange.level, exchange.record], dict_converter=Object.fromEntries)
