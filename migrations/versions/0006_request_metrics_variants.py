"""Request metrics per variant: which code path served the requests, and how many statements
the application sent for them.

* ``request_metrics.variant``: the code path that served the bucket's requests (``per-request``,
  ``batched``…); NULL for rows written before, or by an application that does not tell. During
  a canary both paths run at once, so each bucket has a row per variant.
* ``request_metrics.queries``: the statements the application sent for those requests, when it
  counts them (``dbtools.metrics``); NULL when it does not. ``verify --canary --attribute app``
  reconciles their sum with pg_stat_statements.

Both columns are nullable without a default: adding them rewrites nothing (a brief ACCESS
EXCLUSIVE lock on ``request_metrics``, under the migration's lock timeout).

Downgrade: the two columns go, with what they held.

Frozen: the DDL below is literal SQL; a change is a new revision.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from dbtools.schema.manifest import Manifest

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE: tuple[str, ...] = (
    """ALTER TABLE perf_monitoring.request_metrics
    ADD COLUMN variant TEXT,
    ADD COLUMN queries BIGINT""",
    "COMMENT ON COLUMN perf_monitoring.request_metrics.variant IS 'the code path that served the requests (per-request, batched, ...); NULL: not told'",
    "COMMENT ON COLUMN perf_monitoring.request_metrics.queries IS 'statements the application sent for these requests; NULL: not counted'",
)

DOWNGRADE: tuple[str, ...] = (
    """ALTER TABLE perf_monitoring.request_metrics
    DROP COLUMN queries,
    DROP COLUMN variant""",
)

# What this revision creates (tests/test_manifests.py compares it with the catalog): columns
# only, which manifests do not list.
MANIFEST = Manifest()


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    # dbtools-lint: ignore ban-drop-column in downgrade because the downgrade drops exactly the two request-metrics columns this revision added; `dbtools downgrade-plan` exports their rows first
    for statement in DOWNGRADE:
        op.execute(statement)
