"""The report's sections read from the database (``dbtools.report.inspection``), each on a crafted
database whose true answer is known: a session holding a lock two others wait on, a table with
known dead space, a sequence at 95% of its type, settings from known sources, generic plans on
16+, an index hypopg confirms (PostgreSQL 15, where Debian's hypopg is installed), the schema
checks, and every pg_stat_statements column the server records."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import psycopg
import pytest

from dbtools import make_report
from dbtools.reading.columns import StatementColumns
from dbtools.report import ReportOptions, render
from dbtools.report.activity import ActivitySettings
from dbtools.report.model import Report
from dbtools.report.space import SpaceSettings
from dbtools.report.subjects import REGISTRY as SECTIONS
from dbtools.report.subjects import InspectionOptions
from tests.conftest import Database, PgServer
from tests.helpers import run_cli
from tests.test_health import wait_for

SECRET = "Sekr1t-literal"


def report_of(db: Database, *sections: str, live: bool = True, **settings: Any) -> Report:
    """The live report of *db* with only *sections* read."""
    options = InspectionOptions(sections=frozenset(sections), settings=settings)
    return make_report(
        db.dsn,
        live=live,
        options=ReportOptions(inspection=options),
        generated_at=datetime.now(timezone.utc),
    )


# -- activity ---------------------------------------------------------------------------------------


@pytest.fixture
def lock_chain(database: Database) -> Iterator[dict[str, int]]:
    """holder takes advisory lock 42, updates row 1 and sits idle in its transaction; waiter
    updates the same row (waits on holder's transaction); locker asks for advisory lock 42
    (waits on holder); sleeper runs pg_sleep. Yields their pids.

    (Not LOCK TABLE: a queued ACCESS EXCLUSIVE request makes every reader of the table's size,
    the report's statistics included, queue behind it until the statement timeout.)"""
    db = database
    db.execute("CREATE TABLE accounts (id int PRIMARY KEY, balance int, note text)")
    db.execute("INSERT INTO accounts VALUES (1, 10, 'a'), (2, 20, 'b')")
    names = ("holder", "waiter", "locker", "sleeper")
    conns = {n: psycopg.connect(db.dsn, autocommit=n == "sleeper", application_name=n)
             for n in names}  # fmt: skip
    pids = {n: c.info.backend_pid for n, c in conns.items()}
    conns["holder"].execute("SELECT pg_advisory_lock(42)")
    conns["holder"].execute(f"UPDATE accounts SET balance = 11, note = '{SECRET}' WHERE id = 1")
    threads = [
        threading.Thread(target=lambda: _quietly(conns["waiter"], "UPDATE accounts SET balance = 12 WHERE id = 1")),
        threading.Thread(target=lambda: _quietly(conns["locker"], "SELECT pg_advisory_lock(42)")),
        threading.Thread(target=lambda: _quietly(conns["sleeper"], "SELECT pg_sleep(60)")),
    ]  # fmt: skip
    threads[0].start()
    wait_for(lambda: _blocked_by(db, pids["waiter"]) == [pids["holder"]], "the waiter blocked")
    threads[1].start()
    threads[2].start()
    wait_for(lambda: _blocked_by(db, pids["locker"]) == [pids["holder"]], "the locker blocked")
    try:
        yield pids
    finally:
        db.execute("SELECT pg_cancel_backend(%s)", (pids["sleeper"],))
        conns["holder"].execute("SELECT pg_advisory_unlock_all()")
        conns["holder"].rollback()
        for name, thread in zip(("waiter", "locker", "sleeper"), threads, strict=True):
            thread.join(timeout=30)
            conns[name].rollback()
        for conn in conns.values():
            conn.close()


def _quietly(conn: psycopg.Connection[Any], statement: str) -> None:
    with contextlib.suppress(psycopg.errors.QueryCanceled):
        conn.execute(statement)


def _blocked_by(db: Database, pid: int) -> list[int]:
    rows = db.execute("SELECT pg_blocking_pids(%s)", (pid,))
    return sorted(rows[0][0])


def test_activity_shows_the_lock_chain(database: Database, lock_chain: dict[str, int]) -> None:
    holder, waiter, locker, sleeper = (
        lock_chain[n] for n in ("holder", "waiter", "locker", "sleeper")
    )
    time.sleep(0.6)  # every one of them has waited or slept past the threshold below
    report = report_of(database, "activity", activity=ActivitySettings(long_running_seconds=0.5))
    activity = report.activity
    assert activity is not None
    blocked = {b.pid: b for b in activity.blocked if b.database == database.name}
    assert set(blocked) == {waiter, locker}
    assert blocked[waiter].blocked_by == (holder,)
    assert blocked[waiter].chain == (waiter, holder)
    assert blocked[waiter].lock.startswith("ShareLock on transaction ")
    assert blocked[locker].blocked_by == (holder,)
    assert blocked[locker].lock == "ExclusiveLock on advisory lock 0/42"
    assert blocked[locker].root_pid == holder
    assert blocked[locker].root_state == "idle in transaction"
    # The chain's head shows its statement, literals scrubbed.
    assert blocked[waiter].root_query == "UPDATE accounts SET balance = $1, note = $2 WHERE id = $3"

    mine = {s.pid for s in activity.idle_in_transaction if s.database == database.name}
    assert mine == {holder}
    running = {s.pid for s in activity.long_running if s.database == database.name}
    assert running == {waiter, locker, sleeper}  # active: two waiting, one sleeping

    counts = {(c.application_name, c.state): c.connections for c in activity.connections
              if c.database == database.name}  # fmt: skip
    assert counts == {("holder", "idle in transaction"): 1, ("waiter", "active"): 1,
                      ("locker", "active"): 1, ("sleeper", "active"): 1}  # fmt: skip
    assert activity.max_connections == 200  # the sandbox's setting
    for fmt in ("md", "html", "json"):
        text = render(report, fmt)
        assert SECRET not in text
        assert str(holder) in text


def test_activity_only_with_live(migrated_database: Database) -> None:
    """A window report reads no activity: it describes the past."""
    from dbtools.store import snapshots

    snapshots.snapshot(migrated_database.dsn, "w:start")
    snapshots.snapshot(migrated_database.dsn, "w:end")
    options = ReportOptions(inspection=InspectionOptions(sections=frozenset(SECTIONS)))
    report = make_report(migrated_database.dsn, window="w", options=options)
    assert report.activity is None
    assert report.space is not None and report.settings is not None


# -- space -------------------------------------------------------------------------------------------

ROWS = 10_000
PAD = 100  # characters of padding per row: a 129-byte tuple (24 header + 4 + 1 + 100)
TUPLE_BYTES = 24 + 4 + 1 + PAD


@pytest.fixture
def dead_space(database: Database) -> Database:
    """10,000 rows of one size, half of them deleted and never vacuumed, then analyzed."""
    db = database
    db.execute("CREATE TABLE padded (id int, pad text) WITH (autovacuum_enabled = off)")
    db.execute(
        "INSERT INTO padded SELECT g, repeat('x', %s) FROM generate_series(1, %s) g", (PAD, ROWS)
    )
    db.execute("CREATE INDEX padded_id ON padded (id)")
    db.execute("DELETE FROM padded WHERE id % 2 = 0")
    db.execute("ANALYZE padded")
    return db


def test_bloat_estimate_of_a_table_with_known_dead_space(dead_space: Database) -> None:
    """Without pgstattuple: the catalog estimate. 58 rows of 140 bytes (129, aligned to 136,
    plus a 4-byte line pointer) fill a page: 10,000 rows took 173 pages, the 5,000 live rows
    need 87, so 86 pages are bloat."""
    pages = dead_space.execute("SELECT relpages FROM pg_class WHERE relname = 'padded'")[0][0]
    assert pages == 173
    report = report_of(dead_space, "space", space=SpaceSettings())
    assert report.space is not None and report.space.pgstattuple == "not created"
    (line,) = [t for t in report.space.tables if t.table == "public.padded"]
    assert line.method == "estimate"
    assert line.bloat_bytes == 86 * 8192
    assert line.row_estimate == ROWS // 2
    # The index kept every entry's page: half of it is bloat, by the estimate.
    (index,) = [i for i in report.space.indexes if i.index == "public.padded_id"]
    assert index.method == "estimate"
    assert index.bloat_ratio is not None and 0.4 < index.bloat_ratio < 0.6


def test_pgstattuple_approx_measures_the_dead_tuples(dead_space: Database) -> None:
    dead_space.execute("CREATE EXTENSION pgstattuple")
    report = report_of(dead_space, "space")
    assert report.space is not None and report.space.pgstattuple == "used"
    (line,) = [t for t in report.space.tables if t.table == "public.padded"]
    assert line.method == "pgstattuple_approx"
    assert line.dead_tuple_bytes == (ROWS // 2) * TUPLE_BYTES
    assert line.bloat_bytes is not None and line.bloat_bytes >= line.dead_tuple_bytes


def test_sequence_at_95_percent_of_its_type(database: Database) -> None:
    db = database
    db.execute("CREATE TABLE tickets (id smallint GENERATED ALWAYS AS IDENTITY, note text)")
    db.execute("SELECT setval(pg_get_serial_sequence('tickets', 'id'), 31129)")
    db.execute("CREATE TABLE calm (id serial)")
    db.execute("SELECT setval(pg_get_serial_sequence('calm', 'id'), 1000)")
    db.execute("CREATE SEQUENCE wide_behind_int")  # a bigint sequence feeding an int column
    db.execute("CREATE TABLE narrow (id int DEFAULT nextval('wide_behind_int'))")
    db.execute("ALTER SEQUENCE wide_behind_int OWNED BY narrow.id")
    db.execute("SELECT setval('wide_behind_int', 2040109465)")  # 95% of integer's range
    report = report_of(db, "space")
    assert report.space is not None
    lines = {s.sequence: s for s in report.space.sequences}
    assert set(lines) == {"public.tickets_id_seq", "public.wide_behind_int"}
    tickets = lines["public.tickets_id_seq"]
    assert tickets.fraction_used == (31129 - 1) / (32767 - 1)
    assert tickets.column == "public.tickets.id (smallint, identity)"
    assert tickets.fix.startswith("ALTER TABLE public.tickets ALTER COLUMN id TYPE bigint;")
    narrow = lines["public.wide_behind_int"]
    assert narrow.maximum == 2**31 - 1 and narrow.data_type == "bigint"
    assert narrow.fraction_used == pytest.approx(0.95, abs=1e-9)
    assert report.space.sequences_checked == 3


def test_a_sequence_feeding_a_narrower_column_by_its_default_is_a_critical_finding(
    database: Database,
) -> None:
    """A bigint sequence made apart (owned by nothing) and called by an integer column's
    default, at 2^31 - 100: 99.99999% of what the column takes, critical (PgHero's
    sequence_danger), with the fix; an integer sequence of its own at 80% is a warning."""
    db = database
    db.execute("CREATE SEQUENCE wide_default")
    db.execute("CREATE TABLE narrow_default (id int DEFAULT nextval('wide_default'), note text)")
    db.execute("SELECT setval('wide_default', %s)", (2**31 - 100,))
    db.execute("CREATE SEQUENCE near_own AS integer")
    db.execute("SELECT setval('near_own', %s)", (1_717_986_918,))  # 80% of integer's range
    db.execute("CREATE SEQUENCE calm_own")
    db.execute("SELECT setval('calm_own', 1000)")
    report = report_of(db, "space")
    assert report.space is not None
    found = {f.subject: f for f in report.space.findings if f.check == "sequence_near_end"}
    assert set(found) == {"public.wide_default", "public.near_own"}
    wide = found["public.wide_default"]
    assert (wide.status, wide.threshold) == ("critical", 0.9)
    assert wide.value == (2**31 - 100 - 1) / (2**31 - 1 - 1)
    assert wide.message == (
        "100.00% of its range used: last value 2,147,483,548 of 2,147,483,647, the largest "
        "its column public.narrow_default.id (integer) takes"
    )
    assert wide.fix == (
        "ALTER SEQUENCE public.wide_default AS bigint; ALTER TABLE public.narrow_default "
        "ALTER COLUMN id TYPE bigint; (the second rewrites the table)"
    )
    near = found["public.near_own"]
    assert (near.status, near.threshold) == ("warning", 0.75)
    assert near.value == (1_717_986_918 - 1) / (2**31 - 1 - 1)
    assert near.fix == "ALTER SEQUENCE public.near_own AS bigint;"
    lines = {s.sequence: s for s in report.space.sequences}
    assert lines["public.wide_default"].column == "public.narrow_default.id (integer, default)"
    # In the report's findings, as every other check's, and in its JSON.
    assert "sequence_near_end" in render(report, "md").split("## Space health")[1]
    document = json.loads(render(report, "json"))
    assert {(f["check"], f["subject"], f["status"]) for f in document["space"]["findings"]} == {
        ("sequence_near_end", "public.wide_default", "critical"),
        ("sequence_near_end", "public.near_own", "warning"),
    }
    # The thresholds are settings.
    stricter = report_of(db, "space", space=SpaceSettings(sequence_critical=0.5))
    assert stricter.space is not None
    assert {f.status for f in stricter.space.findings} == {"critical"}


def test_bloat_findings_name_their_method_and_fix(dead_space: Database) -> None:
    """The padded table is 86 of its 173 pages bloat by the estimate: a finding from 40%
    (the default 50% and 8 MiB leave it out); with pgstattuple, the measurement's figure."""
    assert report_of(dead_space, "space").space.findings == ()
    settings = SpaceSettings(bloat_warning=0.4, bloat_min_bytes=0)
    report = report_of(dead_space, "space", space=settings)
    assert report.space is not None
    found = {(f.check, f.subject): f for f in report.space.findings}
    table = found[("table_bloat", "public.padded")]
    assert (table.status, table.value, table.threshold) == ("warning", 86 / 173, 0.4)
    assert table.message == "688.0 kB of 1.4 MB (50%) is bloat, by estimate"
    assert table.fix == (
        "VACUUM FULL public.padded; (an ACCESS EXCLUSIVE lock while it rewrites) or, online, "
        "pg_repack --table=public.padded"
    )
    (index_line,) = [i for i in report.space.indexes if i.index == "public.padded_id"]
    index = found[("index_bloat", "public.padded_id")]
    assert index.value == index_line.bloat_ratio and index.fix == (
        "REINDEX INDEX CONCURRENTLY public.padded_id;"
    )
    dead_space.execute("CREATE EXTENSION pgstattuple")
    measured = report_of(dead_space, "space", space=settings)
    assert measured.space is not None
    (line,) = [t for t in measured.space.tables if t.table == "public.padded"]
    assert line.dead_tuple_bytes == (ROWS // 2) * TUPLE_BYTES and line.bloat_bytes is not None
    (table,) = [f for f in measured.space.findings if f.check == "table_bloat"]
    assert table.value == line.bloat_bytes / line.heap_bytes
    assert table.message.endswith("is bloat, by pgstattuple_approx")


# -- settings ----------------------------------------------------------------------------------------


def test_settings_values_sources_and_notes(database: Database) -> None:
    db = database
    db.execute(f'ALTER DATABASE "{db.name}" SET random_page_cost = 1.1')
    db.execute(f"ALTER DATABASE \"{db.name}\" SET work_mem = '64kB'")
    with db.connect() as conn:  # a new session: the database's settings apply
        conn.execute("SELECT g FROM generate_series(1, 100000) g ORDER BY g DESC").fetchall()
    report = report_of(db, "settings")
    assert report.settings is not None
    lines = {s.name: s for s in report.settings.settings}
    assert (lines["random_page_cost"].value, lines["random_page_cost"].source) == (
        "1.1",
        "database",
    )
    assert lines["random_page_cost"].note == ""
    assert (lines["work_mem"].value, lines["work_mem"].source) == ("64kB", "database")
    assert lines["work_mem"].note.startswith("1 statements wrote ")
    assert lines["track_io_timing"].value == "on" and lines["track_io_timing"].note == ""
    assert lines["pg_stat_statements.track"].value == "all"
    assert lines["effective_cache_size"].source == "default"
    assert next(iter(lines)) == "shared_buffers"


# -- plans and index advice --------------------------------------------------------------------------

BY_CUSTOMER = "SELECT id FROM orders WHERE customer_id = %s"
RECENT = "SELECT count(*) FROM orders WHERE created_at > current_date"  # no constant: no $n
BY_ID = "SELECT note FROM orders WHERE id = %s"
PURGE = "DELETE FROM orders WHERE note IS NULL"
GONE = "SELECT count(*) FROM dropped_later"


@pytest.fixture
def orders(database: Database) -> Database:
    """50,000 orders spread over 500 days before today, 10 of them dated in the future."""
    db = database
    db.execute(
        "CREATE TABLE orders (id bigint PRIMARY KEY, customer_id int NOT NULL, "
        "created_at timestamptz NOT NULL, note text)"
    )
    db.execute(
        "INSERT INTO orders SELECT g, g % 2000, "
        "CASE WHEN g <= 10 THEN now() + interval '2 days' ELSE now() - (g % 500) * interval '1 day' END, "
        "'n' FROM generate_series(1, 50000) g"
    )  # fmt: skip
    db.execute("CREATE TABLE dropped_later (id int)")
    db.execute("ANALYZE")
    with db.connect() as conn:
        for customer in range(3):
            conn.execute(BY_CUSTOMER, (customer,)).fetchall()
            conn.execute(RECENT).fetchall()
            conn.execute(BY_ID, (customer,)).fetchall()
        conn.execute(PURGE)  # no NULL note yet: deletes nothing
        conn.execute(GONE).fetchall()
    db.execute("DROP TABLE dropped_later")
    db.execute("ALTER TABLE orders ALTER COLUMN note DROP NOT NULL")
    return db


def _plans(report: Report) -> dict[str, Any]:
    assert report.plans is not None
    return {p.query: p for p in report.plans.statements}


def test_plans_generic_on_16_and_later(orders: Database, pg_server: PgServer) -> None:
    before = orders.execute("SELECT count(*), count(*) FILTER (WHERE note IS NULL) FROM orders")
    orders.execute("UPDATE orders SET note = NULL WHERE id <= 100")
    report = report_of(orders, "plans")
    plans = _plans(report)
    customer = plans["SELECT id FROM orders WHERE customer_id = $1"]
    recent = plans[RECENT]
    by_id = plans["SELECT note FROM orders WHERE id = $1"]
    purge = plans[PURGE]
    gone = plans[GONE]
    assert gone.status == "failed" and gone.reason == 'relation "dropped_later" does not exist'
    # A text without parameters has a plan on every version.
    assert recent.status == "planned" and recent.indexes_used == ()
    assert [(s.table, s.large) for s in recent.seq_scans] == [("public.orders", True)]
    assert purge.status == "planned" and [s.table for s in purge.large_seq_scans] == [
        "public.orders"
    ]
    if pg_server.major >= 16:
        assert report.plans is not None and report.plans.method.startswith("EXPLAIN (GENERIC_PLAN)")
        assert customer.status == "planned" and customer.generic
        assert [s.table for s in customer.large_seq_scans] == ["public.orders"]
        assert by_id.status == "planned" and by_id.indexes_used == ("public.orders_pkey",)
        assert by_id.seq_scans == ()
    else:
        for plan in (customer, by_id):
            assert plan.status == "not planned" and plan.total_cost is None
            assert "generic plans need PostgreSQL 16" in plan.reason
    # Explaining the DELETE deleted nothing.
    after = orders.execute("SELECT count(*), count(*) FILTER (WHERE note IS NULL) FROM orders")
    assert after[0] == (before[0][0], 100)


def test_index_advice_confirmed_by_hypopg(orders: Database, pg_server: PgServer) -> None:
    """The best index for RECENT is (created_at): 10 of 50,000 rows. On PostgreSQL 15 hypopg
    (Debian's postgresql-15-hypopg, installed by .ci/run) confirms it; the embedded 18 has no
    hypopg, and the section says so."""
    available = orders.execute(
        "SELECT count(*) FROM pg_available_extensions WHERE name = 'hypopg'"
    )[0][0]
    if pg_server.major == 15:
        assert available == 1, "install postgresql-15-hypopg (.ci/run does)"
    if not available:
        report = report_of(orders, "plans", "advice")
        assert report.index_advice is not None and report.index_advice.suggestions == ()
        assert report.index_advice.status.startswith("hypopg is not created in this database")
        assert f"postgresql-{pg_server.major}-hypopg" in report.index_advice.status
        return
    orders.execute("CREATE EXTENSION hypopg")
    report = report_of(orders, "plans", "advice")
    advice = report.index_advice
    assert advice is not None and advice.hypopg is not None
    by_columns = {(s.table, s.columns): s for s in advice.suggestions}
    recent = by_columns[("public.orders", ("created_at",))]
    assert recent.create_statement == (
        "CREATE INDEX CONCURRENTLY ix_orders_created_at ON public.orders (created_at);"
    )
    (served,) = recent.serves
    assert served.query == RECENT
    assert served.cost_after * advice.cost_factor <= served.cost_before
    assert recent.estimated_bytes is not None and recent.estimated_bytes > 8192
    if pg_server.major >= 16:  # the parameterised lookup has a generic plan to test too
        assert ("public.orders", ("customer_id",)) in by_columns
    # Nothing was built: the table still has only its primary key.
    assert orders.execute("SELECT count(*) FROM pg_indexes WHERE tablename = 'orders'")[0][0] == 1


# -- schema health ------------------------------------------------------------------------------------

SCHEMA = """
CREATE TABLE parents (id bigint PRIMARY KEY);
CREATE TABLE kids (id bigint PRIMARY KEY, parent_id int REFERENCES parents (id),
                   active boolean, tags text[], maybe text, rare boolean);
ALTER TABLE kids ADD CONSTRAINT kids_positive CHECK (id > 0) NOT VALID;
CREATE INDEX kids_active ON kids (active);
CREATE INDEX kids_tags ON kids (tags);
CREATE INDEX kids_maybe ON kids (maybe);
CREATE INDEX kids_maybe_partial ON kids (maybe) WHERE maybe IS NOT NULL;
CREATE UNIQUE INDEX kids_rare_unique ON kids (id, rare);
CREATE TABLE loose (a int);
INSERT INTO parents SELECT g FROM generate_series(1, 100) g;
INSERT INTO kids SELECT g, 1 + g % 100, g % 2 = 0, ARRAY['t'],
                        CASE WHEN g % 10 = 0 THEN 'x' END, false
FROM generate_series(1, 1000) g;
ANALYZE;
"""


def test_schema_health_findings_and_fixes(database: Database) -> None:
    with database.connect() as conn:
        conn.execute(SCHEMA)
    report = report_of(database, "schema")
    assert report.schema_health is not None
    found = {(f.check, f.subject): f for f in report.schema_health}
    assert set(found) == {
        ("table_without_primary_key", "public.loose"),
        ("not_valid_constraint", "public.kids.kids_positive"),
        ("foreign_key_type_mismatch", "public.kids.parent_id"),
        ("boolean_index", "public.kids_active"),
        ("btree_on_array", "public.kids_tags"),
        ("mostly_null_index", "public.kids_maybe"),
    }
    fixes = {key[0]: f.fix for key, f in found.items()}
    assert fixes["not_valid_constraint"].startswith(
        "ALTER TABLE public.kids VALIDATE CONSTRAINT kids_positive;"
    )
    assert fixes["foreign_key_type_mismatch"].startswith(
        "ALTER TABLE public.kids ALTER COLUMN parent_id TYPE bigint;"
    )
    assert fixes["btree_on_array"].startswith(
        "CREATE INDEX CONCURRENTLY ON public.kids USING gin (tags);"
    )
    assert fixes["mostly_null_index"].startswith(
        "CREATE INDEX CONCURRENTLY ON public.kids (maybe) WHERE maybe IS NOT NULL;"
    )
    assert found[("mostly_null_index", "public.kids_maybe")].value == pytest.approx(0.9)


# -- every pg_stat_statements column ----------------------------------------------------------------


def test_every_pg_stat_statements_column_reaches_the_json(database: Database) -> None:
    db = database
    db.execute("CREATE TABLE spill (v int)")
    with db.connect(options="-c work_mem=64kB") as conn:
        conn.execute("INSERT INTO spill SELECT g FROM generate_series(1, 50000) g")
        conn.execute("SELECT v FROM spill ORDER BY v DESC").fetchall()
    truth = {
        row[0]: row[1:]
        for row in db.execute(
            "SELECT query, temp_blks_written, wal_records, wal_bytes::bigint "
            "FROM pg_stat_statements WHERE query LIKE '%spill%'"
        )
    }
    report = report_of(db)  # no inspection section: the columns are read all the same
    document = json.loads(render(report, "json"))
    lines = {s["query"]: s for s in document["top_statements"]}
    sort = lines["SELECT v FROM spill ORDER BY v DESC"]
    insert = lines["INSERT INTO spill SELECT g FROM generate_series($1, $2) g"]
    assert (
        sort["figures"]["live"]["temp_blks_written"]
        == truth["SELECT v FROM spill ORDER BY v DESC"][0]
        > 0
    )
    assert (
        insert["figures"]["live"]["wal_records"]
        == truth["INSERT INTO spill SELECT g FROM generate_series($1, $2) g"][1]
        >= 50_000
    )
    version = db.execute("SELECT extversion FROM pg_extension WHERE extname = 'pg_stat_statements'")
    major, minor = map(int, version[0][0].split("."))
    expected = StatementColumns((major, min(minor, 12)), "public").unstored_columns()
    assert set(sort["other_columns"]) == set(expected)
    assert sort["other_columns"]["max_exec_time"] > 0
    assert ("wal_buffers_full" in expected) == ((major, minor) >= (1, 12))
    # The tables show where the time goes: the spilled temporary blocks are in the Markdown.
    markdown = render(report, "md")
    assert "## Where the statements' time goes" in markdown


# -- command line ------------------------------------------------------------------------------------


def test_skip_leaves_sections_out(database: Database, tmp_path: Any) -> None:
    result = run_cli("report", "--dsn", database.dsn, "--live", "--format", "json",
                     "--skip", "plans", "--skip", "advice", "--skip", "space",
                     "--output", "-")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["plans"] is None and document["index_advice"] is None
    assert document["space"] is None
    assert document["settings"] is not None and document["activity"] is not None
    assert document["schema_health"] == []


# -- the fixed inspection: golden renderings -------------------------------------------------------


def test_inspection_golden_markdown() -> None:
    from tests.helpers import check_golden
    from tests.inspection_fixture import inspected_report

    check_golden("report_inspection.md", render(inspected_report(), "md"))


def test_inspection_golden_json() -> None:
    from tests.helpers import check_golden
    from tests.inspection_fixture import inspected_report

    check_golden("report_inspection.json", render(inspected_report(), "json"))


def test_fixed_inspection_sections() -> None:
    """What the fixed inspection must yield, stated outright."""
    from tests.inspection_fixture import inspected_report
    from tests.report_fixture import SECRET as FIXTURE_SECRET

    report = inspected_report()
    assert report.activity is not None
    (first, second) = report.activity.blocked
    assert (first.pid, first.chain, first.root_pid) == (302, (302, 301), 301)
    assert (second.pid, second.chain, second.root_pid) == (303, (303, 302, 301), 301)
    assert second.lock == "ExclusiveLock on a row of public.bookings (page 0, 7)"
    assert [s.pid for s in report.activity.long_running] == [302, 303, 304]
    assert [s.pid for s in report.activity.idle_in_transaction] == [301]
    assert report.activity.client_connections == 5
    assert report.space is not None
    offers, bookings = report.space.tables
    assert (offers.method, offers.bloat_bytes) == ("pgstattuple_approx", 4_645_000)
    assert (bookings.method, bookings.bloat_bytes) == ("estimate", 86 * 8192)
    assert [s.sequence for s in report.space.sequences] == ["public.bookings_id_seq"]
    gin = report.space.indexes[1]
    assert gin.method == "btree only" and gin.bloat_bytes is None
    assert report.plans is not None
    assert [p.status for p in report.plans.statements] == ["planned", "planned", "failed"]
    assert report.plans.statements[0].large_seq_scans[0].table == "public.flight_offers"
    assert report.plans.statements[1].indexes_used == ("public.trip_requests_pkey",)
    assert report.index_advice is not None
    (suggestion,) = report.index_advice.suggestions  # expires_at: 1.4x, below the factor
    assert suggestion.columns == ("trip_request_id",)
    assert report.settings is not None
    notes = {s.name: s.note for s in report.settings.settings}
    assert notes["random_page_cost"] == "" and notes["shared_buffers"].startswith("the compiled")
    assert notes["max_connections"] == "5 client connections now (5%)"
    assert report.schema_health is not None and len(report.schema_health) == 6
    assert report.top_statements[0].other_columns is None
    offers_line = next(s for s in report.top_statements if s.queryid == 102)
    assert offers_line.other_columns == {"max_exec_time": 3.5, "wal_fpi": 2}
    for fmt in ("md", "html", "json"):
        assert FIXTURE_SECRET not in render(report, fmt)


def test_inspected_report_renders_in_chromium(tmp_path: Any) -> None:
    """The HTML with every inspection section stays one self-contained file a browser renders."""
    import re as regex

    from tests.inspection_fixture import inspected_report
    from tests.test_report import count_pixels, screenshot

    html = render(inspected_report(), "html")
    assert regex.findall(r"""(?:src|href)\s*=\s*["']?(?!#)([^"'\s>]+)""", html) == []
    for section in ("activity-blocked", "plans", "index-advice", "space-tables", "settings",
                    "schema-health", "statement-costs"):  # fmt: skip
        assert f'<section id="{section}">' in html
    image = screenshot(html, tmp_path, "inspected")
    assert image.size == (1200, 2000)
    assert count_pixels(image, (255, 255, 255), tolerance=0) < 1200 * 2000 * 0.98
