"""The Python half of the web-standard driver (``adapters/web.mts``), run inside Pyodide.

It only converts: JavaScript values in (``Uint8Array`` bodies, header objects) become bytes and
dicts for ``core.exchange``, and each action goes out as one plain JavaScript array, so the
driver's loop crosses between the two languages once per step and keeps no Python proxies
alive. ``to_js`` and ``to_bytes`` are Pyodide's; nothing here decides anything.
"""

from __future__ import annotations

from typing import Any

from js import Object  # type: ignore[import-not-found]
from pyodide.ffi import to_js  # type: ignore[import-not-found]

from core.exchange import Exchange, Proxy, Respond, StartCall, StopCall, Store, Write
from core.settings import Settings


def start(environment: Any, store_missing: str | None) -> Proxy:
    """The process's proxy, from the host's environment (a JavaScript object of strings) and
    what it lacks to have a store (null: it has one). Invalid settings raise ``ConfigError``
    here, as the ASGI app refuses to start."""
    return Proxy(Settings.from_mapping(environment.to_py()), store_missing=store_missing)


def request(proxy: Proxy, method: str, path: str, headers: Any, new_token: Any, now: float) -> Exchange:
    """``headers``: a JavaScript object with lowercase names (``Object.fromEntries(request.headers)``)."""
    return proxy.request(method, path, headers.to_py(), new_token=new_token, now=now)


def next_action(exchange: Exchange) -> Any:
    """The next action as a JavaScript array: ``[kind, ...fields]``."""
    action = exchange.next_action()
    if isinstance(action, Write):
        return to_js(["write", action.data])
    if isinstance(action, StartCall):
        fields = ["call", action.call, action.method, action.url, action.headers, action.body]
        return to_js(fields, dict_converter=Object.fromEntries)
    if isinstance(action, StopCall):
        return to_js(["stop", action.call, action.reuse])
    if isinstance(action, Respond):
        fields = ["respond", action.status, action.headers, action.body, action.more]
        return to_js(fields, dict_converter=Object.fromEntries)
    if isinstance(action, Store):
        return to_js(["store", action.op, list(action.keys), list(action.values), action.ttl])
    return to_js([action.kind])


def body(exchange: Exchange, data: Any, more: bool) -> None:
    exchange.body(data.to_bytes(), more)


def answered(exchange: Exchange, call: int, status: int, headers: Any) -> None:
    exchange.answered(call, status, headers.to_py())


def data(exchange: Exchange, call: int, chunk: Any) -> None:
    exchange.data(call, chunk.to_bytes())


def ended(exchange: Exchange, call: int) -> None:
    exchange.ended(call)


def failed(exchange: Exchange, call: int, reason: Any) -> None:
    exchange.failed(call, reason)


def body_failed(exchange: Exchange, reason: Any) -> None:
    exchange.body_failed(reason)


def client_left(exchange: Exchange) -> None:
    exchange.client_left()


def stored(exchange: Exchange, values: Any) -> None:
    """``values``: null, or an array of ``Uint8Array`` or null (a ``get``)."""
    if values is None:
        exchange.stored()
    else:
        exchange.stored([None if v is None else v.to_bytes() for v in values])


def store_failed(exchange: Exchange, reason: str) -> None:
    exchange.store_failed(reason)


def crash(exchange: Exchange, message: str) -> None:
    """The JavaScript side failed: core answers with its 500 (or a stream's last event)."""
    exchange.crash(RuntimeError(message))


def record(exchange: Exchange) -> Any:
    """``[level, fields]``: the request's log line, and how to write it (the host adds the
    duration); ``null`` when the line is below ``LOG_LEVEL``."""
    if exchange.level is None:
        return None
    return to_js([exchange.level, exchange.record], dict_converter=Object.fromEntries)
