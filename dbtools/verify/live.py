"""The objects the migrations create, as the catalog has them when verify runs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg

from dbtools.db.catalog import read_alembic_revision, read_objects
from dbtools.errors import PrerequisiteMissing
from dbtools.schema import objects
from dbtools.schema.revisions import head_revision
from dbtools.stats.rows import parse_reloptions

# The monitoring tables verify reads; without them there is nothing to verify (exit 2).
REQUIRED_TABLES = (
    objects.snapshots.name,
    objects.statement_stats.name,
    objects.table_stats.name,
    objects.index_stats.name,
    objects.database_stats.name,
    objects.request_metrics.name,
)


@dataclass(frozen=True)
class IndexState:
    """An expected index as the catalog has it now."""

    is_valid: bool
    is_ready: bool


@dataclass(frozen=True)
class LiveState:
    """The objects the migrations create, as they are when verify runs. Keys are
    ``schema.name``; a missing key (or None) means the object does not exist."""

    alembic_revision: str | None
    head_revision: str
    indexes: Mapping[str, IndexState] = field(default_factory=dict)
    table_options: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    monitoring_tables: frozenset[str] = frozenset()


def read_live_state(conn: psycopg.Connection[Any]) -> LiveState:
    """The alembic revision, batch indexes, autovacuum tables and monitoring tables, now.

    Raises ``PrerequisiteMissing`` when a monitoring table verify reads is missing.
    """
    alembic = ("public", "alembic_version")
    names = [
        alembic,
        *((spec.schema, spec.name) for spec in objects.BATCH_INDEXES),
        *((spec.schema, spec.table) for spec in objects.AUTOVACUUM_SETTINGS),
        *((objects.MONITORING_SCHEMA, table) for table in objects.MONITORING_TABLES),
    ]
    found = read_objects(conn, names)
    present = frozenset(
        name for name in objects.MONITORING_TABLES if f"{objects.MONITORING_SCHEMA}.{name}" in found
    )
    missing = [name for name in REQUIRED_TABLES if name not in present]
    if missing:
        raise PrerequisiteMissing(
            f"the monitoring table {objects.MONITORING_SCHEMA}.{missing[0]} is missing, so there "
            "are no snapshots to verify: run alembic upgrade head, then take snapshots"
        )
    return LiveState(
        alembic_revision=read_alembic_revision(
            conn, table_exists="public.alembic_version" in found
        ),
        head_revision=head_revision(),
        indexes={
            name: IndexState(bool(row.is_valid), bool(row.is_ready))
            for name, row in found.items()
            if row.kind == "i"
        },
        table_options={
            f"{spec.schema}.{spec.table}": parse_reloptions(found[name].reloptions)
            for spec in objects.AUTOVACUUM_SETTINGS
            if (name := f"{spec.schema}.{spec.table}") in found
        },
        monitoring_tables=present,
    )
