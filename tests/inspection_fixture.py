"""A fixed inspection (what ``report.inspection.inspect`` reads) for the fixture's report: one case
of each thing the sections show, the same on every server and every day.

A lock chain (pid 301 idle in a transaction holding row locks; 302 waits on it; 303 waits on
302), a long-running statement with a literal, a bloated table measured by pgstattuple_approx
and one estimated, a smallint identity sequence at 95%, settings with notes, three plans (a
generic plan with a sequential scan over a large table, one using an index, one that failed),
an index hypopg confirmed, and one finding per schema check.
"""

from __future__ import annotations

from dbtools.report.activity import ActivityFacts, Backend, WaitingLock
from dbtools.report.advice import AdviceFacts, Candidate, Trial
from dbtools.report.inspection import Inspection
from dbtools.report.model import Report, build_report
from dbtools.report.plans import Explained, PlanNode
from dbtools.report.schema_health import (
    ForeignKeyType,
    IndexKey,
    NotValidConstraint,
    SchemaFacts,
    TableWithoutKey,
)
from dbtools.report.settings import ServerSetting
from dbtools.report.space import ApproxTuples, IndexSpace, SequenceState, SpaceFacts, TableSpace
from tests.report_fixture import DBID, GENERATED_AT, OFFERS, T0, USERID, report_input


def backend(pid: int, state: str, seconds: float, query: str, *, blocked_by: tuple[int, ...] = (),
            application: str = "flights", wait: tuple[str, str] | None = None) -> Backend:  # fmt: skip
    return Backend(
        pid=pid, database="flights", role="app", application_name=application,
        backend_type="client backend", state=state,
        wait_event_type=wait[0] if wait else None, wait_event=wait[1] if wait else None,
        xact_start=T0, query_start=T0, query_seconds=seconds, transaction_seconds=seconds + 1,
        state_seconds=seconds, blocked_by=list(blocked_by), query=query,
    )  # fmt: skip


ACTIVITY = ActivityFacts(
    max_connections=100,
    reserved_connections=3,
    backends=(
        backend(301, "idle in transaction", 42.0, "UPDATE public.bookings SET note = $1 WHERE id = $2"),
        backend(302, "active", 40.0, "UPDATE public.bookings SET status = $1 WHERE id = $2",
                blocked_by=(301,), wait=("Lock", "transactionid")),
        backend(303, "active", 12.0, "DELETE FROM public.bookings WHERE id = $1",
                blocked_by=(302,), wait=("Lock", "tuple")),
        backend(304, "active", 9.5, "SELECT pg_sleep($1)", application="report-job"),
        backend(305, "idle", 0.1, "SELECT 1"),
    ),
    waiting=(
        WaitingLock(302, "transactionid", "ShareLock", None, "7001", None, None, None, None),
        WaitingLock(303, "tuple", "ExclusiveLock", "public.bookings", None, 0, 7, None, None),
    ),
)  # fmt: skip

SPACE = SpaceFacts(
    block_size=8192,
    tables=(
        TableSpace(1003, "public", "flight_offers", 2_000, 50_000.0, 100, 16_384_000, 0,
                   8_192_000, 24_576_000, 6, 6, 80.0, False),
        TableSpace(1005, "public", "bookings", 173, 5_000.0, 100, 1_417_216, 8_192, 163_840,
                   1_589_248, 2, 2, 105.0, False),
    ),
    indexes=(
        IndexSpace(2006, "public", "ix_flight_offers_trip_expiry", "flight_offers", "btree", True,
                   400, 50_000.0, 90, 3_276_800, 2, 2, False, 12.0),
        IndexSpace(2010, "public", "ix_bookings_tags", "bookings", "gin", True, 10, 5_000.0, 90,
                   81_920, 1, 1, False, 30.0),
    ),
    sequences=(
        SequenceState("public", "bookings_id_seq", "smallint", 1, 32_767, 1, False, 31_129,
                      "public.bookings", "id", "smallint", True),
        SequenceState("public", "travelers_id_seq", "bigint", 1, 2**63 - 1, 1, False, 2_000,
                      "public.travelers", "id", "bigint", True),
    ),
    measured=(ApproxTuples(1003, 16_384_000, 12.5, 8_000_000, 645_000, 5_000, 4_000_000),),
    pgstattuple="used",
)  # fmt: skip


def setting(name: str, value: str, source: str = "default", setting_value: str | None = None,
            boot: str | None = None) -> ServerSetting:  # fmt: skip
    raw = setting_value if setting_value is not None else value
    return ServerSetting(name, value, raw, None, source, boot if boot is not None else raw, False)


SETTINGS = (
    setting("shared_buffers", "128MB", setting_value="16384"),
    setting("work_mem", "4MB", setting_value="4096"),
    setting("effective_cache_size", "4GB", setting_value="524288"),
    setting("random_page_cost", "1.1", "configuration file", boot="4"),
    setting("max_connections", "100"),
    setting("autovacuum_vacuum_cost_limit", "-1"),
    setting("vacuum_cost_limit", "200"),
    setting("pg_stat_statements.track", "top", "configuration file", boot="top"),
    setting("track_io_timing", "off"),
)

SEQ_NODES = (
    PlanNode(0, "Seq Scan", "public.flight_offers", "o", None, 1_250.5, 12.0,
             ("Filter: ((o.trip_request_id = $1) AND (o.expires_at > now()))",)),
)  # fmt: skip
INDEX_NODES = (
    PlanNode(0, "Index Scan", "public.trip_requests", "trip_requests",
             "public.trip_requests_pkey", 8.3, 1.0, ("Index Cond: (trip_requests.id = $1)",)),
)  # fmt: skip
PLANS = (
    Explained(102, OFFERS, OFFERS, "planned", "", True, 1_250.5, SEQ_NODES),
    Explained(101, "SELECT … FROM public.trip_requests WHERE id = $1", "SELECT … FROM "
              "public.trip_requests WHERE id = $1", "planned", "", True, 8.3, INDEX_NODES),
    Explained(106, "SELECT count(*) FROM gone", "SELECT count(*) FROM gone", "failed",
              'relation "gone" does not exist', True, None, ()),
)  # fmt: skip
CANDIDATE = Candidate("public.flight_offers", ("trip_request_id",))
ADVICE = AdviceFacts(
    hypopg="1.4.1",
    hypopg_available=True,
    examined=(102,),
    trials=(
        Trial(102, CANDIDATE, 1_250.5, 8.4, True, 1_130_496),
        Trial(102, Candidate("public.flight_offers", ("expires_at",)), 1_250.5, 900.0, True,
              1_130_496),
    ),
)  # fmt: skip

SCHEMA = SchemaFacts(
    tables_without_key=(TableWithoutKey("public.audit_log", 12_000.0, 1_048_576),),
    not_valid=(NotValidConstraint("public.bookings", "bookings_amount_positive", "check"),),
    foreign_key_types=(ForeignKeyType("public.bookings", "bookings_trip_request_id_fkey",
                                      "trip_request_id", "integer", "public.trip_requests",
                                      "id", "bigint"),),
    index_keys=(
        IndexKey("public.ix_bookings_paid", "public.bookings", 1, "paid", "B", "boolean", False,
                 False, None, 16_384, 0.0, False),
        IndexKey("public.ix_bookings_tags_btree", "public.bookings", 1, "tags", "A", "text[]",
                 False, False, None, 32_768, 0.0, False),
        IndexKey("public.ix_bookings_cancelled_at", "public.bookings", 1, "cancelled_at", "D",
                 "timestamp with time zone", False, False, None, 131_072, 0.92, False),
    ),
)  # fmt: skip

UNSTORED = {(DBID, USERID, 102, True): {"max_exec_time": 3.5, "wal_fpi": 2}}

INSPECTION = Inspection(
    major=16, unstored_columns=UNSTORED,
    found={"activity": ACTIVITY, "space": SPACE, "settings": SETTINGS, "plans": PLANS,
           "advice": ADVICE, "schema": SCHEMA},
)  # fmt: skip


def inspected_report() -> Report:
    """The fixture's before/after report with the fixed inspection."""
    from dataclasses import replace

    return build_report(replace(report_input(), inspection=INSPECTION), generated_at=GENERATED_AT)
