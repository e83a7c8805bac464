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
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
import zlib
from collections.abc import Generator, Sequence
from typing import Any, NamedTuple

from .flow import Context, Step, Store, StoreStep

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
