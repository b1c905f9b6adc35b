"""What the database saw of the workload: statement calls, and the plans of the batched path.

These read-only questions back the tests and the benchmark: counting the application's
statements in pg_stat_statements (by their ``flight_search:`` tags) and checking that each
batched statement is served by the batch index that the database's revision (its manifest) has
for the table it reads.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from dbtools.db.connection import SQL_MARKER, session
from dbtools.schema.manifest import database_manifest
from dbtools.workload import queries
from dbtools.workload.access import SearchRequest

STATEMENT_CALLS_SQL = rf"""
SELECT {SQL_MARKER} substring(s.query from '/\* flight_search:([a-z_]+) \*/') AS name,
       sum(s.calls)::bigint AS calls
FROM pg_stat_statements AS s
WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND s.query ~ '/\* flight_search:[a-z_]+ \*/'
  AND s.query !~* '^\s*(explain|prepare)\M'  -- plans taken by batched_plans(), not the app
GROUP BY 1
"""
_NAMED_PLACEHOLDER = re.compile(r"%\((\w+)\)[sb]")
_PREPARED_NAME = "dbtools_workload_plan"


def statement_calls(dsn: str) -> dict[str, int]:
    """Calls so far of each tagged application statement in this database, by statement name.

    Totals since the last statistics reset: subtract two readings to count a run.
    """
    with session(dsn) as conn:
        rows = conn.execute(STATEMENT_CALLS_SQL).fetchall()
    return {str(name): int(calls) for name, calls in rows}


def calls_between(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    """The calls of each statement between two ``statement_calls`` readings (only non-zero)."""
    delta = {name: after[name] - before.get(name, 0) for name in after}
    return {name: calls for name, calls in delta.items() if calls}


@dataclass(frozen=True)
class StatementPlan:
    """The indexes one statement's plan uses, and the batch indexes it should use."""

    statement: str
    generic: bool
    indexes: frozenset[str]
    expected: tuple[str, ...]

    @property
    def missing(self) -> tuple[str, ...]:
        """Expected batch indexes the plan does not use."""
        return tuple(name for name in self.expected if name not in self.indexes)


def batched_plans(dsn: str, requests: Sequence[SearchRequest]) -> list[StatementPlan]:
    """EXPLAIN the batched path's reading statements for a batch of *requests*.

    Each statement is planned twice: with the batch's values (a custom plan) and as a generic
    plan (what a prepared statement may switch to after a few executions).
    """
    params = {
        "trip_request_ids": sorted({request.trip_request_id for request in requests}),
        "search_keys": sorted({request.search.search_key for request in requests}),
    }
    plans = []
    with session(dsn) as conn:
        by_table = {index.table: index.name for index in database_manifest(conn).batch_indexes}
        for statement in (queries.LOAD_TRIPS_BATCH, queries.LOOKUP_OFFERS_BATCH):
            expected = tuple(by_table[table] for table in statement.reads if table in by_table)
            for generic in (False, True):
                plan = _explain(conn, statement.sql, params, generic=generic)
                plans.append(
                    StatementPlan(statement.name, generic, frozenset(_index_names(plan)), expected)
                )
    return plans


def _explain(
    conn: psycopg.Connection[Any], statement: str, params: Mapping[str, Any], *, generic: bool
) -> dict[str, Any]:
    """The JSON plan of *statement*, custom or generic, through a server-side PREPARE (works on
    every major; ``EXPLAIN (GENERIC_PLAN)`` exists only from PostgreSQL 16)."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    text = _NAMED_PLACEHOLDER.sub(number, statement)
    mode = "force_generic_plan" if generic else "force_custom_plan"
    prepare = sql.SQL("PREPARE {} AS {}").format(sql.Identifier(_PREPARED_NAME), sql.SQL(text))
    # EXPLAIN EXECUTE is a utility statement: its arguments are literals, not bound parameters.
    explain = sql.SQL("EXPLAIN (FORMAT JSON) EXECUTE {}({})").format(
        sql.Identifier(_PREPARED_NAME), sql.SQL(", ").join(sql.Literal(params[n]) for n in names)
    )
    try:
        with conn.transaction():
            conn.execute(sql.SQL("SET LOCAL plan_cache_mode = {}").format(sql.Literal(mode)))
            conn.execute(prepare)
            row = conn.execute(explain).fetchone()
    finally:  # prepared statements outlive the transaction
        conn.execute(sql.SQL("DEALLOCATE ALL"))
        conn.rollback()
    assert row is not None
    plan: dict[str, Any] = row[0][0]["Plan"]
    return plan


def _index_names(node: Mapping[str, Any]) -> Iterator[str]:
    if "Index Name" in node:
        yield str(node["Index Name"])
    for child in node.get("Plans", ()):
        yield from _index_names(child)
