"""Performance monitoring schema: snapshots of PostgreSQL's statistics, request and app metrics,
the log of setting changes, and retention.

Frozen: the DDL below was rendered once from the declarations it was written with and is kept
as literal SQL; a change to the monitoring schema is a new revision (the golden offline SQL in
``tests/golden/revisions/`` fails on any edit here).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from dbtools.schema.manifest import IndexDefinition, Manifest

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE: tuple[str, ...] = (
    "CREATE SCHEMA perf_monitoring",
    "COMMENT ON SCHEMA perf_monitoring IS 'dbtools: statistics snapshots and application metrics for performance rollouts'",
    """CREATE TABLE perf_monitoring.app_metrics (
    id BIGINT GENERATED ALWAYS AS IDENTITY,
    recorded_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    name TEXT NOT NULL,
    value FLOAT NOT NULL,
    labels JSONB DEFAULT '{}'::jsonb NOT NULL,
    CONSTRAINT pk_app_metrics PRIMARY KEY (id)
)""",
    "COMMENT ON TABLE perf_monitoring.app_metrics IS 'Application metrics as name/value (e.g. kms_connection_reuse_ratio).'",
    "CREATE INDEX ix_app_metrics_name_time ON perf_monitoring.app_metrics (name, recorded_at)",
    """CREATE TABLE perf_monitoring.request_metrics (
    id BIGINT GENERATED ALWAYS AS IDENTITY,
    bucket_start TIMESTAMP WITH TIME ZONE NOT NULL,
    bucket_seconds BIGINT NOT NULL,
    operation TEXT NOT NULL,
    requests BIGINT DEFAULT 0 NOT NULL,
    errors BIGINT DEFAULT 0 NOT NULL,
    latency_p50_ms FLOAT,
    latency_p95_ms FLOAT,
    latency_p99_ms FLOAT,
    cache_hits BIGINT DEFAULT 0 NOT NULL,
    cache_misses BIGINT DEFAULT 0 NOT NULL,
    batches BIGINT DEFAULT 0 NOT NULL,
    batch_size_max BIGINT,
    recorded_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    CONSTRAINT pk_request_metrics PRIMARY KEY (id)
)""",
    "COMMENT ON TABLE perf_monitoring.request_metrics IS 'Application request metrics per time bucket and operation, written by the app.'",
    "CREATE INDEX ix_request_metrics_bucket ON perf_monitoring.request_metrics (bucket_start, operation)",
    """CREATE TABLE perf_monitoring.setting_changes (
    id BIGINT GENERATED ALWAYS AS IDENTITY,
    revision TEXT NOT NULL,
    relation TEXT NOT NULL,
    option_name TEXT NOT NULL,
    old_value TEXT,
    new_value TEXT,
    changed_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    CONSTRAINT pk_setting_changes PRIMARY KEY (id)
)""",
    "COMMENT ON TABLE perf_monitoring.setting_changes IS 'Storage parameters changed by migrations, with the value they replaced.'",
    "COMMENT ON COLUMN perf_monitoring.setting_changes.old_value IS 'NULL: the option had no value before (RESET on downgrade)'",
    "CREATE INDEX ix_setting_changes_revision ON perf_monitoring.setting_changes (revision)",
    """CREATE TABLE perf_monitoring.snapshots (
    id BIGINT GENERATED ALWAYS AS IDENTITY,
    label TEXT NOT NULL,
    taken_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    database_name TEXT NOT NULL,
    database_oid OID NOT NULL,
    server_version_num BIGINT NOT NULL,
    server_started_at TIMESTAMP WITH TIME ZONE NOT NULL,
    role_name TEXT NOT NULL,
    pgss_version TEXT,
    pgss_stats_reset TIMESTAMP WITH TIME ZONE,
    pgss_dealloc BIGINT,
    alembic_revision TEXT,
    requests BIGINT,
    hidden_statements BIGINT DEFAULT 0 NOT NULL,
    hidden_calls BIGINT DEFAULT 0 NOT NULL,
    CONSTRAINT pk_snapshots PRIMARY KEY (id),
    CONSTRAINT uq_snapshots_label UNIQUE (label)
)""",
    "COMMENT ON TABLE perf_monitoring.snapshots IS 'One consistent copy of PostgreSQL''s statistics, labelled; never a reset.'",
    "COMMENT ON COLUMN perf_monitoring.snapshots.pgss_stats_reset IS 'pg_stat_statements_info.stats_reset (extension 1.9+)'",
    "COMMENT ON COLUMN perf_monitoring.snapshots.pgss_dealloc IS 'pg_stat_statements_info.dealloc (1.9+)'",
    "COMMENT ON COLUMN perf_monitoring.snapshots.requests IS 'requests reported by a load tool (--requests)'",
    "CREATE INDEX ix_snapshots_taken_at ON perf_monitoring.snapshots (taken_at)",
    """CREATE TABLE perf_monitoring.database_stats (
    snapshot_id BIGINT NOT NULL,
    datid OID NOT NULL,
    datname TEXT NOT NULL,
    numbackends BIGINT DEFAULT 0 NOT NULL,
    xact_commit BIGINT DEFAULT 0 NOT NULL,
    xact_rollback BIGINT DEFAULT 0 NOT NULL,
    blks_read BIGINT DEFAULT 0 NOT NULL,
    blks_hit BIGINT DEFAULT 0 NOT NULL,
    tup_returned BIGINT DEFAULT 0 NOT NULL,
    tup_fetched BIGINT DEFAULT 0 NOT NULL,
    tup_inserted BIGINT DEFAULT 0 NOT NULL,
    tup_updated BIGINT DEFAULT 0 NOT NULL,
    tup_deleted BIGINT DEFAULT 0 NOT NULL,
    conflicts BIGINT DEFAULT 0 NOT NULL,
    temp_files BIGINT DEFAULT 0 NOT NULL,
    temp_bytes BIGINT DEFAULT 0 NOT NULL,
    deadlocks BIGINT DEFAULT 0 NOT NULL,
    blk_read_time FLOAT DEFAULT 0 NOT NULL,
    blk_write_time FLOAT DEFAULT 0 NOT NULL,
    stats_reset TIMESTAMP WITH TIME ZONE,
    xid_age BIGINT,
    database_bytes BIGINT,
    CONSTRAINT pk_database_stats PRIMARY KEY (snapshot_id),
    CONSTRAINT fk_database_stats_snapshot_id FOREIGN KEY(snapshot_id) REFERENCES perf_monitoring.snapshots (id) ON DELETE CASCADE
)""",
    "COMMENT ON TABLE perf_monitoring.database_stats IS 'pg_stat_database for the snapshotted database, per snapshot.'",
    """CREATE TABLE perf_monitoring.index_stats (
    snapshot_id BIGINT NOT NULL,
    indexrelid OID NOT NULL,
    relid OID NOT NULL,
    schemaname TEXT NOT NULL,
    relname TEXT NOT NULL,
    indexrelname TEXT NOT NULL,
    idx_scan BIGINT DEFAULT 0 NOT NULL,
    idx_tup_read BIGINT DEFAULT 0 NOT NULL,
    idx_tup_fetch BIGINT DEFAULT 0 NOT NULL,
    idx_blks_read BIGINT DEFAULT 0 NOT NULL,
    idx_blks_hit BIGINT DEFAULT 0 NOT NULL,
    is_valid BOOLEAN NOT NULL,
    is_ready BOOLEAN NOT NULL,
    is_unique BOOLEAN NOT NULL,
    is_primary BOOLEAN NOT NULL,
    backs_constraint BOOLEAN NOT NULL,
    key_columns TEXT[] NOT NULL,
    include_columns TEXT[] NOT NULL,
    predicate TEXT,
    access_method TEXT NOT NULL,
    definition TEXT NOT NULL,
    index_bytes BIGINT,
    CONSTRAINT pk_index_stats PRIMARY KEY (snapshot_id, indexrelid),
    CONSTRAINT fk_index_stats_snapshot_id FOREIGN KEY(snapshot_id) REFERENCES perf_monitoring.snapshots (id) ON DELETE CASCADE
)""",
    "COMMENT ON TABLE perf_monitoring.index_stats IS 'pg_stat_user_indexes + pg_statio_user_indexes + pg_index, per snapshot.'",
    """CREATE TABLE perf_monitoring.statement_stats (
    snapshot_id BIGINT NOT NULL,
    userid OID NOT NULL,
    rolname TEXT,
    dbid OID NOT NULL,
    queryid BIGINT NOT NULL,
    toplevel BOOLEAN NOT NULL,
    query TEXT NOT NULL,
    calls BIGINT DEFAULT 0 NOT NULL,
    rows BIGINT DEFAULT 0 NOT NULL,
    plans BIGINT DEFAULT 0 NOT NULL,
    total_exec_time FLOAT DEFAULT 0 NOT NULL,
    total_plan_time FLOAT DEFAULT 0 NOT NULL,
    shared_blks_hit BIGINT DEFAULT 0 NOT NULL,
    shared_blks_read BIGINT DEFAULT 0 NOT NULL,
    shared_blks_dirtied BIGINT DEFAULT 0 NOT NULL,
    shared_blks_written BIGINT DEFAULT 0 NOT NULL,
    local_blks_hit BIGINT DEFAULT 0 NOT NULL,
    local_blks_read BIGINT DEFAULT 0 NOT NULL,
    temp_blks_read BIGINT DEFAULT 0 NOT NULL,
    temp_blks_written BIGINT DEFAULT 0 NOT NULL,
    shared_blk_read_time FLOAT DEFAULT 0 NOT NULL,
    shared_blk_write_time FLOAT DEFAULT 0 NOT NULL,
    wal_records BIGINT DEFAULT 0 NOT NULL,
    wal_bytes BIGINT DEFAULT 0 NOT NULL,
    stats_since TIMESTAMP WITH TIME ZONE,
    CONSTRAINT pk_statement_stats PRIMARY KEY (snapshot_id, dbid, userid, queryid, toplevel),
    CONSTRAINT fk_statement_stats_snapshot_id FOREIGN KEY(snapshot_id) REFERENCES perf_monitoring.snapshots (id) ON DELETE CASCADE
)""",
    "COMMENT ON TABLE perf_monitoring.statement_stats IS 'pg_stat_statements rows visible to the snapshotting role, per snapshot.'",
    "COMMENT ON COLUMN perf_monitoring.statement_stats.stats_since IS 'when this entry started counting (extension 1.11+)'",
    """CREATE TABLE perf_monitoring.table_stats (
    snapshot_id BIGINT NOT NULL,
    relid OID NOT NULL,
    schemaname TEXT NOT NULL,
    relname TEXT NOT NULL,
    seq_scan BIGINT DEFAULT 0 NOT NULL,
    seq_tup_read BIGINT DEFAULT 0 NOT NULL,
    idx_scan BIGINT DEFAULT 0 NOT NULL,
    idx_tup_fetch BIGINT DEFAULT 0 NOT NULL,
    n_tup_ins BIGINT DEFAULT 0 NOT NULL,
    n_tup_upd BIGINT DEFAULT 0 NOT NULL,
    n_tup_del BIGINT DEFAULT 0 NOT NULL,
    n_tup_hot_upd BIGINT DEFAULT 0 NOT NULL,
    n_live_tup BIGINT DEFAULT 0 NOT NULL,
    n_dead_tup BIGINT DEFAULT 0 NOT NULL,
    n_mod_since_analyze BIGINT DEFAULT 0 NOT NULL,
    last_vacuum TIMESTAMP WITH TIME ZONE,
    last_autovacuum TIMESTAMP WITH TIME ZONE,
    last_analyze TIMESTAMP WITH TIME ZONE,
    last_autoanalyze TIMESTAMP WITH TIME ZONE,
    vacuum_count BIGINT DEFAULT 0 NOT NULL,
    autovacuum_count BIGINT DEFAULT 0 NOT NULL,
    analyze_count BIGINT DEFAULT 0 NOT NULL,
    autoanalyze_count BIGINT DEFAULT 0 NOT NULL,
    heap_blks_read BIGINT DEFAULT 0 NOT NULL,
    heap_blks_hit BIGINT DEFAULT 0 NOT NULL,
    idx_blks_read BIGINT DEFAULT 0 NOT NULL,
    idx_blks_hit BIGINT DEFAULT 0 NOT NULL,
    reloptions TEXT[],
    xid_age BIGINT,
    total_bytes BIGINT,
    CONSTRAINT pk_table_stats PRIMARY KEY (snapshot_id, relid),
    CONSTRAINT fk_table_stats_snapshot_id FOREIGN KEY(snapshot_id) REFERENCES perf_monitoring.snapshots (id) ON DELETE CASCADE
)""",
    "COMMENT ON TABLE perf_monitoring.table_stats IS 'pg_stat_user_tables + pg_statio_user_tables + reloptions, per snapshot.'",
    """CREATE FUNCTION perf_monitoring.purge_older_than(days integer) RETURNS bigint
LANGUAGE sql AS $$
    WITH s AS (
        DELETE FROM perf_monitoring.snapshots
        WHERE taken_at < now() - make_interval(days => days) RETURNING 1
    ), r AS (
        DELETE FROM perf_monitoring.request_metrics
        WHERE bucket_start < now() - make_interval(days => days) RETURNING 1
    ), a AS (
        DELETE FROM perf_monitoring.app_metrics
        WHERE recorded_at < now() - make_interval(days => days) RETURNING 1
    )
    SELECT (SELECT count(*) FROM s) + (SELECT count(*) FROM r) + (SELECT count(*) FROM a)
$$""",
    "COMMENT ON FUNCTION perf_monitoring.purge_older_than(integer) IS 'Retention: delete snapshots and metrics older than N days; returns rows deleted.'",
)

# Reverse order of creation; the indexes go with their tables.
DOWNGRADE: tuple[str, ...] = (
    "DROP FUNCTION perf_monitoring.purge_older_than(integer)",
    "DROP TABLE perf_monitoring.table_stats",
    "DROP TABLE perf_monitoring.statement_stats",
    "DROP TABLE perf_monitoring.index_stats",
    "DROP TABLE perf_monitoring.database_stats",
    "DROP TABLE perf_monitoring.snapshots",
    "DROP TABLE perf_monitoring.setting_changes",
    "DROP TABLE perf_monitoring.request_metrics",
    "DROP TABLE perf_monitoring.app_metrics",
    "DROP SCHEMA perf_monitoring",
)

# What this revision creates (tests/test_manifests.py compares it with the catalog).
MANIFEST = Manifest(
    schemas=("perf_monitoring",),
    tables=(
        "perf_monitoring.app_metrics",
        "perf_monitoring.request_metrics",
        "perf_monitoring.setting_changes",
        "perf_monitoring.snapshots",
        "perf_monitoring.database_stats",
        "perf_monitoring.index_stats",
        "perf_monitoring.statement_stats",
        "perf_monitoring.table_stats",
    ),
    indexes=tuple(
        IndexDefinition(definition)
        for definition in (
            "CREATE UNIQUE INDEX pk_app_metrics ON perf_monitoring.app_metrics USING btree (id)",
            "CREATE INDEX ix_app_metrics_name_time ON perf_monitoring.app_metrics "
            "USING btree (name, recorded_at)",
            "CREATE UNIQUE INDEX pk_request_metrics ON perf_monitoring.request_metrics "
            "USING btree (id)",
            "CREATE INDEX ix_request_metrics_bucket ON perf_monitoring.request_metrics "
            "USING btree (bucket_start, operation)",
            "CREATE UNIQUE INDEX pk_setting_changes ON perf_monitoring.setting_changes "
            "USING btree (id)",
            "CREATE INDEX ix_setting_changes_revision ON perf_monitoring.setting_changes "
            "USING btree (revision)",
            "CREATE UNIQUE INDEX pk_snapshots ON perf_monitoring.snapshots USING btree (id)",
            "CREATE UNIQUE INDEX uq_snapshots_label ON perf_monitoring.snapshots "
            "USING btree (label)",
            "CREATE INDEX ix_snapshots_taken_at ON perf_monitoring.snapshots "
            "USING btree (taken_at)",
            "CREATE UNIQUE INDEX pk_database_stats ON perf_monitoring.database_stats "
            "USING btree (snapshot_id)",
            "CREATE UNIQUE INDEX pk_index_stats ON perf_monitoring.index_stats "
            "USING btree (snapshot_id, indexrelid)",
            "CREATE UNIQUE INDEX pk_statement_stats ON perf_monitoring.statement_stats "
            "USING btree (snapshot_id, dbid, userid, queryid, toplevel)",
            "CREATE UNIQUE INDEX pk_table_stats ON perf_monitoring.table_stats "
            "USING btree (snapshot_id, relid)",
        )
    ),
    functions=("perf_monitoring.purge_older_than(integer)",),
)


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    # dbtools-lint: ignore ban-drop-function,ban-drop-table,ban-drop-schema in downgrade because the downgrade drops exactly the monitoring objects this revision created, which only dbtools reads; `dbtools downgrade-plan` exports their rows first
    for statement in DOWNGRADE:
        op.execute(statement)
