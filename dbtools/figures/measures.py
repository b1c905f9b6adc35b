"""A window's figures: what verify, the canary, the report and the rollout judge and show.

``measure`` turns a window (its two samples' headers and its request metrics) and what its
entries add up to (``sums.WindowSums``) into ``WindowMeasures``; the store answers the sums
(``Store.measures`` is the one way from a stored window to its figures). Everything is computed
from the difference between a window's two samples, never from totals since a reset, and is
pure (no database access). A window whose counters cannot be trusted (a reset, evictions, a
restart, zero requests, …) says why in ``problems``.

This is also the one home of the ratios every figure shares: the hit ratios (``hit_ratio`` and
its family, ``hit / (hit + read)``), figures per request (``per_request``) and those of the
application's request metrics (``request_figures``: error rate, cache hit ratio, p95s).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dbtools.figures import counting
from dbtools.figures.requests import RequestTotals
from dbtools.figures.sums import ALL_STATEMENTS, Scope, StatementCounts, WindowSums, sum_deltas
from dbtools.figures.windows import Window
from dbtools.reading.rows import IndexRow, StatementRow, TableRow
from dbtools.schema import latency

# -- names ---------------------------------------------------------------------------------------

# A window's p95 (verify, the canary, the report, the rollout's triggers, by this name): the
# 95th percentile of its requests' latencies, read from the request-metrics buckets' histograms
# merged (``schema.latency``); from buckets without one, an estimate, said so.
P95_NAME = "p95 latency"
P95_DEFINITION = (
    "the 95th percentile of the window's request latencies, from the request-metrics buckets' "
    "latency histograms merged: the upper bound of the histogram bucket holding it, at most "
    f"{latency.RELATIVE_WIDTH:.1%} above it (buckets written without a histogram give an "
    "estimate: the request-weighted 95th percentile of the buckets' own p95s)"
)
# The highest bucket's p95, kept beside it under its own name: one bad second shows, and never
# stands for the window.
WORST_SECOND_NAME = "p95 latency, worst second"
WORST_SECOND_DEFINITION = "the highest p95 of a single request-metrics bucket in the window"
# Queries per request may be off by this much (relative) from the buckets a window's ends cut
# before the window is untrusted ([tool.dbtools.verify] request_edge_tolerance).
EDGE_TOLERANCE = 0.02


def p95_text(value: float | None, estimated: bool, missing: str = "no data") -> str:
    """A window p95 for people: ``123.4 ms``, ``123.4 ms (estimate)``."""
    if value is None:
        return missing
    return f"{value:.1f} ms" + (" (estimate)" if estimated else "")


# -- window measures ----------------------------------------------------------------------------


def ratio(part: float, whole: float) -> float | None:
    """*part* / *whole*, None when *whole* is zero (no data, never 0 or 1)."""
    return part / whole if whole else None


def per_request(count: float, requests: int | None) -> float | None:
    """*count* per request; None without requests."""
    return ratio(count, requests or 0)


def hit_ratio(hit: float, read: float) -> float | None:
    """``hit / (hit + read)``: the share of reads a cache served (shared buffers; the
    application's cache for its hits and misses); None when nothing was read. Over a window's
    deltas, never totals since a reset."""
    return ratio(hit, hit + read)


def buffer_cache_hit_ratio(counts: StatementCounts) -> float | None:
    """The application's statements' (``pg_stat_statements``: shared_blks_hit, shared_blks_read
    of the queries in scope), never ``pg_stat_database``'s: that one counts dbtools' own
    snapshots too (an idle window read 100%)."""
    return hit_ratio(counts.shared_blks_hit, counts.shared_blks_read)


# What each ratio is computed from (verify's JSON and table, the report, the README).
RATIO_DEFINITIONS = {
    "buffer_cache_hit_ratio": "pg_stat_statements shared_blks_hit / (shared_blks_hit + "
    "shared_blks_read) of the application's top-level statements in scope",
    "index_hit_ratio": "pg_statio_user_indexes idx_blks_hit / (idx_blks_hit + idx_blks_read) "
    "of the application's indexes (the monitoring schema left out)",
    "app_cache_hit_ratio": "request_metrics cache_hits / (cache_hits + cache_misses)",
}
# What each figure of a JSON document is computed from: the ratios and both p95s.
FIGURE_DEFINITIONS = {
    **RATIO_DEFINITIONS,
    "p95_ms": P95_DEFINITION,
    "p95_worst_second_ms": WORST_SECOND_DEFINITION,
}


def heap_hit_ratio(tables: Iterable[TableRow]) -> float | None:
    """The tables' heap blocks together (``pg_statio_user_tables``: heap_blks_*)."""
    rows = list(tables)
    return hit_ratio(sum(r.heap_blks_hit for r in rows), sum(r.heap_blks_read for r in rows))


def index_hit_ratio(rows: Iterable[IndexRow | TableRow]) -> float | None:
    """Index blocks together (idx_blks_*): of indexes, or of tables (all their indexes)."""
    found = list(rows)
    return hit_ratio(sum(r.idx_blks_hit for r in found), sum(r.idx_blks_read for r in found))


def statement_hit_ratio(row: StatementRow) -> float | None:
    """A statement's shared-buffer hit ratio (``pg_stat_statements``: shared_blks_*)."""
    return hit_ratio(row.shared_blks_hit, row.shared_blks_read)


@dataclass(frozen=True)
class RequestFigures:
    """What the application's request metrics over a window (or one variant's) give. None
    means no data; ``requests`` are those of the buckets the errors and hits come from."""

    requests: int
    error_rate: float | None
    app_cache_hit_ratio: float | None
    p95_ms: float | None  # P95_NAME: from the buckets' merged histograms
    p95_low_ms: float | None = None  # the p95 lies above it (None: estimated, or no data)
    p95_estimated: bool = False  # from buckets without a histogram
    p95_worst_second_ms: float | None = None  # WORST_SECOND_NAME


def request_figures(totals: RequestTotals | None) -> RequestFigures:
    """The error rate, cache hit ratio and p95s of *totals* (None: no request metrics)."""
    if totals is None:
        return RequestFigures(0, None, None, None)
    has_metrics = totals.buckets > 0 and totals.whole_requests > 0
    p95 = totals.p95 if has_metrics else None
    return RequestFigures(
        requests=totals.whole_requests,
        error_rate=ratio(totals.errors, totals.whole_requests) if has_metrics else None,
        app_cache_hit_ratio=hit_ratio(totals.cache_hits, totals.cache_misses),
        p95_ms=p95.value_ms if p95 else None,
        p95_low_ms=p95.low_ms if p95 else None,
        p95_estimated=bool(p95 and p95.estimated),
        p95_worst_second_ms=totals.p95_ms_max if has_metrics else None,
    )


@dataclass(frozen=True)
class Reconciliation:
    """The application's count of its statements against pg_stat_statements'.

    The application's count comes from the request-metrics buckets overlapping the window,
    prorated at its ends: it may lie *edge_allowance* statements from what was sent inside it
    (``RequestTotals.queries_slack``), beyond the *tolerance* (relative to pg_stat_statements').
    """

    application: int | None  # None: some bucket did not count them
    database: int
    tolerance: float
    uncounted_buckets: int = 0
    edge_allowance: int = 0

    @property
    def difference(self) -> int | None:
        """How many more statements the database counted than the application."""
        return None if self.application is None else self.database - self.application

    @property
    def relative(self) -> float | None:
        """|difference| / the database's count (1.0 when the database counted none)."""
        if self.difference is None:
            return None
        return (
            abs(self.difference) / self.database if self.database else float(bool(self.difference))
        )

    @property
    def matches(self) -> bool:
        if self.difference is None:
            return False
        return abs(self.difference) <= self.tolerance * self.database + self.edge_allowance

    def as_dict(self) -> dict[str, Any]:
        return {
            "application": self.application,
            "database": self.database,
            "difference": self.difference,
            "relative_difference": self.relative,
            "tolerance": self.tolerance,
            "uncounted_buckets": self.uncounted_buckets,
            "edge_allowance": self.edge_allowance,
            "matches": self.matches,
        }

    @classmethod
    def of(cls, totals: RequestTotals, database: int, tolerance: float) -> Reconciliation:
        """The application's count in *totals* against *database*'s."""
        return cls(totals.queries, database, tolerance, totals.uncounted_buckets,
                   totals.queries_slack)  # fmt: skip


@dataclass(frozen=True)
class WindowMeasures:
    """The figures of one window that verify judges and shows. None means "no data"."""

    name: str
    start_label: str
    end_label: str
    started_at: datetime
    ended_at: datetime
    seconds: float
    requests: int | None
    requests_source: str  # "--requests-served", "request_metrics" or "none"
    counts: StatementCounts
    queries_per_request: float | None
    query_rate: float | None
    buffer_cache_hit_ratio: float | None
    index_hit_ratio: float | None
    app_cache_hit_ratio: float | None
    p95_ms: float | None  # P95_NAME: the window's, from the merged histograms
    error_rate: float | None
    hidden_calls: int
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # a window by time on rolled-up samples, …
    # Beside the headline: work that moved into functions shows here (None: not counted).
    nested_per_request: float | None = None  # None also when track is not 'all'
    exec_time_per_request_ms: float | None = None
    index_scans: Mapping[str, int] = field(default_factory=dict, compare=False, repr=False)
    database_oid: int | None = field(default=None, compare=False)  # the start sample's
    database_name: str = field(default="", compare=False)
    # The p95's interval: above p95_low_ms, at most p95_ms (None: estimated, or no data).
    p95_low_ms: float | None = None
    p95_estimated: bool = False  # from buckets without a histogram
    p95_worst_second_ms: float | None = None  # WORST_SECOND_NAME
    # The requests' bounds when the window's ends cut request-metrics buckets (None: exact),
    # and how far that can move queries per request (relative).
    requests_bounds: tuple[int, int] | None = None
    edge_error: float = 0.0

    @property
    def trusted(self) -> bool:
        return not self.problems

    @property
    def p95_text(self) -> str:
        """The p95 for people (``p95_text``)."""
        return p95_text(self.p95_ms, self.p95_estimated)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (stable keys)."""
        return {
            "name": self.name,
            "start": self.start_label,
            "end": self.end_label,
            "started_at": self.started_at.isoformat(),
            "ended_at": self.ended_at.isoformat(),
            "notes": list(self.notes),
            "seconds": round(self.seconds, 3),
            "trusted": self.trusted,
            "problems": list(self.problems),
            "requests": self.requests,
            "requests_source": self.requests_source,
            "queries": self.counts.queries,
            "statements": self.counts.statements,
            "transaction_calls": self.counts.transaction_calls,
            "nested_calls": self.counts.nested_calls,
            "hidden_calls": self.hidden_calls,
            "queries_per_request": self.queries_per_request,
            "query_rate": self.query_rate,
            "buffer_cache_hit_ratio": self.buffer_cache_hit_ratio,
            "index_hit_ratio": self.index_hit_ratio,
            "app_cache_hit_ratio": self.app_cache_hit_ratio,
            "p95_ms": self.p95_ms,
            "p95_low_ms": self.p95_low_ms,
            "p95_estimated": self.p95_estimated,
            "p95_worst_second_ms": self.p95_worst_second_ms,
            "requests_bounds": list(self.requests_bounds) if self.requests_bounds else None,
            "edge_error": None if math.isinf(self.edge_error) else self.edge_error,
            "error_rate": self.error_rate,
            "nested_per_request": self.nested_per_request,
            "exec_time_per_request_ms": self.exec_time_per_request_ms,
        }

    @property
    def statements_per_request(self) -> float | None:
        """Queries and nested statements per request (None when nested ones are not counted)."""
        if self.queries_per_request is None or self.nested_per_request is None:
            return None
        return self.queries_per_request + self.nested_per_request


def problems_of(window: Window, sums: WindowSums, roles: Iterable[str] = ()) -> list[str]:
    """Why the window's counters cannot be trusted (empty when they can); *roles*: whose
    statements count (none given: everyone's)."""
    start, end = window.start, window.end
    problems = list(window.problems)  # a window by time its samples do not cover
    if (start.database_oid, start.database_name) != (end.database_oid, end.database_name):
        problems.append(
            f"snapshots from different databases ({start.database_name}, {end.database_name})"
        )
    if start.server_started_at != end.server_started_at:
        problems.append("the server restarted inside the window (statistics start again)")
    if start.pgss_stats_reset != end.pgss_stats_reset:
        problems.append("pg_stat_statements was reset inside the window (stats_reset changed)")
    if (start.pgss_dealloc or 0) != (end.pgss_dealloc or 0):
        evicted = (end.pgss_dealloc or 0) - (start.pgss_dealloc or 0)
        problems.append(
            f"pg_stat_statements evicted entries {evicted} time(s) inside the window (dealloc); "
            "raise pg_stat_statements.max"
        )
    if sums.statement_entries_reset:
        problems.append(
            f"{sums.statement_entries_reset} statement entries were reset or evicted inside the "
            "window"
        )
    if sums.database_stats_reset:
        problems.append("database statistics were reset inside the window (pg_stat_reset)")
    if sums.counters_reset:
        problems.append("table or index statistics were reset inside the window")
    hidden = end.hidden_calls - start.hidden_calls
    if hidden > 0:
        problems.append(
            f"{hidden} calls came from statements this role cannot see (<insufficient "
            "privilege>): grant pg_read_all_stats (pg_monitor)"
        )
    elif hidden < 0:
        problems.append(
            "entries of statements this role cannot see (<insufficient privilege>) were reset "
            "or evicted inside the window: grant pg_read_all_stats (pg_monitor)"
        )
    problems += counting.settings_problems_across((start, *window.inside, end), roles)
    reset = (
        start.server_started_at != end.server_started_at
        or start.pgss_stats_reset != end.pgss_stats_reset
        or (start.pgss_dealloc or 0) != (end.pgss_dealloc or 0)
        or bool(sums.statement_entries_reset or sums.database_stats_reset or sums.counters_reset)
    )
    problems += _transaction_problems(window, sums, reset=reset)
    return problems


def _transaction_problems(window: Window, sums: WindowSums, *, reset: bool) -> list[str]:
    """The transaction cross-check (``counting.transaction_count``), in words: what its counters
    say happened, never a negative count (*reset*: the window is known untrusted already)."""
    start, end = window.start, window.end
    transactions = counting.transaction_count(
        start,
        end,
        committed=sums.committed,
        sessions=sums.sessions,
        maintenance_runs=sums.maintenance_runs,
        seconds=window.seconds,
        by_role=sums.calls_by_role,
    )
    if transactions is None:
        return []
    if transactions.counted < 0 or transactions.committed < 0:
        # Counters that went down were reset: said once, as what happened.
        fell = (
            "pg_stat_statements' count of top-level calls"
            if transactions.counted < 0
            else "the database's count of committed transactions"
        )
        return (
            []
            if reset
            else [
                f"{fell} went down inside the window: statistics were reset, so whether every "
                "statement was counted cannot be told"
            ]
        )
    if transactions.unexplained <= 0:
        return []
    roles = ", ".join(
        f"{role or '(unknown role)'} {calls.begins:,} BEGIN" if calls.begins
        else f"{role or '(unknown role)'} {calls.calls:,} statements"
        for role, calls in sorted(transactions.by_role.items())
    )  # fmt: skip
    return [
        f"statements missing: {transactions.committed:,} transactions committed in the "
        f"database, but pg_stat_statements saw the applications run {transactions.seen:,} "
        f"({roles or 'none'}; dbtools' own {transactions.own:,}), which explain at most "
        f"{transactions.explained:,} with sessions opened, autovacuum and prepared "
        "statements: an entry was reset, or tracking switched off, inside the window"
    ]


def window_problems(window: Window, roles: Iterable[str] = ()) -> list[str]:
    """Why *window*'s counters cannot be trusted (``problems_of`` its deltas' sums; its states
    loaded)."""
    return problems_of(window, sum_deltas(window), roles)


def measure_window(
    window: Window,
    scope: Scope = ALL_STATEMENTS,
    *,
    edge_tolerance: float = EDGE_TOLERANCE,
    max_mismatch: float | None = None,
) -> WindowMeasures:
    """The figures of *window* over the statements in *scope* from its deltas (its states
    loaded: ``sums.sum_deltas``, the reference); the store's ``Store.measures`` is the way from a
    stored window to its figures."""
    return measure(window, sum_deltas(window, scope), scope,
                   edge_tolerance=edge_tolerance, max_mismatch=max_mismatch)  # fmt: skip


def edge_problem(
    totals: RequestTotals,
    seconds: float,
    tolerance: float,
    *,
    subject: str = "its",
    bound: float | None = None,
) -> str | None:
    """Why a window's requests (*subject*'s) cannot be trusted to *tolerance* when its ends cut
    request-metrics buckets (*bound*, by default ``RequestTotals.edge_error``); None when they
    can."""
    bound = totals.edge_error if bound is None else bound
    if bound <= tolerance:
        return None
    low, high = totals.requests_low or 0, totals.requests_high or 0
    off = "without limit" if math.isinf(bound) else f"by up to {bound:.1%}"
    width = f"{totals.edge_bucket_seconds:g} s" if totals.edge_bucket_seconds else "?"
    return (
        f"requests not aligned with the window: its ends cut {totals.edge_buckets} "
        f"request-metrics bucket(s) of up to {width} (window {seconds:.1f} s), so {subject} "
        f"{totals.requests:,} requests could be {low:,} to {high:,} and queries per request "
        f"off {off} (tolerance {tolerance:.1%}): use shorter buckets or a longer window"
    )


def unreconciled(totals: RequestTotals, queries: int, tolerance: float) -> str | None:
    """Why the application's own count of its statements in a window's request metrics
    (when it counts them) and pg_stat_statements' *queries* disagree beyond *tolerance*; None
    when they agree, or when there is no count."""
    if totals.queries is None or not totals.buckets:
        return None
    counted = Reconciliation.of(totals, queries, tolerance)
    if counted.matches:
        return None
    assert counted.difference is not None and counted.relative is not None
    side = "fewer" if counted.difference > 0 else "more"  # the application's, as the canary's
    return (
        f"the application's request metrics count {counted.application:,} statements, "
        f"pg_stat_statements {queries:,}: {abs(counted.difference):,} {side} "
        f"({counted.relative:.1%}, tolerance {tolerance:.1%}): request metrics late, missing or "
        "not the window's, statements sent outside requests, or another application's "
        "statements (narrow with --role)"
    )


def measure(
    window: Window,
    sums: WindowSums,
    scope: Scope = ALL_STATEMENTS,
    *,
    edge_tolerance: float = EDGE_TOLERANCE,
    max_mismatch: float | None = None,
) -> WindowMeasures:
    """The figures of *window*, whose entries add up to *sums* (over *scope*);
    requests prorated at the window's ends may move queries per request by *edge_tolerance*
    at most (relative), else the window is untrusted. With *max_mismatch*, the application's
    own count of its statements (when its request metrics hold one) must match
    pg_stat_statements' within it (``unreconciled``)."""
    start, end = window.start, window.end
    problems = problems_of(window, sums, scope.roles)
    counts = sums.counts

    totals = window.request_totals
    exact = True
    if end.requests is not None:
        requests: int | None = end.requests
        source = "--requests-served"
    elif totals.buckets:
        requests, source, exact = totals.requests, "request_metrics", False
    else:
        requests, source = None, "none"
    if not requests:
        problems.append(
            "zero requests in the window (no --requests-served and no request_metrics buckets inside it)"
            if requests is None
            else "zero requests in the window"
        )
    elif not exact and (misaligned := edge_problem(totals, window.seconds, edge_tolerance)):
        problems.append(misaligned)
    problems += totals.inconsistencies
    if max_mismatch is not None and (
        mismatch := unreconciled(totals, counts.queries, max_mismatch)
    ):
        problems.append(mismatch)

    figures = request_figures(totals)
    return WindowMeasures(
        name=window.ref.name,
        start_label=window.ref.start or start.taken_at.isoformat(),
        end_label=window.ref.end or end.taken_at.isoformat(),
        started_at=start.taken_at,
        ended_at=end.taken_at,
        seconds=window.seconds,
        requests=requests,
        requests_source=source,
        counts=counts,
        queries_per_request=per_request(counts.queries, requests),
        query_rate=ratio(counts.queries, window.seconds),
        buffer_cache_hit_ratio=buffer_cache_hit_ratio(counts),
        index_hit_ratio=hit_ratio(sums.index_blks_hit, sums.index_blks_read),
        app_cache_hit_ratio=figures.app_cache_hit_ratio,
        p95_ms=figures.p95_ms,
        error_rate=figures.error_rate,
        hidden_calls=end.hidden_calls - start.hidden_calls,
        problems=tuple(problems),
        notes=window.notes,
        nested_per_request=per_request(counts.nested_calls, requests)
        if counting.tracks_nested(start, end, scope.roles)
        else None,
        exec_time_per_request_ms=per_request(counts.exec_time_ms, requests),
        index_scans=sums.index_scans,
        database_oid=start.database_oid,
        database_name=start.database_name,
        p95_low_ms=figures.p95_low_ms,
        p95_estimated=figures.p95_estimated,
        p95_worst_second_ms=figures.p95_worst_second_ms,
        requests_bounds=None
        if exact or totals.requests_low is None or totals.requests_high is None
        else (totals.requests_low, totals.requests_high),
        edge_error=0.0 if exact else totals.edge_error,
    )


def reduction(before: float | None, after: float | None) -> float | None:
    """``1 - after / before``: how much smaller *after* is (None: no data, or *before* zero)."""
    if before is None or after is None or before == 0:
        return None
    return 1 - after / before


def query_reduction(baseline: WindowMeasures, candidate: WindowMeasures) -> float | None:
    """1 - candidate queries per request / baseline queries per request (None: no data)."""
    return reduction(baseline.queries_per_request, candidate.queries_per_request)
