"""A window's request metrics as the application reported them, and how far their edges can
move a figure.

The store reads them (``store.request_metrics``: the one home of the SQL over
``request_metrics``); this module is pure.
"""

from __future__ import annotations

import math
from dataclasses import KW_ONLY, dataclass
from datetime import datetime

from dbtools.schema.latency import Percentile

# How request-metrics rows that name no variant are shown (written before revision 0006, or by
# an application that does not tell).
UNNAMED_VARIANT = "(none)"


@dataclass(frozen=True)
class RequestTotals:
    """The application's request metrics over a window.

    The request-metrics buckets do not start and end with the window's samples, so a bucket an
    end cuts holds requests from both sides, in proportions nobody recorded. ``requests`` counts
    each bucket by the share of its time inside the window (prorated); the true number lies
    between ``requests_low`` (the buckets certainly inside, a little slack allowed:
    ``request_metrics.EDGE_SLACK_SECONDS``) and ``requests_high`` (every bucket that may
    overlap): ``edge_error`` is how far that can move queries per request. Errors, cache hits and latency are ratios and percentiles: taken over
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


NO_REQUESTS = RequestTotals(0, 0, 0, 0, 0, None)


@dataclass(frozen=True)
class VariantTotals(RequestTotals):
    """``RequestTotals`` of one variant: the code path that served the requests (None: rows
    that name none)."""

    variant: str | None


@dataclass(frozen=True)
class MetricsBucket:
    """One ``request_metrics`` bucket start (all operations and variants together)."""

    started_at: datetime
    requests: int
    p95_ms: float | None  # the highest p95 of its rows
    error_rate: float | None
