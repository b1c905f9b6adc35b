"""One scan per server per round: a collector reads the pg_stat_statements of targets that share
a server with one scan a round (the header's sums counted from it, no second scan), split by
database: each target gets exactly its own statements and counts."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest

from dbtools.db.connection import SQL_MARKER, connect
from dbtools.reading.live import DatabaseEntries
from dbtools.reading.rows import Snapshot
from dbtools.store import collector, compact
from dbtools.store.collector import Collector, ServerScan, Target, TargetSampler
from dbtools.store.store import Store
from tests.conftest import Database, PgServer

SHARED = "SELECT 1 AS in_every_database"


def only_in(i: int) -> str:
    """A statement of database *i* alone (aliases do not make a statement: columns do)."""
    return "SELECT 1" + ", 1" * (i + 1) + f" AS only_in_database_{i}"


def normalised(i: int) -> str:
    return "SELECT " + ", ".join(f"${n}" for n in range(1, i + 3)) + f" AS only_in_database_{i}"


ROUNDS = 2
EVER = (datetime.min.replace(tzinfo=timezone.utc), datetime.max.replace(tzinfo=timezone.utc))


@pytest.fixture
def three_databases(pg_server: PgServer) -> Iterator[list[Database]]:
    names = [pg_server.create_database() for _ in range(3)]
    try:
        yield [Database(pg_server, name) for name in names]
    finally:
        for name in names:
            pg_server.drop_database(name)


def _run(db: Database, statement: str, times: int) -> None:
    with db.connect() as conn:
        for _ in range(times):
            conn.execute(statement)


def _oid(db: Database) -> int:
    rows = db.execute(f"SELECT {SQL_MARKER} oid FROM pg_database WHERE datname = %s", (db.name,))
    return int(rows[0][0])


def _scans(db: Database, dbids: list[int]) -> int:
    """Every read of pg_stat_statements without texts (the function form dbtools scans with,
    its argument normalised to ``$n``) in the databases *dbids*."""
    rows = db.execute(
        f"SELECT {SQL_MARKER} coalesce(sum(calls), 0) FROM pg_stat_statements "
        "WHERE dbid = ANY(%s::oid[]) AND strpos(query, '\"pg_stat_statements\"($') > 0",
        (dbids,),
    )
    return int(rows[0][0])


def _states(store: Database, target: str) -> list[Snapshot]:
    """The target's state at each of its samples, loaded from the store."""
    with connect(store.dsn, autocommit=True) as conn:
        headers = Store.of(conn).headers_between(*EVER, target)
        states = compact.load_states(conn, target, headers)
    return [states[h.id] for h in headers if h.id is not None]


def _calls(state: Snapshot) -> dict[str, int]:
    return {row.query: row.calls for row in state.statements}


def test_targets_on_one_server_are_read_with_one_scan_a_round_each_with_its_own_counts(
    three_databases: list[Database], migrated_database: Database
) -> None:
    store = migrated_database
    for db in three_databases:
        _run(db, SHARED, 1)
    targets = [Target(f"db{i}", db.dsn) for i, db in enumerate(three_databases)]
    dbids = [_oid(db) for db in three_databases]
    with Collector(targets, store=store.dsn, interval_s=60) as collector:
        assert collector.open_all() == []
        first = collector.run_round(1)
        assert first.stored == 3, first.line()
        for i, db in enumerate(three_databases):
            _run(db, SHARED, i + 2)
            _run(db, only_in(i), 3)
        second = collector.run_round(2)
        assert second.stored == 3, second.line()
    # one scan a round for the three targets once they have a state (the first round: one
    # each, nothing to compare with), and none for the header's sums
    assert _scans(three_databases[0], dbids) == len(three_databases) + ROUNDS - 1
    for i, (target, dbid) in enumerate(zip(targets, dbids, strict=True)):
        assert target.name is not None
        before, after = _states(store, target.name)
        assert _calls(before) == {"SELECT $1 AS in_every_database": 1}
        assert _calls(after) == {
            "SELECT $1 AS in_every_database": 1 + i + 2,
            normalised(i): 3,
        }
        assert {row.dbid for row in after.statements} == {dbid}
        assert before.header.database_oid == dbid
        # the header's sums, from the rows of the one scan
        assert (before.header.queries, after.header.queries) == (1, 1 + i + 2 + 3)
        assert before.header.toplevel_calls is not None
        assert after.header.toplevel_calls is not None
        assert after.header.toplevel_calls - before.header.toplevel_calls >= i + 2 + 3


def _keys(entries: DatabaseEntries) -> set[int]:
    """The entry keys of the statements a scan kept whole."""
    return {compact.entry_key(*compact.STATEMENT_KEY_OF(values)) for values in entries.rows}


def test_a_server_scan_streams_each_database_against_its_state_keeping_only_what_moved(
    three_databases: list[Database], migrated_database: Database
) -> None:
    store = migrated_database
    for i, db in enumerate(three_databases):
        _run(db, SHARED, 1)
        _run(db, only_in(i), 1)
    samplers = [TargetSampler(Target(f"db{i}", db.dsn), store=store.dsn)
                for i, db in enumerate(three_databases)]  # fmt: skip
    other = TargetSampler(Target("db2", three_databases[2].dsn), store=store.dsn)
    try:
        first = ServerScan(samplers)
        assert [s.sample(scan=first)[0].statements for s in samplers] == [2, 2, 2]
        _run(three_databases[0], SHARED, 2)  # moves in db0
        _run(three_databases[1], only_in(3), 1)  # a new statement in db1
        # db2 nothing of its own
        source, prepared = samplers[0].source, samplers[0].prepared
        assert source is not None and prepared is not None
        columns = prepared[1]
        states = {s.dbid: s.state for s in samplers}
        counters = TargetSampler.scan(source, columns, samplers, states)
        for sampler, moved, unmoved in zip(samplers, [1, 0, 0], [1, 2, 2], strict=True):
            assert sampler.dbid is not None and sampler.state is not None
            entries = counters.by_database[sampler.dbid]
            summary = entries.summary
            assert isinstance(summary, compact.Unmoved) and summary.state is sampler.state
            # the state's statements: summarised when unmoved, kept whole when they moved
            assert summary.count == unmoved
            assert len(_keys(entries) & set(sampler.state.statements)) == moved
            assert set(summary.keys) | (_keys(entries) & set(sampler.state.statements)) == set(
                sampler.state.statements
            )
        # a round: each target takes its own database's entries; another writer's sample of
        # db2 in between makes db2's sample compare again with the state it stored
        second = ServerScan(samplers)
        assert samplers[0].sample(scan=second)[0].statements == 2
        other.sample()
        _run(three_databases[2], only_in(2), 4)
        assert samplers[1].sample(scan=second)[0].statements == 3
        assert samplers[2].sample(scan=second)[0].statements == 2
    finally:
        for sampler in [*samplers, other]:
            sampler.close()
    for i, sampler in enumerate(samplers):
        assert sampler.state is not None
        after = _states(store, f"db{i}")[-1]
        # the state the collector kept is the one the store holds
        assert compact.TargetState.of(after).statements == sampler.state.statements
        assert _calls(after) == {
            "SELECT $1 AS in_every_database": [3, 1, 1][i],
            normalised(i): [1, 1, 5][i],
            **({normalised(3): 1} if i == 1 else {}),
        }


def test_a_large_write_goes_through_a_session_of_its_own_closed_after(
    three_databases: list[Database], migrated_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """libpq keeps a session's output buffer at its largest message: a target's first sample
    (every statement and text) is written through a session closed after it."""
    db, store = three_databases[0], migrated_database
    _run(db, SHARED, 1)
    _run(db, only_in(0), 1)
    opened: list[tuple[str, bool, Any]] = []
    connect_ = TargetSampler._connect

    def recording(self: TargetSampler, dsn: str, *, read_only: bool) -> Any:
        conn = connect_(self, dsn, read_only=read_only)
        opened.append((dsn, read_only, conn))
        return conn

    monkeypatch.setattr(TargetSampler, "_connect", recording)
    monkeypatch.setattr(collector, "LARGE_WRITE_ENTRIES", 1)
    sampler = TargetSampler(Target("db0", db.dsn), store=store.dsn)
    try:
        sampler.open()
        assert [(dsn, read_only) for dsn, read_only, _ in opened] == [
            (db.dsn, True),
            (store.dsn, False),
        ]
        # two statements and two texts: more than 1
        assert sampler.sample()[0].statements == 2
        assert [(dsn, read_only) for dsn, read_only, _ in opened[2:]] == [(store.dsn, False)]
        assert opened[2][2].closed and not opened[1][2].closed
        _run(db, SHARED, 1)
        assert sampler.sample()[0].rows_stored >= 1  # one statement moved: the store's session
        assert len(opened) == 3
    finally:
        sampler.close()
    assert _calls(_states(store, "db0")[-1]) == {
        "SELECT $1 AS in_every_database": 2,
        normalised(0): 1,
    }
