"""The application's side of the request metrics: time each request, count its statements, and
write the buckets to ``perf_monitoring.request_metrics`` in batches, off the request's path.

Recording a request only appends to memory, under a lock held for microseconds; the writes
happen on a thread of the recorder's own (every ``flush_interval_s``, the buckets whose time is
over, in one statement) and at ``close()``. A write that fails (the database down, a grant
missing) is logged and retried with the next one; its buckets are kept, up to ``max_buckets``
(then the oldest go, counted in ``dropped_buckets``). A schema without the columns of revision
0007 (the latency histogram) or 0006 (variant, queries), a rollback's downgrade, gets the rows
without them. Nothing a request does can fail because metrics could not be written.

A row's bucket start is sent as its age, measured once the connection is open, just before the
statement: the server's clock minus that age places it within the statement's own latency.

The writes carry dbtools' marker comment, so snapshots leave them out as they leave out
dbtools' own statements: the application's statements are what it sends for its requests.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

import psycopg

from dbtools.db.connection import SQL_MARKER, connect, error_reason
from dbtools.errors import DbtoolsError
from dbtools.metrics import hooks
from dbtools.metrics.buckets import Buckets, MetricsRow
from dbtools.redaction import redact
from dbtools.schema.monitoring import REQUEST_METRICS, monitoring_table

log = logging.getLogger(__name__)

# request_metrics' columns: (the unnest array's element type, the revision that added it). A
# histogram travels as its array's text (unnest cannot hand out arrays of arrays).
_COLUMNS = {
    "variant": ("text", "0006"), "requests": ("bigint", "0002"), "errors": ("bigint", "0002"),
    "latency_p50_ms": ("float8", "0002"), "latency_p95_ms": ("float8", "0002"),
    "latency_p99_ms": ("float8", "0002"), "cache_hits": ("bigint", "0002"),
    "cache_misses": ("bigint", "0002"), "batches": ("bigint", "0002"),
    "batch_size_max": ("bigint", "0002"), "queries": ("bigint", "0006"),
    "latency_histogram": ("text", "0007"),
}  # fmt: skip
_CASTS = {"latency_histogram": "::integer[]"}


def _value(column: str) -> str:
    return f"m.{column}{_CASTS.get(column, '')}"


def _record_sql(columns: list[str]) -> str:
    return (
        f"INSERT {SQL_MARKER} INTO {monitoring_table(REQUEST_METRICS)}\n"
        f"    (bucket_start, bucket_seconds, operation, {', '.join(columns)})\n"
        "SELECT statement_timestamp() - make_interval(secs => m.age_s), %(bucket_seconds)s::int,\n"
        f"       %(operation)s::text, {', '.join(_value(c) for c in columns)}\n"
        "FROM unnest(%(age_s)s::float8[], "
        + ", ".join(f"%({c})s::{_COLUMNS[c][0]}[]" for c in columns)
        + f")\n    AS m(age_s, {', '.join(columns)})"
    )


def _record_sql_before(revision: str) -> str:
    return _record_sql([c for c, (_, added) in _COLUMNS.items() if added < revision])


# The statement for each layout, newest first: a database downgraded below 0007 or 0006 (a
# rollback) lacks the columns those revisions add, and the application's metrics still reach it.
RECORD_SQLS = (_record_sql(list(_COLUMNS)), _record_sql_before("0007"), _record_sql_before("0006"))
RECORD_SQL = RECORD_SQLS[0]

WRITE_TIMEOUT = "5s"


class RequestRecord:
    """One request being served: what the application tells of it, and its statements.

    Set ``cache_hit`` (True/False) when the request asked a cache, ``error`` for a failure that
    raised nothing (an exception leaving the ``with`` block is counted as an error by itself).
    """

    def __init__(self, recorder: MetricsRecorder, variant: str | None) -> None:
        self.recorder = recorder
        self.variant = variant
        self.statements = 0
        self.cache_hit: bool | None = None
        self.error = False
        self.latency_ms: float | None = None  # set when the request ends

    def count(self, statements: int) -> None:
        """Count *statements* sent for this request (the hooks call it)."""
        self.statements += statements
        self.recorder.count_statements(statements, variant=self.variant)


class MetricsRecorder:
    """Request metrics of one operation, bucketed by time and variant, written in batches.

    ::

        recorder = MetricsRecorder(dsn, operation="flight_search", bucket_seconds=1)
        recorder.instrument_sqlalchemy(engine)        # or instrument_psycopg(conn) per connection
        with recorder.request(variant="batched") as request:
            ...                                       # the request's statements are counted
            request.cache_hit = True
        recorder.close()                              # at shutdown: the last buckets

    ``queries`` is written only once the recorder counts statements (an ``instrument_*`` call,
    or *counts_statements* for connections instrumented with ``hooks`` directly); otherwise it is
    NULL (not counted), never 0. *flush_interval_s* None: no thread, write with ``flush()``.
    *bucket_seconds*: one second by default, as a window's ends each cut up to one bucket whose
    requests cannot be split by time (``figures.requests.RequestTotals``): a 10-minute window of
    one-second buckets is exact to about 0.3%, of ten-second buckets only to about 3%.
    """

    def __init__(
        self,
        dsn: str,
        *,
        operation: str,
        bucket_seconds: int = 1,
        flush_interval_s: float | None = 10.0,
        max_buckets: int = 10_000,
        counts_statements: bool = False,
        application_name: str = "dbtools-metrics",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if flush_interval_s is not None and flush_interval_s <= 0:
            raise ValueError("flush_interval_s must be positive")
        self.dsn = dsn
        self._record_sql = RECORD_SQL
        self.operation = operation
        self.bucket_seconds = bucket_seconds
        self.max_buckets = max_buckets
        self.application_name = application_name
        self.counts_statements = counts_statements
        self.rows_written = 0
        self.failed_writes = 0
        self.dropped_buckets = 0
        self.last_error: str | None = None
        self._buckets = Buckets(bucket_seconds, clock=clock)
        self._lock = threading.Lock()  # the buckets
        self._write_lock = threading.Lock()  # one write at a time, on one connection
        self._conn: psycopg.Connection[Any] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if flush_interval_s is not None:
            self._thread = threading.Thread(
                target=self._flush_periodically, args=(flush_interval_s,),
                name=f"dbtools-metrics-{operation}", daemon=True,
            )  # fmt: skip
            self._thread.start()

    # -- what the application calls ------------------------------------------------------------

    @contextmanager
    def request(self, variant: str | None = None) -> Iterator[RequestRecord]:
        """Time a request served by *variant* and count the statements sent for it."""
        record = RequestRecord(self, variant)
        started = time.perf_counter()
        try:
            with hooks.counting_into(record):
                yield record
        except Exception:
            record.error = True
            raise
        finally:
            record.latency_ms = (time.perf_counter() - started) * 1000
            self._record(record)

    def record_batch(self, size: int, *, variant: str | None = None) -> None:
        """A batch of *size* coalesced requests was answered."""
        self._safely(lambda: self._buckets.record_batch(size, variant=variant))

    def count_statements(self, statements: int, *, variant: str | None = None) -> None:
        """*statements* sent now for *variant*'s requests (the hooks count through requests)."""
        self._safely(lambda: self._buckets.count_statements(statements, variant=variant))

    def instrument_psycopg(
        self, conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]
    ) -> None:
        """Count the statements *conn* executes for the requests being served."""
        hooks.instrument_psycopg(conn)
        self.counts_statements = True

    def instrument_sqlalchemy(self, target: Any) -> None:
        """Count the statements an SQLAlchemy ``Engine`` executes for the requests served."""
        hooks.instrument_sqlalchemy(target)
        self.counts_statements = True

    # -- writing -------------------------------------------------------------------------------

    def flush(self, *, final: bool = False) -> int:
        """Write the buckets whose time is over (*final*: every bucket, then close the
        connection) in one statement; returns the rows written. Raises the database's error
        (``psycopg.Error``, ``ConnectionFailed``) when the write fails: its buckets are kept for
        the next one."""
        with self._write_lock:
            try:
                return self._write(final)
            finally:
                if final:
                    self._disconnect()

    def pending_rows(self) -> list[MetricsRow]:
        """The rows the next final write would store (nothing is written)."""
        with self._lock:
            return self._buckets.rows(self._buckets.pending(),
                                      counts_statements=self.counts_statements)  # fmt: skip

    def stop(self) -> None:
        """Stop the writing thread (what is recorded stays, for ``flush``)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def close(self) -> None:
        """Stop the writing thread and write every bucket left (a failure is logged)."""
        self.stop()
        self._flush_quietly(final=True)

    def __enter__(self) -> MetricsRecorder:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals -----------------------------------------------------------------------------

    def _write(self, final: bool) -> int:
        with self._lock:
            taken = self._buckets.take(closed_only=not final)
        if not taken:
            return 0
        try:
            conn = self._connection()
            with self._lock:  # the ages from now: the statement follows at once
                rows = self._buckets.rows(taken, counts_statements=self.counts_statements)
            self._insert(conn, rows)
        except BaseException:
            with self._lock:
                self._buckets.put_back(taken)
                self.dropped_buckets += self._buckets.drop_oldest(self.max_buckets)
            self._disconnect()
            raise
        self.rows_written += len(rows)
        log.debug("%d request-metrics rows written", len(rows))
        return len(rows)

    def _insert(self, conn: psycopg.Connection[Any], rows: list[MetricsRow]) -> None:
        while True:
            try:
                conn.execute(self._record_sql, self._params(rows))
                return
            except psycopg.errors.UndefinedColumn:
                older = RECORD_SQLS.index(self._record_sql) + 1
                if older == len(RECORD_SQLS):
                    raise
                log.warning("request_metrics lacks a column this writer fills (a revision before "
                            "%s): writing the metrics without it",
                            ("0007", "0006")[older - 1])  # fmt: skip
                self._record_sql = RECORD_SQLS[older]

    def _record(self, record: RequestRecord) -> None:
        latency = record.latency_ms or 0.0
        self._safely(lambda: self._buckets.record_request(
            latency, variant=record.variant, cache_hit=record.cache_hit, error=record.error
        ))  # fmt: skip

    def _safely(self, change: Callable[[], None]) -> None:
        try:
            with self._lock:
                change()
        except Exception:  # a request must never fail because of its metrics
            log.warning("could not record request metrics", exc_info=True)

    def _flush_periodically(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            self._flush_quietly(final=False)

    def _flush_quietly(self, *, final: bool) -> None:
        try:
            self.flush(final=final)
        except (psycopg.Error, DbtoolsError) as err:
            self.failed_writes += 1
            reason = error_reason(err) if isinstance(err, psycopg.Error) else str(err)
            self.last_error = redact(reason)
            log.warning("request metrics not written (kept for the next write): %s",
                        self.last_error)  # fmt: skip

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = connect(
                self.dsn, read_only=False, autocommit=True, statement_timeout=WRITE_TIMEOUT,
                application_name=self.application_name,
            )  # fmt: skip
        return self._conn

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _params(self, rows: list[MetricsRow]) -> dict[str, Any]:
        return {
            "bucket_seconds": self.bucket_seconds,
            "operation": self.operation,
            "age_s": [row.age_s for row in rows],
            "variant": [row.variant for row in rows],
            "requests": [row.requests for row in rows],
            "errors": [row.errors for row in rows],
            "latency_p50_ms": [row.latency_p50_ms for row in rows],
            "latency_p95_ms": [row.latency_p95_ms for row in rows],
            "latency_p99_ms": [row.latency_p99_ms for row in rows],
            "cache_hits": [row.cache_hits for row in rows],
            "cache_misses": [row.cache_misses for row in rows],
            "batches": [row.batches for row in rows],
            "batch_size_max": [row.batch_size_max for row in rows],
            "queries": [row.queries for row in rows],
            "latency_histogram": [
                None
                if row.latency_histogram is None
                else "{" + ",".join(map(str, row.latency_histogram)) + "}"
                for row in rows
            ],
        }
