"""One SQL statement → what it does to a live database: the locks it takes and what they block,
whether it must run outside a transaction, whether it destroys data, whether it can run twice.

sqlglot parses first. Where sqlglot falls back to a generic ``exp.Command`` (``ALTER TABLE …
RESET``, ``VACUUM``, ``REINDEX``, ``LOCK TABLE``…) the leading keywords decide, and a ``DO`` block is
classified by the statements inside it, including the DDL it builds for ``EXECUTE``. A statement
that none of these recognise comes back with a ``warning`` and no lock: callers show it verbatim.

Lock levels follow the PostgreSQL manual ("Explicit Locking", and each command's page); the ones
that matter most were checked on PostgreSQL 15 and 18 with ``pg_locks`` (``DROP TABLE`` takes
ACCESS EXCLUSIVE on the tables its foreign keys reference, ``COMMENT ON`` takes SHARE UPDATE
EXCLUSIVE, a foreign key in ``CREATE TABLE`` takes SHARE ROW EXCLUSIVE on the referenced table).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp

from dbtools.safety.locks import Blocking, LockLevel, storage_parameter_lock, strongest
from dbtools.sqltext.parse import parse_statements
from dbtools.sqltext.split import dollar_body, mask_literals, split_statements, strip_comments

DEFAULT_SCHEMA = "public"
RUN_TIME = "(named at run time)"
_DYNAMIC = "dbtools_dynamic_part"

_RUN_TIME_PARAMETER = (
    "the storage parameter is named at run time; every table storage parameter but "
    "user_catalog_table takes SHARE UPDATE EXCLUSIVE"
)

AE = LockLevel.ACCESS_EXCLUSIVE
SUE = LockLevel.SHARE_UPDATE_EXCLUSIVE


@dataclass(frozen=True)
class RelationLock:
    """A lock a statement takes on one relation."""

    relation: str
    level: LockLevel


@dataclass(frozen=True)
class DbObject:
    """A schema object a statement creates or drops."""

    kind: str  # table, index, schema, function, view, sequence, …
    name: str  # schema-qualified (unqualified names are taken to be in public)
    table: str | None = None  # an index's table

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


@dataclass(frozen=True)
class DataLoss:
    """Rows a statement destroys, and the query that exports them first."""

    table: str
    what: str  # "every row", "rows WHERE …", "column c"
    export_query: str


@dataclass(frozen=True)
class Classification:
    """What one statement does to a live database."""

    action: str
    locks: tuple[RelationLock, ...] = ()
    created: tuple[DbObject, ...] = ()
    dropped: tuple[DbObject, ...] = ()
    references: tuple[str, ...] = ()  # tables the foreign keys of a created table reference
    column_types: tuple[tuple[str, str], ...] = ()  # (schema.table.column, type) it defines
    # (old, new) of ALTER TABLE … RENAME: schema.table for a table, schema.table.column for a column
    renamed: tuple[str, str] | None = None
    data_loss: tuple[DataLoss, ...] = ()
    idempotent: bool = True
    needs_autocommit: bool = False  # not allowed inside a transaction block (CONCURRENTLY, VACUUM)
    rewrites_table: bool = False
    scans_table: bool = False  # reads the whole table while holding its lock
    parser: str = "sqlglot"
    notes: tuple[str, ...] = ()
    warning: str | None = None

    @property
    def lock(self) -> LockLevel | None:
        """The strongest lock the statement takes on a relation (None: none)."""
        return strongest([lock.level for lock in self.locks])

    @property
    def blocks(self) -> Blocking:
        """What the application must wait for while the statement holds its locks."""
        return self.lock.blocks if self.lock else Blocking.NEITHER

    @property
    def destroys_data(self) -> bool:
        return bool(self.data_loss)

    @property
    def classified(self) -> bool:
        return self.warning is None


@dataclass
class SchemaContext:
    """What earlier statements created, so that later ones can be classified fully: the table of
    an index (``DROP INDEX`` names only the index), the tables a table's foreign keys reference
    (``DROP TABLE`` locks them too), and each column's type (so that a type "change" to the same
    or a binary-compatible type is not taken for a rewrite)."""

    index_tables: dict[str, str] = field(default_factory=dict)
    references: dict[str, tuple[str, ...]] = field(default_factory=dict)
    column_types: dict[str, str] = field(default_factory=dict)

    def learn(self, classification: Classification) -> None:
        for obj in classification.created:
            if obj.kind == "index" and obj.table:
                self.index_tables[obj.name] = obj.table
            if obj.kind == "table":
                self.references[obj.name] = classification.references
        self.column_types.update(classification.column_types)
        if classification.renamed is not None:
            self._follow_rename(*classification.renamed)

    def learn_column_types(self, types: dict[str, str]) -> None:
        """Column types known from elsewhere (an ``alter_column``'s ``existing_type``), for the
        columns no earlier statement defined."""
        for column, sql_type in types.items():
            self.column_types.setdefault(qualify(column), type_text(sql_type))

    def _follow_rename(self, old: str, new: str) -> None:
        """A table or column renamed: what is known of it (a table's columns, indexes and
        references) is known under its new name."""
        prefix = f"{old}."
        self.column_types = {
            (new if key == old else f"{new}.{key.removeprefix(prefix)}")
            if key == old or key.startswith(prefix)
            else key: value
            for key, value in self.column_types.items()
        }
        self.index_tables = {
            index: (new if table == old else table) for index, table in self.index_tables.items()
        }
        if old in self.references:
            self.references[new] = self.references.pop(old)

    def copy(self) -> SchemaContext:
        return SchemaContext(
            dict(self.index_tables), dict(self.references), dict(self.column_types)
        )


def qualify(name: str) -> str:
    """*name* with its schema: ``public`` when it has none, ``pg_catalog`` for ``pg_*``."""
    if "." in name:
        return name
    return f"pg_catalog.{name}" if name.startswith("pg_") else f"{DEFAULT_SCHEMA}.{name}"


def _user_relations(names: list[str]) -> list[str]:
    """Catalog reads take locks nobody waits for: leave them out."""
    return [name for name in dict.fromkeys(names) if not name.startswith("pg_catalog.")]


def classify(sql: str, context: SchemaContext | None = None) -> Classification:
    """Classify one statement (no trailing ``;``). Never raises: an unknown statement comes back
    with ``warning`` set and no locks."""
    context = context or SchemaContext()
    bare = strip_comments(sql)
    if not bare:
        return Classification("empty statement", parser="keywords")
    if re.match(r"DO\b", bare, re.I):
        return _classify_do(sql, context)
    tree = _parse(sql)
    if tree is not None:
        handler = _SQLGLOT_HANDLERS.get(type(tree))
        if handler is not None:
            result = handler(tree, bare, context)
            if result is not None:
                return result
    return _classify_by_keywords(bare, context)


# -- sqlglot ---------------------------------------------------------------------------------------


def _parse(sql: str) -> exp.Expression | None:
    """The one statement in *sql*, or None (sqlglot cannot parse it, or it is several)."""
    trees = parse_statements(sql)
    return trees[0] if trees is not None and len(trees) == 1 else None


def _name(node: exp.Expression | None) -> str:
    """The dotted name of a Table (or a Column's table), unquoted."""
    if node is None:
        return ""
    parts: list[str]
    if isinstance(node, exp.Table):
        parts = [node.catalog, node.db, node.name]
    elif isinstance(node, exp.Column):
        found = [node.args.get(key) for key in ("catalog", "db", "table")]
        parts = [p.name if isinstance(p, exp.Expression) else str(p or "") for p in found]
    else:
        parts = [node.name]
    return ".".join(part for part in parts if part).replace(_DYNAMIC, RUN_TIME)


def _table_name(node: exp.Expression | None) -> str:
    name = _name(node)
    return name if name.startswith(RUN_TIME) else qualify(name)


def _tables_read(tree: exp.Expression) -> list[str]:
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    return _user_relations(
        [_table_name(t) for t in tree.find_all(exp.Table) if t.name and t.name not in ctes]
    )


def _drop(tree: exp.Expression, bare: str, context: SchemaContext) -> Classification | None:
    kind = str(tree.args.get("kind") or "").upper()
    exists = bool(tree.args.get("exists"))
    cascade = bool(tree.args.get("cascade"))
    concurrently = bool(tree.args.get("concurrently"))
    targets = [_name(t) for t in tree.args.get("tables") or [tree.this] if t is not None]
    notes: list[str] = []
    if cascade:
        notes.append("CASCADE also drops every object that depends on it")
    if kind == "TABLE":
        tables = [qualify(t) for t in targets]
        locks = [RelationLock(t, AE) for t in tables]
        for table in tables:
            for referenced in context.references.get(table, ()):
                locks.append(RelationLock(referenced, AE))
                notes.append(f"its foreign key locks the referenced table {referenced}")
        return Classification(
            "DROP TABLE",
            locks=tuple(locks),
            dropped=tuple(DbObject("table", t) for t in tables),
            data_loss=tuple(DataLoss(t, "every row", f"SELECT * FROM {t}") for t in tables),
            idempotent=exists,
            notes=tuple(notes),
        )
    if kind == "INDEX":
        indexes = [qualify(t) for t in targets]
        index_tables = [context.index_tables.get(index) for index in indexes]
        level = SUE if concurrently else AE
        locks = [
            RelationLock(table or index, level)
            for index, table in zip(indexes, index_tables, strict=True)
        ]
        if concurrently:
            notes.append("waits for every transaction that could use the index to finish")
        return Classification(
            "DROP INDEX CONCURRENTLY" if concurrently else "DROP INDEX",
            locks=tuple(locks),
            dropped=tuple(
                DbObject("index", i, t) for i, t in zip(indexes, index_tables, strict=True)
            ),
            idempotent=exists,
            needs_autocommit=concurrently,
            notes=tuple(notes),
        )
    if kind == "SCHEMA":
        notes.append("fails unless the schema is empty" if not cascade else "")
        return Classification(
            "DROP SCHEMA",
            dropped=tuple(DbObject("schema", t) for t in targets),
            data_loss=tuple(DataLoss(f"{t}.*", "every table in it", "") for t in targets)
            if cascade
            else (),
            idempotent=exists,
            notes=tuple(n for n in notes if n),
        )
    object_kind = kind.lower()
    relation_kinds = {"VIEW", "MATERIALIZED VIEW", "SEQUENCE"}
    materialized = bool(tree.args.get("materialized"))
    if materialized:
        object_kind, kind = "materialized view", "MATERIALIZED VIEW"
    names = [qualify(t) for t in targets]
    locks = [RelationLock(n, AE) for n in names] if kind in relation_kinds else []
    return Classification(
        f"DROP {kind}",
        locks=tuple(locks),
        dropped=tuple(DbObject(object_kind, n) for n in names),
        idempotent=exists,
        notes=tuple(notes),
    )


def _create(tree: exp.Expression, bare: str, context: SchemaContext) -> Classification | None:
    kind = str(tree.args.get("kind") or "").upper()
    exists = bool(tree.args.get("exists")) or bool(tree.args.get("replace"))
    if kind == "INDEX":
        index = tree.this
        table = _table_name(index.args.get("table"))
        schema = table.rsplit(".", 1)[0]
        name = f"{schema}.{index.name}" if index.name else f"{schema}.(unnamed)"
        concurrently = bool(tree.args.get("concurrently"))
        notes = []
        if concurrently:
            notes.append("waits for running transactions; a failed build leaves an INVALID index")
        if tree.args.get("unique"):
            notes.append("fails if the column values are not unique")
        return Classification(
            "CREATE INDEX CONCURRENTLY" if concurrently else "CREATE INDEX",
            locks=(RelationLock(table, SUE if concurrently else LockLevel.SHARE),),
            created=(DbObject("index", name, table),),
            # IF NOT EXISTS keeps an INVALID leftover of an interrupted concurrent build.
            idempotent=exists and not concurrently,
            needs_autocommit=concurrently,
            scans_table=True,
            notes=tuple(notes),
        )
    if kind == "TABLE":
        name = _table_name(tree.this.this if isinstance(tree.this, exp.Schema) else tree.this)
        referenced = []
        for reference in tree.find_all(exp.Reference):
            target = (
                reference.this.this if isinstance(reference.this, exp.Schema) else reference.this
            )
            table = _table_name(target)
            if table != name and table not in referenced:
                referenced.append(table)
        notes = [f"its foreign key locks {t} (blocks writes there)" for t in referenced]
        definition = tree.this.expressions if isinstance(tree.this, exp.Schema) else []
        columns = [c for c in definition if isinstance(c, exp.ColumnDef)]
        return Classification(
            "CREATE TABLE",
            locks=tuple(RelationLock(t, LockLevel.SHARE_ROW_EXCLUSIVE) for t in referenced),
            created=(DbObject("table", name),),
            references=tuple(referenced),
            column_types=tuple(
                (f"{name}.{c.name}", _type_text(c.args.get("kind"))) for c in columns
            ),
            idempotent=exists,
            notes=tuple(notes),
        )
    target = tree.this
    if isinstance(target, exp.UserDefinedFunction):
        target = target.this
    if isinstance(target, exp.Schema):
        target = target.this
    name = _name(target)
    object_kind = kind.lower()
    return Classification(
        f"CREATE {'OR REPLACE ' if tree.args.get('replace') else ''}{kind}",
        created=(DbObject(object_kind, name if kind == "SCHEMA" else qualify(name)),),
        idempotent=exists,
    )


_SET_KEYS = re.compile(r"\b(SET|RESET)\s*\((?P<keys>.*)\)\s*$", re.I | re.S)


def _alter(tree: exp.Expression, bare: str, context: SchemaContext) -> Classification | None:
    if str(tree.args.get("kind") or "").upper() != "TABLE":
        return None
    table = _table_name(tree.this)
    levels: list[LockLevel] = []
    notes: list[str] = []
    actions: list[str] = []
    data_loss: list[DataLoss] = []
    others: list[RelationLock] = []
    created: list[DbObject] = []
    dropped: list[DbObject] = []
    column_types: list[tuple[str, str]] = []
    renamed: tuple[str, str] | None = None
    rewrites = scans = False
    idempotent = True
    for action in tree.args.get("actions") or []:
        if isinstance(action, exp.AlterSet):
            if action.args.get("tablespace"):
                levels.append(AE)
                rewrites = True
                actions.append("SET TABLESPACE")
                notes.append("copies the whole table to the new tablespace")
                continue
            keys = [
                (e.this.name if isinstance(e, exp.EQ) else e.name).replace(_DYNAMIC, RUN_TIME)
                for e in action.expressions
            ]
            if not keys:
                return None  # SET LOGGED, SET ACCESS METHOD…: the keywords decide
            levels.append(storage_parameter_lock(keys))
            actions.append("SET (storage parameters)")
            if RUN_TIME in keys:
                notes.append(_RUN_TIME_PARAMETER)
        elif isinstance(action, exp.ColumnDef):
            levels.append(AE)
            actions.append("ADD COLUMN")
            column = f"{table}.{action.name}"
            created.append(DbObject("column", column, table))
            column_types.append((column, _type_text(action.args.get("kind"))))
            idempotent = idempotent and bool(action.args.get("exists"))
            default = action.find(exp.DefaultColumnConstraint)
            if default is not None and default.find(exp.Anonymous, exp.Rand, exp.Uuid):
                rewrites = True
                notes.append("a volatile default rewrites the table")
            if action.find(exp.ComputedColumnConstraint):
                rewrites = True
                notes.append("a stored generated column rewrites the table")
        elif isinstance(action, exp.Drop):
            levels.append(AE)
            what = str(action.args.get("kind") or "").upper()
            actions.append(f"DROP {what}".strip())
            idempotent = idempotent and bool(action.args.get("exists"))
            if what == "COLUMN":
                for column in action.args.get("tables") or []:
                    dropped.append(DbObject("column", f"{table}.{column.name}", table))
                    data_loss.append(
                        DataLoss(table, f"column {column.name}", f"SELECT * FROM {table}")
                    )
        elif isinstance(action, exp.AlterColumn):
            levels.append(AE)
            if action.args.get("dtype") is not None:
                column = f"{table}.{action.name}"
                new_type = _type_text(action.args["dtype"])
                old_type = context.column_types.get(column)
                actions.append("ALTER COLUMN TYPE")
                column_types.append((column, new_type))
                if not action.args.get("using") and _no_rewrite(old_type, new_type):
                    notes.append(
                        f"{old_type} to {new_type} is binary-compatible: no rewrite, no scan"
                    )
                else:
                    rewrites = True
                    notes.append("rewrites the table unless the new type is binary-compatible")
            elif action.args.get("allow_null") is False:
                actions.append("SET NOT NULL")
                scans = True
                notes.append("scans the whole table unless a valid CHECK (… IS NOT NULL) exists")
            else:
                actions.append("ALTER COLUMN")
        elif isinstance(action, exp.AddConstraint):
            level, what = _constraint_lock(action)
            levels.append(level)
            actions.append(f"ADD CONSTRAINT ({what})")
            idempotent = False
            if tree.args.get("not_valid"):
                notes.append("NOT VALID: existing rows are not checked (VALIDATE later)")
            else:
                scans = True
                notes.append("checks every existing row while holding the lock")
            for reference in action.find_all(exp.Reference):
                target = reference.this
                target = target.this if isinstance(target, exp.Schema) else target
                others.append(RelationLock(_table_name(target), LockLevel.SHARE_ROW_EXCLUSIVE))
        elif isinstance(action, exp.AlterRename | exp.RenameColumn):
            levels.append(AE)
            actions.append("RENAME")
            idempotent = False
            renamed = _renamed(table, bare)
        else:
            levels.append(AE)
            actions.append(type(action).__name__)
            notes.append("an ALTER TABLE form dbtools does not know: ACCESS EXCLUSIVE assumed")
    strongest_level = strongest(levels)
    if strongest_level is None:
        return None
    return Classification(
        f"ALTER TABLE … {', '.join(actions)}",
        locks=(
            RelationLock(table, strongest_level),
            *(lock for lock in others if lock.relation != table),
        ),
        created=tuple(created),
        dropped=tuple(dropped),
        column_types=tuple(column_types),
        renamed=renamed,
        data_loss=tuple(data_loss),
        idempotent=idempotent,
        rewrites_table=rewrites,
        scans_table=scans,
        notes=tuple(notes),
    )


_RENAME_TABLE = re.compile(r"\bRENAME\s+TO\s+(?P<new>\"[^\"]+\"|[\w$]+)", re.I)
_RENAME_COLUMN = re.compile(
    r"\bRENAME\s+(?:COLUMN\s+)?(?P<old>\"[^\"]+\"|[\w$]+)\s+TO\s+(?P<new>\"[^\"]+\"|[\w$]+)", re.I
)


def _renamed(table: str, statement: str) -> tuple[str, str] | None:
    """(old, new) of ``ALTER TABLE t RENAME TO u`` (tables) or ``RENAME [COLUMN] a TO b``
    (columns), read from the text: sqlglot parses ``RENAME a TO b`` as a table rename."""
    schema = table.rsplit(".", 1)[0]
    found = _RENAME_TABLE.search(statement)
    if found:
        new_table = found.group("new").strip('"')
        return table, f"{schema}.{new_table}"
    found = _RENAME_COLUMN.search(statement)
    if found and found.group("old").upper() not in ("CONSTRAINT", "TO"):
        old, new = (found.group(g).strip('"') for g in ("old", "new"))
        return f"{table}.{old}", f"{table}.{new}"
    return None


def type_text(sql_type: str) -> str:
    """A type written in SQL (``FLOAT``, ``VARCHAR(250)``) as ``_type_text`` names it."""
    try:
        tree = sqlglot.parse_one(f"CAST(NULL AS {sql_type})", read="postgres")
    except sqlglot.errors.ParseError:
        return sql_type.upper()
    return _type_text(tree.args.get("to"))


_FLOAT = re.compile(r"^FLOAT(?:\((?P<bits>\d+)\))?$")


def _type_text(node: exp.Expression | None) -> str:
    """A column type as PostgreSQL would name it, for comparing two of them (``FLOAT(p)`` is
    ``REAL`` up to 24 bits, else ``DOUBLE PRECISION``, as PostgreSQL stores it)."""
    if node is None:
        return "?"
    text = node.sql("postgres").upper()
    found = _FLOAT.match(text)
    if found:
        bits = int(found.group("bits") or 53)
        return "REAL" if bits <= 24 else "DOUBLE PRECISION"
    return text


_VARCHAR = re.compile(r"^(?:VARCHAR|CHARACTER VARYING)(?:\((?P<length>\d+)\))?$")


def _no_rewrite(old: str | None, new: str) -> bool:
    """Whether changing a column from *old* to *new* keeps every stored value as it is: the same
    type, ``varchar(n)`` to ``text``, ``varchar`` or a longer ``varchar`` (PostgreSQL's
    binary-coercible changes that need no table rewrite and no scan)."""
    if old is None:
        return False
    if old == new:
        return True
    was, now = _VARCHAR.match(old), _VARCHAR.match(new)
    if was is None:
        return False
    if new == "TEXT":
        return True
    if now is None:
        return False
    if now.group("length") is None:
        return True
    return was.group("length") is not None and int(now.group("length")) >= int(was.group("length"))


def _constraint_lock(action: exp.Expression) -> tuple[LockLevel, str]:
    if action.find(exp.ForeignKey) is not None:
        return LockLevel.SHARE_ROW_EXCLUSIVE, "FOREIGN KEY"
    if action.find(exp.PrimaryKey, exp.PrimaryKeyColumnConstraint) is not None:
        return AE, "PRIMARY KEY"
    if action.find(exp.UniqueColumnConstraint) is not None:
        return AE, "UNIQUE"
    if action.find(exp.CheckColumnConstraint) is not None:
        return AE, "CHECK"
    return AE, "constraint"


def _delete(tree: exp.Expression, bare: str, context: SchemaContext) -> Classification | None:
    table = _table_name(tree.this)
    where = tree.args.get("where")
    condition = where.this.sql("postgres") if where is not None else None
    return Classification(
        "DELETE",
        locks=(RelationLock(table, LockLevel.ROW_EXCLUSIVE),),
        data_loss=(
            DataLoss(
                table,
                f"rows WHERE {condition}" if condition else "every row",
                f"SELECT * FROM {table}" + (f" WHERE {condition}" if condition else ""),
            ),
        ),
        scans_table=where is None,
        notes=("locks the rows it deletes: their writers wait",),
    )


def _update(tree: exp.Expression, bare: str, context: SchemaContext) -> Classification | None:
    table = _table_name(tree.this)
    constant = all(
        isinstance(e, exp.EQ) and isinstance(e.expression, exp.Literal)
        for e in tree.expressions or []
    )
    columns = [e.this.name for e in tree.expressions or [] if isinstance(e, exp.EQ)]
    where = tree.args.get("where")
    condition = where.this.sql("postgres") if where is not None else None
    rows = f"rows WHERE {condition}" if condition else "every row"
    return Classification(
        "UPDATE",
        locks=(RelationLock(table, LockLevel.ROW_EXCLUSIVE),),
        # The values it overwrites are gone afterwards: changed data, exported first.
        data_loss=(
            DataLoss(
                table,
                f"the values of {', '.join(columns) or 'columns'} in {rows} (overwritten)",
                f"SELECT * FROM {table}" + (f" WHERE {condition}" if condition else ""),
            ),
        ),
        idempotent=constant,
        scans_table=where is None,
        notes=("locks the rows it updates: their writers wait",),
    )


def _insert(tree: exp.Expression, bare: str, context: SchemaContext) -> Classification | None:
    into = tree.this.this if isinstance(tree.this, exp.Schema) else tree.this
    table = _table_name(into)
    reads = [t for t in _tables_read(tree) if t != table]
    conflict = tree.args.get("conflict")
    return Classification(
        "INSERT",
        locks=(
            RelationLock(table, LockLevel.ROW_EXCLUSIVE),
            *(RelationLock(t, LockLevel.ACCESS_SHARE) for t in reads),
        ),
        idempotent=conflict is not None,
    )


def _select(tree: exp.Expression, bare: str, context: SchemaContext) -> Classification | None:
    return Classification(
        "SELECT",
        locks=tuple(RelationLock(t, LockLevel.ACCESS_SHARE) for t in _tables_read(tree)),
    )


def _truncate(tree: exp.Expression, bare: str, context: SchemaContext) -> Classification | None:
    tables = [_table_name(t) for t in tree.expressions]
    return Classification(
        "TRUNCATE",
        locks=tuple(RelationLock(t, AE) for t in tables),
        data_loss=tuple(DataLoss(t, "every row", f"SELECT * FROM {t}") for t in tables),
    )


def _comment(tree: exp.Expression, bare: str, context: SchemaContext) -> Classification | None:
    kind = str(tree.args.get("kind") or "").upper()
    target = tree.this
    locks: tuple[RelationLock, ...] = ()
    if kind in ("TABLE", "VIEW", "MATERIALIZED VIEW", "INDEX", "SEQUENCE") or (
        kind == "COLUMN" and isinstance(target, exp.Column)
    ):
        locks = (RelationLock(_table_name(target), SUE),)
    return Classification(f"COMMENT ON {kind}", locks=locks)


def _session(tree: exp.Expression, bare: str, context: SchemaContext) -> Classification | None:
    return Classification(bare.split()[0].upper() + " (session setting)")


_Handler = Callable[[exp.Expression, str, SchemaContext], Classification | None]
_SQLGLOT_HANDLERS: dict[type[exp.Expression], _Handler] = {
    exp.Drop: _drop,
    exp.Create: _create,
    exp.Alter: _alter,
    exp.Delete: _delete,
    exp.Update: _update,
    exp.Insert: _insert,
    exp.Select: _select,
    exp.Union: _select,
    exp.TruncateTable: _truncate,
    exp.Comment: _comment,
    exp.Set: _session,
}


# -- leading keywords ------------------------------------------------------------------------------

_NAME = r"(?P<name>(?:\"[^\"]+\"|[\w$]+)(?:\.(?:\"[^\"]+\"|[\w$]+))?)"
_KEYWORD_RULES: list[tuple[re.Pattern[str], Callable[[re.Match[str], str], Classification]]] = []


def _rule(
    pattern: str,
) -> Callable[
    [Callable[[re.Match[str], str], Classification]], Callable[[re.Match[str], str], Classification]
]:
    def register(
        func: Callable[[re.Match[str], str], Classification],
    ) -> Callable[[re.Match[str], str], Classification]:
        _KEYWORD_RULES.append((re.compile(pattern, re.I | re.S), func))
        return func

    return register


def _relation(match: re.Match[str]) -> str:
    name = match.group("name").replace('"', "")
    return RUN_TIME if _DYNAMIC in name else qualify(name)


@_rule(
    rf"^ALTER\s+(TABLE|INDEX|MATERIALIZED\s+VIEW)\s+(IF\s+EXISTS\s+)?(ONLY\s+)?{_NAME}\s+(SET|RESET)\s*\("
)
def _alter_storage(match: re.Match[str], bare: str) -> Classification:
    found = _SET_KEYS.search(bare)
    keys = [part.split("=")[0].strip() for part in found.group("keys").split(",")] if found else []
    what = " ".join(match.group(1).upper().split())
    verb = match.group(5).upper()
    dynamic = any(_DYNAMIC in key for key in keys)
    return Classification(
        f"ALTER {what} … {verb} (storage parameters)",
        locks=(RelationLock(_relation(match), storage_parameter_lock(keys)),),
        parser="keywords",
        notes=(_RUN_TIME_PARAMETER,) if dynamic else (),
    )


@_rule(rf"^ALTER\s+TABLE\s+(IF\s+EXISTS\s+)?(ONLY\s+)?{_NAME}\s+VALIDATE\s+CONSTRAINT\b")
def _validate(match: re.Match[str], bare: str) -> Classification:
    return Classification(
        "ALTER TABLE … VALIDATE CONSTRAINT",
        locks=(RelationLock(_relation(match), SUE),),
        scans_table=True,
        parser="keywords",
        notes=("scans the table without blocking reads or writes",),
    )


@_rule(
    rf"^ALTER\s+TABLE\s+(IF\s+EXISTS\s+)?(ONLY\s+)?{_NAME}\s+SET\s+(LOGGED|UNLOGGED|ACCESS\s+METHOD)\b"
)
def _alter_rewrite(match: re.Match[str], bare: str) -> Classification:
    return Classification(
        f"ALTER TABLE … SET {match.group(4).upper()}",
        locks=(RelationLock(_relation(match), AE),),
        rewrites_table=True,
        parser="keywords",
        notes=("rewrites the whole table",),
    )


@_rule(
    rf"^ALTER\s+TABLE\s+(IF\s+EXISTS\s+)?(ONLY\s+)?{_NAME}\s+(ALTER\s+(COLUMN\s+)?\S+\s+SET\s+STATISTICS|CLUSTER\s+ON|SET\s+WITHOUT\s+CLUSTER)\b"
)
def _alter_light(match: re.Match[str], bare: str) -> Classification:
    return Classification(
        "ALTER TABLE … (planner settings)",
        locks=(RelationLock(_relation(match), SUE),),
        parser="keywords",
    )


@_rule(rf"^ALTER\s+TABLE\s+(IF\s+EXISTS\s+)?(ONLY\s+)?{_NAME}\s+(ENABLE|DISABLE)\s+TRIGGER\b")
def _alter_trigger(match: re.Match[str], bare: str) -> Classification:
    return Classification(
        f"ALTER TABLE … {match.group(4).upper()} TRIGGER",
        locks=(RelationLock(_relation(match), LockLevel.SHARE_ROW_EXCLUSIVE),),
        parser="keywords",
    )


@_rule(
    rf"^ALTER\s+TABLE\s+(IF\s+EXISTS\s+)?(ONLY\s+)?{_NAME}\s+DETACH\s+PARTITION\s+\S+\s+CONCURRENTLY\b"
)
def _detach_concurrently(match: re.Match[str], bare: str) -> Classification:
    return Classification(
        "ALTER TABLE … DETACH PARTITION CONCURRENTLY",
        locks=(RelationLock(_relation(match), SUE),),
        needs_autocommit=True,
        parser="keywords",
    )


@_rule(rf"^ALTER\s+TABLE\s+(IF\s+EXISTS\s+)?(ONLY\s+)?{_NAME}\s")
def _alter_other(match: re.Match[str], bare: str) -> Classification:
    return Classification(
        "ALTER TABLE",
        locks=(RelationLock(_relation(match), AE),),
        idempotent=False,
        parser="keywords",
        notes=("an ALTER TABLE form dbtools does not know: ACCESS EXCLUSIVE assumed",),
    )


@_rule(rf"^VACUUM\b(?P<options>[^;]*?)(?:{_NAME})?\s*$")
def _vacuum(match: re.Match[str], bare: str) -> Classification:
    options = (match.group("options") or "").upper()
    full = "FULL" in options.split() or "FULL" in re.split(r"[\s(),]+", options)
    relation = _relation(match) if match.group("name") else "(every table)"
    return Classification(
        "VACUUM FULL" if full else "VACUUM",
        locks=(RelationLock(relation, AE if full else SUE),),
        needs_autocommit=True,
        rewrites_table=full,
        scans_table=True,
        parser="keywords",
        notes=("rewrites the whole table",) if full else (),
    )


@_rule(rf"^ANALYZE\b[^;]*?(?:{_NAME})?\s*$")
def _analyze(match: re.Match[str], bare: str) -> Classification:
    relation = _relation(match) if match.group("name") else "(every table)"
    return Classification(
        "ANALYZE", locks=(RelationLock(relation, SUE),), scans_table=True, parser="keywords"
    )


@_rule(
    rf"^REINDEX\s+(\([^)]*\)\s*)?(INDEX|TABLE|SCHEMA|DATABASE|SYSTEM)\s+(CONCURRENTLY\s+)?{_NAME}"
)
def _reindex(match: re.Match[str], bare: str) -> Classification:
    concurrently = bool(match.group(3))
    return Classification(
        f"REINDEX {match.group(2).upper()}" + (" CONCURRENTLY" if concurrently else ""),
        locks=(RelationLock(_relation(match), SUE if concurrently else AE),),
        needs_autocommit=concurrently,
        idempotent=not concurrently,
        scans_table=True,
        parser="keywords",
        notes=("a failed run leaves an INVALID *_ccnew index",) if concurrently else (),
    )


@_rule(rf"^CLUSTER\b\s*(VERBOSE\s+)?(?:{_NAME})?")
def _cluster(match: re.Match[str], bare: str) -> Classification:
    relation = _relation(match) if match.group("name") else "(every clustered table)"
    return Classification(
        "CLUSTER",
        locks=(RelationLock(relation, AE),),
        rewrites_table=True,
        parser="keywords",
        notes=("rewrites the whole table",),
    )


@_rule(
    rf"^LOCK\s+(TABLE\s+)?(ONLY\s+)?{_NAME}(\s*,\s*[\w.\"]+)*(\s+IN\s+(?P<mode>[A-Z ]+?)\s+MODE)?(\s+NOWAIT)?\s*$"
)
def _lock(match: re.Match[str], bare: str) -> Classification:
    mode = match.group("mode")
    level = LockLevel.parse(mode) if mode else AE
    return Classification(
        f"LOCK TABLE ({level.value})",
        locks=(RelationLock(_relation(match), level),),
        parser="keywords",
    )


@_rule(rf"^REFRESH\s+MATERIALIZED\s+VIEW\s+(CONCURRENTLY\s+)?{_NAME}")
def _refresh(match: re.Match[str], bare: str) -> Classification:
    concurrently = bool(match.group(1))
    return Classification(
        "REFRESH MATERIALIZED VIEW" + (" CONCURRENTLY" if concurrently else ""),
        locks=(RelationLock(_relation(match), LockLevel.EXCLUSIVE if concurrently else AE),),
        parser="keywords",
    )


@_rule(r"^(RESET|SET|SHOW)\b")
def _session_keywords(match: re.Match[str], bare: str) -> Classification:
    return Classification(f"{match.group(1).upper()} (session setting)", parser="keywords")


@_rule(r"^(GRANT|REVOKE)\b")
def _privileges(match: re.Match[str], bare: str) -> Classification:
    return Classification(
        match.group(1).upper(),
        parser="keywords",
        notes=("changes privileges; takes no lock that blocks reads or writes",),
    )


@_rule(r"^ALTER\s+TYPE\s+\S+\s+ADD\s+VALUE\b")
def _enum_value(match: re.Match[str], bare: str) -> Classification:
    return Classification(
        "ALTER TYPE … ADD VALUE",
        idempotent="IF NOT EXISTS" in bare.upper(),
        parser="keywords",
        notes=("the new value cannot be used in the same transaction",),
    )


@_rule(rf"^CREATE\s+EXTENSION\s+(IF\s+NOT\s+EXISTS\s+)?{_NAME}")
def _extension(match: re.Match[str], bare: str) -> Classification:
    return Classification(
        "CREATE EXTENSION",
        created=(DbObject("extension", match.group("name").replace('"', "")),),
        idempotent=bool(match.group(1)),
        parser="keywords",
    )


@_rule(rf"^DROP\s+EXTENSION\s+(IF\s+EXISTS\s+)?{_NAME}")
def _drop_extension(match: re.Match[str], bare: str) -> Classification:
    cascade = bool(re.search(r"\bCASCADE\s*$", bare, re.I))
    return Classification(
        "DROP EXTENSION",
        dropped=(DbObject("extension", match.group("name").replace('"', "")),),
        idempotent=bool(match.group(1)),
        parser="keywords",
        notes=(
            "drops the extension's own objects (functions, types, operators)"
            + (
                "; CASCADE also drops what depends on them (columns of its types, indexes "
                "using its operator classes)"
                if cascade
                else "; fails while anything else depends on them"
            ),
        ),
    )


@_rule(rf"^CREATE\s+(OR\s+REPLACE\s+)?(FUNCTION|PROCEDURE)\s+{_NAME}")
def _create_function(match: re.Match[str], bare: str) -> Classification:
    replace = bool(match.group(1))
    return Classification(
        f"CREATE {'OR REPLACE ' if replace else ''}{match.group(2).upper()}",
        created=(DbObject("function", _relation(match)),),
        idempotent=replace,
        parser="keywords",
        notes=("takes no lock on a table",),
    )


@_rule(rf"^ALTER\s+INDEX\s+(IF\s+EXISTS\s+)?{_NAME}\s+RENAME\s+TO\s")
def _rename_index(match: re.Match[str], bare: str) -> Classification:
    # Checked with pg_locks on PostgreSQL 18 (and the rule since 12): the index only.
    return Classification(
        "ALTER INDEX … RENAME",
        locks=(RelationLock(_relation(match), SUE),),
        idempotent=False,
        parser="keywords",
        notes=("SHARE UPDATE EXCLUSIVE on the index only: its table's reads and writes go on",),
    )


@_rule(rf"^ALTER\s+SEQUENCE\s+(IF\s+EXISTS\s+)?{_NAME}\s")
def _alter_sequence(match: re.Match[str], bare: str) -> Classification:
    # pg_locks on PostgreSQL 18: SHARE ROW EXCLUSIVE on the sequence; nextval() waits for it.
    return Classification(
        "ALTER SEQUENCE",
        locks=(RelationLock(_relation(match), LockLevel.SHARE_ROW_EXCLUSIVE),),
        parser="keywords",
        notes=("writers calling nextval() on it wait until it commits",),
    )


def _classify_by_keywords(bare: str, context: SchemaContext) -> Classification:
    for pattern, handler in _KEYWORD_RULES:
        match = pattern.match(bare)
        if match:
            return handler(match, bare)
    words = " ".join(bare.split()[:3])
    return Classification(
        bare.split()[0].upper(),
        idempotent=False,
        parser="keywords",
        warning=f"dbtools cannot classify this statement ({words} …): check its locks by hand",
    )


# -- DO blocks -------------------------------------------------------------------------------------

_PLPGSQL_BOUNDARY = re.compile(r"\b(DECLARE|BEGIN|LOOP|THEN|ELSE)\b", re.I)
_NO_DATABASE_EFFECT = re.compile(
    r"^(END(\s+(IF|LOOP|CASE))?|RAISE\b.*|EXCEPTION\b.*|RETURN\b.*|NULL|EXIT\b.*|CONTINUE\b.*|"
    r"[\w.]+\s+(record|text|int\w*|bigint|boolean|numeric|regclass|oid)\b.*|[\w.]+\s*:?=.*|"
    r"GET\s+DIAGNOSTICS\b.*|ASSERT\b.*|)$",
    re.I | re.S,
)
_NO_EFFECT = "no database effect"
_CONDITION = re.compile(r"^(IF|ELSIF|WHILE|WHEN)\b", re.I)
_LOOP_QUERY = re.compile(r"^FOR\s+\w+\s+IN\s+(?!\d)(?P<query>.*)$", re.I | re.S)
_SQL_COMMAND = re.compile(
    r"^(ALTER|CREATE|DROP|DELETE|INSERT|UPDATE|TRUNCATE|LOCK|VACUUM|ANALYZE|REINDEX|CLUSTER|"
    r"COMMENT|GRANT|REVOKE|SELECT|WITH|REFRESH|PERFORM|SET|RESET)\b",
    re.I,
)
_FROM_TABLE = re.compile(r"\b(?:FROM|JOIN)\s+(?P<name>[\w$\"]+(?:\.[\w$\"]+)?)", re.I)


def _classify_do(sql: str, context: SchemaContext) -> Classification:
    body = dollar_body(sql)
    if body is None:
        return _unclassified_do("its body is not dollar-quoted")
    inner: list[Classification] = []
    unknown: list[str] = []
    for fragment in _plpgsql_fragments(body):
        found = _classify_fragment(fragment, context)
        if found is None or found.warning:
            unknown.append(fragment)
        else:
            inner.append(found)
    if unknown:
        return _unclassified_do(
            "it runs statements dbtools cannot classify: " + "; ".join(u[:60] for u in unknown)
        )
    locks: list[RelationLock] = []
    for part in inner:
        locks += [lock for lock in part.locks if lock not in locks]
    actions = [part.action for part in inner if part.action not in ("SELECT", _NO_EFFECT)]
    executes = any(re.match(r"^EXECUTE\b", f, re.I) for f in _plpgsql_fragments(body))
    notes = [note for part in inner for note in part.notes]
    if executes:
        notes.insert(0, "EXECUTEs DDL built at run time; classified by its fixed words")
    return Classification(
        "DO block" + (f" ({'; '.join(actions)})" if actions else " (reads only)"),
        locks=tuple(locks),
        created=tuple(o for part in inner for o in part.created),
        dropped=tuple(o for part in inner for o in part.dropped),
        data_loss=tuple(d for part in inner for d in part.data_loss),
        idempotent=all(part.idempotent for part in inner),
        needs_autocommit=any(part.needs_autocommit for part in inner),
        rewrites_table=any(part.rewrites_table for part in inner),
        scans_table=any(part.scans_table for part in inner),
        parser="do-block",
        notes=tuple(dict.fromkeys(notes)),
    )


def _unclassified_do(reason: str) -> Classification:
    return Classification(
        "DO block",
        idempotent=False,
        parser="do-block",
        warning=f"dbtools cannot classify this DO block ({reason}): check its locks by hand",
    )


def _plpgsql_fragments(body: str) -> list[str]:
    """The body's statements, with block keywords (BEGIN, LOOP, THEN…) as boundaries."""
    fragments: list[str] = []
    for statement in split_statements(body):
        text = strip_comments(statement.sql)
        masked = mask_literals(text)
        start = 0
        for boundary in _PLPGSQL_BOUNDARY.finditer(masked):
            fragments.append(text[start : boundary.start()])
            start = boundary.end()
        fragments.append(text[start:])
    return [" ".join(f.split()) for f in fragments if f.strip()]


def _classify_fragment(fragment: str, context: SchemaContext) -> Classification | None:
    if _NO_DATABASE_EFFECT.match(fragment):
        return Classification(_NO_EFFECT, parser="do-block")
    if re.match(r"^EXECUTE\b", fragment, re.I):
        template = _dynamic_template(fragment)
        return classify(template, context) if template else None
    loop = _LOOP_QUERY.match(fragment)
    if loop:
        query = loop.group("query")
        return classify(query, context) if _SQL_COMMAND.match(query) else None
    if _CONDITION.match(fragment):
        return _reads(fragment)
    if re.match(r"^PERFORM\b", fragment, re.I):
        return classify("SELECT" + fragment[len("PERFORM") :], context)
    if _SQL_COMMAND.match(fragment):
        return classify(fragment, context)
    return None


def _reads(condition: str) -> Classification:
    masked = mask_literals(condition)
    tables = [qualify(m.group("name").replace('"', "")) for m in _FROM_TABLE.finditer(masked)]
    return Classification(
        "SELECT",
        locks=tuple(RelationLock(t, LockLevel.ACCESS_SHARE) for t in _user_relations(tables)),
        parser="do-block",
    )


def _dynamic_template(fragment: str) -> str | None:
    """``EXECUTE 'ALTER TABLE ' || r.relation || ' SET (…)'`` → ``ALTER TABLE <dyn> SET (<dyn>)``:
    the string literals kept, every other operand replaced by a placeholder name; likewise
    ``EXECUTE format('ALTER TABLE t DROP CONSTRAINT %I', name)``."""
    expression = re.sub(r"^EXECUTE\s+", "", fragment, flags=re.I)
    masked = mask_literals(expression)
    cut = re.search(r"\b(USING|INTO)\b", masked, re.I)
    if cut:
        expression, masked = expression[: cut.start()], masked[: cut.start()]
    formatted = re.fullmatch(r"\s*format\s*\(\s*[eE]?'((?:[^']|'')*)'.*\)\s*", expression, re.S)
    if formatted:
        template = formatted.group(1).replace("''", "'")
        return re.sub(r"%(\d+\$)?[-0-9]*[IsL]", _DYNAMIC, template).replace("%%", "%")
    parts: list[str] = []
    start = 0
    for operator in re.finditer(r"\|\|", masked):
        parts.append(expression[start : operator.start()])
        start = operator.end()
    parts.append(expression[start:])
    pieces = []
    for part in parts:
        part = part.strip()
        literal = re.fullmatch(r"[eE]?'((?:[^']|'')*)'", part)
        if literal:
            pieces.append(literal.group(1).replace("''", "'"))
        elif pieces and pieces[-1] == _DYNAMIC:
            continue
        else:
            pieces.append(_DYNAMIC)
    template = "".join(pieces).strip()
    return None if template == _DYNAMIC else template
