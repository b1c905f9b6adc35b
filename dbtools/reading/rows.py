"""The typed rows of PostgreSQL's statistics, as dbtools reads and stores them.

The field names are the column names of the ``perf_monitoring`` tables (without ``snapshot_id``;
a statement's ``query`` lives in ``statement_texts``, once per statement: ``stored_columns``):
the store (``store.Store``) keeps and loads them, ``reading.live`` reads them live.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar


@dataclass(frozen=True)
class SnapshotHeader:
    """One snapshot's header: where, when and by whom it was taken (``perf_monitoring.snapshots``).

    A live collection (not stored) has ``id`` and ``label`` None. ``requests`` is what a load tool
    reported (``--requests-served``), None otherwise.
    """

    id: int | None
    label: str | None
    taken_at: datetime
    database_name: str
    database_oid: int
    server_version_num: int
    server_started_at: datetime
    role_name: str
    pgss_version: str | None
    pgss_stats_reset: datetime | None
    pgss_dealloc: int | None
    alembic_revision: str | None
    requests: int | None
    hidden_statements: int
    hidden_calls: int
    # What decides what pg_stat_statements counts (None: a snapshot taken before revision 0004).
    counting_settings: dict[str, dict[str, str]] | None = None  # name: {value, source}
    counting_overrides: list[dict[str, str | None]] | None = None  # None: not readable
    toplevel_calls: int | None = None  # every top-level call counted in the database
    # Revision 0005 on (``store.compact``): the target the sample was read from, the collection
    # interval (None: a labelled snapshot), the period a rolled-up sample stands for, the
    # transaction ID table ages count from, and the sums a dashboard draws a point per sample
    # from (None in snapshots converted from older revisions where noted there).
    target: str | None = None
    interval_seconds: float | None = None
    rollup_seconds: float | None = None
    xid_now: int | None = None
    queries: int | None = None  # calls of top-level statements, transaction control left out
    shared_blks_hit: int | None = None  # of top-level statements
    shared_blks_read: int | None = None
    idx_blks_hit: int | None = None  # of the application's indexes
    idx_blks_read: int | None = None
    database_stats_reset: datetime | None = None


@dataclass(frozen=True)
class StatementRow:
    """One pg_stat_statements entry of the snapshotted database (``statement_stats``).

    Keyed on (dbid, userid, queryid, toplevel). ``toplevel`` is True on extension 1.8, which
    does not tell; ``stats_since`` is None before 1.11; ``min_exec_time``/``max_exec_time`` are
    None in snapshots taken before revision 0004. ``query`` is always scrubbed
    (``sqltext.scrub``): stored in ``statement_texts``, or scrubbed as it is read live.
    """

    userid: int
    rolname: str | None
    dbid: int
    queryid: int
    toplevel: bool
    query: str
    calls: int
    rows: int
    plans: int
    total_exec_time: float
    total_plan_time: float
    shared_blks_hit: int
    shared_blks_read: int
    shared_blks_dirtied: int
    shared_blks_written: int
    local_blks_hit: int
    local_blks_read: int
    temp_blks_read: int
    temp_blks_written: int
    shared_blk_read_time: float
    shared_blk_write_time: float
    wal_records: int
    wal_bytes: int
    stats_since: datetime | None
    min_exec_time: float | None
    max_exec_time: float | None


@dataclass(frozen=True)
class TableRow:
    """One user table: pg_stat_user_tables + pg_statio_user_tables + reloptions (``table_stats``)."""

    relid: int
    schemaname: str
    relname: str
    seq_scan: int
    seq_tup_read: int
    idx_scan: int
    idx_tup_fetch: int
    n_tup_ins: int
    n_tup_upd: int
    n_tup_del: int
    n_tup_hot_upd: int
    n_live_tup: int
    n_dead_tup: int
    n_mod_since_analyze: int
    last_vacuum: datetime | None
    last_autovacuum: datetime | None
    last_analyze: datetime | None
    last_autoanalyze: datetime | None
    vacuum_count: int
    autovacuum_count: int
    analyze_count: int
    autoanalyze_count: int
    heap_blks_read: int
    heap_blks_hit: int
    idx_blks_read: int
    idx_blks_hit: int
    reloptions: list[str] | None
    xid_age: int | None
    total_bytes: int | None
    frozen_xid: int | None = None  # pg_class.relfrozenxid (revision 0005 on)

    @property
    def options(self) -> dict[str, str]:
        """``reloptions`` as a mapping (``{'autovacuum_vacuum_scale_factor': '0.05'}``)."""
        return parse_reloptions(self.reloptions)


@dataclass(frozen=True)
class IndexRow:
    """One index on a user table: usage, I/O and pg_index state (``index_stats``).

    ``backs_constraint``: the index implements a primary key, unique or exclusion constraint, or
    a foreign key references it (it cannot simply be dropped).
    """

    indexrelid: int
    relid: int
    schemaname: str
    relname: str
    indexrelname: str
    idx_scan: int
    idx_tup_read: int
    idx_tup_fetch: int
    idx_blks_read: int
    idx_blks_hit: int
    is_valid: bool
    is_ready: bool
    is_unique: bool
    is_primary: bool
    backs_constraint: bool
    key_columns: list[str]
    include_columns: list[str]
    predicate: str | None
    access_method: str
    definition: str
    index_bytes: int | None


@dataclass(frozen=True)
class DatabaseRow:
    """pg_stat_database for the snapshotted database (``database_stats``)."""

    datid: int
    datname: str
    numbackends: int
    xact_commit: int
    xact_rollback: int
    blks_read: int
    blks_hit: int
    tup_returned: int
    tup_fetched: int
    tup_inserted: int
    tup_updated: int
    tup_deleted: int
    conflicts: int
    temp_files: int
    temp_bytes: int
    deadlocks: int
    blk_read_time: float
    blk_write_time: float
    stats_reset: datetime | None
    xid_age: int | None
    database_bytes: int | None
    sessions: int | None = None  # PostgreSQL 14+, and snapshots from revision 0004 on


@dataclass(frozen=True)
class Snapshot:
    """Everything one collection read: a header and the rows (stored, or live)."""

    header: SnapshotHeader
    statements: tuple[StatementRow, ...]
    tables: tuple[TableRow, ...]
    indexes: tuple[IndexRow, ...]
    database: DatabaseRow | None


Row = TypeVar("Row", StatementRow, TableRow, IndexRow, DatabaseRow)


def column_names(row_type: type[Any]) -> tuple[str, ...]:
    """The field names of a row dataclass, in order."""
    return tuple(f.name for f in dataclasses.fields(row_type))


# A statement's text is not a column of statement_stats: it is stored once, in statement_texts.
TEXT_COLUMN = "query"


def stored_columns(row_type: type[Any]) -> tuple[str, ...]:
    """The columns of the row type's monitoring table, in order (without snapshot_id)."""
    names = column_names(row_type)
    return tuple(n for n in names if not (row_type is StatementRow and n == TEXT_COLUMN))


def parse_reloptions(reloptions: list[str] | None) -> dict[str, str]:
    """``{'k=v', …}`` as ``{'k': 'v'}``."""
    return dict(option.split("=", 1) for option in reloptions or ())
