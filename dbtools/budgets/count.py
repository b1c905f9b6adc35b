"""What a block of the application's code sent to PostgreSQL, counted on the server.

A ``StatementCounter`` reads the pg_stat_statements entries of *one database* (the one its DSN
names) before and after a block; the count is their deltas. That database is the scope: a
database per test worker keeps other workers and every other session on the server out of the
count (docs/query-budgets.md, "What is counted"). dbtools' own reads carry its marker and never
count. The split is verify's (``figures.sums.count_statements``): *statements* are the top-level
statements the application sent, transaction control (BEGIN, COMMIT…) apart, and *nested* the
statements run inside them (triggers, functions, foreign-key checks; counted only with
``pg_stat_statements.track = all``). Families are the report's (``sqltext.families``), their
texts scrubbed.

A count is exact or refused: ``CountNotExact`` when an entry was reset or evicted inside the
block, or when entries the reading role may not see moved.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from psycopg import sql

from dbtools.db.connection import SQL_MARKER, connect, normalise_dsn
from dbtools.errors import DbtoolsError
from dbtools.figures.deltas import delta_rows, statement_key
from dbtools.figures.sums import Scope, count_statements
from dbtools.reading.live import prepare, read_statements
from dbtools.reading.rows import StatementRow
from dbtools.sqltext.families import Classifier, StatementShape
from dbtools.sqltext.parse import is_transaction_control


class CountNotExact(DbtoolsError):
    """pg_stat_statements cannot give this block's exact count (reset, eviction, hidden rows)."""


@dataclass(frozen=True)
class FamilyCount:
    """One statement family's calls in a block (``nested``: run inside another statement)."""

    family: str  # the fingerprint (``sqltext.families``)
    label: str  # what it is, in words: ``lookup by id on public.trip_requests``
    calls: int
    nested: bool
    sql: str  # one of its texts, scrubbed
    point_lookup: bool = False  # one row by one value per call: an N+1 when it multiplies


@dataclass(frozen=True)
class QueryCount:
    """What a block (or several, added up) sent: its statements, with nested statements and
    transaction control apart, and the families they belong to."""

    statements: int = 0
    nested: int = 0
    transactions: int = 0
    families: tuple[FamilyCount, ...] = ()
    requests: int | None = None  # the requests the block served, when the test says

    @property
    def per_request(self) -> float | None:
        return self.statements / self.requests if self.requests else None

    def __add__(self, other: QueryCount) -> QueryCount:
        requests = (
            None
            if self.requests is None and other.requests is None
            else (self.requests or 0) + (other.requests or 0)
        )
        return QueryCount(
            statements=self.statements + other.statements,
            nested=self.nested + other.nested,
            transactions=self.transactions + other.transactions,
            families=merge_families((*self.families, *other.families)),
            requests=requests,
        )


def merge_families(families: Iterable[FamilyCount]) -> tuple[FamilyCount, ...]:
    """One line per (family, nested), calls added up; top-level first, most calls first."""
    merged: dict[tuple[str, bool], FamilyCount] = {}
    for family in families:
        key = (family.family, family.nested)
        if key in merged:
            seen = merged[key]
            family = FamilyCount(seen.family, seen.label, seen.calls + family.calls,
                                 seen.nested, seen.sql, seen.point_lookup)  # fmt: skip
        merged[key] = family
    return tuple(sorted(merged.values(), key=lambda f: (f.nested, -f.calls, f.label)))


def family_label(shape: StatementShape) -> str:
    """A family in words, as a failing test names it."""
    tables = ", ".join(shape.tables)
    if shape.foreign_key_check is not None:
        return f"foreign-key check on {shape.foreign_key_check}"
    if shape.lookup is not None:
        what = "lookup" if shape.lookup.point else "small-set lookup"
        columns = ", ".join(key.column for key in shape.lookup.keys)
        return f"{what} by {columns} on {tables}"
    return f"{shape.kind} on {tables}" if tables else shape.kind


# What decides what is counted, and the counters that reveal a reset or an eviction.
_STATE_SQL = "SELECT {marker} current_setting('pg_stat_statements.track'), {stats_reset}, {dealloc}"


@dataclass(frozen=True)
class Mark:
    """The entries at one instant, and what says whether anything was lost since."""

    rows: tuple[StatementRow, ...]
    hidden_calls: int
    stats_reset: Any
    dealloc: int | None


@dataclass
class StatementCounter:
    """Counts what blocks send to the database *dsn* names, on the server (one read-only,
    autocommit session of dbtools' own; ``close`` it). *roles*: only their statements count
    (empty: every role's)."""

    dsn: str
    roles: Collection[str] = ()
    track: str = field(init=False, default="")

    def __post_init__(self) -> None:
        self._conn = connect(normalise_dsn(self.dsn), autocommit=True)
        _, self._columns = prepare(self._conn)
        stats_reset, dealloc = self._columns.info_expressions()
        self._state_sql = sql.SQL(_STATE_SQL).format(
            marker=sql.SQL(SQL_MARKER), stats_reset=stats_reset, dealloc=dealloc
        )
        self._classifier = Classifier()
        self.track = str(self._state()[0])

    def _state(self) -> tuple[Any, ...]:
        row = self._conn.execute(self._state_sql).fetchone()
        assert row is not None
        return tuple(row)

    def mark(self) -> Mark:
        """The database's entries now."""
        rows, _, hidden_calls = read_statements(self._conn, self._columns)
        _, stats_reset, dealloc = self._state()
        return Mark(rows, hidden_calls, stats_reset, dealloc)

    def since(self, start: Mark, *, requests: int | None = None) -> QueryCount:
        """What was sent between *start* and now; raises ``CountNotExact``."""
        end = self.mark()
        deltas = delta_rows(start.rows, end.rows, statement_key)
        lost = len(deltas.reset) + len(deltas.vanished)
        if lost or (start.stats_reset, start.dealloc) != (end.stats_reset, end.dealloc):
            raise CountNotExact(
                "pg_stat_statements reset or evicted entries during the block "
                f"({lost} entries lost): raise pg_stat_statements.max, never reset in tests"
            )
        if end.hidden_calls != start.hidden_calls:
            raise CountNotExact(
                f"{end.hidden_calls - start.hidden_calls} calls of statements the reading role "
                "may not see: read as the application's role, a superuser, or a role granted "
                "pg_read_all_stats"
            )
        moved = [row for row in deltas.rows if row.calls > 0]
        counts = count_statements(moved, Scope(roles=frozenset(self.roles)))
        return QueryCount(
            statements=counts.queries,
            nested=counts.nested_calls,
            transactions=counts.transaction_calls,
            families=self._families(moved),
            requests=requests,
        )

    def _families(self, rows: list[StatementRow]) -> tuple[FamilyCount, ...]:
        counted = [
            row
            for row in rows
            if (not self.roles or row.rolname in self.roles)
            and not (row.toplevel and is_transaction_control(row.query))
        ]
        shapes = self._classifier.shapes([(row.queryid, row.query) for row in counted])
        return merge_families(
            FamilyCount(
                family=shape.fingerprint,
                label=family_label(shape),
                calls=row.calls,
                nested=not row.toplevel,
                sql=shape.text,
                point_lookup=shape.lookup is not None and shape.lookup.point,
            )
            for row, shape in zip(counted, shapes, strict=True)
        )

    def close(self) -> None:
        self._conn.close()
