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

A *point lookup* is a SELECT whose WHERE pins a column to one parameter (``id = $1``) and has no
``IN``/``= ANY`` form; called at least once per request it is an **N+1 suspect**
(``is_n_plus_one``, with the lines drawn by ``NPlusOne``): a batch of requests could share one
``id = ANY($1)``. Parses are cached by queryid (``Classifier``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass

from sqlglot import exp

from dbtools.sqltext.parse import DIALECT, parse_statements, table_refs
from dbtools.sqltext.scrub import is_unreadable, scrub_query

FINGERPRINT_LENGTH = 16
_WHITESPACE = re.compile(r"\s+")
_LEADING_WORDS = re.compile(r"^\s*(?:(?:--[^\n]*\n|/\*.*?\*/)\s*)*(\w+)(?:\s+(\w+))?", re.S)
# Utility statements named by two words (ALTER ROLE, CREATE INDEX…), the rest by one.
_TWO_WORD_KINDS = frozenset({"alter", "create", "drop", "grant", "revoke", "comment", "reindex"})


@dataclass(frozen=True)
class PointLookup:
    """A lookup of rows by one value per call, and the batched form that would serve a batch."""

    columns: tuple[str, ...]  # the lookup columns (``id`` in ``id = $1``), one per WHERE
    batched_sql: str  # the same statement with ``column = ANY($n)``
    batched_fingerprint: str  # its family, to spot a batched form already running


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
    if lookup is None:
        return False
    if requests:
        return calls / requests >= limits.calls_per_request
    return calls >= limits.min_calls


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
    display = "; ".join(tree.sql(dialect=DIALECT, comments=False) for tree in trees)
    kind = _kind(trees[0])
    tables = tuple(sorted({name for tree in trees for name in _tables(tree)}))
    normalised = _hash_form(display)
    lookup = _point_lookup(trees[0]) if len(trees) == 1 else None  # last: it rewrites the tree
    return StatementShape(
        fingerprint=fingerprint_of(normalised),
        kind=kind,
        tables=tables,
        sql=display,
        text=scrubbed,
        parsed=True,
        lookup=lookup,
    )


class Classifier:
    """``shape_of`` with its results cached by queryid (a queryid's text never changes on one
    server). ``cache=False`` parses every time (for measuring what the cache saves)."""

    def __init__(self, *, cache: bool = True) -> None:
        self._cache: dict[int, StatementShape] | None = {} if cache else None
        self.parses = 0

    def shape(self, queryid: int, text: str) -> StatementShape:
        if self._cache is not None:
            found = self._cache.get(queryid)
            if found is not None:
                return found
        self.parses += 1
        shape = shape_of(text, queryid)
        if self._cache is not None:
            self._cache[queryid] = shape
        return shape


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


# -- point lookups ------------------------------------------------------------------------------

_KEY_LIKE = re.compile(r"(^|_)(id|key)$", re.I)


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


def _pinned_column(condition: exp.Expression) -> exp.Column | None:
    """The column in ``column = $n`` (either way round, the parameter maybe cast), else None."""
    if not isinstance(condition, exp.EQ):
        return None
    left, right = condition.this, condition.expression
    if isinstance(left, exp.Column) and _is_parameter(right):
        return left
    if isinstance(right, exp.Column) and _is_parameter(left):
        return right
    return None


def _lookup_condition(where: exp.Where) -> exp.EQ | None:
    """The ``column = $n`` a batch would turn into ``= ANY``: a key-like column's, else the first."""
    pinned = {
        condition: column
        for condition in _conjuncts(where.this)
        if isinstance(condition, exp.EQ) and (column := _pinned_column(condition)) is not None
    }
    keyed = [condition for condition, column in pinned.items() if _KEY_LIKE.search(column.name)]
    return next(iter(keyed or pinned), None)


def _point_lookup(tree: exp.Expression) -> PointLookup | None:
    """A SELECT (or UNION of them) pinning a column to one parameter, with no ``IN``/``ANY``.
    Rewrites *tree* in place into the batched form."""
    if not isinstance(tree, (exp.Select, exp.SetOperation)) or tree.find(exp.In, exp.Any):
        return None
    columns = []
    for where in list(tree.find_all(exp.Where)):
        condition = _lookup_condition(where)
        if condition is None:
            continue
        column = _pinned_column(condition)
        assert column is not None
        parameter = condition.expression if condition.this is column else condition.this
        columns.append(column.sql(dialect=DIALECT))
        condition.replace(exp.EQ(this=column, expression=exp.Any(this=exp.Paren(this=parameter))))
    if not columns:
        return None
    batched_sql = tree.sql(dialect=DIALECT, comments=False)
    return PointLookup(
        columns=tuple(columns),
        batched_sql=batched_sql,
        batched_fingerprint=fingerprint_of(_hash_form(batched_sql)),
    )
