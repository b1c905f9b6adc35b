"""Advisory locks that name their holder: how one dbtools process keeps another off the same
work (two collectors on one target, a snapshot while a collector writes the same target).

Keys are 64-bit hashes of what they guard (``lock_key("collect", "app")``); a lock is taken with
``pg_try_advisory_lock``, never the blocking form, and a refusal names the session that holds it
(pid, application, client, since when) from ``pg_locks`` and ``pg_stat_activity``.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row

from dbtools.db.connection import SQL_MARKER

_HOLDER_SQL = f"""
SELECT {SQL_MARKER} a.pid, a.application_name, a.client_addr::text AS client,
       a.backend_start AS since
FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted
  AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
  AND l.classid = ((%(key)s::bigint >> 32) & 4294967295)::oid
  AND l.objid = (%(key)s::bigint & 4294967295)::oid AND l.objsubid = 1
"""


def lock_key(*parts: str) -> int:
    """A signed 64-bit advisory-lock key for *parts* (stable across processes and versions)."""
    digest = hashlib.blake2b(" ".join(("dbtools", *parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@dataclass(frozen=True)
class LockHolder:
    """The session holding an advisory lock (what ``pg_stat_activity`` shows of it)."""

    pid: int
    application_name: str | None
    client: str | None
    since: datetime | None

    def __str__(self) -> str:
        where = f" from {self.client}" if self.client else ""
        since = f", connected {self.since:%Y-%m-%d %H:%M:%S %Z}" if self.since else ""
        return f"pid {self.pid} ({self.application_name or 'no application_name'}{where}{since})"


def try_lock(conn: psycopg.Connection[Any], key: int) -> bool:
    """Take the session-level advisory lock *key* if it is free (never waits)."""
    row = conn.execute(f"SELECT {SQL_MARKER} pg_try_advisory_lock(%s)", (key,)).fetchone()
    return bool(row and row[0])


def unlock(conn: psycopg.Connection[Any], key: int) -> None:
    conn.execute(f"SELECT {SQL_MARKER} pg_advisory_unlock(%s)", (key,))


def holder(conn: psycopg.Connection[Any], key: int) -> LockHolder | None:
    """Who holds *key* in the connected database (None: nobody, or a session since gone)."""
    with conn.cursor(row_factory=class_row(LockHolder)) as cur:
        return cur.execute(_HOLDER_SQL, {"key": key}).fetchone()


def wait_for_lock(
    conn: psycopg.Connection[Any], key: int, wait_s: float, poll_s: float = 0.1
) -> LockHolder | None:
    """Poll for *key* for up to *wait_s* seconds; None once it is ours, else who holds it."""
    deadline = time.monotonic() + wait_s
    while True:
        if try_lock(conn, key):
            return None
        if time.monotonic() >= deadline:
            found = holder(conn, key)
            if found is not None:
                return found
            if try_lock(conn, key):  # released between the two questions
                return None
            return LockHolder(0, "a session that has since gone", None, None)
        time.sleep(poll_s)
