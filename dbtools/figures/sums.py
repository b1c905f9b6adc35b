"""What a window's entries add up to over a scope: the sums every figure of a window is computed
from (``measures``).

The store answers them (``Store.sums``): summed by the database over compact samples
(``store.window_sums``), or from the two loaded states. ``sum_deltas`` is the reference: the
window's per-entry deltas (``deltas``) summed in Python, which the database's sums are tested
against (tests/test_sql_sums.py). Pure: no database access.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from dbtools.figures import counting
from dbtools.figures.windows import Window
from dbtools.reading.rows import StatementRow
from dbtools.schema.monitoring import InSchema, is_application
from dbtools.sqltext.parse import TableRef, is_transaction_control, touches_any, transaction_role

# -- the application's tables and indexes -------------------------------------------------------

S = TypeVar("S", bound=InSchema)


def application_rows(rows: Iterable[S]) -> tuple[S, ...]:
    """The rows of *rows* that are the application's."""
    return tuple(row for row in rows if is_application(row))


# -- scope and classification -------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """Which statements count: all of the target database's (dbtools' own never), or only
    those run by *roles* and/or touching one of *tables*."""

    roles: frozenset[str] = frozenset()
    tables: frozenset[TableRef] = frozenset()

    def includes_role(self, row: StatementRow) -> bool:
        return not self.roles or row.rolname in self.roles

    def includes_tables(self, row: StatementRow) -> bool:
        return self.includes_text(row.query)

    def includes_text(self, text: str) -> bool:
        """Whether a statement with *text* touches one of the scope's tables (any, without)."""
        return not self.tables or touches_any(text, self.tables)

    def as_dict(self) -> dict[str, list[str]]:
        return {"roles": sorted(self.roles), "tables": sorted(str(t) for t in self.tables)}


# Every statement of the target database (dbtools' own never): the default scope.
ALL_STATEMENTS = Scope()


@dataclass(frozen=True)
class StatementCounts:
    """Calls in a window, split as verify reports them."""

    queries: int = 0  # application statements: the headline
    statements: int = 0  # distinct application statements called in the window
    transaction_calls: int = 0  # BEGIN/COMMIT/ROLLBACK…, shown apart
    nested_calls: int = 0  # statements run inside functions (toplevel = false), not sent
    # The queries' own: shared blocks (a top-level statement's include its nested statements')
    # and execution time (including the functions they call).
    shared_blks_hit: int = 0
    shared_blks_read: int = 0
    exec_time_ms: float = 0.0


def count_statements(rows: Iterable[StatementRow], scope: Scope) -> StatementCounts:
    """Split the window's statement deltas into queries, transaction control and nested calls."""
    queries = statements = transactions = nested = hit = read = 0
    exec_time = 0.0
    for row in rows:
        if row.calls == 0 or not scope.includes_role(row):
            continue
        if not row.toplevel:
            nested += row.calls
        elif is_transaction_control(row.query):
            transactions += row.calls
        elif scope.includes_tables(row):
            queries += row.calls
            statements += 1
            hit += row.shared_blks_hit
            read += row.shared_blks_read
            exec_time += row.total_exec_time
    return StatementCounts(queries, statements, transactions, nested, hit, read, exec_time)


# -- sums ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WindowSums:
    """What a window's entries add up to: all its measures need beyond its bounds.

    The store's answer (``Store.sums``): by the database over compact samples
    (``store.window_sums``), else from the two loaded states (``sum_deltas``, the reference).
    Both give the same sums (tests/test_sql_sums.py).
    """

    counts: StatementCounts
    statement_entries_reset: int  # entries reset, re-created or evicted inside the window
    counters_reset: bool  # a table's, an index's or the database's counters went down
    database_stats_reset: bool  # pg_stat_database.stats_reset moved
    committed: int  # pg_stat_database.xact_commit
    sessions: int | None  # pg_stat_database.sessions (None: not counted, or no database row)
    maintenance_runs: int  # autovacuum and autoanalyze runs on the tables
    index_blks_hit: int  # of the application's indexes
    index_blks_read: int
    index_scans: Mapping[
        str, int
    ]  # idx_scan by "schema.index" (the database's sums: the indexes asked)
    # Every role's top-level calls, whatever the scope (the transaction cross-check's).
    calls_by_role: Mapping[str, counting.RoleCalls] = field(default_factory=dict)


def calls_by_role(rows: Iterable[StatementRow]) -> dict[str, counting.RoleCalls]:
    """Every role's top-level calls in *rows* (a window's deltas), by what each does to a
    transaction block."""
    found: dict[str, counting.RoleCalls] = {}
    for row in rows:
        if row.toplevel and row.calls:
            role = row.rolname or ""
            found[role] = found.get(role, counting.RoleCalls()).add(
                transaction_role(row.query), row.calls
            )
    return found


def sum_deltas(window: Window, scope: Scope = ALL_STATEMENTS) -> WindowSums:
    """The sums of *window*'s deltas (``window.deltas``: its states loaded) over the statements
    in *scope*: the reference the database's sums are tested against."""
    deltas = window.deltas
    assert window.states is not None
    start_db, end_db = window.states[0].database, window.states[1].database
    database = deltas.database_row
    indexes = application_rows(deltas.indexes.rows)
    return WindowSums(
        counts=count_statements(deltas.statements.rows, scope),
        statement_entries_reset=len(deltas.statements.reset) + len(deltas.statements.vanished),
        counters_reset=any(bool(kind.reset) for kind in (deltas.tables, deltas.indexes, deltas.database)),
        database_stats_reset=bool(start_db and end_db and start_db.stats_reset != end_db.stats_reset),
        committed=database.xact_commit if database else 0,
        sessions=database.sessions if database else None,
        maintenance_runs=sum(t.autovacuum_count + t.autoanalyze_count for t in deltas.tables.rows),
        index_blks_hit=sum(row.idx_blks_hit for row in indexes),
        index_blks_read=sum(row.idx_blks_read for row in indexes),
        index_scans={f"{row.schemaname}.{row.indexrelname}": row.idx_scan for row in deltas.indexes.rows},
        calls_by_role=calls_by_role(deltas.statements.rows),
    )  # fmt: skip
