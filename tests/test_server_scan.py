"""One scan per server per round: a collector reads the pg_stat_statements of targets that share
a server with one scan a round (the header's sums counted from it, no second scan), split by
database: each target gets exactly its own statements and counts."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

import pytest

from dbtools.db.connection import SQL_MARKER, connect
from dbtools.reading.rows import Snapshot
from dbtools.store import compact
from dbtools.store.collector import Collector, Target
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
    # one scan a round for the three targets, and none for the header's sums
    assert _scans(three_databases[0], dbids) == ROUNDS
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
