"""The storage of revisions 0002–0004, written and read while a database is rolled back below 0005.

From revision 0005 every snapshot is a compact sample (``store.compact``). A rollback's
``alembic downgrade`` below 0005 converts the samples back to this older storage: every
snapshot a full copy of the statistics, one row per entry, with no target (the database's own).
While a database stays there (the README's rollback runs ``capture`` and ``verify`` after
``alembic downgrade 0002``), snapshots are written and read here.

*Writing*: ONE statement (``INSERT … SELECT`` with data-modifying CTEs, on an autocommit
session) reads the statistics and stores the header and every row atomically, so a failure
leaves nothing behind. It writes the columns the database's tables have (``Layout``): from
revision 0004 texts are stored once per statement, scrubbed, in ``statement_texts``; before it
each ``statement_stats`` row holds its own text (scrubbed before it is stored). SQL cannot
scrub, so the snapshot first reads the texts it must store (only the unstored ones from 0004),
scrubs them in Python and hands them to the statement as parameters.

*Reading*: a column a revision lacks reads as NULL; without ``statement_texts`` a text is read
from its row and scrubbed as it is loaded (rows stored by older dbtools hold raw texts).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
from psycopg import sql

from dbtools.db.connection import SQL_MARKER
from dbtools.db.server import ServerInfo
from dbtools.errors import UsageError
from dbtools.reading import live
from dbtools.reading.columns import StatementColumns
from dbtools.reading.rows import (
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
from dbtools.schema import monitoring
from dbtools.sqltext.scrub import scrub_query
from dbtools.store.compact import TEXT_NOT_STORED, SampleSummary
from dbtools.store.layout import Layout, or_null

log = logging.getLogger(__name__)

# The row type stored in each monitoring table, and the SELECT that collects it.
_ROW_TABLES: tuple[tuple[type[Any], str], ...] = (
    (StatementRow, monitoring.STATEMENT_STATS),
    (TableRow, monitoring.TABLE_STATS),
    (IndexRow, monitoring.INDEX_STATS),
    (DatabaseRow, monitoring.DATABASE_STATS),
)
_SOURCES: dict[str, sql.SQL] = {
    monitoring.TABLE_STATS: sql.SQL(live.TABLES_SQL),
    monitoring.INDEX_STATS: sql.SQL(live.INDEXES_SQL),
    monitoring.DATABASE_STATS: sql.SQL(live.DATABASE_SQL),
}


def _table(name: str) -> sql.Identifier:
    return sql.Identifier(monitoring.MONITORING_SCHEMA, name)


def _columns(names: Iterable[str], prefix: str | None = None) -> sql.Composed:
    return sql.SQL(", ").join(
        sql.Identifier(prefix, name) if prefix else sql.Identifier(name) for name in names
    )


# -- writing ------------------------------------------------------------------------------------

_HEADER_COLUMNS = tuple(name for name in column_names(SnapshotHeader) if name != "id")
_PARAMETER_COLUMNS = {"label", "alembic_revision", "requests", "hidden_statements", "hidden_calls"}

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


def store_sql(columns: StatementColumns, info: ServerInfo, layout: Layout) -> sql.Composed:
    """The one statement that collects the statistics and stores a labelled full copy in the
    tables *layout* describes, with the scrubbed texts (arrays ``text_dbids``,
    ``text_queryids``, ``texts``: new statements' from 0004, each row's before).

    Parameters: those, ``label``, ``requests``, ``alembic_revision``, ``pgss_version``,
    ``marker``, ``ri_marker``.
    Returns one row: id, taken_at, the number of statement, table and index rows stored,
    hidden_statements, the number of statements whose text is neither stored nor given, and
    the number of database rows stored.
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
       {missing_texts} AS missing_texts,
       (SELECT count(*) FROM {stored_databases}) AS databases
FROM header h"""
    ).format(
        marker=sql.SQL(SQL_MARKER),
        statements=live.statements_sql(columns, with_text=False),
        stored_texts=sql.SQL(_TEXTS_CTE if texts_apart else _GIVEN_TEXTS_CTE).format(texts=texts),
        missing_texts=sql.SQL(_MISSING_TEXTS if texts_apart else "0").format(texts=texts),
        header=live.header_sql(columns, info),
        snapshots=_table(monitoring.SNAPSHOTS),
        header_columns=_columns(
            ("label", *facts, "alembic_revision", "requests", "hidden_statements", "hidden_calls")
        ),
        facts=_columns(facts, "f"),
        inserts=sql.SQL(",\n").join(inserts),
        stored_statements=sql.Identifier(f"stored_{monitoring.STATEMENT_STATS}"),
        stored_tables=sql.Identifier(f"stored_{monitoring.TABLE_STATS}"),
        stored_indexes=sql.Identifier(f"stored_{monitoring.INDEX_STATS}"),
        stored_databases=sql.Identifier(f"stored_{monitoring.DATABASE_STATS}"),
    )


def take_snapshot(
    conn: psycopg.Connection[Any],
    label: str,
    *,
    info: ServerInfo,
    columns: StatementColumns,
    revision: str | None,
    layout: Layout,
    requests: int | None = None,
) -> SampleSummary:
    """Store a labelled full copy of the connected database's statistics (*conn*: autocommit,
    read-write, below revision 0005) in the tables *layout* describes; its target is the
    database itself. Raises ``UsageError`` for a reused label (nothing is written then)."""
    params = {
        "label": label,
        "requests": requests,
        "alembic_revision": revision,
        "pgss_version": info.pgss_version,
        "marker": SQL_MARKER,
        "ri_marker": live.RI_MARKER,
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
    return SampleSummary(
        id=row[0],
        target=info.database,
        label=label,
        taken_at=row[1],
        statements=row[2],
        tables=row[3],
        indexes=row[4],
        hidden_statements=row[5],
        rows_stored=row[2] + row[3] + row[4] + row[7],
    )


def _new_texts(
    conn: psycopg.Connection[Any], columns: StatementColumns, layout: Layout
) -> dict[str, list[Any]]:
    """The texts ``statement_texts`` lacks (before revision 0004: every text, each row holds
    its own), read from pg_stat_statements and scrubbed, as the array parameters of
    ``store_sql`` and ``INSERT_TEXTS_SQL``."""
    params = {"marker": SQL_MARKER, "ri_marker": live.RI_MARKER}
    query = live.new_texts_sql(columns, only_unstored=layout.texts_stored_apart)
    rows = conn.execute(query, params).fetchall()
    log.debug("%d statement texts to store", len(rows))
    return {
        "text_dbids": [dbid for dbid, _, _ in rows],
        "text_queryids": [queryid for _, queryid, _ in rows],
        "texts": [scrub_query(text) for _, _, text in rows],
    }


DELETE_SQL = sql.SQL("DELETE {marker} FROM {snapshots} WHERE label = %(label)s").format(
    marker=sql.SQL(SQL_MARKER), snapshots=_table(monitoring.SNAPSHOTS)
)


def delete_snapshot(conn: psycopg.Connection[Any], label: str) -> bool:
    """Delete the snapshot *label* and its rows (they cascade); True if there was one."""
    return conn.execute(DELETE_SQL, {"label": label}).rowcount > 0


# -- reading ------------------------------------------------------------------------------------


def _load_rows_sql(row_type: type[Any], table: str, layout: Layout) -> sql.Composed:
    """The full rows of the snapshots ``%(ids)s``, in the row type's field order; a statement's
    text comes from ``statement_texts`` (before revision 0004: its own row)."""
    if row_type is not StatementRow or not layout.texts_stored_apart:
        return sql.SQL(
            "SELECT {marker} snapshot_id, {columns} FROM {table} WHERE snapshot_id = ANY(%(ids)s)"
        ).format(
            marker=sql.SQL(SQL_MARKER),
            columns=or_null(layout, table, column_names(row_type)),
            table=_table(table),
        )
    columns = [
        sql.SQL("coalesce(t.query, {}) AS query").format(sql.Literal(TEXT_NOT_STORED))
        if name == TEXT_COLUMN
        else or_null(layout, table, [name], "s")
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


def load_snapshots(
    conn: psycopg.Connection[Any], headers: Sequence[SnapshotHeader], layout: Layout
) -> dict[int, Snapshot]:
    """The full copies of the snapshots with *headers*, by id (one query per row kind)."""
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
    found = {}
    for header in headers:
        assert header.id is not None
        databases = rows[monitoring.DATABASE_STATS][header.id]
        found[header.id] = Snapshot(
            header=header,
            statements=tuple(rows[monitoring.STATEMENT_STATS][header.id]),
            tables=tuple(rows[monitoring.TABLE_STATS][header.id]),
            indexes=tuple(rows[monitoring.INDEX_STATS][header.id]),
            database=databases[0] if databases else None,
        )
    return found
