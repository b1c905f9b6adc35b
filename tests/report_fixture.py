"""A fixed report input built from constructed rows: the same on every server and every day.

Two windows of a flight-search database, before and after batching (100 requests each):

* baseline: per-request point lookups (``id = $1``), an upsert, two IN-list entries of one family
  (PostgreSQL 15 keeps ``IN ($1,$2)`` and ``IN ($1,$2,$3)`` apart), an ``ALTER ROLE … PASSWORD``
  with its literal (as PostgreSQL 15 stores it), BEGIN, a VACUUM;
* candidate: the batched ``= ANY($1)`` forms, the upsert and the IN list, fewer calls.

The latest snapshot carries every index and autovacuum case: an invalid index, a duplicate, an
overlapping index, an unused one, an unused FK-backing one (left out), a foreign key without an
index, dead tuples past the trigger, stale statistics, settings that differ from the declared
ones, a transaction-ID age past ``autovacuum_freeze_max_age``.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from typing import Any

from dbtools.figures.requests import RequestTotals
from dbtools.figures.windows import Window, WindowRef
from dbtools.reading.rows import (
    DatabaseRow,
    IndexRow,
    Snapshot,
    SnapshotHeader,
    StatementRow,
    TableRow,
)
from dbtools.report import ReportInput, build_report
from dbtools.report.health import AutovacuumDefaults, Catalog, ForeignKey
from dbtools.report.model import Report, period_from_window
from dbtools.schema.latency import Percentile
from dbtools.schema.manifest import manifest_at
from dbtools.verify import evaluate
from dbtools.verify.live import IndexState, LiveState
from tests.factories import COUNTING_SETTINGS, healthy_live_state, measured

SECRET = "S3cretLiteral"
T0 = datetime(2026, 1, 2, 10, 0, 0, tzinfo=timezone.utc)
GENERATED_AT = datetime(2026, 1, 2, 12, 0, 0, tzinfo=timezone.utc)
STARTED = datetime(2026, 1, 1, 0, 0, 0, tzinfo=timezone.utc)
DBID, USERID = 16384, 10
TARGET = "host db.example port 5432 database flights user monitor"

LOAD_TRIP = (
    "SELECT /* flight_search:load_trip */ id, traveler_id, search_key, max_price\n"
    "FROM public.trip_requests\nWHERE id = $1 AND status = $2"
)
LOAD_TRIPS = (
    "SELECT /* flight_search:load_trips_batch */ id, traveler_id, search_key, max_price\n"
    "FROM public.trip_requests\nWHERE id = ANY($1::bigint[]) AND status = $2"
)
OFFERS = (
    "SELECT trip_request_id, price_total FROM public.flight_offers AS o\n"
    "WHERE o.trip_request_id = $1 AND o.expires_at > now()"
)
OFFERS_BATCH = (
    "SELECT trip_request_id, price_total FROM public.flight_offers AS o\n"
    "WHERE o.trip_request_id = ANY($1::bigint[]) AND o.expires_at > now()"
)
UPSERT = (
    "INSERT INTO public.flight_offers AS o (trip_request_id, offer_key, price_total, expires_at)\n"
    "VALUES ($1, $2, $3, now() + $4::interval), ($5, $6, $7, now() + $8::interval)\n"
    "ON CONFLICT (trip_request_id, offer_key) DO UPDATE SET price_total = EXCLUDED.price_total"
)
TRAVELERS_2 = "SELECT id, email FROM public.travelers WHERE id IN ($1,$2)"
TRAVELERS_3 = "SELECT id, email FROM public.travelers WHERE id IN ($1,$2,$3)"
ALTER_ROLE = f"ALTER ROLE app PASSWORD '{SECRET}'"
BEGIN = "BEGIN"
VACUUM = "VACUUM (ANALYZE) public.flight_search_cache"


def statement(queryid: int, query: str, calls: int, time_ms: float, rows: int,
              hit: int, read: int) -> StatementRow:  # fmt: skip
    return StatementRow(
        userid=USERID, rolname="app", dbid=DBID, queryid=queryid, toplevel=True, query=query,
        calls=calls, rows=rows, plans=0, total_exec_time=time_ms, total_plan_time=0.0,
        shared_blks_hit=hit, shared_blks_read=read, shared_blks_dirtied=0,
        shared_blks_written=0, local_blks_hit=0, local_blks_read=0, temp_blks_read=0,
        temp_blks_written=0, shared_blk_read_time=0.0, shared_blk_write_time=0.0,
        wal_records=0, wal_bytes=0, stats_since=None, min_exec_time=None, max_exec_time=None,
    )  # fmt: skip


def grown(row: Any, **delta: float) -> Any:
    """*row* with *delta* added to its counters."""
    return dataclasses.replace(row, **{k: getattr(row, k) + v for k, v in delta.items()})


def table(relid: int, name: str, **values: Any) -> TableRow:
    fields: dict[str, Any] = {
        f.name: 0 for f in dataclasses.fields(TableRow) if f.type in ("int", int)
    }
    fields.update(
        relid=relid, schemaname="public", relname=name, last_vacuum=None, last_autovacuum=None,
        last_analyze=None, last_autoanalyze=None, reloptions=None, xid_age=1_000,
        total_bytes=8192 * 100,
    )  # fmt: skip
    fields.update(values)
    return TableRow(**fields)


def index(indexrelid: int, relid: int, table_name: str, name: str, columns: list[str],
          **values: Any) -> IndexRow:  # fmt: skip
    keys = ", ".join(columns)
    fields: dict[str, Any] = dict(
        indexrelid=indexrelid, relid=relid, schemaname="public", relname=table_name,
        indexrelname=name, idx_scan=0, idx_tup_read=0, idx_tup_fetch=0, idx_blks_read=0,
        idx_blks_hit=0, is_valid=True, is_ready=True, is_unique=False, is_primary=False,
        backs_constraint=False, key_columns=columns, include_columns=[], predicate=None,
        access_method="btree",
        definition=f"CREATE INDEX {name} ON public.{table_name} USING btree ({keys})",
        index_bytes=16384,
    )  # fmt: skip
    fields.update(values)
    return IndexRow(**fields)


def primary_key(indexrelid: int, relid: int, table_name: str, **values: Any) -> IndexRow:
    return index(
        indexrelid, relid, table_name, f"{table_name}_pkey", ["id"], is_unique=True,
        is_primary=True, backs_constraint=True,
        definition=f"CREATE UNIQUE INDEX {table_name}_pkey ON public.{table_name} "
        "USING btree (id)", **values,
    )  # fmt: skip


def database(**values: Any) -> DatabaseRow:
    fields: dict[str, Any] = {
        f.name: 0 for f in dataclasses.fields(DatabaseRow) if f.type in ("int", int)
    }
    fields.update(datid=DBID, datname="flights", blk_read_time=0.0, blk_write_time=0.0,
                  stats_reset=None, xid_age=250_000_000, database_bytes=50 * 2**20)  # fmt: skip
    fields.update(values)
    return DatabaseRow(**fields)


def header(label: str, taken_at: datetime, snapshot_id: int) -> SnapshotHeader:
    return SnapshotHeader(
        id=snapshot_id, label=label, taken_at=taken_at, database_name="flights",
        database_oid=DBID, server_version_num=150014, server_started_at=STARTED,
        role_name="monitor", pgss_version="1.10", pgss_stats_reset=STARTED, pgss_dealloc=0,
        alembic_revision="0003", requests=None, hidden_statements=0, hidden_calls=0,
        counting_settings=COUNTING_SETTINGS, counting_overrides=[],
    )  # fmt: skip


# -- the statements -----------------------------------------------------------------------------

S_LOAD = statement(101, LOAD_TRIP, 5_000, 400.0, 5_000, 15_000, 10)
S_OFFERS = statement(102, OFFERS, 5_000, 900.0, 60_000, 20_000, 500)
S_UPSERT = statement(103, UPSERT, 5_000, 1_500.0, 10_000, 30_000, 1_000)
S_IN2 = statement(104, TRAVELERS_2, 100, 10.0, 200, 300, 0)
S_IN3 = statement(105, TRAVELERS_3, 50, 6.0, 150, 150, 0)
S_ALTER = statement(106, ALTER_ROLE, 1, 2.0, 0, 0, 0)
S_BEGIN = statement(107, BEGIN, 500, 0.5, 0, 0, 0)
S_VACUUM = statement(108, VACUUM, 1, 300.0, 0, 800, 200)
S_LOAD_BATCH = statement(201, LOAD_TRIPS, 0, 0.0, 0, 0, 0)
S_OFFERS_BATCH = statement(202, OFFERS_BATCH, 0, 0.0, 0, 0, 0)

BASELINE_START = (S_LOAD, S_OFFERS, S_UPSERT, S_IN2, S_IN3, S_BEGIN)
BASELINE_END = (
    grown(S_LOAD, calls=100, total_exec_time=8.0, rows=100, shared_blks_hit=300, shared_blks_read=2),
    grown(S_OFFERS, calls=100, total_exec_time=18.0, rows=1_200, shared_blks_hit=390,
          shared_blks_read=10),
    grown(S_UPSERT, calls=100, total_exec_time=30.0, rows=200, shared_blks_hit=580,
          shared_blks_read=20),
    grown(S_IN2, calls=4, total_exec_time=0.4, rows=8, shared_blks_hit=12),
    grown(S_IN3, calls=2, total_exec_time=0.3, rows=6, shared_blks_hit=6),
    S_ALTER,
    grown(S_BEGIN, calls=10, total_exec_time=0.01),
    S_VACUUM,
)  # fmt: skip
CANDIDATE_START = BASELINE_END
CANDIDATE_END = (
    BASELINE_END[0],
    BASELINE_END[1],
    grown(BASELINE_END[2], calls=10, total_exec_time=12.0, rows=200, shared_blks_hit=560,
          shared_blks_read=10),
    grown(BASELINE_END[3], calls=1, total_exec_time=0.1, rows=2, shared_blks_hit=3),
    BASELINE_END[4],
    S_ALTER,
    BASELINE_END[6],
    S_VACUUM,
    grown(S_LOAD_BATCH, calls=10, total_exec_time=3.0, rows=100, shared_blks_hit=60,
          shared_blks_read=1),
    grown(S_OFFERS_BATCH, calls=10, total_exec_time=6.0, rows=1_200, shared_blks_hit=150,
          shared_blks_read=5),
)  # fmt: skip


# -- tables, indexes, database ------------------------------------------------------------------

TRAVELERS, TRIPS, OFFERS_T, CACHE, BOOKINGS = 1001, 1002, 1003, 1004, 1005
DAY = timedelta(days=1)


def tables(step: int) -> tuple[TableRow, ...]:
    """The tables after *step* windows (0: the baseline's start)."""
    return (
        table(TRAVELERS, "travelers", n_live_tup=2_000, idx_scan=10_000 + 6 * step,
              heap_blks_hit=5_000 + 20 * step, heap_blks_read=50, idx_blks_hit=4_000 + 10 * step,
              idx_blks_read=10, last_autovacuum=T0 - 3 * DAY, last_autoanalyze=T0 - 3 * DAY),
        table(TRIPS, "trip_requests", n_live_tup=50_000, n_dead_tup=100, idx_scan=40_000 + 100 * step,
              seq_scan=3, seq_tup_read=150_000, heap_blks_hit=90_000 + 400 * step,
              heap_blks_read=900 + 2 * step, idx_blks_hit=70_000 + 300 * step,
              idx_blks_read=300 + step, last_autovacuum=T0 - DAY, last_autoanalyze=T0 - DAY,
              reloptions=["autovacuum_vacuum_scale_factor=0.2",
                          "autovacuum_analyze_scale_factor=0.02"]),
        table(OFFERS_T, "flight_offers", n_live_tup=400_000, n_dead_tup=45_000,
              n_mod_since_analyze=9_000, idx_scan=90_000 + 200 * step, seq_scan=2,
              seq_tup_read=800_000, heap_blks_hit=400_000 + 1_500 * step,
              heap_blks_read=30_000 + 200 * step, idx_blks_hit=300_000 + 900 * step,
              idx_blks_read=4_000 + 30 * step, last_vacuum=T0 - 10 * DAY,
              last_autovacuum=T0 - 2 * DAY, last_analyze=T0 - 10 * DAY,
              last_autoanalyze=T0 - 2 * DAY, xid_age=210_000_000,
              reloptions=["autovacuum_vacuum_scale_factor=0.05",
                          "autovacuum_analyze_scale_factor=0.02",
                          "autovacuum_vacuum_cost_limit=1000"]),
        table(CACHE, "flight_search_cache", n_live_tup=30_000, n_mod_since_analyze=25_000,
              seq_scan=900 + 20 * step, seq_tup_read=27_000_000, idx_scan=100,
              heap_blks_hit=200_000 + 800 * step, heap_blks_read=60_000 + 300 * step),
        table(BOOKINGS, "bookings", n_live_tup=1_500, heap_blks_hit=1_000, heap_blks_read=20),
    )  # fmt: skip


def indexes(step: int) -> tuple[IndexRow, ...]:
    return (
        primary_key(2001, TRAVELERS, "travelers", idx_scan=10_000 + 6 * step,
                    idx_blks_hit=4_000 + 10 * step, idx_blks_read=10),
        primary_key(2002, TRIPS, "trip_requests", idx_scan=40_000 + 100 * step,
                    idx_blks_hit=60_000 + 200 * step, idx_blks_read=250),
        index(2003, TRIPS, "trip_requests", "ix_trip_requests_traveler_id", ["traveler_id"]),
        index(2004, TRIPS, "trip_requests", "ix_trip_requests_active_batch", ["id"],
              include_columns=["search_key", "traveler_id", "max_price"],
              predicate="(status = 'active'::text)", idx_scan=step * 10,
              idx_blks_hit=10_000 + 100 * step, idx_blks_read=50 + step,
              definition="CREATE INDEX ix_trip_requests_active_batch ON public.trip_requests "
              "USING btree (id) INCLUDE (search_key, traveler_id, max_price) "
              "WHERE (status = 'active'::text)"),
        primary_key(2005, OFFERS_T, "flight_offers", idx_scan=1_000),
        index(2006, OFFERS_T, "flight_offers", "ix_flight_offers_trip_expiry",
              ["trip_request_id", "expires_at"], idx_scan=89_000 + 200 * step,
              idx_blks_hit=290_000 + 900 * step, idx_blks_read=3_900 + 30 * step),
        index(2007, OFFERS_T, "flight_offers", "ix_flight_offers_trip_expiry_copy",
              ["trip_request_id", "expires_at"], idx_scan=5),
        index(2008, OFFERS_T, "flight_offers", "ix_flight_offers_trip", ["trip_request_id"],
              idx_scan=7),
        index(2009, CACHE, "flight_search_cache", "ix_flight_search_cache_key_expiry",
              ["search_key", "expires_at"], is_valid=False, is_ready=True,
              definition="CREATE INDEX ix_flight_search_cache_key_expiry ON "
              "public.flight_search_cache USING btree (search_key, expires_at DESC)"),
        primary_key(2010, BOOKINGS, "bookings"),
        index(2011, BOOKINGS, "bookings", "ix_bookings_created_at", ["created_at"]),
    )  # fmt: skip


FOREIGN_KEYS = (
    ForeignKey(TRIPS, "public", "trip_requests", "trip_requests_traveler_id_fkey",
               ["traveler_id"], "travelers"),
    ForeignKey(OFFERS_T, "public", "flight_offers", "flight_offers_trip_request_id_fkey",
               ["trip_request_id"], "trip_requests"),
    ForeignKey(BOOKINGS, "public", "bookings", "bookings_trip_request_id_fkey",
               ["trip_request_id"], "trip_requests"),
)  # fmt: skip


def snapshot(step: int, label: str, statements: tuple[StatementRow, ...]) -> Snapshot:
    db = database(
        xact_commit=100_000 + 300 * step, blks_hit=2_000_000 + 5_000 * step,
        blks_read=100_000 + 400 * step, tup_returned=9_000_000, tup_fetched=800_000,
    )  # fmt: skip
    return Snapshot(
        header=header(label, T0 + timedelta(minutes=30 * step), step + 1),
        statements=statements, tables=tables(step), indexes=indexes(step), database=db,
    )  # fmt: skip


def windows() -> tuple[Window, Window]:
    baseline = Window.between(
        snapshot(0, "baseline:start", BASELINE_START),
        snapshot(1, "baseline:end", BASELINE_END),
        WindowRef("baseline", "baseline:start", "baseline:end"),
        RequestTotals(buckets=6, requests=100, errors=1, cache_hits=30, cache_misses=70,
                      p95_ms_max=900.0, p95=Percentile(900.0)),
    )  # fmt: skip
    candidate = Window.between(
        snapshot(1, "candidate:start", CANDIDATE_START),
        snapshot(2, "candidate:end", CANDIDATE_END),
        WindowRef("candidate", "candidate:start", "candidate:end"),
        RequestTotals(buckets=6, requests=100, errors=0, cache_hits=55, cache_misses=45,
                      p95_ms_max=240.0, p95=Percentile(240.0)),
    )  # fmt: skip
    return baseline, candidate


def live_state() -> LiveState:
    """The catalog when the report is made, as the latest snapshot has it: the cache's batch
    index invalid, the tables' autovacuum settings."""
    state = healthy_live_state()
    invalid = "public.ix_flight_search_cache_key_expiry"
    return dataclasses.replace(
        state,
        indexes={**state.indexes, invalid: IndexState(is_valid=False, is_ready=True)},
        table_options={f"public.{row.relname}": row.options for row in tables(2)},
    )


def report_input() -> ReportInput:
    baseline, candidate = windows()
    before, after = measured(baseline), measured(candidate)
    return ReportInput(
        source="comparison",
        periods=(period_from_window(baseline, before, "baseline"),
                 period_from_window(candidate, after, "candidate")),
        state=candidate.end_state,
        catalog=Catalog(FOREIGN_KEYS, AutovacuumDefaults()),
        target=TARGET,
        manifest=manifest_at(candidate.end.alembic_revision),
        verification=evaluate(before, after, live_state()),
    )  # fmt: skip


def fixed_report() -> Report:
    return build_report(report_input(), generated_at=GENERATED_AT)
