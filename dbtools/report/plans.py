"""Plans: for the costliest statements, the plan PostgreSQL would choose, without running them.

A stored pg_stat_statements text has its constants replaced by ``$1``, ``$2``…; PostgreSQL 16
and later plan such a text as it would for any values: ``EXPLAIN (GENERIC_PLAN)``. Before 16 a
parameterised text has no plan dbtools can honestly show (a plan for guessed values would be a
different plan, and dbtools never runs a statement with guessed values): the section says so
for each. A text without parameters is explained on any version.

Safety, for texts that come from anyone: only a single SELECT, INSERT, UPDATE or DELETE (by
sqlglot, through ``parse_statements``) is explained, never ANALYZEd; each EXPLAIN is its own
read-only transaction (the report's session is read-only) under a short statement timeout; a
text that fails to EXPLAIN (no privilege, a type PostgreSQL cannot infer, a timeout) is reported
with the reason and the next one is tried.

``explain`` is the one place an EXPLAIN is sent (index advice explains through it too);
``plan_statements`` picks the statements and explains them; ``PlanReport`` is the section.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from sqlglot import exp

from dbtools.db.catalog import qualified
from dbtools.db.connection import SQL_MARKER
from dbtools.reading.rows import StatementRow
from dbtools.redaction import redact
from dbtools.sqltext.parse import is_transaction_control, parse_statements
from dbtools.sqltext.scrub import scrub_query

GENERIC_PLAN_MAJOR = 16
PLANNABLE = (exp.Select, exp.SetOperation, exp.Insert, exp.Update, exp.Delete)
# The parts of a node that say what it reads and how it filters.
CONDITIONS = ("Index Cond", "Recheck Cond", "Hash Cond", "Merge Cond", "Join Filter", "Filter")
INDEX_NODES = ("Index Scan", "Index Only Scan", "Bitmap Index Scan")
_TRAILING = re.compile(r"[\s;]+$")


@dataclass(frozen=True)
class PlanSettings:
    """How many statements are explained, and for how long each may take."""

    top_statements: int = 10
    statement_timeout: str = "5s"


@dataclass(frozen=True)
class PlanNode:
    depth: int
    node_type: str
    relation: str | None  # schema.table it reads
    alias: str | None  # the name the statement gives that table
    index: str | None  # schema.index it reads
    total_cost: float
    plan_rows: float
    conditions: tuple[str, ...]  # "Filter: (…)", scrubbed


@dataclass(frozen=True)
class SeqScan:
    """A sequential scan in a plan, and whether its table is large."""

    table: str
    table_rows: int | None
    estimated_rows: float  # rows the planner expects out of it
    filter: str | None
    large: bool


@dataclass(frozen=True)
class Explained:
    """One statement's plan, or why there is none. ``text`` is what was (or would be)
    EXPLAINed: the stored, normalised text, never shown (``query`` is its scrubbed form)."""

    queryid: int
    text: str
    query: str
    status: Literal["planned", "not planned", "failed"]
    reason: str
    generic: bool
    total_cost: float | None
    nodes: tuple[PlanNode, ...]

    @property
    def indexes_used(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(node.index for node in self.nodes if node.index))


def plannable(text: str) -> exp.Expression | None:
    """*text* parsed, when it is one statement dbtools may EXPLAIN (SELECT, INSERT, UPDATE,
    DELETE, or a set operation of SELECTs); None otherwise."""
    if is_transaction_control(text):
        return None
    trees = parse_statements(text)
    if trees is None or len(trees) != 1 or not isinstance(trees[0], PLANNABLE):
        return None
    return trees[0]


def has_parameters(tree: exp.Expression) -> bool:
    return tree.find(exp.Parameter, exp.Placeholder) is not None


def explain_sql(text: str, *, generic: bool) -> str:
    """``EXPLAIN /* dbtools */ ([GENERIC_PLAN, ]VERBOSE, FORMAT JSON) text``."""
    options = "GENERIC_PLAN, VERBOSE, FORMAT JSON" if generic else "VERBOSE, FORMAT JSON"
    return f"EXPLAIN {SQL_MARKER} ({options}) {_TRAILING.sub('', text)}"


def explain(
    conn: psycopg.Connection[Any], text: str, *, generic: bool
) -> tuple[float, tuple[PlanNode, ...]] | str:
    """The plan of *text* (its total cost and nodes), or the reason it failed, one line.

    The caller has made sure *text* is ``plannable``; *conn* is read-only and autocommit, so
    a failure leaves nothing behind."""
    try:
        row = conn.execute(explain_sql(text, generic=generic)).fetchone()
    except psycopg.errors.QueryCanceled:
        return "cancelled by the statement timeout"
    except psycopg.Error as err:
        message = (err.diag.message_primary or str(err)).strip().splitlines()
        return redact(message[0] if message else type(err).__name__)
    assert row is not None
    document = row[0] if not isinstance(row[0], str) else json.loads(row[0])
    top = document[0]["Plan"]
    return float(top["Total Cost"]), tuple(_nodes(top, 0))


def _nodes(node: Mapping[str, Any], depth: int) -> Iterator[PlanNode]:
    schema = node.get("Schema")
    relation = node.get("Relation Name")
    index = node.get("Index Name")
    yield PlanNode(
        depth=depth,
        node_type=str(node["Node Type"]),
        relation=qualified(schema, relation) if schema and relation else relation,
        alias=node.get("Alias"),
        index=qualified(schema, index) if schema and index else index,
        total_cost=float(node.get("Total Cost", 0.0)),
        plan_rows=float(node.get("Plan Rows", 0.0)),
        conditions=tuple(
            f"{name}: {scrub_query(str(node[name]))}" for name in CONDITIONS if name in node
        ),
    )
    for child in node.get("Plans", ()):
        yield from _nodes(child, depth + 1)


def candidates(
    rows: Iterable[StatementRow], limit: int
) -> list[tuple[StatementRow, exp.Expression]]:
    """The *limit* costliest plannable statements of *rows* (by total execution time; one per
    queryid), with their parse trees."""
    chosen: list[tuple[StatementRow, exp.Expression]] = []
    seen: set[int] = set()
    for row in sorted(rows, key=lambda r: (-r.total_exec_time, r.queryid)):
        if len(chosen) == limit:
            break
        if row.calls <= 0 or row.queryid in seen:
            continue
        tree = plannable(row.query)
        if tree is not None:
            seen.add(row.queryid)
            chosen.append((row, tree))
    return chosen


def plan_statements(
    conn: psycopg.Connection[Any],
    rows: Iterable[StatementRow],
    major: int,
    settings: PlanSettings,
) -> tuple[Explained, ...]:
    """EXPLAIN the costliest plannable statements of *rows* (generic plans on 16+; texts with
    parameters are not planned before 16). Sets the statement timeout for the EXPLAINs and
    restores the session's afterwards."""
    results = []
    with statement_timeout(conn, settings.statement_timeout):
        for row, tree in candidates(rows, settings.top_statements):
            results.append(explain_statement(conn, row.queryid, row.query, tree, major))
    return tuple(results)


def explain_statement(
    conn: psycopg.Connection[Any], queryid: int, text: str, tree: exp.Expression, major: int
) -> Explained:
    generic = major >= GENERIC_PLAN_MAJOR
    query = scrub_query(text)
    if has_parameters(tree) and not generic:
        return Explained(
            queryid, text, query, "not planned",
            f"a parameterised text: generic plans need PostgreSQL {GENERIC_PLAN_MAJOR} "
            "(EXPLAIN (GENERIC_PLAN)); dbtools never plans or runs it with guessed values",
            False, None, (),
        )  # fmt: skip
    outcome = explain(conn, text, generic=generic)
    if isinstance(outcome, str):
        return Explained(queryid, text, query, "failed", outcome, generic, None, ())
    cost, nodes = outcome
    return Explained(queryid, text, query, "planned", "", generic, cost, nodes)


class statement_timeout:
    """``SET statement_timeout`` for a block, then ``RESET`` (back to the session's value)."""

    def __init__(self, conn: psycopg.Connection[Any], timeout: str) -> None:
        self.conn, self.timeout = conn, timeout

    def __enter__(self) -> None:
        self.conn.execute(f"SET {SQL_MARKER} statement_timeout = {_quote(self.timeout)}")

    def __exit__(self, *exc: object) -> None:
        self.conn.execute(f"RESET {SQL_MARKER} statement_timeout")


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


# -- the section's data ----------------------------------------------------------------------------


@dataclass(frozen=True)
class StatementPlan:
    queryid: int
    query: str
    status: Literal["planned", "not planned", "failed"]
    reason: str
    generic: bool
    total_cost: float | None
    indexes_used: tuple[str, ...]
    seq_scans: tuple[SeqScan, ...]
    nodes: tuple[PlanNode, ...]

    @property
    def large_seq_scans(self) -> tuple[SeqScan, ...]:
        return tuple(scan for scan in self.seq_scans if scan.large)


@dataclass(frozen=True)
class PlanReport:
    method: str  # how the plans were made
    statements: tuple[StatementPlan, ...]
    large_table_rows: int  # sequential scans over tables this big are flagged


def seq_scans(
    nodes: Sequence[PlanNode], table_rows: Mapping[str, int], large_table_rows: int
) -> tuple[SeqScan, ...]:
    """The sequential scans of a plan, each flagged when its table holds at least
    *large_table_rows* rows (by the statistics' live-row count)."""
    scans = []
    for node in nodes:
        if node.node_type != "Seq Scan" or node.relation is None:
            continue
        rows = table_rows.get(node.relation)
        filters = [c.partition(": ")[2] for c in node.conditions if c.startswith("Filter: ")]
        scans.append(
            SeqScan(
                table=node.relation,
                table_rows=rows,
                estimated_rows=node.plan_rows,
                filter=filters[0] if filters else None,
                large=rows is not None and rows >= large_table_rows,
            )
        )
    return tuple(scans)


def build_plans(
    explained: Iterable[Explained], major: int, table_rows: Mapping[str, int],
    large_table_rows: int,
) -> PlanReport:  # fmt: skip
    """The plans section (pure)."""
    method = (
        "EXPLAIN (GENERIC_PLAN): the plan for any parameter values, never executed"
        if major >= GENERIC_PLAN_MAJOR
        else f"EXPLAIN of texts without parameters only (PostgreSQL {major} has no "
        "GENERIC_PLAN: parameterised texts are not planned), never executed"
    )
    statements = tuple(
        StatementPlan(
            queryid=e.queryid,
            query=e.query,
            status=e.status,
            reason=e.reason,
            generic=e.generic,
            total_cost=e.total_cost,
            indexes_used=e.indexes_used,
            seq_scans=seq_scans(e.nodes, table_rows, large_table_rows),
            nodes=e.nodes,
        )
        for e in explained
    )
    return PlanReport(method, statements, large_table_rows)


def plan_text(nodes: Iterable[PlanNode]) -> str:
    """A plan as indented lines, the way EXPLAIN's text format reads."""
    lines = []
    for node in nodes:
        what = node.node_type
        if node.index and node.relation:
            what += f" using {node.index} on {node.relation}"
        elif node.index:
            what += f" on {node.index}"
        elif node.relation:
            what += f" on {node.relation}"
        pad = "  " * node.depth
        lines.append(f"{pad}{what}  (cost {node.total_cost:.2f}, rows {node.plan_rows:.0f})")
        lines.extend(f"{pad}    {condition}" for condition in node.conditions)
    return "\n".join(lines)
