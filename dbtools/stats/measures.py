"""What happened inside a window: deltas between two snapshots, and the figures verify judges.

Everything here is computed from the difference between a window's two snapshots, never from
totals since a reset, and is pure (no database access). A window whose counters cannot be
trusted (a reset, evictions, a restart, zero requests, …) says why in ``problems``.

This is also the one home of what every figure shares: which tables and indexes are the
application's (``is_application``: dbtools' own monitoring schema is left out; a sample's header
sums use it), the hit ratios (``hit_ratio`` and its family, ``hit / (hit + read)``) and
figures per request (``per_request``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from dbtools.schema.monitoring import InSchema, is_application
from dbtools.sqltext.parse import TableRef, is_transaction_control, touches_any
from dbtools.stats import counting
from dbtools.stats.rows import IndexRow, StatementRow, TableRow
from dbtools.stats.windows import Window, WindowBounds

# -- the application's tables and indexes -------------------------------------------------------

S = TypeVar("S", bound=InSchema)


def application_rows(rows: Iterable[S]) -> tuple[S, ...]:
    """The rows of *rows* that are the application's."""
    return tuple(row for row in rows if is_application(row))


# -- names ---------------------------------------------------------------------------------------

# The one p95 dbtools gives for a window (verify, the report, the demo, by this name): request
# metrics arrive as per-bucket percentiles, which cannot be merged into the window's, so the
# highest bucket p95: it never passes what should fail.
P95_NAME = "p95 latency (highest bucket)"
P95_DEFINITION = (
    "the highest p95 among the window's request-metrics buckets (bucket percentiles cannot be "
    "merged; the highest never passes what should fail)"
)


# -- scope and classification -------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """Which statements count: all of the target database's (dbtools' own never), or only
    those run by *roles* and/or touching one of *tables*."""

    roles: frozenset[str] = frozenset()
    tables: frozenset[TableRef] = frozenset()

    def includes_role(self, row: StatementRow) -> bool:
        return not self.roles or row.rolname in self.roles

    def includes_tables(self, row: StatementRow) -> bool:
        return self.includes_text(row.query)

    def includes_text(self, text: str) -> bool:
        """Whether a statement with *text* touches one of the scope's tables (any, without)."""
        return not self.tables or touches_any(text, self.tables)

    def as_dict(self) -> dict[str, list[str]]:
        return {"roles": sorted(self.roles), "tables": sorted(str(t) for t in self.tables)}


@dataclass(frozen=True)
class StatementCounts:
    """Calls in a window, split as verify reports them."""

    queries: int = 0  # application statements: the headline
    statements: int = 0  # distinct application statements called in the window
    transaction_calls: int = 0  # BEGIN/COMMIT/ROLLBACK…, shown apart
    nested_calls: int = 0  # statements run inside functions (toplevel = false), not sent
    # The queries' own: shared blocks (a top-level statement's include its nested statements')
    # and execution time (including the functions they call).
    shared_blks_hit: int = 0
    shared_blks_read: int = 0
    exec_time_ms: float = 0.0


def count_statements(rows: Iterable[StatementRow], scope: Scope) -> StatementCounts:
    """Split the window's statement deltas into queries, transaction control and nested calls."""
    queries = statements = transactions = nested = hit = read = 0
    exec_time = 0.0
    for row in rows:
        if row.calls == 0 or not scope.includes_role(row):
            continue
        if not row.toplevel:
            nested += row.calls
        elif is_transaction_control(row.query):
            transactions += row.calls
        elif scope.includes_tables(row):
            queries += row.calls
            statements += 1
            hit += row.shared_blks_hit
            read += row.shared_blks_read
            exec_time += row.total_exec_time
    return StatementCounts(queries, statements, transactions, nested, hit, read, exec_time)


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
class WindowMeasures:
    """The figures of one window that verify judges and shows. None means "no data"."""

    name: str
    start_label: str
    end_label: str
    started_at: datetime
    ended_at: datetime
    seconds: float
    requests: int | None
    requests_source: str  # "--requests", "request_metrics" or "none"
    counts: StatementCounts
    queries_per_request: float | None
    query_rate: float | None
    buffer_cache_hit_ratio: float | None
    index_hit_ratio: float | None
    app_cache_hit_ratio: float | None
    p95_ms: float | None  # P95_NAME
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

    @property
    def trusted(self) -> bool:
        return not self.problems

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


@dataclass(frozen=True)
class WindowSums:
    """What a window's entries add up to: all its measures need beyond its bounds.

    Summed in Python from the two samples' loaded states (``sum_deltas``: every revision; the
    report and the canary, which need the rows too) or by the database over compact samples
    (``stats.sql_sums``: verify, which needs only these). Both give the same sums
    (tests/test_sql_sums.py).
    """

    counts: StatementCounts
    statement_entries_reset: int  # entries reset, re-created or evicted inside the window
    counters_reset: bool  # a table's, an index's or the database's counters went down
    database_stats_reset: bool  # pg_stat_database.stats_reset moved
    committed: int  # pg_stat_database.xact_commit
    sessions: int | None  # pg_stat_database.sessions (None: not counted, or no database row)
    maintenance_runs: int  # autovacuum and autoanalyze runs on the tables
    index_blks_hit: int  # of the application's indexes
    index_blks_read: int
    index_scans: Mapping[str, int]  # idx_scan by "schema.index" (sql_sums: the indexes asked)


def sum_deltas(window: Window, scope: Scope = Scope()) -> WindowSums:
    """The sums of *window*'s deltas (``window.deltas``) over the statements in *scope*."""
    deltas = window.deltas
    start_db, end_db = window.start.database, window.end.database
    database = deltas.database_row
    indexes = application_rows(deltas.indexes.rows)
    return WindowSums(
        counts=count_statements(deltas.statements.rows, scope),
        statement_entries_reset=len(deltas.statements.reset) + len(deltas.statements.vanished),
        counters_reset=any(bool(kind.reset) for kind in (deltas.tables, deltas.indexes, deltas.database)),
        database_stats_reset=bool(start_db and end_db and start_db.stats_reset != end_db.stats_reset),
        committed=database.xact_commit if database else 0,
        sessions=database.sessions if database else None,
        maintenance_runs=sum(t.autovacuum_count + t.autoanalyze_count for t in deltas.tables.rows),
        index_blks_hit=sum(row.idx_blks_hit for row in indexes),
        index_blks_read=sum(row.idx_blks_read for row in indexes),
        index_scans={f"{row.schemaname}.{row.indexrelname}": row.idx_scan for row in deltas.indexes.rows},
    )  # fmt: skip


def problems_of(bounds: WindowBounds, sums: WindowSums, roles: Iterable[str] = ()) -> list[str]:
    """Why the window's counters cannot be trusted (empty when they can); *roles*: whose
    statements count (none given: everyone's)."""
    start, end = bounds.start, bounds.end
    problems = list(bounds.problems)  # a window by time its samples do not cover
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
    if end.hidden_calls != start.hidden_calls:
        problems.append(
            f"{end.hidden_calls - start.hidden_calls} calls came from statements this role "
            "cannot see (<insufficient privilege>): grant pg_read_all_stats (pg_monitor)"
        )
    problems += counting.settings_problems(start, end, roles)
    transactions = counting.transaction_count(
        start,
        end,
        committed=sums.committed,
        sessions=sums.sessions,
        maintenance_runs=sums.maintenance_runs,
        seconds=bounds.seconds,
    )
    if transactions is not None and transactions.unexplained > 0:
        problems.append(
            f"statements missing: {transactions.committed:,} transactions committed in the "
            f"database, but the {transactions.counted:,} top-level statements "
            f"pg_stat_statements counted explain at most {transactions.explained:,} (with "
            "sessions opened, autovacuum and prepared statements): an entry was reset, or "
            "tracking switched off, inside the window"
        )
    return problems


def window_problems(window: Window, roles: Iterable[str] = ()) -> list[str]:
    """Why *window*'s counters cannot be trusted (``problems_of`` its deltas' sums)."""
    return problems_of(window.bounds, sum_deltas(window), roles)


def measure_window(window: Window, scope: Scope = Scope()) -> WindowMeasures:
    """The figures of *window* over the statements in *scope* (from ``window.deltas``)."""
    return measure(window.bounds, sum_deltas(window, scope), scope)


def measure(bounds: WindowBounds, sums: WindowSums, scope: Scope = Scope()) -> WindowMeasures:
    """The figures of the window *bounds* whose entries add up to *sums* (over *scope*)."""
    start, end = bounds.start, bounds.end
    problems = problems_of(bounds, sums, scope.roles)
    counts = sums.counts

    totals = bounds.request_totals
    if end.requests is not None:
        requests: int | None = end.requests
        source = "--requests"
    elif totals.buckets:
        requests, source = totals.requests, "request_metrics"
    else:
        requests, source = None, "none"
    if not requests:
        problems.append(
            "zero requests in the window (no --requests and no request_metrics buckets inside it)"
            if requests is None
            else "zero requests in the window"
        )

    has_metrics = totals.buckets > 0 and totals.requests > 0
    return WindowMeasures(
        name=bounds.ref.name,
        start_label=bounds.ref.start or start.taken_at.isoformat(),
        end_label=bounds.ref.end or end.taken_at.isoformat(),
        started_at=start.taken_at,
        ended_at=end.taken_at,
        seconds=bounds.seconds,
        requests=requests,
        requests_source=source,
        counts=counts,
        queries_per_request=per_request(counts.queries, requests),
        query_rate=ratio(counts.queries, bounds.seconds),
        buffer_cache_hit_ratio=buffer_cache_hit_ratio(counts),
        index_hit_ratio=hit_ratio(sums.index_blks_hit, sums.index_blks_read),
        app_cache_hit_ratio=hit_ratio(totals.cache_hits, totals.cache_misses),
        p95_ms=totals.p95_ms_max if has_metrics else None,
        error_rate=ratio(totals.errors, totals.requests) if has_metrics else None,
        hidden_calls=end.hidden_calls - start.hidden_calls,
        problems=tuple(problems),
        notes=bounds.notes,
        nested_per_request=per_request(counts.nested_calls, requests)
        if counting.tracks_nested(start, end, scope.roles)
        else None,
        exec_time_per_request_ms=per_request(counts.exec_time_ms, requests),
        index_scans=sums.index_scans,
        database_oid=start.database_oid,
        database_name=start.database_name,
    )


def query_reduction(baseline: WindowMeasures, candidate: WindowMeasures) -> float | None:
    """1 - candidate queries per request / baseline queries per request (None: no data)."""
    before, after = baseline.queries_per_request, candidate.queries_per_request
    if before is None or after is None or before == 0:
        return None
    return 1 - after / before
