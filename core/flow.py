"""The machinery of one request: actions, steps, and the ``Exchange`` state machine.

Hosts use it through ``core.exchange`` (whose docstring shows the host's loop). A flow
(``core.routes``) is a generator that yields the steps it waits on (the request body, a group
of upstream calls) and returns the response, or None when a step has already streamed it; the
``Exchange`` runs the flow and turns it into the actions a host performs.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, NamedTuple

from .auth import bearer_token, resolve_poe_key
from .errors import (
    OpenAIError,
    RequestTimeoutError,
    RequestTooLargeError,
    StoreUnavailableError,
    UpstreamError,
    UpstreamTimeoutError,
    connection_refused,
    connection_reset,
    scrub,
    scrub_error,
)
from .models import ModelListCache
from .settings import LOG_LEVELS, Settings
from .sse import dumps

CORS_HEADERS = {
    "access-control-allow-origin": "*",
    "access-control-allow-methods": "GET, POST, DELETE, OPTIONS",
    "access-control-allow-headers": "*",
    "access-control-expose-headers": "x-request-id, retry-after, x-store-error",
    "access-control-max-age": "86400",
}
JSON_HEADERS = {"content-type": "application/json"}
SSE_HEADERS = {"content-type": "text/event-stream", "cache-control": "no-cache", "x-accel-buffering": "no"}
USER_AGENT = "poe-openai-proxy/0.1"

# How a call failed, as the host saw it: no connection, no answer in time, the connection broke
# (a reset, or an answer that is not HTTP), or a call asked to reach only public addresses named
# a host that resolved to another (``StartCall.public``).
FailureReason = Literal["refused", "connect_timeout", "timeout", "reset", "not_public"]
# How reading the request body failed: it did not arrive within ``Settings.body_timeout``, or
# the client broke the connection (an aborted upload).
BodyFailure = Literal["timeout", "aborted"]


# -- actions: what the host is asked to do -----------------------------------------------------


class UpstreamRequest(NamedTuple):
    """An HTTP request to Poe, exactly as it is to be sent (the host adds only Host and length).
    ``public``: connect only to a public address (a host that resolves names checks them);
    ``deadline``: seconds the whole call may take, its body's end included (None: no bound but
    the read timeout between two reads)."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None
    public: bool = False
    deadline: float | None = None


@dataclass(frozen=True, slots=True)
class StartCall:
    """Make this HTTP request to Poe (``UpstreamRequest``'s fields, and the call's id)."""

    call: int
    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None
    public: bool = False  # connect only if the host's name resolves to public addresses
    deadline: float | None = None  # seconds for the whole call, then it fails as a timeout


@dataclass(frozen=True, slots=True)
class StopCall:
    """Stop reading ``call``. ``reuse``: Poe has sent all that matters and the body's end is on
    its way, so let it arrive and keep the connection; otherwise close it (that stops Poe)."""

    call: int
    reuse: bool


@dataclass(frozen=True, slots=True)
class Respond:
    """Send the response head and ``body``; if ``more``, ``Write`` actions follow until ``DONE``."""

    status: int
    headers: dict[str, str]
    body: bytes
    more: bool = False


@dataclass(frozen=True, slots=True)
class Write:
    data: bytes


@dataclass(frozen=True, slots=True)
class Store:
    """Read, write or delete entries of the host's store (``core.state`` says what they hold).

    ``get``: report each key's value, or None where there is none (``Exchange.stored``).
    ``put``: write ``values[i]`` at ``keys[i]``; the store may drop them after ``ttl`` seconds.
    ``delete``: remove the keys (a missing one is no error). Then ``Exchange.stored(None)``.
    A store that fails reports ``Exchange.store_failed(reason)``.

    ``secret`` (the caller's credential): each value is sealed with it as it is put, and opened
    with it as it is read; one that does not open (another's, or tampered with) is reported as
    None. Sealing is AES-256-GCM under a key HKDF-SHA256 derives from the secret (salt
    ``SEAL_SALT``, info ``SEAL_INFO``), with a random 96-bit nonce and the entry's key as the
    additional data; a sealed value is ``SEAL_VERSION``, the nonce, then the ciphertext and its
    tag. Each host does it with its platform's own cryptography.
    """

    op: Literal["get", "put", "delete"]
    keys: tuple[str, ...]
    values: tuple[bytes, ...] = ()
    ttl: int = 0
    secret: str = ""


SEAL_SALT = b"poe-openai-proxy/2 store"
SEAL_INFO = b"aes-256-gcm"
SEAL_VERSION = b"\x02"


class Signal:
    """An action with no data (``READ_BODY``, ``WAIT``, ``DONE``)."""

    __slots__ = ("kind",)

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __repr__(self) -> str:
        return self.kind.upper()


READ_BODY = Signal("read_body")
WAIT = Signal("wait")
DONE = Signal("done")

Action = StartCall | StopCall | Respond | Write | Store | Signal


# -- steps: what a flow waits on --------------------------------------------------------------


class Step:
    """One thing a flow waits for: the request body, or a group of upstream calls.

    The exchange hands a step the events meant for it; each handler returns the actions to take.
    When ``done``, the flow resumes with ``result``, or has ``error`` raised into it.
    """

    done = False
    result: Any = None
    error: OpenAIError | None = None
    first_call = 0  # global id of this step's call 0
    calls = 0

    def start(self) -> list[Action]:
        """The first actions (``first_call`` is set by then)."""
        return []

    def body(self, data: bytes, more: bool) -> list[Action]:
        return []

    def answered(self, index: int, status: int, headers: Mapping[str, str]) -> list[Action]:
        return []

    def data(self, index: int, data: bytes) -> list[Action]:
        return []

    def ended(self, index: int) -> list[Action]:
        return []

    def failed(self, index: int, reason: FailureReason) -> list[Action]:
        return []

    def stored(self, values: list[bytes | None] | None) -> list[Action]:
        return []

    def store_failed(self, reason: str) -> list[Action]:
        return []


class StoreStep(Step):
    """One ``Store`` action; ``result``: the values read (``get``), or None."""

    def __init__(self, context: Context, action: Store) -> None:
        self._context = context
        self._action = action

    def start(self) -> list[Action]:
        return [self._action]

    def stored(self, values: list[bytes | None] | None) -> list[Action]:
        if self._action.op == "get" and (values is None or len(values) != len(self._action.keys)):
            raise ValueError(f"a store get of {len(self._action.keys)} keys reported {values!r:.80}")
        self.done, self.result = True, values
        return []

    def store_failed(self, reason: str) -> list[Action]:
        self._context.note(store_error=scrub(reason, self._context.api_key)[:200])  # the log line only
        self.done = True
        self.error = StoreUnavailableError("The proxy's store of responses failed; try again later.")
        return []


class Emit(Step):
    """Actions to take at once, the flow going on after them (a stream's last events)."""

    def __init__(self, actions: list[Action]) -> None:
        self._actions = actions
        self.done = True

    def start(self) -> list[Action]:
        return self._actions


class ReadBody(Step):
    """The request body, refused with 413 once it is larger than ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._parts: list[bytes] = []
        self._size = 0

    def start(self) -> list[Action]:
        return [READ_BODY]

    def body(self, data: bytes, more: bool) -> list[Action]:
        self._size += len(data)
        if self._size > self._limit:
            self.done, self.error = True, too_large(self._limit)
            return []
        self._parts.append(data)
        if more:
            return [READ_BODY]
        self.done = True
        self.result = self._parts[0] if len(self._parts) == 1 else b"".join(self._parts)
        return []


def too_large(limit: int) -> RequestTooLargeError:
    return RequestTooLargeError(f"The request body is larger than the limit of {limit} bytes.")


def transport_error(reason: FailureReason) -> OpenAIError:
    """The OpenAI error for a call that failed in transit (504 for timeouts, 502/503 otherwise)."""
    if reason == "timeout":
        return UpstreamTimeoutError("Timed out waiting for Poe.")
    if reason == "connect_timeout":
        return UpstreamTimeoutError("Timed out connecting to Poe.")
    if reason == "refused":
        return connection_refused()
    if reason == "not_public":
        return UpstreamError(
            "The bot answered with a file at a host that resolves to an address that is not public; "
            "the proxy does not fetch it.",
            code="upstream_file_refused",
        )
    return connection_reset()


# -- the request ------------------------------------------------------------------------------

Flow = Generator[Step, Any, "Respond | None"]


class Context:
    """What one request's flow works with: settings, the caller's Poe key, the host's clock and
    randomness, and the request's log record."""

    def __init__(
        self,
        settings: Settings,
        models_cache: ModelListCache,
        store_missing: str | None,
        method: str,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        new_token: Callable[[], str],
        now: float,
    ) -> None:
        self.settings = settings
        self.models_cache = models_cache
        # None when the host has a store for responses; otherwise what it takes to give it one.
        self.store_missing = store_missing
        self.method = method
        self.path = path
        self.query = query  # the query's parameters, decoded; a repeated one's last value
        self.headers = headers
        self.new_token = new_token
        self.now = now
        self.request_id = f"req_{new_token()}"
        # The one log line of this request (the host adds the duration and writes it): never a
        # body or a key.
        self.record: dict[str, Any] = {"request_id": self.request_id, "method": method, "path": path}
        self.response_headers = {**CORS_HEADERS, "x-request-id": self.request_id}
        self.api_key = ""
        self.credential = ""  # the bearer token: the Poe key, or an access token in owner mode
        self.stream_errors: Callable[[OpenAIError], bytes] | None = None  # set once a stream is open
        # The status and body of an error in the client's API, where it is not OpenAI's.
        self.error_shape: Callable[[OpenAIError], tuple[int, dict[str, Any]]] | None = None
        # The connection is to close after the answer: its body was given up on as too slow.
        # (Other answers before a body leave the server to drain it: closing on a client still
        # sending would reset the connection, and the answer could be lost with it.)
        self.close_after = False

    def authenticate(self) -> str:
        authorization = self.headers.get("authorization")
        api_key = self.headers.get("x-api-key")
        if authorization is None and api_key is not None:  # Anthropic's clients send their key so
            authorization = f"Bearer {api_key}"
        self.api_key = resolve_poe_key(authorization, self.settings)
        self.credential = bearer_token(authorization) or ""
        return self.api_key

    def read_body(self) -> Generator[Step, Any, bytes]:
        """The request body (413 as soon as it is known to be too large)."""
        limit = self.settings.max_body_bytes
        declared = self.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise too_large(limit)
        body: bytes = yield ReadBody(limit)
        return body

    def note(self, **fields: Any) -> None:
        self.record.update(fields)

    def scrubbed(self, error: OpenAIError) -> OpenAIError:
        """``error`` fit to leave the proxy: no field or header of it holds a piece of the key
        this request used (Poe's words are in it, and Poe may repeat the key in any shape)."""
        return scrub_error(error, self.api_key)

    def note_upstream_status(self, status: int) -> None:
        """Poe's HTTP status for the log line; with several calls the worst one is kept."""
        if status >= self.record.get("upstream_status", 0):
            self.record["upstream_status"] = status

    def upstream(self, method: str, path: str, body: Any = None, *, accept: str) -> UpstreamRequest:
        """A request to Poe's API at ``path`` (a JSON ``body``, if any) with the caller's key."""
        headers = {"user-agent": USER_AGENT, "authorization": f"Bearer {self.api_key}", "accept": accept}
        content = None
        if body is not None:
            headers["content-type"] = "application/json"
            content = dumps(body).encode()
        if accept == "text/event-stream":
            headers["accept-encoding"] = "identity"  # tokens must not wait in a compressor's buffer
        return UpstreamRequest(method, f"{self.settings.poe_base_url}{path}", headers, content)

    def json(self, status: int, payload: Any) -> Respond:
        return Respond(status, {**JSON_HEADERS, **self.response_headers}, dumps(payload).encode())

    def content(self, content_type: str, body: bytes) -> Respond:
        """A 200 whose body is ``body`` (a file's bytes), of ``content_type``."""
        return Respond(200, {"content-type": content_type, **self.response_headers}, body)

    def stream(self, events: bytes) -> Respond:
        """A 200 event stream whose events are all known at once."""
        return Respond(200, {**SSE_HEADERS, **self.response_headers}, events)

    def error(self, error: OpenAIError) -> Respond:
        headers = {
            **JSON_HEADERS,
            **self.response_headers,
            **{k.lower(): v for k, v in error.headers.items()},
        }
        status, body = self.error_shape(error) if self.error_shape else (error.status, error.to_dict())
        return Respond(status, headers, dumps(body).encode())

    def stream_head(self, body: bytes, errors: Callable[[OpenAIError], bytes]) -> Respond:
        """The head of a 200 event stream; ``errors`` encodes a failure after it as events."""
        self.stream_errors = errors
        self.record["status"] = 200
        return Respond(200, {**SSE_HEADERS, **self.response_headers}, body, more=True)


class Exchange:
    """One request: a flow (a generator of steps, see ``core.routes``) and the actions it asks for.

    Every method returns at once and never raises: a client's mistake or Poe's failure becomes
    the OpenAI error the client gets, and a bug in the proxy becomes a 500 (kept in ``bug`` for
    the host to log with its traceback).
    """

    def __init__(self, context: Context, flow: Flow) -> None:
        self.context = context
        self.record = context.record
        self.bug: BaseException | None = None
        # Seconds the host gives the whole request body, from its first READ_BODY.
        self.body_timeout = context.settings.body_timeout
        self._flow = flow
        self._outbox: deque[Action] = deque()
        self._step: Step | None = None
        self._calls = 0
        self._resume(None, None)

    def next_action(self) -> Action:
        """What to do now (``WAIT`` when only a call's next event can move the request on)."""
        if self._outbox:
            return self._outbox.popleft()
        return WAIT if self._step is not None else DONE

    # -- events ---------------------------------------------------------------------------

    def body(self, data: bytes, more: bool) -> None:
        """Some of the request body (``more``: not the last of it)."""
        step = self._step
        if step is not None:
            self._run(step, step.body, bytes(data), more)

    def body_failed(self, reason: BodyFailure) -> None:
        """The request body did not come: too slow (a 408), or the client broke off its upload
        (no one is left to answer)."""
        step = self._step
        if not isinstance(step, ReadBody):
            return
        if reason == "aborted":
            self.client_left()
            return
        error = RequestTimeoutError(f"The request body did not arrive within {self.body_timeout:g} s.")
        self.context.close_after = True  # whatever of it comes later is no request
        step.done, step.error = True, error
        self._resume(None, error)

    def client_left(self) -> None:
        """The client is gone: stop every call (the host closes them too) and end the request."""
        self.record["client_left"] = True
        self.record.setdefault("status", 499)  # nginx's "client closed request"
        self._outbox.clear()
        self._abandon()
        self._outbox.append(DONE)

    def answered(self, call: int, status: int, headers: Mapping[str, str]) -> None:
        """Poe answered ``call`` with ``status``; ``headers`` with lowercase names."""
        self.context.note_upstream_status(status)
        step = self._owner(call)
        if step is not None:
            self._run(step, step.answered, call - step.first_call, status, headers)

    def data(self, call: int, data: bytes) -> None:
        """The next bytes of ``call``'s body, decoded if Poe compressed it."""
        step = self._owner(call)
        if step is not None:
            self._run(step, step.data, call - step.first_call, data)

    def ended(self, call: int) -> None:
        """``call``'s body is complete."""
        step = self._owner(call)
        if step is not None:
            self._run(step, step.ended, call - step.first_call)

    def failed(self, call: int, reason: FailureReason) -> None:
        """``call`` failed before its answer or while its body was read."""
        step = self._owner(call)
        if step is not None:
            self._run(step, step.failed, call - step.first_call, reason)

    def stored(self, values: Sequence[bytes | None] | None = None) -> None:
        """The ``Store`` action is done; for a ``get``, each key's value (None: no such entry)."""
        step = self._step
        if isinstance(step, StoreStep):
            read = None if values is None else [None if v is None else bytes(v) for v in values]
            self._run(step, step.stored, read)

    def store_failed(self, reason: str) -> None:
        """The ``Store`` action failed; ``reason`` goes to the log line, never to the client."""
        step = self._step
        if isinstance(step, StoreStep):
            self._run(step, step.store_failed, str(reason))

    # -- driving the flow -----------------------------------------------------------------

    def _owner(self, call: int) -> Step | None:
        step = self._step  # events of an earlier step's calls (already stopped) are dropped
        if step is not None and 0 <= call - step.first_call < step.calls:
            return step
        return None

    def _run(self, step: Step, handler: Callable[..., list[Action]], *args: Any) -> None:
        try:
            actions = handler(*args)
        except Exception as exc:  # a bug: the client still gets an OpenAI-shaped answer
            self.crash(exc)
            return
        if actions:
            self._outbox.extend(actions)
        if step.done:
            self._resume(step.result, step.error)

    def _resume(self, value: Any, error: OpenAIError | None) -> None:
        self._step = None
        try:
            step = self._flow.send(value) if error is None else self._flow.throw(error)
        except StopIteration as finished:
            if finished.value is not None:
                self._respond(finished.value)
            self._outbox.append(DONE)
            return
        except OpenAIError as exc:
            self._fail(exc)
            return
        except Exception as exc:
            self.crash(exc)
            return
        self._step = step
        step.first_call = self._calls
        actions = step.start()
        self._calls += step.calls
        self._outbox.extend(actions)
        if step.done:  # a step can finish at once (nothing to call)
            self._resume(step.result, step.error)

    def _respond(self, response: Respond) -> None:
        self.record["status"] = response.status
        if self.context.close_after:
            response = replace(response, headers={**response.headers, "connection": "close"})
        self._outbox.append(response)

    def _fail(self, error: OpenAIError) -> None:
        """End the request with ``error``: as the answer, or as the stream's last events."""
        error = self.context.scrubbed(error)
        self.record["error"] = error.code or error.type
        errors = self.context.stream_errors
        if errors is not None:
            self._outbox.append(Write(errors(error)))
        else:
            self._respond(self.context.error(error))
        self._outbox.append(DONE)

    def crash(self, exc: BaseException) -> None:
        """A bug (here or in the host): the request ends with a 500, or a stream's last event."""
        self.bug = exc
        self._abandon()
        self._fail(OpenAIError("The proxy failed unexpectedly.", code="internal_error"))

    def _abandon(self) -> None:
        """Stop the flow and whatever its step had running."""
        step, self._step = self._step, None
        if step is not None:
            self._outbox.extend(StopCall(step.first_call + i, False) for i in range(step.calls))
        self._flow.close()

    @property
    def level(self) -> str | None:
        """How the request's log line is to be written: ``error`` for a bug of the proxy's,
        ``warning`` when Poe or the connection failed it (a 5xx, or a stream cut after its head),
        ``info`` otherwise (a client's mistake is no operator's concern); ``None`` when that is
        below ``LOG_LEVEL`` and the line is not to be written."""
        if self.bug is not None:
            level = "error"
        else:
            status = self.record.get("status", 0)
            failed = status >= 500 or (status == 200 and "error" in self.record)
            level = "warning" if failed else "info"
        return level if LOG_LEVELS[level.upper()] >= LOG_LEVELS[self.context.settings.log_level] else None
