"""The reference flight-search workload: the application whose rollout dbtools measures.

Two data-access paths answer the same requests: **per request** (each request sends its own
three statements) and **batched** (concurrent requests are coalesced into one batch that sends
the same three statements with arrays). An application cache with controllable duplication sits
in front, and request metrics go to ``perf_monitoring.request_metrics``::

    from dbtools.workload import Dataset, WorkloadConfig, run_workload, seed_database

    seed_database(dsn, Dataset())                      # once, into a migrated database
    result = run_workload(dsn, WorkloadConfig(path="per-request", requests=500, concurrency=10))
    result.statements_sent, result.latency_ms(0.95), result.cache_hit_ratio
"""

from __future__ import annotations

from dbtools.workload.access import ApplicationPool, SearchRequest, SearchResult
from dbtools.workload.catalog import Dataset, Offer, SearchParams
from dbtools.workload.generator import Duplication, distinct_requests, generate_requests
from dbtools.workload.runner import (
    APPLICATION_NAME,
    OPERATION,
    DataPath,
    WorkloadConfig,
    WorkloadResult,
    application_pool,
    run_workload,
    run_workload_async,
)
from dbtools.workload.seed import SeedSummary, seed_database

__all__ = [
    "APPLICATION_NAME",
    "OPERATION",
    "ApplicationPool",
    "DataPath",
    "Dataset",
    "Duplication",
    "Offer",
    "SearchParams",
    "SearchRequest",
    "SearchResult",
    "SeedSummary",
    "WorkloadConfig",
    "WorkloadResult",
    "application_pool",
    "distinct_requests",
    "generate_requests",
    "run_workload",
    "run_workload_async",
    "seed_database",
]
