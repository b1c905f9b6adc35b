"""What PostgreSQL's own parser (``pglast``) says of a statement: its family key, kind, tables,
footprint columns and lookup, in one walk over the parse tree.

``read_statement`` parses a (scrubbed) text with ``pglast.parser.parse_sql_json`` (the C parser,
a few microseconds) and walks the tree once. The walk normalises the tree in place as it goes
(the rules ``families`` documents):

* every ``IN (…)`` list, ``ARRAY[…]`` and multi-row ``VALUES`` is cut to its first element, so
  ``IN ($1,$2,$3)`` (PostgreSQL 15) and ``IN ($1 /*, ... */)`` (18) are one family;
* a cast parameter is a parameter (``ANY($1::bigint[])`` and ``ANY($1)`` are one family);

and the *key* is the normalised tree as JSON with every location and parameter number taken out.
``= $1``, ``IN (…)`` and ``= ANY($1)`` stay three forms (pglast's own C fingerprint merges them,
which would hide a point lookup's batched form). The *batched key* is the key of the same tree
with each lookup condition rewritten as ``column = ANY($n)``: the family the batched statement
has when it runs.

A statement kind this module does not understand (``VACUUM``, ``ALTER ROLE``, ``EXPLAIN``…, see
``KINDS``), or a text PostgreSQL's grammar rejects, gives None: ``families`` keeps it verbatim.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from dbtools.sqltext.parse import TableRef

# The statements understood, by their parse node, and the kind each is (``_kind`` refines a few).
KINDS: dict[str, str] = {
    "SelectStmt": "select",  # "values" for a bare VALUES list
    "InsertStmt": "insert",  # "upsert" with ON CONFLICT
    "UpdateStmt": "update",
    "DeleteStmt": "delete",
    "MergeStmt": "merge",
    "TransactionStmt": "transaction",
    "VariableSetStmt": "set",  # SET only: RESET is kept verbatim
    "CopyStmt": "copy",
    "VacuumStmt": "analyze",  # ANALYZE only: VACUUM is kept verbatim
    "GrantStmt": "grant",  # or "revoke"
    "CommentStmt": "comment",
    **dict.fromkeys(
        ("CreateStmt", "CreateTableAsStmt", "ViewStmt", "IndexStmt", "DropStmt", "AlterTableStmt",
         "TruncateStmt", "RenameStmt", "CreateSeqStmt", "AlterSeqStmt", "CreateSchemaStmt",
         "CreatedbStmt", "CreateTrigStmt"),
        "ddl",
    ),
}  # fmt: skip
_SETS = frozenset({"VAR_SET_VALUE", "VAR_SET_CURRENT", "VAR_SET_DEFAULT"})


def _kind(node: str, content: dict[str, Any]) -> str | None:
    """The kind of a statement whose parse node is *node*; None when not understood."""
    kind = KINDS.get(node)
    if node == "SelectStmt" and "valuesLists" in content and "targetList" not in content:
        return "values"
    if node == "InsertStmt" and "onConflictClause" in content:
        return "upsert"
    if node == "GrantStmt" and not content.get("is_grant"):
        return "revoke"
    if (
        (node == "VariableSetStmt" and content["kind"] not in _SETS)
        or (node == "VacuumStmt" and content.get("is_vacuumcmd"))
        or (node == "DropStmt" and content["removeType"] == "OBJECT_EXTENSION")
    ):
        return None
    return kind


# What the key leaves out: where things are in the text (``location`` is the last field of the
# nodes that have one: it follows a comma, or stands alone), and which parameter a value is. The
# walk drops the few other positions (``_POSITIONS``).
_LOCATION = re.compile(r',"(?:arg_)?location":-?\d+')
_LONE_LOCATION = re.compile(r'\{"location":-?\d+')
_PARAMETER_NUMBER = re.compile(r'"number":\d+')
_POSITIONS = ("stmt_location", "stmt_len", "list_start", "list_end", "rexpr_list_start",
              "rexpr_list_end")  # fmt: skip
# A column reference as written: identifiers (plain or "quoted") joined by dots.
_WRITTEN_COLUMN = re.compile(
    r'(?:"(?:[^"]|"")*"|[^\s."(),;=<>!+*/\-]+)(?:\s*\.\s*(?:"(?:[^"]|"")*"|[^\s."(),;=<>!+*/\-]+))*'
)
_SPACE_AROUND_DOTS = re.compile(r"\s*\.\s*")
_KEY_LIKE = re.compile(r"(^|_)(id|key)$", re.I)
_EQUALS = [{"String": {"sval": "="}}]
# Fields the walk does not enter: FOR UPDATE OF names FROM items (often by alias), not tables;
# the CTEs are visited first.
_SKIPPED = frozenset({"lockedRels", "withClause"})
# Fields whose columns are compared: WHERE, JOIN … ON, FILTER (WHERE …).
_CONDITIONS = frozenset({"whereClause", "quals", "agg_filter"})


def is_key_like(column: str) -> bool:
    """``id``, ``trip_request_id``, ``search_key``: named as a key."""
    return bool(_KEY_LIKE.search(column))


@dataclass(frozen=True)
class Lookup:
    """The lookup conditions of a SELECT (``families.PointLookup`` gives their meaning)."""

    columns: tuple[str, ...]  # as written (``o.trip_request_id``), one per WHERE
    keys: tuple[tuple[str | None, str], ...]  # (table or None, column name)
    parameters: tuple[int, ...]  # the parameter each condition compares with (0: a constant)
    small_set: bool
    batched_key: str


@dataclass(frozen=True)
class Statement:
    """What a text's parse tree says (``read_statement``)."""

    key: str
    kind: str
    tables: tuple[str, ...]
    columns: tuple[str, ...]  # the footprint's columns
    lookup: Lookup | None


_ENCODER = json.JSONEncoder(separators=(",", ":"))


class _Float(float):
    """A number the tree holds as a float (PostgreSQL's raw parse trees hold none: constants
    are strings): ``orjson`` refuses the subclass, so ``_encode`` leaves it to ``json``."""


_DECODER = json.JSONDecoder(parse_float=_Float)


def _encode(stmts: Any) -> str:
    """The tree as ``json`` encodes it (keys are hashed and stored: not one byte may change).
    ``orjson`` is six times faster and gives the same bytes for every value it accepts (it
    raises on floats here, integers above 64 bits and surrogates) as long as every character
    is below DEL: ``json`` escapes DEL and everything above it, ``orjson`` writes them out."""
    try:
        found = orjson.dumps(stmts)
    except TypeError:
        return _ENCODER.encode(stmts)
    if not found.isascii() or b"\x7f" in found:
        return _ENCODER.encode(stmts)
    return found.decode("ascii")


def _dumps(stmts: Any) -> str:
    text = _LOCATION.sub("", _encode(stmts))
    if '{"location":' in text:
        text = _LONE_LOCATION.sub("{", text)
    return _PARAMETER_NUMBER.sub("", text)


def read_statement(text: str) -> Statement | None:
    """What PostgreSQL's parser says of *text*; None when it rejects the text or a statement in
    it is not one of ``KINDS``."""
    from pglast.parser import ParseError, parse_sql_json

    try:
        stmts = _DECODER.decode(parse_sql_json(text))["stmts"]
    except (ParseError, UnicodeError, ValueError):
        return None  # never show the error: it quotes the text
    if not stmts:
        return None
    kinds = []
    for raw in stmts:
        _drop_positions(raw)
        ((node, content),) = raw["stmt"].items()
        kind = _kind(node, content)
        if kind is None:
            return None
        kinds.append((node, content, kind))
    walk = _Walk(text)
    for node, content, _ in kinds:
        walk.node(content, node)
    # Interned: thousands of statements name the same few tables and columns.
    tables = sorted(
        {
            sys.intern(str(ref))
            for ref in walk.tables
            if ref.schema is not None or ref.name not in walk.ctes
        }
    )
    key = _dumps(stmts)
    lookup = None
    if len(kinds) == 1 and kinds[0][0] == "SelectStmt" and not walk.any_form:
        lookup = walk.lookup(stmts)
    return Statement(
        key=key,
        kind=kinds[0][2],
        tables=tuple(tables),
        columns=tuple(sorted(sys.intern(name) for name in walk.columns if name)),
        lookup=lookup,
    )


def _column_name(column: dict[str, Any]) -> str:
    last = column["fields"][-1]
    return "*" if "A_Star" in last else str(last["String"]["sval"]).lower()


def _parameter(node: dict[str, Any]) -> bool:
    return "ParamRef" in node


class _Walk:
    """One pass over a statement's tree: normalises it in place and gathers what it names."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tables: list[TableRef] = []
        self.ctes: set[str] = set()
        self.columns: set[str] = set()  # compared (WHERE, JOIN … ON) or written
        self.wheres: list[tuple[dict[str, Any], dict[str, Any] | None]] = []  # (clause, SELECT)
        self.any_form = False

    # -- the walk --------------------------------------------------------------------------

    def node(self, content: dict[str, Any], owner: str = "", condition: bool = False) -> None:
        """Visit a node's fields (*owner*: the node's type, "" for a struct inside a node;
        *condition*: inside a WHERE or JOIN … ON, whose columns are the footprint's)."""
        if "relname" in content:  # a RangeVar (wrapped or not)
            schema = content.get("schemaname")
            self.tables.append(TableRef(schema.lower() if schema else None,
                                        content["relname"].lower()))  # fmt: skip
        special = _SPECIAL.get(owner)
        if special is not None:
            special(self, content)
        with_clause = content.get("withClause")
        if with_clause is not None:  # the CTEs come first in the text
            self.node(with_clause, "", condition)
        for field, value in content.items():
            kind = type(value)
            if (kind is not dict and kind is not list) or field in _SKIPPED:
                continue
            inside = condition
            if field in _CONDITIONS:
                inside = True
                if field != "quals":  # a WHERE, or FILTER (WHERE …)
                    self.wheres.append((value, content if owner == "SelectStmt" else None))
            elif field == "larg" or field == "rarg":  # a set operation's SELECTs, unwrapped
                self.node(value, owner if owner == "SelectStmt" else "", condition)
                continue
            if kind is dict:
                if "TypeCast" in value:
                    value = content[field] = _uncast(value)
                self.enter(value, inside)
                continue
            for i, item in enumerate(value):
                if type(item) is dict:
                    if "TypeCast" in item:
                        item = value[i] = _uncast(item)
                    self.enter(item, inside)
                elif type(item) is list:
                    self.node({"": item}, "", inside)

    def enter(self, value: dict[str, Any], condition: bool) -> None:
        """Visit a field's value: a node (``{"Type": {...}}``) or a struct."""
        if len(value) == 1:
            ((name, content),) = value.items()
            if type(content) is dict and name[:1].isupper():
                if condition and name == "ColumnRef":
                    self.columns.add(_column_name(content))
                self.node(content, name, condition)
                return
        self.node(value, "", condition)

    # -- what some nodes add ---------------------------------------------------------------

    def _a_expr(self, content: dict[str, Any]) -> None:
        _drop_positions(content)
        kind = content["kind"]
        if kind == "AEXPR_IN":
            items = content["rexpr"].get("List", {}).get("items") if content.get("rexpr") else None
            if items and len(items) > 1:
                del items[1:]
        elif kind == "AEXPR_OP_ANY":
            self.any_form = True

    def _array(self, content: dict[str, Any]) -> None:
        _drop_positions(content)
        elements = content.get("elements")
        if elements and len(elements) > 1:
            del elements[1:]

    def _select(self, content: dict[str, Any]) -> None:
        rows = content.get("valuesLists")
        if rows and len(rows) > 1:
            del rows[1:]

    def _sublink(self, content: dict[str, Any]) -> None:
        if content["subLinkType"] == "ANY_SUBLINK" and content.get("operName"):
            self.any_form = True

    def _cte(self, content: dict[str, Any]) -> None:
        self.ctes.add(content["ctename"].lower())

    def _insert(self, content: dict[str, Any]) -> None:
        for target in content.get("cols", ()):
            self.columns.add(target["ResTarget"]["name"].lower())

    def _update(self, content: dict[str, Any]) -> None:
        for target in content.get("targetList", ()):
            found = target["ResTarget"]
            if "MultiAssignRef" not in found.get("val", {}):
                self.columns.add(found["name"].lower())

    def _drop(self, content: dict[str, Any]) -> None:
        if content["removeType"] in _NAMED_TABLES:
            for item in content["objects"]:
                self._named(item)

    def _comment(self, content: dict[str, Any]) -> None:
        if content["objtype"] in _NAMED_TABLES:
            self._named(content["object"])

    def _named(self, name: dict[str, Any]) -> None:
        """A table named by a list of names (DROP TABLE, COMMENT ON TABLE)."""
        names = [part["String"]["sval"].lower() for part in name["List"]["items"]]
        self.tables.append(TableRef(names[-2] if len(names) > 1 else None, names[-1]))

    # -- lookups ---------------------------------------------------------------------------

    def lookup(self, stmts: Any) -> Lookup | None:
        """The lookup conditions, one per WHERE (in the text's order); rewrites them into
        their batched form in place and keys it."""
        columns, keys, parameters, small_set, rewrites = [], [], [], False, []
        for where, select in self.wheres:  # in the text's order
            chosen = _lookup_condition(where)
            if chosen is None:
                continue
            condition, column, value = chosen
            small_set = small_set or condition["A_Expr"]["kind"] == "AEXPR_IN"
            columns.append(self._written(column))
            keys.append((_lookup_table(column, select), _column_name(column)))
            parameters.append(int(value["ParamRef"]["number"]) if _parameter(value) else 0)
            rewrites.append((condition, column, value))
        if not columns:
            return None
        for condition, column, value in rewrites:
            condition["A_Expr"] = {
                "kind": "AEXPR_OP_ANY", "name": _EQUALS, "lexpr": {"ColumnRef": column},
                "rexpr": value, "location": 0,
            }  # fmt: skip
        return Lookup(
            columns=tuple(columns),
            keys=tuple(keys),
            parameters=tuple(parameters),
            small_set=small_set,
            batched_key=_dumps(stmts),
        )

    def _written(self, column: dict[str, Any]) -> str:
        """The column as the text writes it (``o.id``, ``"Id"``)."""
        found = _WRITTEN_COLUMN.match(self.text, column.get("location", 0))
        if found is None:  # not where the parser says: its parts, joined
            return ".".join(
                "*" if "A_Star" in part else part["String"]["sval"] for part in column["fields"]
            )
        return _SPACE_AROUND_DOTS.sub(".", found.group())


_SPECIAL: dict[str, Callable[[_Walk, dict[str, Any]], None]] = {
    "A_Expr": _Walk._a_expr,
    "A_ArrayExpr": _Walk._array,
    "SelectStmt": _Walk._select,
    "SubLink": _Walk._sublink,
    "CommonTableExpr": _Walk._cte,
    "InsertStmt": _Walk._insert,
    "UpdateStmt": _Walk._update,
    "DropStmt": _Walk._drop,
    "CommentStmt": _Walk._comment,
}
_NAMED_TABLES = frozenset({"OBJECT_TABLE", "OBJECT_INDEX", "OBJECT_VIEW"})


def _drop_positions(content: dict[str, Any]) -> None:
    for key in _POSITIONS:
        content.pop(key, None)


def _uncast(node: dict[str, Any]) -> dict[str, Any]:
    """A cast parameter as the parameter (one level: ``$1::text::int`` keeps its outer cast)."""
    cast = node.get("TypeCast")
    if cast is not None and len(node) == 1 and _parameter(cast.get("arg", {})):
        return dict(cast["arg"])
    return node


def _conjuncts(node: dict[str, Any]) -> list[dict[str, Any]]:
    test = node.get("BoolExpr")
    if test is not None and test["boolop"] == "AND_EXPR":
        return [found for arg in test["args"] for found in _conjuncts(arg)]
    return [node]


def _pinned(node: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The column and its value in ``column = $n`` (either way round) or ``column IN ($n, …)``
    (the list cut to one element already), else None."""
    test = node.get("A_Expr")
    if test is None or test["name"] != _EQUALS:
        return None
    left, right = test.get("lexpr", {}), test.get("rexpr", {})
    if test["kind"] == "AEXPR_OP":
        if "ColumnRef" in left and _parameter(right):
            return left["ColumnRef"], right
        if "ColumnRef" in right and _parameter(left):
            return right["ColumnRef"], left
    elif test["kind"] == "AEXPR_IN" and "ColumnRef" in left:
        items = right.get("List", {}).get("items")
        if items and (_parameter(items[0]) or _constant(items[0])):
            return left["ColumnRef"], items[0]
    return None


def _constant(node: dict[str, Any]) -> bool:
    """A number or string constant (not NULL, not a boolean)."""
    const = node.get("A_Const")
    return const is not None and not ({"isnull", "boolval"} & const.keys())


def _lookup_condition(
    where: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]] | None:
    """The condition a batch would turn into ``= ANY``: a key-like column's, else the first."""
    pinned = [(c, *found) for c in _conjuncts(where) if (found := _pinned(c)) is not None]
    keyed = [found for found in pinned if is_key_like(_column_name(found[1]))]
    return next(iter(keyed or pinned), None)


def _sources(select: dict[str, Any]) -> dict[str, str | None]:
    """What a SELECT reads directly (FROM items and their joins), by the name its columns use:
    the table (``schema.name``), or None for anything else (a subquery, a function)."""
    found: dict[str, str | None] = {}
    pending = list(select.get("fromClause", ()))
    while pending:
        item = pending.pop(0)
        ((name, content),) = item.items()
        if name == "JoinExpr":
            pending[:0] = [content["larg"], content["rarg"]]
            continue
        alias = (content.get("alias") or {}).get("aliasname")
        if name == "RangeVar":
            schema = (content.get("schemaname") or "").lower() or None
            table = str(TableRef(schema, content["relname"].lower()))
            found[(alias or content["relname"]).lower()] = table
        else:
            found[(alias or "").lower()] = None
    return found


def _lookup_table(column: dict[str, Any], select: dict[str, Any] | None) -> str | None:
    sources = _sources(select) if select is not None else {}
    fields = column["fields"]
    if len(fields) > 1:
        qualifier = fields[-2].get("String", {}).get("sval", "")
        return sources.get(str(qualifier).lower())
    return next(iter(sources.values())) if len(sources) == 1 else None
