"""Snapshots in the monitoring tables: take one, bracket a window, load them back.

A snapshot is written by ONE statement (``INSERT … SELECT`` with data-modifying CTEs, on an
autocommit session): it reads the statistics and stores the header and every row atomically,
so a failure leaves nothing behind, and dbtools sends no BEGIN/COMMIT that would show up in
pg_stat_statements.

Query texts are stored once per statement, scrubbed, in ``statement_texts``; ``statement_stats``
rows refer to them by (dbid, queryid). SQL cannot scrub, so before that statement the snapshot
reads the texts of the entries not stored yet (only those), scrubs them in Python and hands
them to the statement as parameters. Taking a snapshot costs four statements whatever the
database's size (two more, rarely: for entries that appeared between the two).

Labels are unique. A *window* is two snapshots: ``W`` means ``W:start..W:end`` (what
``capture`` writes), ``A..B`` any two labels.

Snapshots are loaded whatever the database's revision (a database downgraded after they were
taken): the loaders read the columns the monitoring tables have (``Layout``), a column a
revision lacks reads as NULL, and without ``statement_texts`` (before revision 0004) a text is
read from ``statement_stats.query`` and scrubbed as it is loaded.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import class_row

from dbtools.config import MAX_DURATION_VARIABLE, max_duration
from dbtools.db.catalog import read_alembic_revision
from dbtools.db.connection import SQL_MARKER, connect, translated_errors
from dbtools.db.server import ServerInfo
from dbtools.errors import DbtoolsError, PrerequisiteMissing, UsageError
from dbtools.schema import monitoring
from dbtools.schema.manifest import head_revision, manifest_at
from dbtools.sqltext.scrub import scrub_query
from dbtools.stats import collect as stats
from dbtools.stats.columns import StatementColumns
from dbtools.stats.deltas import WindowDeltas, window_deltas
from dbtools.stats.rows import (
    TEXT_COLUMN,
    DatabaseRow,
    IndexRow,
    Snapshot,
    SnapshotHeader,
    StatementRow,
    TableRow,
    column_names,
    stored_columns,
)

log = logging.getLogger(__name__)

START_SUFFIX = ":start"
END_SUFFIX = ":end"
RANGE_SEPARATOR = ".."
MAX_LABEL_LENGTH = 200

# The row type stored in each monitoring table, and the SELECT that collects it.
_ROW_TABLES: tuple[tuple[type[Any], str], ...] = (
    (StatementRow, monitoring.STATEMENT_STATS),
    (TableRow, monitoring.TABLE_STATS),
    (IndexRow, monitoring.INDEX_STATS),
    (DatabaseRow, monitoring.DATABASE_STATS),
)


# The tables a snapshot writes: revision 0002 creates them (0004 adds statement_texts, used
# where the database has it).
SNAPSHOT_TABLES = (monitoring.SNAPSHOTS, *(table for _, table in _ROW_TABLES))


def _table(name: str) -> sql.Identifier:
    return sql.Identifier(monitoring.MONITORING_SCHEMA, name)


def _columns(names: Iterable[str], prefix: str | None = None) -> sql.Composed:
    return sql.SQL(", ").join(
        sql.Identifier(prefix, name) if prefix else sql.Identifier(name) for name in names
    )


# -- labels and windows -------------------------------------------------------------------------


def validate_label(label: str) -> str:
    """Return *label* if it can name a snapshot, else raise ``UsageError``."""
    if not label or label != label.strip():
        raise UsageError(f"invalid label {label!r}: empty, or leading/trailing spaces")
    if RANGE_SEPARATOR in label:
        raise UsageError(f"invalid label {label!r}: '..' separates the two labels of a window")
    if len(label) > MAX_LABEL_LENGTH or not label.isprintable():
        raise UsageError(f"invalid label {label!r}: too long or not printable")
    return label


@dataclass(frozen=True)
class WindowRef:
    """A window as given on the command line, and the two labels it stands for."""

    name: str
    start: str
    end: str

    def __str__(self) -> str:
        return f"{self.start}{RANGE_SEPARATOR}{self.end}"


def window_labels(label: str) -> tuple[str, str]:
    """The labels ``capture --label L`` writes: ``L:start`` and ``L:end``."""
    return f"{label}{START_SUFFIX}", f"{label}{END_SUFFIX}"


def parse_window(reference: str) -> WindowRef:
    """``W`` (``W:start..W:end``) or ``A..B``; raises ``UsageError`` for anything else."""
    if RANGE_SEPARATOR in reference:
        start, _, end = reference.partition(RANGE_SEPARATOR)
        if not start or not end or RANGE_SEPARATOR in end:
            raise UsageError(f"invalid window {reference!r}: expected LABEL or START..END")
        return WindowRef(reference, validate_label(start), validate_label(end))
    start, end = window_labels(validate_label(reference))
    return WindowRef(reference, start, end)


# -- SQL ----------------------------------------------------------------------------------------

_HEADER_COLUMNS = tuple(name for name in column_names(SnapshotHeader) if name != "id")

LAYOUT_SQL = sql.SQL(
    """SELECT {marker} c.relname::text, array_agg(a.attname::text ORDER BY a.attnum)
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
GROUP BY 1"""
).format(marker=sql.SQL(SQL_MARKER))


@dataclass(frozen=True)
class Layout:
    """The monitoring tables' columns as the database has them (its revision decides), or
    None: as this dbtools writes them (head)."""

    columns: dict[str, tuple[str, ...]] | None = None

    def has(self, table: str, column: str | None = None) -> bool:
        if self.columns is None:
            return True
        found = self.columns.get(table)
        return found is not None and (column is None or column in found)

    @property
    def texts_stored_apart(self) -> bool:
        """Whether texts are in ``statement_texts`` (revision 0004 on)."""
        return self.has(monitoring.STATEMENT_TEXTS)


HEAD_LAYOUT = Layout()


def read_layout(conn: psycopg.Connection[Any]) -> Layout:
    """The monitoring tables' columns in the connected database (one query)."""
    rows = conn.execute(LAYOUT_SQL, {"schema": monitoring.MONITORING_SCHEMA}).fetchall()
    return Layout({table: tuple(columns) for table, columns in rows})


def _or_null(
    layout: Layout, table: str, names: Iterable[str], prefix: str | None = None
) -> sql.Composed:
    """The columns *names* of *table*, NULL for those its revision lacks."""
    return sql.SQL(", ").join(
        (sql.Identifier(prefix, name) if prefix else sql.Identifier(name))
        if layout.has(table, name)
        else sql.SQL("NULL AS {}").format(sql.Identifier(name))
        for name in names
    )


def find_headers_sql(layout: Layout = HEAD_LAYOUT) -> sql.Composed:
    return sql.SQL(
        "SELECT {marker} {columns} FROM {snapshots} WHERE label = ANY(%(labels)s)"
    ).format(
        marker=sql.SQL(SQL_MARKER),
        columns=_or_null(layout, monitoring.SNAPSHOTS, column_names(SnapshotHeader)),
        snapshots=_table(monitoring.SNAPSHOTS),
    )


DELETE_SQL = sql.SQL("DELETE {marker} FROM {snapshots} WHERE label = %(label)s").format(
    marker=sql.SQL(SQL_MARKER), snapshots=_table(monitoring.SNAPSHOTS)
)

REQUEST_TOTALS_SQL = sql.SQL(
    """
SELECT {marker} count(*) AS buckets,
       coalesce(sum(requests), 0)::bigint AS requests,
       coalesce(sum(errors), 0)::bigint AS errors,
       coalesce(sum(cache_hits), 0)::bigint AS cache_hits,
       coalesce(sum(cache_misses), 0)::bigint AS cache_misses,
       max(latency_p95_ms) FILTER (WHERE requests > 0) AS p95_ms_max
FROM {request_metrics}
WHERE bucket_start >= %(start)s
  AND bucket_start + make_interval(secs => bucket_seconds) <= %(end)s
  AND (%(operation)s::text IS NULL OR operation = %(operation)s::text)
"""
).format(marker=sql.SQL(SQL_MARKER), request_metrics=_table(monitoring.REQUEST_METRICS))

VARIANT_TOTALS_SQL = sql.SQL(
    """
SELECT {marker} variant,
       count(*) AS buckets,
       coalesce(sum(requests), 0)::bigint AS requests,
       coalesce(sum(errors), 0)::bigint AS errors,
       coalesce(sum(cache_hits), 0)::bigint AS cache_hits,
       coalesce(sum(cache_misses), 0)::bigint AS cache_misses,
       max(latency_p95_ms) FILTER (WHERE requests > 0) AS p95_ms_max,
       sum(queries)::bigint AS queries,
       count(*) FILTER (WHERE queries IS NULL) AS uncounted_buckets
FROM {request_metrics}
WHERE bucket_start >= %(start)s
  AND bucket_start + make_interval(secs => bucket_seconds) <= %(end)s
  AND (%(operation)s::text IS NULL OR operation = %(operation)s::text)
GROUP BY variant
ORDER BY variant NULLS FIRST
"""
).format(marker=sql.SQL(SQL_MARKER), request_metrics=_table(monitoring.REQUEST_METRICS))


# The texts handed to the store statement: inserted unless a concurrent snapshot got there first.
_TEXTS_CTE = """stored_texts AS (
    INSERT INTO {texts} (dbid, queryid, query)
    SELECT * FROM unnest(%(text_dbids)s::oid[], %(text_queryids)s::bigint[], %(texts)s::text[])
    ON CONFLICT DO NOTHING RETURNING 1
)"""

# Before revision 0004 each statement_stats row holds its own text: the texts handed over.
_GIVEN_TEXTS_CTE = """given_texts AS (
    SELECT * FROM unnest(%(text_dbids)s::oid[], %(text_queryids)s::bigint[], %(texts)s::text[])
        AS g(dbid, queryid, query)
)"""
_GIVEN_TEXT = sql.SQL(
    "coalesce((SELECT g.query FROM given_texts g WHERE g.dbid = r.dbid AND g.queryid = r.queryid),"
    " {})"
)

# Entries that appeared after their texts were read: neither stored nor handed over.
_MISSING_TEXTS = """(SELECT count(*) FROM pgss p
    WHERE p.queryid IS NOT NULL AND p.queryid <> ALL(%(text_queryids)s::bigint[])
      AND NOT EXISTS (SELECT FROM {texts} t WHERE t.dbid = p.dbid AND t.queryid = p.queryid))"""

INSERT_TEXTS_SQL = sql.SQL(
    "WITH {marker} " + _TEXTS_CTE + " SELECT count(*) FROM stored_texts"
).format(marker=sql.SQL(SQL_MARKER), texts=_table(monitoring.STATEMENT_TEXTS))


def store_sql(
    columns: StatementColumns, info: ServerInfo, layout: Layout = HEAD_LAYOUT
) -> sql.Composed:
    """The one statement that collects the statistics and stores a labelled snapshot, with the
    scrubbed texts of new statements (arrays ``text_dbids``, ``text_queryids``, ``texts``).

    It writes the columns the monitoring tables have (*layout*: a database below head stores
    what its revision's tables hold; before revision 0004 each statement row carries its text).
    Parameters: those, ``label``, ``requests``, ``alembic_revision``, ``pgss_version``,
    ``marker``, ``ri_marker``.
    Returns one row: id, taken_at, the number of statement, table and index rows stored,
    hidden_statements, and the number of statements whose text is neither stored nor given.
    """
    facts = tuple(
        name
        for name in _HEADER_COLUMNS
        if name not in _PARAMETER_COLUMNS and layout.has(monitoring.SNAPSHOTS, name)
    )
    texts_apart = layout.texts_stored_apart
    inserts = []
    for row_type, table in _ROW_TABLES:
        names = [name for name in stored_columns(row_type) if layout.has(table, name)]
        values: list[sql.Composable] = [sql.Identifier("r", name) for name in names]
        if row_type is StatementRow and not texts_apart:
            names.append(TEXT_COLUMN)
            values.append(_GIVEN_TEXT.format(sql.Literal(TEXT_NOT_STORED)))
        inserts.append(
            sql.SQL(
                "{cte} AS (INSERT INTO {table} (snapshot_id, {columns}) "
                "SELECT h.id, {values} FROM header h, ({source}) r {where} RETURNING 1)"
            ).format(
                cte=sql.Identifier(f"stored_{table}"),
                table=_table(table),
                columns=_columns(names),
                values=sql.SQL(", ").join(values),
                source=sql.SQL("SELECT * FROM pgss")
                if row_type is StatementRow
                else _SOURCES[table],
                where=sql.SQL("WHERE r.queryid IS NOT NULL" if row_type is StatementRow else ""),
            )
        )
    texts = _table(monitoring.STATEMENT_TEXTS)
    return sql.SQL(
        """WITH {marker} pgss AS MATERIALIZED ({statements}),
{stored_texts},
facts AS ({header}),
header AS (
    INSERT INTO {snapshots} ({header_columns})
    SELECT %(label)s::text, {facts}, %(alembic_revision)s::text, %(requests)s::bigint,
           (SELECT count(*) FROM pgss WHERE queryid IS NULL),
           (SELECT coalesce(sum(calls), 0) FROM pgss WHERE queryid IS NULL)
    FROM facts f
    RETURNING id, taken_at, hidden_statements
),
{inserts}
SELECT h.id, h.taken_at,
       (SELECT count(*) FROM {stored_statements}) AS statements,
       (SELECT count(*) FROM {stored_tables}) AS tables,
       (SELECT count(*) FROM {stored_indexes}) AS indexes,
       h.hidden_statements,
       {missing_texts} AS missing_texts
FROM header h"""
    ).format(
        marker=sql.SQL(SQL_MARKER),
        statements=stats.statements_sql(columns, with_text=False),
        stored_texts=sql.SQL(_TEXTS_CTE if texts_apart else _GIVEN_TEXTS_CTE).format(texts=texts),
        missing_texts=sql.SQL(_MISSING_TEXTS if texts_apart else "0").format(texts=texts),
        header=stats.header_sql(columns, info),
        snapshots=_table(monitoring.SNAPSHOTS),
        header_columns=_columns(
            ("label", *facts, "alembic_revision", "requests", "hidden_statements", "hidden_calls")
        ),
        facts=_columns(facts, "f"),
        inserts=sql.SQL(",\n").join(inserts),
        stored_statements=sql.Identifier(f"stored_{monitoring.STATEMENT_STATS}"),
        stored_tables=sql.Identifier(f"stored_{monitoring.TABLE_STATS}"),
        stored_indexes=sql.Identifier(f"stored_{monitoring.INDEX_STATS}"),
    )


_PARAMETER_COLUMNS = {"label", "alembic_revision", "requests", "hidden_statements", "hidden_calls"}
_SOURCES: dict[str, sql.SQL] = {
    monitoring.TABLE_STATS: sql.SQL(stats.TABLES_SQL),
    monitoring.INDEX_STATS: sql.SQL(stats.INDEXES_SQL),
    monitoring.DATABASE_STATS: sql.SQL(stats.DATABASE_SQL),
}


# Shown for a statement whose text no snapshot could store (it was evicted in between).
TEXT_NOT_STORED = "<text not stored>"


def _load_rows_sql(row_type: type[Any], table: str, layout: Layout = HEAD_LAYOUT) -> sql.Composed:
    """The rows of the snapshots ``%(ids)s``, in the row type's field order; a statement's text
    comes from ``statement_texts`` (before revision 0004: from its own row, unscrubbed)."""
    if row_type is not StatementRow or not layout.texts_stored_apart:
        return sql.SQL(
            "SELECT {marker} snapshot_id, {columns} FROM {table} WHERE snapshot_id = ANY(%(ids)s)"
        ).format(
            marker=sql.SQL(SQL_MARKER),
            columns=_or_null(layout, table, column_names(row_type)),
            table=_table(table),
        )
    columns = [
        sql.SQL("coalesce(t.query, {}) AS query").format(sql.Literal(TEXT_NOT_STORED))
        if name == TEXT_COLUMN
        else _or_null(layout, table, [name], "s")
        for name in column_names(row_type)
    ]
    return sql.SQL(
        "SELECT {marker} s.snapshot_id, {columns} FROM {table} s "
        "LEFT JOIN {texts} t ON t.dbid = s.dbid AND t.queryid = s.queryid "
        "WHERE s.snapshot_id = ANY(%(ids)s)"
    ).format(
        marker=sql.SQL(SQL_MARKER),
        columns=sql.SQL(", ").join(columns),
        table=_table(table),
        texts=_table(monitoring.STATEMENT_TEXTS),
    )


# -- taking snapshots ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SnapshotSummary:
    """What ``take_snapshot`` stored."""

    id: int
    label: str
    taken_at: datetime
    statements: int
    tables: int
    indexes: int
    hidden_statements: int

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (stable keys; the time in ISO 8601 with its offset)."""
        return {
            "id": self.id,
            "label": self.label,
            "taken_at": self.taken_at.isoformat(),
            "statements": self.statements,
            "tables": self.tables,
            "indexes": self.indexes,
            "hidden_statements": self.hidden_statements,
        }


def require_monitoring_tables(revision: str | None) -> None:
    """Raise ``PrerequisiteMissing`` unless the database's revision has the tables a snapshot
    writes (its manifest's; revision 0002 on), ``ConfigError`` for a revision these migrations
    do not know. Any such revision will do: a snapshot stores what its tables hold."""
    have = set(manifest_at(revision).monitoring_tables)
    missing = [table for table in SNAPSHOT_TABLES if table not in have]
    if missing:
        state = "was never migrated" if revision is None else f"is at revision {revision}"
        raise PrerequisiteMissing(
            f"the database {state}, which has no {monitoring.monitoring_table(missing[0])} to "
            "store snapshots in: run alembic upgrade head first"
        )


def take_snapshot(
    conn: psycopg.Connection[Any], label: str, *, requests: int | None = None
) -> SnapshotSummary:
    """Store one consistent, labelled snapshot of the connected database's statistics.

    *conn* must be an autocommit, read-write session. The database may be at any revision with
    the monitoring tables (a rollback's ``alembic downgrade``): what its tables hold is stored.
    Raises ``UsageError`` for a bad or reused label, ``PrerequisiteMissing`` when
    pg_stat_statements or the monitoring tables are missing (nothing is written then).
    """
    validate_label(label)
    if requests is not None and requests < 0:
        raise UsageError(f"--requests must not be negative, not {requests}")
    with translated_errors(f"snapshot {label!r}"):
        info, columns = stats.prepare(conn)
        revision = read_alembic_revision(conn, table_exists=info.has_alembic_version)
        require_monitoring_tables(revision)
        # At head the tables are this dbtools' own; below it, read what they are (one query).
        layout = HEAD_LAYOUT if revision == head_revision() else read_layout(conn)
        params = {
            "label": label,
            "requests": requests,
            "alembic_revision": revision,
            "pgss_version": info.pgss_version,
            "marker": SQL_MARKER,
            "ri_marker": stats.RI_MARKER,
            **_new_texts(conn, columns, layout),
        }
        try:
            row = conn.execute(store_sql(columns, info, layout), params).fetchone()
        except psycopg.errors.UniqueViolation as err:
            if err.diag.constraint_name == "uq_snapshots_label":
                raise UsageError(f"a snapshot labelled {label!r} already exists") from err
            raise
        assert row is not None
        if row[6]:  # statements that appeared while the texts were read: store theirs now
            conn.execute(INSERT_TEXTS_SQL, _new_texts(conn, columns, layout))
    log.info("snapshot %r stored: %d statements, %d tables, %d indexes", label, *row[2:5])
    return SnapshotSummary(row[0], label, row[1], row[2], row[3], row[4], row[5])


def _new_texts(
    conn: psycopg.Connection[Any], columns: StatementColumns, layout: Layout
) -> dict[str, list[Any]]:
    """The texts ``statement_texts`` lacks (before revision 0004: every text, each row holds
    its own), read from pg_stat_statements and scrubbed, as the array parameters of
    ``store_sql`` and ``INSERT_TEXTS_SQL``."""
    params = {"marker": SQL_MARKER, "ri_marker": stats.RI_MARKER}
    query = stats.new_texts_sql(columns, only_unstored=layout.texts_stored_apart)
    rows = conn.execute(query, params).fetchall()
    log.debug("%d new statement texts to store", len(rows))
    return {
        "text_dbids": [dbid for dbid, _, _ in rows],
        "text_queryids": [queryid for _, queryid, _ in rows],
        "texts": [scrub_query(text) for _, _, text in rows],
    }


@contextmanager
def writer(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit, read-write session for storing snapshots (no BEGIN/COMMIT is sent)."""
    conn = connect(dsn, read_only=False, autocommit=True)
    try:
        yield conn
    finally:
        conn.close()


def snapshot(dsn: str, label: str, *, requests: int | None = None) -> SnapshotSummary:
    """Connect to *dsn* and store one snapshot labelled *label* (see ``take_snapshot``)."""
    validate_label(label)
    with writer(dsn) as conn:
        return take_snapshot(conn, label, requests=requests)


def capture(
    dsn: str,
    label: str,
    seconds: float,
    *,
    requests: int | None = None,
    wait: Callable[[float], None] = time.sleep,
) -> tuple[SnapshotSummary, SnapshotSummary]:
    """Store ``LABEL:start``, ``wait(seconds)``, store ``LABEL:end`` (with *requests*).

    ``DBTOOLS_MAX_DURATION`` (``config.max_duration``) shortens the wait, with a warning. If
    anything interrupts it (Ctrl-C during the wait, a failed end snapshot), ``LABEL:start`` is
    deleted again before the exception goes on: a window is stored whole or not at all.
    Raises ``UsageError`` before waiting when either label is taken, ``ConfigError`` when
    ``DBTOOLS_MAX_DURATION`` is not a duration.
    """
    if seconds <= 0:
        raise UsageError("the capture duration must be positive")
    start_label, end_label = window_labels(validate_label(label))
    limit = max_duration()
    if limit is not None and seconds > limit:
        log.warning("%s shortens the window %r from %g s to %d s", MAX_DURATION_VARIABLE, label,
                    seconds, limit)  # fmt: skip
        seconds = limit
    with writer(dsn) as conn:
        with translated_errors("capture"):
            layout = read_layout(conn)  # no monitoring tables: the first snapshot says so
            taken = (
                find_headers(conn, (start_label, end_label), layout)
                if layout.has(monitoring.SNAPSHOTS)
                else {}
            )
        if taken:
            raise UsageError(f"a snapshot labelled {sorted(taken)[0]!r} already exists")
    try:
        with writer(dsn) as conn:
            start = take_snapshot(conn, start_label)
        log.info("waiting %g s before %r", seconds, end_label)
        wait(seconds)
        with writer(dsn) as conn:
            end = take_snapshot(conn, end_label, requests=requests)
    except BaseException:
        delete_quietly(dsn, start_label)
        raise
    return start, end


def delete_snapshot(conn: psycopg.Connection[Any], label: str) -> bool:
    """Delete the snapshot *label* and its rows; True if there was one."""
    with translated_errors(f"deleting snapshot {label!r}"):
        return conn.execute(DELETE_SQL, {"label": label}).rowcount > 0


def delete_quietly(dsn: str, label: str) -> None:
    """Best-effort ``delete_snapshot`` on a fresh session (used while unwinding)."""
    with suppress(DbtoolsError), writer(dsn) as conn:
        delete_snapshot(conn, label)


# -- loading ------------------------------------------------------------------------------------


def find_headers(
    conn: psycopg.Connection[Any], labels: Iterable[str], layout: Layout = HEAD_LAYOUT
) -> dict[str, SnapshotHeader]:
    """The headers of the snapshots among *labels* that exist, by label (one query)."""
    with conn.cursor(row_factory=class_row(SnapshotHeader)) as cur:
        rows = cur.execute(find_headers_sql(layout), {"labels": list(labels)}).fetchall()
    return {row.label: row for row in rows if row.label is not None}


def load_snapshots(
    conn: psycopg.Connection[Any], headers: Sequence[SnapshotHeader], layout: Layout = HEAD_LAYOUT
) -> dict[int, Snapshot]:
    """The rows of the snapshots with *headers*, by snapshot id (four queries in all)."""
    ids = [header.id for header in headers]
    rows: dict[str, dict[int, list[Any]]] = {}
    scrub = not layout.texts_stored_apart  # texts stored before revision 0004, as they came
    for row_type, table in _ROW_TABLES:
        by_snapshot: dict[int, list[Any]] = {i: [] for i in ids if i is not None}
        for values in conn.execute(_load_rows_sql(row_type, table, layout), {"ids": ids}):
            row = row_type(*values[1:])
            if scrub and row_type is StatementRow:
                row = dataclasses.replace(row, query=scrub_query(row.query))
            by_snapshot[values[0]].append(row)
        rows[table] = by_snapshot
    loaded = {}
    for header in headers:
        assert header.id is not None
        databases = rows[monitoring.DATABASE_STATS][header.id]
        loaded[header.id] = Snapshot(
            header=header,
            statements=tuple(rows[monitoring.STATEMENT_STATS][header.id]),
            tables=tuple(rows[monitoring.TABLE_STATS][header.id]),
            indexes=tuple(rows[monitoring.INDEX_STATS][header.id]),
            database=databases[0] if databases else None,
        )
    return loaded


@dataclass(frozen=True)
class RequestTotals:
    """The application's request metrics summed over the buckets lying inside a window.

    ``p95_ms_max`` is the highest bucket p95: percentiles of buckets cannot be merged exactly,
    and the highest is the bound that never passes what should fail.
    """

    buckets: int
    requests: int
    errors: int
    cache_hits: int
    cache_misses: int
    p95_ms_max: float | None


def load_request_totals(
    conn: psycopg.Connection[Any], start: datetime, end: datetime, operation: str | None = None
) -> RequestTotals:
    """Sum ``request_metrics`` buckets with bucket_start >= *start* and bucket end <= *end*."""
    with conn.cursor(row_factory=class_row(RequestTotals)) as cur:
        row = cur.execute(
            REQUEST_TOTALS_SQL, {"start": start, "end": end, "operation": operation}
        ).fetchone()
    assert row is not None
    return row


@dataclass(frozen=True)
class VariantTotals(RequestTotals):
    """``RequestTotals`` of one variant (the code path that served the requests; None: rows
    that name none), with the statements the application counted for them: ``queries`` is the
    sum over the buckets that count them, ``uncounted_buckets`` how many do not (NULL)."""

    variant: str | None
    queries: int | None
    uncounted_buckets: int


def load_variant_totals(
    conn: psycopg.Connection[Any],
    start: datetime,
    end: datetime,
    operation: str | None = None,
    layout: Layout = HEAD_LAYOUT,
) -> dict[str | None, VariantTotals]:
    """``request_metrics`` of the buckets inside [*start*, *end*], summed per variant.

    Raises ``PrerequisiteMissing`` when the table has no ``variant`` column (a revision before
    the one that adds it).
    """
    if not layout.has(monitoring.REQUEST_METRICS, "variant"):
        raise PrerequisiteMissing(
            f"{monitoring.monitoring_table(monitoring.REQUEST_METRICS)} has no variant column "
            "at this database's revision: run alembic upgrade head"
        )
    params = {"start": start, "end": end, "operation": operation}
    with conn.cursor(row_factory=class_row(VariantTotals)) as cur:
        rows = cur.execute(VARIANT_TOTALS_SQL, params).fetchall()
    return {row.variant: row for row in rows}


@dataclass(frozen=True)
class Window:
    """Two stored snapshots bracketing a period, and the request metrics inside it."""

    ref: WindowRef
    start: Snapshot
    end: Snapshot
    request_totals: RequestTotals

    @property
    def seconds(self) -> float:
        return (self.end.header.taken_at - self.start.header.taken_at).total_seconds()

    @functools.cached_property
    def deltas(self) -> WindowDeltas:
        """What every counter did inside the window (computed once, on first use)."""
        return window_deltas(self.start, self.end)


def load_windows(
    conn: psycopg.Connection[Any], refs: Sequence[WindowRef], *, operation: str | None = None
) -> list[Window]:
    """Load the snapshots of *refs* (one query for the tables' columns, one for headers, four
    for rows, one per window for request metrics). Raises ``UsageError`` for unknown labels or
    an end before its start."""
    labels = [label for ref in refs for label in (ref.start, ref.end)]
    with translated_errors("loading snapshots"):
        layout = read_layout(conn)
        headers = find_headers(conn, labels, layout)
        missing = [label for label in dict.fromkeys(labels) if label not in headers]
        if missing:
            raise UsageError(_unknown_labels_message(conn, refs, missing, layout))
        unique = list({h.id: h for h in headers.values()}.values())
        snapshots = load_snapshots(conn, unique, layout)
        windows = []
        for ref in refs:
            start, end = headers[ref.start], headers[ref.end]
            if end.taken_at <= start.taken_at:
                raise UsageError(f"window {ref}: {ref.end!r} was not taken after {ref.start!r}")
            assert start.id is not None and end.id is not None
            totals = load_request_totals(conn, start.taken_at, end.taken_at, operation)
            windows.append(Window(ref, snapshots[start.id], snapshots[end.id], totals))
            log.info("window %s loaded: %d requests in the metrics", ref, totals.requests)
    return windows


def _unknown_labels_message(
    conn: psycopg.Connection[Any], refs: Sequence[WindowRef], missing: list[str], layout: Layout
) -> str:
    message = f"unknown snapshot label(s): {', '.join(repr(m) for m in missing)}"
    plain = [ref.name for ref in refs if RANGE_SEPARATOR not in ref.name]
    if plain and find_headers(conn, plain, layout):
        message += " (a single snapshot is not a window: give START..END)"
    return message
