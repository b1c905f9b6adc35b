"""Request metrics, as the application reports them to ``perf_monitoring.request_metrics``.

Requests and batches are counted in buckets of ``bucket_seconds`` that start at the run's
start (bucket k starts at ``start + k * bucket_seconds``), so every row's ``bucket_start`` falls
inside the run and a pair of snapshots taken around a run brackets its rows exactly. Times are
kept on the client's monotonic clock and turned into server time when the rows are written
(``statement_timestamp() - age``), so a skewed client clock cannot move a row out of its window.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from psycopg import AsyncConnection

from dbtools.workload import queries


def percentile(values: Sequence[float], fraction: float) -> float:
    """The *fraction* quantile of *values* by linear interpolation (numpy's default method)."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class Bucket:
    """What happened in one bucket."""

    index: int
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    batches: int = 0
    batch_size_max: int | None = None

    @property
    def requests(self) -> int:
        return len(self.latencies_ms)


@dataclass(frozen=True)
class MetricsRow:
    """One ``request_metrics`` row as written (``age_s``: bucket start, seconds before writing)."""

    age_s: float
    requests: int
    errors: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    cache_hits: int
    cache_misses: int
    batches: int
    batch_size_max: int | None


class RequestMetrics:
    """Collects per-request and per-batch facts into buckets; ``flush`` writes them."""

    def __init__(
        self,
        operation: str,
        bucket_seconds: int,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if bucket_seconds < 1:
            raise ValueError("bucket_seconds must be at least 1")
        self.operation = operation
        self.bucket_seconds = bucket_seconds
        self._clock = clock
        self.started = clock()
        self._buckets: dict[int, Bucket] = {}

    def _bucket(self) -> Bucket:
        index = int((self._clock() - self.started) // self.bucket_seconds)
        return self._buckets.setdefault(index, Bucket(index))

    def record_request(self, latency_ms: float, *, cache_hit: bool, error: bool) -> None:
        bucket = self._bucket()
        bucket.latencies_ms.append(latency_ms)
        bucket.errors += error
        if cache_hit:
            bucket.cache_hits += 1
        else:
            bucket.cache_misses += 1

    def record_batch(self, size: int) -> None:
        bucket = self._bucket()
        bucket.batches += 1
        bucket.batch_size_max = max(bucket.batch_size_max or 0, size)

    def rows(self) -> list[MetricsRow]:
        """One row per bucket that saw a request or a batch, ages measured from now."""
        now = self._clock()
        rows = []
        for index, bucket in sorted(self._buckets.items()):
            latencies = bucket.latencies_ms
            rows.append(
                MetricsRow(
                    age_s=max(now - (self.started + index * self.bucket_seconds), 0.0),
                    requests=bucket.requests,
                    errors=bucket.errors,
                    latency_p50_ms=percentile(latencies, 0.50) if latencies else None,
                    latency_p95_ms=percentile(latencies, 0.95) if latencies else None,
                    latency_p99_ms=percentile(latencies, 0.99) if latencies else None,
                    cache_hits=bucket.cache_hits,
                    cache_misses=bucket.cache_misses,
                    batches=bucket.batches,
                    batch_size_max=bucket.batch_size_max,
                )
            )
        return rows

    async def flush(self, conn: AsyncConnection[Any]) -> int:
        """Write every bucket in one statement; returns the number of rows written."""
        rows = self.rows()
        if not rows:
            return 0
        await conn.execute(queries.RECORD_METRICS.sql, _params(self, rows))
        self._buckets.clear()
        return len(rows)


def _params(metrics: RequestMetrics, rows: list[MetricsRow]) -> dict[str, Any]:
    return {
        "bucket_seconds": metrics.bucket_seconds,
        "operation": metrics.operation,
        "age_s": [row.age_s for row in rows],
        "requests": [row.requests for row in rows],
        "errors": [row.errors for row in rows],
        "p50": [row.latency_p50_ms for row in rows],
        "p95": [row.latency_p95_ms for row in rows],
        "p99": [row.latency_p99_ms for row in rows],
        "cache_hits": [row.cache_hits for row in rows],
        "cache_misses": [row.cache_misses for row in rows],
        "batches": [row.batches for row in rows],
        "batch_size_max": [row.batch_size_max for row in rows],
    }
