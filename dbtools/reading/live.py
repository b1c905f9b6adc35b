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
and ``hidden_calls``, never as zero. Query texts are scrubbed (``sqltext.scrub``) before anything
else sees them. Nothing here resets statistics.

The header also records what decides what pg_stat_statements counts (``counting_settings``,
``counting_overrides``) and every top-level call it counted in the database
(``toplevel_calls``): ``figures.counting`` judges a window by them.

The row dataclasses' field names are the column names of the ``perf_monitoring`` tables
(without ``snapshot_id``; texts in ``statement_texts``); ``dbtools.store.snapshots`` stores and
loads them.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import psycopg
from psycopg import sql
from psycopg.pq import Format
from psycopg.rows import class_row, dict_row

from dbtools.db.catalog import read_alembic_revision
from dbtools.db.connection import SQL_MARKER
from dbtools.db.server import ServerInfo, inspect_server
from dbtools.reading.columns import StatementColumns, statement_columns
from dbtools.reading.rows import (
    DatabaseRow,
    IndexRow,
    Row,
    Snapshot,
    SnapshotHeader,
    StatementRow,
    TableRow,
    column_names,
    stored_columns,
)
from dbtools.schema.monitoring import MONITORING_SCHEMA, STATEMENT_TEXTS
from dbtools.sqltext.scrub import scrub_query

# -- SQL --------------------------------------------------------------------------------------

# The foreign-key checks and cascades PostgreSQL runs when dbtools stores or deletes snapshot rows
# are nested statements without the marker; their text always reads `… ONLY "schema"."table" …`.
RI_MARKER = f'ONLY "{MONITORING_SCHEMA}".'

# Every statement carries SQL_MARKER right after its first keyword (pg_stat_statements keeps
# comments in the text it stores). %(marker)s is always SQL_MARKER, %(ri_marker)s RI_MARKER.

_OWN = "strpos(s.query, %(marker)s) = 0 AND strpos(s.query, %(ri_marker)s) = 0"
_CURRENT_DATABASE = (
    "s.dbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())"
)

_STATEMENTS_SQL = f"""
SELECT {{marker}} {{columns}}
FROM {{view}} s LEFT JOIN pg_catalog.pg_roles r ON r.oid = s.userid
WHERE {_CURRENT_DATABASE} AND (s.queryid IS NULL OR ({_OWN}))
"""

# The texts of the entries whose text is not stored yet: the only texts a snapshot reads
# ({unstored}: empty before revision 0004, where every row stores its own).
_NEW_TEXTS_SQL = f"""
SELECT {{marker}} DISTINCT ON (s.dbid, s.queryid) s.dbid::bigint, s.queryid, s.query
FROM {{view}} s
WHERE {_CURRENT_DATABASE} AND s.queryid IS NOT NULL AND {_OWN} {{unstored}}
ORDER BY s.dbid, s.queryid, s.toplevel DESC, s.userid
"""
_UNSTORED = "AND NOT EXISTS (SELECT FROM {texts} t WHERE t.dbid = s.dbid AND t.queryid = s.queryid)"

# What decides what pg_stat_statements counts (and how often autovacuum visits: its
# transactions are committed without a statement), with where each value comes from.
_COUNTING_SETTINGS = """(
    SELECT jsonb_object_agg(name, jsonb_build_object('value', setting, 'source', source))
    FROM pg_catalog.pg_settings
    WHERE name IN ('pg_stat_statements.track', 'pg_stat_statements.track_utility',
                   'autovacuum_naptime'))"""

# The per-role and per-database pg_stat_statements settings that apply in this database
# (role or database NULL: all of them). Other settings are never read: they may hold secrets.
_COUNTING_OVERRIDES = """(
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'role', r.rolname::text, 'database', db.datname::text,
               'setting', split_part(c.setting, '=', 1),
               'value', substr(c.setting, strpos(c.setting, '=') + 1))
           ORDER BY r.rolname NULLS FIRST, db.datname NULLS FIRST, c.setting), '[]'::jsonb)
    FROM pg_catalog.pg_db_role_setting o
    LEFT JOIN pg_catalog.pg_roles r ON r.oid = o.setrole
    LEFT JOIN pg_catalog.pg_database db ON db.oid = o.setdatabase
    CROSS JOIN LATERAL unnest(o.setconfig) AS c(setting)
    WHERE o.setdatabase IN (0, d.oid) AND c.setting LIKE 'pg\\_stat\\_statements.%%')"""

_HEADER_SQL = """
SELECT {marker} now() AS taken_at,
       current_database()::text AS database_name,
       d.oid::bigint AS database_oid,
       current_setting('server_version_num')::int AS server_version_num,
       pg_postmaster_start_time() AS server_started_at,
       current_user::text AS role_name,
       %(pgss_version)s::text AS pgss_version,
       {stats_reset} AS pgss_stats_reset,
       {dealloc} AS pgss_dealloc,
       {counting_settings} AS counting_settings,
       {counting_overrides} AS counting_overrides,
       {toplevel_calls} AS toplevel_calls
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
       pg_total_relation_size(s.relid) AS total_bytes,
       CASE WHEN c.relkind IN ('r', 'm', 't') THEN c.relfrozenxid::text::bigint END AS frozen_xid
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
       pg_database_size(d.datid) AS database_bytes,
       -- sessions exists from PostgreSQL 14 on: read by name, NULL before
       (to_jsonb(d) ->> 'sessions')::bigint AS sessions
FROM pg_catalog.pg_stat_database d
JOIN pg_catalog.pg_database db ON db.oid = d.datid
WHERE d.datname = current_database()
"""


_CATALOG_QUERIES = (DATABASE_SQL, TABLES_SQL, INDEXES_SQL)


def statements_sql(columns: StatementColumns, *, with_text: bool = True) -> sql.Composed:
    """pg_stat_statements rows of the current database, dbtools' own left out; hidden rows
    (NULL queryid) included so they can be counted. Without text: the columns
    ``statement_stats`` stores."""
    expressions = columns.expressions()
    names = column_names(StatementRow) if with_text else stored_columns(StatementRow)
    return sql.SQL(_STATEMENTS_SQL).format(
        marker=sql.SQL(SQL_MARKER),
        columns=sql.SQL(", ").join(
            sql.SQL("{} AS {}").format(expressions[name], sql.Identifier(name)) for name in names
        ),
        view=columns.view(),
    )


def new_texts_sql(columns: StatementColumns, *, only_unstored: bool = True) -> sql.Composed:
    """(dbid, queryid, raw text) of the current database's entries whose text
    ``statement_texts`` does not hold yet (*only_unstored* False: of every entry), one per
    statement, dbtools' own left out."""
    texts = sql.Identifier(MONITORING_SCHEMA, STATEMENT_TEXTS)
    return sql.SQL(_NEW_TEXTS_SQL).format(
        marker=sql.SQL(SQL_MARKER),
        view=columns.view(),
        unstored=sql.SQL(_UNSTORED).format(texts=texts) if only_unstored else sql.SQL(""),
    )


_UNSTORED_SQL = """
SELECT {marker} s.dbid, s.userid, s.queryid, {toplevel} AS toplevel, {columns}
FROM {view} s
WHERE s.dbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
  AND s.queryid IS NOT NULL AND strpos(s.query, %(marker)s) = 0
"""


def read_unstored(
    conn: psycopg.Connection[Any], columns: StatementColumns
) -> dict[tuple[int, int, int, bool], dict[str, Any]]:
    """The pg_stat_statements columns snapshots do not store (``columns.UNSTORED_COLUMNS``), live,
    by (dbid, userid, queryid, toplevel): totals since each entry started counting (one query)."""
    expressions = columns.unstored_expressions()
    query = sql.SQL(_UNSTORED_SQL).format(
        marker=sql.SQL(SQL_MARKER),
        toplevel=sql.SQL("s.toplevel" if columns.has_toplevel else "true"),
        columns=sql.SQL(", ").join(
            sql.SQL("{} AS {}").format(expr, sql.Identifier(name))
            for name, expr in expressions.items()
        ),
        view=columns.view(),
    )
    found = {}
    with conn.cursor(row_factory=dict_row) as cur:
        for row in cur.execute(query, {"marker": SQL_MARKER}):
            key = (row.pop("dbid"), row.pop("userid"), row.pop("queryid"), row.pop("toplevel"))
            found[key] = row
    return found


COUNTING_OVERRIDES_SQL = (
    f"SELECT {SQL_MARKER} {_COUNTING_OVERRIDES} "
    "FROM pg_catalog.pg_database d WHERE d.datname = current_database()"
)


def read_counting_overrides(conn: psycopg.Connection[Any]) -> list[dict[str, str | None]]:
    """The per-role and per-database ``pg_stat_statements.*`` settings that apply in the
    connected database, as a snapshot records them (``counting_overrides``; one query)."""
    row = conn.execute(COUNTING_OVERRIDES_SQL, {}).fetchone()  # {}: %% reads as %
    return list(row[0]) if row and row[0] is not None else []


def header_sql(
    columns: StatementColumns, info: ServerInfo, *, toplevel_calls: bool = True
) -> sql.Composed:
    """The header's server facts (``%(pgss_version)s`` is a parameter). The per-role and
    per-database settings are NULL when the role cannot read ``pg_db_role_setting``. Without
    *toplevel_calls* that sum is NULL: a sample counts it from the entries it reads (no second
    scan of pg_stat_statements)."""
    stats_reset, dealloc = columns.info_expressions()
    return sql.SQL(_HEADER_SQL).format(
        marker=sql.SQL(SQL_MARKER),
        stats_reset=stats_reset,
        dealloc=dealloc,
        counting_settings=sql.SQL(_COUNTING_SETTINGS),
        counting_overrides=sql.SQL(
            _COUNTING_OVERRIDES if info.reads_role_settings else "NULL::jsonb"
        ),
        toplevel_calls=(
            columns.toplevel_calls(sql.SQL("d.oid")) if toplevel_calls else sql.SQL("NULL::bigint")
        ),
    )


# -- reading -------------------------------------------------------------------------------


def prepare(conn: psycopg.Connection[Any]) -> tuple[ServerInfo, StatementColumns]:
    """Inspect the server and pick the column adapter (raises ``PrerequisiteMissing``)."""
    info = inspect_server(conn)
    return info, statement_columns(info)


def read_live(conn: psycopg.Connection[Any]) -> Snapshot:
    """Read the live statistics of the connected database (seven queries, whatever its size);
    query texts scrubbed.

    Best run on an autocommit, read-only session (``connection.connect(autocommit=True)``) so
    that dbtools sends no transaction-control statements. Raises ``PrerequisiteMissing`` when
    pg_stat_statements is missing or too old.
    """
    info, columns = prepare(conn)
    revision = read_alembic_revision(conn, table_exists=info.has_alembic_version)
    params = {"marker": SQL_MARKER, "ri_marker": RI_MARKER, "pgss_version": info.pgss_version}
    with conn.cursor(row_factory=dict_row) as cur:
        facts = cur.execute(header_sql(columns, info), params).fetchone()
    assert facts is not None
    visible, hidden_statements, hidden_calls = _fetch_statements(conn, columns, params)
    header = unlabelled_header(facts, revision, hidden_statements, hidden_calls)
    databases = _fetch(conn, sql.SQL(DATABASE_SQL), DatabaseRow)
    return Snapshot(
        header=header,
        statements=visible,
        tables=_fetch(conn, sql.SQL(TABLES_SQL), TableRow),
        indexes=_fetch(conn, sql.SQL(INDEXES_SQL), IndexRow),
        database=databases[0] if databases else None,
    )


def probe_reading(conn: psycopg.Connection[Any]) -> None:
    """Run every query ``read_live`` (and a snapshot) runs, wrapped to return no rows: proof that
    the connected role may read every statistics view and function they use (``doctor``).

    Raises the server's error for the first one it may not read, ``PrerequisiteMissing`` when
    pg_stat_statements is missing.
    """
    info, columns = prepare(conn)
    params = {"marker": SQL_MARKER, "ri_marker": RI_MARKER, "pgss_version": None}
    queries = (header_sql(columns, info), statements_sql(columns), *map(sql.SQL, _CATALOG_QUERIES))
    for query in queries:
        conn.execute(
            sql.SQL("SELECT {marker} FROM ({query}) AS probe LIMIT 0").format(
                marker=sql.SQL(SQL_MARKER), query=query
            ),
            params,
        )


def read_statements(
    conn: psycopg.Connection[Any], columns: StatementColumns
) -> tuple[tuple[StatementRow, ...], int, int]:
    """The connected database's pg_stat_statements entries alone (one query; dbtools' own left
    out, texts scrubbed), and the number and calls of the entries the role may not see."""
    return _fetch_statements(conn, columns, {"marker": SQL_MARKER, "ri_marker": RI_MARKER})


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
            row = StatementRow(*values)
            visible.append(dataclasses.replace(row, query=scrub_query(row.query)))
    return tuple(visible), hidden_statements, hidden_calls


def _fetch(
    conn: psycopg.Connection[Any],
    query: sql.SQL | sql.Composed,
    row_type: type[Row],
    params: dict[str, Any] | None = None,
) -> tuple[Row, ...]:
    with conn.cursor(row_factory=class_row(row_type)) as cur:
        return tuple(cur.execute(query, params).fetchall())


# -- samples: what ``dbtools collect`` and a snapshot read ---------------------------------------

# Every entry of the databases %(dbids)s, one scan of the server's pg_stat_statements whatever
# their number (the view's function with ``showtext => false``: the texts file is not read);
# ``now()`` is when the counters were read, as text: decoded once, not once per entry.
_COUNTERS_SQL = """
SELECT {marker} now()::text, {columns}
FROM {view}(false) s LEFT JOIN pg_catalog.pg_roles r ON r.oid = s.userid
WHERE s.dbid = ANY(%(dbids)s::oid[])
"""

# The texts of the statements *queryids* (one per statement): the only texts a sample reads.
_TEXTS_SQL = f"""
SELECT {{marker}} DISTINCT ON (s.queryid) s.queryid, s.query
FROM {{view}} s
WHERE {_CURRENT_DATABASE} AND s.queryid = ANY(%(queryids)s)
ORDER BY s.queryid, s.toplevel DESC, s.userid
"""

_DATABASE_OID_SQL = f"SELECT {SQL_MARKER} oid::bigint FROM pg_catalog.pg_database WHERE datname = current_database()"


@functools.cache
def counters_sql(columns: StatementColumns) -> sql.SQL:
    """Every pg_stat_statements entry of the databases ``%(dbids)s``, without its text, hidden
    rows included: the read time (text), then ``stored_columns(StatementRow)``. Composed once
    per extension version (a scan a sample)."""
    expressions = columns.expressions()
    return sql.SQL(
        sql.SQL(_COUNTERS_SQL)
        .format(
            marker=sql.SQL(SQL_MARKER),
            columns=sql.SQL(", ").join(
                sql.SQL("{} AS {}").format(expressions[name], sql.Identifier(name))
                for name in stored_columns(StatementRow)
            ),
            view=columns.view(),
        )
        .as_string()
    )


def texts_sql(columns: StatementColumns) -> sql.Composed:
    return sql.SQL(_TEXTS_SQL).format(marker=sql.SQL(SQL_MARKER), view=columns.view())


def database_oid(conn: psycopg.Connection[Any]) -> int:
    """The connected database's OID (what pg_stat_statements calls its ``dbid``)."""
    row = conn.execute(_DATABASE_OID_SQL).fetchone()
    assert row is not None
    return int(row[0])


def is_own(text: str) -> bool:
    """Whether a raw pg_stat_statements text is dbtools' own statement (its marker, or a
    foreign-key check PostgreSQL ran for it)."""
    return SQL_MARKER in text or RI_MARKER in text


# A statement's text belongs to (dbid, queryid), packed in one int (``text_key``): a target's
# state holds thousands of them, and a set of ints is a third the size of a set of pairs.
StatementKey = int
_U64 = (1 << 64) - 1


def text_key(dbid: int, queryid: int) -> StatementKey:
    return dbid << 64 | (queryid & _U64)


def text_key_parts(key: StatementKey) -> tuple[int, int]:
    """(dbid, queryid) of a ``text_key``."""
    queryid = key & _U64
    return key >> 64, queryid - (1 << 64) if queryid >> 63 else queryid


# Where the values of a counters row are (``stored_columns(StatementRow)`` order).
_STATEMENT_COLUMNS = stored_columns(StatementRow)
_DBID, _QUERYID = _STATEMENT_COLUMNS.index("dbid"), _STATEMENT_COLUMNS.index("queryid")
_CALLS, _TOPLEVEL = _STATEMENT_COLUMNS.index("calls"), _STATEMENT_COLUMNS.index("toplevel")


class Summarised(Protocol):
    """Takes the entries of one database as a scan streams them (``scan_counters``): the
    ones it ``summarises`` (the store's unmoved entries: their keys and sums) are not kept
    as value tuples."""

    def summarises(self, values: tuple[Any, ...]) -> bool: ...

    @property
    def count(self) -> int: ...


@dataclass
class DatabaseEntries:
    """One database's pg_stat_statements entries from a scan: the header's sums over every
    entry (hidden rows and dbtools' own included), the visible entries kept whole (text-less
    value tuples in ``stored_columns(StatementRow)`` order) and, with *summary*, the ones it
    took instead."""

    rows: list[tuple[Any, ...]] = field(default_factory=list)
    summary: Summarised | None = None
    toplevel_calls: int = 0
    hidden_statements: int = 0
    hidden_calls: int = 0

    def add(self, values: tuple[Any, ...]) -> None:
        if values[_TOPLEVEL]:
            self.toplevel_calls += values[_CALLS]
        if values[_QUERYID] is None:
            self.hidden_statements += 1
            self.hidden_calls += values[_CALLS]
        elif self.summary is None or not self.summary.summarises(values):
            self.rows.append(values)


@dataclass(frozen=True)
class Counters:
    """One scan's pg_stat_statements entries by database, and when they were read."""

    taken_at: datetime
    by_database: dict[int, DatabaseEntries]


# Rows a scan takes from the server at a time (libpq 17+: chunked rows; older: one by one): a
# scan of a whole server's entries is never held whole, on either side of the driver.
SCAN_BATCH_ROWS = 1000


def scan_counters(
    conn: psycopg.Connection[Any],
    columns: StatementColumns,
    dbids: Iterable[int],
    summaries: Mapping[int, Summarised] | None = None,
) -> Counters:
    """The entries of the databases *dbids* of the connected server, one scan of its
    pg_stat_statements (whichever database *conn* is in: the view shows the server's),
    streamed: each entry goes to its database's ``DatabaseEntries`` as it arrives, and those
    its database's *summaries* takes are not kept."""
    wanted = sorted(set(dbids))
    summaries = summaries or {}
    by_database = {dbid: DatabaseEntries(summary=summaries.get(dbid)) for dbid in wanted}
    read_at = None
    batch = SCAN_BATCH_ROWS if psycopg.pq.version() >= 170000 else 1
    with conn.cursor() as cur:
        # binary: the driver's C loaders read int8 and float8 cheaper than their text (the same
        # values; the read time stays text, a text column reads the same in either format)
        rows = cur.stream(counters_sql(columns), {"dbids": wanted}, binary=True, size=batch)
        for values in rows:
            read_at = values[0]
            entry = values[1:]
            by_database[entry[_DBID]].add(entry)
    if read_at is None:  # no entry at all: the time still counts
        taken_at = conn.execute(f"SELECT {SQL_MARKER} now()").fetchone()[0]  # type: ignore[index]
    else:  # as the driver reads a timestamptz
        loader = conn.adapters.get_loader(conn.adapters.types["timestamptz"].oid, Format.TEXT)
        assert loader is not None
        taken_at = loader(0, conn).load(read_at.encode())
    return Counters(taken_at, by_database)


@dataclass(frozen=True)
class SampleRead:
    """What one sample read of a database: its header (``toplevel_calls`` counted from the
    entries read), its statements as text-less value tuples (``stored_columns(StatementRow)``
    order, dbtools' own and hidden ones left out: building thousands of row objects costs
    more than the sample), its tables, indexes and database row; the scrubbed texts of the
    statements whose text was not known yet; and which of those were dbtools' own (never
    stored)."""

    header: SnapshotHeader
    statements: tuple[tuple[Any, ...], ...]
    tables: tuple[TableRow, ...]
    indexes: tuple[IndexRow, ...]
    database: DatabaseRow | None
    texts: dict[StatementKey, str]
    own: frozenset[StatementKey]
    # the statements a streamed scan summarised (unmoved since the state it compared with)
    summary: Summarised | None = None

    @property
    def statement_count(self) -> int:
        return len(self.statements) + (self.summary.count if self.summary is not None else 0)

    @property
    def snapshot(self) -> Snapshot:
        """The read as a snapshot (statements without their text: ``query`` is empty); only
        of a read that kept every statement whole."""
        assert self.summary is None, "a summarised read is no snapshot"
        statements = tuple(
            StatementRow(**dict(zip(_STATEMENT_COLUMNS, values, strict=True)), query="")
            for values in self.statements
        )
        return Snapshot(self.header, statements, self.tables, self.indexes, self.database)


def unlabelled_header(
    facts: dict[str, Any], revision: str | None, hidden_statements: int, hidden_calls: int
) -> SnapshotHeader:
    """The header of a read (``header_sql``'s *facts*): no id or label until it is stored."""
    return SnapshotHeader(
        id=None,
        label=None,
        **facts,
        alembic_revision=revision,
        requests=None,
        hidden_statements=hidden_statements,
        hidden_calls=hidden_calls,
    )


def read_sample(
    conn: psycopg.Connection[Any],
    info: ServerInfo,
    columns: StatementColumns,
    known: Container[StatementKey] = frozenset(),
    own: Container[StatementKey] = frozenset(),
    counters: Counters | None = None,
) -> SampleRead:
    """Read the connected database's statistics (an autocommit session: dbtools sends no
    BEGIN or COMMIT, which PostgreSQL 16+ would count in the application's own entry),
    reading texts only of the statements neither *known* (texts already stored) nor *own*
    (dbtools' statements met before).

    *counters*: the server's entries already read by one scan (this database's among them;
    ``scan_counters``); else this database's are scanned here. The statements its
    ``DatabaseEntries`` summarised are known (their texts stored, none of dbtools' own). The
    sample is taken when its entries were read (``taken_at``). A statement whose text could not
    be read (evicted in between) is left out of this sample; the next sample asks again.
    """
    params = {"marker": SQL_MARKER, "ri_marker": RI_MARKER, "pgss_version": info.pgss_version}
    with conn.cursor(row_factory=dict_row) as cur:
        facts = cur.execute(header_sql(columns, info, toplevel_calls=False), params).fetchone()
    assert facts is not None
    dbid = facts["database_oid"]
    if counters is None or dbid not in counters.by_database:
        counters = scan_counters(conn, columns, [dbid])
    revision = read_alembic_revision(conn, table_exists=info.has_alembic_version)
    entries = counters.by_database[dbid]
    found = entries.rows
    asked = {
        key
        for values in found
        if (key := text_key(dbid, values[_QUERYID])) not in known and key not in own
    }
    texts: dict[StatementKey, str] = {}
    mine: set[StatementKey] = set()
    if asked:
        queryids = [text_key_parts(key)[1] for key in asked]
        for query_id, text in conn.execute(texts_sql(columns), {"queryids": queryids}):
            key = text_key(dbid, query_id)
            if is_own(text):
                mine.add(key)
            else:
                texts[key] = scrub_query(text)
    databases = _fetch(conn, sql.SQL(DATABASE_SQL), DatabaseRow)
    tables = _fetch(conn, sql.SQL(TABLES_SQL), TableRow)
    indexes = _fetch(conn, sql.SQL(INDEXES_SQL), IndexRow)
    statements = tuple(
        values
        for values in found
        if (key := text_key(dbid, values[_QUERYID])) not in own
        and key not in mine
        and (key in known or key in texts)
    )
    facts |= {"taken_at": counters.taken_at, "toplevel_calls": entries.toplevel_calls}
    header = unlabelled_header(facts, revision, entries.hidden_statements, entries.hidden_calls)
    database = databases[0] if databases else None
    return SampleRead(header, statements, tables, indexes, database, texts, frozenset(mine),
                      entries.summary)  # fmt: skip
