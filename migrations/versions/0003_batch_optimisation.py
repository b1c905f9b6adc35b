"""Batch optimisation: the indexes the batched flight search needs, built concurrently, and
autovacuum settings for the high-churn tables, recorded so the downgrade restores them exactly.

Frozen: the indexes (by their definitions as ``pg_get_indexdef`` prints them) and the settings
are written below; the online-DDL helpers derive the concurrent builds, validity checks and the
recorded, exactly undone settings from them. A change is a new revision (the golden offline SQL
in ``tests/golden/revisions/`` fails on any edit here).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

from dbtools.errors import MigrationError
from dbtools.schema.manifest import IndexDefinition, Manifest, TableSettings
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

BATCH_INDEXES: tuple[IndexDefinition, ...] = (
    IndexDefinition(
        "CREATE INDEX ix_trip_requests_active_batch ON public.trip_requests USING btree (id) "
        "INCLUDE (search_key, traveler_id, max_price) WHERE (status = 'active'::text)",
        purpose="batched load of active trip requests (id = ANY($1)) as an index-only scan",
        batch=True,
    ),
    IndexDefinition(
        "CREATE INDEX ix_flight_offers_trip_expiry ON public.flight_offers "
        "USING btree (trip_request_id, expires_at) INCLUDE (price_total)",
        purpose="existing, unexpired offers by trip request (trip_request_id = ANY($1))",
        batch=True,
    ),
    IndexDefinition(
        "CREATE INDEX ix_flight_search_cache_key_expiry ON public.flight_search_cache "
        "USING btree (search_key, expires_at DESC)",
        purpose="search-cache lookups by normalised key and expiry (search_key = ANY($1))",
        batch=True,
    ),
)

AUTOVACUUM_SETTINGS: tuple[TableSettings, ...] = (
    TableSettings(
        schema="public",
        table="flight_offers",
        settings={
            "autovacuum_vacuum_scale_factor": "0.05",
            "autovacuum_analyze_scale_factor": "0.02",
            "autovacuum_vacuum_cost_limit": "1000",
        },
        reason="every search upserts offers: dead tuples pile up 10x faster than the default expects",
    ),
    TableSettings(
        schema="public",
        table="flight_search_cache",
        settings={
            "autovacuum_vacuum_scale_factor": "0.02",
            "autovacuum_analyze_scale_factor": "0.01",
            "autovacuum_vacuum_insert_scale_factor": "0.05",
        },
        reason="insert-mostly with expiry purges; stale statistics mislead the key lookups",
    ),
    TableSettings(
        schema="public",
        table="trip_requests",
        settings={
            "autovacuum_vacuum_scale_factor": "0.05",
            "autovacuum_analyze_scale_factor": "0.02",
        },
        reason="status updates move rows in and out of the partial batch index",
    ),
)

# What this revision creates (tests/test_manifests.py compares it with the catalog).
MANIFEST = Manifest(indexes=BATCH_INDEXES, table_settings=AUTOVACUUM_SETTINGS)


def upgrade() -> None:
    built: list[IndexDefinition] = []
    try:
        for index in BATCH_INDEXES:
            if build_index_concurrently(index):
                built.append(index)
        set_storage_parameters(revision, AUTOVACUUM_SETTINGS)
    except MigrationError:
        # Concurrent builds commit on their own: drop what this attempt built so that a failed
        # upgrade leaves the schema exactly at the previous revision.
        undo_index_builds(built)
        raise


def downgrade() -> None:
    restore_storage_parameters(revision, AUTOVACUUM_SETTINGS)
    for index in reversed(BATCH_INDEXES):
        drop_index_concurrently(index)
