"""The stores the ASGI app keeps responses in (``core.state`` decides what goes in them).

A store is three operations on bytes by key (``driver.KeyValueStore``); which one a process uses
follows from its environment (``store_from_environ``): DynamoDB on AWS Lambda (the table
``serverless.yml`` creates), Redis on Vercel (the database a Vercel integration connects), and
otherwise SQLite, in a file every process started from the same directory shares (``make serve``).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .driver import KeyValueStore


class SqliteStore:
    """One table in a SQLite file. Each operation runs in a thread with its own connection (a
    few milliseconds), so the event loop never waits on the disk; SQLite's own locking lets
    several processes share the file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._ready = False  # the folder, the table and WAL mode: made once, by the first operation

    def _connect(self) -> sqlite3.Connection:
        if not self._ready:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        if not self._ready:  # two first operations at once both do this: it is idempotent
            connection.execute("PRAGMA journal_mode=WAL")  # kept in the file, for every connection
            connection.execute(
                "CREATE TABLE IF NOT EXISTS entries"
                " (key TEXT PRIMARY KEY, value BLOB NOT NULL, expires REAL NOT NULL)"
            )
            self._ready = True
        return connection

    def _run(
        self, operation: str, keys: Sequence[str], values: Sequence[bytes], ttl: int
    ) -> list[bytes | None]:
        connection = self._connect()
        try:
            if operation == "get":
                now = time.time()
                found = {}
                for key in keys:
                    row = connection.execute(
                        "SELECT value FROM entries WHERE key = ? AND expires > ?", (key, now)
                    ).fetchone()
                    found[key] = None if row is None else bytes(row[0])
                return [found[key] for key in keys]
            with connection:
                connection.execute("BEGIN IMMEDIATE")
                if operation == "put":
                    expires = time.time() + ttl
                    connection.executemany(
                        "INSERT OR REPLACE INTO entries VALUES (?, ?, ?)",
                        [(key, value, expires) for key, value in zip(keys, values, strict=True)],
                    )
                    connection.execute("DELETE FROM entries WHERE expires <= ?", (time.time(),))
                else:
                    connection.executemany("DELETE FROM entries WHERE key = ?", [(key,) for key in keys])
            return []
        finally:
            connection.close()

    async def get(self, keys: Sequence[str]) -> list[bytes | None]:
        return await asyncio.to_thread(self._run, "get", keys, (), 0)

    async def put(self, keys: Sequence[str], values: Sequence[bytes], ttl: int) -> None:
        await asyncio.to_thread(self._run, "put", keys, values, ttl)

    async def delete(self, keys: Sequence[str]) -> None:
        await asyncio.to_thread(self._run, "delete", keys, (), 0)


class RedisStore:
    """A Redis database, by URL (``redis://`` or ``rediss://``, with its password): one ``MGET``
    per read, one ``MULTI`` of ``SET … EX`` per write, so a response and its parts land together.

    The client (redis-py's, with its connection pool) belongs to one event loop: it is made on
    the first operation, and again if a later one runs in another loop."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _redis(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            from redis.asyncio import Redis

            self._client = Redis.from_url(self.url, socket_connect_timeout=5, socket_timeout=10)
            self._loop = loop
        return self._client

    async def get(self, keys: Sequence[str]) -> list[bytes | None]:
        return list(await self._redis().mget(list(keys)))

    async def put(self, keys: Sequence[str], values: Sequence[bytes], ttl: int) -> None:
        async with self._redis().pipeline(transaction=True) as pipeline:
            for key, value in zip(keys, values, strict=True):
                pipeline.set(key, value, ex=ttl)
            await pipeline.execute()

    async def delete(self, keys: Sequence[str]) -> None:
        await self._redis().delete(*keys)


class DynamoStore:
    """A DynamoDB table with the string hash key ``key``, the bytes in ``value`` and the expiry
    in ``expires`` (epoch seconds: the table's TTL attribute, which deletes late, so a read
    skips what has expired). Reads are strongly consistent: a response stored as its stream
    ends is found by the next request, whichever instance takes it.

    ``client``: a boto3 DynamoDB client; by default boto3 makes one on the first operation,
    from the environment (Lambda's runtime has boto3 and sets the region and credentials). Each
    operation runs in a thread, where boto3 blocks."""

    READ_BATCH = 100  # BatchGetItem's limit
    WRITE_BATCH = 25  # BatchWriteItem's
    ATTEMPTS = 5  # for what DynamoDB leaves unprocessed (throttling); boto3 retries errors itself

    def __init__(self, table: str, client: Any = None) -> None:
        self.table = table
        self._client = client
        self._lock = threading.Lock()

    def _dynamodb(self) -> Any:
        with self._lock:
            if self._client is None:
                import boto3  # type: ignore[import-untyped]  # region, credentials, endpoint: the environment

                self._client = boto3.client("dynamodb")
            return self._client

    def _batches(self, items: Sequence[Any], size: int) -> list[Sequence[Any]]:
        return [items[i : i + size] for i in range(0, len(items), size)]

    def _until_processed(self, request: Any, call: Callable[[Any], Any], unprocessed: str) -> list[Any]:
        """Each answer to ``call(request)``, again with what it left unprocessed, a few times."""
        answers = []
        for attempt in range(self.ATTEMPTS):
            answer = call(request)
            answers.append(answer)
            request = answer.get(unprocessed) or {}
            if not request:
                return answers
            time.sleep(0.05 * 2**attempt)
        raise RuntimeError(f"DynamoDB left {unprocessed} after {self.ATTEMPTS} attempts")

    def _get(self, keys: Sequence[str]) -> list[bytes | None]:
        dynamodb = self._dynamodb()
        found: dict[str, bytes] = {}
        now = time.time()
        for batch in self._batches(sorted(set(keys)), self.READ_BATCH):
            request = {self.table: {"Keys": [{"key": {"S": key}} for key in batch], "ConsistentRead": True}}
            for answer in self._until_processed(
                request, lambda r: dynamodb.batch_get_item(RequestItems=r), "UnprocessedKeys"
            ):
                for item in answer["Responses"].get(self.table, []):
                    if float(item["expires"]["N"]) > now:
                        found[item["key"]["S"]] = bytes(item["value"]["B"])
        return [found.get(key) for key in keys]

    def _write(self, requests: Sequence[dict[str, Any]]) -> None:
        dynamodb = self._dynamodb()
        for batch in self._batches(requests, self.WRITE_BATCH):
            request = {self.table: list(batch)}
            self._until_processed(
                request, lambda r: dynamodb.batch_write_item(RequestItems=r), "UnprocessedItems"
            )

    async def get(self, keys: Sequence[str]) -> list[bytes | None]:
        return await asyncio.to_thread(self._get, keys)

    async def put(self, keys: Sequence[str], values: Sequence[bytes], ttl: int) -> None:
        expires = str(int(time.time()) + ttl)
        requests = [
            {"PutRequest": {"Item": {"key": {"S": key}, "value": {"B": value}, "expires": {"N": expires}}}}
            for key, value in zip(keys, values, strict=True)
        ]
        await asyncio.to_thread(self._write, requests)

    async def delete(self, keys: Sequence[str]) -> None:
        requests = [{"DeleteRequest": {"Key": {"key": {"S": key}}}} for key in dict.fromkeys(keys)]
        await asyncio.to_thread(self._write, requests)


def store_from_environ(environ: Mapping[str, str]) -> tuple[KeyValueStore | None, str | None]:
    """The store this process's environment names, or None and what to configure to have one.

    ``RESPONSES_TABLE``: that DynamoDB table (``serverless.yml`` creates one and sets it).
    ``REDIS_URL`` (or ``KV_URL``): that Redis database (what Vercel's Redis integrations set).
    Otherwise SQLite in ``STATE_DIR`` (default ``.state``), except on Vercel and AWS Lambda,
    where a file is no store (each instance has its own disk)."""
    if environ.get("RESPONSES_TABLE"):
        return DynamoStore(environ["RESPONSES_TABLE"]), None
    redis_url = environ.get("REDIS_URL") or environ.get("KV_URL")
    if redis_url:
        return RedisStore(redis_url), None
    if environ.get("VERCEL"):
        return None, (
            "On Vercel, responses are kept in Redis: connect a Redis database to the project"
            " (Storage, then Upstash for Redis or Redis Cloud), which sets REDIS_URL, and redeploy."
        )
    if environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        return None, (
            "On AWS Lambda, responses are kept in DynamoDB: deploy with serverless.yml, which"
            " creates the table and sets RESPONSES_TABLE."
        )
    directory = Path(environ.get("STATE_DIR") or ".state")
    return SqliteStore(directory / "responses.sqlite3"), None
