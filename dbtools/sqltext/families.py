"""Query families: statements grouped by what they do, whatever their constants or list lengths.

Each statement text is scrubbed (``sqltext.scrub.scrub_query``: every literal becomes a placeholder,
so no report can show one) and parsed by PostgreSQL's own parser (``sqltext.tree``, through
``pglast``). Its *fingerprint* hashes the parse tree after every constant and parameter is made
the same, casts of parameters are dropped and every ``IN (…)`` list, ``ARRAY[…]`` and multi-row
``VALUES`` is collapsed to one element: ``IN ($1,$2,$3)`` (PostgreSQL 15) and ``IN ($1 /*, ...
*/)`` (18) are one family, while ``= $1``, ``IN (…)`` and ``= ANY($1)`` are three. What a report
shows of a family (``StatementShape.sql``, ``batched_sql``) is sqlglot's rendering, made only for
the statements a report shows.

Texts the parser rejects, and statements other than those ``tree.KINDS`` understands (``VACUUM``,
``ALTER ROLE``, ``EXPLAIN``…), are kept: their family is their scrubbed text with whitespace
collapsed, ``parsed`` is False, and reports list them verbatim. A text the scrubber could not
read (``<unreadable statement, N characters>``) is a family of its own, keyed by its queryid:
equal lengths say nothing.

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
import importlib.metadata
import logging
import math
import multiprocessing
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dbtools.output import ProgressLog
from dbtools.sqltext.parse import DIALECT, TableRef, parse_statements
from dbtools.sqltext.parse_cache import ParseCache
from dbtools.sqltext.scrub import is_unreadable, scrub_query
from dbtools.sqltext.tree import is_key_like, read_statement

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from sqlglot import exp

__all__ = ["is_key_like"]  # a lookup column's test, for the report's rules

FINGERPRINT_LENGTH = 16
_WHITESPACE = re.compile(r"\s+")
_LEADING_WORDS = re.compile(r"^\s*(?:(?:--[^\n]*\n|/\*.*?\*/)\s*)*(\w+)(?:\s+(\w+))?", re.S)
# Utility statements named by two words (ALTER ROLE, CREATE INDEX…), the rest by one.
_TWO_WORD_KINDS = frozenset({"alter", "create", "drop", "grant", "revoke", "comment", "reindex"})


@dataclass(frozen=True, order=True, slots=True)
class LookupKey:
    """A lookup column and its table (``schema.name`` as written; None when the text does not
    say, e.g. an unqualified column in a join)."""

    table: str | None
    column: str


@dataclass(frozen=True, slots=True)
class PointLookup:
    """A lookup of rows by one value (or a small list) per call, and the batched form that would
    serve a batch (its SQL: ``StatementShape.batched_sql``)."""

    columns: tuple[str, ...]  # the lookup columns as written (``id`` in ``id = $1``), per WHERE
    batched_fingerprint: str  # the family of the same statement with ``column = ANY($n)``
    keys: tuple[LookupKey, ...] = ()  # the lookup columns with their tables
    small_set: bool = False  # ``column IN (…)``: a few values per call, not one
    parameters: tuple[int, ...] = ()  # the parameter each lookup column is compared with

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


@dataclass(frozen=True, slots=True)
class Footprint:
    """What a statement does, whatever its form: a per-request statement and its batched form
    share one (the columns are those its conditions compare, and those it writes)."""

    kind: str
    tables: tuple[str, ...]
    columns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StatementShape:
    """What one statement text is: its family, kind, tables, and whether it is a point lookup.

    ``sql`` and ``batched_sql`` are sqlglot's rendering, made when asked for (not kept: a
    report shows a few dozen of the thousands of statements it classifies, and keeps them all).
    """

    fingerprint: str
    kind: str  # select, insert, upsert, update, delete, merge, ddl, set, transaction, or keywords
    tables: tuple[str, ...]  # schema.name as written (no CTE names); empty when not parsed
    text: str  # the scrubbed text as it came
    parsed: bool
    lookup: PointLookup | None = None
    footprint: Footprint | None = None  # None when not parsed
    foreign_key_check: TableRef | None = None  # the parent table the check's text names

    @property
    def sql(self) -> str:
        """The text as sqlglot regenerates it (lists collapsed, casts of parameters dropped),
        or the text itself when sqlglot cannot parse it (or it was not parsed)."""
        return display_sql(self.text) if self.parsed else self.text

    @property
    def batched_sql(self) -> str | None:
        """A lookup's batched form: each lookup condition as ``column = ANY($n)``."""
        return None if self.lookup is None else batched_display(self.text, self.lookup)


def fingerprint_of(normalised: str) -> str:
    """A short, stable hash of a normalised statement."""
    return hashlib.sha1(normalised.encode()).hexdigest()[:FINGERPRINT_LENGTH]


def shape_of(text: str, queryid: int | None = None) -> StatementShape:
    """Classify one statement text (any text: it is scrubbed first). An unreadable text's family
    is its *queryid*'s."""
    scrubbed = scrub_query(text)
    if is_unreadable(scrubbed):
        return StatementShape(
            fingerprint=fingerprint_of(f"unreadable:{queryid}"),
            kind="unreadable",
            tables=(),
            text=scrubbed,
            parsed=False,
        )
    statement = read_statement(scrubbed)
    if statement is None:
        verbatim = _WHITESPACE.sub(" ", scrubbed).strip()
        return StatementShape(
            fingerprint=fingerprint_of("unparsed:" + verbatim),
            kind=_leading_keywords(scrubbed),
            tables=(),
            text=scrubbed,
            parsed=False,
        )
    parent = foreign_key_parent(scrubbed)
    kind = "foreign-key check" if parent else statement.kind
    found = statement.lookup
    lookup = None
    if found is not None and parent is None:
        lookup = PointLookup(
            columns=found.columns,
            batched_fingerprint=fingerprint_of(found.batched_key),
            keys=tuple(LookupKey(table, column) for table, column in found.keys),
            small_set=found.small_set,
            parameters=found.parameters,
        )
    return StatementShape(
        fingerprint=fingerprint_of(statement.key),
        kind=kind,
        tables=statement.tables,
        text=scrubbed,
        parsed=True,
        lookup=lookup,
        footprint=Footprint(kind, statement.tables, statement.columns),
        foreign_key_check=parent,
    )


def _shape_from_json(value: dict[str, Any]) -> StatementShape:
    """A ``StatementShape`` from its JSON form (``dataclasses.asdict``, through JSON)."""
    lookup, footprint, parent = value["lookup"], value["footprint"], value["foreign_key_check"]
    return StatementShape(
        fingerprint=value["fingerprint"],
        kind=value["kind"],
        tables=tuple(value["tables"]),
        text=value["text"],
        parsed=value["parsed"],
        lookup=None
        if lookup is None
        else PointLookup(
            columns=tuple(lookup["columns"]),
            batched_fingerprint=lookup["batched_fingerprint"],
            keys=tuple(LookupKey(**key) for key in lookup["keys"]),
            small_set=lookup["small_set"],
            parameters=tuple(lookup["parameters"]),
        ),
        footprint=None
        if footprint is None
        else Footprint(footprint["kind"], tuple(footprint["tables"]), tuple(footprint["columns"])),
        foreign_key_check=None if parent is None else TableRef(**parent),
    )


# Bump when shape_of's results change for a text: the stored shapes of older rules are misses.
RULES_VERSION = 2
# Below this many texts to parse, starting worker processes costs more than they save.
PARALLEL_FROM = 400
PROGRESS_FROM = 100  # texts to parse from which -v shows the progress


def compiled_sqlglot() -> bool:
    """Whether sqlglot runs its compiled build (the ``sqlglotc`` distribution, ``dbtools[fast]``),
    about twice as fast to parse as the pure Python one (it renders the SQL a report shows)."""
    from sqlglot import tokens as sqlglot_tokens

    return bool(getattr(sqlglot_tokens, "SQLGLOTC_INSTALLED", False))


def cache_namespace() -> str:
    """What a stored shape depends on besides its text: these rules and PostgreSQL's parser
    (pglast's version)."""
    return f"shapes-v{RULES_VERSION};pglast-{importlib.metadata.version('pglast')}"


def free_cores() -> int:
    """The cores this process may run on that are idle now: one, plus one for each whole core
    the last minute's load average leaves free. On a shared machine whose cores are busy, a
    second worker only halves each one's share (benchmarks/RESULTS-report.md)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    idle = int((cores or 1) - os.getloadavg()[0])
    return max(1, min(cores or 1, idle + 1))


def shapes_of(texts: Sequence[str], *, workers: int = 1) -> list[StatementShape]:
    """``shape_of`` each of *texts*, in order; over *workers* processes when there are at least
    ``PARALLEL_FROM`` (forked, so they start with pglast loaded; where fork is missing, here).
    From ``PROGRESS_FROM`` texts on, the progress is logged (``parsing statements: N of M``)."""
    progress = (
        ProgressLog(log, "parsing statements", len(texts))
        if len(texts) >= PROGRESS_FROM
        else lambda done: None
    )
    shapes: list[StatementShape] = []
    progress(0)
    with contextlib.ExitStack() as stack:
        parsed: Iterable[StatementShape]
        if workers < 2 or len(texts) < PARALLEL_FROM or not _CAN_FORK:
            parsed = map(shape_of, texts)
        else:
            # chunks of a few hundred: few round trips, and progress to show between them
            chunk = max(1, min(-(-len(texts) // (workers * 2)), PARALLEL_FROM))
            pool = stack.enter_context(multiprocessing.get_context("fork").Pool(workers))
            parsed = pool.imap(shape_of, texts, chunksize=chunk)
        for shape in parsed:
            shapes.append(shape)
            progress(len(shapes))
    return shapes


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


# -- what a report shows: sqlglot's rendering ---------------------------------------------------


def display_sql(text: str) -> str:
    """*text* as sqlglot regenerates it, IN lists, ``ARRAY[…]`` and ``VALUES`` rows cut to their
    first element and casts of parameters dropped; *text* itself when sqlglot cannot parse it."""
    trees = parse_statements(text)
    if trees is None:
        return text
    return "; ".join(_generate(_simplified(tree)) for tree in trees)


def batched_display(text: str, lookup: PointLookup) -> str:
    """The lookup *text* in its batched form: each of *lookup*'s conditions (its column
    compared with its parameter) as ``column = ANY($n)``."""
    from sqlglot import exp

    trees = parse_statements(text)
    if trees is None or len(trees) != 1:
        return text
    tree = _simplified(trees[0])
    for key, parameter in zip(lookup.keys, lookup.parameters, strict=True):
        for node in list(tree.find_all(exp.EQ, exp.In, bfs=False)):
            pinned = _pinned(node)
            if pinned is None or pinned[0].name.lower() != key.column:
                continue
            if parameter and pinned[1].name != str(parameter):
                continue
            column, value = pinned
            node.replace(
                exp.EQ(this=column.copy(), expression=exp.Any(this=exp.Paren(this=value.copy())))
            )
            break
    return _generate(tree)


def _generate(tree: exp.Expression) -> str:
    from sqlglot.dialects.dialect import Dialect

    # Generated without a copy: the generator copies what its transforms would rewrite.
    return Dialect.get_or_raise(DIALECT).generate(tree, copy=False, comments=False)


def _simplify(node: exp.Expression) -> exp.Expression:
    from sqlglot import exp

    if isinstance(node, (exp.In, exp.Array, exp.Values)) and len(node.expressions) > 1:
        node.set("expressions", node.expressions[:1])
    elif isinstance(node, exp.Cast) and isinstance(node.this, (exp.Parameter, exp.Placeholder)):
        return node.this
    return node


def _simplified(tree: exp.Expression) -> exp.Expression:
    """*tree* (in place) with IN lists, ARRAY[…] and VALUES rows cut to their first element and
    casts of parameters dropped."""
    return tree.transform(_simplify, copy=False)


def _pinned(condition: exp.Expr) -> tuple[exp.Column, exp.Expression] | None:
    """The column and its value in ``column = $n`` (either way round) or ``column IN ($n)``."""
    from sqlglot import exp

    parameter = (exp.Parameter, exp.Placeholder)
    if isinstance(condition, exp.EQ):
        left, right = condition.this, condition.expression
        if isinstance(left, exp.Column) and isinstance(right, parameter):
            return left, right
        if isinstance(right, exp.Column) and isinstance(left, parameter):
            return right, left
    elif (
        isinstance(condition, exp.In)
        and isinstance(condition.this, exp.Column)
        and not condition.args.get("query")
        and condition.expressions
        and isinstance(condition.expressions[0], (*parameter, exp.Literal))
    ):
        return condition.this, condition.expressions[0]
    return None


def _leading_keywords(text: str) -> str:
    match = _LEADING_WORDS.match(text)
    if match is None:
        return "unknown"
    first, second = match.group(1).lower(), (match.group(2) or "").lower()
    return f"{first} {second}" if first in _TWO_WORD_KINDS and second else first


# -- foreign-key checks ----------------------------------------------------------

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
