"""``dbtools.metrics``: the application's request metrics, per bucket and variant, with the
statements it sent counted by a psycopg cursor or an SQLAlchemy event, exactly as
pg_stat_statements counts them; written in batches, and never failing a request."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import socket
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from psycopg_pool import AsyncConnectionPool

from dbtools.db.connection import connect, session
from dbtools.metrics import MetricsRecorder, count_statements
from dbtools.metrics.buckets import Buckets, MetricsRow
from dbtools.schema.latency import histogram, histogram_percentile
from dbtools.schema.manifest import head_revision
from dbtools.schema.revisions import upgrade
from dbtools.workload import DataPath, WorkloadConfig, run_workload
from tests.conftest import Database
from tests.snapshot_helpers import stored_measures, stored_windows, take

# The statements the test applications send carry this tag, so their pg_stat_statements entries
# can be told from everything else (the server keeps comments in the texts it stores).
TAG = "metrics_test"
TABLE = "app_rows"
CALLS_SQL = f"""SELECT coalesce(sum(calls), 0)::int FROM pg_stat_statements
WHERE query LIKE '%{TAG}%' AND query NOT LIKE '%pg_stat_statements%'
  AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"""


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def tagged_calls(db: Database) -> int:
    return int(db.execute(CALLS_SQL)[0][0])


def stored(db: Database) -> dict[str | None, tuple[int, int, int | None]]:
    """(requests, errors, queries) per variant in request_metrics."""
    rows = db.execute(
        "SELECT variant, sum(requests)::int, sum(errors)::int, sum(queries)::int"
        " FROM perf_monitoring.request_metrics GROUP BY 1"
    )
    return {variant: (requests, errors, queries) for variant, requests, errors, queries in rows}


@pytest.fixture
def table(migrated_database: Database) -> Iterator[Database]:
    migrated_database.execute(f"CREATE TABLE {TABLE} (a int)")
    yield migrated_database


# -- buckets, pure ------------------------------------------------------------------------------


def test_buckets_hold_each_variants_requests_and_statements_apart() -> None:
    clock = Clock()
    buckets = Buckets(10, clock=clock)
    for latency in (10.0, 20.0, 30.0, 40.0):
        buckets.record_request(latency, variant="per-request", cache_hit=latency > 15)
    buckets.count_statements(9, variant="per-request")
    buckets.record_request(5.0, variant="batched", error=True)
    buckets.record_batch(3, variant="batched")
    buckets.count_statements(3, variant="batched")
    clock.now += 12  # into the second bucket
    buckets.record_request(50.0, variant="batched", cache_hit=False)
    buckets.count_statements(3, variant="batched")

    closed = buckets.take(closed_only=True)
    assert list(closed) == [(0, "batched"), (0, "per-request")]
    rows = buckets.rows(closed, counts_statements=True)
    assert rows[1].latency_p99_ms == pytest.approx(39.7)
    assert [dataclasses.replace(row, latency_p99_ms=None) for row in rows] == [
        MetricsRow(12.0, "batched", 1, 1, 5.0, 5.0, None, 0, 0, 1, 3, 3,
                   histogram([5.0])),
        MetricsRow(12.0, "per-request", 4, 0, 25.0, 38.5, None, 3, 1, 0, None, 9,
                   histogram([10.0, 20.0, 30.0, 40.0])),
    ]  # fmt: skip
    # 5 ms is in (2**(18/8), 2**(19/8)] ms: index 40 + 19 (schema.latency), the array's last
    assert rows[0].latency_histogram == [0] * 59 + [1]
    assert len(buckets) == 1  # the open bucket stays
    buckets.put_back(closed)  # a failed write: everything comes back
    assert [row.requests for row in buckets.rows(buckets.take(closed_only=False),
                                                 counts_statements=False)] == [1, 4, 1]  # fmt: skip


def test_statements_are_not_written_as_zero_when_nobody_counts_them() -> None:
    buckets = Buckets(1, clock=Clock())
    buckets.record_request(1.0, variant="a")
    (row,) = buckets.rows(buckets.take(closed_only=False), counts_statements=False)
    assert (row.requests, row.queries) == (1, None)


def test_a_write_that_keeps_failing_drops_the_oldest_buckets_only() -> None:
    clock = Clock()
    buckets = Buckets(1, clock=clock)
    for _ in range(5):
        buckets.record_request(1.0)
        clock.now += 1
    assert buckets.drop_oldest(keep=2) == 3
    assert [row.age_s for row in buckets.rows(buckets.take(closed_only=True),
                                              counts_statements=False)] == [2.0, 1.0]  # fmt: skip


def test_concurrent_requests_each_count_their_own_statements() -> None:
    recorder = MetricsRecorder("", operation="t", flush_interval_s=None, clock=Clock())

    async def request(statements: int) -> int:
        with recorder.request("a") as record:
            for _ in range(statements):
                await asyncio.sleep(0)  # the others run in between
                count_statements()
            return record.statements

    async def all_at_once() -> list[int]:
        return await asyncio.gather(*(request(n % 4 + 1) for n in range(40)))

    assert asyncio.run(all_at_once()) == [n % 4 + 1 for n in range(40)]
    count_statements(5)  # outside any request: counted nowhere
    recorder.counts_statements = True
    (row,) = recorder.pending_rows()
    assert (row.requests, row.queries) == (40, sum(n % 4 + 1 for n in range(40)))


def test_a_request_that_raises_is_an_error_and_is_raised() -> None:
    recorder = MetricsRecorder("", operation="t", flush_interval_s=None)
    with pytest.raises(ValueError), recorder.request("a"):
        raise ValueError("the application's own failure")
    with recorder.request("a") as record:
        record.error = True  # a failure the application answered without raising
    with recorder.request("a"):
        pass
    (row,) = recorder.pending_rows()
    assert (row.requests, row.errors, row.queries) == (3, 2, None)


# -- against PostgreSQL ------------------------------------------------------------------------


def test_psycopg_counts_exactly_what_pg_stat_statements_counts(table: Database) -> None:
    db = table
    take(db, "m:start")
    recorder = MetricsRecorder(db.dsn, operation="search", flush_interval_s=None)
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        recorder.instrument_psycopg(conn)
        for n in range(20):
            with recorder.request("per-request") as record:
                conn.execute(f"INSERT /* {TAG} */ INTO {TABLE} VALUES (%s)", (n,))
                conn.execute(f"SELECT /* {TAG} */ count(*) FROM {TABLE}").fetchone()
                conn.cursor().executemany(f"UPDATE /* {TAG} */ {TABLE} SET a = a WHERE a = %s",
                                          [(n,), (n + 1,), (n + 2,)])  # fmt: skip
                assert record.statements == 5
        for n in range(10):
            with recorder.request("batched"):
                conn.execute(f"SELECT /* {TAG} */ %s::int", (n,))
        # A statement that fails is in neither count; its request is an error.
        with pytest.raises(psycopg.errors.DivisionByZero), recorder.request("batched"):
            conn.execute(f"SELECT /* {TAG} */ 1 / 0")
        assert recorder.flush(final=True) == 2  # two variants, one bucket: one statement
    time.sleep(0.01)
    take(db, "m:end")
    assert stored(db) == {"per-request": (20, 0, 100), "batched": (11, 1, 10)}
    assert tagged_calls(db) == 110
    # The metrics' own write carries dbtools' marker: a snapshot window counts only the
    # application's statements, exactly the ones the recorder counted.
    with session(db.dsn) as conn:
        (measured,) = stored_measures(conn, "m")
    assert measured.counts.queries == 110


def test_asyncio_psycopg_through_a_pool(table: Database) -> None:
    db = table
    recorder = MetricsRecorder(db.dsn, operation="search", flush_interval_s=None)

    async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
        recorder.instrument_psycopg(conn)

    async def request(pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]], n: int) -> int:
        with recorder.request("batched" if n % 2 else "per-request") as record:
            for _ in range(n % 3 + 1):
                async with pool.connection() as conn:
                    await conn.execute(f"SELECT /* {TAG} */ pg_sleep(0.001), %s::int", (n,))
            return record.statements

    async def serve() -> list[int]:
        async with AsyncConnectionPool(db.dsn, min_size=4, kwargs={"autocommit": True},
                                       configure=configure) as pool:  # fmt: skip
            return await asyncio.gather(*(request(pool, n) for n in range(30)))

    before = tagged_calls(db)
    assert asyncio.run(serve()) == [n % 3 + 1 for n in range(30)]
    recorder.flush(final=True)
    even = sum(n % 3 + 1 for n in range(0, 30, 2))
    odd = sum(n % 3 + 1 for n in range(1, 30, 2))
    assert stored(db) == {"per-request": (15, 0, even), "batched": (15, 0, odd)}
    assert tagged_calls(db) - before == even + odd == 60


def test_sqlalchemy_counts_exactly_what_pg_stat_statements_counts(table: Database) -> None:
    db = table
    engine = sa.create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(db.dsn))
    recorder = MetricsRecorder(db.dsn, operation="search", flush_interval_s=None)
    recorder.instrument_sqlalchemy(engine)
    rows = sa.table(TABLE, sa.column("a"))
    try:
        with engine.connect() as conn:  # connecting runs SQLAlchemy's own queries: not counted
            for n in range(5):
                with recorder.request("batched"), conn.begin():
                    conn.execute(sa.text(f"SELECT /* {TAG} */ :n"), {"n": n})
                    # executemany: one execution per parameter set
                    conn.execute(sa.text(f"INSERT /* {TAG} */ INTO {TABLE} VALUES (:a)"),
                                 [{"a": a} for a in range(4)])  # fmt: skip
                    # a Core insert of many rows: executemany again (seven executions)...
                    conn.execute(sa.insert(rows).prefix_with(f"/* {TAG} */"),
                                 [{"a": a} for a in range(7)])  # fmt: skip
                    # ...but with RETURNING, SQLAlchemy's multi-row INSERT: one statement
                    conn.execute(sa.insert(rows).prefix_with(f"/* {TAG} */").returning(rows.c.a),
                                 [{"a": a} for a in range(7)])  # fmt: skip
    finally:
        engine.dispose()
    recorder.flush(final=True)
    assert stored(db) == {"batched": (5, 0, 5 * (1 + 4 + 7 + 1))}
    assert tagged_calls(db) == 65


@pytest.mark.parametrize(("revision", "missing"), [("0006", ("0007",)), ("0005", ("0007", "0006"))])
def test_a_database_before_the_newest_columns_gets_its_metrics_without_them(
    database: Database, caplog: pytest.LogCaptureFixture, revision: str, missing: tuple[str, ...]
) -> None:
    """A database whose request_metrics lacks the latency histogram (0007) or also the variant
    columns (0006), a rollback's downgrade: every request is served, and its metrics are
    written without them, with one warning per revision missing (the rollback's windows keep
    their requests, errors and latencies)."""
    db = database
    # request_metrics' newest columns are 0007's (0008 partitions the samples only)
    assert head_revision() == "0008"
    upgrade(db.dsn, revision)
    recorder = MetricsRecorder(db.dsn, operation="search", bucket_seconds=1,
                               flush_interval_s=0.05)  # fmt: skip
    served = 0
    with psycopg.connect(db.dsn, autocommit=True) as conn, caplog.at_level(logging.WARNING):
        recorder.instrument_psycopg(conn)
        deadline = time.monotonic() + 1.3
        while time.monotonic() < deadline:
            with recorder.request("batched"):
                conn.execute(f"SELECT /* {TAG} */ 1")
                served += 1
            time.sleep(0.01)
        recorder.close()
    assert recorder.failed_writes == 0 and recorder.rows_written >= 1
    warned = [line for line in caplog.text.splitlines() if "writing the metrics without" in line]
    assert [line.split("(a revision before ")[1][:4] for line in warned] == list(missing)
    (row,) = db.execute(
        "SELECT sum(requests)::int, sum(errors)::int FROM perf_monitoring.request_metrics"
    )
    assert row == (served, 0)


def test_an_unreachable_database_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    recorder = MetricsRecorder(f"postgresql://app:s3cret@127.0.0.1:{port}/app",
                               operation="search", flush_interval_s=None)  # fmt: skip
    with recorder.request("a"):
        pass
    with caplog.at_level(logging.WARNING):
        recorder.close()
    assert recorder.failed_writes == 1 and f"port {port}" in (recorder.last_error or "")
    assert "s3cret" not in caplog.text


def test_the_thread_writes_closed_buckets_in_batches(migrated_database: Database) -> None:
    db = migrated_database
    recorder = MetricsRecorder(db.dsn, operation="search", bucket_seconds=1,
                               flush_interval_s=0.4)  # fmt: skip
    requests = 0
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        for variant in ("per-request", "batched"):
            with recorder.request(variant):
                requests += 1
        time.sleep(0.02)
    written_while_running = recorder.rows_written
    recorder.close()
    # The closed buckets (two variants each) were written while requests went on, a few
    # rows per statement; the open one at close.
    assert written_while_running >= 2 * 2
    (rows, total, writes) = db.execute(
        "SELECT count(*)::int, sum(requests)::int, count(DISTINCT recorded_at)::int"
        " FROM perf_monitoring.request_metrics"
    )[0]
    assert (rows, total) == (recorder.rows_written, requests)
    assert rows >= 2 * writes and writes <= 2.5 / 0.4 + 1


def test_the_workloads_histograms_give_the_windows_p95_from_every_request(
    seeded_database: Database,
) -> None:
    """The reference workload writes each bucket's latency histogram (``dbtools.metrics``): a
    window around a run merges them into exactly the histogram of every request's latency, and
    verify's p95 is its percentile, the run's own p95 (nearest rank) inside the stated interval."""
    db = seeded_database
    config = WorkloadConfig(path=DataPath.PER_REQUEST, requests=300, concurrency=10,
                            bucket_seconds=1)  # fmt: skip
    take(db, "w:start")
    run = run_workload(db.dsn, config)
    time.sleep(1.05)  # the last bucket closes inside the window
    take(db, "w:end")
    with connect(db.dsn, autocommit=True) as conn:
        (window,) = stored_windows(conn, "w")
        (measured,) = stored_measures(conn, "w")
    totals = window.request_totals
    assert totals.p95 == histogram_percentile(histogram(run.latencies_ms), 0.95)
    assert totals.p95 is not None and totals.p95.low_ms is not None
    ordered = sorted(run.latencies_ms)
    nearest_rank = ordered[math.ceil(0.95 * len(ordered)) - 1]
    assert totals.p95.low_ms < nearest_rank <= totals.p95.value_ms
    assert (measured.p95_ms, measured.p95_estimated) == (totals.p95.value_ms, False)
    assert measured.p95_worst_second_ms == max(
        row for (row,) in db.execute("SELECT latency_p95_ms FROM perf_monitoring.request_metrics")
    )
