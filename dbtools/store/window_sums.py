"""Window sums computed by the database over compact samples: what verify reads instead of rows.

``measures.sum_deltas`` loads every entry's state at both ends of a window and subtracts them
in Python. Over compact samples (``stats.samples``, revision 0005 on) the database can do the
same and return a few rows: an entry has a row inside a window (after its start sample, up to
its end sample) only when one of its values changed, so the window's deltas are those entries'
latest rows inside it minus their state at the start (one probe of the key's index each); every
other entry's delta is zero. The same truth checks as ``stats.deltas``, in SQL:

* an entry whose counters went down, or (extension 1.11+) whose ``stats_since`` moved or that
  is new but started counting before the window, or (before 1.11) whose execution times no
  window of one entry's life can give, is *reset* (its delta is its end value, as there);
* an entry present at the start and gone at the end *vanished* (evicted);
* a table's, an index's or the database's counters going down is a statistics reset.

Statements are classified as ``measures.count_statements`` does (nested, transaction control
by ``sqltext.parse``'s pattern, queries); with a table scope the queries come back per text,
for ``Scope.includes_tables`` to choose (sqlglot is Python). ``tests/test_sql_sums.py`` holds
both ways to the same sums on crafted windows.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from dbtools.db.connection import SQL_MARKER
from dbtools.figures.counting import RoleCalls
from dbtools.figures.deltas import COUNTERS, TIME_TOLERANCE, delta_rows
from dbtools.figures.sums import Scope, StatementCounts, WindowSums
from dbtools.figures.windows import Window
from dbtools.schema import monitoring
from dbtools.sqltext.parse import (
    TRANSACTION_BEGIN_SQL_REGEX,
    TRANSACTION_CONTROL_SQL_REGEX,
    TRANSACTION_END_SQL_REGEX,
)
from dbtools.store import compact
from dbtools.store.compact import TEXT_NOT_STORED, RowKind

_MARKER = sql.SQL(SQL_MARKER)


def _table(name: str) -> sql.Identifier:
    return sql.Identifier(monitoring.MONITORING_SCHEMA, name)


# The windows, numbered from 1: their start and end sample ids and the start's time.
_WINDOWS = sql.SQL(
    "unnest(%(starts)s::bigint[], %(ends)s::bigint[], %(start_ats)s::timestamptz[]) "
    "WITH ORDINALITY AS w(start_id, end_id, start_at, n)"
)


# A window holding more rows of a kind than this is summed entry by entry (two probes per entry
# the target ever had: a cost that does not grow with the window), a shorter one from its rows
# (sorting them costs about what probing an eighth as many entries does).
ROWS_BY_ENTRY = 50_000


def _deltas_sql(
    kind: RowKind, wanted: Sequence[str], extra: Sequence[str] = (), *, by_entry: bool = False
) -> sql.Composed:
    """Per window (``n``), the entries of *kind* that changed inside it: their end values
    (``e``), whether they existed at the start (``started``), whether a counter went down, and
    the delta of each *wanted* counter (the end value for a new or reset entry). *extra*: start
    values carried along as ``s_<name>``. The changed entries are those with a row inside the
    window: found from those rows, or (*by_entry*) by probing each entry's state at the end."""
    key = sql.SQL(", ").join(sql.Identifier(k) for k in kind.key)
    table = _table(kind.table)
    went_down = sql.SQL(" OR ").join(
        sql.SQL("e.{c} < s.{c}").format(c=sql.Identifier(c)) for c in COUNTERS[kind.row_type]
    )
    deltas = sql.SQL(", ").join(
        sql.SQL(
            "CASE WHEN s.snapshot_id IS NULL OR g.went_down THEN e.{c} ELSE e.{c} - s.{c} END "
            "AS {d}"
        ).format(c=sql.Identifier(c), d=sql.Identifier(f"d_{c}"))
        for c in wanted
    )
    carried = sql.SQL("").join(
        sql.SQL(", s.{c} AS {s}").format(c=sql.Identifier(c), s=sql.Identifier(f"s_{c}"))
        for c in extra
    )
    if by_entry:
        changed = sql.SQL(
            """CROSS JOIN (WITH RECURSIVE {entries} SELECT * FROM entries) k
CROSS JOIN LATERAL (
    SELECT * FROM (
        SELECT * FROM {table} t
        WHERE t.target = %(target)s AND {same} AND t.snapshot_id <= w.end_id
        ORDER BY t.snapshot_id DESC LIMIT 1) last
    WHERE last.snapshot_id > w.start_id) e"""
        ).format(entries=compact.entries_cte(kind), table=table,
                 same=compact.same_entry(kind, "t", "k"))  # fmt: skip
    else:
        changed = sql.SQL(
            """CROSS JOIN LATERAL (
    SELECT DISTINCT ON ({key}) * FROM {table}
    WHERE target = %(target)s AND snapshot_id > w.start_id AND snapshot_id <= w.end_id
    ORDER BY {key}, snapshot_id DESC) e"""
        ).format(key=key, table=table)
    return sql.SQL(
        """SELECT w.n, w.start_at, e.*, s.snapshot_id IS NOT NULL AS started, g.went_down,
       {deltas}{carried}
FROM {windows}
{changed}
LEFT JOIN LATERAL (
    SELECT * FROM {table} t
    WHERE t.target = e.target AND {same} AND t.snapshot_id <= w.start_id
    ORDER BY t.snapshot_id DESC LIMIT 1) s ON NOT s.vanished
CROSS JOIN LATERAL (SELECT s.snapshot_id IS NOT NULL AND ({went_down}) AS went_down) g"""
    ).format(
        went_down=went_down,
        deltas=deltas,
        carried=carried,
        windows=_WINDOWS,
        changed=changed,
        table=table,
        same=compact.same_entry(kind, "t", "e"),
    )


# A statement entry that started counting again without a counter going down (``stats.deltas``:
# ``stats_since`` on 1.11+, else execution times no single entry's life can give).
_RESTARTED = sql.SQL(
    """CASE WHEN stats_since IS NULL THEN
    started AND s_min_exec_time IS NOT NULL AND s_max_exec_time IS NOT NULL
    AND min_exec_time IS NOT NULL AND max_exec_time IS NOT NULL
    AND (max_exec_time < s_max_exec_time OR min_exec_time > s_min_exec_time
         OR (calls > s_calls AND NOT (total_exec_time - s_total_exec_time) / (calls - s_calls)
             BETWEEN min_exec_time - {tolerance} * greatest(abs(max_exec_time), 1.0)
                 AND max_exec_time + {tolerance} * greatest(abs(max_exec_time), 1.0)))
ELSE (started AND s_stats_since IS NOT NULL AND s_stats_since <> stats_since)
     OR (NOT started AND stats_since < start_at)
END"""
).format(tolerance=sql.Literal(TIME_TOLERANCE))


# Per window: the entries reset or gone, then the calls of each class (per text for a table
# scope), with the queries' blocks and time; then every role's top-level calls (whatever the
# scope) by what they do to a transaction block, for the transaction cross-check.
@functools.cache
def _statement_sums(by_entry: bool) -> sql.Composed:
    return sql.SQL(
        """WITH {marker} d AS (
{deltas}
), c AS (
    SELECT d.*, d.d_calls <> 0 AND NOT d.vanished
               AND (cardinality(%(roles)s::text[]) = 0 OR d.rolname = ANY (%(roles)s::text[]))
               AS counted,
           coalesce(x.query, {not_stored}) AS text
    FROM d LEFT JOIN {texts} x
      ON x.target = d.target AND x.dbid = d.dbid AND x.queryid = d.queryid
), k AS (
    SELECT c.*, CASE WHEN NOT toplevel THEN 'nested'
                     WHEN text ~* %(control)s THEN 'control'
                     ELSE 'query' END AS class
    FROM c WHERE counted
)
SELECT n, 'reset' AS class, NULL AS text,
       (count(*) FILTER (WHERE NOT vanished AND (went_down OR {restarted}))
        + count(*) FILTER (WHERE vanished AND started))::bigint, 0::bigint, 0::bigint,
       0::bigint, 0::float8
FROM c GROUP BY n
UNION ALL
SELECT n, class, CASE WHEN %(by_text)s AND class = 'query' THEN text END,
       sum(d_calls)::bigint, count(*), sum(d_shared_blks_hit)::bigint,
       sum(d_shared_blks_read)::bigint, sum(d_total_exec_time)::float8
FROM k GROUP BY 1, 2, 3
UNION ALL
SELECT n, CASE WHEN text ~* %(begin)s THEN 'role:begin' WHEN text ~* %(end)s THEN 'role:end'
               ELSE 'role:other' END,
       coalesce(rolname, ''), sum(d_calls)::bigint, 0::bigint, 0::bigint, 0::bigint, 0::float8
FROM c WHERE toplevel AND d_calls <> 0 AND NOT vanished GROUP BY 1, 2, 3"""
    ).format(
        marker=_MARKER,
        deltas=_deltas_sql(
            compact.STATEMENTS,
            ("calls", "shared_blks_hit", "shared_blks_read", "total_exec_time"),
            ("stats_since", "min_exec_time", "max_exec_time", "calls", "total_exec_time"),
            by_entry=by_entry,
        ),
        not_stored=sql.Literal(TEXT_NOT_STORED),
        texts=_table(monitoring.STATEMENT_TEXTS),
        restarted=_RESTARTED,
    )


# Per window: whether a table's counters went down, and the maintenance runs.
@functools.cache
def _table_sums(by_entry: bool) -> sql.Composed:
    return sql.SQL(
        """WITH {marker} d AS (
{deltas}
)
SELECT n, bool_or(went_down), sum(d_autovacuum_count + d_autoanalyze_count)::bigint
FROM d WHERE NOT vanished GROUP BY n"""
    ).format(
        marker=_MARKER,
        deltas=_deltas_sql(
            compact.TABLES, ("autovacuum_count", "autoanalyze_count"), by_entry=by_entry
        ),
    )


# Per window: whether an index's counters went down and the application's index blocks (name
# NULL), then the scans of each asked index there at the window's end: from its row inside the
# window, else (0 scans) from its state at the end, found by a loose scan of the entries (run
# only when an asked index has no row inside some window: a one-time filter skips it).
@functools.cache
def _index_sums(by_entry: bool) -> sql.Composed:
    return sql.SQL(
        """WITH RECURSIVE {marker} d AS (
{deltas}
), missing AS (
    SELECT w.n, a.name FROM {windows} CROSS JOIN unnest(%(indexes)s::text[]) AS a(name)
    EXCEPT
    SELECT n, schemaname || '.' || indexrelname FROM d WHERE NOT vanished
), {entries}
SELECT n, NULL, bool_or(went_down),
       coalesce(sum(d_idx_blks_hit) FILTER (WHERE schemaname <> ALL (%(left_out)s)), 0)::bigint,
       coalesce(sum(d_idx_blks_read) FILTER (WHERE schemaname <> ALL (%(left_out)s)), 0)::bigint
FROM d WHERE NOT vanished GROUP BY n
UNION ALL
SELECT n, schemaname || '.' || indexrelname, NULL, d_idx_scan, NULL FROM d
WHERE NOT vanished AND schemaname || '.' || indexrelname = ANY (%(indexes)s::text[])
UNION ALL
SELECT w.n, r.name, NULL, 0, NULL
FROM entries e CROSS JOIN {windows} CROSS JOIN LATERAL (
    SELECT t.schemaname || '.' || t.indexrelname AS name, t.vanished FROM {table} t
    WHERE t.target = %(target)s AND t.indexrelid = e.indexrelid AND t.snapshot_id <= w.end_id
    ORDER BY t.snapshot_id DESC LIMIT 1) r
WHERE EXISTS (SELECT FROM missing) AND NOT r.vanished
  AND (w.n, r.name) IN (SELECT n, name FROM missing)"""
    ).format(
        marker=_MARKER,
        deltas=_deltas_sql(
            compact.INDEXES, ("idx_blks_hit", "idx_blks_read", "idx_scan"), by_entry=by_entry
        ),
        entries=compact.entries_cte(compact.INDEXES),
        windows=_WINDOWS,
        table=_table(monitoring.INDEX_STATS),
    )


def _rows_inside(kind: RowKind) -> sql.Composed:
    return sql.SQL(
        "(SELECT count(*) >= %(rows)s FROM (SELECT FROM {table} WHERE target = %(target)s "
        "AND snapshot_id > w.start_id AND snapshot_id <= w.end_id LIMIT %(rows)s) r)"
    ).format(table=_table(kind.table))


# Per kind of row, whether a window holds ROWS_BY_ENTRY rows of it or more (counting no further).
_LONG_WINDOWS = sql.SQL(
    "SELECT {marker} coalesce(bool_or({statements}), false), coalesce(bool_or({tables}), false), "
    "coalesce(bool_or({indexes}), false) FROM {windows}"
).format(
    marker=_MARKER,
    statements=_rows_inside(compact.STATEMENTS),
    tables=_rows_inside(compact.TABLES),
    indexes=_rows_inside(compact.INDEXES),
    windows=_WINDOWS,
)


@dataclass
class _Sums:
    """One window's sums as the rows arrive."""

    entries_reset: int = 0
    nested: int = 0
    control: int = 0
    queries: int = 0
    statements: int = 0
    hit: int = 0
    read: int = 0
    exec_time: float = 0.0
    tables_reset: bool = False
    maintenance_runs: int = 0
    indexes_reset: bool = False
    index_hit: int = 0
    index_read: int = 0
    scans: dict[str, int] = field(default_factory=dict)
    by_role: dict[str, RoleCalls] = field(default_factory=dict)


def sum_windows(
    conn: psycopg.Connection[Any],
    target: str,
    windows: Sequence[Window],
    scope: Scope,
    *,
    indexes: Sequence[str] = (),
) -> list[WindowSums]:
    """The sums of each of *windows* (of *target*'s compact samples) over the statements in
    *scope*, computed by the database (one statement per row kind, whatever the number of
    windows); ``index_scans`` holds the indexes *indexes* names ("schema.index") that are there
    at the window's end."""
    params: dict[str, Any] = {
        "target": target,
        "starts": [w.start.id for w in windows],
        "ends": [w.end.id for w in windows],
        "start_ats": [w.start.taken_at for w in windows],
        "roles": sorted(scope.roles),
        "control": TRANSACTION_CONTROL_SQL_REGEX,
        "begin": TRANSACTION_BEGIN_SQL_REGEX,
        "end": TRANSACTION_END_SQL_REGEX,
        "by_text": bool(scope.tables),
        "left_out": list(monitoring.LEFT_OUT_SCHEMAS),
        "indexes": list(indexes),
    }
    found = {n: _Sums() for n in range(1, len(windows) + 1)}
    long_statements, long_tables, long_indexes = conn.execute(
        _LONG_WINDOWS, {**params, "rows": ROWS_BY_ENTRY}
    ).fetchone() or (False, False, False)
    for n, kind, text, calls, entries, hit, read, exec_time in conn.execute(
        _statement_sums(long_statements), params
    ):
        sums = found[n]
        if kind == "reset":
            sums.entries_reset = calls
        elif kind.startswith("role:"):
            sums.by_role[text] = sums.by_role.get(text, RoleCalls()).add(kind[5:], calls)
        elif kind == "nested":
            sums.nested += calls
        elif kind == "control":
            sums.control += calls
        elif text is None or scope.includes_text(text):
            sums.queries += calls
            sums.statements += entries
            sums.hit += hit
            sums.read += read
            sums.exec_time += exec_time
    for n, went_down, runs in conn.execute(_table_sums(long_tables), params):
        found[n].tables_reset, found[n].maintenance_runs = went_down, runs
    for n, name, went_down, value, read in conn.execute(_index_sums(long_indexes), params):
        if name is None:
            found[n].indexes_reset, found[n].index_hit, found[n].index_read = went_down, value, read
        else:
            found[n].scans[name] = value
    databases = compact.load_entries(conn, target, compact.DATABASE, _sample_ids(windows))
    return [
        _window_sums(found[n], databases[w.start.id], databases[w.end.id])  # type: ignore[index]
        for n, w in enumerate(windows, start=1)
    ]


def _sample_ids(windows: Sequence[Window]) -> list[int]:
    """The samples at the windows' ends, each once."""
    return sorted({h.id for w in windows for h in (w.start, w.end) if h.id is not None})


def _window_sums(sums: _Sums, start_db: list[Any], end_db: list[Any]) -> WindowSums:
    database = delta_rows(start_db, end_db, lambda row: row.datid)
    row = database.rows[0] if database.rows else None
    return WindowSums(
        counts=StatementCounts(
            sums.queries,
            sums.statements,
            sums.control,
            sums.nested,
            sums.hit,
            sums.read,
            sums.exec_time,
        ),
        statement_entries_reset=sums.entries_reset,
        counters_reset=sums.tables_reset or sums.indexes_reset or bool(database.reset),
        database_stats_reset=bool(
            start_db and end_db and start_db[0].stats_reset != end_db[0].stats_reset
        ),
        committed=row.xact_commit if row else 0,
        sessions=row.sessions if row else None,
        maintenance_runs=sums.maintenance_runs,
        index_blks_hit=sums.index_hit,
        index_blks_read=sums.index_read,
        index_scans=sums.scans,
        calls_by_role=sums.by_role,
    )


_ROLES_SQL = sql.SQL(
    """SELECT {marker} DISTINCT s.rolname
FROM (SELECT DISTINCT {key} FROM {table}
      WHERE target = %(target)s AND rolname = ANY (%(roles)s::text[])) e
CROSS JOIN unnest(%(ids)s::bigint[]) AS w(id)
CROSS JOIN LATERAL (
    SELECT rolname, vanished FROM {table} t
    WHERE t.target = %(target)s AND {same} AND t.snapshot_id <= w.id
    ORDER BY t.snapshot_id DESC LIMIT 1) s
WHERE NOT s.vanished AND s.rolname = ANY (%(roles)s::text[])"""
).format(
    marker=_MARKER,
    key=sql.SQL(", ").join(sql.Identifier(k) for k in compact.STATEMENTS.key),
    table=_table(compact.STATEMENTS.table),
    same=sql.SQL(" AND ").join(
        sql.SQL("t.{k} = e.{k}").format(k=sql.Identifier(k)) for k in compact.STATEMENTS.key
    ),
)


def roles_in_windows(
    conn: psycopg.Connection[Any],
    target: str,
    windows: Sequence[Window],
    roles: frozenset[str],
) -> frozenset[str]:
    """The roles of *roles* with a statement entry at either end of one of *windows*."""
    params = {"target": target, "roles": sorted(roles), "ids": _sample_ids(windows)}
    return frozenset(name for (name,) in conn.execute(_ROLES_SQL, params))
