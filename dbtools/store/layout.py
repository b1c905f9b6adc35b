"""The store's layout: which monitoring tables and columns a database has (its revision decides).

Revision 0002 creates the tables snapshots are written to; 0004 stores texts once per statement
(``statement_texts``); 0005 keys everything by target and stores compact samples
(``store.compact``), below it every snapshot is a full copy (``store.full_copies``). Only the
store (``store.Store``) looks at a layout.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from dbtools.db.catalog import read_alembic_revision
from dbtools.db.connection import SQL_MARKER
from dbtools.errors import PrerequisiteMissing
from dbtools.schema import monitoring
from dbtools.schema.manifest import head_revision, manifest_at

# The tables a snapshot writes: revision 0002 creates them (0004 adds statement_texts, used
# where the database has it; 0005 keeps their names).
SNAPSHOT_TABLES = (
    monitoring.SNAPSHOTS,
    monitoring.STATEMENT_STATS,
    monitoring.TABLE_STATS,
    monitoring.INDEX_STATS,
    monitoring.DATABASE_STATS,
)

# -- the layout --------------------------------------------------------------------

LAYOUT_SQL = sql.SQL(
    """SELECT {marker} c.relname::text, array_agg(a.attname::text ORDER BY a.attnum)
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND a.attnum > 0 AND NOT a.attisdropped
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

    def columns_of(self, table: str) -> tuple[str, ...]:
        """The columns *table* has, in order (a layout read from a database: ``read_layout``)."""
        assert self.columns is not None, "the head layout lists no columns: read_layout"
        return self.columns.get(table, ())

    @property
    def texts_stored_apart(self) -> bool:
        """Whether texts are in ``statement_texts`` (revision 0004 on)."""
        return self.has(monitoring.STATEMENT_TEXTS)

    @property
    def samples(self) -> bool:
        """Whether snapshots are compact samples keyed by target (revision 0005 on: the storage
        of ``store.compact``); False: ``store.full_copies`` (0002–0004). The one test every
        writer and reader of snapshots dispatches on."""
        return self.has(monitoring.SNAPSHOTS, "target")

    @property
    def by_day(self) -> bool:
        """Whether a sample's rows are stored in its day's partition (revision 0008 on:
        ``sample_day``), so that retention drops whole days."""
        return self.has(monitoring.STATEMENT_STATS, "sample_day")


HEAD_LAYOUT = Layout()


def read_layout(conn: psycopg.Connection[Any]) -> Layout:
    """The monitoring tables' columns in the connected database (one query)."""
    rows = conn.execute(LAYOUT_SQL, {"schema": monitoring.MONITORING_SCHEMA}).fetchall()
    return Layout({table: tuple(columns) for table, columns in rows})


def or_null(
    layout: Layout, table: str, names: Iterable[str], prefix: str | None = None
) -> sql.Composed:
    """The columns *names* of *table*, NULL for those its revision lacks."""
    return sql.SQL(", ").join(
        (sql.Identifier(prefix, name) if prefix else sql.Identifier(name))
        if layout.has(table, name)
        else sql.SQL("NULL AS {}").format(sql.Identifier(name))
        for name in names
    )


# -- the revision's tables ----------------------------------------------------------------------


def require_monitoring_tables(revision: str | None, where: str = "the database") -> None:
    """Raise ``PrerequisiteMissing`` unless the database's revision has the tables a snapshot
    writes (its manifest's; revision 0002 on), ``ConfigError`` for a revision these migrations
    do not know. Any such revision will do: a snapshot stores what its tables hold. *where*
    names the database in the message (a central store is not the target)."""
    have = set(manifest_at(revision).monitoring_tables)
    missing = [table for table in SNAPSHOT_TABLES if table not in have]
    if missing:
        state = "was never migrated" if revision is None else f"is at revision {revision}"
        raise PrerequisiteMissing(
            f"{where} {state}, which has no {monitoring.monitoring_table(missing[0])} to "
            "store snapshots in: run alembic upgrade head first"
        )


def storage(conn: psycopg.Connection[Any]) -> tuple[str | None, Layout]:
    """The repository's revision and the layout of its monitoring tables: ``layout.samples``
    says whether snapshots are compact samples (0005 on) or ``store.full_copies``.

    Raises ``PrerequisiteMissing`` without the monitoring tables (before revision 0002).
    """
    revision = read_alembic_revision(conn)
    require_monitoring_tables(revision)
    # At head the tables are this dbtools' own; below it, read what they are (one query).
    return revision, HEAD_LAYOUT if revision == head_revision() else read_layout(conn)


def require_samples(conn: psycopg.Connection[Any], purpose: str) -> None:
    """Raise ``PrerequisiteMissing`` unless the repository stores compact samples (revision
    0005 on), which *purpose* needs (a collector, a central repository, a named target)."""
    revision, layout = storage(conn)
    if not layout.samples:
        raise PrerequisiteMissing(
            f"{purpose} needs revision 0005 (samples keyed by target); the database is at "
            f"revision {revision}: run alembic upgrade head first"
        )
