"""The latency histogram of a request-metrics bucket (revision 0007): fixed log-spaced bounds, so
that the histograms of any buckets, writers and variants merge by adding them.

``request_metrics.latency_histogram`` is an ``integer[]``: element ``k`` (1-based in SQL, ``k - 1``
here) counts the bucket's requests whose latency lies in ``(lower_bound_ms(k - 1),
upper_bound_ms(k - 1)]``. The bounds grow by a factor of ``2 ** (1/8)`` (Prometheus' native
histograms at schema 3; HdrHistogram keeps a relative resolution the same way): index 0 holds
latencies up to 1/32 ms, index 40 ends at 1 ms, index 200 ends at 2**20 ms (17.5 minutes), and
index 201, the last, holds everything slower. An array ends at its last non-zero count (shorter
rows, the same meaning).

A window's percentile is read from the merged histogram: the bucket holding the requested rank
is known exactly, so the percentile lies between that bucket's bounds. dbtools gives the upper
bound (it never understates a latency) and states the interval: at most 8.3% (``1 - 2 ** (-1/8)``)
above the percentile, or less near zero. Rows written without a histogram (older writers) give
an estimate instead, the request-weighted percentile of the buckets' own percentiles.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

PER_DOUBLING = 8  # bounds per doubling of the latency
ONE_MS_INDEX = 40  # the index whose upper bound is 1 ms
LAST_INDEX = ONE_MS_INDEX + PER_DOUBLING * 20 + 1  # above 2**20 ms: the overflow bucket
RELATIVE_WIDTH = 1 - 2 ** (-1 / PER_DOUBLING)  # how far below its upper bound a value may lie

# What ``histogram_percentile`` gives for the bucket at the 1-based array position *position*
# (SQL text): its upper bound (the overflow bucket's lower one).
PERCENTILE_AT_SQL = (
    f"power(2, (least({{position}}, {LAST_INDEX}) - {ONE_MS_INDEX + 1})::float8 / {PER_DOUBLING})"
)


def upper_bound_ms(index: int) -> float:
    """The largest latency (ms) counted at *index* (infinity for the overflow bucket)."""
    if index >= LAST_INDEX:
        return math.inf
    return float(2 ** ((index - ONE_MS_INDEX) / PER_DOUBLING))


def lower_bound_ms(index: int) -> float:
    """The latency (ms) every one counted at *index* is above (0 for index 0)."""
    return 0.0 if index <= 0 else upper_bound_ms(index - 1)


def bucket_index(latency_ms: float) -> int:
    """The index that counts a request of *latency_ms*."""
    if latency_ms <= upper_bound_ms(0):
        return 0
    # A latency on a bound belongs to the bucket it ends (a tiny slack for the logarithm).
    index = math.ceil(PER_DOUBLING * math.log2(latency_ms) + ONE_MS_INDEX - 1e-9)
    return min(max(index, 1), LAST_INDEX)


def histogram(latencies_ms: Iterable[float]) -> list[int]:
    """The counts of *latencies_ms* by index, ending at the last non-zero one."""
    counts: list[int] = []
    for latency in latencies_ms:
        index = bucket_index(latency)
        if index >= len(counts):
            counts.extend([0] * (index + 1 - len(counts)))
        counts[index] += 1
    return counts


@dataclass(frozen=True)
class Percentile:
    """A window's latency percentile. From a merged histogram it lies in (``low_ms``,
    ``value_ms``]; an ``estimated`` one (rows without a histogram) has no stated bounds."""

    value_ms: float
    low_ms: float | None = None
    estimated: bool = False

    def as_dict(self) -> dict[str, object]:
        return {"value_ms": self.value_ms, "low_ms": self.low_ms, "estimated": self.estimated}


def histogram_percentile(counts: Sequence[float], fraction: float) -> Percentile | None:
    """The *fraction* percentile of the merged histogram *counts* (None: no request): the upper
    bound of the bucket holding the request at rank ``fraction × total`` (the latency that
    that share of the requests does not exceed), with the bucket's lower bound."""
    total = sum(counts)
    if total <= 0:
        return None
    rank = fraction * total
    seen, index = 0.0, 0
    for index, count in enumerate(counts):  # noqa: B007  (the index found is used below)
        seen += count
        if count and seen >= rank:
            break
    else:  # rounding: the last bucket holding a request
        index = max(i for i, count in enumerate(counts) if count)
    value = upper_bound_ms(index)
    if math.isinf(value):  # the overflow bucket: known only to be above its lower bound
        return Percentile(lower_bound_ms(index), lower_bound_ms(index))
    return Percentile(value, lower_bound_ms(index))


def weighted_percentile(
    values: Sequence[float], weights: Sequence[float], fraction: float
) -> Percentile | None:
    """An estimate from buckets without a histogram: the smallest of *values* (each bucket's own
    percentile) at or below which ``fraction`` of the *weights* (its requests) lie; never their
    maximum, which one slow bucket decides."""
    pairs = sorted((v, w) for v, w in zip(values, weights, strict=True) if w > 0)
    total = sum(w for _, w in pairs)
    if not pairs or total <= 0:
        return None
    seen = 0.0
    for value, weight in pairs:
        seen += weight
        if seen >= fraction * total:
            return Percentile(value, estimated=True)
    return Percentile(pairs[-1][0], estimated=True)
