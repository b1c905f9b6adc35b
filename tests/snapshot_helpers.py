"""Ground-truth workloads and window helpers for the snapshot and verify tests."""

from __future__ import annotations

import time
from typing import Any

import psycopg

from dbtools.figures.measures import WindowMeasures
from dbtools.figures.sums import ALL_STATEMENTS, Scope
from dbtools.figures.windows import Window, parse_window, window_labels
from dbtools.schema.latency import histogram
from dbtools.store import SampleSummary, Store, snapshots
from tests.conftest import Database

# The three statements of a flight-search request, each served by one batch index (the planner
# is steered with startup options, so no SET statement shows up in pg_stat_statements).
REQUEST_STATEMENTS = (
    "SELECT id, search_key, traveler_id, max_price FROM trip_requests "
    "WHERE status = 'active' AND id = ANY(%(ids)s)",
    "SELECT trip_request_id, expires_at, price_total FROM flight_offers "
    "WHERE trip_request_id = ANY(%(ids)s) AND expires_at > now()",
    "SELECT search_key, expires_at FROM flight_search_cache "
    "WHERE search_key = ANY(%(keys)s) AND expires_at > now()",
)
INDEX_OPTIONS = "-c enable_seqscan=off -c enable_bitmapscan=off"


def run_requests(
    db: Database,
    requests: int,
    *,
    batch: int = 1,
    statements: tuple[str, ...] = REQUEST_STATEMENTS,
    transactions: bool = False,
    user: str | None = None,
) -> int:
    """Serve *requests* requests: each batch of *batch* requests sends every statement once
    (batch=1: the per-request path). Returns the number of statements sent (the ground truth).
    With *transactions* each batch runs in its own transaction (BEGIN … COMMIT)."""
    sent = 0
    kwargs: dict[str, Any] = {"options": INDEX_OPTIONS, "autocommit": not transactions}
    if user:
        kwargs["user"] = user
    with psycopg.connect(db.dsn, **kwargs) as conn:
        for first in range(0, requests, batch):
            ids = list(range(first, min(first + batch, requests)))
            params = {"ids": ids, "keys": [f"k{i}" for i in ids]}
            for statement in statements:
                conn.execute(statement, params)
                sent += 1
            if transactions:
                conn.commit()
    return sent


def take(db: Database, label: str, requests: int | None = None) -> SampleSummary:
    return snapshots.snapshot(db.dsn, label, requests=requests)


def window(
    db: Database,
    label: str,
    requests: int,
    *,
    batch: int = 1,
    record_requests: bool = True,
    pause: float = 0.0,
    **kwargs: Any,
) -> int:
    """Bracket a workload with LABEL:start and LABEL:end; returns the statements sent."""
    start, end = window_labels(label)
    take(db, start)
    sent = run_requests(db, requests, batch=batch, **kwargs)
    time.sleep(pause)
    take(db, end, requests if record_requests else None)
    return sent


def record_metrics(
    db: Database,
    label: str,
    *,
    requests: int,
    errors: int = 0,
    p95_ms: float = 120.0,
    cache_hits: int = 50,
    cache_misses: int = 50,
    operation: str = "flight_search",
) -> None:
    """Write one request_metrics bucket lying inside the window LABEL: an instant (0 seconds)
    at its middle, so that no end cuts it (written after the window closed, as a late flush
    would be, so the insert is not one of the window's statements). Its latency: *p95_ms*,
    as the bucket's p95 and as a histogram of every request at that latency (below revision
    0007, which adds the histograms, the p95 only)."""
    (has_histograms,) = db.execute(
        "SELECT count(*) > 0 FROM information_schema.columns WHERE table_schema = "
        "'perf_monitoring' AND table_name = 'request_metrics' AND column_name = 'latency_histogram'"
    )[0]
    db.execute(
        "INSERT INTO perf_monitoring.request_metrics (bucket_start, bucket_seconds, operation, "
        "requests, errors, latency_p95_ms, cache_hits, cache_misses"
        + (", latency_histogram" if has_histograms else "") + ") "
        "SELECT s.taken_at + (e.taken_at - s.taken_at) / 2, 0, %s, %s, %s, %s, %s, %s"
        + (", %s" if has_histograms else "") + " "
        "FROM perf_monitoring.snapshots s, perf_monitoring.snapshots e "
        "WHERE s.label = %s AND e.label = %s",
        (operation, requests, errors, p95_ms, cache_hits, cache_misses,
         *([histogram([p95_ms] * requests) if requests else None] if has_histograms else []),
         *window_labels(label)),
    )  # fmt: skip


def snapshot_count(db: Database) -> int:
    return int(db.execute("SELECT count(*) FROM perf_monitoring.snapshots")[0][0])


def stored_windows(conn: psycopg.Connection[Any], *references: str, **options: Any) -> list[Window]:
    """The windows *references* as the store on *conn* resolves them (``Store.windows``)."""
    return Store.of(conn).windows([parse_window(r) for r in references], **options)


def stored_measures(
    conn: psycopg.Connection[Any],
    *references: str,
    scope: Scope = ALL_STATEMENTS,
    **options: Any,
) -> list[WindowMeasures]:
    """The figures of the windows *references* as verify gets them (``Store.measures``)."""
    store = Store.of(conn)
    return store.measures(store.windows([parse_window(r) for r in references], **options), scope)
