"""What a run of the reference workload must send, worked out without running it."""

from __future__ import annotations

from dataclasses import dataclass

from dbtools.workload import DataPath, WorkloadConfig, generate_requests
from dbtools.workload.runner import split_traffic


@dataclass
class Expected:
    """One path's share of a run: its requests, its cache misses, its round trips (three
    statements each: one per miss on the per-request path, one per batch on the batched)."""

    requests: int = 0
    misses: int = 0
    round_trips: int = 0

    @property
    def statements(self) -> int:
        return 3 * self.round_trips


def expected_paths(config: WorkloadConfig) -> dict[DataPath, Expected]:
    """Each path's figures: a request is a miss when its key was not seen earlier (the cache is
    shared by both paths); a wave's batched misses go in batches of at most max_batch_size."""
    stream = generate_requests(config.dataset, config.requests, config.duplication, config.seed)
    paths = split_traffic(config.requests, config.path, config.traffic, config.seed)
    found = {path: Expected() for path in DataPath}
    seen: set[str] = set()
    for start in range(0, len(stream), config.concurrency):
        batched = 0
        wave = zip(stream[start : start + config.concurrency],
                   paths[start : start + config.concurrency], strict=True)  # fmt: skip
        for request, path in wave:
            found[path].requests += 1
            if request.cache_key in seen:
                continue
            seen.add(request.cache_key)
            found[path].misses += 1
            if path is DataPath.PER_REQUEST:
                found[path].round_trips += 1
            else:
                batched += 1
        found[DataPath.BATCHED].round_trips += -(-batched // config.max_batch_size)
    return found
