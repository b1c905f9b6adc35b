"""Request metrics in time buckets, one row per bucket and variant: pure, no I/O.

Bucket k starts at ``started + k * bucket_seconds`` on the client's monotonic clock, so every
row's start falls inside the period the metrics were recorded in, and a pair of snapshots taken
around that period brackets its rows exactly. Rows carry their age (seconds from the bucket's
start to the moment they are written); the writer turns it into server time
(``statement_timestamp() - age``), so a skewed client clock cannot move a row out of its window.
Each row carries its requests' latency histogram (``schema.latency``: fixed bounds, so the
histograms of any buckets merge, and a window's percentile is read from their sum) beside its
own percentiles, which cannot be merged.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from dbtools.schema import latency

BucketKey = tuple[int, str | None]  # (bucket index, variant)


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
    """What one variant did in one bucket."""

    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    batches: int = 0
    batch_size_max: int | None = None
    queries: int = 0

    @property
    def requests(self) -> int:
        return len(self.latencies_ms)

    def merge(self, other: Bucket) -> None:
        """Add *other*'s facts to this bucket's (a write that failed puts its buckets back)."""
        self.latencies_ms += other.latencies_ms
        self.errors += other.errors
        self.cache_hits += other.cache_hits
        self.cache_misses += other.cache_misses
        self.batches += other.batches
        if other.batch_size_max is not None:
            self.batch_size_max = max(self.batch_size_max or 0, other.batch_size_max)
        self.queries += other.queries


@dataclass(frozen=True)
class MetricsRow:
    """One ``request_metrics`` row as written (``age_s``: bucket start, seconds before writing;
    ``queries`` None: the application does not count its statements)."""

    age_s: float
    variant: str | None
    requests: int
    errors: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    cache_hits: int
    cache_misses: int
    batches: int
    batch_size_max: int | None
    queries: int | None
    latency_histogram: list[int] | None = None  # schema.latency's counts (None: no requests)


class Buckets:
    """Requests, batches and statements per bucket and variant (not thread-safe: the recorder
    holds a lock around it)."""

    def __init__(self, bucket_seconds: int, *, clock: Callable[[], float] = time.monotonic):
        if bucket_seconds < 1:
            raise ValueError("bucket_seconds must be at least 1")
        self.bucket_seconds = bucket_seconds
        self._clock = clock
        self.started = clock()
        self._buckets: dict[BucketKey, Bucket] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def _bucket(self, variant: str | None) -> Bucket:
        index = int((self._clock() - self.started) // self.bucket_seconds)
        return self._buckets.setdefault((index, variant), Bucket())

    def record_request(
        self,
        latency_ms: float,
        *,
        variant: str | None = None,
        cache_hit: bool | None = None,
        error: bool = False,
    ) -> None:
        """One answered request (*cache_hit* None: the request asked no cache)."""
        bucket = self._bucket(variant)
        bucket.latencies_ms.append(latency_ms)
        bucket.errors += error
        if cache_hit is not None:
            bucket.cache_hits += cache_hit
            bucket.cache_misses += not cache_hit

    def record_batch(self, size: int, *, variant: str | None = None) -> None:
        bucket = self._bucket(variant)
        bucket.batches += 1
        bucket.batch_size_max = max(bucket.batch_size_max or 0, size)

    def count_statements(self, count: int, *, variant: str | None = None) -> None:
        """Statements sent now (the bucket of the moment they are sent, as pg_stat_statements
        counts them, not of the end of the request they serve)."""
        self._bucket(variant).queries += count

    def take(self, *, closed_only: bool) -> dict[BucketKey, Bucket]:
        """Remove and return the buckets to write: those whose time is over (*closed_only*:
        nothing can be added to them any more), or all of them."""
        now_index = int((self._clock() - self.started) // self.bucket_seconds)
        keys = [key for key in self._buckets if not closed_only or key[0] < now_index]
        return {key: self._buckets.pop(key) for key in sorted(keys, key=_order)}

    def pending(self) -> dict[BucketKey, Bucket]:
        """Every bucket not written yet, oldest first (left in place)."""
        return {key: self._buckets[key] for key in sorted(self._buckets, key=_order)}

    def put_back(self, taken: dict[BucketKey, Bucket]) -> None:
        """Return buckets whose write failed (merged with what arrived since)."""
        for key, bucket in taken.items():
            self._buckets.setdefault(key, Bucket()).merge(bucket)

    def drop_oldest(self, keep: int) -> int:
        """Forget all but the *keep* newest buckets; returns how many were dropped."""
        excess = sorted(self._buckets, key=_order)[: max(len(self._buckets) - keep, 0)]
        for key in excess:
            del self._buckets[key]
        return len(excess)

    def rows(self, taken: dict[BucketKey, Bucket], *, counts_statements: bool) -> list[MetricsRow]:
        """The rows of *taken* buckets, ages measured from now."""
        now = self._clock()
        return [
            _row(bucket, now - (self.started + index * self.bucket_seconds), variant,
                 counts_statements)
            for (index, variant), bucket in taken.items()
        ]  # fmt: skip


def _order(key: BucketKey) -> tuple[int, str]:
    return key[0], key[1] or ""


def _row(bucket: Bucket, age_s: float, variant: str | None, counts_statements: bool) -> MetricsRow:
    latencies = bucket.latencies_ms
    return MetricsRow(
        age_s=max(age_s, 0.0),
        variant=variant,
        requests=bucket.requests,
        errors=bucket.errors,
        latency_p50_ms=percentile(latencies, 0.50) if latencies else None,
        latency_p95_ms=percentile(latencies, 0.95) if latencies else None,
        latency_p99_ms=percentile(latencies, 0.99) if latencies else None,
        cache_hits=bucket.cache_hits,
        cache_misses=bucket.cache_misses,
        batches=bucket.batches,
        batch_size_max=bucket.batch_size_max,
        queries=bucket.queries if counts_statements else None,
        latency_histogram=latency.histogram(latencies) if latencies else None,
    )
