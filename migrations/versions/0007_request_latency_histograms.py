"""Request latency as a mergeable histogram per bucket: a window's p95 computed from latencies.

* ``request_metrics.latency_histogram``: the bucket's requests counted by latency, at fixed
  log-spaced bounds (``dbtools.schema.latency``: a factor of 2**(1/8) between bounds, index 0
  up to 1/32 ms, index 40 ending at 1 ms, index 201 above 2**20 ms; element k of the array is
  index k - 1, and the array ends at its last non-zero count). Histograms of any buckets,
  writers and variants merge by adding them, so a window's percentile is read from its merged
  histogram; a bucket's own ``latency_p95_ms`` cannot be merged. NULL: a writer that records no
  histogram (an older one); its windows' p95 is an estimate.

The column is nullable without a default: adding it rewrites nothing (a brief ACCESS EXCLUSIVE
lock on ``request_metrics``, under the migration's lock timeout).

Downgrade: the column goes, with what it held (the per-bucket percentiles stay).

Frozen: the DDL below is literal SQL; a change is a new revision.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from dbtools.schema.manifest import Manifest

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE: tuple[str, ...] = (
    "ALTER TABLE perf_monitoring.request_metrics ADD COLUMN latency_histogram INTEGER[]",
    "COMMENT ON COLUMN perf_monitoring.request_metrics.latency_histogram IS 'requests by latency: element k counts latencies in (2^((k-42)/8), 2^((k-41)/8)] ms (element 1: up to 2^-5 ms, element 202: above 2^20 ms); NULL: not recorded'",
)

DOWNGRADE: tuple[str, ...] = (
    "ALTER TABLE perf_monitoring.request_metrics DROP COLUMN latency_histogram",
)

# What this revision creates (tests/test_manifests.py compares it with the catalog): a column
# only, which manifests do not list.
MANIFEST = Manifest()


def upgrade() -> None:
    # dbtools-lint: ignore prefer-bigint-over-int in upgrade because each element counts one bucket's requests in one latency range, far below 2**31; four bytes each keep the rows small
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    # dbtools-lint: ignore ban-drop-column in downgrade because the downgrade drops exactly the histogram column this revision added; `dbtools downgrade-plan` exports its rows first
    for statement in DOWNGRADE:
        op.execute(statement)
