"""Performance monitoring schema: snapshots of PostgreSQL's statistics, request and app metrics,
the log of setting changes, and retention.

The tables are declared once, in ``dbtools.schema.objects``; ``dbtools verify`` reads the same
declarations.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op
from sqlalchemy.schema import CreateIndex, CreateTable, DropTable, SetColumnComment, SetTableComment

from dbtools.schema.objects import (
    MONITORING,
    MONITORING_SCHEMA,
    PURGE_FUNCTION,
    PURGE_FUNCTION_COMMENT,
    PURGE_FUNCTION_SQL,
)

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(f"CREATE SCHEMA {MONITORING_SCHEMA}")
    op.execute(
        f"COMMENT ON SCHEMA {MONITORING_SCHEMA} IS "
        "'dbtools: statistics snapshots and application metrics for performance rollouts'"
    )
    for table in MONITORING.sorted_tables:
        op.execute(CreateTable(table))
        op.execute(SetTableComment(table))
        for column in table.columns:
            if column.comment:
                op.execute(SetColumnComment(column))
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            op.execute(CreateIndex(index))
    op.execute(PURGE_FUNCTION_SQL)
    op.execute(
        f"COMMENT ON FUNCTION {MONITORING_SCHEMA}.{PURGE_FUNCTION}(integer) "
        f"IS '{PURGE_FUNCTION_COMMENT}'"
    )


def downgrade() -> None:
    # dbtools-lint: ignore ban-drop-function,ban-drop-table,ban-drop-schema in downgrade because the downgrade drops exactly the monitoring objects this revision created, which only dbtools reads; `dbtools downgrade-plan` exports their rows first
    op.execute(f"DROP FUNCTION {MONITORING_SCHEMA}.{PURGE_FUNCTION}(integer)")
    for table in reversed(MONITORING.sorted_tables):
        op.execute(DropTable(table))
    op.execute(f"DROP SCHEMA {MONITORING_SCHEMA}")
