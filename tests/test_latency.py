"""The latency histogram's fixed bounds (``schema.latency``): exact indexes, a merged histogram's
percentile with its stated bounds, and the estimate from buckets without a histogram. Pure."""

from __future__ import annotations

import math
import random

import pytest

from dbtools.metrics.buckets import percentile
from dbtools.schema import latency
from dbtools.schema.latency import (
    Percentile,
    bucket_index,
    histogram,
    histogram_percentile,
    lower_bound_ms,
    upper_bound_ms,
    weighted_percentile,
)


@pytest.mark.parametrize(
    ("latency_ms", "index"),
    [
        (0.0, 0), (2**-5, 0),  # up to 1/32 ms: index 0
        (2**-5 + 1e-9, 1),
        (1.0, 40), (1.0001, 41),  # 1 ms ends index 40
        (2.0, 48), (5.0, 59), (100.0, 94), (300.0, 106), (1000.0, 120),
        (2.0**20, 200), (2.0**20 + 1, 201), (1e12, 201),  # 201: above 2**20 ms
    ],
)  # fmt: skip
def test_bucket_indexes_are_fixed(latency_ms: float, index: int) -> None:
    assert bucket_index(latency_ms) == index
    assert lower_bound_ms(index) < latency_ms <= upper_bound_ms(index) or index == 0


def test_bounds_grow_by_a_factor_of_two_to_the_eighth() -> None:
    for index in range(1, latency.LAST_INDEX):
        assert upper_bound_ms(index) / upper_bound_ms(index - 1) == pytest.approx(2 ** (1 / 8))
    assert math.isinf(upper_bound_ms(latency.LAST_INDEX))
    assert round(latency.RELATIVE_WIDTH, 4) == 0.0830


def test_a_histogram_ends_at_its_last_count() -> None:
    assert histogram([]) == []
    assert histogram([1.0, 1.0, 0.01]) == [1] + [0] * 39 + [2]
    assert len(histogram([5.0, 0.5])) == 60


def test_the_percentile_of_a_histogram_is_its_bucket_upper_bound() -> None:
    # 100 requests: 94 at 10 ms, 6 at 300 ms. The 95th is one of the slow ones.
    counts = histogram([10.0] * 94 + [300.0] * 6)
    found = histogram_percentile(counts, 0.95)
    assert found == Percentile(upper_bound_ms(106), lower_bound_ms(106))
    assert found is not None and found.low_ms is not None
    assert found.low_ms < 300.0 <= found.value_ms
    # 95 fast ones: the 95th request is fast.
    assert histogram_percentile(histogram([10.0] * 95 + [300.0] * 5), 0.95) == Percentile(
        upper_bound_ms(67), lower_bound_ms(67)
    )
    assert histogram_percentile([], 0.95) is None and histogram_percentile([0, 0], 0.95) is None
    # The overflow bucket: only its lower bound is known.
    assert histogram_percentile(histogram([1e9]), 0.95) == Percentile(2.0**20, 2.0**20)


@pytest.mark.parametrize("seed", range(20))
def test_the_true_percentile_lies_in_the_stated_interval(seed: int) -> None:
    """Whatever the latencies, the request at rank 95% lies in (low, value], and value is at
    most 9.05% above the lowest latency that bucket can hold (the stated resolution)."""
    rng = random.Random(seed)
    values = [rng.lognormvariate(3, 1.2) for _ in range(rng.randint(1, 2000))]
    found = histogram_percentile(histogram(values), 0.95)
    assert found is not None and found.low_ms is not None and not found.estimated
    ordered = sorted(values)
    nearest_rank = ordered[math.ceil(0.95 * len(ordered)) - 1]
    assert found.low_ms < nearest_rank <= found.value_ms
    assert found.value_ms * (1 - latency.RELATIVE_WIDTH) == pytest.approx(found.low_ms)
    # Merged: two halves' histograms added give the same percentile as the whole.
    half = len(values) // 2
    left, right = histogram(values[:half]), histogram(values[half:])
    merged = [a + b for a, b in zip(left + [0] * 300, right + [0] * 300, strict=False)]
    assert histogram_percentile(merged, 0.95) == found


def test_the_estimate_weighs_each_buckets_p95_by_its_requests_never_their_maximum() -> None:
    # 59 buckets of 100 requests at a p95 of 100 ms, one second of 100 requests at 400 ms.
    values, weights = [100.0] * 59 + [400.0], [100] * 60
    assert weighted_percentile(values, weights, 0.95) == Percentile(100.0, estimated=True)
    assert max(values) == 400.0  # what the highest bucket p95 would have said
    # A slow bucket holding more than 5% of the requests decides it.
    assert weighted_percentile([100.0, 400.0], [90, 10], 0.95) == Percentile(400.0, estimated=True)
    assert weighted_percentile([100.0], [0], 0.95) is None
    assert weighted_percentile([], [], 0.95) is None


def test_a_bucket_p95_and_its_histogram_agree() -> None:
    """The writer's own percentile (linear interpolation) lies in its histogram's interval
    or the bucket next to it (interpolation between two requests)."""
    rng = random.Random(7)
    values = [rng.uniform(1, 50) for _ in range(500)]
    found = histogram_percentile(histogram(values), 0.95)
    assert found is not None and found.low_ms is not None
    own = percentile(values, 0.95)
    assert found.low_ms * (1 - latency.RELATIVE_WIDTH) < own <= found.value_ms
