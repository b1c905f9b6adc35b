"""In-memory snapshots, windows and live states for the database-free tests.

The one place that knows how to build ``Snapshot``/``Window``/``LiveState`` objects by hand: when
those types change, this module changes and the tests that use it do not. Every counter not
given is zero; every window is trustworthy unless a test breaks it.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from dbtools.figures.measures import WindowMeasures, measure_window
from dbtools.figures.requests import RequestTotals, VariantTotals
from dbtools.figures.sums import ALL_STATEMENTS, Scope, count_statements
from dbtools.figures.windows import Window, parse_window
from dbtools.reading.rows import DatabaseRow, IndexRow, Snapshot, SnapshotHeader, StatementRow
from dbtools.schema.latency import Percentile
from dbtools.schema.manifest import manifest_at
from dbtools.verify import DEFAULT_THRESHOLDS, VerifyResult, evaluate, measure_options
from dbtools.verify.canary import (
    CanaryResult,
    CanarySpec,
    evaluate_canary,
    role_scopes,
    whole_scope,
)
from dbtools.verify.live import IndexState, LiveState
from dbtools.verify.thresholds import Thresholds

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
SERVER_STARTED = T0 - timedelta(days=1)
APP_ROLE = "app"
APP_USERID = 16384
DBID = 5
# What a snapshot records of pg_stat_statements' settings on a server that counts everything.
COUNTING_SETTINGS = {
    "pg_stat_statements.track": {"value": "all", "source": "configuration file"},
    "pg_stat_statements.track_utility": {"value": "on", "source": "default"},
    "autovacuum_naptime": {"value": "60", "source": "default"},
}


def header(taken_at: datetime = T0, **overrides: Any) -> SnapshotHeader:
    """A snapshot header of database ``app`` on PostgreSQL 18 (extension 1.12)."""
    values: dict[str, Any] = {
        "id": None, "label": None, "taken_at": taken_at, "database_name": "app",
        "database_oid": DBID, "server_version_num": 180001, "server_started_at": SERVER_STARTED,
        "role_name": "monitor", "pgss_version": "1.12", "pgss_stats_reset": SERVER_STARTED,
        "pgss_dealloc": 0, "alembic_revision": None, "requests": None,
        "hidden_statements": 0, "hidden_calls": 0, "counting_settings": COUNTING_SETTINGS,
        "counting_overrides": [], "toplevel_calls": None,
    }  # fmt: skip
    return SnapshotHeader(**{**values, **overrides})


def statement(queryid: int, calls: int, query: str = "", **overrides: Any) -> StatementRow:
    """A pg_stat_statements entry of the application's role; counters not given are zero."""
    values: dict[str, Any] = dict.fromkeys(_fields(StatementRow), 0)
    values.update(
        userid=APP_USERID, rolname=APP_ROLE, dbid=DBID, queryid=queryid, toplevel=True,
        query=query or f"SELECT * FROM trip_requests WHERE id = $1 /* {queryid} */",
        calls=calls, total_exec_time=0.0, total_plan_time=0.0, shared_blk_read_time=0.0,
        shared_blk_write_time=0.0, stats_since=None, min_exec_time=None, max_exec_time=None,
    )  # fmt: skip
    return StatementRow(**{**values, **overrides})


def index(name: str, idx_scan: int = 0, schema: str = "public", **overrides: Any) -> IndexRow:
    """An index's statistics; counters not given are zero."""
    values: dict[str, Any] = dict.fromkeys(_fields(IndexRow), 0)
    values.update(
        indexrelid=zlib.crc32(f"{schema}.{name}".encode()), relid=1, schemaname=schema,
        relname="t", indexrelname=name, idx_scan=idx_scan, is_valid=True, is_ready=True,
        is_unique=False, is_primary=False, backs_constraint=False, key_columns=["id"],
        include_columns=[], predicate=None, access_method="btree",
        definition=f"CREATE INDEX {name} ON {schema}.t USING btree (id)", index_bytes=None,
    )  # fmt: skip
    return IndexRow(**{**values, **overrides})


def database(blks_hit: int = 0, blks_read: int = 0, **overrides: Any) -> DatabaseRow:
    """pg_stat_database of ``app``; counters not given are zero."""
    values: dict[str, Any] = dict.fromkeys(_fields(DatabaseRow), 0)
    values.update(
        datid=DBID, datname="app", blks_hit=blks_hit, blks_read=blks_read, blk_read_time=0.0,
        blk_write_time=0.0, stats_reset=None, xid_age=None, database_bytes=None,
    )  # fmt: skip
    return DatabaseRow(**{**values, **overrides})


def snapshot(
    taken_at: datetime = T0,
    statements: tuple[StatementRow, ...] = (),
    indexes: tuple[IndexRow, ...] = (),
    db: DatabaseRow | None = None,
    **header_overrides: Any,
) -> Snapshot:
    return Snapshot(
        header=header(taken_at, **header_overrides),
        statements=statements,
        tables=(),
        indexes=indexes,
        database=db if db is not None else database(),
    )


def totals(
    requests: int = 0,
    *,
    buckets: int | None = None,
    errors: int = 0,
    cache_hits: int = 0,
    cache_misses: int = 0,
    p95_ms: float | None = None,
) -> RequestTotals:
    """Request metrics summed over a window (one bucket when there are requests; *p95_ms* is
    the window's p95 and its worst second's)."""
    count = buckets if buckets is not None else (1 if requests else 0)
    return RequestTotals(count, requests, errors, cache_hits, cache_misses, p95_ms,
                         p95=_percentile(p95_ms))  # fmt: skip


def _percentile(p95_ms: float | None) -> Percentile | None:
    return None if p95_ms is None else Percentile(p95_ms)


def variant_totals(
    variant: str | None,
    requests: int,
    *,
    queries: int | None = None,
    uncounted_buckets: int = 0,
    errors: int = 0,
    cache_hits: int = 0,
    cache_misses: int = 0,
    p95_ms: float | None = None,
) -> VariantTotals:
    """One variant's request metrics summed over a window (one bucket)."""
    return VariantTotals(1, requests, errors, cache_hits, cache_misses, p95_ms, variant,
                         p95=_percentile(p95_ms), queries=queries,
                         uncounted_buckets=uncounted_buckets)  # fmt: skip


def window(start: Snapshot, end: Snapshot, metrics: RequestTotals | None = None,
           name: str = "w") -> Window:  # fmt: skip
    """The window from *start* to *end*, its states in hand."""
    return Window.between(start, end, parse_window(name), metrics or totals())


def measured(
    w: Window,
    scope: Scope = ALL_STATEMENTS,
    *,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    operation: str | None = None,
) -> WindowMeasures:
    """*w*'s figures as verify measures a stored window with *thresholds* (from its deltas:
    the reference sums)."""
    return measure_window(w, scope, **measure_options(thresholds, scope, operation))


def judge_windows(
    baseline: Window, candidate: Window, live: LiveState, **kwargs: Any
) -> VerifyResult:
    """``verify.evaluate`` of two windows of in-memory snapshots, measured as verify does."""
    options = {k: kwargs[k] for k in ("scope", "thresholds", "operation") if k in kwargs}
    return evaluate(measured(baseline, **options), measured(candidate, **options), live, **kwargs)


def judge_canary(
    w: Window,
    variants: Mapping[str | None, VariantTotals],
    live: LiveState,
    spec: CanarySpec,
    *,
    scope: Scope = ALL_STATEMENTS,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    operation: str | None = None,
) -> CanaryResult:
    """``evaluate_canary`` of a window of in-memory snapshots, measured as ``verify_canary``
    measures a stored one (the reference sums)."""
    whole = measure_window(w, whole_scope(spec, scope),
                           edge_tolerance=thresholds.request_edge_tolerance)  # fmt: skip
    rows = w.deltas.statements.rows
    role_counts = {role: count_statements(rows, s) for role, s in role_scopes(spec, scope).items()}
    return evaluate_canary(whole, role_counts, variants, live, spec, scope=scope,
                           thresholds=thresholds, operation=operation)  # fmt: skip


def simple_window(
    name: str = "w",
    *,
    queries: int,
    requests: int,
    seconds: float = 60.0,
    metrics: RequestTotals | None = None,
    start_overrides: dict[str, Any] | None = None,
    end_overrides: dict[str, Any] | None = None,
) -> Window:
    """A trustworthy window in which one application statement ran *queries* times (0.05 ms
    each) while the request metrics counted *requests* requests (unless *metrics* says
    otherwise)."""
    start = snapshot(T0, (statement(1, 100, total_exec_time=5.0),), **(start_overrides or {}))
    end = snapshot(T0 + timedelta(seconds=seconds),
                   (statement(1, 100 + queries, total_exec_time=5.0 + 0.05 * queries),),
                   **(end_overrides or {}))  # fmt: skip
    return window(start, end, metrics if metrics is not None else totals(requests), name)


def healthy_live_state(**overrides: Any) -> LiveState:
    """The migrations' objects all in place, at head (what a passing verify sees)."""
    head = "0003"
    manifest = manifest_at(head)
    values: dict[str, Any] = {
        "alembic_revision": head,
        "head_revision": head,
        "manifest": manifest,
        "indexes": {f"{s.schema}.{s.name}": IndexState(True, True) for s in manifest.batch_indexes},
        "table_options": {f"{s.schema}.{s.table}": dict(s.settings)
                          for s in manifest.table_settings},
        "monitoring_tables": frozenset(manifest.monitoring_tables),
    }  # fmt: skip
    return LiveState(**{**values, **overrides})


def batch_index_rows(scans: int) -> tuple[IndexRow, ...]:
    """Statistics rows for every batch index, each scanned *scans* times."""
    return tuple(index(spec.name, scans, spec.schema) for spec in manifest_at("head").batch_indexes)


def with_index_scans(w: Window, scans: int = 1) -> Window:
    """*w* with every batch index scanned *scans* times inside it."""
    assert w.states is not None
    start, end = w.states
    return w.loaded(dataclasses.replace(start, indexes=batch_index_rows(0)),
                    dataclasses.replace(end, indexes=batch_index_rows(scans)))  # fmt: skip


def _fields(row_type: type[Any]) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(row_type))
