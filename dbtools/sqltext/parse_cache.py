"""What parsing a statement's text found, kept across runs: a report over statements an earlier
report saw parses none of them again.

One SQLite file in the cache directory (``$DBTOOLS_CACHE_DIR``, else ``$XDG_CACHE_HOME/dbtools``,
else ``~/.cache/dbtools``; created mode 0700). Entries are keyed by a hash of the text and of a
*namespace* naming everything a result depends on (the classification rules' version, sqlglot's
version and build): a changed text, or another sqlglot, is a miss. Values are JSON documents the
caller makes (``families`` keeps only scrubbed texts: nothing a report would not show).

Safe under concurrent runs: SQLite's locks (WAL, a busy timeout) order the writers, and inserts
never overwrite. Bounded: each write removes the oldest entries beyond ``max_entries``. A cache
that cannot be opened, read or written is no cache: one warning, and every text is parsed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CACHE_DIR_VARIABLE = "DBTOOLS_CACHE_DIR"
FILE_NAME = "parses.sqlite3"
MAX_ENTRIES = 100_000  # about 60 MB of the largest shapes; a fleet's statements fit many times
_BUSY_TIMEOUT_SECONDS = 5.0
_OPEN_ATTEMPTS = 10
_CHUNK = 500  # keys per SELECT: below SQLite's limit on bound parameters

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS parses ("
    " id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, value TEXT NOT NULL)"
)


def cache_directory() -> Path:
    """Where dbtools keeps what it may recompute: ``$DBTOOLS_CACHE_DIR``, else the XDG cache."""
    chosen = os.environ.get(CACHE_DIR_VARIABLE)
    if chosen:
        return Path(chosen)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dbtools"


class ParseCache:
    """Parse results by text, in one SQLite file; *namespace* is part of every key."""

    def __init__(
        self, path: Path | None = None, *, namespace: str, max_entries: int = MAX_ENTRIES
    ) -> None:
        self.path = path if path is not None else cache_directory() / FILE_NAME
        self.namespace = namespace
        self.max_entries = max_entries
        self._conn: sqlite3.Connection | None = None
        self._broken = False

    def key(self, text: str) -> str:
        return hashlib.sha256(f"{self.namespace}\0{text}".encode()).hexdigest()

    def get_many(self, texts: Iterable[str]) -> dict[str, Any]:
        """The stored value of each of *texts* that has one (text to value)."""
        by_key = {self.key(text): text for text in texts}
        found: dict[str, Any] = {}
        conn = self._connection()
        if conn is None:
            return found
        keys = list(by_key)
        try:
            for start in range(0, len(keys), _CHUNK):
                chunk = keys[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(f"SELECT key, value FROM parses WHERE key IN ({marks})", chunk)
                found.update((by_key[key], json.loads(value)) for key, value in rows)
        except (sqlite3.Error, ValueError) as err:
            self._give_up(err)
            return {}
        return found

    def put_many(self, values: Mapping[str, Any]) -> None:
        """Store *values* (text to a JSON-able value); texts already stored keep theirs."""
        conn = self._connection()
        if conn is None or not values:
            return
        rows = [(self.key(text), json.dumps(value)) for text, value in values.items()]
        try:
            conn.execute("BEGIN IMMEDIATE")  # one writer at a time, waiting up to the timeout
            try:
                conn.executemany("INSERT OR IGNORE INTO parses (key, value) VALUES (?, ?)", rows)
                conn.execute(
                    "DELETE FROM parses WHERE id <= (SELECT max(id) FROM parses) - ?",
                    (self.max_entries,),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as err:
            self._give_up(err)

    def entries(self) -> int:
        """How many values are stored (0 when the cache cannot be read)."""
        conn = self._connection()
        if conn is None:
            return 0
        (count,) = conn.execute("SELECT count(*) FROM parses").fetchone()
        return int(count)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> sqlite3.Connection | None:
        if self._conn is not None or self._broken:
            return self._conn
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            conn = self._open()
        except (OSError, sqlite3.Error) as err:
            self._give_up(err)
            return None
        self._conn = conn
        return conn

    def _open(self) -> sqlite3.Connection:
        # Switching a new file to WAL can answer "database is locked" at once, without the busy
        # timeout, while another run does the same: try again a few times before giving up.
        for attempt in range(_OPEN_ATTEMPTS):
            conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_SECONDS, isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")  # a cache: a lost write is a parse again
                conn.execute(_SCHEMA)
                return conn
            except sqlite3.OperationalError as err:
                conn.close()
                if "locked" not in str(err) or attempt == _OPEN_ATTEMPTS - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    def _give_up(self, err: Exception) -> None:
        log.warning("parse cache %s not used: %s", self.path, err)
        self.close()
        self._broken = True
