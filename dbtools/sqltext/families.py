"""Query families: statements grouped by what they do, whatever their constants or list lengths.

Each statement text is scrubbed (``sqltext.scrub.scrub_query``: every literal becomes a placeholder,
so neither sqlglot's warnings nor a report can leak one), padded (``sqltext.parse.pad_placeholders``:
sqlglot's ``$1,$2`` trap) and parsed with sqlglot. Its *fingerprint* hashes the generated SQL
after every constant and placeholder is made the same, casts of parameters are dropped and every
``IN (…)`` list, ``ARRAY[…]`` and multi-row ``VALUES`` is collapsed to one element: ``IN ($1,$2,$3)`` (PostgreSQL 15) and
``IN ($1 /*, ... */)`` (18) are one family.

Texts sqlglot cannot parse (or only as an opaque ``Command``: ``VACUUM``, ``ALTER ROLE``…) are
kept: their family is their scrubbed text with whitespace collapsed, ``parsed`` is False, and
reports list them verbatim. A text the scrubber could not read (``<unreadable statement, N
characters>``) is a family of its own, keyed by its queryid: equal lengths say nothing.

A *lookup* is a SELECT whose WHERE pins a column to one parameter (``id = $1``, a point lookup)
or to a small list of them (``id IN ($1, $2)``), and has no ``= ANY`` form yet. Two rules judge
one, each named for what it finds:

* an **N+1 suspect** is a point lookup each request sends once or more (``is_n_plus_one``, lines
  drawn by ``NPlusOne``): the N+1 within a request;
* a **batchable lookup** is one called at a high rate, whatever its calls per request
  (``is_batchable``, lines drawn by ``Batchable``): concurrent requests each send it, and one
  ``id = ANY($1)`` per batch could serve them all. ``batching_reduction`` and
  ``concurrency_for`` give the rollout guide's arithmetic (5, 10, 50 concurrent requests: 80%,
  90%, 98% fewer calls at one call per request).

A statement's *footprint* (kind, tables, and the columns it looks up or writes) is what a
per-request statement and its batched form share: ``id = $1`` and ``id = ANY($1)``, an insert
per row and its multi-row or ``unnest`` form. A *foreign-key check* is the statement PostgreSQL
runs for a foreign key (``SELECT 1 FROM ONLY "s"."t" x WHERE … FOR KEY SHARE OF x``); it names
its parent table.

``Classifier`` parses each distinct text once: in memory by text, across runs in a
``ParseCache``, and on every core when there are many to parse.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import multiprocessing
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot import tokens as sqlglot_tokens
from sqlglot.dialects.dialect import Dialect

from dbtools.sqltext.parse import DIALECT, TableRef, parse_statements, quiet_sqlglot, table_refs
from dbtools.sqltext.parse_cache import ParseCache
from dbtools.sqltext.scrub import is_unreadable, scrub_query

FINGERPRINT_LENGTH = 16
_POSTGRES = Dialect.get_or_raise(DIALECT)
_WHITESPACE = re.compile(r"\s+")
_LEADING_WORDS = re.compile(r"^\s*(?:(?:--[^\n]*\n|/\*.*?\*/)\s*)*(\w+)(?:\s+(\w+))?", re.S)
# Utility statements named by two words (ALTER ROLE, CREATE INDEX…), the rest by one.
_TWO_WORD_KINDS = frozenset({"alter", "create", "drop", "grant", "revoke", "comment", "reindex"})


@dataclass(frozen=True, order=True)
class LookupKey:
    """A lookup column and its table (``schema.name`` as written; None when the text does not
    say, e.g. an unqualified column in a join)."""

    table: str | None
    column: str


@dataclass(frozen=True)
class PointLookup:
    """A lookup of rows by one value (or a small list) per call, and the batched form that would
    serve a batch."""

    columns: tuple[str, ...]  # the lookup columns (``id`` in ``id = $1``), one per WHERE
    batched_sql: str  # the same statement with ``column = ANY($n)``
    batched_fingerprint: str  # its family, to spot a batched form already running
    keys: tuple[LookupKey, ...] = ()  # the lookup columns with their tables
    small_set: bool = False  # ``column IN (…)``: a few values per call, not one

    @property
    def point(self) -> bool:
        return not self.small_set


@dataclass(frozen=True)
class NPlusOne:
    """Where a point lookup becomes an N+1 suspect."""

    calls_per_request: float = 1.0  # a lookup each request sends (or more)
    min_calls: int = 100  # without a request count: a lookup called this often


def is_n_plus_one(
    lookup: PointLookup | None, calls: int, requests: int | None, limits: NPlusOne = NPlusOne()
) -> bool:
    """Whether a point lookup *lookup* called *calls* times for *requests* requests looks like
    an N+1 pattern: at least ``calls_per_request`` per request (without requests: at least
    ``min_calls`` calls). Anything but a point lookup never is."""
    if lookup is None or not lookup.point:
        return False
    if requests:
        return calls / requests >= limits.calls_per_request
    return calls >= limits.min_calls


# The rollout guide's table: concurrent requests whose queries one batch replaces.
GUIDE_CONCURRENCY = (5, 10, 50)


@dataclass(frozen=True)
class Batchable:
    """Where a lookup becomes batchable across requests, whatever its calls per request."""

    calls_per_second: float = 10.0  # called at least this often in the period...
    min_calls: int = 50  # ...and at least this many times (a rate of fewer says little)
    concurrency: tuple[int, ...] = GUIDE_CONCURRENCY  # what batching would save, shown at each


def is_batchable(
    lookup: PointLookup | None, calls: int, seconds: float | None, limits: Batchable = Batchable()
) -> bool:
    """Whether a lookup called *calls* times in *seconds* runs at a rate batching can serve
    (``Batchable``). Without *seconds* there is no rate: never. Anything but a lookup never is."""
    if lookup is None or not seconds or calls < limits.min_calls:
        return False
    return calls / seconds >= limits.calls_per_second


def batching_reduction(concurrency: int, calls_per_request: float) -> float:
    """The share of a lookup's calls one batch per *concurrency* concurrent requests saves:
    they send ``concurrency × calls_per_request`` lookups, a batch sends one (the guide's 80%,
    90%, 98% at 5, 10, 50 requests and one call each; nothing when they send at most one)."""
    lookups = concurrency * calls_per_request
    return 1 - 1 / lookups if lookups > 1 else 0.0


def concurrency_for(target: float, calls_per_request: float) -> int | None:
    """The fewest concurrent requests whose batch saves at least *target* (a fraction) of a
    lookup's calls; None when no number of requests can."""
    if calls_per_request <= 0 or not 0 <= target < 1:
        return None
    # The epsilon keeps a float just above an integer (1 / 0.2 = 5.000000000000001) at it.
    return max(1, math.ceil(1 / ((1 - target) * calls_per_request) - 1e-9))


@dataclass(frozen=True)
class Footprint:
    """What a statement does, whatever its form: a per-request statement and its batched form
    share one (the columns are those its conditions compare, and those it writes)."""

    kind: str
    tables: tuple[str, ...]
    columns: tuple[str, ...]


@dataclass(frozen=True)
class StatementShape:
    """What one statement text is: its family, kind, tables, and whether it is a point lookup."""

    fingerprint: str
    kind: str  # select, insert, upsert, update, delete, merge, ddl, set, transaction, or keywords
    tables: tuple[str, ...]  # schema.name as written (no CTE names); empty when not parsed
    sql: str  # the scrubbed text as sqlglot regenerates it (lists collapsed), or the text itself
    text: str  # the scrubbed text as it came
    parsed: bool
    lookup: PointLookup | None = None
    footprint: Footprint | None = None  # None when not parsed
    foreign_key_check: TableRef | None = None  # the parent table the check's text names


def fingerprint_of(normalised_sql: str) -> str:
    """A short, stable hash of a normalised statement."""
    return hashlib.sha1(normalised_sql.encode()).hexdigest()[:FINGERPRINT_LENGTH]


def shape_of(text: str, queryid: int | None = None) -> StatementShape:
    """Classify one statement text (any text: it is scrubbed first). An unreadable text's family
    is its *queryid*'s."""
    scrubbed = scrub_query(text)
    if is_unreadable(scrubbed):
        return StatementShape(
            fingerprint=fingerprint_of(f"unreadable:{queryid}"),
            kind="unreadable",
            tables=(),
            sql=scrubbed,
            text=scrubbed,
            parsed=False,
        )
    trees = parse_statements(scrubbed)
    if trees is None:
        verbatim = _WHITESPACE.sub(" ", scrubbed).strip()
        return StatementShape(
            fingerprint=fingerprint_of("unparsed:" + verbatim),
            kind=_leading_keywords(scrubbed),
            tables=(),
            sql=scrubbed,
            text=scrubbed,
            parsed=False,
        )
    # Copying a tree and generating SQL cost as much as parsing: one generation per statement
    # (two for a point lookup); the family's hash comes from the generated text.
    trees = [_simplified(tree) for tree in trees]
    # Generated without a copy: the generator copies what its transforms would rewrite.
    display = "; ".join(_POSTGRES.generate(tree, copy=False, comments=False) for tree in trees)
    parent = foreign_key_parent(scrubbed)
    kind = "foreign-key check" if parent else _kind(trees[0])
    tables = tuple(sorted({name for tree in trees for name in _tables(tree)}))
    normalised = _hash_form(display)
    footprint = Footprint(kind, tables, _footprint_columns(trees))
    lookup = None
    if len(trees) == 1 and parent is None:
        lookup = _point_lookup(trees[0])  # last: it rewrites the tree
    return StatementShape(
        fingerprint=fingerprint_of(normalised),
        kind=kind,
        tables=tables,
        sql=display,
        text=scrubbed,
        parsed=True,
        lookup=lookup,
        footprint=footprint,
        foreign_key_check=parent,
    )


def _shape_from_json(value: dict[str, Any]) -> StatementShape:
    """A ``StatementShape`` from its JSON form (``dataclasses.asdict``, through JSON)."""
    lookup, footprint, parent = value["lookup"], value["footprint"], value["foreign_key_check"]
    return StatementShape(
        fingerprint=value["fingerprint"],
        kind=value["kind"],
        tables=tuple(value["tables"]),
        sql=value["sql"],
        text=value["text"],
        parsed=value["parsed"],
        lookup=None
        if lookup is None
        else PointLookup(
            columns=tuple(lookup["columns"]),
            batched_sql=lookup["batched_sql"],
            batched_fingerprint=lookup["batched_fingerprint"],
            keys=tuple(LookupKey(**key) for key in lookup["keys"]),
            small_set=lookup["small_set"],
        ),
        footprint=None
        if footprint is None
        else Footprint(footprint["kind"], tuple(footprint["tables"]), tuple(footprint["columns"])),
        foreign_key_check=None if parent is None else TableRef(**parent),
    )


# Bump when shape_of's results change for a text: the stored shapes of older rules are misses.
RULES_VERSION = 1
# Below this many texts to parse, starting worker processes costs more than they save.
PARALLEL_FROM = 400


def compiled_sqlglot() -> bool:
    """Whether sqlglot runs its compiled build (the ``sqlglotc`` distribution, ``dbtools[fast]``),
    about twice as fast to parse as the pure Python one."""
    return bool(getattr(sqlglot_tokens, "SQLGLOTC_INSTALLED", False))


def cache_namespace() -> str:
    """What a stored shape depends on besides its text: these rules and this sqlglot."""
    build = "c" if compiled_sqlglot() else "py"
    return f"shapes-v{RULES_VERSION};sqlglot-{getattr(sqlglot, '__version__', '?')}-{build}"


def free_cores() -> int:
    """The cores this process may run on that are idle now: one, plus one for each whole core
    the last minute's load average leaves free. On a shared machine whose cores are busy, a
    second worker only halves each one's share (benchmarks/RESULTS-report.md)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    idle = int((cores or 1) - os.getloadavg()[0])
    return max(1, min(cores or 1, idle + 1))


def shapes_of(texts: Sequence[str], *, workers: int = 1) -> list[StatementShape]:
    """``shape_of`` each of *texts*, in order; over *workers* processes when there are at least
    ``PARALLEL_FROM`` (forked, so they start with sqlglot loaded; where fork is missing, here)."""
    with quiet_sqlglot():
        if workers < 2 or len(texts) < PARALLEL_FROM or not _CAN_FORK:
            return [shape_of(text) for text in texts]
        chunk = -(-len(texts) // (workers * 2))  # few, large chunks: each costs a round trip
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            return pool.map(shape_of, texts, chunksize=chunk)


_CAN_FORK = "fork" in multiprocessing.get_all_start_methods()


class Classifier:
    """``shape_of`` for many statements, each distinct text parsed once.

    Shapes are kept in memory by text (a queryid's text never changes on a server, and one text
    may have several queryids: several roles, databases) and, with a *store*, across runs
    (``ParseCache``: a report over the statements of the previous one parses nothing). What is
    left to parse is spread over *workers* processes when there is a lot of it (default: the
    cores idle at the time, ``free_cores``). ``cache=False`` keeps nothing between calls (for
    measuring what caching saves). ``parses`` counts texts parsed, ``stored`` shapes read from
    the store, ``workers_used`` the most processes one call parsed on.
    """

    def __init__(
        self, *, cache: bool = True, store: ParseCache | None = None, workers: int | None = None
    ) -> None:
        self._memory: dict[str, StatementShape] | None = {} if cache else None
        self.store = store
        self.workers = workers
        self.parses = 0
        self.stored = 0
        self.workers_used = 0

    def shape(self, queryid: int, text: str) -> StatementShape:
        return self.shapes([(queryid, text)])[0]

    def shapes(self, statements: Sequence[tuple[int, str]]) -> list[StatementShape]:
        """The shape of each ``(queryid, text)``, in order."""
        known = self._memory if self._memory is not None else {}
        wanted = [
            text for text in dict.fromkeys(text for _, text in statements) if text not in known
        ]
        found: dict[str, StatementShape] = {}
        if self.store is not None and wanted:
            for text, value in self.store.get_many(wanted).items():
                with contextlib.suppress(KeyError, TypeError, ValueError):  # damaged: parse again
                    found[text] = _shape_from_json(value)
            self.stored += len(found)
        missing = [text for text in wanted if text not in found]
        workers = 1 if len(missing) < PARALLEL_FROM else self.workers or free_cores()
        parsed = dict(zip(missing, shapes_of(missing, workers=workers), strict=True))
        self.workers_used = max(self.workers_used, workers if missing else 0)
        self.parses += len(parsed)
        if self.store is not None and parsed:
            # An unreadable text's family is its queryid's: nothing to keep by text.
            keep = {t: dataclasses.asdict(s) for t, s in parsed.items() if s.kind != "unreadable"}
            self.store.put_many(keep)
        found.update(parsed)
        if self._memory is not None:
            self._memory.update(found)
        shapes = []
        for queryid, text in statements:
            shape = known.get(text) or found[text]
            shapes.append(shape_of(text, queryid) if shape.kind == "unreadable" else shape)
        return shapes


# -- normalisation ------------------------------------------------------------------------------


def _simplify(node: exp.Expression) -> exp.Expression:
    if isinstance(node, (exp.In, exp.Array, exp.Values)) and len(node.expressions) > 1:
        node.set("expressions", node.expressions[:1])
    elif isinstance(node, exp.Cast) and isinstance(node.this, (exp.Parameter, exp.Placeholder)):
        # A cast parameter is a parameter: ``ANY($1::bigint[])`` and ``ANY($1)`` are one family.
        return node.this
    return node


def _simplified(tree: exp.Expression) -> exp.Expression:
    """*tree* (in place) with IN lists, ARRAY[…] and VALUES rows cut to their first element and
    casts of parameters dropped."""
    return tree.transform(_simplify, copy=False)


# What still tells constants apart in generated SQL: placeholders, and the few literals sqlglot
# writes itself (``INTERVAL $2`` comes out as ``INTERVAL '2'``).
_CONSTANT = re.compile(r"'(?:[^']|'')*'|\$\d+|(?<![\w$.])\d+(?:\.\d+)?(?![\w$])")


def _hash_form(generated_sql: str) -> str:
    """The SQL that identifies a family: every constant and parameter made the same."""
    return _CONSTANT.sub("?", generated_sql)


def _tables(tree: exp.Expression) -> Iterator[str]:
    return (str(ref) for ref in table_refs(tree))


def _kind(tree: exp.Expression) -> str:
    if isinstance(tree, (exp.Select, exp.SetOperation)):
        return "select"
    if isinstance(tree, exp.Insert):
        return "upsert" if tree.args.get("conflict") else "insert"
    kinds: tuple[tuple[type[exp.Expression] | tuple[type[exp.Expression], ...], str], ...] = (
        (exp.Update, "update"),
        (exp.Delete, "delete"),
        (exp.Merge, "merge"),
        ((exp.Transaction, exp.Commit, exp.Rollback), "transaction"),
        ((exp.Create, exp.Drop, exp.Alter, exp.TruncateTable), "ddl"),
        (exp.Set, "set"),
    )
    for types, kind in kinds:
        if isinstance(tree, types):
            return kind
    return type(tree).__name__.lower()


def _leading_keywords(text: str) -> str:
    match = _LEADING_WORDS.match(text)
    if match is None:
        return "unknown"
    first, second = match.group(1).lower(), (match.group(2) or "").lower()
    return f"{first} {second}" if first in _TWO_WORD_KINDS and second else first


# -- footprints and foreign-key checks ----------------------------------------------------------

# What ri_triggers.c sends for a foreign key, as pg_stat_statements keeps it: the parent table
# (ONLY, except for a partitioned one) always aliased ``x``.
_FOREIGN_KEY_CHECK = re.compile(
    r'^\s*SELECT\s+\S+\s+FROM\s+(?:ONLY\s+)?"((?:[^"]|"")+)"\."((?:[^"]|"")+)"\s+x\s+WHERE\s'
    r".*\sFOR\s+KEY\s+SHARE\s+OF\s+x\s*$",
    re.S,
)


def foreign_key_parent(text: str) -> TableRef | None:
    """The parent table of a foreign-key check's text; None for any other text."""
    match = _FOREIGN_KEY_CHECK.match(text)
    if match is None:
        return None
    schema, name = (part.replace('""', '"') for part in match.groups())
    return TableRef(schema, name)


def _footprint_columns(trees: list[exp.Expression]) -> tuple[str, ...]:
    """The columns the statements compare (WHERE, JOIN … ON) and write (INSERT's column list,
    UPDATE's SET), by name: ``o.trip_request_id`` and ``trip_request_id`` are one column."""
    names: set[str] = set()
    for tree in trees:
        conditions: list[exp.Expression] = list(tree.find_all(exp.Where))
        conditions += [j.args["on"] for j in tree.find_all(exp.Join) if j.args.get("on")]
        for condition in conditions:
            names.update(column.name.lower() for column in condition.find_all(exp.Column))
        for insert in tree.find_all(exp.Insert):
            if isinstance(insert.this, exp.Schema):
                names.update(column.name.lower() for column in insert.this.expressions)
        for update in tree.find_all(exp.Update):
            names.update(
                assignment.this.name.lower()
                for assignment in update.expressions
                if isinstance(assignment, exp.EQ) and isinstance(assignment.this, exp.Column)
            )
    return tuple(sorted(name for name in names if name))


# -- lookups ------------------------------------------------------------------------------------

_KEY_LIKE = re.compile(r"(^|_)(id|key)$", re.I)


def is_key_like(column: str) -> bool:
    """``id``, ``trip_request_id``, ``search_key``: named as a key."""
    return bool(_KEY_LIKE.search(column))


def _conjuncts(condition: exp.Expression) -> Iterator[exp.Expression]:
    if isinstance(condition, exp.And):
        yield from _conjuncts(condition.this)
        yield from _conjuncts(condition.expression)
    elif isinstance(condition, exp.Paren):
        yield from _conjuncts(condition.this)
    else:
        yield condition


def _is_parameter(node: exp.Expression) -> bool:
    return isinstance(node, (exp.Parameter, exp.Placeholder))


def _pinned(condition: exp.Expression) -> tuple[exp.Column, exp.Expression] | None:
    """The column and its parameter in ``column = $n`` (either way round, the parameter maybe
    cast) or ``column IN ($n, …)`` (lists are cut to one element first), else None."""
    if isinstance(condition, exp.EQ):
        left, right = condition.this, condition.expression
        if isinstance(left, exp.Column) and _is_parameter(right):
            return left, right
        if isinstance(right, exp.Column) and _is_parameter(left):
            return right, left
    elif (
        isinstance(condition, exp.In)
        and isinstance(condition.this, exp.Column)
        and not condition.args.get("query")
        and condition.expressions
        and all(_is_parameter(e) or isinstance(e, exp.Literal) for e in condition.expressions)
    ):
        return condition.this, condition.expressions[0]
    return None


def _lookup_condition(where: exp.Where) -> exp.Expression | None:
    """The condition a batch would turn into ``= ANY``: a key-like column's, else the first."""
    pinned = {
        condition: found[0]
        for condition in _conjuncts(where.this)
        if (found := _pinned(condition)) is not None
    }
    keyed = [condition for condition, column in pinned.items() if is_key_like(column.name)]
    return next(iter(keyed or pinned), None)


def _source_tables(select: exp.Expr) -> dict[str, str | None]:
    """What a SELECT reads directly (FROM and JOINs), by the name its columns use (the alias, or
    the table's name): the table (``schema.name`` as written), or None for anything else
    (a subquery, a function)."""
    sources = []
    from_clause = select.args.get("from_") or select.args.get("from")
    if isinstance(from_clause, exp.From):
        sources.append(from_clause.this)
    sources += [join.this for join in select.args.get("joins") or []]
    found: dict[str, str | None] = {}
    for source in sources:
        if isinstance(source, exp.Table) and source.name:
            found[source.alias_or_name.lower()] = str(next(table_refs(source)))
        else:
            found[source.alias_or_name.lower()] = None
    return found


def _lookup_key(column: exp.Column, where: exp.Where) -> LookupKey:
    sources = _source_tables(where.parent) if where.parent is not None else {}
    if column.table:
        table = sources.get(column.table.lower())
    else:  # unqualified: the table's only when the SELECT reads one table
        table = next(iter(sources.values())) if len(sources) == 1 else None
    return LookupKey(table, column.name.lower())


def _point_lookup(tree: exp.Expression) -> PointLookup | None:
    """A SELECT (or UNION of them) pinning a column to one parameter or a small list, with no
    ``= ANY`` yet. Rewrites *tree* in place into the batched form."""
    if not isinstance(tree, (exp.Select, exp.SetOperation)) or tree.find(exp.Any):
        return None
    columns, keys, small_set = [], [], False
    for where in list(tree.find_all(exp.Where, bfs=False)):  # in the text's order
        condition = _lookup_condition(where)
        if condition is None:
            continue
        pinned = _pinned(condition)
        assert pinned is not None
        column, parameter = pinned
        small_set = small_set or isinstance(condition, exp.In)
        columns.append(column.sql(dialect=DIALECT))
        keys.append(_lookup_key(column, where))
        condition.replace(
            exp.EQ(this=column.copy(), expression=exp.Any(this=exp.Paren(this=parameter.copy())))
        )
    if not columns:
        return None
    # The tree's last use: generate without the copy that guards against the generator's edits.
    batched_sql = _POSTGRES.generate(tree, copy=False, comments=False)
    return PointLookup(
        columns=tuple(columns),
        batched_sql=batched_sql,
        batched_fingerprint=fingerprint_of(_hash_form(batched_sql)),
        keys=tuple(keys),
        small_set=small_set,
    )
