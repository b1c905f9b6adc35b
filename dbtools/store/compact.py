"""Compact samples: the storage every snapshot and ``dbtools collect`` writes (revision 0005).

A *sample* is one read of a target's statistics (``reading.live.read_sample``): a header row in
``perf_monitoring.snapshots`` (labelled: a snapshot; unlabelled: collected) and **a row per
change**: a statement, table, index or database row is stored only when one of its values
differs from the same entry's values at the target's previous sample. A row holds its entry's
values from its sample on, until the entry's next row; an entry missing from a sample gets a
``vanished`` row there. The state of a target at sample S is, per entry, its latest row at or
before S, not vanished (``load_states``): exactly what a full copy taken at S would hold, so any
window between two samples gives the deltas two full copies would, and the rows stored
between two samples replay every step between them (``replay``).

Two numbers make "did not move" exact for tables: ``xid_age`` grows with every transaction of
the cluster, so it is not stored per row but counted from ``snapshots.xid_now`` and the table's
``frozen_xid`` (``relfrozenxid``) as ``age()`` counts it.

Samples of one target are written one at a time: the writer holds the target's *write lock*
(an advisory lock in the store) from before it reads the target until its sample is committed,
and diffs against the state at the target's latest sample (reloaded when another writer stored
one since). Removing samples (retention, roll-ups, an interrupted capture) goes through
``perf_monitoring.fold_samples``, which keeps every row a remaining sample reads.

Every statement carries ``SQL_MARKER``; a sample is read in autocommit and written by one
statement (data-modifying CTEs, the rows handed over as JSON), so an interrupted write stores
nothing and dbtools sends a measured database no BEGIN or COMMIT.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
import operator
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

import orjson
import psycopg
from psycopg import sql
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from dbtools.db import locks
from dbtools.db.connection import SQL_MARKER
from dbtools.errors import DbtoolsError, UsageError
from dbtools.reading.live import SampleRead, StatementKey, text_key, text_key_parts
from dbtools.reading.rows import (
    TEXT_COLUMN,
    DatabaseRow,
    IndexRow,
    Snapshot,
    SnapshotHeader,
    StatementRow,
    TableRow,
    column_names,
    stored_columns,
)
from dbtools.schema import monitoring
from dbtools.schema.monitoring import is_application
from dbtools.sqltext.parse import is_transaction_control

log = logging.getLogger(__name__)

# Shown for a statement whose text no sample could store (it was evicted in between).
TEXT_NOT_STORED = "<text not stored>"
# Stored in place of the text of dbtools' own statements: the next process (``collect --once``)
# knows them without reading the target's texts again (a read of texts loads the server's
# whole texts file). ``fold_samples`` removes them with the texts no row refers to: they are
# then learnt again once.
OWN_TEXT = f"{SQL_MARKER} dbtools' own statement, never sampled"


@dataclass(frozen=True)
class RowKind:
    """One row table of a sample: its row type, its entries' key, and the values whose change
    makes a new row (*derived* values are not: ``xid_age`` is counted from the header)."""

    row_type: type[Any]
    table: str
    key: tuple[str, ...]
    derived: tuple[str, ...] = ()

    # Computed once per kind: a sample compares every entry (5,000 statements: 5,000 calls).
    @functools.cached_property
    def columns(self) -> tuple[str, ...]:
        """The row type's stored columns, in the table's order."""
        return stored_columns(self.row_type)

    @functools.cached_property
    def compared(self) -> tuple[str, ...]:
        return tuple(c for c in self.columns if c not in self.key and c not in self.derived)

    @functools.cached_property
    def _key_getter(self) -> Callable[[Any], Any]:
        return operator.attrgetter(*self.key)

    @functools.cached_property
    def _values_getter(self) -> Callable[[Any], Any]:
        return operator.attrgetter(*self.compared)

    def key_of(self, row: Any) -> tuple[Any, ...]:
        found = self._key_getter(row)
        return found if len(self.key) > 1 else (found,)

    def values_of(self, row: Any) -> tuple[Any, ...]:
        return self._values_getter(row)  # type: ignore[no-any-return]

    def fingerprint_of(self, row: Any) -> int:
        """``fingerprint`` of the row's compared values (lists, such as ``reloptions``, as
        tuples: hashable)."""
        return fingerprint(
            tuple(tuple(v) if isinstance(v, list) else v for v in self.values_of(row))
        )


STATEMENTS = RowKind(
    StatementRow, monitoring.STATEMENT_STATS, ("dbid", "queryid", "userid", "toplevel")
)
TABLES = RowKind(TableRow, monitoring.TABLE_STATS, ("relid",), derived=("xid_age",))
INDEXES = RowKind(IndexRow, monitoring.INDEX_STATS, ("indexrelid",))
DATABASE = RowKind(DatabaseRow, monitoring.DATABASE_STATS, ("datid",))
KINDS = (STATEMENTS, TABLES, INDEXES, DATABASE)
# The kinds whose state keeps whole rows (a few hundred entries; statements keep fingerprints).
ROW_KINDS = (TABLES, INDEXES, DATABASE)

# The header's columns a writer fills (all but id), in the table's order.
HEADER_COLUMNS = tuple(name for name in column_names(SnapshotHeader) if name != "id")


def _table(name: str) -> sql.Identifier:
    return sql.Identifier(monitoring.MONITORING_SCHEMA, name)


def _names(names: Sequence[str], prefix: str | None = None) -> sql.Composed:
    return sql.SQL(", ").join(
        sql.Identifier(prefix, name) if prefix else sql.Identifier(name) for name in names
    )


_MARKER = sql.SQL(SQL_MARKER)


def same_entry(kind: RowKind, row: str, entry: str) -> sql.Composed:
    """*row*'s key equals *entry*'s (two aliases)."""
    return sql.SQL(" AND ").join(
        sql.SQL("{} = {}").format(sql.Identifier(row, k), sql.Identifier(entry, k))
        for k in kind.key
    )


# -- age() as PostgreSQL counts it ------------------------------------------------------------

_XID_SPACE = 1 << 32
_FIRST_NORMAL_XID = 3
_INT32_MAX = (1 << 31) - 1


def xid_now(tables: Sequence[TableRow]) -> int | None:
    """The transaction ID the tables' ``xid_age`` were counted from (the same for every row of
    one read), or None when no table has a normal ``relfrozenxid``."""
    for row in tables:
        if row.frozen_xid is not None and row.frozen_xid >= _FIRST_NORMAL_XID and row.xid_age:
            return (row.frozen_xid + row.xid_age) % _XID_SPACE
    return None


def xid_age(now: int | None, frozen: int | None) -> int | None:
    """``age(frozen)`` counted from *now*: PostgreSQL's int32 difference, INT_MAX for a
    permanent transaction ID (None when either is unknown)."""
    if now is None or frozen is None:
        return None
    if frozen < _FIRST_NORMAL_XID:
        return _INT32_MAX
    difference = (now - frozen) % _XID_SPACE
    return difference - _XID_SPACE if difference > _INT32_MAX else difference


# -- the state of a target ---------------------------------------------------------------------


# -- statements: compact state, compared without row objects ------------------------------------

_STATEMENT_COLUMNS = STATEMENTS.columns
# An entry's key (``STATEMENTS.key``) in a statement's value tuple.
STATEMENT_KEY_OF = operator.itemgetter(*(_STATEMENT_COLUMNS.index(name) for name in STATEMENTS.key))
_VALUES_OF = operator.itemgetter(*(_STATEMENT_COLUMNS.index(name) for name in STATEMENTS.compared))
_DBID, _QUERYID, _USERID, _TOPLEVEL, _CALLS, _HIT, _READ = (
    _STATEMENT_COLUMNS.index(name)
    for name in ("dbid", "queryid", "userid", "toplevel", "calls", "shared_blks_hit",
                 "shared_blks_read")
)  # fmt: skip
_U64 = (1 << 64) - 1


def entry_key(dbid: int, queryid: int, userid: int, toplevel: bool) -> int:
    """A statement entry's key (``STATEMENTS.key``) packed in one int: a target's state holds
    thousands of them (an int is a quarter of a 4-tuple of ints)."""
    return ((dbid << 32 | userid) << 65) | (queryid & _U64) << 1 | int(toplevel)


def entry_key_parts(key: int) -> tuple[int, int, int, bool]:
    """(dbid, queryid, userid, toplevel) of an ``entry_key``."""
    queryid = key >> 1 & _U64
    ids = key >> 65
    return ids >> 32, queryid - (1 << 64) if queryid >> 63 else queryid, ids & _U32, bool(key & 1)


_U32 = (1 << 32) - 1


def fingerprint(values: tuple[Any, ...]) -> int:
    """The hash of an entry's compared values (``STATEMENTS.compared``): the state keeps it
    instead of the values. Two different values collide with a chance of 2**-64 per moved
    entry (Python's tuple hash); equal values always give equal fingerprints."""
    return hash(values)


@dataclass
class TargetState:
    """A target's entries at its latest sample (``sample_id``; None: it has none): each
    statement's ``fingerprint`` by ``entry_key``, the other kinds' by key (``rows``: what
    moved is read again, what vanished is copied from its latest row in the store); which
    statements are transaction control (left out of ``queries``), and which are dbtools' own
    (never stored), by ``live.text_key``. The store holds the text of every statement of the
    state (``texts``: a sample stores a statement only with its text)."""

    sample_id: int | None = None
    statements: dict[int, int] = field(default_factory=dict)
    rows: dict[str, dict[tuple[Any, ...], int]] = field(
        default_factory=lambda: {kind.table: {} for kind in ROW_KINDS}
    )
    control: set[StatementKey] = field(default_factory=set)
    own: set[StatementKey] = field(default_factory=set)
    server_started_at: datetime | None = None

    @property
    def texts(self) -> set[StatementKey]:
        """The statements whose text the store holds: those of the state (derived, not kept:
        a set of 5,000 keys is a third of a target's state)."""
        return statements_of(self.statements)

    @classmethod
    def of(cls, snapshot: Snapshot) -> TargetState:
        """The state a loaded sample (rows with their texts) stands for."""
        state = cls(snapshot.header.id, server_started_at=snapshot.header.server_started_at)
        for kind, rows in zip(KINDS, _rows_of(snapshot), strict=True):
            if kind is not STATEMENTS:
                state.rows[kind.table] = {kind.key_of(r): kind.fingerprint_of(r) for r in rows}
        for row in snapshot.statements:
            key = text_key(row.dbid, row.queryid)
            state.statements[entry_key(row.dbid, row.queryid, row.userid, row.toplevel)] = (
                fingerprint(STATEMENTS.values_of(row))
            )
            if is_transaction_control(row.query):
                state.control.add(key)
        return state


def _rows_of(snapshot: Snapshot) -> tuple[Sequence[Any], ...]:
    database = (snapshot.database,) if snapshot.database else ()
    return (snapshot.statements, snapshot.tables, snapshot.indexes, database)


def statements_of(keys: Iterable[int]) -> set[StatementKey]:
    """The ``live.text_key``s of ``entry_key``s."""
    return {key >> 97 << 64 | key >> 1 & _U64 for key in keys}


class Unmoved:
    """The statements of one database that did not move since *state* (the target's state a
    streamed scan compared them with, ``live.scan_counters``): their keys and the header's
    sums over them, never their values. They are every statement of the state that the scan
    met with the same fingerprint; being in the state, their texts are stored and none is
    dbtools' own."""

    def __init__(self, state: TargetState) -> None:
        self.state = state
        self._fingerprints, self._control = state.statements, state.control
        self.keys: list[int] = []
        self.queries = self.shared_blks_hit = self.shared_blks_read = 0

    @property
    def count(self) -> int:
        return len(self.keys)

    def summarises(self, values: tuple[Any, ...]) -> bool:
        # called for every entry a scan streams: ``entry_key``, ``fingerprint`` and
        # ``text_key`` inlined (a function call each would be a third of the comparison)
        dbid, queryid, userid, toplevel = STATEMENT_KEY_OF(values)
        key = (dbid << 32 | userid) << 65 | (queryid & _U64) << 1 | toplevel
        if self._fingerprints.get(key) != hash(_VALUES_OF(values)):
            return False
        self.keys.append(key)
        if toplevel:
            self.shared_blks_hit += values[_HIT]
            self.shared_blks_read += values[_READ]
            if dbid << 64 | (queryid & _U64) not in self._control:
                self.queries += values[_CALLS]
        return True


@dataclass(frozen=True)
class Changes:
    """What a sample stores of one row kind: the entries that moved (or appeared), the keys of
    those that vanished, and the new state (``fingerprint_of`` by key)."""

    moved: tuple[Any, ...]
    vanished: tuple[tuple[Any, ...], ...]
    fingerprints: dict[tuple[Any, ...], int]

    def __len__(self) -> int:
        return len(self.moved) + len(self.vanished)


def changes(kind: RowKind, before: dict[tuple[Any, ...], int], rows: Sequence[Any]) -> Changes:
    """The rows of *rows* whose values differ from *before*'s fingerprints (or are new), and
    the keys of *before* missing from *rows*."""
    moved, fingerprints = [], {}
    for row in rows:
        key = kind.key_of(row)
        fingerprints[key] = now = kind.fingerprint_of(row)
        if before.get(key) != now:
            moved.append(row)
    vanished = tuple(key for key in before if key not in fingerprints)
    return Changes(tuple(moved), vanished, fingerprints)


@dataclass(frozen=True)
class StatementChanges:
    """What a sample stores of its statements: the value tuples that moved (or appeared), the
    ``entry_key`` of those that vanished; the new state (``fingerprint`` by ``entry_key``), the
    statements' text keys, and the header's sums over every statement read."""

    moved: tuple[tuple[Any, ...], ...]
    vanished: tuple[int, ...]
    fingerprints: dict[int, int]
    present: set[StatementKey]
    queries: int
    shared_blks_hit: int
    shared_blks_read: int

    def __len__(self) -> int:
        return len(self.moved) + len(self.vanished)


def statement_changes(
    before: dict[int, int],
    statements: Sequence[tuple[Any, ...]],
    control: set[StatementKey],
    unmoved: Unmoved | None = None,
) -> StatementChanges:
    """Compare a read's statements (value tuples) with the state's fingerprints: one pass, no
    row object built; the sums of the top-level statements (*control*: transaction control,
    left out of ``queries``) along the way. *unmoved*: the read's other statements, found
    unmoved against *before* by the scan."""
    moved, fingerprints, present = [], {}, set()
    queries = hit = read = 0
    if unmoved is not None:
        assert unmoved.state.statements is before, "unmoved against another state"
        fingerprints = {key: before[key] for key in unmoved.keys}
        present = statements_of(unmoved.keys)
        queries, hit, read = unmoved.queries, unmoved.shared_blks_hit, unmoved.shared_blks_read
    for values in statements:
        dbid, queryid, userid, toplevel = STATEMENT_KEY_OF(values)
        key = entry_key(dbid, queryid, userid, toplevel)
        fingerprints[key] = now = fingerprint(_VALUES_OF(values))
        if before.get(key) != now:
            moved.append(values)
        statement = text_key(dbid, queryid)
        present.add(statement)
        if toplevel:
            hit += values[_HIT]
            read += values[_READ]
            if statement not in control:
                queries += values[_CALLS]
    vanished = tuple(key for key in before if key not in fingerprints)
    return StatementChanges(tuple(moved), vanished, fingerprints, present, queries, hit, read)


def sample_totals(read: SampleRead, statements: StatementChanges) -> dict[str, Any]:
    """The header's sums a dashboard draws a point per sample from, and ``xid_now``."""
    indexes = [row for row in read.indexes if is_application(row)]
    return {
        "queries": statements.queries,
        "shared_blks_hit": statements.shared_blks_hit,
        "shared_blks_read": statements.shared_blks_read,
        "idx_blks_hit": sum(r.idx_blks_hit for r in indexes),
        "idx_blks_read": sum(r.idx_blks_read for r in indexes),
        "database_stats_reset": read.database.stats_reset if read.database else None,
        "xid_now": xid_now(read.tables),
    }


# -- writing a sample ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SampleSummary:
    """What ``write_sample`` stored: the header, the entries the sample holds (its state) and
    the rows it wrote (those that moved or vanished)."""

    id: int
    target: str
    label: str | None
    taken_at: datetime
    statements: int
    tables: int
    indexes: int
    hidden_statements: int
    rows_stored: int
    restarted: bool = False  # the server restarted since the target's previous sample

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (stable keys; the time in ISO 8601 with its offset)."""
        return {
            "id": self.id,
            "target": self.target,
            "label": self.label,
            "taken_at": self.taken_at.isoformat(),
            "statements": self.statements,
            "tables": self.tables,
            "indexes": self.indexes,
            "hidden_statements": self.hidden_statements,
            "rows_stored": self.rows_stored,
        }


# Revision 0008 on, a row carries its sample's UTC day (the partition it is stored in).
_DAY_COLUMN = {False: sql.SQL(""), True: sql.SQL(", sample_day")}
_DAY_VALUE = {False: sql.SQL(""), True: sql.SQL(", h.sample_day")}


def _rows_cte(kind: RowKind, by_day: bool) -> sql.Composed:
    """The CTE that stores a sample's moved rows of *kind*, handed over as one JSON array and
    typed by the table's row type: objects keyed by column name, or for statements (hundreds a
    sample) arrays of values in ``STATEMENTS.columns`` order, each made that object in SQL: a
    quarter of the bytes, which libpq's output buffer would keep for the session's life."""
    pairs: sql.Composable = sql.SQL("")
    if kind is STATEMENTS:
        pairs = sql.SQL(", ").join(
            sql.SQL("{}, e -> {}").format(sql.Literal(name), sql.Literal(number))
            for number, name in enumerate(kind.columns)
        )
        rows = sql.SQL(
            "jsonb_array_elements({rows}::jsonb) e, "
            "jsonb_populate_record(NULL::{table}, jsonb_build_object({pairs})) r"
        )
    else:
        rows = sql.SQL("jsonb_populate_recordset(NULL::{table}, {rows}::jsonb) r")
    return sql.SQL(
        "{cte} AS (INSERT INTO {table} (snapshot_id, target, {columns}, vanished{day}) "
        "SELECT h.id, %(target)s, {values}, false{day_value} FROM header h, {source} RETURNING 1)"
    ).format(
        cte=sql.Identifier(f"stored_{kind.table}"),
        table=_table(kind.table),
        columns=_names(kind.columns),
        values=_names(kind.columns, "r"),
        source=rows.format(rows=sql.Placeholder(kind.table), table=_table(kind.table), pairs=pairs),
        day=_DAY_COLUMN[by_day],
        day_value=_DAY_VALUE[by_day],
    )


def _vanished_cte(kind: RowKind, by_day: bool) -> sql.Composed:
    """The CTE that stores a vanished row of *kind* per key gone (statements: the arrays
    ``%(gone_dbids)s`` …; other kinds, whose key is one column: ``%(gone_<table>)s``) with the
    values of the entry's latest row: fingerprints are all the state keeps of them, and a
    vanished row's values are never read."""
    gone: sql.Composable
    if kind is STATEMENTS:
        gone = sql.SQL(
            "unnest(%(gone_dbids)s::oid[], %(gone_queryids)s::bigint[], "
            "%(gone_userids)s::oid[], %(gone_toplevel)s::boolean[])"
        )
    else:
        gone = sql.SQL("unnest({}::bigint[])").format(sql.Placeholder(f"gone_{kind.table}"))
    return sql.SQL(
        """{cte} AS (
    INSERT INTO {table} (snapshot_id, target, {columns}, vanished{day})
    SELECT h.id, %(target)s, {latest}, true{day_value} FROM header h, {gone} AS g({key})
    CROSS JOIN LATERAL (
        SELECT * FROM {table} p
        WHERE p.target = %(target)s AND {same}
        ORDER BY p.snapshot_id DESC LIMIT 1) p
    RETURNING 1)"""
    ).format(
        cte=sql.Identifier(f"stored_vanished_{kind.table}"),
        table=_table(kind.table),
        columns=_names(kind.columns),
        latest=_names(kind.columns, "p"),
        gone=gone,
        key=_names(kind.key),
        same=same_entry(kind, "p", "g"),
        day=_DAY_COLUMN[by_day],
        day_value=_DAY_VALUE[by_day],
    )


_WRITE_SQL = """WITH {marker} header AS (
    INSERT INTO {snapshots} ({columns}) VALUES ({values})
    RETURNING id, (taken_at AT TIME ZONE 'UTC')::date AS sample_day
), stored_texts AS (
    INSERT INTO {texts} (target, dbid, queryid, query)
    SELECT %(target)s, * FROM unnest(%(text_dbids)s::oid[], %(text_queryids)s::bigint[],
                                     %(texts)s::text[])
    ON CONFLICT DO NOTHING RETURNING 1
), {rows},
{vanished}
SELECT id FROM header"""


@functools.cache
def write_sql(by_day: bool) -> sql.SQL:
    """One statement stores a sample (the target may be the application's own database: dbtools
    sends it no BEGIN or COMMIT, which PostgreSQL 16+ would count in the application's entry);
    *by_day*: its rows carry the sample's day (revision 0008 on). Composed once: its hundreds of
    parts cost a millisecond a sample to join again."""
    composed = sql.SQL(_WRITE_SQL).format(
        marker=_MARKER,
        snapshots=_table(monitoring.SNAPSHOTS),
        columns=_names(HEADER_COLUMNS),
        values=sql.SQL(", ").join(sql.Placeholder(name) for name in HEADER_COLUMNS),
        texts=_table(monitoring.STATEMENT_TEXTS),
        rows=sql.SQL(",\n").join(_rows_cte(kind, by_day) for kind in KINDS),
        vanished=sql.SQL(",\n").join(_vanished_cte(kind, by_day) for kind in KINDS),
    )
    return sql.SQL(composed.as_string())


def _json_rows(rows: list[dict[str, Any]]) -> str:
    """*rows* as the JSON array ``write_sql`` reads: ``orjson`` gives the same values as
    ``json`` (datetimes in ISO 8601 with their offset), several times faster."""
    return orjson.dumps(rows).decode()


def _stored_rows(kind: RowKind, change: Changes) -> str:
    """*change*'s moved rows as the JSON array ``write_sql`` reads (derived values left NULL)."""
    return _json_rows([
        {name: None if name in kind.derived else getattr(row, name) for name in kind.columns}
        for row in change.moved
    ])  # fmt: skip


def _stored_statements(statements: StatementChanges) -> str:
    """The moved statements' value tuples as the JSON array ``write_sql`` reads (500 of them:
    0.1 ms and 69 kB, against 4.4 ms and 293 kB as objects through ``json``)."""
    return orjson.dumps(statements.moved).decode()


def write_sample(
    conn: psycopg.Connection[Any],
    target: str,
    read: SampleRead,
    state: TargetState,
    *,
    label: str | None = None,
    requests: int | None = None,
    interval_seconds: float | None = None,
    by_day: bool = True,
) -> tuple[SampleSummary, TargetState]:
    """Store *read* as the target's next sample after *state* (the state at its latest sample:
    the caller holds the target's write lock) in one statement; return what was stored and
    the target's new state. *by_day*: the rows carry the sample's day (revision 0008 on; a
    day without its partition gets it, and the write is tried again).

    Raises ``UsageError`` for a label the target already has (nothing is written then).
    """
    control = state.control | {k for k, text in read.texts.items() if is_transaction_control(text)}
    unmoved = read.summary
    assert unmoved is None or isinstance(unmoved, Unmoved)
    statements = statement_changes(state.statements, read.statements, control, unmoved)
    found = {TABLES: read.tables, INDEXES: read.indexes,
             DATABASE: (read.database,) if read.database else ()}  # fmt: skip
    stored = {kind: changes(kind, state.rows[kind.table], found[kind]) for kind in ROW_KINDS}
    header = dataclasses.replace(
        read.header,
        label=label,
        requests=requests,
        target=target,
        interval_seconds=interval_seconds,
        rollup_seconds=None,
        **sample_totals(read, statements),
    )
    stored_texts = state.texts if read.texts else set()
    new_texts = {
        key: text
        for key, text in read.texts.items()
        if key in statements.present and key not in stored_texts
    }
    new_texts |= dict.fromkeys(read.own, OWN_TEXT)
    text_keys = [text_key_parts(key) for key in new_texts]
    gone = [entry_key_parts(key) for key in statements.vanished]
    values: dict[str, Any] = {name: getattr(header, name) for name in HEADER_COLUMNS}
    values["counting_settings"] = _json(header.counting_settings)
    values["counting_overrides"] = _json(header.counting_overrides)
    values |= {kind.table: _stored_rows(kind, change) for kind, change in stored.items()}
    values |= {
        STATEMENTS.table: _stored_statements(statements),
        "target": target,
        "text_dbids": [dbid for dbid, _ in text_keys],
        "text_queryids": [queryid for _, queryid in text_keys],
        "texts": list(new_texts.values()),
        "gone_dbids": [dbid for dbid, _, _, _ in gone],
        "gone_queryids": [queryid for _, queryid, _, _ in gone],
        "gone_userids": [userid for _, _, userid, _ in gone],
        "gone_toplevel": [toplevel for _, _, _, toplevel in gone],
        **{
            f"gone_{kind.table}": [key for (key,) in change.vanished]
            for kind, change in stored.items()
        },
    }
    try:
        try:
            row = conn.execute(write_sql(by_day), values).fetchone()
        except psycopg.errors.CheckViolation as err:
            if not (by_day and _no_partition(err)):
                raise
            add_days(conn, header.taken_at.astimezone(timezone.utc).date())
            row = conn.execute(write_sql(by_day), values).fetchone()
        assert row is not None
        sample_id = row[0]
    except psycopg.errors.UniqueViolation as err:
        if err.diag.constraint_name == "uq_snapshots_target_label":
            raise UsageError(
                f"target {target!r} already has a snapshot labelled {label!r}"
            ) from err
        raise
    after = TargetState(
        sample_id,
        statements.fingerprints,
        {kind.table: change.fingerprints for kind, change in stored.items()},
        {key for key in control if key in statements.present},
        state.own | read.own,
        header.server_started_at,
    )
    summary = SampleSummary(
        id=sample_id,
        target=target,
        label=label,
        taken_at=header.taken_at,
        statements=read.statement_count,
        tables=len(read.tables),
        indexes=len(read.indexes),
        hidden_statements=header.hidden_statements,
        rows_stored=len(statements) + sum(len(change) for change in stored.values()),
        restarted=state.server_started_at not in (None, header.server_started_at),
    )
    log.debug("sample %d of %s stored: %d rows", sample_id, target, summary.rows_stored)
    return summary, after


def _json(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(value)


# -- the write lock, and what the target's latest sample holds ---------------------------------------

WRITE_WAIT_SECONDS = 30.0


@contextmanager
def write_lock(
    conn: psycopg.Connection[Any], target: str, wait_s: float = WRITE_WAIT_SECONDS
) -> Iterator[None]:
    """Hold the target's write lock on the store session *conn* (polled, never blocking) for
    the block; raises ``TargetBusy`` naming the holder when *wait_s* runs out."""
    key = locks.lock_key("write", target)
    found = locks.wait_for_lock(conn, key, wait_s)
    if found is not None:
        raise TargetBusy(
            f"another dbtools session is writing samples of target {target!r}: {found}"
        )
    try:
        yield
    finally:
        if not conn.closed:
            locks.unlock(conn, key)


class TargetBusy(DbtoolsError):
    """Another dbtools process holds a target's lock (its message names the holder)."""


_LATEST_SQL = sql.SQL(
    "SELECT {marker} {columns} FROM {snapshots} WHERE target = %(target)s ORDER BY id DESC LIMIT 1"
).format(
    marker=_MARKER,
    columns=_names(column_names(SnapshotHeader)),
    snapshots=_table(monitoring.SNAPSHOTS),
)


def latest_header(conn: psycopg.Connection[Any], target: str) -> SnapshotHeader | None:
    """The target's latest sample (None: it has none)."""
    with conn.cursor(row_factory=class_row(SnapshotHeader)) as cur:
        return cur.execute(_LATEST_SQL, {"target": target}).fetchone()


def current_state(
    conn: psycopg.Connection[Any],
    target: str,
    state: TargetState | None = None,
    *,
    by_day: bool = False,
) -> TargetState:
    """The state at the target's latest sample: *state* when it is that sample's, else loaded
    from the store (a first sample of this process, or another writer stored one since);
    *by_day* (revision 0008 on): from the entries tables (``load_latest``)."""
    latest = latest_header(conn, target)
    if latest is None:
        return TargetState(own=state.own if state else set())
    assert latest.id is not None
    if state is not None and state.sample_id == latest.id:
        return state
    snapshot = (
        load_latest(conn, target, latest)
        if by_day
        else load_states(conn, target, [latest])[latest.id]
    )
    loaded = TargetState.of(snapshot)
    loaded.own = (state.own if state else set()) | own_statements(conn, target)
    log.info("state of %s loaded at sample %d", target, latest.id)
    return loaded


_OWN_SQL = sql.SQL(
    "SELECT {marker} dbid, queryid FROM {texts} WHERE target = %(target)s AND query = %(own)s"
).format(marker=_MARKER, texts=_table(monitoring.STATEMENT_TEXTS))


def own_statements(conn: psycopg.Connection[Any], target: str) -> set[StatementKey]:
    """The target's statements the store knows as dbtools' own (``OWN_TEXT``)."""
    rows = conn.execute(_OWN_SQL, {"target": target, "own": OWN_TEXT})
    return {text_key(dbid, queryid) for dbid, queryid in rows}


# -- loading states ------------------------------------------------------------------------------


def entries_cte(kind: RowKind) -> sql.Composed:
    """``entries AS (…)``, for a ``WITH RECURSIVE``: the keys of the target's entries of *kind*
    (every one a sample stored), found by a loose scan of the key's index (a probe per entry)."""
    key = list(kind.key)
    return sql.SQL(
        """entries AS (
    (SELECT {key} FROM {table} WHERE target = %(target)s ORDER BY {key} LIMIT 1)
    UNION ALL
    SELECT n.* FROM entries e CROSS JOIN LATERAL (
        SELECT {key} FROM {table} t
        WHERE t.target = %(target)s AND ({t_key}) > ({e_key})
        ORDER BY {key} LIMIT 1) n
)"""
    ).format(
        key=_names(key),
        t_key=_names(key, "t"),
        e_key=_names(key, "e"),
        table=_table(kind.table),
    )


def _row_columns(kind: RowKind) -> sql.Composed:
    """The row type's fields read from a row ``r`` (a statement's text from ``x``, its texts)."""
    return sql.SQL(", ").join(
        sql.SQL("coalesce(x.query, {})").format(sql.Literal(TEXT_NOT_STORED))
        if name == TEXT_COLUMN
        else sql.Identifier("r", name)
        for name in column_names(kind.row_type)
    )


def _texts_join(kind: RowKind) -> sql.Composable:
    if kind is not STATEMENTS:
        return sql.SQL("")
    return sql.SQL(
        "LEFT JOIN {texts} x ON x.target = r.target AND x.dbid = r.dbid AND x.queryid = r.queryid"
    ).format(texts=_table(monitoring.STATEMENT_TEXTS))


def _state_sql(kind: RowKind) -> sql.Composed:
    """Per sample in ``%(ids)s``, each entry's latest row at or before it, not vanished: the
    entries are found with a loose scan of the key, each row with one probe of the key's index."""
    return sql.SQL(
        """WITH RECURSIVE {marker} {entries}
SELECT w.id, {columns}
FROM entries e CROSS JOIN unnest(%(ids)s::bigint[]) AS w(id)
CROSS JOIN LATERAL (
    SELECT * FROM {table} t
    WHERE t.target = %(target)s AND {same} AND t.snapshot_id <= w.id
    ORDER BY t.snapshot_id DESC LIMIT 1) r
{texts}
WHERE NOT r.vanished"""
    ).format(
        marker=_MARKER,
        entries=entries_cte(kind),
        table=_table(kind.table),
        columns=_row_columns(kind),
        same=same_entry(kind, "t", "e"),
        texts=_texts_join(kind),
    )


def load_entries(
    conn: psycopg.Connection[Any], target: str, kind: RowKind, ids: Sequence[int]
) -> dict[int, list[Any]]:
    """Each entry of *kind* as it stood at each sample of *ids*, by sample id (one query)."""
    by_sample: dict[int, list[Any]] = {i: [] for i in ids}
    for values in conn.execute(_state_sql(kind), {"target": target, "ids": list(ids)}):
        by_sample[values[0]].append(kind.row_type(*values[1:]))
    return by_sample


def load_states(
    conn: psycopg.Connection[Any], target: str, headers: Sequence[SnapshotHeader]
) -> dict[int, Snapshot]:
    """The full state of *target* at each sample of *headers*, by sample id (one query per row
    kind, whatever the number of samples); statements with their texts, tables with
    ``xid_age`` counted from the sample's ``xid_now``."""
    ids = [header.id for header in headers if header.id is not None]
    found = {kind: load_entries(conn, target, kind, ids) for kind in KINDS}
    loaded = {}
    for header in headers:
        assert header.id is not None
        loaded[header.id] = _state(header, {kind: found[kind][header.id] for kind in KINDS})
    return loaded


def _state(header: SnapshotHeader, rows: dict[RowKind, list[Any]]) -> Snapshot:
    """A sample's state from its entries' rows (tables' ``xid_age`` counted from the header)."""
    tables = [
        row
        if row.frozen_xid is None
        else dataclasses.replace(row, xid_age=xid_age(header.xid_now, row.frozen_xid))
        for row in rows[TABLES]
    ]
    databases = rows[DATABASE]
    return Snapshot(
        header=header,
        statements=tuple(rows[STATEMENTS]),
        tables=tuple(tables),
        indexes=tuple(rows[INDEXES]),
        database=databases[0] if databases else None,
    )


def _latest_sql(kind: RowKind) -> sql.Composed:
    return sql.SQL(
        """SELECT {marker} {columns} FROM {entries} r {texts}
WHERE r.target = %(target)s AND r.snapshot_id <= %(id)s AND NOT r.vanished"""
    ).format(
        marker=_MARKER,
        columns=_row_columns(kind),
        entries=_table(f"{kind.table}_entries"),
        texts=_texts_join(kind),
    )


def load_latest(conn: psycopg.Connection[Any], target: str, header: SnapshotHeader) -> Snapshot:
    """The target's state at its latest sample *header*, read from the entries tables that the
    row tables' triggers keep (revision 0008 on: one small table a kind, not every day's
    index); the same as ``load_states`` at that sample."""
    params = {"target": target, "id": header.id}
    return _state(
        header,
        {
            kind: [kind.row_type(*v) for v in conn.execute(_latest_sql(kind), params)]
            for kind in KINDS
        },
    )


@dataclass(frozen=True)
class StoredRow:
    """A row stored by a sample: the entry's values from sample ``sample_id`` on (``vanished``:
    the entry is gone there)."""

    sample_id: int
    vanished: bool
    row: Any


def _changes_sql(kind: RowKind) -> sql.Composed:
    return sql.SQL(
        """SELECT {marker} r.snapshot_id, r.vanished, {columns}
FROM {table} r {texts}
WHERE r.target = %(target)s AND r.snapshot_id > %(after)s AND r.snapshot_id <= %(upto)s
ORDER BY r.snapshot_id"""
    ).format(
        marker=_MARKER,
        columns=_row_columns(kind),
        table=_table(kind.table),
        texts=_texts_join(kind),
    )


def load_changes(
    conn: psycopg.Connection[Any], target: str, after: int, upto: int
) -> dict[RowKind, list[StoredRow]]:
    """The rows *target*'s samples stored with ids in (*after*, *upto*], per row kind, in
    sample order (one query per kind): replayed onto the state at sample *after*, they give
    the state at every sample up to *upto*, reading only what moved (tables' ``xid_age`` as
    stored: not counted)."""
    params = {"target": target, "after": after, "upto": upto}
    return {
        kind: [
            StoredRow(values[0], values[1], kind.row_type(*values[2:]))
            for values in conn.execute(_changes_sql(kind), params)
        ]
        for kind in KINDS
    }


# -- replaying stored changes ---------------------------------------------------------------------


def _keyed(kind: RowKind, rows: Iterable[Any]) -> dict[tuple[Any, ...], Any]:
    return {kind.key_of(row): row for row in rows}


def _snapshot(header: SnapshotHeader, rows: dict[RowKind, Sequence[Any]]) -> Snapshot:
    database = rows[DATABASE]
    return Snapshot(
        header=header,
        statements=tuple(rows[STATEMENTS]),
        tables=tuple(rows[TABLES]),
        indexes=tuple(rows[INDEXES]),
        database=database[0] if database else None,
    )


def replay(
    conn: psycopg.Connection[Any], target: str, headers: Sequence[SnapshotHeader]
) -> tuple[list[tuple[Snapshot, Snapshot]], Snapshot, Snapshot]:
    """The steps between consecutive *headers* (compact samples of *target*, ids rising with
    time), each as two partial snapshots holding only the entries that moved in it (and the
    database row): their deltas are the full states' less the entries whose counters did not
    move. Also the full states at the first and last sample. Reads the first state and the
    rows stored after it (``load_changes``), not every sample's state."""
    first, last = headers[0], headers[-1]
    assert first.id is not None and last.id is not None
    loaded = load_states(conn, target, [first])[first.id]
    state = {
        STATEMENTS: _keyed(STATEMENTS, loaded.statements),
        TABLES: _keyed(TABLES, loaded.tables),
        INDEXES: _keyed(INDEXES, loaded.indexes),
        DATABASE: _keyed(DATABASE, (loaded.database,) if loaded.database else ()),
    }
    changes = load_changes(conn, target, first.id, last.id)
    read = dict.fromkeys(KINDS, 0)
    pairs = []
    for before, after in itertools.pairwise(headers):
        assert after.id is not None
        ends: dict[RowKind, tuple[list[Any], list[Any]]] = {}
        for kind in KINDS:
            current, stored = state[kind], changes[kind]
            moved: dict[tuple[Any, ...], Any] = {}  # each entry's row before the step
            database_before = list(current.values()) if kind is DATABASE else []
            while read[kind] < len(stored) and stored[read[kind]].sample_id <= after.id:
                change = stored[read[kind]]
                read[kind] += 1
                key = kind.key_of(change.row)
                if key not in moved:
                    moved[key] = current.get(key)
                if change.vanished:
                    current.pop(key, None)
                else:
                    current[key] = change.row
            if kind is DATABASE:  # whole, moved or not: a step's problems read it
                ends[kind] = (database_before, list(current.values()))
            else:
                ends[kind] = ([row for row in moved.values() if row is not None],
                              [current[key] for key in moved if key in current])  # fmt: skip
        pairs.append((
            _snapshot(before, {kind: start for kind, (start, _) in ends.items()}),
            _snapshot(after, {kind: end for kind, (_, end) in ends.items()}),
        ))  # fmt: skip
    final = _snapshot(last, {kind: list(rows.values()) for kind, rows in state.items()})
    return pairs, loaded, final


# -- removing samples -------------------------------------------------------------------------------

_FOLD_SQL = sql.SQL(
    "SELECT {marker} perf_monitoring.fold_samples(%(target)s, %(ids)s::bigint[])"
).format(marker=_MARKER)


def fold(conn: psycopg.Connection[Any], target: str, ids: Sequence[int]) -> int:
    """Remove the samples *ids* of *target*, keeping every row a remaining sample reads
    (``perf_monitoring.fold_samples``); returns the rows deleted."""
    if not ids:
        return 0
    row = conn.execute(_FOLD_SQL, {"target": target, "ids": list(ids)}).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


@dataclass(frozen=True)
class Purged:
    """What one retention or roll-up step removed."""

    samples: int = 0
    rows: int = 0
    days: int = 0  # day partitions dropped
    rewritten: int = 0  # day partitions rewritten once rolled up

    def __add__(self, other: Purged) -> Purged:
        return Purged(
            self.samples + other.samples,
            self.rows + other.rows,
            self.days + other.days,
            self.rewritten + other.rewritten,
        )


MAX_PURGE_BATCH = 500

_EXPIRED_SQL = sql.SQL(
    "SELECT {marker} id, taken_at FROM {snapshots} "
    "WHERE target = %(target)s AND taken_at < now() - make_interval(secs => %(seconds)s) "
    "ORDER BY id LIMIT %(limit)s"
).format(marker=_MARKER, snapshots=_table(monitoring.SNAPSHOTS))


def purge(
    conn: psycopg.Connection[Any],
    target: str,
    retention_s: float,
    *,
    batch: int = MAX_PURGE_BATCH,
    by_day: bool = True,
) -> Purged:
    """Retention: remove the target's samples older than *retention_s* (at most *batch* of
    them), once the oldest is a tenth of the retention (at most an hour) past it, so that
    retention works in batches rather than a sample at a time. *by_day* (revision 0008 on):
    only their headers go, then the days no sample is left on are dropped whole
    (``drop_days``: the state later samples read carried forward first); below 0008 they are
    folded (their rows deleted)."""
    rows = conn.execute(
        _EXPIRED_SQL, {"target": target, "seconds": retention_s, "limit": batch}
    ).fetchall()
    if not rows:
        return Purged()
    slack = min(3600.0, retention_s / 10)
    oldest = rows[0][1]
    now = conn.execute(f"SELECT {SQL_MARKER} now()").fetchone()[0]  # type: ignore[index]
    if (now - oldest).total_seconds() < retention_s + slack and len(rows) < batch:
        return Purged()
    ids = [sample_id for sample_id, _ in rows]
    if not by_day:
        return Purged(len(ids), fold(conn, target, ids))
    conn.execute(_FORGET_SQL, {"target": target, "ids": ids})
    cutoff = (now - timedelta(seconds=retention_s)).astimezone(timezone.utc).date()
    return Purged(len(ids), days=drop_days(conn, cutoff))


# Retention by day: a removed sample's header goes; its rows go with their day's partition.
_FORGET_SQL = sql.SQL(
    "DELETE {marker} FROM {snapshots} WHERE target = %(target)s AND id = ANY(%(ids)s::bigint[])"
).format(marker=_MARKER, snapshots=_table(monitoring.SNAPSHOTS))


# -- days (revision 0008 on) ----------------------------------------------------------------------

_ADD_DAYS_SQL = sql.SQL(
    "SELECT {marker} perf_monitoring.add_sample_days(%(first)s::date, %(last)s::date)"
).format(marker=_MARKER)
_DROP_DAYS_SQL = sql.SQL(
    "SELECT {marker} perf_monitoring.drop_sample_days(%(before)s::date)"
).format(marker=_MARKER)
DAYS_AHEAD = 1
DDL_TRIES = 3


def _ddl(conn: psycopg.Connection[Any], query: sql.Composed, params: dict[str, Any]) -> int:
    """Run a day function (DDL under its own lock timeout, 2s): tried again, after 1s then
    2s, while the lock is not available (another session reads or writes the table)."""
    for attempt in range(1, DDL_TRIES + 1):
        try:
            row = conn.execute(query, params).fetchone()
            return int(row[0]) if row and row[0] is not None else 0
        except psycopg.errors.LockNotAvailable:
            if attempt == DDL_TRIES:
                raise
            log.info("day partitions locked (try %d); retrying", attempt)
            time.sleep(attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def add_days(conn: psycopg.Connection[Any], first: date, ahead: int = 0) -> int:
    """Create the missing day partitions from *first* to *ahead* days after it; returns how
    many were created."""
    return _ddl(conn, _ADD_DAYS_SQL, {"first": first, "last": first + timedelta(days=ahead)})


def add_days_ahead(conn: psycopg.Connection[Any]) -> int:
    """Today's and the next ``DAYS_AHEAD`` days' partitions (UTC), those missing."""
    today = conn.execute(f"SELECT {SQL_MARKER} (now() AT TIME ZONE 'UTC')::date").fetchone()
    assert today is not None
    return add_days(conn, today[0], DAYS_AHEAD)


def drop_days(conn: psycopg.Connection[Any], before: date) -> int:
    """Drop the day partitions before *before* that no sample is left on, after carrying
    forward the state each target's first sample reads from them; returns how many went."""
    return _ddl(conn, _DROP_DAYS_SQL, {"before": before})


_REWRITE_DAY_SQL = sql.SQL(
    "SELECT {marker} perf_monitoring.rewrite_sample_day(%(day)s::date)"
).format(marker=_MARKER)


def rewrite_day(conn: psycopg.Connection[Any], day: date) -> int:
    """Rewrite *day*'s partitions (CLUSTER on their keys) once every collected sample of that
    day is rolled up, returning the space folded rows left; returns how many were rewritten
    (none while a sample of the day is left to roll up)."""
    return _ddl(conn, _REWRITE_DAY_SQL, {"day": day})


def _no_partition(err: psycopg.Error) -> bool:
    """A row refused for want of a partition: a check violation naming no constraint (``no
    partition of relation … found for row``)."""
    return err.diag.constraint_name is None


_ROLLUP_SQL = sql.SQL(
    """SELECT {marker} id, floor(extract(epoch FROM taken_at) / %(period)s)::bigint AS bucket
FROM {snapshots}
WHERE target = %(target)s AND label IS NULL AND rollup_seconds IS NULL
  AND taken_at < now() - make_interval(secs => %(age)s)
  AND (floor(extract(epoch FROM taken_at) / %(period)s) + 1) * %(period)s
      <= extract(epoch FROM now() - make_interval(secs => %(age)s))
ORDER BY id"""
).format(marker=_MARKER, snapshots=_table(monitoring.SNAPSHOTS))

_MARK_ROLLED_UP = sql.SQL(
    "UPDATE {marker} {snapshots} SET rollup_seconds = %(period)s "
    "WHERE target = %(target)s AND id = ANY(%(ids)s::bigint[])"
).format(marker=_MARKER, snapshots=_table(monitoring.SNAPSHOTS))


def roll_up(
    conn: psycopg.Connection[Any],
    target: str,
    age_s: float,
    period_s: float,
    *,
    buckets: int = 1,
    by_day: bool = True,
) -> Purged:
    """Roll-ups: of the target's collected samples older than *age_s*, keep the latest of each
    whole *period_s* (marked ``rollup_seconds``) and fold the others, at most *buckets*
    periods per call (the oldest first). Labelled snapshots are always kept. *by_day*
    (revision 0008 on): a period that ends a UTC day asks for the day's partitions to be
    rewritten (``rewrite_day``: done once no target has a sample of that day left to roll
    up), so that the space the folds freed is returned."""
    rows = conn.execute(
        _ROLLUP_SQL, {"target": target, "age": age_s, "period": period_s}
    ).fetchall()
    by_bucket: dict[int, list[int]] = {}
    for sample_id, bucket in rows:
        by_bucket.setdefault(bucket, []).append(sample_id)
    done = Purged()
    for bucket in sorted(by_bucket)[:buckets]:
        *doomed, kept = by_bucket[bucket]
        done += Purged(len(doomed), fold(conn, target, doomed))
        conn.execute(_MARK_ROLLED_UP, {"target": target, "period": period_s, "ids": [kept]})
        end = (bucket + 1) * period_s
        if by_day and end % _DAY_S == 0:
            day = datetime.fromtimestamp(end - _DAY_S, timezone.utc).date()
            done += Purged(rewritten=rewrite_day(conn, day))
    return done


_DAY_S = 86400
