"""Batch optimisation: the indexes the batched flight search needs, built concurrently, and
autovacuum settings for the high-churn tables, recorded so the downgrade restores them exactly.

The index and setting definitions live in ``dbtools.schema.objects`` (read by ``dbtools verify`` too).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

from dbtools.errors import MigrationError
from dbtools.schema.objects import AUTOVACUUM_SETTINGS, BATCH_INDEXES, IndexSpec
from dbtools.schema.online import (
    build_index_concurrently,
    drop_index_concurrently,
    restore_storage_parameters,
    set_storage_parameters,
    undo_index_builds,
)

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    built: list[IndexSpec] = []
    try:
        for spec in BATCH_INDEXES:
            if build_index_concurrently(spec):
                built.append(spec)
        set_storage_parameters(revision, AUTOVACUUM_SETTINGS)
    except MigrationError:
        # Concurrent builds commit on their own: drop what this attempt built so that a failed
        # upgrade leaves the schema exactly at the previous revision.
        undo_index_builds(built)
        raise


def downgrade() -> None:
    restore_storage_parameters(revision, AUTOVACUUM_SETTINGS)
    for spec in reversed(BATCH_INDEXES):
        drop_index_concurrently(spec)
