"""What the report reads beyond the statistics: every registered subject (``report.subjects``:
activity, plans, index advice, space, settings, schema health from the database; timelines from
the store) and the pg_stat_statements columns snapshots do not store; and every subject's model
(those of the windows too: statements, lookups, families, health).

``inspect`` reads (on the report's read-only session, with a short lock timeout so that no
catalog read queues behind DDL) what each subject in ``InspectionOptions.sections`` reads;
``read_stored`` reads what each subject that reads the store's samples (``dbtools collect``)
reads; ``build_inspection`` (pure) turns what each read into its model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from dbtools.db.connection import SQL_MARKER
from dbtools.db.server import inspect_server, major_of
from dbtools.errors import PrerequisiteMissing
from dbtools.reading.columns import statement_columns
from dbtools.reading.live import read_unstored
from dbtools.reading.rows import Snapshot, StatementRow
from dbtools.report.subjects import (
    Building,
    InspectionOptions,
    Reading,
    StoreReading,
    subjects,
)

Key = tuple[int, int, int, bool]


@dataclass(frozen=True)
class Inspection:
    """What ``inspect`` read: each subject's facts by name (absent: left out)."""

    major: int
    found: Mapping[str, Any] = field(default_factory=dict)
    unstored_columns: Mapping[Key, Mapping[str, Any]] = field(default_factory=dict)


def unstored_columns(conn: psycopg.Connection[Any]) -> dict[Key, dict[str, Any]]:
    """The pg_stat_statements columns snapshots do not store, live; none without the extension
    (a window report can be read where it is missing)."""
    try:
        columns = statement_columns(inspect_server(conn))
    except PrerequisiteMissing:
        return {}
    return read_unstored(conn, columns)


def inspect(
    conn: psycopg.Connection[Any],
    state: Snapshot,
    statements: Sequence[StatementRow],
    options: InspectionOptions,
    *,
    live: bool,
    large_table_rows: int,
) -> Inspection:
    """Read every subject in ``options.sections`` (those ``live_only`` only when *live*);
    *statements* are the rows whose costliest are planned (the report's last period).
    Read-only."""
    major = major_of(state.header.server_version_num)
    reading = Reading(conn, state, statements, options, major, large_table_rows)
    conn.execute(f"SET {SQL_MARKER} lock_timeout = '{options.lock_timeout}'")
    try:
        found = {
            subject.name: subject.read(reading)
            for subject in subjects("database")
            if options.reads(subject.name) and (live or not subject.live_only)
        }
        return Inspection(major=major, found=found, unstored_columns=unstored_columns(conn))
    finally:
        conn.execute(f"RESET {SQL_MARKER} lock_timeout")


def read_stored(reading: StoreReading) -> dict[str, Any]:
    """What each subject that reads the store, in ``reading.options.sections``, read."""
    return {
        subject.name: subject.read(reading)
        for subject in subjects("store")
        if reading.options.reads(subject.name)
    }


def build_inspection(
    found: Inspection | None,
    options: InspectionOptions,
    state: Snapshot,
    statements: Sequence[StatementRow],
    *,
    large_table_rows: int,
    stored: Mapping[str, Any] | None = None,
    windows: Any = None,
) -> dict[str, Any]:
    """Each subject's model by its key (None: not read), in the registry's order (pure);
    *stored*: what the subjects that read the store read (``read_stored``); *windows*: what the
    subjects of the windows read (``model.WindowsReading``), when given."""
    facts = {**(found.found if found else {}), **(stored or {})}
    if windows is not None:
        facts.update(
            (subject.name, subject.read(windows))
            for subject in subjects("windows")
            if options.reads(subject.name)
        )
    building = Building(
        facts, options, state, statements, found.major if found else 0, large_table_rows
    )
    return {
        subject.key: subject.build(facts[subject.name], building)
        if facts.get(subject.name) is not None
        else None
        for subject in subjects()
    }
