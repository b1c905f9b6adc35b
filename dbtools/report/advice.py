"""Index advice: indexes that the planner says would make a costly statement much cheaper.

For each explained statement (``plans``) that reads a large table by sequential scan, candidate
indexes come from the statement's own predicates and join keys on that table (parsed by sqlglot
through ``parse_statements``): each column compared with ``=``, ``IN``, ``= ANY``, ``IS`` or a
range, the equality columns together, and the equality columns followed by the first range
column. Each candidate is created as a *hypothetical* index with the ``hypopg`` extension
(visible to this session's planner only, never built, nothing written) and the statement is
explained again. A candidate is suggested only when the plan uses it and its estimated cost
falls by at least ``cost_factor``; the suggestion carries the ``CREATE INDEX CONCURRENTLY``
statement, hypopg's size estimate and the statements it serves. ``hypopg_reset()`` clears the
session's hypothetical indexes after every test.

Without hypopg created in the database, or on servers that cannot plan the statements
(parameterised texts before PostgreSQL 16), the section says so and suggests nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from sqlglot import exp

from dbtools.db.catalog import quote_ident, split_qualified
from dbtools.db.connection import SQL_MARKER
from dbtools.reading.rows import IndexRow
from dbtools.report.plans import Explained, PlanSettings, explain, plannable, statement_timeout

HYPOPG_SQL = f"""
SELECT {SQL_MARKER} e.extversion AS version, n.nspname::text AS schema_name
FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
WHERE e.extname = 'hypopg'
"""
HYPOPG_AVAILABLE_SQL = (
    f"SELECT {SQL_MARKER} count(*) FROM pg_catalog.pg_available_extensions WHERE name = 'hypopg'"
)
EQUALITY = (exp.EQ, exp.In, exp.Is)
RANGE = (exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Between)
MAX_IDENTIFIER = 63


@dataclass(frozen=True)
class AdviceSettings:
    cost_factor: float = 2.0  # the estimated cost must fall at least this many times
    max_candidates: int = 8  # per table of a statement


@dataclass(frozen=True, order=True)
class Candidate:
    """An index to try: a table (``schema.table``) and its key columns, in order."""

    table: str
    columns: tuple[str, ...]

    def definition(self) -> str:
        """``CREATE INDEX ON schema.table (a, b)``: what hypopg is given."""
        return f"CREATE INDEX ON {self.table} ({', '.join(map(quote_ident, self.columns))})"

    def name(self) -> str:
        _, table = split_qualified(self.table)
        return f"ix_{table}_{'_'.join(self.columns)}"[:MAX_IDENTIFIER]

    def create_statement(self) -> str:
        columns = ", ".join(map(quote_ident, self.columns))
        return f"CREATE INDEX CONCURRENTLY {quote_ident(self.name())} ON {self.table} ({columns});"


# -- candidates from a statement's predicates (pure) -------------------------------------------------


def _sides(predicate: exp.Expr) -> tuple[exp.Expression, list[exp.Expression]]:
    if isinstance(predicate, exp.Between):
        return predicate.this, [predicate.args["low"], predicate.args["high"]]
    if isinstance(predicate, exp.In):
        return predicate.this, list(predicate.expressions) + [
            q for q in [predicate.args.get("query"), predicate.args.get("unnest")] if q
        ]
    return predicate.this, [predicate.expression]


def predicate_columns(tree: exp.Expression) -> Iterator[tuple[str, str, bool]]:
    """(table alias or "", column, is-equality) for every column compared with something that
    is not a column of the same table alias: a value, a parameter, or another table's column
    (a join key)."""
    for predicate in tree.find_all(*EQUALITY, *RANGE):
        left, rights = _sides(predicate)
        pairs = [(left, rights)]
        if isinstance(predicate, (exp.EQ, *RANGE[:4])) and isinstance(
            predicate.expression, exp.Column
        ):
            pairs.append((predicate.expression, [left]))  # a join key serves either side
        for column, others in pairs:
            if not isinstance(column, exp.Column) or not column.name:
                continue
            same = [o for o in others if isinstance(o, exp.Column) and o.table == column.table]
            if same:
                continue  # a = b on one table: no index on a serves it
            yield column.table.lower(), column.name.lower(), isinstance(predicate, EQUALITY)


def table_aliases(tree: exp.Expression) -> dict[str, str]:
    """alias (or name) → table name, as the statement writes them (lowercase)."""
    names = {}
    for table in tree.find_all(exp.Table):
        if table.name:
            names[table.alias_or_name.lower()] = table.name.lower()
    return names


def candidates_for(
    tree: exp.Expression, table: str, alias: str | None, limit: int
) -> list[Candidate]:
    """Indexes to try on *table* (``schema.table``, called *alias* in the plan) for *tree*."""
    _, name = split_qualified(table)
    aliases = table_aliases(tree)
    mine = {a for a, t in aliases.items() if t == name}
    if alias:
        mine.add(alias.lower())
    single = len(set(aliases.values())) == 1
    equal: list[str] = []
    ranged: list[str] = []
    for owner, column, is_equal in predicate_columns(tree):
        if owner in mine or (not owner and single):
            target = equal if is_equal else ranged
            if column not in target:
                target.append(column)
    ranged = [c for c in ranged if c not in equal]
    shapes: list[tuple[str, ...]] = [(c,) for c in equal + ranged]
    if len(equal) > 1:
        shapes.append(tuple(equal))
    if equal and ranged:
        shapes.append((*equal, ranged[0]))
    return [Candidate(table, columns) for columns in dict.fromkeys(shapes)][:limit]


def already_indexed(candidate: Candidate, indexes: Iterable[IndexRow]) -> bool:
    """Whether a valid, non-partial btree index already leads with the candidate's columns."""
    return any(
        f"{quote_ident(i.schemaname)}.{quote_ident(i.relname)}" == candidate.table
        and i.is_valid
        and i.predicate is None
        and i.access_method == "btree"
        and tuple(i.key_columns[: len(candidate.columns)])
        == tuple(map(quote_ident, candidate.columns))
        for i in indexes
    )


# -- testing with hypopg ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trial:
    """One candidate tried for one statement."""

    queryid: int
    candidate: Candidate
    cost_before: float
    cost_after: float | None  # None: the EXPLAIN failed
    used: bool
    estimated_bytes: int | None

    @property
    def factor(self) -> float | None:
        if self.cost_after is None or self.cost_after <= 0:
            return None
        return self.cost_before / self.cost_after


@dataclass(frozen=True)
class AdviceFacts:
    """What ``try_candidates`` found."""

    hypopg: str | None  # the extension's version, None when not created
    hypopg_available: bool
    examined: tuple[int, ...]  # queryids of statements with a large sequential scan
    trials: tuple[Trial, ...] = ()


def read_hypopg(conn: psycopg.Connection[Any]) -> tuple[tuple[str, str] | None, bool]:
    """(version, schema) of hypopg in this database, and whether the server has it at all."""
    found = conn.execute(HYPOPG_SQL).fetchone()
    available = conn.execute(HYPOPG_AVAILABLE_SQL).fetchone()
    return (found[0], found[1]) if found else None, bool(available and available[0])


def try_candidates(
    conn: psycopg.Connection[Any],
    explained: Sequence[Explained],
    large_scans: Mapping[int, Sequence[tuple[str, str | None]]],
    indexes: Sequence[IndexRow],
    settings: AdviceSettings,
    plan_settings: PlanSettings,
) -> AdviceFacts:
    """Try each candidate index of each statement with a large sequential scan
    (*large_scans*: queryid → (table, alias) pairs) as a hypothetical index."""
    hypopg, available = read_hypopg(conn)
    examined = tuple(e.queryid for e in explained if large_scans.get(e.queryid))
    if hypopg is None:
        return AdviceFacts(None, available, examined)
    version, schema = hypopg
    create = sql.SQL("SELECT {} indexrelid FROM {}(%s)").format(
        sql.SQL(SQL_MARKER), sql.Identifier(schema, "hypopg_create_index")
    )
    size = sql.SQL("SELECT {} {}(%s)").format(
        sql.SQL(SQL_MARKER), sql.Identifier(schema, "hypopg_relation_size")
    )
    reset = sql.SQL("SELECT {} {}()").format(
        sql.SQL(SQL_MARKER), sql.Identifier(schema, "hypopg_reset")
    )
    trials = []
    with statement_timeout(conn, plan_settings.statement_timeout):
        try:
            for e in explained:
                tree = plannable(e.text)
                if tree is None or e.total_cost is None:
                    continue
                for table, alias in large_scans.get(e.queryid, ()):
                    for candidate in candidates_for(tree, table, alias, settings.max_candidates):
                        if already_indexed(candidate, indexes):
                            continue
                        trials.append(_trial(conn, e, candidate, create, size, reset))
        finally:
            conn.execute(reset)
    return AdviceFacts(version, available, examined, tuple(trials))


def _trial(
    conn: psycopg.Connection[Any],
    e: Explained,
    candidate: Candidate,
    create: sql.Composed,
    size: sql.Composed,
    reset: sql.Composed,
) -> Trial:
    assert e.total_cost is not None
    try:
        made = conn.execute(create, (candidate.definition(),)).fetchone()
    except psycopg.Error:
        return Trial(e.queryid, candidate, e.total_cost, None, False, None)
    assert made is not None
    oid = made[0]
    try:
        outcome = explain(conn, e.text, generic=e.generic)
        found = conn.execute(size, (oid,)).fetchone()
    finally:
        conn.execute(reset)
    if isinstance(outcome, str):
        return Trial(e.queryid, candidate, e.total_cost, None, False, None)
    cost, nodes = outcome
    used = any((node.index or "").startswith(f"<{oid}>") or f"<{oid}>" in (node.index or "")
               for node in nodes)  # fmt: skip
    return Trial(e.queryid, candidate, e.total_cost, cost, used, found[0] if found else None)


# -- the section's data ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Served:
    queryid: int
    query: str
    cost_before: float
    cost_after: float


@dataclass(frozen=True)
class IndexSuggestion:
    table: str
    columns: tuple[str, ...]
    create_statement: str
    estimated_bytes: int | None
    serves: tuple[Served, ...]


@dataclass(frozen=True)
class AdviceReport:
    status: str  # what was done, or why nothing was
    hypopg: str | None
    cost_factor: float
    examined: int  # statements that read a large table by sequential scan
    tested: int  # hypothetical indexes tried
    suggestions: tuple[IndexSuggestion, ...]
    trials: tuple[Trial, ...] = field(default=())


def build_advice(
    facts: AdviceFacts, queries: Mapping[int, str], settings: AdviceSettings, major: int,
    unplanned: int,
) -> AdviceReport:  # fmt: skip
    """The index-advice section: for each statement, the cheapest candidate the plan used whose
    cost fell at least ``cost_factor`` times; suggestions merged by table and columns (pure)."""
    if facts.hypopg is None:
        where = (
            "it is available on this server: CREATE EXTENSION hypopg (as a superuser) enables it"
            if facts.hypopg_available
            else f"it is not installed on this server (Debian: postgresql-{major}-hypopg)"
        )
        status = f"hypopg is not created in this database, so no index was tested: {where}."
        return AdviceReport(status, None, settings.cost_factor, len(facts.examined), 0, ())
    best: dict[int, Trial] = {}
    for trial in facts.trials:
        factor = trial.factor
        if not trial.used or factor is None or factor < settings.cost_factor:
            continue
        held = best.get(trial.queryid)
        if held is None or (trial.cost_after, len(trial.candidate.columns)) < (
            held.cost_after, len(held.candidate.columns)
        ):  # fmt: skip
            best[trial.queryid] = trial
    merged: dict[Candidate, list[Trial]] = {}
    for trial in best.values():
        merged.setdefault(trial.candidate, []).append(trial)
    suggestions = [
        IndexSuggestion(
            table=candidate.table,
            columns=candidate.columns,
            create_statement=candidate.create_statement(),
            estimated_bytes=next((t.estimated_bytes for t in trials if t.estimated_bytes), None),
            serves=tuple(
                Served(t.queryid, queries.get(t.queryid, ""), t.cost_before, t.cost_after or 0.0)
                for t in sorted(trials, key=lambda t: t.queryid)
            ),
        )
        for candidate, trials in sorted(merged.items())
    ]
    status = (
        f"hypopg {facts.hypopg}: {len(facts.trials)} hypothetical indexes tried for "
        f"{len(facts.examined)} statements reading a large table by sequential scan; "
        f"suggested only when the plan uses the index and its estimated cost falls at least "
        f"{settings.cost_factor:g} times."
    )
    if unplanned:
        status += (
            f" {unplanned} of the costliest statements have no plan (see Plans) and were not "
            "tested."
        )
    return AdviceReport(
        status, facts.hypopg, settings.cost_factor, len(facts.examined), len(facts.trials),
        tuple(suggestions), facts.trials,
    )  # fmt: skip
