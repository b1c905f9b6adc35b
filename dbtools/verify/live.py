"""The objects the migrations create, as the catalog has them when verify runs, with what the
database's revision expects of them (its manifest)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg

from dbtools.db.catalog import read_alembic_revision, read_objects, split_qualified
from dbtools.errors import PrerequisiteMissing
from dbtools.reading.rows import parse_reloptions
from dbtools.schema import monitoring
from dbtools.schema.manifest import Manifest, head_revision, manifest_at

# The monitoring tables verify reads; without them there is nothing to verify (exit 2).
REQUIRED_TABLES = (
    monitoring.SNAPSHOTS,
    monitoring.STATEMENT_STATS,
    monitoring.TABLE_STATS,
    monitoring.INDEX_STATS,
    monitoring.DATABASE_STATS,
    monitoring.REQUEST_METRICS,
)


@dataclass(frozen=True)
class IndexState:
    """An expected index as the catalog has it now."""

    is_valid: bool
    is_ready: bool


@dataclass(frozen=True)
class LiveState:
    """The objects the migrations create, as they are when verify runs, and *manifest*: what
    the revisions up to ``alembic_revision`` create. Keys are ``schema.name`` (unquoted); a
    missing key means the object does not exist."""

    alembic_revision: str | None
    head_revision: str
    manifest: Manifest
    indexes: Mapping[str, IndexState] = field(default_factory=dict)
    table_options: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    monitoring_tables: frozenset[str] = frozenset()


def read_live_state(conn: psycopg.Connection[Any]) -> LiveState:
    """The alembic revision, its manifest, and the manifest's batch indexes, autovacuum tables
    and monitoring tables as they are now.

    Raises ``PrerequisiteMissing`` when a monitoring table verify reads is missing,
    ``ConfigError`` when the database is at a revision the migrations do not know.
    """
    revision = read_alembic_revision(conn)
    manifest = manifest_at(revision)
    tables = [
        *(split_qualified(table) for table in manifest.tables),
        *((monitoring.MONITORING_SCHEMA, table) for table in REQUIRED_TABLES),
    ]
    found = read_objects(
        conn,
        [
            *tables,
            *((spec.schema, spec.table) for spec in manifest.table_settings),
            *((index.schema, index.name) for index in manifest.batch_indexes),
        ],
    )
    present = frozenset(
        name
        for schema, name in tables
        if schema == monitoring.MONITORING_SCHEMA and f"{schema}.{name}" in found
    )
    missing = [name for name in REQUIRED_TABLES if name not in present]
    if missing:
        raise PrerequisiteMissing(
            f"the monitoring table {monitoring.monitoring_table(missing[0])} is missing, so "
            "there are no snapshots to verify: run alembic upgrade head, then take snapshots"
        )
    return LiveState(
        alembic_revision=revision,
        head_revision=head_revision(),
        manifest=manifest,
        indexes={
            name: IndexState(bool(row.is_valid), bool(row.is_ready))
            for name, row in found.items()
            if row.kind == "i"
        },
        table_options={
            name: parse_reloptions(found[name].reloptions)
            for spec in manifest.table_settings
            if (name := f"{spec.schema}.{spec.table}") in found
        },
        monitoring_tables=present,
    )
