"""The stores the ASGI app keeps responses in (``core.state`` decides what goes in them).

A store is three operations on bytes by key (``driver.KeyValueStore``); which one a process uses
follows from where it runs (``store_from_environ``). ``make serve`` keeps them in SQLite, in a file every
process started from the same directory shares.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

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


def store_from_environ(environ: Mapping[str, str]) -> tuple[KeyValueStore | None, str | None]:
    """The store for where this process runs, or None and what to configure to have one.

    ``make serve`` (and any server of the app): SQLite in ``STATE_DIR`` (default ``.state``).
    On Vercel and AWS Lambda a file is no store (each instance has its own disk), so there the
    platform's store is needed."""
    if environ.get("VERCEL"):
        return None, "On Vercel, responses need a Redis database, which this version does not support yet."
    if environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        return None, "On AWS Lambda, responses need DynamoDB, which this version does not support yet."
    directory = Path(environ.get("STATE_DIR") or ".state")
    return SqliteStore(directory / "responses.sqlite3"), None
