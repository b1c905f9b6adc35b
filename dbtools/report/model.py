"""The report as data: built (purely) from periods of statistics, rendered by the renderers.

A *period* is one column of the report: a window's deltas (``dbtools.figures.measures``), or the live
totals since the statistics were last reset. One period, or two (baseline and candidate: the
report then shows the change, opens with verify's verdict on the two windows, and tells what
replaced what: ``report.story``). Health (index and autovacuum) is judged on the latest snapshot,
with cumulative counters, plus the catalog facts ``health.read_catalog`` reads.

On PostgreSQL 18, pg_stat_statements names a table in a query id by the name the statement
gives it, and every foreign-key check calls its parent ``x``: checks against parents whose keys
have the same position and types share one entry, whose text names the first parent seen. Such
an entry lists every parent it may stand for (``shared_entry``), never only the one its text
names (docs/postgresql.md).

Every query text in a ``Report`` has been through ``sqltext.scrub.scrub_query``: renderers may show
any text in it. Nothing here reads a clock or a database: the same input gives the same report.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from dbtools.db.server import version_text
from dbtools.figures.deltas import statement_key
from dbtools.figures.measures import (
    WindowMeasures,
    buffer_cache_hit_ratio,
    heap_hit_ratio,
    index_hit_ratio,
    p95_text,
    query_reduction,
)
from dbtools.figures.sums import Scope, application_rows, count_statements
from dbtools.figures.windows import Window
from dbtools.findings import Finding
from dbtools.output import NO_VALUE, SCHEMA_VERSIONS
from dbtools.reading.rows import DatabaseRow, IndexRow, Snapshot, StatementRow, TableRow
from dbtools.report import health, lookups, statements, story
from dbtools.report.families import Family, FamilyLine, grouped, lines_of
from dbtools.report.inspection import Inspection, build_inspection
from dbtools.report.statements import Key
from dbtools.report.story import FamilyChange
from dbtools.report.subjects import InspectionOptions, subjects
from dbtools.report.timelines import DEFAULT_FAMILIES as DEFAULT_TIMELINE_FAMILIES
from dbtools.report.timelines import DEFAULT_STATEMENTS as DEFAULT_TIMELINE_STATEMENTS
from dbtools.schema.manifest import Manifest
from dbtools.sqltext.families import (
    Batchable,
    Classifier,
    NPlusOne,
    StatementShape,
)
from dbtools.verify import VerifyResult
from dbtools.verify.thresholds import Thresholds

LIVE = "live"
Source = Literal["window", "comparison", "live"]
# The first server whose pg_stat_statements names tables by alias (one foreign-key check entry
# for several parents).
SHARED_FK_CHECKS_FROM = 180000


@dataclass(frozen=True)
class ReportOptions:
    """How much the report shows, where its lookup rules draw their lines, and verify's
    thresholds (the opening judges the windows with them, as ``dbtools verify`` does)."""

    top_statements: int = 20
    top_families: int = 30
    n_plus_one: NPlusOne = field(default_factory=NPlusOne)
    batchable: Batchable = field(default_factory=Batchable)
    min_family_change: float = 0.10  # a smaller change of calls per request is no change
    thresholds: Thresholds = field(default_factory=Thresholds)
    health: health.HealthSettings = field(default_factory=health.HealthSettings)
    inspection: InspectionOptions = field(default_factory=InspectionOptions)
    timeline_statements: int = DEFAULT_TIMELINE_STATEMENTS  # statements drawn per step
    timeline_families: int = DEFAULT_TIMELINE_FAMILIES  # families drawn per step


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


def period_from_window(window: Window, measures: WindowMeasures, name: str | None = None) -> Period:
    """A window's deltas (``window.deltas``: its states loaded, computed once), with its figures
    (*measures*: verify's, ``Store.measures``)."""
    deltas = window.deltas
    return Period(
        name=name or window.ref.name,
        label=str(window.ref),
        started_at=window.start.taken_at,
        ended_at=window.end.taken_at,
        statements=deltas.statements.rows,
        tables=deltas.tables.rows,
        indexes=deltas.indexes.rows,
        database=deltas.database_row,
        measures=measures,
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
    inspection: Inspection | None = None  # activity, space, settings, plans… (``inspection``)
    verification: VerifyResult | None = None  # verify's answer on (baseline, candidate)
    stored: Mapping[str, Any] = field(default_factory=dict)  # timelines (``read_stored``)


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
    app_cache_hit_ratio: float | None  # the figures below: verify's, from request_metrics
    p95_ms: float | None  # measures.P95_NAME: from the merged latency histograms
    error_rate: float | None
    work: StatementWork
    p95_estimated: bool = False  # from buckets without a histogram
    p95_worst_second_ms: float | None = None  # measures.WORST_SECOND_NAME

    @property
    def p95_text(self) -> str:
        return p95_text(self.p95_ms, self.p95_estimated, missing=NO_VALUE)


@dataclass(frozen=True)
class StatementWork:
    """What pg_stat_statements adds up for a period's top-level statements (each includes the
    statements it ran: functions, foreign-key checks). Planning is counted only with
    ``pg_stat_statements.track_planning``, I/O time only with ``track_io_timing``."""

    exec_time_ms: float  # nested statements' time is inside their callers' already
    plans: int
    plan_time_ms: float
    temp_blks_read: int
    temp_blks_written: int
    wal_records: int
    wal_bytes: int
    shared_blks_read: int
    shared_blks_written: int
    blk_read_time_ms: float
    blk_write_time_ms: float


@dataclass(frozen=True)
class ReportRules:
    """Where the report drew its lines (``ReportOptions``), shown beside what they found."""

    n_plus_one: NPlusOne
    batchable: Batchable
    min_family_change: float
    target: float  # the query reduction a batch is sized for (verify's min_query_reduction)


@dataclass(frozen=True)
class Verification:
    """Verify's answer on the two windows, as ``dbtools verify`` gives it."""

    verdict: str
    exit_code: int
    thresholds: Thresholds
    findings: tuple[Finding, ...]


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
    top_statements: tuple[statements.StatementLine, ...]
    families: tuple[FamilyLine, ...]
    unparsed: tuple[FamilyLine, ...]
    n_plus_one: tuple[lookups.Suspect, ...]
    table_hit_ratios: tuple[health.TableHitLine, ...]
    indexes: tuple[health.IndexLine, ...]
    index_health: tuple[Finding, ...]
    autovacuum: tuple[health.VacuumLine, ...]
    autovacuum_health: tuple[Finding, ...]
    notes: tuple[str, ...]
    verification: Verification | None  # two windows only
    story: tuple[str, ...]  # the opening sentences (two windows only)
    batchable: tuple[lookups.BatchableLookup, ...]
    changes: tuple[FamilyChange, ...]  # what replaced what (two windows only)
    rules: ReportRules
    # Read when the report is made (the database, or the store's samples): each subject's model
    # by its key (``report.subjects``; None when not read), its keys inline in the JSON document.
    inspected: Mapping[str, Any] = field(default_factory=dict, metadata={"inline": True})

    def __getattr__(self, name: str) -> Any:
        """A subject's model by its key (``report.space``), as for the statistics' parts."""
        if name.startswith("__") or name == "inspected":
            raise AttributeError(name)
        try:
            return self.inspected[name]
        except KeyError:
            raise AttributeError(f"'Report' object has no attribute {name!r}") from None

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


def _seconds(period: Period, state: Snapshot) -> float | None:
    """How long *period* counted: a window's length; for live statistics, the time since
    pg_stat_statements was last reset (14+), so a rate since then; else unknown."""
    if period.measures:
        return period.measures.seconds
    reset = state.header.pgss_stats_reset
    return (period.ended_at - reset).total_seconds() if reset else None


def _work(rows: Iterable[StatementRow]) -> StatementWork:
    top = [row for row in rows if row.toplevel]
    return StatementWork(
        exec_time_ms=sum(row.total_exec_time for row in top),
        plans=sum(row.plans for row in top),
        plan_time_ms=sum(row.total_plan_time for row in top),
        temp_blks_read=sum(row.temp_blks_read for row in top),
        temp_blks_written=sum(row.temp_blks_written for row in top),
        wal_records=sum(row.wal_records for row in top),
        wal_bytes=sum(row.wal_bytes for row in top),
        shared_blks_read=sum(row.shared_blks_read for row in top),
        shared_blks_written=sum(row.shared_blks_written for row in top),
        blk_read_time_ms=sum(row.shared_blk_read_time for row in top),
        blk_write_time_ms=sum(row.shared_blk_write_time for row in top),
    )


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
        app_cache_hit_ratio=measures.app_cache_hit_ratio if measures else None,
        p95_ms=measures.p95_ms if measures else None,
        error_rate=measures.error_rate if measures else None,
        work=_work(period.statements),
        p95_estimated=measures.p95_estimated if measures else False,
        p95_worst_second_ms=measures.p95_worst_second_ms if measures else None,
    )


def build_report(
    data: ReportInput,
    options: ReportOptions | None = None,
    *,
    generated_at: datetime,
    classifier: Classifier | None = None,
) -> Report:
    """The report of *data* (pure: *generated_at* is only shown, never read from a clock)."""
    with _older_objects_frozen():
        return _build_report(data, options, generated_at, classifier)


@contextlib.contextmanager
def _older_objects_frozen() -> Iterator[None]:
    """Python's collector leaves the objects alive before the build (the input's rows) alone
    while it runs: the build allocates hundreds of thousands of objects, and every collection
    would scan the input again (a quarter less CPU at 5,000 statements here). A program that
    froze objects of its own (before forking workers) keeps them frozen."""
    own = gc.get_freeze_count() == 0
    gc.freeze()
    try:
        yield
    finally:
        if own:
            gc.unfreeze()


def _build_report(
    data: ReportInput,
    options: ReportOptions | None,
    generated_at: datetime,
    classifier: Classifier | None,
) -> Report:
    options = options or ReportOptions()
    windows = read_windows(data, options, classifier or Classifier())
    state = data.state
    models = build_inspection(
        data.inspection,
        options.inspection,
        state,
        windows.periods[-1].statements,
        large_table_rows=options.health.large_table_rows,
        stored=data.stored,
        windows=windows,
    )
    spine: dict[str, Any] = {}  # the statistics' subjects fill the Report's own fields
    for subject in subjects():
        if subject.fields:
            model = models.pop(subject.key)
            assert tuple(model) == subject.fields, f"{subject.name} builds {tuple(model)}"
            spine.update(model)
    names = windows.names
    periods = windows.periods
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
        periods=tuple(_summary(p) for p in periods),
        query_reduction=reduction,
        notes=_notes(data, any(line.shared_entry for line in windows.family_lines)),
        inspected=models,
        verification=_verification(data.verification),
        story=_story(data.verification, windows.changes, names),
        changes=windows.changes,
        rules=ReportRules(
            options.n_plus_one, options.batchable, options.min_family_change, windows.target
        ),
        **spine,
    )


@dataclass(frozen=True)
class WindowsReading:
    """What a subject of the windows reads (``Subject.reads == "windows"``): the periods and
    what the report makes of them once for all (their statements by key, classified into
    shapes and families, the families' lines, what replaced what), the latest snapshot, the
    catalog, the manifest and the options. Each such subject's module says what it reads of
    it (its ``Windows`` protocol)."""

    periods: tuple[Period, ...]
    names: tuple[str, ...]
    state: Snapshot
    catalog: health.Catalog
    manifest: Manifest
    options: ReportOptions
    unstored: Mapping[Key, Mapping[str, Any]] | None  # pg_stat_statements' unstored columns
    total_time: Mapping[str, float]
    requests: Mapping[str, int | None]
    seconds: Mapping[str, float | None]
    by_key: Mapping[Key, Mapping[str, StatementRow]]
    shapes: Mapping[Key, StatementShape]
    covered: Mapping[str, tuple[tuple[str, ...], bool]]
    families: Mapping[str, Family]
    family_lines: Sequence[FamilyLine]
    changes: tuple[FamilyChange, ...]  # what replaced what (two windows only)
    target: float  # the query reduction a batch is sized for (verify's min_query_reduction)


def read_windows(
    data: ReportInput, options: ReportOptions, classifier: Classifier
) -> WindowsReading:
    """The periods of *data* as the subjects of the windows read them (pure)."""
    periods = data.periods
    names = tuple(p.name for p in periods)
    total_time = {p.name: sum(row.total_exec_time for row in p.statements) for p in periods}
    requests = {p.name: _requests(p) for p in periods}
    seconds = {p.name: _seconds(p, data.state) for p in periods}
    version = data.state.header.server_version_num

    by_key: dict[Key, dict[str, StatementRow]] = {}
    for period in periods:
        for row in _called(period.statements):
            by_key.setdefault(statement_key(row), {})[period.name] = row
    samples = [(key[2], next(iter(rows.values())).query) for key, rows in by_key.items()]
    shapes = dict(zip(by_key, classifier.shapes(samples), strict=True))
    covered = {
        shape.fingerprint: covered_tables(shape, data.catalog, version) for shape in shapes.values()
    }
    families = grouped(by_key, shapes)
    family_lines = lines_of(families, covered, total_time, requests, seconds)
    target = (
        data.verification.thresholds if data.verification else options.thresholds
    ).min_query_reduction
    changes: tuple[FamilyChange, ...] = (
        story.family_changes(
            (_counts(line, families[line.fingerprint]) for line in family_lines
             if not line.nested),  # one at a time: pairing keeps only those that changed
            names[0], names[1], requests, min_change=options.min_family_change,
        )
        if len(names) == 2
        else ()
    )  # fmt: skip
    return WindowsReading(
        periods, names, data.state, data.catalog, data.manifest, options,
        data.inspection.unstored_columns if data.inspection else None,
        total_time, requests, seconds, by_key, shapes, covered, families, family_lines,
        changes, target,
    )  # fmt: skip


def _verification(result: VerifyResult | None) -> Verification | None:
    if result is None:
        return None
    return Verification(result.verdict, result.exit_code, result.thresholds, result.findings)


def _story(
    result: VerifyResult | None, changes: Sequence[FamilyChange], names: Sequence[str]
) -> tuple[str, ...]:
    """The opening: verify's verdict, its headline figures, what the pairs add up to."""
    if result is None or len(names) != 2:
        return ()
    return (
        story.verdict_sentence(result.verdict, result.exit_code, result.findings),
        story.headline_sentence(
            result.baseline, result.candidate, result.reduction,
            result.thresholds.min_query_reduction,
        ),
        story.changes_sentence(changes, names[0], names[1]),
    )  # fmt: skip


def _counts(line: FamilyLine, family: Family) -> story.FamilyCounts:
    shape = family.shape
    footprint = (
        (shape.footprint.kind, shape.footprint.tables, shape.footprint.columns)
        if shape.footprint
        else ("unparsed", line.fingerprint)
    )
    present = {name: f for name, f in line.figures.items() if f is not None}
    return story.FamilyCounts(
        fingerprint=line.fingerprint,
        footprint=footprint,
        kind=line.kind,
        tables=line.tables,
        columns=line.columns,
        calls={name: f.calls for name, f in present.items()},
        total_time_ms={name: f.total_time_ms for name, f in present.items()},
        rows={name: f.rows for name, f in present.items()},
        sql=shape.text,  # as the application sent it (scrubbed), tags and all
    )


def covered_tables(
    shape: StatementShape, catalog: health.Catalog, server_version_num: int
) -> tuple[tuple[str, ...], bool]:
    """Every table a statement's entry may stand for, and whether they are several.

    A foreign-key check on PostgreSQL 18 or later stands for checks against every parent whose
    referenced key has the same columns' positions and types (the catalog's foreign keys say
    which); when the catalog does not know its parent, for that parent and possibly others.
    Any other entry stands for the tables its text names.
    """
    parent = shape.foreign_key_check
    if parent is None or server_version_num < SHARED_FK_CHECKS_FROM:
        return shape.tables, False
    named = str(parent)
    keys = {fk.referenced_key for fk in catalog.foreign_keys if fk.referenced_name == named}
    if not keys:
        return (named,), True
    parents = {fk.referenced_name for fk in catalog.foreign_keys if fk.referenced_key in keys}
    return tuple(sorted(parents)), len(parents) > 1


def _title(data: ReportInput) -> str:
    names = " vs ".join(
        f"{period.name} ({period.label})" if period.name != period.label else period.name
        for period in data.periods
    )
    return f"Database report: {data.state.header.database_name}, {names}"


def _notes(data: ReportInput, shared_entries: bool) -> tuple[str, ...]:
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
    if data.inspection is not None:
        notes.append(
            "Activity, space, settings, plans, index advice and schema health were read from "
            "the database when the report was made, whatever the periods. Each statement's "
            "other_columns (JSON) are pg_stat_statements columns snapshots do not store yet, "
            "read then: totals since the entry started counting."
        )
    if shared_entries:
        notes.append(
            "PostgreSQL 18 identifies a table in pg_stat_statements by the name a statement gives "
            "it, and every foreign-key check calls its parent x: checks against parents whose "
            "keys have the same column positions and types are one entry, whose text names only "
            "the first parent seen. Such entries list every parent they may stand for."
        )
    if state.hidden_statements:
        notes.append(
            f"{state.hidden_statements} statements ({state.hidden_calls} calls) are not visible "
            "to this role: grant pg_read_all_stats (pg_monitor) to see them."
        )
    return tuple(notes)
