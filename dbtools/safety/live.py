"""What a live database says about a downgrade: its revision, the size of the relations a plan
touches, and whether it holds data (so that a rehearsal refuses it). Read-only queries only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import class_row

from dbtools.db.connection import describe, session
from dbtools.errors import UsageError
from dbtools.schema.monitoring import SETTING_CHANGES, monitoring_table

VERSION_TABLE = "alembic_version"

CURRENT_REVISION_SQL = """
SELECT to_regclass(%(version_table)s) IS NOT NULL AS has_table
"""

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

SERVER_SQL = """
SELECT current_database() AS database, current_setting('server_version_num')::int AS version_num
"""


@dataclass(frozen=True)
class RelationSize:
    """A relation's size (table with its indexes and TOAST) and the planner's row estimate."""

    name: str
    kind: str  # pg_class.relkind: r table, i index, p partitioned table, …
    total_bytes: int
    estimated_rows: int | None  # None: never vacuumed or analyzed


@dataclass(frozen=True)
class ServerIdentity:
    database: str
    version_num: int


@dataclass(frozen=True)
class UserTable:
    schema: str
    name: str

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


def server_identity(conn: psycopg.Connection[Any]) -> ServerIdentity:
    with conn.cursor(row_factory=class_row(ServerIdentity)) as cur:
        found = cur.execute(SERVER_SQL).fetchone()
    assert found is not None
    return found


def current_revision(
    conn: psycopg.Connection[Any], version_table: str = VERSION_TABLE
) -> str | None:
    """The revision recorded in *version_table* (None: no table, or no row: the base)."""
    row = conn.execute(CURRENT_REVISION_SQL, {"version_table": version_table}).fetchone()
    if not row or not row[0]:
        return None
    query = sql.SQL("SELECT version_num FROM {} ORDER BY version_num").format(
        sql.Identifier(version_table)
    )
    versions = [str(r[0]) for r in conn.execute(query).fetchall()]
    if len(versions) > 1:
        raise UsageError(f"{version_table} holds {len(versions)} revisions (branches): {versions}")
    return versions[0] if versions else None


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
    f"public.{VERSION_TABLE}",
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
