"""What an application reports to ``perf_monitoring.request_metrics``: per time bucket and per
variant (the code path that served the requests), its requests, errors, latency percentiles,
cache hits and misses, batches, and the statements it sent for them.

Used by applications (the reference workload among them), so it imports nothing above the
monitoring schema's names: no verify, report or CLI::

    from dbtools.metrics import MetricsRecorder

    recorder = MetricsRecorder(dsn, operation="flight_search", bucket_seconds=1)
    recorder.instrument_sqlalchemy(engine)            # count statements (or instrument_psycopg)
    with recorder.request(variant="batched") as request:
        ...
    recorder.close()
"""

from __future__ import annotations

from dbtools.metrics.buckets import MetricsRow, percentile
from dbtools.metrics.hooks import (
    AsyncCountingCursor,
    CountingCursor,
    count_statements,
    instrument_psycopg,
    instrument_sqlalchemy,
)
from dbtools.metrics.recorder import MetricsRecorder, RequestRecord

__all__ = [
    "AsyncCountingCursor",
    "CountingCursor",
    "MetricsRecorder",
    "MetricsRow",
    "RequestRecord",
    "count_statements",
    "instrument_psycopg",
    "instrument_sqlalchemy",
    "percentile",
]
