"""The report as data: built (purely) from periods of statistics, rendered by the renderers.

A *period* is one column of the report: a window's deltas (``dbtools.stats.measures``), or the live
totals since the statistics were last reset. One period, or two (baseline and candidate: the
report then shows the change). Health (index and autovacuum) is judged on the latest snapshot,
with cumulative counters, plus the catalog facts ``health.read_catalog`` reads.

Every query text in a ``Report`` has been through ``sqltext.scrub.scrub_query``: renderers may show
any text in it. Nothing here reads a clock or a database: the same input gives the same report.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from dbtools.db.server import version_text
from dbtools.findings import Finding
from dbtools.output import SCHEMA_VERSIONS
from dbtools.report import health
from dbtools.schema.manifest import Manifest, TableSettings, setting_differences
from dbtools.sqltext.families import Classifier, NPlusOne, StatementShape, is_n_plus_one
from dbtools.stats.deltas import statement_key
from dbtools.stats.measures import (
    Scope,
    WindowMeasures,
    application_rows,
    buffer_cache_hit_ratio,
    count_statements,
    heap_hit_ratio,
    index_hit_ratio,
    is_application,
    measure_window,
    per_request,
    query_reduction,
    ratio,
    statement_hit_ratio,
)
from dbtools.stats.rows import DatabaseRow, IndexRow, Snapshot, StatementRow, TableRow
from dbtools.stats.snapshots import Window

LIVE = "live"
Source = Literal["window", "comparison", "live"]


@dataclass(frozen=True)
class ReportOptions:
    """How much the report shows and where its N+1 line is drawn."""

    top_statements: int = 20
    top_families: int = 30
    n_plus_one: NPlusOne = field(default_factory=NPlusOne)
    health: health.HealthSettings = field(default_factory=health.HealthSettings)


# -- input ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """The rows one report column is built from (window deltas, or live totals)."""

    name: str
    label: str
    started_at: datetime | None
    ended_at: datetime
    statements: tuple[StatementRow, ...]
    tables: tuple[TableRow, ...]
    indexes: tuple[IndexRow, ...]
    database: DatabaseRow | None
    measures: WindowMeasures | None = None  # a window's figures, as verify computes them


def period_from_window(window: Window, name: str | None = None) -> Period:
    """A window's deltas (``window.deltas``, computed once), with the figures verify computes
    for it."""
    deltas = window.deltas
    return Period(
        name=name or window.ref.name,
        label=str(window.ref),
        started_at=window.start.header.taken_at,
        ended_at=window.end.header.taken_at,
        statements=deltas.statements.rows,
        tables=deltas.tables.rows,
        indexes=deltas.indexes.rows,
        database=deltas.database_row,
        measures=measure_window(window),
    )


def period_from_snapshot(snapshot: Snapshot, name: str = LIVE) -> Period:
    """Live statistics: totals since the statistics were last reset."""
    return Period(
        name=name,
        label="since the statistics were last reset",
        started_at=None,
        ended_at=snapshot.header.taken_at,
        statements=snapshot.statements,
        tables=snapshot.tables,
        indexes=snapshot.indexes,
        database=snapshot.database,
    )


@dataclass(frozen=True)
class ReportInput:
    """Everything a report is built from."""

    source: Source
    periods: tuple[Period, ...]  # one, or (baseline, candidate)
    state: Snapshot  # the latest snapshot: health is judged on it
    catalog: health.Catalog
    target: str  # where the data came from, without any password
    manifest: Manifest  # what the state snapshot's revision sets up (``manifest_at``)


# -- output: the report --------------------------------------------------------------------------


@dataclass(frozen=True)
class PeriodSummary:
    name: str
    label: str
    started_at: datetime | None
    ended_at: datetime
    seconds: float | None
    requests: int | None
    requests_source: str
    queries: int  # application statements called (transaction control and nested left out)
    calls: int  # every visible statement call
    total_time_ms: float
    queries_per_request: float | None
    query_rate: float | None
    buffer_cache_hit_ratio: float | None
    index_hit_ratio: float | None
    table_hit_ratio: float | None
    problems: tuple[str, ...]


@dataclass(frozen=True)
class StatementFigures:
    calls: int
    total_time_ms: float
    mean_time_ms: float | None
    rows_per_call: float | None
    hit_ratio: float | None  # shared buffers
    share_of_time: float | None
    calls_per_request: float | None


@dataclass(frozen=True)
class Change:
    """Candidate against baseline: ``new``, ``gone``, or relative changes (0.5 = +50%)."""

    status: Literal["new", "gone", "changed"]
    calls: float | None = None
    total_time: float | None = None
    mean_time: float | None = None


@dataclass(frozen=True)
class StatementLine:
    queryid: int
    role: str | None
    toplevel: bool
    fingerprint: str
    kind: str
    query: str
    figures: Mapping[str, StatementFigures | None]
    change: Change | None


@dataclass(frozen=True)
class FamilyFigures:
    statements: int
    calls: int
    total_time_ms: float
    share_of_time: float | None
    calls_per_request: float | None


@dataclass(frozen=True)
class FamilyLine:
    fingerprint: str
    kind: str
    parsed: bool
    tables: tuple[str, ...]
    sql: str
    figures: Mapping[str, FamilyFigures | None]


@dataclass(frozen=True)
class Suspect:
    """A point lookup sent per request that one batched ``= ANY($n)`` statement could serve."""

    fingerprint: str
    sql: str
    tables: tuple[str, ...]
    columns: tuple[str, ...]
    batched_sql: str
    batched_family: str | None  # the batched form's family, when it runs too
    figures: Mapping[str, FamilyFigures | None]


@dataclass(frozen=True)
class TableHitLine:
    table: str
    figures: Mapping[str, TableHitFigures]


@dataclass(frozen=True)
class TableHitFigures:
    heap_hit_ratio: float | None
    index_hit_ratio: float | None
    heap_blocks_read: int
    index_blocks_read: int


@dataclass(frozen=True)
class IndexLine:
    index: str
    table: str
    valid: bool
    unique: bool
    size_bytes: int | None
    total_scans: int  # cumulative, at the latest snapshot
    scans: Mapping[str, int | None]  # per period


@dataclass(frozen=True)
class VacuumLine:
    table: str
    live_tuples: int
    dead_tuples: int
    dead_ratio: float | None
    last_vacuum: datetime | None
    last_autovacuum: datetime | None
    last_analyze: datetime | None
    last_autoanalyze: datetime | None
    xid_age: int | None
    settings: Mapping[str, str]
    expected: Literal["ok", "differs", "not declared"]


@dataclass(frozen=True)
class Report:
    title: str
    generated_at: datetime
    source: Source
    target: str
    database: str
    server_version: str
    periods: tuple[PeriodSummary, ...]
    query_reduction: float | None
    top_statements: tuple[StatementLine, ...]
    families: tuple[FamilyLine, ...]
    unparsed: tuple[FamilyLine, ...]
    n_plus_one: tuple[Suspect, ...]
    table_hit_ratios: tuple[TableHitLine, ...]
    indexes: tuple[IndexLine, ...]
    index_health: tuple[Finding, ...]
    autovacuum: tuple[VacuumLine, ...]
    autovacuum_health: tuple[Finding, ...]
    notes: tuple[str, ...]

    @property
    def schema_version(self) -> int:
        """The version of the report's JSON document (``output.SCHEMA_VERSIONS``)."""
        return SCHEMA_VERSIONS["report"]

    @property
    def period_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.periods)


# -- building ------------------------------------------------------------------------------------


def _called(rows: Iterable[StatementRow]) -> tuple[StatementRow, ...]:
    return tuple(row for row in rows if row.calls > 0)


def _requests(period: Period) -> int | None:
    return period.measures.requests if period.measures else None


def _summary(period: Period) -> PeriodSummary:
    measures = period.measures
    counts = count_statements(period.statements, Scope())
    return PeriodSummary(
        name=period.name,
        label=period.label,
        started_at=period.started_at,
        ended_at=period.ended_at,
        seconds=measures.seconds if measures else None,
        requests=measures.requests if measures else None,
        requests_source=measures.requests_source if measures else "none",
        queries=counts.queries,
        calls=sum(row.calls for row in period.statements),
        total_time_ms=sum(row.total_exec_time for row in period.statements),
        queries_per_request=measures.queries_per_request if measures else None,
        query_rate=measures.query_rate if measures else None,
        buffer_cache_hit_ratio=buffer_cache_hit_ratio(counts),
        index_hit_ratio=index_hit_ratio(application_rows(period.indexes)),
        table_hit_ratio=heap_hit_ratio(application_rows(period.tables)),
        problems=measures.problems if measures else (),
    )


def _statement_figures(
    row: StatementRow, total_time: float, requests: int | None
) -> StatementFigures:
    return StatementFigures(
        calls=row.calls,
        total_time_ms=row.total_exec_time,
        mean_time_ms=ratio(row.total_exec_time, row.calls),
        rows_per_call=ratio(row.rows, row.calls),
        hit_ratio=statement_hit_ratio(row),
        share_of_time=ratio(row.total_exec_time, total_time),
        calls_per_request=per_request(row.calls, requests),
    )


def _relative(after: float, before: float) -> float | None:
    return after / before - 1 if before else None


def change_between(
    before: StatementFigures | None, after: StatementFigures | None
) -> Change | None:
    """How a statement changed from the baseline to the candidate."""
    if before is None and after is None:
        return None
    if before is None:
        return Change("new")
    if after is None:
        return Change("gone")
    mean = (
        _relative(after.mean_time_ms, before.mean_time_ms)
        if after.mean_time_ms is not None and before.mean_time_ms is not None
        else None
    )
    return Change(
        "changed",
        calls=_relative(after.calls, before.calls),
        total_time=_relative(after.total_time_ms, before.total_time_ms),
        mean_time=mean,
    )


Key = tuple[int, int, int, bool]


@dataclass
class _Family:
    shape: StatementShape
    rows: dict[str, list[StatementRow]] = field(default_factory=dict)

    def figures(self, name: str, total_time: float, requests: int | None) -> FamilyFigures | None:
        rows = self.rows.get(name)
        if not rows:
            return None
        calls = sum(row.calls for row in rows)
        time = sum(row.total_exec_time for row in rows)
        return FamilyFigures(
            statements=len(rows),
            calls=calls,
            total_time_ms=time,
            share_of_time=ratio(time, total_time),
            calls_per_request=per_request(calls, requests),
        )


def _heaviest_first(times: Mapping[str, float]) -> float:
    return -max(times.values(), default=0.0)


def build_report(
    data: ReportInput,
    options: ReportOptions | None = None,
    *,
    generated_at: datetime,
    classifier: Classifier | None = None,
) -> Report:
    """The report of *data* (pure: *generated_at* is only shown, never read from a clock)."""
    options = options or ReportOptions()
    classifier = classifier or Classifier()
    periods = data.periods
    names = tuple(p.name for p in periods)
    total_time = {p.name: sum(row.total_exec_time for row in p.statements) for p in periods}
    requests = {p.name: _requests(p) for p in periods}

    statements: dict[Key, dict[str, StatementRow]] = {}
    for period in periods:
        for row in _called(period.statements):
            statements.setdefault(statement_key(row), {})[period.name] = row
    shapes = {
        key: classifier.shape(key[2], next(iter(rows.values())).query)
        for key, rows in statements.items()
    }

    lines = []
    for key, rows in statements.items():
        figures = {
            name: _statement_figures(rows[name], total_time[name], requests[name])
            if name in rows
            else None
            for name in names
        }
        sample = next(iter(rows.values()))
        lines.append(
            StatementLine(
                queryid=sample.queryid,
                role=sample.rolname,
                toplevel=sample.toplevel,
                fingerprint=shapes[key].fingerprint,
                kind=shapes[key].kind,
                query=shapes[key].text,
                figures=figures,
                change=change_between(figures[names[0]], figures[names[-1]])
                if len(names) == 2
                else None,
            )
        )
    lines.sort(
        key=lambda line: (
            _heaviest_first({n: f.total_time_ms for n, f in line.figures.items() if f}),
            line.queryid,
            line.role or "",
            not line.toplevel,
        )
    )

    families: dict[str, _Family] = {}
    for key, rows in sorted(statements.items(), key=lambda item: _statement_order(item[1])):
        family = families.setdefault(shapes[key].fingerprint, _Family(shapes[key]))
        for name, row in rows.items():
            family.rows.setdefault(name, []).append(row)
    family_lines = []
    suspects = []
    for fingerprint, family in families.items():
        counted = {name: family.figures(name, total_time[name], requests[name]) for name in names}
        shape = family.shape
        line = FamilyLine(fingerprint, shape.kind, shape.parsed, shape.tables, shape.sql, counted)
        family_lines.append(line)
        lookup = shape.lookup
        if lookup is not None and any(
            is_n_plus_one(lookup, found.calls, requests[name], options.n_plus_one)
            for name, found in counted.items()
            if found is not None
        ):
            batched = lookup.batched_fingerprint
            suspects.append(
                Suspect(
                    fingerprint=fingerprint,
                    sql=shape.sql,
                    tables=shape.tables,
                    columns=lookup.columns,
                    batched_sql=lookup.batched_sql,
                    batched_family=batched if batched in families else None,
                    figures=counted,
                )
            )
    order = {
        line.fingerprint: (
            _heaviest_first({n: f.total_time_ms for n, f in line.figures.items() if f}),
            line.fingerprint,
        )
        for line in family_lines
    }
    family_lines.sort(key=lambda line: order[line.fingerprint])
    suspects.sort(key=lambda suspect: order[suspect.fingerprint])

    state = data.state
    health_input = health.health_input(
        state, data.catalog, options.health, expected_settings=data.manifest.table_settings
    )
    summaries = tuple(_summary(p) for p in periods)
    reduction = (
        query_reduction(periods[0].measures, periods[1].measures)
        if len(periods) == 2 and periods[0].measures and periods[1].measures
        else None
    )
    return Report(
        title=_title(data),
        generated_at=generated_at,
        source=data.source,
        target=data.target,
        database=state.header.database_name,
        server_version=version_text(state.header.server_version_num),
        periods=summaries,
        query_reduction=reduction,
        top_statements=tuple(lines[: options.top_statements]),
        families=tuple(family_lines[: options.top_families]),
        unparsed=tuple(line for line in family_lines if not line.parsed),
        n_plus_one=tuple(suspects),
        table_hit_ratios=_table_hit_lines(periods),
        indexes=_index_lines(periods, health_input.indexes),
        index_health=tuple(health.index_health(health_input)),
        autovacuum=_vacuum_lines(health_input.tables, health_input.expected_settings),
        autovacuum_health=tuple(health.autovacuum_health(health_input)),
        notes=_notes(data),
    )


def _statement_order(rows: Mapping[str, StatementRow]) -> tuple[float, int]:
    """Heaviest statement first, so a family is represented by its costliest member."""
    sample = next(iter(rows.values()))
    return (-max(row.total_exec_time for row in rows.values()), sample.queryid)


def _table_hit_lines(periods: Sequence[Period]) -> tuple[TableHitLine, ...]:
    names: dict[int, str] = {}
    by_period: dict[str, dict[int, TableRow]] = {}
    for period in periods:
        by_period[period.name] = {row.relid: row for row in period.tables if is_application(row)}
        for row in by_period[period.name].values():
            names[row.relid] = health.table_name(row)
    lines = []
    for relid, table in sorted(names.items(), key=lambda item: item[1]):
        rows = [found[relid] for found in by_period.values() if relid in found]
        if not any(r.heap_blks_hit + r.heap_blks_read + r.idx_blks_hit + r.idx_blks_read
                   for r in rows):  # fmt: skip
            continue  # not read in any period: nothing to say
        figures = {}
        for period in periods:
            found = by_period[period.name].get(relid)
            figures[period.name] = TableHitFigures(
                heap_hit_ratio=heap_hit_ratio([found]) if found else None,
                index_hit_ratio=index_hit_ratio([found]) if found else None,
                heap_blocks_read=found.heap_blks_read if found else 0,
                index_blocks_read=found.idx_blks_read if found else 0,
            )
        lines.append(TableHitLine(table, figures))
    return tuple(lines)


def _index_lines(periods: Sequence[Period], indexes: Iterable[IndexRow]) -> tuple[IndexLine, ...]:
    scans = {
        period.name: {row.indexrelid: row.idx_scan for row in period.indexes} for period in periods
    }
    lines = [
        IndexLine(
            index=health.index_name(row),
            table=health.table_name(row),
            valid=row.is_valid,
            unique=row.is_unique,
            size_bytes=row.index_bytes,
            total_scans=row.idx_scan,
            scans={name: found.get(row.indexrelid) for name, found in scans.items()},
        )
        for row in indexes
    ]
    return tuple(sorted(lines, key=lambda line: (line.table, line.index)))


def _vacuum_lines(
    tables: Iterable[TableRow], expected_settings: Iterable[TableSettings]
) -> tuple[VacuumLine, ...]:
    expected = {spec.qualified_table: spec for spec in expected_settings}
    lines = []
    for row in tables:
        wanted = expected.get(health.table_name(row))
        options = row.options
        status: Literal["ok", "differs", "not declared"] = (
            "not declared"
            if wanted is None
            else "differs"
            if setting_differences(wanted, options)
            else "ok"
        )
        lines.append(
            VacuumLine(
                table=health.table_name(row),
                live_tuples=row.n_live_tup,
                dead_tuples=row.n_dead_tup,
                dead_ratio=health.dead_tuple_ratio(row),
                last_vacuum=row.last_vacuum,
                last_autovacuum=row.last_autovacuum,
                last_analyze=row.last_analyze,
                last_autoanalyze=row.last_autoanalyze,
                xid_age=row.xid_age,
                settings=dict(sorted(options.items())),
                expected=status,
            )
        )
    return tuple(sorted(lines, key=lambda line: line.table))


def _title(data: ReportInput) -> str:
    names = " vs ".join(
        f"{period.name} ({period.label})" if period.name != period.label else period.name
        for period in data.periods
    )
    return f"Database report: {data.state.header.database_name}, {names}"


def _notes(data: ReportInput) -> tuple[str, ...]:
    notes = []
    if data.source == "live":
        notes.append(
            "Live statistics: totals since the statistics were last reset, not a window; "
            "no request count, so nothing per request."
        )
    state = data.state.header
    when = state.label or state.taken_at.isoformat()
    notes.append(
        f"Index and autovacuum health: cumulative counters of the latest snapshot ({when})."
    )
    if state.hidden_statements:
        notes.append(
            f"{state.hidden_statements} statements ({state.hidden_calls} calls) are not visible "
            "to this role: grant pg_read_all_stats (pg_monitor) to see them."
        )
    return tuple(notes)
