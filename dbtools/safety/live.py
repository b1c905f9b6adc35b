"""What a live database says about a downgrade: its revision (``db.catalog``), the size of the
relations a plan touches, and whether it holds data (so that a rehearsal refuses it). Read-only
queries only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import class_row

from dbtools.db.catalog import ALEMBIC_VERSION_TABLE, read_alembic_revision
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


def current_revision(conn: psycopg.Connection[Any]) -> str | None:
    """The database's one revision (None: never migrated, or at the base); raises
    ``UsageError`` when branches are applied (a plan follows one line of revisions)."""
    revision = read_alembic_revision(conn)
    if revision is not None and "," in revision:
        versions = revision.split(",")
        raise UsageError(
            f"{ALEMBIC_VERSION_TABLE} holds {len(versions)} revisions (branches): {versions}"
        )
    return revision


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


def refuse_data(dsn: str, *, refusing: str, because: str) -> None:
    """Raise ``UsageError`` ("refusing to *refusing* in DB: it holds data (…); *because*") when a
    table of the database at *dsn* holds a row (the migrations' bookkeeping aside)."""
    with session(dsn) as conn:
        holding = tables_with_rows(conn)
    if holding:
        shown = ", ".join(holding[:5]) + (
            f" and {len(holding) - 5} more" if len(holding) > 5 else ""
        )
        raise UsageError(
            f"refusing to {refusing} in {describe(dsn).database}: it holds data ({shown}); {because}"
        )
