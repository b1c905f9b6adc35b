"""Timelines: what happened between each pair of consecutive samples of a report's span.

The span runs from the report's first window start to its last window end, on the target the
windows were read from. Each *step* (two consecutive samples) gives, from the samples' states
(``stats.samples``: exact per-statement values at every sample), the calls, total and mean time
of the span's top statements (by total time over the span), and the buffer cache and index hit
ratios as ``stats.measures`` counts them for a window. A step across a restart, a reset or an
eviction (``measures.window_problems``) is kept with its problems and no figures: its counters
are not comparable, so nothing of it is drawn. The application's p95 and error rate come per
``request_metrics`` bucket (the dashboard's expressions); the tables' and indexes' sizes at the
first and last sample give their growth. The windows themselves are carried for shading.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from dbtools.db.connection import SQL_MARKER
from dbtools.report.dashboard import ERROR_RATE, P95
from dbtools.schema import monitoring
from dbtools.sqltext.scrub import scrub_query
from dbtools.stats.deltas import statement_key
from dbtools.stats.legacy import read_layout
from dbtools.stats.measures import (
    Scope,
    application_rows,
    buffer_cache_hit_ratio,
    count_statements,
    index_hit_ratio,
    ratio,
    window_problems,
)
from dbtools.stats.rows import Snapshot
from dbtools.stats.windows import (
    OF_TARGET,
    RequestTotals,
    Window,
    WindowRef,
    headers_between,
    load_snapshots,
    resolve_target,
)

DEFAULT_STATEMENTS = 5
_NO_REQUESTS = RequestTotals(0, 0, 0, 0, 0, None)


@dataclass(frozen=True)
class Shade:
    """A window of the report, shaded on the charts."""

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
    buckets: tuple[MetricsBucket, ...]
    growth: tuple[Growth, ...]


# -- steps ---------------------------------------------------------------------------------------


def _step(start: Snapshot, end: Snapshot) -> tuple[Step, Window]:
    window = Window(WindowRef("step", "", ""), start, end, _NO_REQUESTS)
    problems = tuple(window_problems(window))
    deltas = window.deltas
    comparable = not problems
    step = Step(
        started_at=start.header.taken_at,
        ended_at=end.header.taken_at,
        comparable=comparable,
        problems=problems,
        buffer_cache_hit_ratio=buffer_cache_hit_ratio(
            count_statements(deltas.statements.rows, Scope())
        )
        if comparable
        else None,
        index_hit_ratio=index_hit_ratio(application_rows(deltas.indexes.rows))
        if comparable
        else None,
    )
    return step, window


def statement_timelines(
    steps: Sequence[tuple[Step, Window]], top: int
) -> tuple[StatementTimeline, ...]:
    """The *top* statements by total time over the comparable steps, a point per step."""
    per_step: list[dict[Any, StatementPoint] | None] = []
    totals: dict[Any, float] = {}
    texts: dict[Any, tuple[int, str]] = {}
    for step, window in steps:
        if not step.comparable:
            per_step.append(None)
            continue
        points = {}
        for row in window.deltas.statements.rows:
            key = statement_key(row)
            points[key] = StatementPoint(
                row.calls, row.total_exec_time, ratio(row.total_exec_time, row.calls)
            )
            totals[key] = totals.get(key, 0.0) + row.total_exec_time
            texts[key] = (row.queryid, row.query)
        per_step.append(points)
    chosen = sorted((key for key, total in totals.items() if total > 0),
                    key=lambda key: (-totals[key], key))[:top]  # fmt: skip
    return tuple(
        StatementTimeline(
            queryid=texts[key][0],
            query=scrub_query(texts[key][1]),
            total_time_ms=totals[key],
            points=tuple(
                None if points is None else points.get(key, StatementPoint(0, 0.0, None))
                for points in per_step
            ),
        )
        for key in chosen
    )


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


# -- loading -------------------------------------------------------------------------------------


def load_timelines(
    conn: psycopg.Connection[Any],
    windows: Sequence[tuple[str, Window]],
    *,
    target: str | None = None,
    statements: int = DEFAULT_STATEMENTS,
) -> Timelines:
    """The timelines of the span of *windows* ((name, window) pairs) on *conn* (the samples'
    repository), for *target* (``resolve_target``), with the top *statements*."""
    layout = read_layout(conn)
    chosen = resolve_target(conn, target, layout)
    started_at = min(w.start.header.taken_at for _, w in windows)
    ended_at = max(w.end.header.taken_at for _, w in windows)
    headers = headers_between(conn, started_at, ended_at, layout, chosen)
    states = load_snapshots(conn, headers, layout)
    ordered = [states[h.id] for h in headers if h.id is not None]
    steps = [_step(a, b) for a, b in itertools.pairwise(ordered)]
    has_target = layout.has(monitoring.REQUEST_METRICS, "target")
    return Timelines(
        started_at=started_at,
        ended_at=ended_at,
        samples=len(ordered),
        windows=tuple(
            Shade(name, w.start.header.taken_at, w.end.header.taken_at) for name, w in windows
        ),
        steps=tuple(step for step, _ in steps),
        statements=statement_timelines(steps, statements),
        buckets=load_buckets(conn, started_at, ended_at, chosen, has_target=has_target),
        growth=size_growth(ordered[0], ordered[-1]) if ordered else (),
    )
