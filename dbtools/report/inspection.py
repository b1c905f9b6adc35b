"""What the report reads from the database beyond the statistics, and the sections built from it:
activity (``--live`` only), space, settings, plans, index advice, schema health, and the
pg_stat_statements columns snapshots do not store.

``inspect`` reads (on the report's read-only session, with a short lock timeout so that no
catalog read queues behind DDL); ``build_inspection`` (pure) turns what it read into the
report's sections. Each section can be left out (``InspectionOptions.sections``). Timelines
from collected samples (``dbtools collect``) are not here yet: they will read the samples, not
the live database.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from dbtools.db.connection import SQL_MARKER
from dbtools.db.server import inspect_server, major_of
from dbtools.errors import PrerequisiteMissing
from dbtools.findings import Finding
from dbtools.reading.columns import statement_columns
from dbtools.reading.live import read_unstored
from dbtools.reading.rows import Snapshot, StatementRow
from dbtools.report import activity, advice, plans, schema_health, settings, space
from dbtools.report.health import table_name

SECTIONS = ("activity", "space", "settings", "plans", "advice", "schema")
Key = tuple[int, int, int, bool]


@dataclass(frozen=True)
class InspectionOptions:
    """Which sections are read, and each one's settings."""

    sections: frozenset[str] = frozenset(SECTIONS)  # activity only ever with --live
    activity: activity.ActivitySettings = field(default_factory=activity.ActivitySettings)
    space: space.SpaceSettings = field(default_factory=space.SpaceSettings)
    plans: plans.PlanSettings = field(default_factory=plans.PlanSettings)
    advice: advice.AdviceSettings = field(default_factory=advice.AdviceSettings)
    schema: schema_health.SchemaSettings = field(default_factory=schema_health.SchemaSettings)
    lock_timeout: str = "2s"

    def without(self, skipped: Collection[str]) -> InspectionOptions:
        """These options with the *skipped* sections left out."""
        from dataclasses import replace

        return replace(self, sections=self.sections - frozenset(skipped))


@dataclass(frozen=True)
class Inspection:
    """What ``inspect`` read; None for a section left out."""

    major: int
    activity: activity.ActivityFacts | None = None
    space: space.SpaceFacts | None = None
    settings: tuple[settings.ServerSetting, ...] | None = None
    plans: tuple[plans.Explained, ...] | None = None
    advice: advice.AdviceFacts | None = None
    schema: schema_health.SchemaFacts | None = None
    unstored_columns: Mapping[Key, Mapping[str, Any]] = field(default_factory=dict)


def table_rows(state: Snapshot) -> dict[str, int]:
    """Live rows per table (``schema.table``), from the statistics."""
    return {table_name(row): row.n_live_tup for row in state.tables}


def large_scans(
    explained: Sequence[plans.Explained], rows: Mapping[str, int], large_table_rows: int
) -> dict[int, list[tuple[str, str | None]]]:
    """queryid → (table, alias) of each sequential scan over a large table in its plan."""
    found: dict[int, list[tuple[str, str | None]]] = {}
    for e in explained:
        aliases = {n.relation: n.alias for n in e.nodes if n.relation}
        for scan in plans.seq_scans(e.nodes, rows, large_table_rows):
            if scan.large:
                found.setdefault(e.queryid, []).append((scan.table, aliases.get(scan.table)))
    return found


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
    """Read every section in ``options.sections`` (activity only when *live*); *statements*
    are the rows whose costliest are planned (the report's last period). Read-only."""
    wanted = options.sections
    major = major_of(state.header.server_version_num)
    conn.execute(f"SET {SQL_MARKER} lock_timeout = '{options.lock_timeout}'")
    try:
        explained = (
            plans.plan_statements(conn, statements, major, options.plans)
            if "plans" in wanted or "advice" in wanted
            else None
        )
        tried = None
        if "advice" in wanted and explained is not None:
            scans = large_scans(explained, table_rows(state), large_table_rows)
            tried = advice.try_candidates(
                conn, explained, scans, state.indexes, options.advice, options.plans
            )
        return Inspection(
            major=major,
            activity=activity.read_activity(conn) if live and "activity" in wanted else None,
            space=space.read_space(conn, options.space) if "space" in wanted else None,
            settings=settings.read_settings(conn) if "settings" in wanted else None,
            plans=explained if "plans" in wanted else None,
            advice=tried,
            schema=schema_health.read_schema_facts(conn, options.schema)
            if "schema" in wanted
            else None,
            unstored_columns=unstored_columns(conn),
        )
    finally:
        conn.execute(f"RESET {SQL_MARKER} lock_timeout")


# -- building (pure) -------------------------------------------------------------------------------


@dataclass(frozen=True)
class InspectionSections:
    """The report's sections built from an inspection (None: not read)."""

    activity: activity.Activity | None = None
    space: space.SpaceReport | None = None
    settings: settings.SettingsReview | None = None
    plans: plans.PlanReport | None = None
    index_advice: advice.AdviceReport | None = None
    schema_health: tuple[Finding, ...] | None = None


def workload_facts(
    found: Inspection, state: Snapshot, statements: Sequence[StatementRow]
) -> settings.WorkloadFacts:
    """What the statistics say that bears on the settings."""
    spilling = [row for row in statements if row.temp_blks_written > 0]
    header = state.header
    return settings.WorkloadFacts(
        temp_blocks_written=sum(row.temp_blks_written for row in spilling),
        statements_spilling=len(spilling),
        pgss_entries=len(state.statements) + header.hidden_statements,
        pgss_dealloc=header.pgss_dealloc,
        client_connections=sum(
            1 for b in found.activity.backends if b.backend_type == "client backend"
        )
        if found.activity
        else None,
    )


def build_inspection(
    found: Inspection,
    options: InspectionOptions,
    state: Snapshot,
    statements: Sequence[StatementRow],
    *,
    large_table_rows: int,
) -> InspectionSections:
    """The sections of what ``inspect`` read (pure)."""
    explained = found.plans or ()
    plan_report = (
        plans.build_plans(explained, found.major, table_rows(state), large_table_rows)
        if found.plans is not None
        else None
    )
    index_advice = None
    if found.advice is not None:
        unplanned = sum(1 for e in explained if e.status != "planned")
        queries = {e.queryid: e.query for e in explained}
        index_advice = advice.build_advice(
            found.advice, queries, options.advice, found.major, unplanned
        )
    return InspectionSections(
        activity=activity.build_activity(found.activity, options.activity)
        if found.activity
        else None,
        space=space.build_space(found.space, options.space) if found.space else None,
        settings=settings.review_settings(found.settings, workload_facts(found, state, statements))
        if found.settings is not None
        else None,
        plans=plan_report,
        index_advice=index_advice,
        schema_health=schema_health.schema_health(found.schema) if found.schema else None,
    )
