"""Windows: labels and times, and what the repository holds of them read back.

A *window* is two samples of one target (``stats.samples``): ``W`` means ``W:start..W:end``
(what ``capture`` writes); ``A..B`` takes two labels or two times (ISO 8601:
``2026-11-30T10:00Z``), or one of each; ``last:10m`` is the last ten minutes. A time stands for
the nearest sample inside the window (the first at or after a start, the last at or before an
end), and a window by time is untrusted when an end has no sample within twice the collection
interval, or two samples inside it lie further apart than that (``coverage``). A window on
rolled-up samples says so. The repository may hold several targets (``resolve_target``).

Samples are loaded whatever the repository's revision (a database downgraded after they were
taken): before revision 0005 every snapshot is a full copy with no target, read by
``stats.legacy`` (``Layout.samples`` decides).
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import KW_ONLY, dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import class_row, dict_row

from dbtools.config import parse_duration
from dbtools.db.connection import SQL_MARKER
from dbtools.db.errors import translated_errors
from dbtools.errors import PrerequisiteMissing, UsageError
from dbtools.schema import latency, monitoring
from dbtools.schema.latency import Percentile
from dbtools.stats import legacy, samples
from dbtools.stats.deltas import WindowDeltas, window_deltas
from dbtools.stats.legacy import HEAD_LAYOUT, Layout, or_null, read_layout
from dbtools.stats.rows import Snapshot, SnapshotHeader, column_names

log = logging.getLogger(__name__)

START_SUFFIX = ":start"
END_SUFFIX = ":end"
RANGE_SEPARATOR = ".."
LAST_PREFIX = "last:"
MAX_LABEL_LENGTH = 200


def _table(name: str) -> sql.Identifier:
    return sql.Identifier(monitoring.MONITORING_SCHEMA, name)


# -- labels, times and windows ------------------------------------------------------------------


def validate_label(label: str) -> str:
    """Return *label* if it can name a snapshot, else raise ``UsageError``."""
    if not label or label != label.strip():
        raise UsageError(f"invalid label {label!r}: empty, or leading/trailing spaces")
    if RANGE_SEPARATOR in label:
        raise UsageError(f"invalid label {label!r}: '..' separates the two labels of a window")
    if len(label) > MAX_LABEL_LENGTH or not label.isprintable():
        raise UsageError(f"invalid label {label!r}: too long or not printable")
    if parse_time(label) is not None or label.startswith(LAST_PREFIX):
        raise UsageError(f"invalid label {label!r}: it reads as a time (a window's end)")
    return label


_TIME = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)(Z|[+-]\d{2}(?::?\d{2})?)?$",
    re.I,
)


def parse_time(text: str) -> datetime | None:
    """An ISO 8601 time (``2026-11-30T10:00Z``, ``2026-11-30 10:00:05+01:00``; without an offset:
    UTC), or None when *text* is not one."""
    match = _TIME.match(text.strip())
    if match is None:
        return None
    date, clock, zone = match.groups()
    zone = "+00:00" if zone is None or zone.upper() == "Z" else zone
    if len(zone) == 3:
        zone += ":00"
    elif ":" not in zone:
        zone = f"{zone[:3]}:{zone[3:]}"
    try:
        return datetime.fromisoformat(f"{date}T{clock}{zone}")
    except ValueError as err:
        raise UsageError(f"invalid time {text!r}: {err}") from err


@dataclass(frozen=True)
class WindowRef:
    """A window as given on the command line: its two ends as given (a label or a time), or
    the last *last_seconds* (``last:10m``)."""

    name: str
    start: str
    end: str
    last_seconds: int | None = None

    def __str__(self) -> str:
        if self.last_seconds is not None:
            return self.name
        return f"{self.start}{RANGE_SEPARATOR}{self.end}"

    @property
    def start_time(self) -> datetime | None:
        return parse_time(self.start) if self.start else None

    @property
    def end_time(self) -> datetime | None:
        return parse_time(self.end) if self.end else None

    @property
    def by_time(self) -> bool:
        """Whether an end is a time: the window takes the samples nearest inside it."""
        return (
            self.last_seconds is not None
            or self.start_time is not None
            or self.end_time is not None
        )


def window_labels(label: str) -> tuple[str, str]:
    """The labels ``capture --label L`` writes: ``L:start`` and ``L:end``."""
    return f"{label}{START_SUFFIX}", f"{label}{END_SUFFIX}"


def parse_window(reference: str) -> WindowRef:
    """``W`` (``W:start..W:end``), ``A..B`` (labels or times) or ``last:DURATION``; raises
    ``UsageError`` for anything else."""
    if reference.startswith(LAST_PREFIX):
        return WindowRef(reference, "", "", parse_duration(reference[len(LAST_PREFIX) :]))
    if RANGE_SEPARATOR in reference:
        start, _, end = reference.partition(RANGE_SEPARATOR)
        if not start or not end or RANGE_SEPARATOR in end:
            raise UsageError(
                f"invalid window {reference!r}: expected LABEL, START..END or last:DURATION"
            )
        ends = [
            side if parse_time(side) is not None else validate_label(side) for side in (start, end)
        ]
        ref = WindowRef(reference, ends[0], ends[1])
        if ref.start_time and ref.end_time and ref.end_time <= ref.start_time:
            raise UsageError(f"window {reference}: its end is not after its start")
        return ref
    start, end = window_labels(validate_label(reference))
    return WindowRef(reference, start, end)


_OF_TARGET_SAMPLE = sql.SQL("target = %(target)s AND ")
_LABELS = sql.SQL("label = ANY(%(labels)s)")
_BETWEEN = sql.SQL("taken_at >= %(from)s AND taken_at <= %(to)s")
_NO_ORDER = sql.SQL("")


def _headers_sql(
    layout: Layout, where: sql.Composable, order: sql.Composable = _NO_ORDER
) -> sql.Composed:
    """Headers of the target's snapshots matching *where* (before 0005 there are no targets)."""
    return sql.SQL(
        "SELECT {marker} {columns} FROM {snapshots} WHERE {target}{where} {order}"
    ).format(
        marker=sql.SQL(SQL_MARKER),
        columns=or_null(layout, monitoring.SNAPSHOTS, column_names(SnapshotHeader)),
        snapshots=_table(monitoring.SNAPSHOTS),
        target=_OF_TARGET_SAMPLE if layout.samples else sql.SQL(""),
        where=where,
        order=order,
    )


def _fetch_headers(
    conn: psycopg.Connection[Any], query: sql.Composed, params: dict[str, Any]
) -> list[SnapshotHeader]:
    with conn.cursor(row_factory=class_row(SnapshotHeader)) as cur:
        return cur.execute(query, params).fetchall()


def find_headers(
    conn: psycopg.Connection[Any],
    labels: Iterable[str],
    layout: Layout = HEAD_LAYOUT,
    target: str | None = None,
) -> dict[str, SnapshotHeader]:
    """The headers of the target's snapshots among *labels* that exist, by label (one query)."""
    query = _headers_sql(layout, _LABELS)
    rows = _fetch_headers(conn, query, {"labels": list(labels), "target": target})
    return {row.label: row for row in rows if row.label is not None}


def headers_between(
    conn: psycopg.Connection[Any],
    start: datetime,
    end: datetime,
    layout: Layout = HEAD_LAYOUT,
    target: str | None = None,
) -> list[SnapshotHeader]:
    """The headers of the target's samples taken from *start* to *end* (both included), in
    the order they were taken."""
    query = _headers_sql(layout, _BETWEEN, _IN_ORDER)
    return _fetch_headers(conn, query, {"target": target, "from": start, "to": end})


_TARGETS_SQL = sql.SQL(
    """WITH RECURSIVE {marker} t AS (
    (SELECT target FROM {snapshots} ORDER BY target LIMIT 1)
    UNION ALL
    SELECT (SELECT s.target FROM {snapshots} s WHERE s.target > t.target ORDER BY s.target LIMIT 1)
    FROM t WHERE t.target IS NOT NULL
)
SELECT target FROM t WHERE target IS NOT NULL"""
).format(marker=sql.SQL(SQL_MARKER), snapshots=_table(monitoring.SNAPSHOTS))


def stored_targets(conn: psycopg.Connection[Any]) -> list[str]:
    """The targets the repository holds samples of, in order (a loose scan of its key)."""
    return [target for (target,) in conn.execute(_TARGETS_SQL)]


def resolve_target(
    conn: psycopg.Connection[Any], target: str | None, layout: Layout = HEAD_LAYOUT
) -> str | None:
    """The target whose samples to read: *target*, which must have samples; else the only one
    the repository holds, or the connected database's name among several. None before revision
    0005 (no targets; ``PrerequisiteMissing`` for a *target* there). Raises ``UsageError``
    otherwise, naming the targets there are."""
    if not layout.samples:
        if target is not None:
            raise PrerequisiteMissing(
                f"--target {target}: this database's snapshots have no targets (it is below "
                "revision 0005, which keys samples by target)"
            )
        return None
    known = stored_targets(conn)
    if target is not None:
        if target not in known:
            there = ", ".join(known) or "none"
            raise UsageError(f"no samples of target {target!r} here (targets: {there})")
        return target
    if len(known) == 1:
        return known[0]
    (database,) = conn.execute(f"SELECT {SQL_MARKER} current_database()").fetchone() or ("",)
    if database in known:
        return str(database)
    if not known:
        return None
    raise UsageError(
        f"the repository holds samples of {len(known)} targets ({', '.join(known)}): "
        "choose one with --target"
    )


# -- loading ------------------------------------------------------------------------------------


def load_snapshots(
    conn: psycopg.Connection[Any],
    headers: Sequence[SnapshotHeader],
    layout: Layout = HEAD_LAYOUT,
) -> dict[int, Snapshot]:
    """The full state at each snapshot of *headers*, by id (one query per row kind): a compact
    sample's state (``samples.load_states``), or below revision 0005 a full copy."""
    if layout.samples:
        by_target: dict[str, list[SnapshotHeader]] = {}
        for header in headers:
            by_target.setdefault(header.target or "", []).append(header)
        loaded: dict[int, Snapshot] = {}
        for target, chosen in by_target.items():
            loaded.update(samples.load_states(conn, target, chosen))
        return loaded
    return legacy.load_snapshots(conn, headers, layout)


# A bucket's times are known to this slack: its start is the server's clock at the writing
# statement minus an age the writer measured just before (``dbtools.metrics``), and a request
# counts in the bucket of its end, its statements a little before.
EDGE_SLACK_SECONDS = 0.05
# Buckets longer than this are not read (the lower bound of the index scan on bucket_start).
LONGEST_BUCKET_SECONDS = 3600


@dataclass(frozen=True)
class RequestTotals:
    """The application's request metrics over a window.

    The request-metrics buckets do not start and end with the window's samples, so a bucket an
    end cuts holds requests from both sides, in proportions nobody recorded. ``requests`` counts
    each bucket by the share of its time inside the window (prorated); the true number lies
    between ``requests_low`` (the buckets certainly inside, ``EDGE_SLACK_SECONDS`` allowed) and
    ``requests_high`` (every bucket that may overlap): ``edge_error`` is how far that can move
    queries per request. Errors, cache hits and latency are ratios and percentiles: taken over
    the overlapping buckets whole (``bucket_requests``), never split.

    ``p95``: the window's, read from the overlapping buckets' latency histograms merged
    (``schema.latency``), or, when a bucket with requests has none (an older writer), an
    estimate from each bucket's p95 and requests. ``p95_ms_max`` is the highest bucket p95: the
    worst second (of one-second buckets), never the window's p95.

    ``queries``: the statements the application counted for these requests (revision 0006's
    ``request_metrics.queries``), prorated as the requests are (``queries_low``,
    ``queries_high``: its bounds); None when a bucket did not count them
    (``uncounted_buckets``).
    """

    buckets: int
    requests: int
    errors: int
    cache_hits: int
    cache_misses: int
    p95_ms_max: float | None
    _: KW_ONLY
    bucket_requests: int | None = None  # None: ``requests`` (no bucket cut by an end)
    requests_low: int | None = None  # None: exactly ``requests``
    requests_high: int | None = None
    edge_buckets: int = 0  # buckets with requests that an end may cut
    edge_bucket_seconds: float | None = None  # the widest of them
    p95: Percentile | None = None
    queries: int | None = None
    uncounted_buckets: int = 0
    queries_low: int | None = None  # None: exactly ``queries``
    queries_high: int | None = None
    # What the rows claim that cannot be: requests their own histograms do not count, buckets
    # with more failed requests than requests (an error rate above 100%).
    histogram_requests: int = 0  # the requests of the rows with a histogram…
    histogram_count: int = 0  # …and what those histograms count
    impossible_buckets: int = 0

    @property
    def inconsistencies(self) -> list[str]:
        """What the application's rows claim that cannot be true (a writer's bug or a lie)."""
        found = []
        if self.histogram_requests != self.histogram_count:
            found.append(
                f"request metrics inconsistent: the buckets with a latency histogram claim "
                f"{self.histogram_requests:,} requests, their histograms count "
                f"{self.histogram_count:,}"
            )
        if self.impossible_buckets:
            found.append(
                f"request metrics inconsistent: {self.impossible_buckets} bucket(s) count more "
                "failed requests than requests"
            )
        return found

    @property
    def whole_requests(self) -> int:
        """The overlapping buckets' requests, whole: what error and hit ratios divide by."""
        return self.requests if self.bucket_requests is None else self.bucket_requests

    @property
    def edge_error(self) -> float:
        """The most that queries per request (statements / ``requests``) can be off by, relative,
        from the buckets the window's ends cut (infinity: none certainly inside)."""
        return relative_bound(self.requests, self.requests_low, self.requests_high)

    @property
    def queries_edge_error(self) -> float:
        """The most the application's own statements per request (``queries`` / ``requests``,
        both prorated) can be off by, relative."""
        if not self.queries or not self.requests:
            return self.edge_error
        low_q = self.queries if self.queries_low is None else self.queries_low
        high_q = self.queries if self.queries_high is None else self.queries_high
        low_r = self.requests if self.requests_low is None else self.requests_low
        high_r = self.requests if self.requests_high is None else self.requests_high
        if low_r <= 0:
            return math.inf
        estimate = self.queries / self.requests
        return max(high_q / low_r / estimate - 1, 1 - low_q / high_r / estimate, 0.0)

    @property
    def queries_slack(self) -> int:
        """How far ``queries`` may lie from the statements counted inside the window."""
        if self.queries is None or self.queries_low is None or self.queries_high is None:
            return 0
        return max(self.queries - self.queries_low, self.queries_high - self.queries)

    @property
    def p95_ms(self) -> float | None:
        """The window's p95 (``p95``), in ms; None without latencies."""
        return self.p95.value_ms if self.p95 else None


def relative_bound(estimate: float, low: float | None, high: float | None) -> float:
    """How far a figure divided by *estimate* can be off, relative, when the true divisor lies
    in [*low*, *high*] (None: exact); infinity when it may be zero."""
    if low is None or high is None or not estimate:
        return 0.0
    if low <= 0:
        return math.inf
    return max(estimate / low - 1, 1 - estimate / high, 0.0)


# A window's request metrics: each bucket that may overlap it (``m``), with the share of its
# time inside (``inside``) and whether an end may cut it (``cut``); the sums ({group}: a row
# per variant, with its queries); the histograms of the overlapping buckets merged.
_REQUEST_TOTALS = """
WITH {marker} m AS (
    SELECT {group_key} AS g, requests, errors, cache_hits, cache_misses, latency_p95_ms,
           {histogram} AS latency_histogram, {queries} AS queries, bucket_seconds,
           CASE WHEN bucket_seconds <= 0  -- an instant
                THEN (bucket_start >= %(start)s AND bucket_start <= %(end)s)::int
                ELSE greatest(extract(epoch FROM least(bucket_start
                                                       + make_interval(secs => bucket_seconds),
                                                       %(end)s)
                                                 - greatest(bucket_start, %(start)s)), 0)
                     / bucket_seconds
           END AS inside,
           bucket_start - %(slack)s < %(start)s
               OR bucket_start + make_interval(secs => bucket_seconds) + %(slack)s > %(end)s AS cut
    FROM {request_metrics}
    WHERE bucket_start >= %(start)s - make_interval(secs => %(longest)s)
      AND bucket_start - %(slack)s < %(end)s
      AND bucket_start + make_interval(secs => bucket_seconds) + %(slack)s > %(start)s
      AND (%(operation)s::text IS NULL OR operation = %(operation)s::text)
{of_target}), t AS (
    SELECT g, count(*) FILTER (WHERE inside > 0) AS buckets,
           round(coalesce(sum(requests * inside), 0))::bigint AS requests,
           coalesce(sum(errors) FILTER (WHERE inside > 0), 0)::bigint AS errors,
           coalesce(sum(cache_hits) FILTER (WHERE inside > 0), 0)::bigint AS cache_hits,
           coalesce(sum(cache_misses) FILTER (WHERE inside > 0), 0)::bigint AS cache_misses,
           max(latency_p95_ms) FILTER (WHERE requests > 0 AND inside > 0) AS p95_ms_max,
           coalesce(sum(requests) FILTER (WHERE inside > 0), 0)::bigint AS bucket_requests,
           coalesce(sum(requests) FILTER (WHERE NOT cut), 0)::bigint AS requests_low,
           coalesce(sum(requests), 0)::bigint AS requests_high,
           count(*) FILTER (WHERE cut AND requests > 0) AS edge_buckets,
           max(bucket_seconds) FILTER (WHERE cut AND requests > 0)::float8 AS edge_bucket_seconds,
           count(*) FILTER (WHERE inside > 0 AND requests > 0 AND latency_histogram IS NULL)
               AS histogram_missing,
           coalesce(array_agg(latency_p95_ms) FILTER (WHERE inside > 0 AND requests > 0
                                                      AND latency_p95_ms IS NOT NULL),
                    '{{}}') AS p95s,
           coalesce(array_agg(requests) FILTER (WHERE inside > 0 AND requests > 0
                                                AND latency_p95_ms IS NOT NULL),
                    '{{}}') AS p95_requests,
           round(sum(queries * inside))::bigint AS queries,
           sum(queries) FILTER (WHERE NOT cut)::bigint AS queries_low,
           sum(queries)::bigint AS queries_high,
           count(*) FILTER (WHERE inside > 0 AND queries IS NULL) AS uncounted_buckets,
           coalesce(sum(requests) FILTER (WHERE inside > 0 AND latency_histogram IS NOT NULL),
                    0)::bigint AS histogram_requests,
           count(*) FILTER (WHERE inside > 0 AND errors > requests) AS impossible_buckets
    FROM m GROUP BY g
), h AS (
    SELECT g, array_agg(c ORDER BY i) AS latency_histogram
    FROM (SELECT g, u.i, sum(u.c)::bigint AS c
          FROM m CROSS JOIN LATERAL unnest(m.latency_histogram) WITH ORDINALITY AS u(c, i)
          WHERE inside > 0 GROUP BY g, u.i) merged
    GROUP BY g
)
SELECT t.*, h.latency_histogram FROM t LEFT JOIN h ON h.g IS NOT DISTINCT FROM t.g
ORDER BY t.g NULLS FIRST"""
# From revision 0005 an application may write its metrics to a central repository, naming its
# target; rows without one are the database's own.
OF_TARGET = "  AND (target IS NULL OR target = %(target)s::text)\n"


def request_totals_sql(layout: Layout = HEAD_LAYOUT, *, per_variant: bool = False) -> sql.Composed:
    """The request totals of a window (*per_variant*: a row per variant), of the target where
    *layout*'s ``request_metrics`` names targets."""
    of_target = OF_TARGET if layout.has(monitoring.REQUEST_METRICS, "target") else ""
    has = functools.partial(layout.has, monitoring.REQUEST_METRICS)
    return sql.SQL(_REQUEST_TOTALS).format(
        marker=sql.SQL(SQL_MARKER),
        group_key=sql.SQL("variant" if per_variant else "NULL::text"),
        histogram=sql.SQL("latency_histogram" if has("latency_histogram") else "NULL::int[]"),
        queries=sql.SQL("queries" if has("queries") else "NULL::bigint"),
        request_metrics=_table(monitoring.REQUEST_METRICS),
        of_target=sql.SQL(of_target),
    )


def _totals_params(
    start: datetime, end: datetime, operation: str | None, target: str | None
) -> dict[str, Any]:
    return {"start": start, "end": end, "operation": operation, "target": target,
            "slack": timedelta(seconds=EDGE_SLACK_SECONDS), "longest": LONGEST_BUCKET_SECONDS}  # fmt: skip


def _totals(row: dict[str, Any]) -> dict[str, Any]:
    """``RequestTotals``' fields from a row of ``_REQUEST_TOTALS``."""
    exact = not row["edge_buckets"]
    counted = not row["uncounted_buckets"]
    return {
        "buckets": row["buckets"], "requests": row["requests"], "errors": row["errors"],
        "cache_hits": row["cache_hits"], "cache_misses": row["cache_misses"],
        "p95_ms_max": row["p95_ms_max"],
        "bucket_requests": row["bucket_requests"],
        "requests_low": None if exact else row["requests_low"],
        "requests_high": None if exact else row["requests_high"],
        "edge_buckets": row["edge_buckets"], "edge_bucket_seconds": row["edge_bucket_seconds"],
        "p95": latency.histogram_percentile(row["latency_histogram"] or (), 0.95)
        if not row["histogram_missing"]
        else latency.weighted_percentile(row["p95s"], row["p95_requests"], 0.95),
        "queries": row["queries"] if counted else None,
        "uncounted_buckets": row["uncounted_buckets"],
        "queries_low": None if exact or not counted else row["queries_low"],
        "queries_high": None if exact or not counted else row["queries_high"],
        "histogram_requests": row["histogram_requests"],
        "histogram_count": sum(row["latency_histogram"] or ()),
        "impossible_buckets": row["impossible_buckets"],
    }  # fmt: skip


NO_REQUESTS = RequestTotals(0, 0, 0, 0, 0, None)


def load_request_totals(
    conn: psycopg.Connection[Any],
    start: datetime,
    end: datetime,
    operation: str | None = None,
    *,
    target: str | None = None,
    layout: Layout = HEAD_LAYOUT,
) -> RequestTotals:
    """The request metrics of the window [*start*, *end*] (the target's, and those that name
    none): see ``RequestTotals``."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            request_totals_sql(layout), _totals_params(start, end, operation, target)
        ).fetchone()
    return NO_REQUESTS if row is None else RequestTotals(**_totals(row))


@dataclass(frozen=True)
class VariantTotals(RequestTotals):
    """``RequestTotals`` of one variant: the code path that served the requests (None: rows
    that name none)."""

    variant: str | None


def load_variant_totals(
    conn: psycopg.Connection[Any],
    start: datetime,
    end: datetime,
    operation: str | None = None,
    *,
    target: str | None = None,
    layout: Layout = HEAD_LAYOUT,
) -> dict[str | None, VariantTotals]:
    """The request metrics of the window [*start*, *end*] (the target's, and those that name
    none), per variant.

    Raises ``PrerequisiteMissing`` when the table has no ``variant`` column (a revision before
    the one that adds it).
    """
    if not layout.has(monitoring.REQUEST_METRICS, "variant"):
        raise PrerequisiteMissing(
            f"{monitoring.monitoring_table(monitoring.REQUEST_METRICS)} has no variant column "
            "at this database's revision: run alembic upgrade head"
        )
    query = request_totals_sql(layout, per_variant=True)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(query, _totals_params(start, end, operation, target)).fetchall()
    return {row["g"]: VariantTotals(**_totals(row), variant=row["g"]) for row in rows}


@dataclass(frozen=True)
class WindowBounds:
    """A window resolved to its two samples' headers, with the request metrics inside it,
    before any statistics row is loaded (what ``stats.sql_sums`` sums in the database).

    A window given by time also carries the times asked, why it cannot be trusted when its
    samples do not cover it (``problems``), and ``notes`` (rolled-up samples). ``inside``: the
    headers of the samples between its two (``collect``'s), whose settings are judged too.
    """

    ref: WindowRef
    start: SnapshotHeader
    end: SnapshotHeader
    request_totals: RequestTotals
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    asked: tuple[datetime | None, datetime | None] = (None, None)
    inside: tuple[SnapshotHeader, ...] = ()

    @property
    def seconds(self) -> float:
        return (self.end.taken_at - self.start.taken_at).total_seconds()


@dataclass(frozen=True)
class Window:
    """Two stored samples bracketing a period, loaded whole (every entry's state at each end),
    and the request metrics inside it; the rest as ``WindowBounds``."""

    ref: WindowRef
    start: Snapshot
    end: Snapshot
    request_totals: RequestTotals
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    asked: tuple[datetime | None, datetime | None] = (None, None)
    inside: tuple[SnapshotHeader, ...] = ()

    @classmethod
    def of(cls, bounds: WindowBounds, start: Snapshot, end: Snapshot) -> Window:
        """*bounds* with its two samples' states loaded."""
        return cls(bounds.ref, start, end, bounds.request_totals, bounds.problems, bounds.notes,
                   bounds.asked, bounds.inside)  # fmt: skip

    @property
    def bounds(self) -> WindowBounds:
        return WindowBounds(self.ref, self.start.header, self.end.header, self.request_totals,
                            self.problems, self.notes, self.asked, self.inside)  # fmt: skip

    @property
    def seconds(self) -> float:
        return (self.end.header.taken_at - self.start.header.taken_at).total_seconds()

    @functools.cached_property
    def deltas(self) -> WindowDeltas:
        """What every counter did inside the window (computed once, on first use)."""
        return window_deltas(self.start, self.end)


_FIRST = sql.SQL("ORDER BY taken_at, id LIMIT 1")
_LAST = sql.SQL("ORDER BY taken_at DESC, id DESC LIMIT 1")
_IN_ORDER = sql.SQL("ORDER BY taken_at, id")


def _labels(ref: WindowRef) -> list[str]:
    """The ends of *ref* given as labels."""
    ends = ((ref.start, ref.start_time), (ref.end, ref.end_time))
    return [label for label, moment in ends if label and moment is None]


def _resolved(
    conn: psycopg.Connection[Any],
    ref: WindowRef,
    target: str | None,
    layout: Layout,
    by_label: dict[str, SnapshotHeader],
) -> tuple[SnapshotHeader, SnapshotHeader, tuple[datetime | None, datetime | None]]:
    """The two samples *ref* stands for (its labels' headers in *by_label*), and the times it
    asked (None for a label)."""
    if ref.last_seconds is not None:
        now = database_now(conn)
        asked: tuple[datetime | None, datetime | None] = (
            now - timedelta(seconds=ref.last_seconds),
            now,
        )
    else:
        asked = (ref.start_time, ref.end_time)
    low = by_label[ref.start].taken_at if asked[0] is None else asked[0]
    high = by_label[ref.end].taken_at if asked[1] is None else asked[1]
    assert low is not None and high is not None
    params = {"target": target, "from": low, "to": high}
    start = by_label.get(ref.start) if asked[0] is None else None
    end = by_label.get(ref.end) if asked[1] is None else None
    if start is None:
        found = _fetch_headers(conn, _headers_sql(layout, _BETWEEN, _FIRST), params)
        start = found[0] if found else None
    if end is None:
        found = _fetch_headers(conn, _headers_sql(layout, _BETWEEN, _LAST), params)
        end = found[0] if found else None
    if start is None or end is None or end.taken_at <= start.taken_at:
        where = f" of target {target}" if target else ""
        raise UsageError(
            f"window {ref}: no two samples{where} between {_clock(low)} and {_clock(high)} UTC"
            if ref.by_time
            else f"window {ref}: {ref.end!r} was not taken after {ref.start!r}"
        )
    return start, end, asked


def database_now(conn: psycopg.Connection[Any]) -> datetime:
    """The server's clock (samples are stamped with it, not the local one)."""
    row = conn.execute(f"SELECT {SQL_MARKER} now()").fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def _clock(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _span(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return (
        (f"{hours}h " if hours else "") + (f"{minutes}m " if minutes or hours else "") + f"{secs}s"
    )


# A window by time is trusted only when its samples span this share of the time asked.
MIN_COVERAGE = 0.90


def coverage(
    headers: Sequence[SnapshotHeader],
    asked: tuple[datetime | None, datetime | None],
    min_coverage: float = MIN_COVERAGE,
) -> tuple[list[str], list[str]]:
    """Why a window by time cannot be trusted, and its notes, from the samples inside it
    (*headers*, in time order, its two ends first and last) and the times asked.

    Its two samples must span *min_coverage* of the time asked (an end given as a label asks
    its sample's time): a window answered by samples covering a few seconds of ten minutes says
    nothing of the rest. The collection interval is the largest among the window's collected
    samples (a rolled-up sample stands for its period); an end farther than twice that from the
    time asked, or two samples farther apart, leaves statements unaccounted for at those moments.
    """
    problems: list[str] = []
    notes: list[str] = []
    first, last = headers[0], headers[-1]
    asked_from, asked_to = asked[0] or first.taken_at, asked[1] or last.taken_at
    length = (asked_to - asked_from).total_seconds()
    spanned = (last.taken_at - first.taken_at).total_seconds()
    if length > 0 and spanned < min_coverage * length:
        problems.append(
            f"its samples cover {spanned / length:.1%} of it ({_span(spanned)} of {_span(length)}, "
            f"from {_clock(first.taken_at)} to {_clock(last.taken_at)} UTC; at least "
            f"{min_coverage:.0%} needed): what happened in the rest was not observed"
        )
    intervals = [h.interval_seconds for h in headers if h.interval_seconds]
    rolled = [h for h in headers if h.rollup_seconds]
    if not intervals:
        notes.append("no collected sample in the window (labelled snapshots only): gaps not judged")
        return problems, notes
    interval = max(intervals)

    def allowed(header: SnapshotHeader) -> float:
        return 2 * max(interval, header.rollup_seconds or 0.0)

    if asked[0] is not None and (first.taken_at - asked[0]).total_seconds() > allowed(first):
        problems.append(
            f"no sample at the start: the first inside the window is {_span((first.taken_at - asked[0]).total_seconds())} "
            f"after {_clock(asked[0])} UTC (more than twice the collection interval, {interval:g} s)"
        )
    if asked[1] is not None and (asked[1] - last.taken_at).total_seconds() > allowed(last):
        problems.append(
            f"no sample at the end: the last inside the window is {_span((asked[1] - last.taken_at).total_seconds())} "
            f"before {_clock(asked[1])} UTC (more than twice the collection interval, {interval:g} s)"
        )
    for before, after in itertools.pairwise(headers):
        gap = (after.taken_at - before.taken_at).total_seconds()
        if gap > allowed(after):
            problems.append(
                f"a gap of {_span(gap)} between samples at {_clock(before.taken_at)} and "
                f"{_clock(after.taken_at)} UTC (more than twice the collection interval, "
                f"{interval:g} s): the collector missed samples"
            )
    if rolled:
        periods = sorted({h.rollup_seconds for h in rolled if h.rollup_seconds})
        notes.append(
            f"rolled-up data: {len(rolled)} of the window's samples are kept one per "
            f"{', '.join(_span(p) for p in periods)} (older samples are rolled up), up to "
            f"{_clock(max(h.taken_at for h in rolled))} UTC"
        )
    return problems, notes


@dataclass(frozen=True)
class ResolvedWindows:
    """Windows resolved to their samples: the repository's layout, the target they are of
    (None before revision 0005) and each window's bounds, in the order asked."""

    layout: Layout
    target: str | None
    bounds: tuple[WindowBounds, ...]


def resolve_windows(
    conn: psycopg.Connection[Any],
    refs: Sequence[WindowRef],
    *,
    operation: str | None = None,
    target: str | None = None,
    min_coverage: float = MIN_COVERAGE,
) -> ResolvedWindows:
    """Resolve the windows *refs* of *target* (``resolve_target``: by default the repository's
    only one) to their samples' headers (the samples inside each too) and request totals,
    loading no statistics row; a window by time whose samples span less than *min_coverage* of
    it is untrusted (``coverage``). Raises ``UsageError`` for unknown labels, an end before its
    start, or no two samples between two times."""
    with translated_errors("loading snapshots"):
        layout = read_layout(conn)
        if not layout.has(monitoring.SNAPSHOTS):
            raise PrerequisiteMissing(
                "no monitoring tables (perf_monitoring.snapshots): run alembic upgrade head"
            )
        chosen = resolve_target(conn, target, layout)
        labels = [label for ref in refs for label in _labels(ref)]
        by_label = find_headers(conn, labels, layout, chosen) if labels else {}
        missing = [label for label in dict.fromkeys(labels) if label not in by_label]
        if missing:
            raise UsageError(_unknown_labels_message(conn, refs, missing, layout, chosen))
        found = []
        for ref in refs:
            start, end, asked = _resolved(conn, ref, chosen, layout, by_label)
            problems: list[str] = []
            notes: list[str] = []
            span = headers_between(conn, start.taken_at, end.taken_at, layout, chosen)
            inside = tuple(h for h in span if h.id not in (start.id, end.id))
            if ref.by_time:
                problems, notes = coverage([start, *inside, end], asked, min_coverage)
            totals = load_request_totals(
                conn, start.taken_at, end.taken_at, operation, target=chosen, layout=layout
            )
            found.append(
                WindowBounds(ref, start, end, totals, tuple(problems), tuple(notes), asked, inside)
            )
            log.info(
                "window %s: samples at %s and %s UTC, %d requests in the metrics",
                ref, _clock(start.taken_at), _clock(end.taken_at), totals.requests,
            )  # fmt: skip
    return ResolvedWindows(layout, chosen, tuple(found))


def load_windows(
    conn: psycopg.Connection[Any],
    refs: Sequence[WindowRef],
    *,
    operation: str | None = None,
    target: str | None = None,
    min_coverage: float = MIN_COVERAGE,
) -> list[Window]:
    """The windows *refs* of *target* (``resolve_windows``), with their samples' states loaded
    whole."""
    resolved = resolve_windows(
        conn, refs, operation=operation, target=target, min_coverage=min_coverage
    )
    return loaded_windows(conn, resolved)


def loaded_windows(conn: psycopg.Connection[Any], resolved: ResolvedWindows) -> list[Window]:
    """The windows *resolved* with their samples' states loaded whole."""
    with translated_errors("loading snapshots"):
        headers = {h.id: h for b in resolved.bounds for h in (b.start, b.end)}
        snapshots = load_snapshots(conn, list(headers.values()), resolved.layout)
    return [
        Window.of(b, snapshots[b.start.id], snapshots[b.end.id])  # type: ignore[index]
        for b in resolved.bounds
    ]


def _unknown_labels_message(
    conn: psycopg.Connection[Any],
    refs: Sequence[WindowRef],
    missing: list[str],
    layout: Layout,
    target: str | None,
) -> str:
    message = f"unknown snapshot label(s): {', '.join(repr(m) for m in missing)}"
    if target is not None:
        message += f" (target {target})"
    plain = [ref.name for ref in refs if RANGE_SEPARATOR not in ref.name]
    if plain and find_headers(conn, plain, layout, target):
        message += " (a single snapshot is not a window: give START..END)"
    return message
