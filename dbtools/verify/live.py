"""The objects the migrations create, as the catalog has them when verify runs, with what the
database's revision expects of them (its manifest).

Reading a central store needs no session to the target (``reading``): without one (its DSN not
known) the checks of the live objects (``LIVE_CHECKS``) come back ``skipped``, saying why
(``unjudged``), and everything judged from the stored windows stands."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg

from dbtools.db.catalog import read_alembic_revision, read_objects, split_qualified
from dbtools.db.connection import session
from dbtools.db.errors import translated_errors
from dbtools.errors import PrerequisiteMissing
from dbtools.findings import Finding
from dbtools.reading.rows import parse_reloptions
from dbtools.schema import monitoring
from dbtools.schema.manifest import Manifest, head_revision, manifest_at
from dbtools.store import Store, open_store

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
    skipped: str | None = None  # why the objects were not read: no session to the target

    @classmethod
    def unread(cls, reason: str) -> LiveState:
        """No live state: the target could not be asked (*reason*); its checks are skipped."""
        head = head_revision()
        return cls(None, head, manifest_at(head), skipped=reason)


# The checks of the live objects (verify's, after a rollback's, the canary's).
LIVE_CHECKS = frozenset(
    {"schema_at_head", "schema_revision", "batch_indexes", "autovacuum_settings",
     "monitoring_tables"}
)  # fmt: skip


def unjudged(findings: Iterable[Finding], live: LiveState) -> list[Finding]:
    """*findings*, those of ``LIVE_CHECKS`` skipped (saying why) when *live* was not read."""
    if live.skipped is None:
        return list(findings)
    return [
        Finding(f.check, "skipped", f.subject, "not checked: no session to the target",
                because=live.skipped)
        if f.check in LIVE_CHECKS and f.status != "skipped"
        else f
        for f in findings
    ]  # fmt: skip


@contextmanager
def reading(
    dsn: str | None, store: str | None, target: str | None
) -> Iterator[tuple[psycopg.Connection[Any] | None, Store, LiveState]]:
    """The target's read-only session (None without *dsn*: a central *store* alone is read),
    the store of its samples (``open_store``), and its live state (``LiveState.unread`` without
    a session)."""
    with ExitStack() as stack:
        conn = stack.enter_context(session(dsn, autocommit=True)) if dsn is not None else None
        stored = stack.enter_context(open_store(conn, store))
        if conn is None:
            live = LiveState.unread(
                f"the DSN of {f'target {target}' if target else 'the target'} is not known: "
                "give --dsn, or --targets with a file naming it"
            )
        else:
            with translated_errors("reading the schema"):
                live = read_live_state(conn)
        yield conn, stored, live


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
