"""The stream of search requests: seeded, with a controlled share of repeated requests.

A run of N requests at duplication level d holds ``N - round(d.hit_ratio * N)`` distinct
requests; the others repeat one of them. With an application cache whose entries outlive the
run, exactly the repeats are cache hits, so the hit ratio is the level's (70%, 50%, 20% for the
rollout guide's high, medium and low duplication), whatever the order or the timing.
"""

from __future__ import annotations

import enum
import random

from dbtools.errors import UsageError
from dbtools.workload.access import SearchRequest
from dbtools.workload.catalog import Dataset, active_trip_requests


class Duplication(enum.Enum):
    """How often a request repeats an earlier one (the rollout guide's cache table)."""

    NONE = "none"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"

    @property
    def hit_ratio(self) -> float:
        """The application-cache hit ratio this level gives."""
        return {"none": 0.0, "low": 0.2, "medium": 0.5, "high": 0.7}[self.value]

    @classmethod
    def parse(cls, value: Duplication | str) -> Duplication:
        if isinstance(value, Duplication):
            return value
        try:
            return cls(value.lower())
        except ValueError:
            choices = ", ".join(level.value for level in cls)
            raise UsageError(
                f"unknown duplication level {value!r}; choose one of {choices}"
            ) from None


def distinct_requests(requests: int, duplication: Duplication) -> int:
    """How many distinct requests a run of *requests* holds at *duplication*."""
    return requests - round(duplication.hit_ratio * requests)


def generate_requests(
    dataset: Dataset, requests: int, duplication: Duplication, seed: int
) -> list[SearchRequest]:
    """*requests* search requests for active trips of *dataset*, repeatable for a *seed*.

    Raises ``UsageError`` when the dataset has fewer active trip requests than the run needs
    distinct requests.
    """
    if requests < 0:
        raise UsageError("the number of requests must not be negative")
    trips = active_trip_requests(dataset)
    distinct = distinct_requests(requests, duplication)
    if distinct > len(trips):
        raise UsageError(
            f"{requests} requests at {duplication.value} duplication need {distinct} distinct "
            f"trip requests; the dataset has {len(trips)} active ones (seed a larger dataset)"
        )
    rng = random.Random(f"dbtools-requests:{seed}")
    chosen = [SearchRequest(trip.id, trip.search) for trip in rng.sample(trips, distinct)]
    stream = chosen + [rng.choice(chosen) for _ in range(requests - distinct)]
    rng.shuffle(stream)
    return stream
