"""Collection: PostgreSQL's statistics as typed rows, read with a fixed number of queries.

What is read (whatever the number of statements, tables or indexes, always the same few
queries, never one per object):

* ``pg_stat_statements`` for the connected database, through one column adapter keyed on the
  *extension* version (1.8 to 1.12, PostgreSQL 13 to 18), plus ``pg_stat_statements_info``;
* ``pg_stat_database`` for the connected database;
* ``pg_stat_user_tables`` + ``pg_statio_user_tables`` + ``pg_class.reloptions``;
* ``pg_stat_user_indexes`` + ``pg_statio_user_indexes`` + ``pg_index`` validity;
* ``alembic_version``.

dbtools' own statements never count: every statement dbtools sends carries
``connection.SQL_MARKER`` and rows whose text holds it are left out. Rows the role may not see
(``<insufficient privilege>``, a NULL queryid) are counted in the header as ``hidden_statements``
and ``hidden_calls``, never as zero. Nothing here resets statistics.

The row dataclasses' field names are the column names of the ``perf_monitoring`` tables declared
in ``dbtools.objects`` (without ``snapshot_id``); ``dbtools.snapshots`` stores and loads them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.rows import class_row, dict_row

from dbtools.connection import SQL_MARKER
from dbtools.errors import PrerequisiteMissing
from dbtools.objects import MONITORING_SCHEMA
from dbtools.server import ServerInfo, inspect_server, require_pg_stat_statements

# -- typed rows -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SnapshotHeader:
    """One snapshot's header: where, when and by whom it was taken (``perf_monitoring.snapshots``).

    A live collection (not stored) has ``id`` and ``label`` None. ``requests`` is what a load tool
    reported (``--requests``), None otherwise.
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


@dataclass(frozen=True)
class StatementRow:
    """One pg_stat_statements entry of the snapshotted database (``statement_stats``).

    Keyed on (dbid, userid, queryid, toplevel). ``toplevel`` is True on extension 1.8, which
    does not tell; ``stats_since`` is None before 1.11.
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
    """The column names of a row dataclass, in order (the monitoring table's, minus snapshot_id)."""
    return tuple(f.name for f in dataclasses.fields(row_type))


def parse_reloptions(reloptions: list[str] | None) -> dict[str, str]:
    """``{'k=v', …}`` as ``{'k': 'v'}``."""
    return dict(option.split("=", 1) for option in reloptions or ())


# -- the pg_stat_statements column adapter ----------------------------------------------------

OLDEST_SUPPORTED = (1, 8)
NEWEST_KNOWN = (1, 12)


@dataclass(frozen=True)
class StatementColumns:
    """How one pg_stat_statements extension version spells what dbtools stores.

    The one place version differences live (see postgres-facts.md): 1.9 added ``toplevel`` and
    ``pg_stat_statements_info``; 1.11 renamed ``blk_read_time`` to ``shared_blk_read_time`` and
    added ``stats_since``.
    """

    version: tuple[int, int]
    schema: str

    @property
    def has_toplevel(self) -> bool:
        return self.version >= (1, 9)

    @property
    def has_info(self) -> bool:
        return self.version >= (1, 9)

    @property
    def has_stats_since(self) -> bool:
        return self.version >= (1, 11)

    def view(self, name: str = "pg_stat_statements") -> sql.Identifier:
        return sql.Identifier(self.schema, name)

    def expressions(self) -> dict[str, sql.Composable]:
        """The SQL expression (over ``s``, the view) for each ``StatementRow`` column."""
        renamed = self.version >= (1, 11)
        special: dict[str, sql.Composable] = {
            "rolname": sql.SQL("r.rolname::text"),
            "toplevel": sql.SQL("s.toplevel" if self.has_toplevel else "true"),
            "wal_bytes": sql.SQL("s.wal_bytes::bigint"),
            "shared_blk_read_time": sql.SQL(
                "s.shared_blk_read_time" if renamed else "s.blk_read_time"
            ),
            "shared_blk_write_time": sql.SQL(
                "s.shared_blk_write_time" if renamed else "s.blk_write_time"
            ),
            "stats_since": sql.SQL(
                "s.stats_since" if self.has_stats_since else "NULL::timestamptz"
            ),
        }
        return {
            name: special.get(name, sql.SQL("s.") + sql.Identifier(name))
            for name in column_names(StatementRow)
        }

    def info_expressions(self) -> tuple[sql.Composable, sql.Composable]:
        """``pg_stat_statements_info.stats_reset`` and ``dealloc`` (NULL before 1.9)."""
        if not self.has_info:
            return sql.SQL("NULL::timestamptz"), sql.SQL("NULL::bigint")
        info = self.view("pg_stat_statements_info")
        return (
            sql.SQL("(SELECT stats_reset FROM {})").format(info),
            sql.SQL("(SELECT dealloc FROM {})").format(info),
        )


def parse_version(text: str) -> tuple[int, int]:
    """``'1.10'`` as ``(1, 10)``."""
    major, _, minor = text.partition(".")
    try:
        return int(major), int(minor or 0)
    except ValueError as err:
        raise PrerequisiteMissing(f"unrecognised pg_stat_statements version {text!r}") from err


def statement_columns(info: ServerInfo) -> StatementColumns:
    """The adapter for the server's pg_stat_statements; raises ``PrerequisiteMissing`` when it is
    not loaded, not created, or older than 1.8. Versions newer than 1.12 read as 1.12."""
    require_pg_stat_statements(info)
    assert info.pgss_version is not None and info.pgss_schema is not None
    version = parse_version(info.pgss_version)
    if version < OLDEST_SUPPORTED:
        raise PrerequisiteMissing(
            f"pg_stat_statements {info.pgss_version} is too old: dbtools needs 1.8 or newer "
            "(PostgreSQL 13+); run: ALTER EXTENSION pg_stat_statements UPDATE"
        )
    return StatementColumns(min(version, NEWEST_KNOWN), info.pgss_schema)


# -- SQL --------------------------------------------------------------------------------------

# The foreign-key checks and cascades PostgreSQL runs when dbtools stores or deletes snapshot rows
# are nested statements without the marker; their text always reads `… ONLY "schema"."table" …`.
RI_MARKER = f'ONLY "{MONITORING_SCHEMA}".'

# Every statement carries SQL_MARKER right after its first keyword (pg_stat_statements keeps
# comments in the text it stores). %(marker)s is always SQL_MARKER, %(ri_marker)s RI_MARKER.

_STATEMENTS_SQL = """
SELECT {marker} {columns}
FROM {view} s LEFT JOIN pg_catalog.pg_roles r ON r.oid = s.userid
WHERE s.dbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
  AND (s.queryid IS NULL OR (strpos(s.query, %(marker)s) = 0 AND strpos(s.query, %(ri_marker)s) = 0))
"""

_HEADER_SQL = """
SELECT {marker} now() AS taken_at,
       current_database()::text AS database_name,
       d.oid::bigint AS database_oid,
       current_setting('server_version_num')::int AS server_version_num,
       pg_postmaster_start_time() AS server_started_at,
       current_user::text AS role_name,
       %(pgss_version)s::text AS pgss_version,
       {stats_reset} AS pgss_stats_reset,
       {dealloc} AS pgss_dealloc
FROM pg_catalog.pg_database d WHERE d.datname = current_database()
"""

TABLES_SQL = f"""
SELECT {SQL_MARKER} s.relid::bigint AS relid, s.schemaname::text AS schemaname,
       s.relname::text AS relname,
       coalesce(s.seq_scan, 0) AS seq_scan, coalesce(s.seq_tup_read, 0) AS seq_tup_read,
       coalesce(s.idx_scan, 0) AS idx_scan, coalesce(s.idx_tup_fetch, 0) AS idx_tup_fetch,
       s.n_tup_ins, s.n_tup_upd, s.n_tup_del, s.n_tup_hot_upd, s.n_live_tup, s.n_dead_tup,
       s.n_mod_since_analyze, s.last_vacuum, s.last_autovacuum, s.last_analyze,
       s.last_autoanalyze, s.vacuum_count, s.autovacuum_count, s.analyze_count,
       s.autoanalyze_count,
       coalesce(io.heap_blks_read, 0) AS heap_blks_read,
       coalesce(io.heap_blks_hit, 0) AS heap_blks_hit,
       coalesce(io.idx_blks_read, 0) AS idx_blks_read,
       coalesce(io.idx_blks_hit, 0) AS idx_blks_hit,
       c.reloptions::text[] AS reloptions,
       CASE WHEN c.relkind IN ('r', 'm', 't') THEN age(c.relfrozenxid)::bigint END AS xid_age,
       pg_total_relation_size(s.relid) AS total_bytes
FROM pg_catalog.pg_stat_user_tables s
JOIN pg_catalog.pg_statio_user_tables io ON io.relid = s.relid
JOIN pg_catalog.pg_class c ON c.oid = s.relid
"""

INDEXES_SQL = f"""
SELECT {SQL_MARKER} s.indexrelid::bigint AS indexrelid, s.relid::bigint AS relid,
       s.schemaname::text AS schemaname, s.relname::text AS relname,
       s.indexrelname::text AS indexrelname,
       coalesce(s.idx_scan, 0) AS idx_scan, coalesce(s.idx_tup_read, 0) AS idx_tup_read,
       coalesce(s.idx_tup_fetch, 0) AS idx_tup_fetch,
       coalesce(io.idx_blks_read, 0) AS idx_blks_read,
       coalesce(io.idx_blks_hit, 0) AS idx_blks_hit,
       i.indisvalid AS is_valid, i.indisready AS is_ready, i.indisunique AS is_unique,
       i.indisprimary AS is_primary,
       EXISTS (SELECT FROM pg_catalog.pg_constraint k
               WHERE k.conindid = s.indexrelid AND k.contype IN ('p', 'u', 'x', 'f'))
           AS backs_constraint,
       ARRAY(SELECT pg_get_indexdef(s.indexrelid, k, true)
             FROM generate_series(1, i.indnkeyatts) k) AS key_columns,
       ARRAY(SELECT pg_get_indexdef(s.indexrelid, k, true)
             FROM generate_series(i.indnkeyatts + 1, i.indnatts) k) AS include_columns,
       pg_get_expr(i.indpred, i.indrelid, true) AS predicate,
       am.amname::text AS access_method,
       pg_get_indexdef(s.indexrelid) AS definition,
       pg_relation_size(s.indexrelid) AS index_bytes
FROM pg_catalog.pg_stat_user_indexes s
JOIN pg_catalog.pg_statio_user_indexes io ON io.indexrelid = s.indexrelid
JOIN pg_catalog.pg_index i ON i.indexrelid = s.indexrelid
JOIN pg_catalog.pg_class c ON c.oid = s.indexrelid
JOIN pg_catalog.pg_am am ON am.oid = c.relam
"""

DATABASE_SQL = f"""
SELECT {SQL_MARKER} d.datid::bigint AS datid, d.datname::text AS datname,
       d.numbackends::bigint AS numbackends, d.xact_commit, d.xact_rollback,
       d.blks_read, d.blks_hit, d.tup_returned, d.tup_fetched, d.tup_inserted, d.tup_updated,
       d.tup_deleted, d.conflicts, d.temp_files, d.temp_bytes, d.deadlocks,
       d.blk_read_time, d.blk_write_time, d.stats_reset,
       age(db.datfrozenxid)::bigint AS xid_age,
       pg_database_size(d.datid) AS database_bytes
FROM pg_catalog.pg_stat_database d
JOIN pg_catalog.pg_database db ON db.oid = d.datid
WHERE d.datname = current_database()
"""

ALEMBIC_REVISION_SQL = f"""
SELECT {SQL_MARKER} string_agg(version_num, ',' ORDER BY version_num) AS revision
FROM public.alembic_version
"""


def statements_sql(columns: StatementColumns) -> sql.Composed:
    """pg_stat_statements rows of the current database, dbtools' own left out; hidden rows
    (NULL queryid) included so they can be counted."""
    expressions = columns.expressions()
    return sql.SQL(_STATEMENTS_SQL).format(
        marker=sql.SQL(SQL_MARKER),
        columns=sql.SQL(", ").join(
            sql.SQL("{} AS {}").format(expr, sql.Identifier(name))
            for name, expr in expressions.items()
        ),
        view=columns.view(),
    )


def header_sql(columns: StatementColumns) -> sql.Composed:
    """The header's server facts (``%(pgss_version)s`` is a parameter)."""
    stats_reset, dealloc = columns.info_expressions()
    return sql.SQL(_HEADER_SQL).format(
        marker=sql.SQL(SQL_MARKER), stats_reset=stats_reset, dealloc=dealloc
    )


# -- collection -------------------------------------------------------------------------------


def prepare(conn: psycopg.Connection[Any]) -> tuple[ServerInfo, StatementColumns]:
    """Inspect the server and pick the column adapter (raises ``PrerequisiteMissing``)."""
    info = inspect_server(conn)
    return info, statement_columns(info)


def read_alembic_revision(conn: psycopg.Connection[Any], info: ServerInfo) -> str | None:
    """The database's Alembic revision(s), comma-separated; None when it was never migrated."""
    if not info.has_alembic_version:
        return None
    row = conn.execute(ALEMBIC_REVISION_SQL).fetchone()
    return None if row is None else row[0]


def collect(conn: psycopg.Connection[Any]) -> Snapshot:
    """Read the live statistics of the connected database (seven queries, whatever its size).

    Best run on an autocommit, read-only session (``connection.connect(autocommit=True)``) so
    that dbtools sends no transaction-control statements. Raises ``PrerequisiteMissing`` when
    pg_stat_statements is missing or too old.
    """
    info, columns = prepare(conn)
    revision = read_alembic_revision(conn, info)
    params = {"marker": SQL_MARKER, "ri_marker": RI_MARKER, "pgss_version": info.pgss_version}
    with conn.cursor(row_factory=dict_row) as cur:
        facts = cur.execute(header_sql(columns), params).fetchone()
    assert facts is not None
    visible, hidden_statements, hidden_calls = _fetch_statements(conn, columns, params)
    header = SnapshotHeader(
        id=None,
        label=None,
        **facts,
        alembic_revision=revision,
        requests=None,
        hidden_statements=hidden_statements,
        hidden_calls=hidden_calls,
    )
    databases = _fetch(conn, sql.SQL(DATABASE_SQL), DatabaseRow)
    return Snapshot(
        header=header,
        statements=visible,
        tables=_fetch(conn, sql.SQL(TABLES_SQL), TableRow),
        indexes=_fetch(conn, sql.SQL(INDEXES_SQL), IndexRow),
        database=databases[0] if databases else None,
    )


def _fetch_statements(
    conn: psycopg.Connection[Any], columns: StatementColumns, params: dict[str, Any]
) -> tuple[tuple[StatementRow, ...], int, int]:
    """Visible rows, and the number and calls of the rows the role may not see."""
    names = column_names(StatementRow)
    queryid, calls = names.index("queryid"), names.index("calls")
    visible: list[StatementRow] = []
    hidden_statements = hidden_calls = 0
    for values in conn.execute(statements_sql(columns), params):
        if values[queryid] is None:
            hidden_statements += 1
            hidden_calls += values[calls]
        else:
            visible.append(StatementRow(*values))
    return tuple(visible), hidden_statements, hidden_calls


def _fetch(
    conn: psycopg.Connection[Any],
    query: sql.SQL | sql.Composed,
    row_type: type[Row],
    params: dict[str, Any] | None = None,
) -> tuple[Row, ...]:
    with conn.cursor(row_factory=class_row(row_type)) as cur:
        return tuple(cur.execute(query, params).fetchall())


# -- named objects ------------------------------------------------------------------------------

OBJECTS_SQL = f"""
SELECT {SQL_MARKER} n.nspname::text AS schema, c.relname::text AS name, c.relkind::text AS kind,
       i.indisvalid AS is_valid, i.indisready AS is_ready, c.reloptions::text[] AS reloptions
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid
WHERE (n.nspname, c.relname) IN (
    SELECT schema, name FROM unnest(%(schemas)s::text[], %(names)s::text[]) AS t(schema, name))
"""


@dataclass(frozen=True)
class ObjectRow:
    """A named relation as the catalog has it now (``is_valid``/``is_ready`` for indexes)."""

    schema: str
    name: str
    kind: str
    is_valid: bool | None
    is_ready: bool | None
    reloptions: list[str] | None

    @property
    def qualified_name(self) -> str:
        return f"{self.schema}.{self.name}"


def read_objects(
    conn: psycopg.Connection[Any], names: list[tuple[str, str]]
) -> dict[str, ObjectRow]:
    """The relations among *names* ((schema, name) pairs) that exist, by ``schema.name``
    (one query, whatever their number)."""
    params = {"schemas": [s for s, _ in names], "names": [n for _, n in names]}
    with conn.cursor(row_factory=class_row(ObjectRow)) as cur:
        rows = cur.execute(OBJECTS_SQL, params).fetchall()
    return {row.qualified_name: row for row in rows}
