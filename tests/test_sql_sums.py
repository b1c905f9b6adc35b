"""The window sums the database computes over compact samples (``store.window_sums``: the store's,
the way every command gets a window's figures) equal the sums of the deltas of the two loaded
states (``sums.sum_deltas``, the reference), and the known quantities, on windows crafted with each thing a delta must
catch: plain work, transaction control behind comments, nested statements, roles, a table
scope, a single entry reset, an entry gone, a new entry, a table's counters reset, an index
dropped and one created."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import pytest

from dbtools.figures.sums import Scope, WindowSums, sum_deltas
from dbtools.figures.windows import parse_window
from dbtools.sqltext.parse import TRANSACTION_CONTROL_SQL_REGEX, TableRef, is_transaction_control
from dbtools.store import Store, window_sums
from dbtools.store.window_sums import roles_in_windows, sum_windows
from tests.conftest import Database
from tests.snapshot_helpers import take

BATCH_INDEX = "public.ix_flight_offers_trip_expiry"
PROBE = "SELECT count(*) FROM probe_sums WHERE id < %s"


def both_ways(
    db: Database, windows: Sequence[str], scope: Scope, indexes: Sequence[str]
) -> tuple[list[WindowSums], list[WindowSums]]:
    """The sums of *windows* computed by the database, and from the loaded states."""
    refs = [parse_window(w) for w in windows]
    with db.connect() as conn:
        store = Store.of(conn)
        resolved = store.windows(refs)
        target = resolved[0].target
        assert target is not None
        in_sql = sum_windows(conn, target, resolved, scope, indexes=indexes)
        assert store.sums(resolved, scope, indexes=indexes) == in_sql  # the store's answer
        loaded = store.load(resolved)
    in_python = [sum_deltas(w, scope) for w in loaded]
    asked = [  # sum_deltas gives every index's scans; sum_windows those asked
        dataclasses.replace(s, index_scans={k: v for k, v in s.index_scans.items() if k in indexes})
        for s in in_python
    ]
    return in_sql, asked


def assert_same(in_sql: list[WindowSums], in_python: list[WindowSums]) -> None:
    for a, b in zip(in_sql, in_python, strict=True):
        # Floating-point sums in another order: equal to the last bits.
        assert a.counts.exec_time_ms == pytest.approx(b.counts.exec_time_ms, rel=1e-9)
        same = dataclasses.replace(a.counts, exec_time_ms=b.counts.exec_time_ms)
        assert dataclasses.replace(a, counts=same) == b


def probe(db: Database, calls: int, **connect: Any) -> None:
    with db.connect(**connect) as conn:
        for i in range(calls):
            conn.execute(PROBE, (i,))


@pytest.fixture
def crafted(migrated_database: Database) -> Database:
    """Windows w1..w5 (labels w1:start, w1:end, …), each with a known workload."""
    db = migrated_database
    role = f"{db.name}_app"
    db.execute("CREATE TABLE probe_sums (id int PRIMARY KEY, v int)")
    db.execute("INSERT INTO probe_sums SELECT i, i FROM generate_series(1, 100) i")
    db.execute(f"CREATE ROLE {role} LOGIN")
    db.execute(f"GRANT SELECT ON probe_sums TO {role}")
    db.execute(
        "CREATE FUNCTION probe_nested() RETURNS bigint LANGUAGE plpgsql AS "
        "$$ BEGIN RETURN (SELECT count(*) FROM probe_sums WHERE v > 50); END $$"
    )
    probe(db, 3)  # every entry exists before w1
    # w1: 7 probes, 2 transactions behind comments, 4 nested calls, 5 probes as the app role.
    take(db, "w1:start")
    probe(db, 7)
    with db.connect() as conn:
        for _ in range(2):
            conn.execute("/* app */ BEGIN")
            conn.execute("SELECT 1 AS inside")
            conn.execute("-- done\nCOMMIT")
        for _ in range(4):
            conn.execute("SELECT probe_nested()")
    probe(db, 5, user=role)
    take(db, "w1:end")
    # w2: the probe's entry reset, then 2 calls: fewer than at the start.
    take(db, "w2:start")
    db.execute(
        "SELECT pg_stat_statements_reset(s.userid, s.dbid, s.queryid) FROM pg_stat_statements s "
        "WHERE s.query LIKE 'SELECT count(*) FROM probe_sums WHERE id <%%' AND s.userid = "
        "(SELECT oid FROM pg_roles WHERE rolname = current_user)"
    )
    probe(db, 2)
    take(db, "w2:end")
    # w3: the app role's probe entry reset and not run again (gone); a statement new inside.
    take(db, "w3:start")
    db.execute(
        "SELECT pg_stat_statements_reset(s.userid, s.dbid, s.queryid) FROM pg_stat_statements s "
        f"WHERE s.query LIKE 'SELECT count(*) FROM probe_sums WHERE id <%%' AND s.userid = "
        f"(SELECT oid FROM pg_roles WHERE rolname = '{role}')"
    )
    db.execute("SELECT v FROM probe_sums WHERE v = 3 AND id > 0")
    take(db, "w3:end")
    # w4: the table's counters reset; an index created and the batch index scanned.
    take(db, "w4:start")
    db.execute("SELECT pg_stat_reset_single_table_counters('probe_sums'::regclass)")
    db.execute("CREATE INDEX ix_probe_sums_v ON probe_sums (v)")
    with db.connect(options="-c enable_seqscan=off -c enable_bitmapscan=off") as conn:
        conn.execute("SELECT * FROM flight_offers WHERE trip_request_id = 1 AND expires_at > now()")
    take(db, "w4:end")
    # w5: the index dropped; nothing else.
    take(db, "w5:start")
    db.execute("DROP INDEX ix_probe_sums_v")
    take(db, "w5:end")
    # w6: an entry counting since before the window that its start sample does not hold (its
    # rows up to the start removed from the store): new inside it, yet older than it.
    # (Aliases are not part of a statement's identity: a shape of its own.)
    db.execute("SELECT min(v) FROM probe_sums")
    take(db, "w6:start")
    db.execute("SELECT min(v) FROM probe_sums")
    take(db, "w6:end")
    db.execute(
        "DELETE FROM perf_monitoring.statement_stats r USING perf_monitoring.statement_texts x, "
        "perf_monitoring.snapshots s WHERE x.target = r.target AND x.dbid = r.dbid "
        "AND x.queryid = r.queryid AND x.query = 'SELECT min(v) FROM probe_sums' "
        "AND s.target = r.target AND s.label = 'w6:start' AND r.snapshot_id <= s.id"
    )
    return db


WINDOWS = ("w1", "w2", "w3", "w4", "w5", "w6")


@pytest.fixture(params=["from-rows", "by-entry"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each window summed from its rows, or entry by entry (as a long window is)."""
    if request.param == "by-entry":
        monkeypatch.setattr(window_sums, "ROWS_BY_ENTRY", 1)
    return str(request.param)


def test_both_ways_give_the_same_sums_and_the_known_ones(crafted: Database, mode: str) -> None:
    db = crafted
    role = f"{db.name}_app"
    indexes = [BATCH_INDEX, "public.ix_probe_sums_v", "public.no_such_index"]
    in_sql, in_python = both_ways(db, WINDOWS, Scope(), indexes)
    assert_same(in_sql, in_python)
    w1, w2, w3, w4, w5, w6 = in_sql
    (version,) = db.execute(
        "SELECT extversion FROM pg_extension WHERE extname = 'pg_stat_statements'"
    )[0]
    has_stats_since = tuple(map(int, version.split("."))) >= (1, 11)
    assert w6.statement_entries_reset == (1 if has_stats_since else 0)
    assert (w1.counts.transaction_calls, w1.counts.nested_calls) == (4, 4)
    assert w1.statement_entries_reset == 0 and not w1.counters_reset
    assert (w2.statement_entries_reset, w3.statement_entries_reset) == (1, 1)
    assert w4.counters_reset and not w3.counters_reset
    assert w4.index_scans == {BATCH_INDEX: 1, "public.ix_probe_sums_v": 0}
    assert w5.index_scans == {BATCH_INDEX: 0}  # the dropped index is not there at the end
    assert w5.counters_reset is False and w5.statement_entries_reset == 0

    # The app role's statements only: its 5 probes in w1.
    (app_w1,), (python_w1,) = both_ways(db, ["w1"], Scope(roles=frozenset({role})), [])
    assert_same([app_w1], [python_w1])
    assert (app_w1.counts.queries, app_w1.counts.statements) == (5, 1)
    assert (app_w1.counts.transaction_calls, app_w1.counts.nested_calls) == (0, 0)

    # Statements touching probe_sums only: 7 + 5 probes and the 4 calls' nested statements are
    # nested (not queries); the function call itself does not name the table.
    scope = Scope(tables=frozenset({TableRef.parse("probe_sums")}))
    (tables_w1,), (python_tables_w1,) = both_ways(db, ["w1"], scope, [])
    assert_same([tables_w1], [python_tables_w1])
    assert (tables_w1.counts.queries, tables_w1.counts.statements) == (12, 2)


def test_the_roles_seen_in_the_windows(crafted: Database) -> None:
    """A role counts as seen while one of its entries stands at a window's end: the app role's
    probe entry is there at w3's start, and gone at its end and in w4."""
    db = crafted
    role = f"{db.name}_app"
    with db.connect() as conn:
        w3, w4 = Store.of(conn).windows([parse_window("w3"), parse_window("w4")])
        assert w3.start.target is not None
        asked = frozenset({role, "nobody"})
        assert roles_in_windows(conn, w3.start.target, [w3], asked) == {role}
        assert roles_in_windows(conn, w3.start.target, [w4], asked) == frozenset()


CONTROL = (
    "BEGIN", "begin isolation level serializable", "/* a */ COMMIT", "-- c\n  ROLLBACK",
    "/* a * b */ /* c */ end", "START   TRANSACTION", "SAVEPOINT s1", "release s1",
    "PREPARE TRANSACTION 'x'", "abort",
)  # fmt: skip
NOT_CONTROL = (
    "BEGINNING", "SELECT 1", "/* BEGIN */ SELECT 1", "-- BEGIN", "commit_log", "endless",
    "prepare q AS SELECT 1", "  \n\tselect 'begin'", "<text not stored>",
)  # fmt: skip


@pytest.mark.parametrize(
    ("text", "expected"), [(t, True) for t in CONTROL] + [(t, False) for t in NOT_CONTROL]
)
def test_transaction_control_is_one_test_in_python_and_sql(
    migrated_database: Database, text: str, expected: bool
) -> None:
    (row,) = migrated_database.execute("SELECT %s ~* %s", (text, TRANSACTION_CONTROL_SQL_REGEX))
    assert (is_transaction_control(text), row[0]) == (expected, expected)
