"""What the Responses API keeps between requests, and how it lies in the host's store.

Core never touches a store: it asks the host to ``get``, ``put`` or ``delete`` keys (``Store``
actions) and decides what the bytes are. A host's store is its platform's own (SQLite for
``make serve``, Deno KV, Netlify Blobs, Cloudflare KV, DynamoDB, Redis): any store of bytes by
key does, since everything that matters is decided here.

- **Keys belong to the caller.** A key is an HMAC of the kind and the id, keyed by a key derived
  from the caller's credential (its Poe key, or its access token in owner mode): a response made
  with one credential is not found with another, an id alone leads nowhere, and whoever holds
  the store and a candidate credential learns nothing by hashing: the keys are not checkable
  without the HMAC, and the values are sealed.
- **Values are sealed** (``Store.secret``): AES-256-GCM under a key derived from the same
  credential, so the store's files, a backup or a database console show nothing of what was
  said. Records kept before sealing lay under plain SHA-256 keys, which are no longer read:
  they are not found, and expire after ``RESPONSES_TTL``.
- **A response** is kept as its record: the response object as it was returned, the items of its
  own input (item references resolved), and the ids of the responses before it
  (``previous_response_id``'s chain), so a chain of any length is read back in two steps.
- **An output item** is kept under its own id too, for ``item_reference``.
- **Values** are compressed JSON that carries its own expiry (``RESPONSES_TTL``; a store with its
  own expiry is told too). One larger than ``CHUNK`` bytes (Deno KV takes 64 KiB a value,
  DynamoDB 400 KB) is cut into parts, each under a key of its own.
- **A conversation is bounded**: each record carries the size of its conversation, so a chain
  past ``MAX_CONVERSATION_BYTES`` is refused after its last record is read.

What the Responses flow (``core.routes.responses``) does with it is here too: ``earlier_items``
reads what a request continues, ``keep_response`` stores an answer, ``answer_stored`` answers
retrieve, ``input_items`` and delete.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
import zlib
from collections.abc import Generator, Mapping, Sequence
from typing import Any, NamedTuple

from .errors import InvalidRequestError, NotFoundError, StoreUnavailableError
from .flow import Context, Respond, Step, Store, StoreStep
from .sse import dumps
from .validate import opt_str, required_str

CHUNK = 60_000  # sealed, a part is 29 bytes more: within Deno KV's 64 KiB
_WHOLE, _PARTS = b"Z", b"C"
_HEAD = struct.Struct(">Q")  # expiry, Unix seconds
_PARTS_HEAD = struct.Struct(">QI")  # expiry, number of parts


def store_key(credential: str, kind: str, object_id: str) -> str:
    """The key of ``kind`` (``resp``, ``item``) ``object_id`` for the caller with ``credential``."""
    index = hmac.new(b"poe-openai-proxy/2 store index", credential.encode(), hashlib.sha256).digest()
    digest = hmac.new(index, f"{kind}\0{object_id}".encode(), hashlib.sha256).hexdigest()
    return f"{kind}:{digest}"


def encode(key: str, value: Any, expires: int) -> list[tuple[str, bytes]]:
    """The entries that hold ``value`` (JSON) at ``key`` until ``expires``."""
    packed = zlib.compress(json.dumps(value, separators=(",", ":")).encode(), 6)
    if len(packed) + 1 + _HEAD.size <= CHUNK:
        return [(key, _WHOLE + _HEAD.pack(expires) + packed)]
    parts = [packed[i : i + CHUNK] for i in range(0, len(packed), CHUNK)]
    head = _PARTS + _PARTS_HEAD.pack(expires, len(parts))
    return [(key, head), *((f"{key}:{i}", part) for i, part in enumerate(parts))]


def put(context: Context, entries: Sequence[tuple[str, bytes]]) -> Store:
    keys, values = zip(*entries, strict=True) if entries else ((), ())
    return Store("put", tuple(keys), tuple(values), int(context.settings.responses_ttl), context.credential)


class Kept(NamedTuple):
    value: Any  # the JSON value
    keys: list[str]  # every key it occupies


def load(context: Context, keys: Sequence[str]) -> Generator[Step, Any, list[Kept | None]]:
    """What is kept at ``keys``, None where nothing is (or it expired, or it is not one of
    ours): one ``get``, and one more for the parts of values that were cut."""
    heads: list[bytes | None] = yield StoreStep(context, Store("get", tuple(keys), secret=context.credential))
    values: list[Kept | None] = [None] * len(keys)
    wanted: list[tuple[int, list[str]]] = []
    for i, head in enumerate(heads):
        if head is None or len(head) < 1 + _HEAD.size:
            continue
        if _HEAD.unpack_from(head, 1)[0] <= context.now:
            continue
        if head[:1] == _WHOLE:
            values[i] = _kept(head[1 + _HEAD.size :], [keys[i]])
        elif head[:1] == _PARTS and len(head) == 1 + _PARTS_HEAD.size:
            count = _PARTS_HEAD.unpack_from(head, 1)[1]
            wanted.append((i, [f"{keys[i]}:{n}" for n in range(count)]))
    if wanted:
        part_keys = tuple(key for _, names in wanted for key in names)
        parts: list[bytes | None] = yield StoreStep(
            context, Store("get", part_keys, secret=context.credential)
        )
        start = 0
        for i, names in wanted:
            got = parts[start : start + len(names)]
            start += len(names)
            if all(part is not None for part in got):
                values[i] = _kept(b"".join(part for part in got if part is not None), [keys[i], *names])
    return values


def load_ids(context: Context, kind: str, ids: Sequence[str]) -> Generator[Step, Any, list[Kept | None]]:
    """What is kept of ``kind`` (``resp``, ``item``) under each of ``ids`` for this caller."""
    return (yield from load(context, [store_key(context.credential, kind, i) for i in ids]))


def encode_id(
    context: Context, kind: str, object_id: str, value: Any, expires: int
) -> list[tuple[str, bytes]]:
    """The entries that keep ``value`` as ``kind`` ``object_id`` for this caller."""
    return encode(store_key(context.credential, kind, object_id), value, expires)


def _kept(packed: bytes, keys: list[str]) -> Kept | None:
    try:
        return Kept(json.loads(zlib.decompress(packed)), keys)
    except (zlib.error, ValueError):
        return None  # not what this module writes: as good as absent


# -- what the Responses API reads and writes ----------------------------------------------------


class Earlier(NamedTuple):
    """What a request continues: the body with its item references resolved, the items of the
    responses before it, their ids (oldest first), and the size of those items as JSON."""

    body: dict[str, Any]
    history: list[dict[str, Any]]
    chain: list[str]
    size: int = 0


def earlier_items(context: Context, payload: dict[str, Any]) -> Generator[Step, Any, Earlier]:
    """Read what ``previous_response_id`` and the item references in ``input`` name, from the
    store, as kept for this caller's credential."""
    previous = opt_str(payload, "previous_response_id")
    items = payload.get("input")
    references = [
        (i, item)
        for i, item in enumerate(items if isinstance(items, list) else [])
        if isinstance(item, dict) and item.get("type") == "item_reference"
    ]
    if previous is None and not references:
        return Earlier(payload, [], [])
    if context.store_missing is not None:
        param = "previous_response_id" if previous is not None else f"input[{references[0][0]}]"
        raise InvalidRequestError(
            f"This deployment keeps no responses, so there is nothing to continue: "
            f"{context.store_missing} Until then, send the whole conversation in 'input'.",
            param=param,
            code="store_unavailable",
        )
    history: list[dict[str, Any]] = []
    chain: list[str] = []
    size = 0
    if previous is not None:
        history, chain, size = yield from response_chain(context, previous)
    if not references:
        return Earlier(payload, history, chain, size)
    ids = [required_str(item, "id", param=f"input[{i}].id") for i, item in references]
    found = yield from load_ids(context, "item", ids)
    resolved = list(items)  # type: ignore[arg-type]  # a list: it holds the references
    for (i, _), item_id, kept in zip(references, ids, found, strict=True):
        if kept is None:
            raise InvalidRequestError(
                f"Item '{item_id}' was not found: only the output items of responses stored with "
                "this API key, and not yet expired (RESPONSES_TTL), can be referenced; the items of "
                "a response's input (as input_items lists them) cannot. Send the item itself in "
                "'input' instead.",
                param=f"input[{i}]",
                code="item_not_found",
            )
        resolved[i] = kept.value
    return Earlier({**payload, "input": resolved}, history, chain, size)


def response_chain(
    context: Context, previous: str
) -> Generator[Step, Any, tuple[list[dict[str, Any]], list[str], int]]:
    """The items of ``previous`` and of every response before it, oldest first, their ids, and
    their size as JSON; a conversation over ``MAX_CONVERSATION_BYTES`` is refused after its last
    record is read, before the rest of it is."""
    [kept] = yield from load_ids(context, "resp", [previous])
    if kept is None:
        raise InvalidRequestError(
            f"Previous response with id '{previous}' not found: responses are kept for "
            "RESPONSES_TTL, for the API key that made them, when made with 'store' on. Send the "
            "whole conversation in 'input' instead.",
            param="previous_response_id",
            code="previous_response_not_found",
        )
    size = kept.value.get("size", 0)
    limit = context.settings.max_conversation_bytes
    if size > limit:
        raise InvalidRequestError(
            f"The conversation of '{previous}' is {size} bytes, over the limit of {limit} "
            "(MAX_CONVERSATION_BYTES) on what is sent to Poe. Start a new conversation, with a "
            "summary of this one in 'input', or send less.",
            param="previous_response_id",
            code="conversation_too_large",
        )
    chain = [*kept.value["chain"], previous]
    records = yield from load_ids(context, "resp", chain[:-1])
    history: list[dict[str, Any]] = []
    for response_id, record in zip(chain, [*records, kept], strict=True):
        if record is None:
            raise InvalidRequestError(
                f"Response '{response_id}', earlier in the conversation of '{previous}', was "
                "deleted or has expired. Send the whole conversation in 'input' instead.",
                param="previous_response_id",
                code="previous_response_not_found",
            )
        history += record.value["input"] + record.value["response"]["output"]
    return history, chain, size


def keep_response(context: Context, response: dict[str, Any], earlier: Earlier) -> Generator[Step, Any, bool]:
    """Store ``response``, its input and its output items for this caller; whether it was kept.
    A store that fails leaves the answer whole (it has been paid for), but not stored: the answer
    says ``store: false``, the ``x-store-error`` header says why where the head is still to be
    sent, and the log line has the store's own reason."""
    expires = int(context.now + context.settings.responses_ttl)
    items = stored_input(earlier.body["input"], context)
    record = {
        "response": response,
        "input": items,
        "chain": earlier.chain,
        # the conversation up to this response, as JSON: what continuing it would send
        "size": earlier.size + len(dumps(items)) + len(dumps(response["output"])),
    }
    entries = encode_id(context, "resp", response["id"], record, expires)
    for item in response["output"]:
        entries += encode_id(context, "item", item["id"], item, expires)
    try:
        yield StoreStep(context, put(context, entries))
    except StoreUnavailableError as failed:
        context.note(error=failed.code)
        context.response_headers["x-store-error"] = f"{failed.code}: the response was not stored"
        return False
    return True


def stored_input(items: Any, context: Context) -> list[dict[str, Any]]:
    """A request's ``input`` as kept: a list of items, each message with its id and content parts
    (as ``input_items`` lists them)."""
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    kept = []
    for item in items:
        item = dict(item)
        if item.get("type", "message") == "message":
            item["type"] = "message"
            item.setdefault("id", f"msg_{context.new_token()}")
            if isinstance(item.get("content"), str):
                kind = "output_text" if item.get("role") == "assistant" else "input_text"
                item["content"] = [{"type": kind, "text": item["content"]}]
        kept.append(item)
    return kept


def answer_stored(context: Context, response_id: str, action: str) -> Generator[Step, Any, Respond]:
    """A stored response (``action`` ""), its ``input_items``, its deletion (``delete``), or a
    ``cancel``, which no stored response can take: for this caller, from the store."""
    if context.store_missing is not None:
        raise NotFoundError(
            f"Response with id '{response_id}' not found: this deployment keeps no responses. "
            f"{context.store_missing}",
            code="store_unavailable",
        )
    [kept] = yield from load_ids(context, "resp", [response_id])
    if kept is None:
        raise NotFoundError(f"Response with id '{response_id}' not found.", code="response_not_found")
    response = kept.value["response"]
    if action == "cancel":
        raise InvalidRequestError(
            "Only background responses can be cancelled, and this proxy runs none.",
            code="response_not_cancellable",
        )
    if action == "input_items":
        return context.json(200, list_page(kept.value["input"], context.query))
    if action == "delete":
        items = yield from load_ids(context, "item", [item["id"] for item in response["output"]])
        keys = kept.keys + [k for item in items if item is not None for k in item.keys]
        yield StoreStep(context, Store("delete", tuple(keys)))
        return context.json(200, {"id": response_id, "object": "response", "deleted": True})
    return context.json(200, response)


def list_page(items: list[dict[str, Any]], query: Mapping[str, str]) -> dict[str, Any]:
    """One page of ``items`` as OpenAI lists them: ``order`` (``desc``, newest first, by
    default), at most ``limit`` (1 to 100, default 20), those ``after`` the item with that id."""
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequestError("'order' must be 'asc' or 'desc'.", param="order")
    limit = query.get("limit", "20")
    if not (limit.isdigit() and 1 <= int(limit) <= 100):
        raise InvalidRequestError("'limit' must be an integer from 1 to 100.", param="limit")
    data = items if order == "asc" else items[::-1]
    if "after" in query:
        ids = [item["id"] for item in data]
        if query["after"] not in ids:
            raise InvalidRequestError(f"No item with id '{query['after']}' in this list.", param="after")
        data = data[ids.index(query["after"]) + 1 :]
    page = data[: int(limit)]
    first, last = (page[0]["id"], page[-1]["id"]) if page else (None, None)
    return {
        "object": "list",
        "data": page,
        "first_id": first,
        "last_id": last,
        "has_more": len(data) > len(page),
    }
