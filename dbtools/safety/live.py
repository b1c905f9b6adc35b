"""What a live database says about a downgrade: its revision (``db.catalog``), the size of the
relations a plan touches, and whether it holds data (so that a rehearsal refuses it). Read-only
queries only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import class_row

from dbtools.db.catalog import ALEMBIC_VERSION_TABLE
from dbtools.db.connection import describe, session
from dbtools.errors import UsageError
from dbtools.schema.monitoring import SETTING_CHANGES, monitoring_table

RELATIONS_SQL = """
SELECT r.name,
       c.relkind::text AS kind,
       pg_total_relation_size(c.oid) AS total_bytes,
       CASE WHEN c.reltuples < 0 THEN NULL ELSE c.reltuples::bigint END AS estimated_rows
FROM unnest(%(names)s::text[]) AS r(name)
JOIN pg_class c ON c.oid = to_regclass(r.name)
"""

USER_TABLES_SQL = """
SELECT n.nspname AS schema, c.relname AS name
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2
"""


INDEX_TABLES_SQL = """
SELECT n.nspname || '.' || ic.relname AS index, tn.nspname || '.' || t.relname AS table
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_namespace n ON n.oid = ic.relnamespace
JOIN pg_class t ON t.oid = i.indrelid
JOIN pg_namespace tn ON tn.oid = t.relnamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%'
"""

REFERENCES_SQL = """
SELECT n.nspname || '.' || c.relname AS table,
       array_agg(DISTINCT fn.nspname || '.' || f.relname ORDER BY fn.nspname || '.' || f.relname)
           AS referenced
FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_class f ON f.oid = k.confrelid
JOIN pg_namespace fn ON fn.oid = f.relnamespace
WHERE k.contype = 'f' AND k.confrelid <> k.conrelid
GROUP BY 1
"""


@dataclass(frozen=True)
class RelationSize:
    """A relation's size (table with its indexes and TOAST) and the planner's row estimate."""

    name: str
    kind: str  # pg_class.relkind: r table, i index, p partitioned table, …
    total_bytes: int
    estimated_rows: int | None  # None: never vacuumed or analyzed


@dataclass(frozen=True)
class UserTable:
    schema: str
    name: str

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


def catalog_context(
    conn: psycopg.Connection[Any],
) -> tuple[dict[str, str], dict[str, tuple[str, ...]]]:
    """What a plan needs to know of objects created before its range: each index's table
    (``DROP INDEX`` names only the index) and the tables each table's foreign keys reference."""
    indexes = {row[0]: row[1] for row in conn.execute(INDEX_TABLES_SQL).fetchall()}
    references = {row[0]: tuple(row[1]) for row in conn.execute(REFERENCES_SQL).fetchall()}
    return indexes, references


def relation_sizes(conn: psycopg.Connection[Any], names: list[str]) -> dict[str, RelationSize]:
    """Size and estimated rows of each of *names* that exists (missing ones are left out)."""
    if not names:
        return {}
    with conn.cursor(row_factory=class_row(RelationSize)) as cur:
        rows = cur.execute(RELATIONS_SQL, {"names": list(dict.fromkeys(names))}).fetchall()
    return {row.name: row for row in rows}


def user_tables(conn: psycopg.Connection[Any]) -> list[UserTable]:
    """Ordinary and partitioned tables outside the system schemas (extensions' own left out)."""
    with conn.cursor(row_factory=class_row(UserTable)) as cur:
        return cur.execute(USER_TABLES_SQL).fetchall()


# Rows the migrations themselves write (the revision; the storage parameters they replaced) are
# not application data: a freshly migrated database has them.
BOOKKEEPING_TABLES = (
    ALEMBIC_VERSION_TABLE,
    monitoring_table(SETTING_CHANGES),
)


def tables_with_rows(
    conn: psycopg.Connection[Any], *, ignore: tuple[str, ...] = BOOKKEEPING_TABLES
) -> list[str]:
    """User tables that hold at least one row: checked row by row (``LIMIT 1``), not from
    ``reltuples``, which stays 0 or -1 on a table that was never vacuumed or analyzed."""
    found = []
    for table in user_tables(conn):
        if table.qualified in ignore:
            continue
        query = sql.SQL("SELECT EXISTS (SELECT 1 FROM {}.{})").format(
            sql.Identifier(table.schema), sql.Identifier(table.name)
        )
        row = conn.execute(query).fetchone()
        if row and row[0]:
            found.append(table.qualified)
    return found


def refuse_data(
    dsn: str, *, refusing: str, because: str, ignore: tuple[str, ...] = BOOKKEEPING_TABLES
) -> None:
    """Raise ``UsageError`` ("refusing to *refusing* in DB: it holds data (…); *because*") when a
    table of the database at *dsn* holds a row (the migrations' bookkeeping, *ignore*, aside)."""
    with session(dsn) as conn:
        holding = tables_with_rows(conn, ignore=ignore)
    if holding:
        shown = ", ".join(holding[:5]) + (
            f" and {len(holding) - 5} more" if len(holding) > 5 else ""
        )
        raise UsageError(
            f"refusing to {refusing} in {describe(dsn).database}: it holds data ({shown}); {because}"
        )
