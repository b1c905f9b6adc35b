"""Compact samples (revision 0005) are exact: a sample stores only the entries that moved (and a
tombstone for those that vanished), yet the state read back at every sample is the full read
taken at that moment, so a window by time gives exactly the deltas of two full snapshots at the
same moments; roll-ups keep that exact at the samples they keep and say so; the downgrade
converts back to full copies and the upgrade converts those to the same compact rows."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest

from dbtools import Collector
from dbtools.db.connection import SQL_MARKER, connect
from dbtools.figures.deltas import window_deltas
from dbtools.figures.windows import parse_window
from dbtools.reading import live
from dbtools.reading.rows import Snapshot, SnapshotHeader
from dbtools.schema.revisions import downgrade, upgrade
from dbtools.store import Store, compact
from dbtools.store.collector import Target
from dbtools.store.compact import OWN_TEXT
from dbtools.store.layout import read_layout
from tests.conftest import Database
from tests.snapshot_helpers import take

# Three statements pg_stat_statements keeps apart (aliases are not part of a queryid; the
# number of output columns is), and their normalised texts.
EVER = (datetime.min.replace(tzinfo=timezone.utc), datetime.max.replace(tzinfo=timezone.utc))
P1 = "SELECT 1 AS moves_every_round"
P2 = "SELECT 1, 2 AS moves_once_then_vanishes"
P3 = "SELECT 1, 2, 3 AS appears_last"
NORMALISED = {
    P1: "SELECT $1 AS moves_every_round",
    P2: "SELECT $1, $2 AS moves_once_then_vanishes",
    P3: "SELECT $1, $2, $3 AS appears_last",
}


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Snapshot]]:
    """Every full read a sample is made of, in order (the reference: a full snapshot): the
    statements a streamed scan summarised as unmoved (``compact.Unmoved``) are recorded whole
    too, beside what the sample keeps of them."""
    found: list[Snapshot] = []
    summarised: dict[int, list[tuple[Any, ...]]] = {}
    read_sample, summarises = live.read_sample, compact.Unmoved.summarises

    def keeping(self: compact.Unmoved, values: tuple[Any, ...]) -> bool:
        taken = summarises(self, values)
        if taken:
            summarised.setdefault(id(self), []).append(values)
        return taken

    def recording(*args: Any, **kwargs: Any) -> live.SampleRead:
        read = read_sample(*args, **kwargs)
        unmoved = tuple(summarised.pop(id(read.summary), ()))
        assert len(unmoved) == read.statement_count - len(read.statements)
        whole = dataclasses.replace(read, statements=read.statements + unmoved, summary=None)
        found.append(whole.snapshot)
        return read

    monkeypatch.setattr(compact.Unmoved, "summarises", keeping)
    monkeypatch.setattr(live, "read_sample", recording)
    yield found


def _collect(db: Database) -> None:
    with Collector([Target(db.name, db.dsn)], interval_s=60) as collector:
        collector.open_all()
        assert collector.run(rounds=1).samples == 1


def _run(db: Database, statement: str, times: int) -> None:
    with db.connect() as conn:
        for _ in range(times):
            conn.execute(statement)


def _queryid(db: Database, text: str) -> int:
    rows = db.execute(
        f"SELECT {SQL_MARKER} queryid FROM pg_stat_statements "
        "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND query = %s",
        (NORMALISED[text],),
    )
    assert len(rows) == 1, rows
    return int(rows[0][0])


def _headers(db: Database) -> list[SnapshotHeader]:
    with connect(db.dsn, autocommit=True) as conn:
        return Store.of(conn).headers_between(EVER[0], EVER[1], db.name)


def _blank(snapshot: Snapshot) -> Snapshot:
    """The rows in a fixed order, without their texts (a read carries none: the store holds
    them apart), under one fixed header (what a read and a stored sample share is its rows)."""
    return dataclasses.replace(
        snapshot,
        header=_HEADER,
        statements=tuple(
            sorted((dataclasses.replace(r, query="") for r in snapshot.statements), key=_key)
        ),
        tables=tuple(sorted(snapshot.tables, key=lambda r: r.relid)),
        indexes=tuple(sorted(snapshot.indexes, key=lambda r: r.indexrelid)),
    )


_HEADER = SnapshotHeader(
    None, None, datetime(2026, 1, 1, tzinfo=timezone.utc), "", 0, 0,
    datetime(2026, 1, 1, tzinfo=timezone.utc), "", None, None, None, None, None, 0, 0,
)  # fmt: skip


def _key(row: Any) -> tuple[Any, ...]:
    return (row.dbid, row.queryid, row.userid, row.toplevel)


def _statement_rows(db: Database, sample_id: int) -> dict[int, bool]:
    """The statement rows a sample stored: queryid -> vanished."""
    rows = db.execute(
        f"SELECT {SQL_MARKER} queryid, vanished FROM perf_monitoring.statement_stats "
        "WHERE snapshot_id = %s",
        (sample_id,),
    )
    return {int(queryid): vanished for queryid, vanished in rows}


def _workload_and_samples(db: Database) -> list[SnapshotHeader]:
    """Five samples (two of them labelled snapshots) around a known workload."""
    _run(db, P1, 1)
    _collect(db)  # 1: every entry
    _run(db, P1, 3)
    _run(db, P2, 2)
    take(db, "a")  # 2
    _run(db, P1, 1)
    _collect(db)  # 3: only P1 moved
    db.execute(f"SELECT {SQL_MARKER} pg_stat_statements_reset(0, 0, %s)", (_queryid(db, P2),))
    _run(db, P1, 2)
    take(db, "b")  # 4: P1 moved, P2 vanished
    _run(db, P3, 1)
    _collect(db)  # 5: P3 appeared
    return _headers(db)


def test_a_sample_stores_only_the_entries_that_moved(
    migrated_database: Database, reads: list[Snapshot]
) -> None:
    db = migrated_database
    headers = _workload_and_samples(db)
    assert [h.label for h in headers] == [None, "a", None, "b", None]
    assert [h.interval_seconds for h in headers] == [60, None, 60, None, 60]
    p1, p3 = _queryid(db, P1), _queryid(db, P3)
    ids = [h.id for h in headers]
    assert all(i is not None for i in ids)
    first, _, third, fourth, fifth = (_statement_rows(db, i) for i in ids)  # type: ignore[arg-type]
    assert first == {p1: False} and len(reads[0].statements) == 1  # every entry
    assert third == {p1: False}
    p2 = next(q for q, gone in fourth.items() if gone)
    assert fourth == {p1: False, p2: True}  # a tombstone for the reset entry
    assert fifth == {p3: False}
    # The texts are stored once per statement, whatever the number of samples (dbtools' own
    # statements kept apart).
    assert db.execute(
        f"SELECT {SQL_MARKER} count(*), count(DISTINCT (dbid, queryid)) "
        "FROM perf_monitoring.statement_texts WHERE query <> %s",
        (OWN_TEXT,),
    ) == [(len({_key(r)[:2] for s in reads for r in s.statements}),) * 2]


def test_states_and_time_windows_are_exactly_the_full_reads(
    migrated_database: Database, reads: list[Snapshot]
) -> None:
    db = migrated_database
    headers = _workload_and_samples(db)
    assert len(reads) == len(headers) == 5
    with connect(db.dsn, autocommit=True) as conn:
        store = Store.of(conn)
        states = store.states(headers)
        for header, read in zip(headers, reads, strict=True):
            assert header.id is not None
            loaded = states[header.id]
            assert _blank(loaded) == _blank(read), header
            assert all(r.query != compact.TEXT_NOT_STORED for r in loaded.statements)
        # Every window between two samples, by time, gives the full reads' deltas; the window
        # between the two labelled snapshots gives the same by label and by time.
        for i in range(5):
            for j in range(i + 1, 5):
                ref = f"{headers[i].taken_at.isoformat()}..{headers[j].taken_at.isoformat()}"
                (window,) = store.load(store.windows([parse_window(ref)], target=db.name))
                assert (window.start.id, window.end.id) == (headers[i].id, headers[j].id)
                assert window.states is not None
                expected = window_deltas(_blank(reads[i]), _blank(reads[j]))
                assert window_deltas(*map(_blank, window.states)) == expected
        (by_label,) = store.load(store.windows([parse_window("a..b")], target=db.name))
    p1_calls = [r.calls for r in by_label.deltas.statements.rows if r.queryid == _queryid(db, P1)]
    assert p1_calls == [3]  # one run before sample 3, two before "b"
    assert [r.queryid for r in by_label.deltas.statements.vanished] == [_queryid_of_p2(reads)]


def test_a_dropped_table_and_its_index_vanish_with_their_latest_values(
    migrated_database: Database, reads: list[Snapshot]
) -> None:
    """The state keeps only fingerprints of tables and indexes: a vanished row copies the
    entry's latest stored row."""
    db = migrated_database
    db.execute(f"CREATE {SQL_MARKER} TABLE doomed (id int PRIMARY KEY)")
    db.execute(f"INSERT {SQL_MARKER} INTO doomed VALUES (1), (2)")
    _collect(db)  # 1: the table and its index
    db.execute(f"DROP {SQL_MARKER} TABLE doomed")
    _collect(db)  # 2: both vanished
    first, second = _headers(db)
    (table,) = [r for r in reads[0].tables if r.relname == "doomed"]
    (index,) = [r for r in reads[0].indexes if r.relname == "doomed"]
    with connect(db.dsn, autocommit=True) as conn:
        states = Store.of(conn).states([first, second])
    for header, read in zip((first, second), reads, strict=True):
        assert header.id is not None
        assert _blank(states[header.id]) == _blank(read)
    for table_name, key, entry in (("table_stats", "relid", table.relid),
                                   ("index_stats", "indexrelid", index.indexrelid)):  # fmt: skip
        rows = db.execute(
            f"SELECT {SQL_MARKER} snapshot_id, vanished, idx_blks_hit "
            f"FROM perf_monitoring.{table_name} WHERE {key} = %s ORDER BY snapshot_id",
            (entry,),
        )
        assert rows == [(first.id, False, table.idx_blks_hit if key == "relid" else
                         index.idx_blks_hit), (second.id, True, rows[0][2])]  # fmt: skip


def _queryid_of_p2(reads: list[Snapshot]) -> int:
    """P2's queryid, from the read of "a" (the texts are not in reads: find it by its calls)."""
    (queryid,) = {
        r.queryid
        for r in reads[1].statements
        if r.calls == 2 and not any(x.queryid == r.queryid for x in reads[3].statements)
    }
    return queryid


def test_roll_ups_keep_the_kept_samples_exact_and_say_so(
    migrated_database: Database, reads: list[Snapshot]
) -> None:
    db = migrated_database
    headers = _workload_and_samples(db)
    # Three hours ago: samples 1..5 fall in past hours, the whole of each behind the roll-up age.
    db.execute(
        f"UPDATE {SQL_MARKER} perf_monitoring.snapshots "
        "SET taken_at = date_trunc('hour', now()) - interval '3 hours' + (id - %s) * interval '1 s'",
        (headers[0].id,),
    )
    with connect(db.dsn, autocommit=True, read_only=False) as conn:
        done = compact.roll_up(conn, db.name, age_s=3600, period_s=3600, buckets=10)
    # The collected samples 1 and 3 are folded into 5, the last of their hour; labels stay.
    assert done.samples == 2
    kept = _headers(db)
    assert [(h.id, h.label, h.rollup_seconds) for h in kept] == [
        (headers[1].id, "a", None),
        (headers[3].id, "b", None),
        (headers[4].id, None, 3600),
    ]
    with connect(db.dsn, autocommit=True) as conn:
        store = Store.of(conn)
        states = store.states(kept)
        for header, read in zip(kept, (reads[1], reads[3], reads[4]), strict=True):
            assert header.id is not None
            assert _blank(states[header.id]) == _blank(read)
        ref = f"{kept[0].taken_at.isoformat()}..{kept[2].taken_at.isoformat()}"
        (window,) = store.windows([parse_window(ref)], target=db.name)
    assert any("rolled-up data" in note for note in window.notes), window.notes


def test_downgrade_converts_back_to_full_copies_and_upgrade_to_the_same_rows(
    migrated_database: Database, reads: list[Snapshot]
) -> None:
    db = migrated_database
    headers = _workload_and_samples(db)
    tables = ("statement_stats", "table_stats", "index_stats", "database_stats")

    def counts() -> list[int]:
        return [
            int(db.execute(f"SELECT {SQL_MARKER} count(*) FROM perf_monitoring.{t}")[0][0])
            for t in tables
        ]

    stored = counts()
    downgrade(db.dsn, "0004")
    with connect(db.dsn, autocommit=True) as conn:
        assert not read_layout(conn).samples
        full = Store.of(conn).states(headers)
    # Every snapshot holds a full copy again: its rows are the full read of that moment.
    for header, read in zip(headers, reads, strict=True):
        assert header.id is not None
        copy = full[header.id]
        assert len(copy.statements) == len(read.statements)
        assert _blank(copy).statements == _blank(read).statements
        assert _blank(copy).indexes == _blank(read).indexes
    assert counts()[0] == sum(len(r.statements) for r in reads)
    labels = [r[0] for r in db.execute("SELECT label FROM perf_monitoring.snapshots ORDER BY id")]
    assert labels == [f"{db.name}/sample-{headers[0].id}", "a",
                      f"{db.name}/sample-{headers[2].id}", "b",
                      f"{db.name}/sample-{headers[4].id}"]  # fmt: skip
    upgrade(db.dsn)
    # The same rows per change again, but for tables: a full copy keeps only each table's age
    # (not the transaction ID it was counted from), which moves with every transaction.
    again = counts()
    assert (again[0], again[2], again[3]) == (stored[0], stored[2], stored[3])
    assert stored[1] < again[1] <= sum(len(r.tables) for r in reads)
    with connect(db.dsn, autocommit=True) as conn:
        states = Store.of(conn).states(_headers(db))
    for header, read in zip(headers, reads, strict=True):
        assert header.id is not None
        # relfrozenxid is not kept by a full copy: only the age counted from it
        assert _blank(states[header.id]) == _without_frozen_xid(_blank(read))


def _without_frozen_xid(snapshot: Snapshot) -> Snapshot:
    tables = tuple(dataclasses.replace(r, frozen_xid=None) for r in snapshot.tables)
    return dataclasses.replace(snapshot, tables=tables)
