"""Named objects in the catalog, and the database's Alembic revision (the one place that reads
it): read in one query each; identifiers quoted and split as PostgreSQL does."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import class_row

from dbtools.db.connection import SQL_MARKER

# An identifier as SQL text writes it: quoted (quotes doubled inside), or a bare word.
IDENTIFIER = re.compile(r'"(?:[^"]|"")+"|[^".\s]+')


def quote_ident(name: str) -> str:
    """Quote *name* as a PostgreSQL identifier (only when needed, as ``quote_ident`` does)."""
    if name.isidentifier() and name == name.lower() and name.isascii():
        return name
    return '"' + name.replace('"', '""') + '"'


def qualified(schema: str, name: str) -> str:
    """``schema.name``, each part quoted when needed."""
    return f"{quote_ident(schema)}.{quote_ident(name)}"


def unquote_ident(text: str) -> str:
    """An identifier as SQL text writes it (``"My Table"``, ``orders``) back to its name."""
    return text[1:-1].replace('""', '"') if text.startswith('"') else text


def split_qualified(name: str) -> tuple[str, str]:
    """``schema.name`` (as ``qualified`` writes it) back into its unquoted parts.

    Raises ``ValueError`` when *name* is not a schema-qualified identifier.
    """
    parts = IDENTIFIER.findall(name)
    if len(parts) != 2 or ".".join(parts) != name:
        raise ValueError(f"not a schema-qualified name: {name!r}")
    return unquote_ident(parts[0]), unquote_ident(parts[1])


ALEMBIC_VERSION_TABLE = "public.alembic_version"
# Whether it exists, asked of the catalog: to_regclass() needs USAGE on the schema and raises
# without it (a hardened public schema), which is for reading the table to report.
ALEMBIC_TABLE_EXISTS = """EXISTS (SELECT FROM pg_catalog.pg_class c
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relname = 'alembic_version')"""
ALEMBIC_TABLE_SQL = f"SELECT {SQL_MARKER} {ALEMBIC_TABLE_EXISTS}"
ALEMBIC_REVISION_SQL = f"""
SELECT {SQL_MARKER} string_agg(version_num, ',' ORDER BY version_num) AS revision
FROM {ALEMBIC_VERSION_TABLE}
"""


def read_alembic_revision(
    conn: psycopg.Connection[Any], *, table_exists: bool | None = None
) -> str | None:
    """The database's Alembic revision: comma-separated when branches are applied; None when it
    was never migrated (no ``alembic_version`` table, or no row: the base).

    *table_exists*: whether ``public.alembic_version`` exists, when the caller already knows
    (``ServerInfo.has_alembic_version``, a catalog lookup); it saves a query.
    """
    if table_exists is None:
        found = conn.execute(ALEMBIC_TABLE_SQL).fetchone()
        table_exists = bool(found and found[0])
    if not table_exists:
        return None
    row = conn.execute(ALEMBIC_REVISION_SQL).fetchone()
    return None if row is None else row[0]


ROLES_SQL = f"SELECT {SQL_MARKER} rolname::text FROM pg_catalog.pg_roles WHERE rolname = ANY(%s)"


def existing_roles(conn: psycopg.Connection[Any], names: Iterable[str]) -> frozenset[str]:
    """The roles among *names* that exist (one query)."""
    return frozenset(row[0] for row in conn.execute(ROLES_SQL, (list(names),)))


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
