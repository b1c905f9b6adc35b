"""The objects the migrations create, declared once.

The migrations build exactly these (batch indexes, per-table autovacuum settings, the monitoring
schema) and ``dbtools verify`` checks exactly these; nothing is listed twice. Changing a definition
here changes what the migrations build, so it needs a new revision (the tests compare the
migrated schema with these declarations).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, OID

APP_SCHEMA = "public"
MONITORING_SCHEMA = "perf_monitoring"


def quote_ident(name: str) -> str:
    """Quote *name* as a PostgreSQL identifier (only when needed, as ``quote_ident`` does)."""
    if name.isidentifier() and name == name.lower() and name.isascii():
        return name
    return '"' + name.replace('"', '""') + '"'


def qualified(schema: str, name: str) -> str:
    return f"{quote_ident(schema)}.{quote_ident(name)}"


# -- batch indexes ----------------------------------------------------------------------------


@dataclass(frozen=True)
class IndexSpec:
    """An index the batched flight-search queries need, built with CREATE INDEX CONCURRENTLY."""

    name: str
    table: str
    columns: tuple[str, ...]
    include: tuple[str, ...] = ()
    where: str | None = None
    purpose: str = ""
    schema: str = APP_SCHEMA

    @property
    def qualified_name(self) -> str:
        return qualified(self.schema, self.name)

    @property
    def qualified_table(self) -> str:
        return qualified(self.schema, self.table)

    def create_sql(self, *, concurrently: bool = True, if_not_exists: bool = False) -> str:
        parts = ["CREATE INDEX"]
        if concurrently:
            parts.append("CONCURRENTLY")
        if if_not_exists:
            parts.append("IF NOT EXISTS")
        parts.append(
            f"{quote_ident(self.name)} ON {self.qualified_table} ({', '.join(self.columns)})"
        )
        if self.include:
            parts.append(f"INCLUDE ({', '.join(self.include)})")
        if self.where:
            parts.append(f"WHERE {self.where}")
        return " ".join(parts)

    def drop_sql(self, *, concurrently: bool = True) -> str:
        how = "DROP INDEX CONCURRENTLY" if concurrently else "DROP INDEX"
        return f"{how} IF EXISTS {self.qualified_name}"


BATCH_INDEXES: tuple[IndexSpec, ...] = (
    IndexSpec(
        name="ix_trip_requests_active_batch",
        table="trip_requests",
        columns=("id",),
        include=("search_key", "traveler_id", "max_price"),
        where="status = 'active'",
        purpose="batched load of active trip requests (id = ANY($1)) as an index-only scan",
    ),
    IndexSpec(
        name="ix_flight_offers_trip_expiry",
        table="flight_offers",
        columns=("trip_request_id", "expires_at"),
        include=("price_total",),
        purpose="existing, unexpired offers by trip request (trip_request_id = ANY($1))",
    ),
    IndexSpec(
        name="ix_flight_search_cache_key_expiry",
        table="flight_search_cache",
        columns=("search_key", "expires_at DESC"),
        purpose="search-cache lookups by normalised key and expiry (search_key = ANY($1))",
    ),
)


# -- per-table autovacuum settings -------------------------------------------------------------


@dataclass(frozen=True)
class AutovacuumSpec:
    """Autovacuum/autoanalyze storage parameters for one high-churn table."""

    table: str
    settings: Mapping[str, str] = field(default_factory=dict)
    reason: str = ""
    schema: str = APP_SCHEMA

    @property
    def qualified_table(self) -> str:
        return qualified(self.schema, self.table)


AUTOVACUUM_SETTINGS: tuple[AutovacuumSpec, ...] = (
    AutovacuumSpec(
        table="flight_offers",
        settings={
            "autovacuum_vacuum_scale_factor": "0.05",
            "autovacuum_analyze_scale_factor": "0.02",
            "autovacuum_vacuum_cost_limit": "1000",
        },
        reason="every search upserts offers: dead tuples pile up 10x faster than the default expects",
    ),
    AutovacuumSpec(
        table="flight_search_cache",
        settings={
            "autovacuum_vacuum_scale_factor": "0.02",
            "autovacuum_analyze_scale_factor": "0.01",
            "autovacuum_vacuum_insert_scale_factor": "0.05",
        },
        reason="insert-mostly with expiry purges; stale statistics mislead the key lookups",
    ),
    AutovacuumSpec(
        table="trip_requests",
        settings={
            "autovacuum_vacuum_scale_factor": "0.05",
            "autovacuum_analyze_scale_factor": "0.02",
        },
        reason="status updates move rows in and out of the partial batch index",
    ),
)


# -- the monitoring schema ---------------------------------------------------------------------

MONITORING = MetaData(
    schema=MONITORING_SCHEMA,
    naming_convention={
        "pk": "pk_%(table_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s",
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    },
)


def _ts(name: str, **kwargs: object) -> Column[object]:
    return Column(name, DateTime(timezone=True), **kwargs)  # type: ignore[arg-type]


def _count(name: str) -> Column[int]:
    return Column(name, BigInteger, nullable=False, server_default=text("0"))


def _snapshot_fk() -> Column[int]:
    return Column(
        "snapshot_id",
        BigInteger,
        ForeignKey(f"{MONITORING_SCHEMA}.snapshots.id", ondelete="CASCADE"),
        nullable=False,
    )


snapshots = Table(
    "snapshots",
    MONITORING,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("label", Text, nullable=False, unique=True),
    _ts("taken_at", nullable=False, server_default=text("now()")),
    Column("database_name", Text, nullable=False),
    Column("database_oid", OID, nullable=False),
    Column("server_version_num", BigInteger, nullable=False),
    _ts("server_started_at", nullable=False),
    Column("role_name", Text, nullable=False),
    Column("pgss_version", Text),
    _ts("pgss_stats_reset", comment="pg_stat_statements_info.stats_reset (extension 1.9+)"),
    Column("pgss_dealloc", BigInteger, comment="pg_stat_statements_info.dealloc (1.9+)"),
    Column("alembic_revision", Text),
    Column("requests", BigInteger, comment="requests reported by a load tool (--requests)"),
    Column("hidden_statements", BigInteger, nullable=False, server_default=text("0")),
    Column("hidden_calls", BigInteger, nullable=False, server_default=text("0")),
    comment="One consistent copy of PostgreSQL's statistics, labelled; never a reset.",
)

statement_stats = Table(
    "statement_stats",
    MONITORING,
    _snapshot_fk(),
    Column("userid", OID, nullable=False),
    Column("rolname", Text),
    Column("dbid", OID, nullable=False),
    Column("queryid", BigInteger, nullable=False),
    Column("toplevel", Boolean, nullable=False),
    Column("query", Text, nullable=False),
    _count("calls"),
    _count("rows"),
    _count("plans"),
    Column("total_exec_time", Float, nullable=False, server_default=text("0")),
    Column("total_plan_time", Float, nullable=False, server_default=text("0")),
    _count("shared_blks_hit"),
    _count("shared_blks_read"),
    _count("shared_blks_dirtied"),
    _count("shared_blks_written"),
    _count("local_blks_hit"),
    _count("local_blks_read"),
    _count("temp_blks_read"),
    _count("temp_blks_written"),
    Column("shared_blk_read_time", Float, nullable=False, server_default=text("0")),
    Column("shared_blk_write_time", Float, nullable=False, server_default=text("0")),
    _count("wal_records"),
    _count("wal_bytes"),
    _ts("stats_since", comment="when this entry started counting (extension 1.11+)"),
    PrimaryKeyConstraint("snapshot_id", "dbid", "userid", "queryid", "toplevel"),
    comment="pg_stat_statements rows visible to the snapshotting role, per snapshot.",
)

table_stats = Table(
    "table_stats",
    MONITORING,
    _snapshot_fk(),
    Column("relid", OID, nullable=False),
    Column("schemaname", Text, nullable=False),
    Column("relname", Text, nullable=False),
    _count("seq_scan"),
    _count("seq_tup_read"),
    _count("idx_scan"),
    _count("idx_tup_fetch"),
    _count("n_tup_ins"),
    _count("n_tup_upd"),
    _count("n_tup_del"),
    _count("n_tup_hot_upd"),
    _count("n_live_tup"),
    _count("n_dead_tup"),
    _count("n_mod_since_analyze"),
    _ts("last_vacuum"),
    _ts("last_autovacuum"),
    _ts("last_analyze"),
    _ts("last_autoanalyze"),
    _count("vacuum_count"),
    _count("autovacuum_count"),
    _count("analyze_count"),
    _count("autoanalyze_count"),
    _count("heap_blks_read"),
    _count("heap_blks_hit"),
    _count("idx_blks_read"),
    _count("idx_blks_hit"),
    Column("reloptions", ARRAY(Text)),
    Column("xid_age", BigInteger),
    Column("total_bytes", BigInteger),
    PrimaryKeyConstraint("snapshot_id", "relid"),
    comment="pg_stat_user_tables + pg_statio_user_tables + reloptions, per snapshot.",
)

index_stats = Table(
    "index_stats",
    MONITORING,
    _snapshot_fk(),
    Column("indexrelid", OID, nullable=False),
    Column("relid", OID, nullable=False),
    Column("schemaname", Text, nullable=False),
    Column("relname", Text, nullable=False),
    Column("indexrelname", Text, nullable=False),
    _count("idx_scan"),
    _count("idx_tup_read"),
    _count("idx_tup_fetch"),
    _count("idx_blks_read"),
    _count("idx_blks_hit"),
    Column("is_valid", Boolean, nullable=False),
    Column("is_ready", Boolean, nullable=False),
    Column("is_unique", Boolean, nullable=False),
    Column("is_primary", Boolean, nullable=False),
    Column("backs_constraint", Boolean, nullable=False),
    Column("key_columns", ARRAY(Text), nullable=False),
    Column("include_columns", ARRAY(Text), nullable=False),
    Column("predicate", Text),
    Column("access_method", Text, nullable=False),
    Column("definition", Text, nullable=False),
    Column("index_bytes", BigInteger),
    PrimaryKeyConstraint("snapshot_id", "indexrelid"),
    comment="pg_stat_user_indexes + pg_statio_user_indexes + pg_index, per snapshot.",
)

database_stats = Table(
    "database_stats",
    MONITORING,
    _snapshot_fk(),
    Column("datid", OID, nullable=False),
    Column("datname", Text, nullable=False),
    _count("numbackends"),
    _count("xact_commit"),
    _count("xact_rollback"),
    _count("blks_read"),
    _count("blks_hit"),
    _count("tup_returned"),
    _count("tup_fetched"),
    _count("tup_inserted"),
    _count("tup_updated"),
    _count("tup_deleted"),
    _count("conflicts"),
    _count("temp_files"),
    _count("temp_bytes"),
    _count("deadlocks"),
    Column("blk_read_time", Float, nullable=False, server_default=text("0")),
    Column("blk_write_time", Float, nullable=False, server_default=text("0")),
    _ts("stats_reset"),
    Column("xid_age", BigInteger),
    Column("database_bytes", BigInteger),
    PrimaryKeyConstraint("snapshot_id"),
    comment="pg_stat_database for the snapshotted database, per snapshot.",
)

request_metrics = Table(
    "request_metrics",
    MONITORING,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    _ts("bucket_start", nullable=False),
    Column("bucket_seconds", BigInteger, nullable=False),
    Column("operation", Text, nullable=False),
    _count("requests"),
    _count("errors"),
    Column("latency_p50_ms", Float),
    Column("latency_p95_ms", Float),
    Column("latency_p99_ms", Float),
    _count("cache_hits"),
    _count("cache_misses"),
    _count("batches"),
    Column("batch_size_max", BigInteger),
    _ts("recorded_at", nullable=False, server_default=text("now()")),
    Index("ix_request_metrics_bucket", "bucket_start", "operation"),
    comment="Application request metrics per time bucket and operation, written by the app.",
)

app_metrics = Table(
    "app_metrics",
    MONITORING,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    _ts("recorded_at", nullable=False, server_default=text("now()")),
    Column("name", Text, nullable=False),
    Column("value", Float, nullable=False),
    Column("labels", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Index("ix_app_metrics_name_time", "name", "recorded_at"),
    comment="Application metrics as name/value (e.g. kms_connection_reuse_ratio).",
)

setting_changes = Table(
    "setting_changes",
    MONITORING,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("revision", Text, nullable=False),
    Column("relation", Text, nullable=False),
    Column("option_name", Text, nullable=False),
    Column("old_value", Text, comment="NULL: the option had no value before (RESET on downgrade)"),
    Column("new_value", Text),
    _ts("changed_at", nullable=False, server_default=text("now()")),
    Index("ix_setting_changes_revision", "revision"),
    comment="Storage parameters changed by migrations, with the value they replaced.",
)

Index("ix_snapshots_taken_at", snapshots.c.taken_at)

MONITORING_TABLES: tuple[str, ...] = tuple(t.name for t in MONITORING.sorted_tables)

# Retention: DELETE what is older than N days (snapshot rows go with their header).
PURGE_FUNCTION = "purge_older_than"
PURGE_FUNCTION_SQL = f"""
CREATE FUNCTION {MONITORING_SCHEMA}.{PURGE_FUNCTION}(days integer) RETURNS bigint
LANGUAGE sql AS $$
    WITH s AS (
        DELETE FROM {MONITORING_SCHEMA}.snapshots
        WHERE taken_at < now() - make_interval(days => days) RETURNING 1
    ), r AS (
        DELETE FROM {MONITORING_SCHEMA}.request_metrics
        WHERE bucket_start < now() - make_interval(days => days) RETURNING 1
    ), a AS (
        DELETE FROM {MONITORING_SCHEMA}.app_metrics
        WHERE recorded_at < now() - make_interval(days => days) RETURNING 1
    )
    SELECT (SELECT count(*) FROM s) + (SELECT count(*) FROM r) + (SELECT count(*) FROM a)
$$
"""
PURGE_FUNCTION_COMMENT = (
    "Retention: delete snapshots and metrics older than N days; returns rows deleted."
)
