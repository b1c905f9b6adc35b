"""Timelines: what happened between each pair of consecutive samples of a report's span.

The span runs from the report's first window start to its last window end, on the target the
windows were read from. Each *step* (two consecutive samples) gives, from the samples' states
(``stats.samples``: exact per-statement values at every sample), the calls, total and mean time
of the span's top statements (by total time over the span), and the buffer cache and index hit
ratios as ``stats.measures`` counts them for a window. A step across a restart, a reset or an
eviction (``measures.problems_of``) is kept with its problems and no figures: its counters
are not comparable, so nothing of it is drawn. The application's p95 and error rate come per
``request_metrics`` bucket (the dashboard's expressions); the tables' and indexes' sizes at the
first and last sample give their growth. The windows themselves are carried for shading, with
the deploy's other windows given as marks (``--mark canary=W``: ``parse_marks``).

The top *families* (``sqltext.families``: statements that differ only in constants, list
lengths or placeholders) are drawn the same way, each step's figures the sums of its
statements'. A step's figures come from what its samples stored (``samples.load_changes``: a
sample stores a row only for an entry that moved), replayed onto the span's first state: a span
of hundreds of samples reads each entry once plus what moved, never every sample whole.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from dbtools.db.connection import SQL_MARKER
from dbtools.errors import UsageError
from dbtools.report.dashboard import ERROR_RATE, P95
from dbtools.schema import monitoring
from dbtools.sqltext.families import Classifier
from dbtools.sqltext.scrub import scrub_query
from dbtools.stats import samples
from dbtools.stats.deltas import statement_key
from dbtools.stats.legacy import Layout, read_layout
from dbtools.stats.measures import (
    application_rows,
    buffer_cache_hit_ratio,
    hit_ratio,
    problems_of,
    ratio,
    sum_deltas,
)
from dbtools.stats.rows import Snapshot, SnapshotHeader, StatementRow
from dbtools.stats.windows import (
    OF_TARGET,
    RequestTotals,
    Window,
    WindowRef,
    headers_between,
    load_snapshots,
    parse_window,
    resolve_target,
)

DEFAULT_STATEMENTS = 5
MIN_INTERVALS = 3  # intervals inside a window before its line on a chart shows a trend
DEFAULT_FAMILIES = 5
MARK_NAME = re.compile(r"^[A-Za-z0-9_][\w.:+-]{0,99}$")
_NO_REQUESTS = RequestTotals(0, 0, 0, 0, 0, None)


@dataclass(frozen=True)
class Shade:
    """A window shaded on the charts: one of the report's, or a mark (``--mark``)."""

    name: str
    started_at: datetime
    ended_at: datetime


@dataclass(frozen=True)
class Step:
    """Two consecutive samples; figures only when their counters are comparable."""

    started_at: datetime
    ended_at: datetime
    comparable: bool
    problems: tuple[str, ...]
    buffer_cache_hit_ratio: float | None
    index_hit_ratio: float | None


@dataclass(frozen=True)
class StatementPoint:
    calls: int
    total_time_ms: float
    mean_time_ms: float | None


@dataclass(frozen=True)
class StatementTimeline:
    """One top statement: a point per step (None where the step is not comparable)."""

    queryid: int
    query: str  # scrubbed
    total_time_ms: float  # over the span's comparable steps
    points: tuple[StatementPoint | None, ...]


@dataclass(frozen=True)
class FamilyTimeline:
    """One top family: a point per step, the sums of its statements' (None: not comparable)."""

    fingerprint: str
    kind: str
    query: str  # the family's SQL as sqlglot writes it (scrubbed, lists collapsed)
    statements: int  # its statement entries that ran in the span
    total_time_ms: float  # over the span's comparable steps
    points: tuple[StatementPoint | None, ...]


@dataclass(frozen=True)
class MetricsBucket:
    """One ``request_metrics`` bucket start inside the span (all operations together)."""

    started_at: datetime
    requests: int
    p95_ms: float | None
    error_rate: float | None


@dataclass(frozen=True)
class Growth:
    """A table's or index's size at the span's first and last sample (None: not known)."""

    kind: str  # "table" or "index"
    name: str
    first_bytes: int | None
    last_bytes: int | None
    growth_bytes: int | None


@dataclass(frozen=True)
class Timelines:
    started_at: datetime
    ended_at: datetime
    samples: int
    windows: tuple[Shade, ...]
    steps: tuple[Step, ...]
    statements: tuple[StatementTimeline, ...]
    families: tuple[FamilyTimeline, ...]
    buckets: tuple[MetricsBucket, ...]
    growth: tuple[Growth, ...]

    def intervals_in(self, shade: Shade) -> int:
        """The comparable intervals ending inside *shade*: its points on a chart."""
        return sum(
            1
            for step in self.steps
            if step.comparable and shade.started_at < step.ended_at <= shade.ended_at
        )

    @property
    def sparse_windows(self) -> tuple[tuple[str, int], ...]:
        """Each window with fewer than ``MIN_INTERVALS`` intervals inside (a window captured
        with two snapshots has one), and how many: on a chart a point or two, never a trend."""
        counted = ((shade.name, self.intervals_in(shade)) for shade in self.windows)
        return tuple((name, count) for name, count in counted if count < MIN_INTERVALS)


# -- steps ---------------------------------------------------------------------------------------


def step_between(start: Snapshot, end: Snapshot) -> tuple[Step, Window]:
    """The step from *start* to *end*: its figures, and the window they were counted in."""
    window = Window(WindowRef("step", "", ""), start, end, _NO_REQUESTS)
    sums = sum_deltas(window)
    problems = tuple(problems_of(window.bounds, sums))
    comparable = not problems
    step = Step(
        started_at=start.header.taken_at,
        ended_at=end.header.taken_at,
        comparable=comparable,
        problems=problems,
        buffer_cache_hit_ratio=buffer_cache_hit_ratio(sums.counts) if comparable else None,
        index_hit_ratio=hit_ratio(sums.index_blks_hit, sums.index_blks_read)
        if comparable
        else None,
    )
    return step, window


StatementKey = tuple[int, int, int, bool]  # ``deltas.statement_key``
StepPoints = list[dict[StatementKey, StatementPoint] | None]  # None: a step not comparable


def step_points(
    steps: Sequence[tuple[Step, Window]],
) -> tuple[StepPoints, dict[StatementKey, StatementRow]]:
    """Each comparable step's statements that ran (their calls, total and mean time), and a row
    of each statement (for its query id and text)."""
    per_step: StepPoints = []
    rows: dict[StatementKey, StatementRow] = {}
    for step, window in steps:
        if not step.comparable:
            per_step.append(None)
            continue
        points = {}
        for row in window.deltas.statements.rows:
            if row.calls or row.total_exec_time:
                key = statement_key(row)
                points[key] = StatementPoint(
                    row.calls, row.total_exec_time, ratio(row.total_exec_time, row.calls)
                )
                rows[key] = row
        per_step.append(points)
    return per_step, rows


def _summed(points: Iterable[StatementPoint]) -> StatementPoint:
    calls = total = 0.0
    for point in points:
        calls += point.calls
        total += point.total_time_ms
    return StatementPoint(int(calls), total, ratio(total, calls))


def _line(
    per_step: StepPoints, members: Sequence[StatementKey]
) -> tuple[StatementPoint | None, ...]:
    """The points of *members* summed per step (None where a step is not comparable)."""
    return tuple(
        None if points is None else _summed(points[k] for k in members if k in points)
        for points in per_step
    )


def _heaviest(totals: dict[Any, float], top: int) -> list[Any]:
    """The *top* keys of *totals* by total time (ties by key), leaving out those with none."""
    return sorted((key for key, total in totals.items() if total > 0),
                  key=lambda key: (-totals[key], key))[:top]  # fmt: skip


def _totals(per_step: StepPoints) -> dict[StatementKey, float]:
    totals: dict[StatementKey, float] = {}
    for points in per_step:
        for key, point in (points or {}).items():
            totals[key] = totals.get(key, 0.0) + point.total_time_ms
    return totals


def statement_timelines(
    per_step: StepPoints, rows: dict[StatementKey, StatementRow], top: int
) -> tuple[StatementTimeline, ...]:
    """The *top* statements by total time over the comparable steps, a point per step."""
    totals = _totals(per_step)
    return tuple(
        StatementTimeline(
            queryid=rows[key].queryid,
            query=scrub_query(rows[key].query),
            total_time_ms=totals[key],
            points=_line(per_step, [key]),
        )
        for key in _heaviest(totals, top)
    )


def family_timelines(
    per_step: StepPoints,
    rows: dict[StatementKey, StatementRow],
    top: int,
    classifier: Classifier,
) -> tuple[FamilyTimeline, ...]:
    """The *top* families (*classifier*'s fingerprints) by total time over the comparable
    steps, a point per step: the sums of their statements'."""
    totals = _totals(per_step)
    keys = list(totals)
    shapes = dict(zip(keys, classifier.shapes([(rows[k].queryid, rows[k].query) for k in keys]),
                      strict=True))  # fmt: skip
    members: dict[str, list[StatementKey]] = {}
    family_totals: dict[str, float] = {}
    for key in keys:
        fingerprint = shapes[key].fingerprint
        members.setdefault(fingerprint, []).append(key)
        family_totals[fingerprint] = family_totals.get(fingerprint, 0.0) + totals[key]
    found = []
    for fingerprint in _heaviest(family_totals, top):
        shape = shapes[members[fingerprint][0]]
        found.append(FamilyTimeline(
            fingerprint=fingerprint,
            kind=shape.kind,
            query=shape.sql,
            statements=len(members[fingerprint]),
            total_time_ms=family_totals[fingerprint],
            points=_line(per_step, members[fingerprint]),
        ))  # fmt: skip
    return tuple(found)


def size_growth(first: Snapshot, last: Snapshot) -> tuple[Growth, ...]:
    """The application's tables and indexes at *first* and *last*, the largest growth first."""
    sizes: dict[tuple[str, str], list[int | None]] = {}
    for at, snapshot in enumerate((first, last)):
        for table in application_rows(snapshot.tables):
            name = ("table", f"{table.schemaname}.{table.relname}")
            sizes.setdefault(name, [None, None])[at] = table.total_bytes
        for index in application_rows(snapshot.indexes):
            name = ("index", f"{index.schemaname}.{index.indexrelname}")
            sizes.setdefault(name, [None, None])[at] = index.index_bytes
    found = [
        Growth(kind, name, before, after,
               None if before is None or after is None else after - before)
        for (kind, name), (before, after) in sizes.items()
    ]  # fmt: skip
    found.sort(key=lambda g: (-(g.growth_bytes or 0), g.kind, g.name))
    return tuple(found)


# -- request metrics -----------------------------------------------------------------------------

_BUCKETS = """SELECT {marker} bucket_start, coalesce(sum(requests), 0)::bigint,
       {p95}, {error_rate}
FROM {request_metrics}
WHERE bucket_start >= %(start)s
  AND bucket_start + make_interval(secs => bucket_seconds) <= %(end)s
{of_target}GROUP BY bucket_start ORDER BY bucket_start"""


def load_buckets(
    conn: psycopg.Connection[Any], start: datetime, end: datetime, target: str | None, *,
    has_target: bool,
) -> tuple[MetricsBucket, ...]:  # fmt: skip
    """The ``request_metrics`` buckets inside [*start*, *end*]: requests, p95, error rate."""
    query = sql.SQL(_BUCKETS).format(
        marker=sql.SQL(SQL_MARKER),
        p95=sql.SQL(P95),
        error_rate=sql.SQL(ERROR_RATE),
        request_metrics=sql.Identifier(monitoring.MONITORING_SCHEMA, monitoring.REQUEST_METRICS),
        of_target=sql.SQL(OF_TARGET if has_target else ""),
    )
    rows = conn.execute(query, {"start": start, "end": end, "target": target}).fetchall()
    return tuple(MetricsBucket(*row) for row in rows)


# -- marks -------------------------------------------------------------------------------------


def parse_marks(
    values: Sequence[str], taken: Iterable[str] = ()
) -> tuple[tuple[str, WindowRef], ...]:
    """``NAME=WINDOW`` values (``--mark canary=canary``, ``--mark rollback=last:10m``): the
    deploy's windows to shade besides the report's, whose names are *taken*. Raises
    ``UsageError`` for a malformed value, a bad name, a name given twice or a bad window."""
    marks: dict[str, WindowRef] = {}
    names = set(taken)
    for value in values:
        name, equals, reference = value.partition("=")
        if not equals or not reference:
            raise UsageError(f"invalid --mark {value!r}: expected NAME=WINDOW (canary=canary)")
        if not MARK_NAME.match(name):
            raise UsageError(
                f"invalid --mark name {name!r}: letters, digits and _ . : + - (at most 100)"
            )
        if name in marks or name in names:
            raise UsageError(f"--mark {name}: a window of that name is already shaded")
        marks[name] = parse_window(reference)
    return tuple(marks.items())


# -- loading -------------------------------------------------------------------------------------


def _keyed(kind: samples.RowKind, rows: Iterable[Any]) -> dict[tuple[Any, ...], Any]:
    return {kind.key_of(row): row for row in rows}


def _snapshot(header: SnapshotHeader, rows: dict[samples.RowKind, Sequence[Any]]) -> Snapshot:
    database = rows[samples.DATABASE]
    return Snapshot(
        header=header,
        statements=tuple(rows[samples.STATEMENTS]),
        tables=tuple(rows[samples.TABLES]),
        indexes=tuple(rows[samples.INDEXES]),
        database=database[0] if database else None,
    )


def replayed_pairs(
    conn: psycopg.Connection[Any], target: str, headers: Sequence[SnapshotHeader]
) -> tuple[list[tuple[Snapshot, Snapshot]], Snapshot, Snapshot]:
    """The steps between consecutive *headers* (compact samples of *target*, ids rising with
    time), each as two partial snapshots holding only the entries that moved in it (and the
    database row): their deltas are the full states' less the entries whose counters did not
    move. Also the full states at the first and last sample. Reads the first state and the
    rows stored after it (``samples.load_changes``), not every sample's state."""
    first, last = headers[0], headers[-1]
    assert first.id is not None and last.id is not None
    loaded = samples.load_states(conn, target, [first])[first.id]
    state = {
        samples.STATEMENTS: _keyed(samples.STATEMENTS, loaded.statements),
        samples.TABLES: _keyed(samples.TABLES, loaded.tables),
        samples.INDEXES: _keyed(samples.INDEXES, loaded.indexes),
        samples.DATABASE: _keyed(samples.DATABASE, (loaded.database,) if loaded.database else ()),
    }
    changes = samples.load_changes(conn, target, first.id, last.id)
    read = dict.fromkeys(samples.KINDS, 0)
    pairs = []
    for before, after in itertools.pairwise(headers):
        assert after.id is not None
        ends: dict[samples.RowKind, tuple[list[Any], list[Any]]] = {}
        for kind in samples.KINDS:
            current, stored = state[kind], changes[kind]
            moved: dict[tuple[Any, ...], Any] = {}  # each entry's row before the step
            database_before = list(current.values()) if kind is samples.DATABASE else []
            while read[kind] < len(stored) and stored[read[kind]].sample_id <= after.id:
                change = stored[read[kind]]
                read[kind] += 1
                key = kind.key_of(change.row)
                if key not in moved:
                    moved[key] = current.get(key)
                if change.vanished:
                    current.pop(key, None)
                else:
                    current[key] = change.row
            if kind is samples.DATABASE:  # whole, moved or not: a step's problems read it
                ends[kind] = (database_before, list(current.values()))
            else:
                ends[kind] = ([row for row in moved.values() if row is not None],
                              [current[key] for key in moved if key in current])  # fmt: skip
        pairs.append((
            _snapshot(before, {kind: start for kind, (start, _) in ends.items()}),
            _snapshot(after, {kind: end for kind, (_, end) in ends.items()}),
        ))  # fmt: skip
    final = _snapshot(last, {kind: list(rows.values()) for kind, rows in state.items()})
    return pairs, loaded, final


def span_pairs(
    conn: psycopg.Connection[Any],
    headers: Sequence[SnapshotHeader],
    layout: Layout,
    target: str | None,
) -> tuple[list[tuple[Snapshot, Snapshot]], Snapshot | None, Snapshot | None]:
    """The steps between consecutive *headers* as pairs of snapshots, and the first and last
    full states: replayed from what the samples stored (``replayed_pairs``), or, before
    revision 0005 or for samples whose ids do not rise with time, every state loaded whole."""
    ids = [header.id for header in headers if header.id is not None]
    if len(ids) >= 2 and layout.samples and target is not None and ids == sorted(ids):
        return replayed_pairs(conn, target, headers)
    states = load_snapshots(conn, headers, layout)
    ordered = [states[i] for i in ids]
    if not ordered:
        return [], None, None
    return list(itertools.pairwise(ordered)), ordered[0], ordered[-1]


def load_timelines(
    conn: psycopg.Connection[Any],
    windows: Sequence[tuple[str, Window]],
    *,
    marks: Sequence[tuple[str, Window]] = (),
    target: str | None = None,
    statements: int = DEFAULT_STATEMENTS,
    families: int = DEFAULT_FAMILIES,
    classifier: Classifier | None = None,
) -> Timelines:
    """The timelines of the span of *windows* and *marks* ((name, window) pairs, all shaded)
    on *conn* (the samples' repository), for *target* (``resolve_target``), with the top
    *statements* and *families* (classified by *classifier*)."""
    layout = read_layout(conn)
    chosen = resolve_target(conn, target, layout)
    shades = tuple(
        Shade(name, w.start.header.taken_at, w.end.header.taken_at)
        for name, w in (*windows, *marks)
    )
    started_at = min(shade.started_at for shade in shades)
    ended_at = max(shade.ended_at for shade in shades)
    headers = headers_between(conn, started_at, ended_at, layout, chosen)
    pairs, first, last = span_pairs(conn, headers, layout, chosen)
    steps = [step_between(a, b) for a, b in pairs]
    per_step, rows = step_points(steps)
    has_target = layout.has(monitoring.REQUEST_METRICS, "target")
    return Timelines(
        started_at=started_at,
        ended_at=ended_at,
        samples=len(headers),
        windows=shades,
        steps=tuple(step for step, _ in steps),
        statements=statement_timelines(per_step, rows, statements),
        families=family_timelines(per_step, rows, families, classifier or Classifier()),
        buckets=load_buckets(conn, started_at, ended_at, chosen, has_target=has_target),
        growth=size_growth(first, last) if first and last else (),
    )
