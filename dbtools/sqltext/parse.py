"""What a statement's text says: the one sqlglot entry point (``parse_statements``), the tables
a statement touches, and whether it is transaction control.

Every parse in dbtools goes through ``parse_statements``: it pads placeholders (pg_stat_statements
texts are normalised to ``$1``, ``$2``…, and sqlglot's tokenizer reads ``($1,$2)`` as the start
of a dollar-quoted string: docs/postgresql.md, "sqlglot"), silences sqlglot's logger (it logs
the statement's text, which may hold a secret, for every fallback to ``exp.Command``) and turns
every way of not understanding a text (an error, an opaque ``Command``, nothing) into None.
Parsing costs about 0.2 ms a statement, so what is derived from a parse is cached by text
(``tables_touched``); the report classifies its thousands of statements with PostgreSQL's own
parser instead (``sqltext.tree``) and asks sqlglot only for the SQL it shows. Trees themselves
are not cached: each call returns fresh ones, which callers may rewrite in place.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlglot import exp

DIALECT = "postgres"
_PLACEHOLDER = re.compile(r"\$(\d+)(?!\d)")
# Statements that only delimit transactions, after any leading spaces and comments: one
# pattern for Python's re and PostgreSQL's regular expressions (verify classifies in SQL).
_LEADING = r"(\s|--[^\n]*(\n|$)|/\*([^*]|\*+[^*/])*\*+/)*"  # spaces and comments
TRANSACTION_CONTROL_PATTERN = (
    _LEADING
    + r"(begin|start\s+transaction|commit|end|rollback|abort|savepoint|release|prepare\s+transaction)"
)
_TRANSACTION_CONTROL = re.compile(rf"^{TRANSACTION_CONTROL_PATTERN}\b", re.I)
# The same test in SQL, for ``~*`` (``\y``: PostgreSQL's word boundary).
TRANSACTION_CONTROL_SQL_REGEX = rf"^{TRANSACTION_CONTROL_PATTERN}\y"
# Of those, the ones that open a transaction block, and those that end one (not ROLLBACK TO a
# savepoint): the transaction cross-check counts blocks by them (``figures.counting``).
TRANSACTION_BEGIN_SQL_REGEX = rf"^{_LEADING}(begin|start\s+transaction)\y"
TRANSACTION_END_SQL_REGEX = (
    rf"^{_LEADING}(commit|end|rollback(?!\s+to\y)|abort|prepare\s+transaction)\y"
)
_TRANSACTION_BEGIN = re.compile(rf"^{_LEADING}(begin|start\s+transaction)\b", re.I)
_TRANSACTION_END = re.compile(
    rf"^{_LEADING}(commit|end|rollback(?!\s+to\b)|abort|prepare\s+transaction)\b", re.I
)


def pad_placeholders(text: str) -> str:
    """``($1,$2)`` as ``($1 ,$2 )``: sqlglot's tokenizer would read ``$1,$`` as dollar quoting."""
    return _PLACEHOLDER.sub(r"$\1 ", text)


def is_transaction_control(text: str) -> bool:
    """BEGIN, START TRANSACTION, COMMIT, END, ROLLBACK, ABORT, SAVEPOINT, RELEASE, PREPARE
    TRANSACTION (and COMMIT/ROLLBACK PREPARED)."""
    return bool(_TRANSACTION_CONTROL.match(text))


def transaction_role(text: str) -> str:
    """``begin`` (BEGIN, START TRANSACTION), ``end`` (COMMIT, END, ROLLBACK but not ROLLBACK
    TO, ABORT, PREPARE TRANSACTION) or ``other``: what a top-level statement does to a
    transaction block (SQL: ``TRANSACTION_BEGIN_SQL_REGEX``, ``TRANSACTION_END_SQL_REGEX``)."""
    if _TRANSACTION_BEGIN.match(text):
        return "begin"
    return "end" if _TRANSACTION_END.match(text) else "other"


@dataclass(frozen=True, order=True)
class TableRef:
    """A table a statement names: ``schema`` is None when the text leaves it to search_path."""

    schema: str | None
    name: str

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name

    @classmethod
    def parse(cls, text: str) -> TableRef:
        """``'public.flight_offers'`` or ``'flight_offers'`` (case-folded as PostgreSQL does)."""
        schema, _, name = text.strip().rpartition(".")
        return cls(schema.lower() or None, name.lower())

    def matches(self, other: TableRef) -> bool:
        """Same name, and the same schema when both give one."""
        if self.name != other.name:
            return False
        return self.schema is None or other.schema is None or self.schema == other.schema


@contextlib.contextmanager
def quiet_sqlglot() -> Iterator[None]:
    """Silence sqlglot's warnings while parsing: it logs one (with the statement's text) for
    every fallback to ``exp.Command``, which callers handle, and text may hold secrets. Around
    a batch of parses too: setting a logger's level clears every logger's cache, which costs as
    much as a small parse."""
    logger = logging.getLogger("sqlglot")
    level = logger.level
    if level >= logging.ERROR:
        yield
        return
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def parse_statements(text: str) -> list[exp.Expression] | None:
    """The statements of *text* as sqlglot trees (PostgreSQL dialect, placeholders padded), or
    None when sqlglot cannot parse all of them, or only as an opaque ``exp.Command``."""
    # Imported at the first parse: what only names tables or spots transaction control (verify
    # without --table, snapshot, doctor) never loads sqlglot.
    import sqlglot
    from sqlglot import exp

    with quiet_sqlglot():
        try:
            trees = sqlglot.parse(pad_placeholders(text), read=DIALECT)
        except sqlglot.errors.SqlglotError:
            return None
    if not trees or any(not isinstance(tree, exp.Expression) for tree in trees):
        return None  # None entries: empty statements (a lone ";")
    if any(isinstance(tree, exp.Command) for tree in trees):
        return None
    return [tree for tree in trees if isinstance(tree, exp.Expression)]


@functools.lru_cache(maxsize=20_000)
def tables_touched(text: str) -> frozenset[TableRef] | None:
    """The tables *text* reads or writes (CTE names left out); None when it cannot be parsed."""
    trees = parse_statements(text)
    if trees is None:
        return None
    return frozenset(ref for tree in trees for ref in table_refs(tree))


def table_refs(tree: exp.Expr) -> Iterator[TableRef]:
    """The tables a parsed statement names: CTE names left out, and the names a locking clause
    gives (``FOR KEY SHARE OF x`` names a FROM item, often by its alias)."""
    from sqlglot import exp  # loaded already: *tree* is sqlglot's

    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    for table in tree.find_all(exp.Table):
        name = table.name.lower()
        if isinstance(table.parent, exp.Lock):
            continue
        if name and not (not table.db and name in ctes):
            yield TableRef(table.db.lower() or None, name)


def mentions_table(text: str, table: TableRef) -> bool:
    """Whether *table* appears as a word in *text*: the fallback for texts sqlglot cannot parse."""
    name = re.escape(table.name)
    pattern = rf"\b{re.escape(table.schema)}\s*\.\s*{name}\b" if table.schema else rf"\b{name}\b"
    return re.search(pattern, text, re.I) is not None


def touches_any(text: str, tables: frozenset[TableRef]) -> bool:
    """Whether the statement *text* touches one of *tables* (by parse, else by word match)."""
    touched = tables_touched(text)
    if touched is None:
        return any(mentions_table(text, table) for table in tables)
    return any(ref.matches(table) for ref in touched for table in tables)
