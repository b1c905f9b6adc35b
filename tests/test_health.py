"""Index and autovacuum health: one ground-truth case per finding on a crafted schema in a real
database, and the rules that need ages or settings no test can wait for, on constructed rows."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import psycopg
import pytest

from dbtools.findings import Rule
from dbtools.reading import live
from dbtools.report import health
from dbtools.report.health import AutovacuumDefaults, Catalog, HealthInput, HealthSettings
from dbtools.schema.manifest import manifest_at
from tests.conftest import Database
from tests.report_fixture import T0, database, table

CRAFTED_SCHEMA = """
CREATE TABLE parent (id bigint PRIMARY KEY, code text);
CREATE TABLE child (
    id bigint PRIMARY KEY,
    parent_id bigint REFERENCES parent (id),
    other_parent_id bigint REFERENCES parent (id),
    note text
);
CREATE INDEX child_parent_id_idx ON child (parent_id);
CREATE INDEX child_note_idx ON child (note);
CREATE TABLE quoted ("Parent Ref" bigint REFERENCES parent (id));
CREATE INDEX quoted_ref_idx ON quoted ("Parent Ref");
CREATE TABLE used (k int);
CREATE INDEX used_k_idx ON used (k);
CREATE TABLE dup (a int);
CREATE INDEX dup_a_idx ON dup (a);
CREATE INDEX dup_a_again_idx ON dup (a);
CREATE TABLE ov (a int, b int);
CREATE INDEX ov_a_idx ON ov (a);
CREATE INDEX ov_a_b_idx ON ov (a, b);
CREATE TABLE big (v int);
INSERT INTO big SELECT g FROM generate_series(1, 12000) g;
INSERT INTO parent VALUES (1, 'same'), (2, 'same');
INSERT INTO used SELECT g FROM generate_series(1, 50) g;
"""


SEQUENTIAL_SCANS = 50  # health's minimum (min_seq_scans); 50 x 12,000 rows passes 500,000


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Statistics reach the shared counters shortly after a backend reports them."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"statistics never showed {what}")
        time.sleep(0.1)


def scalar(db: Database, query: str) -> int:
    return int(db.execute(query)[0][0] or 0)


def read_health(db: Database) -> HealthInput:
    with db.connect() as conn:
        snapshot = live.read_live(conn)
        expected = manifest_at(snapshot.header.alembic_revision).table_settings
        return health.health_input(snapshot, health.read_catalog(conn), expected_settings=expected)


def findings(rule: Rule[HealthInput], data: HealthInput) -> set[tuple[str, str]]:
    return {(f.subject, f.message) for f in rule(data)}


def subjects(rule: Rule[HealthInput], data: HealthInput) -> set[str]:
    return {f.subject for f in rule(data)}


@pytest.fixture
def crafted(database: Database) -> HealthInput:
    db = database
    with db.connect() as conn:
        conn.execute(CRAFTED_SCHEMA)
    # A unique index built concurrently over duplicate codes fails and stays behind, invalid.
    with pytest.raises(psycopg.errors.UniqueViolation):
        db.execute("CREATE UNIQUE INDEX CONCURRENTLY parent_code_uq ON parent (code)")
    with db.connect(options="-c enable_seqscan=off -c enable_bitmapscan=off") as conn:
        conn.execute("SELECT * FROM used WHERE k = 7").fetchall()
    with db.connect() as conn:
        for _ in range(SEQUENTIAL_SCANS):
            conn.execute("SELECT count(*) FROM big").fetchall()
    wait_for(
        lambda: scalar(db, "SELECT idx_scan FROM pg_stat_user_indexes "
                           "WHERE indexrelname = 'used_k_idx'") == 1
        and scalar(db, "SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'big'")
        >= SEQUENTIAL_SCANS
        and scalar(db, "SELECT n_live_tup FROM pg_stat_user_tables WHERE relname = 'big'")
        == 12000,
        "the crafted workload",
    )  # fmt: skip
    return read_health(db)


def test_invalid_index_from_a_failed_concurrent_build(crafted: HealthInput) -> None:
    (finding,) = health.invalid_indexes(crafted)
    assert finding.subject == "public.parent_code_uq" and finding.status == "critical"
    assert "REINDEX INDEX CONCURRENTLY public.parent_code_uq" in finding.fix


def test_unused_indexes_leave_out_unique_primary_and_fk_backing(crafted: HealthInput) -> None:
    # Never scanned: every plain index but used_k_idx (scanned once) and the FK-backing ones
    # (child_parent_id_idx, quoted_ref_idx); primary keys and the invalid index are left out.
    assert subjects(health.unused_indexes, crafted) == {
        "public.child_note_idx",
        "public.dup_a_idx",
        "public.dup_a_again_idx",
        "public.ov_a_idx",
        "public.ov_a_b_idx",
    }


def test_duplicate_index(crafted: HealthInput) -> None:
    assert findings(health.duplicate_indexes, crafted) == {
        ("public.dup_a_again_idx", "duplicate of public.dup_a_idx (btree (a))")
    }


def test_overlapping_index(crafted: HealthInput) -> None:
    assert findings(health.overlapping_indexes, crafted) == {
        ("public.ov_a_idx", "its keys (a) lead public.ov_a_b_idx (a, b)")
    }


def test_foreign_key_without_an_index(crafted: HealthInput) -> None:
    (finding,) = health.unindexed_foreign_keys(crafted)
    assert finding.subject == "public.child"
    assert finding.message == (
        "foreign key child_other_parent_id_fkey (other_parent_id) references parent "
        "with no index on its columns"
    )
    assert finding.fix == "CREATE INDEX CONCURRENTLY ON public.child (other_parent_id);"
    quoted = next(fk for fk in crafted.catalog.foreign_keys if fk.relname == "quoted")
    assert quoted.columns == ['"Parent Ref"']  # quoted as pg_get_indexdef quotes: it matched


def test_large_table_read_by_sequential_scans(crafted: HealthInput) -> None:
    (finding,) = health.sequential_scan_tables(crafted)
    assert finding.subject == "public.big"
    assert finding.message.startswith("50 sequential scans (100% of 50 scans) over 12000 rows")


def test_rarely_used_index(crafted: HealthInput) -> None:
    """used_k_idx was scanned once: rare (under 50), not unused."""
    (finding,) = health.rarely_used_indexes(crafted)
    assert (finding.subject, finding.value, finding.threshold) == ("public.used_k_idx", 1, 50)


def test_a_fresh_index_build_is_not_a_sequential_scan_finding(database: Database) -> None:
    """CREATE INDEX reads a 20,000-row table once by sequential scan: one scan proves nothing."""
    database.execute("CREATE TABLE fresh (v int)")
    database.execute("INSERT INTO fresh SELECT g FROM generate_series(1, 20000) g")
    database.execute("CREATE INDEX fresh_v ON fresh (v)")
    database.execute("ANALYZE fresh")
    wait_for(
        lambda: scalar(database, "SELECT seq_scan FROM pg_stat_user_tables "
                                 "WHERE relname = 'fresh'") >= 1
        and scalar(database, "SELECT n_live_tup FROM pg_stat_user_tables "
                             "WHERE relname = 'fresh'") == 20000,
        "the index build's scan",
    )  # fmt: skip
    data = read_health(database)
    assert [row.seq_scan for row in data.tables if row.relname == "fresh"] == [1]
    assert health.sequential_scan_tables(data) == []


def test_index_health_runs_every_rule_most_severe_first(crafted: HealthInput) -> None:
    """All the index rules together: every finding above, the critical one first."""
    found = health.index_health(crafted)
    assert [f.check for f in found][:1] == ["invalid_index"]
    assert len(found) == 1 + 5 + 1 + 1 + 1 + 1 + 1


def test_autovacuum_ground_truth(migrated_database: Database) -> None:
    """Dead tuples past the trigger, autovacuum off for a table, never analyzed, a declared
    setting changed by hand."""
    db = migrated_database
    with db.connect() as conn:
        conn.execute("CREATE TABLE churn (id int) WITH (autovacuum_enabled = false)")
        conn.execute("INSERT INTO churn SELECT g FROM generate_series(1, 5000) g")
        conn.execute("DELETE FROM churn WHERE id <= 3000")
        conn.execute("ALTER TABLE trip_requests SET (autovacuum_vacuum_scale_factor = 0.3)")
    wait_for(
        lambda: (
            scalar(db, "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'churn'") == 3000
        ),
        "3000 dead tuples",
    )
    data = read_health(db)
    assert findings(health.dead_tuples, data) == {
        ("public.churn", "3000 dead tuples (60% of rows), above the autovacuum trigger of 450; "
                         "last vacuum never")
    }  # fmt: skip
    assert subjects(health.autovacuum_disabled, data) == {"public.churn"}
    assert findings(health.stale_statistics, data) == {
        ("public.churn", "never analyzed, with 2000 rows: the planner is guessing")
    }
    (setting,) = health.autovacuum_settings(data)
    assert setting.subject == "public.trip_requests"
    assert setting.message == "autovacuum_vacuum_scale_factor = 0.3 (expected 0.05)"
    assert setting.fix == (
        "ALTER TABLE public.trip_requests SET (autovacuum_vacuum_scale_factor = 0.05);"
    )
    assert all(t.schemaname != "perf_monitoring" for t in data.tables)  # dbtools' own left out


# -- constructed rows: ages and settings no test can wait for -----------------------------------


def constructed(**catalog: object) -> HealthInput:
    return HealthInput(
        as_of=T0,
        tables=(
            table(1, "young", xid_age=150_000_000),
            table(2, "old", xid_age=250_000_000),
            table(3, "ancient", xid_age=1_600_000_000),
        ),
        indexes=(),
        database=database(xid_age=210_000_000),
        catalog=Catalog((), AutovacuumDefaults(**catalog)),  # type: ignore[arg-type]
        settings=HealthSettings(),
    )


def test_transaction_id_age() -> None:
    found = {(f.subject, f.status) for f in health.transaction_id_age(constructed())}
    assert found == {("public.old", "warning"), ("public.ancient", "critical"),
                     ("flights", "warning")}  # fmt: skip
    raised = constructed(freeze_max_age=300_000_000)
    assert {f.subject for f in health.transaction_id_age(raised)} == {"public.ancient"}


def test_server_autovacuum_off_is_critical() -> None:
    (finding,) = health.autovacuum_disabled(constructed(autovacuum=False))
    assert (finding.subject, finding.status) == ("flights", "critical")


def test_expected_settings_on_a_missing_table() -> None:
    expected = manifest_at("0003").table_settings
    data = dataclasses.replace(constructed(), tables=(), expected_settings=expected)
    found = health.autovacuum_settings(data)
    assert {f.subject for f in found} == {
        "public.flight_offers", "public.flight_search_cache", "public.trip_requests"
    }  # fmt: skip
    assert {f.status for f in found} == {"info"}


def test_vacuum_trigger_uses_the_tables_own_settings() -> None:
    row = table(1, "t", n_live_tup=10_000,
                reloptions=["autovacuum_vacuum_scale_factor=0.05",
                            "autovacuum_vacuum_threshold=100"])  # fmt: skip
    assert health.vacuum_trigger(row, AutovacuumDefaults()) == 100 + 0.05 * 10_000
    assert health.vacuum_trigger(table(2, "u", n_live_tup=10_000), AutovacuumDefaults()) == (
        50 + 0.2 * 10_000
    )
