"""Deltas between two snapshots: what each counter did inside a window.

Counters are subtracted (end minus start); names, gauges and settings are taken from the end.
An entry whose counters went down, or that started counting again (``stats_since`` on 1.11+;
before it, an execution time no window of the entry's life can give: its max fell, its min
rose, or the window's mean lies outside them), is reported as ``reset``; one missing from the
end as ``vanished``. Pure: no database access.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any

from dbtools.reading.rows import DatabaseRow, IndexRow, Row, Snapshot, StatementRow, TableRow

# Cumulative counters: what a delta subtracts. Everything else (names, gauges such as
# n_live_tup, sizes, settings) is taken from the end snapshot.
COUNTERS: dict[type[Any], tuple[str, ...]] = {
    StatementRow: (
        "calls", "rows", "plans", "total_exec_time", "total_plan_time",
        "shared_blks_hit", "shared_blks_read", "shared_blks_dirtied", "shared_blks_written",
        "local_blks_hit", "local_blks_read", "temp_blks_read", "temp_blks_written",
        "shared_blk_read_time", "shared_blk_write_time", "wal_records", "wal_bytes",
    ),
    TableRow: (
        "seq_scan", "seq_tup_read", "idx_scan", "idx_tup_fetch", "n_tup_ins", "n_tup_upd",
        "n_tup_del", "n_tup_hot_upd", "vacuum_count", "autovacuum_count", "analyze_count",
        "autoanalyze_count", "heap_blks_read", "heap_blks_hit", "idx_blks_read", "idx_blks_hit",
    ),
    IndexRow: ("idx_scan", "idx_tup_read", "idx_tup_fetch", "idx_blks_read", "idx_blks_hit"),
    DatabaseRow: (
        "xact_commit", "xact_rollback", "blks_read", "blks_hit", "tup_returned", "tup_fetched",
        "tup_inserted", "tup_updated", "tup_deleted", "conflicts", "temp_files", "temp_bytes",
        "deadlocks", "blk_read_time", "blk_write_time",
    ),
}  # fmt: skip


def statement_key(row: StatementRow) -> tuple[int, int, int, bool]:
    """How pg_stat_statements keys an entry: (dbid, userid, queryid, toplevel)."""
    return (row.dbid, row.userid, row.queryid, row.toplevel)


@dataclass(frozen=True)
class Deltas:
    """Rows of one kind whose counters are the window's deltas, and what did not add up."""

    rows: tuple[Any, ...]
    reset: tuple[Any, ...] = ()  # end rows whose counters went down, or that restarted counting
    vanished: tuple[Any, ...] = ()  # start rows missing from the end snapshot


def delta_rows(start: Iterable[Row], end: Iterable[Row], key: Callable[[Row], Hashable]) -> Deltas:
    """Each end row with its counters minus the start row's (a row new in the window keeps
    its counts: it started counting inside it). Rows whose counters went down count as
    ``reset``; their delta is their end value."""
    before = {key(row): row for row in start}
    rows, reset = [], []
    seen = set()
    for row in end:
        k = key(row)
        seen.add(k)
        old = before.get(k)
        if old is None:
            rows.append(row)
            continue
        names = COUNTERS[type(row)]
        changes = {name: getattr(row, name) - getattr(old, name) for name in names}
        if any(value < 0 for value in changes.values()):
            reset.append(row)
            rows.append(row)
        else:
            rows.append(dataclasses.replace(row, **changes))
    vanished = tuple(row for k, row in before.items() if k not in seen)
    return Deltas(tuple(rows), tuple(reset), vanished)


def statement_deltas(start: Snapshot, end: Snapshot) -> Deltas:
    """Per-statement deltas, keyed as pg_stat_statements keys entries.

    On extension 1.11+ an entry whose ``stats_since`` moved (reset or evicted and re-created)
    counts as reset, and so does an entry new to the end snapshot that started counting
    before the window did.
    """
    deltas = delta_rows(start.statements, end.statements, statement_key)
    before = {statement_key(row): row for row in start.statements}
    restarted = []
    for row in end.statements:
        old = before.get(statement_key(row))
        if row.stats_since is None:
            if old is not None and _impossible_times(old, row):
                restarted.append(row)
            continue
        if (old is not None and old.stats_since not in (None, row.stats_since)) or (
            old is None and row.stats_since < start.header.taken_at
        ):
            restarted.append(row)
    if not restarted:
        return deltas
    known = {statement_key(row) for row in deltas.reset}
    extra = tuple(row for row in restarted if statement_key(row) not in known)
    return dataclasses.replace(deltas, reset=deltas.reset + extra)


# Relative slack for floating-point sums when comparing a mean with the min and max.
TIME_TOLERANCE = 1e-6


def _impossible_times(old: StatementRow, new: StatementRow) -> bool:
    """Whether *new*'s execution times cannot follow *old*'s in one entry's life: its max fell,
    its min rose, or the calls between the two took a mean time outside [min, max]. (Without
    ``stats_since``, before extension 1.11: there a min/max-only reset is legitimate.)"""
    if None in (old.min_exec_time, old.max_exec_time, new.min_exec_time, new.max_exec_time):
        return False  # a snapshot taken before revision 0004
    assert old.min_exec_time is not None and old.max_exec_time is not None
    assert new.min_exec_time is not None and new.max_exec_time is not None
    if new.max_exec_time < old.max_exec_time or new.min_exec_time > old.min_exec_time:
        return True
    calls = new.calls - old.calls
    if calls <= 0:
        return False
    mean = (new.total_exec_time - old.total_exec_time) / calls
    slack = TIME_TOLERANCE * max(abs(new.max_exec_time), 1.0)
    return not new.min_exec_time - slack <= mean <= new.max_exec_time + slack


def table_deltas(start: Snapshot, end: Snapshot) -> Deltas:
    return delta_rows(start.tables, end.tables, lambda row: row.relid)


def index_deltas(start: Snapshot, end: Snapshot) -> Deltas:
    return delta_rows(start.indexes, end.indexes, lambda row: row.indexrelid)


def database_delta(start: Snapshot, end: Snapshot) -> Deltas:
    return delta_rows(
        [start.database] if start.database else [],
        [end.database] if end.database else [],
        lambda row: row.datid,
    )


@dataclass(frozen=True)
class WindowDeltas:
    """Every kind of row's deltas between two snapshots."""

    statements: Deltas
    tables: Deltas
    indexes: Deltas
    database: Deltas

    @property
    def database_row(self) -> DatabaseRow | None:
        return self.database.rows[0] if self.database.rows else None


def window_deltas(start: Snapshot, end: Snapshot) -> WindowDeltas:
    """The deltas of statements, tables, indexes and the database from *start* to *end*."""
    return WindowDeltas(
        statement_deltas(start, end),
        table_deltas(start, end),
        index_deltas(start, end),
        database_delta(start, end),
    )
