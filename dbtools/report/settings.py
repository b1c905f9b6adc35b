"""Settings review: the server settings that matter for this workload, where each value comes
from (``pg_settings.source``), and a hedged note where a value is known to hurt.

``read_settings`` reads them in one query (a setting the server does not have, such as
``pg_stat_statements.*`` when the module is not loaded, is simply absent). ``review_settings``
(pure) adds the notes, each a rule of thumb worded as one: the report never knows the machine's
memory or disks, so it says what a value commonly means and what to check, never what to set.
Some notes draw on the statistics the report read (temporary blocks written, evicted
pg_stat_statements entries, connections in use).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import class_row

from dbtools.db.connection import SQL_MARKER
from dbtools.report.sections import Section
from dbtools.report.subjects import Building, Subject

REVIEWED = (
    "shared_buffers",
    "work_mem",
    "effective_cache_size",
    "random_page_cost",
    "max_connections",
    "autovacuum_max_workers",
    "autovacuum_vacuum_cost_limit",
    "autovacuum_vacuum_cost_delay",
    "vacuum_cost_limit",
    "pg_stat_statements.max",
    "pg_stat_statements.track",
    "pg_stat_statements.track_planning",
    "track_io_timing",
)

SETTINGS_SQL = f"""
SELECT {SQL_MARKER} s.name::text, current_setting(s.name) AS value, s.setting, s.unit,
       s.source, s.boot_val, s.pending_restart
FROM pg_catalog.pg_settings s
WHERE s.name = ANY(%(names)s)
"""


@dataclass(frozen=True)
class ServerSetting:
    """One row of ``pg_settings``: ``value`` as ``SHOW`` prints it (with its unit)."""

    name: str
    value: str
    setting: str
    unit: str | None
    source: str
    boot_val: str | None
    pending_restart: bool

    @property
    def is_default(self) -> bool:
        return self.source == "default" or self.setting == self.boot_val


def read_settings(conn: psycopg.Connection[Any]) -> tuple[ServerSetting, ...]:
    """The reviewed settings the server has, in ``REVIEWED``'s order (one query)."""
    with conn.cursor(row_factory=class_row(ServerSetting)) as cur:
        found = {s.name: s for s in cur.execute(SETTINGS_SQL, {"names": list(REVIEWED)})}
    return tuple(found[name] for name in REVIEWED if name in found)


@dataclass(frozen=True)
class WorkloadFacts:
    """What the rest of the report knows that bears on the settings."""

    temp_blocks_written: int = 0  # by the statements, in the report's last period
    statements_spilling: int = 0  # statements that wrote temporary blocks
    pgss_entries: int | None = None  # pg_stat_statements entries visible now
    pgss_dealloc: int | None = None  # entries evicted since the last reset (14+)
    client_connections: int | None = None  # only with --live


@dataclass(frozen=True)
class SettingLine:
    name: str
    value: str
    source: str
    note: str  # "" when nothing is known to hurt


@dataclass(frozen=True)
class SettingsReview:
    settings: tuple[SettingLine, ...]


def _number(setting: ServerSetting) -> float:
    try:
        return float(setting.setting)
    except ValueError:
        return float("nan")


Note = Callable[[ServerSetting, dict[str, ServerSetting], WorkloadFacts], str]


def _shared_buffers(s: ServerSetting, _: dict[str, ServerSetting], __: WorkloadFacts) -> str:
    if s.is_default:
        return (
            "the compiled-in default (128 MB); on a dedicated server it is commonly sized "
            "nearer a quarter of RAM: check the machine's memory"
        )
    return ""


def _work_mem(s: ServerSetting, _: dict[str, ServerSetting], facts: WorkloadFacts) -> str:
    if facts.temp_blocks_written:
        return (
            f"{facts.statements_spilling} statements wrote {facts.temp_blocks_written:,} "
            "temporary blocks: sorts or hashes spilled to disk; a larger work_mem (for a role "
            "or a query) may keep them in memory. It is per sort or hash node, per connection"
        )
    return ""


def _effective_cache_size(
    s: ServerSetting, settings: dict[str, ServerSetting], _: WorkloadFacts
) -> str:
    shared = settings.get("shared_buffers")
    if shared is not None and _number(s) <= _number(shared):
        return (
            "not above shared_buffers: the planner assumes almost no OS cache and may shy away "
            "from index scans; it is commonly set to half to three quarters of RAM"
        )
    return ""


def _random_page_cost(s: ServerSetting, _: dict[str, ServerSetting], __: WorkloadFacts) -> str:
    if _number(s) >= 4:
        return (
            "the default suits spinning disks; on SSDs or a mostly cached database values "
            "near 1.1 to 2 are commonly used, and make index scans look cheaper"
        )
    return ""


def _max_connections(s: ServerSetting, _: dict[str, ServerSetting], facts: WorkloadFacts) -> str:
    notes = []
    if facts.client_connections is not None and _number(s):
        share = facts.client_connections / _number(s)
        notes.append(f"{facts.client_connections} client connections now ({share:.0%})")
    if _number(s) > 500:
        notes.append(
            "many connections: each backend costs memory and snapshots grow; a connection "
            "pooler often serves better"
        )
    return "; ".join(notes)


def _cost_limit(s: ServerSetting, settings: dict[str, ServerSetting], __: WorkloadFacts) -> str:
    limit = _number(s)
    if limit == -1:
        base = settings.get("vacuum_cost_limit")
        limit = _number(base) if base else 200
    if limit <= 200:
        return (
            f"autovacuum works at a cost limit of {limit:.0f} (the default): on large or busy "
            "tables it can fall behind (see the autovacuum health findings)"
        )
    return ""


def _pgss_max(s: ServerSetting, _: dict[str, ServerSetting], facts: WorkloadFacts) -> str:
    notes = []
    if facts.pgss_dealloc:
        notes.append(
            f"{facts.pgss_dealloc:,} entries were evicted since the last reset: statements "
            "seen rarely are lost and windows may not add up; a larger value may help"
        )
    if facts.pgss_entries is not None and facts.pgss_entries >= 0.9 * _number(s):
        notes.append(f"{facts.pgss_entries:,} entries: close to the maximum")
    return "; ".join(notes)


def _pgss_track(s: ServerSetting, _: dict[str, ServerSetting], __: WorkloadFacts) -> str:
    if s.setting == "none":
        return "nothing is counted: statements run and no window can measure them"
    if s.setting == "top":
        return "statements run inside functions are not counted (only top-level ones)"
    return ""


def _track_planning(s: ServerSetting, _: dict[str, ServerSetting], __: WorkloadFacts) -> str:
    if s.setting == "off":
        return "planning is not counted: plans and planning time read zero"
    return ""


def _track_io_timing(s: ServerSetting, _: dict[str, ServerSetting], __: WorkloadFacts) -> str:
    if s.setting == "off":
        return (
            "block read and write times read zero; timing costs little on most platforms "
            "(pg_test_timing measures it)"
        )
    return ""


NOTES: dict[str, Note] = {
    "shared_buffers": _shared_buffers,
    "work_mem": _work_mem,
    "effective_cache_size": _effective_cache_size,
    "random_page_cost": _random_page_cost,
    "max_connections": _max_connections,
    "autovacuum_vacuum_cost_limit": _cost_limit,
    "pg_stat_statements.max": _pgss_max,
    "pg_stat_statements.track": _pgss_track,
    "pg_stat_statements.track_planning": _track_planning,
    "track_io_timing": _track_io_timing,
}


def review_settings(settings: tuple[ServerSetting, ...], facts: WorkloadFacts) -> SettingsReview:
    """Each setting with its value, source and note (pure)."""
    by_name = {s.name: s for s in settings}
    lines = []
    for s in settings:
        note = NOTES[s.name](s, by_name, facts) if s.name in NOTES else ""
        if s.pending_restart:
            note = "; ".join(filter(None, [note, "changed, waiting for a restart"]))
        lines.append(SettingLine(s.name, s.value, s.source, note))
    return SettingsReview(tuple(lines))


# -- its sections -------------------------------------------------------------------------------


def settings_review(review: SettingsReview) -> Section:
    return Section(
        "settings",
        "Settings",
        "The settings that matter for this workload, their values and where they come from "
        "(pg_settings.source). Notes are rules of thumb, not prescriptions: the report does "
        "not know the machine's memory or disks.",
        ["setting", "value", "source", "note"],
        [[s.name, s.value, s.source, s.note] for s in review.settings],
    )


# -- the subject ------------------------------------------------------------------------------------


def workload_facts(building: Building) -> WorkloadFacts:
    """What the statistics (and the activity, when read) say that bears on the settings."""
    spilling = [row for row in building.statements if row.temp_blks_written > 0]
    header = building.state.header
    activity = building.found.get("activity")
    return WorkloadFacts(
        temp_blocks_written=sum(row.temp_blks_written for row in spilling),
        statements_spilling=len(spilling),
        pgss_entries=len(building.state.statements) + header.hidden_statements,
        pgss_dealloc=header.pgss_dealloc,
        client_connections=sum(1 for b in activity.backends if b.backend_type == "client backend")
        if activity
        else None,
    )


SUBJECT = Subject(
    name="settings",
    key="settings",
    settings=lambda: None,  # nothing to set
    read=lambda reading: read_settings(reading.conn),
    build=lambda found, building: review_settings(found, workload_facts(building)),
    sections=(settings_review,),
    place=50,
)
