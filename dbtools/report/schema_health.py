"""Schema health at the depth of pg-index-health's checks: what the catalog says about keys,
constraints and index design, beside the usage-based rules of ``health``.

``read_schema_facts`` reads four facts in four queries (whatever the number of objects): tables
without a primary key, constraints left ``NOT VALID``, foreign-key columns whose type differs
from the key they reference, and each btree index's leading key column (its type category and,
from ``pg_stats``, how often it is NULL). The rules (``SCHEMA_RULES``) are pure functions over
them returning ``dbtools.findings.Finding``s, each naming the object and the statement that
fixes it. The checks follow pg-index-health's list (tables_without_primary_key,
not_valid_constraints, foreign_keys_with_unmatched_column_type, indexes_with_boolean,
btree_indexes_on_array_columns, indexes_with_null_values); the SQL is dbtools' own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import class_row

from dbtools.db.connection import SQL_MARKER
from dbtools.findings import Finding, Rule, rule, run_rules, worst_first
from dbtools.output import byte_size
from dbtools.report.sections import Section, findings_section
from dbtools.report.subjects import Subject
from dbtools.schema.monitoring import MONITORING_SCHEMA

_USER_SCHEMAS = (
    "n.nspname NOT IN ('pg_catalog', 'information_schema', %(monitoring)s) "
    "AND n.nspname !~ '^pg_toast' AND n.nspname !~ '^pg_temp'"
)

TABLES_WITHOUT_PRIMARY_KEY_SQL = f"""
SELECT {SQL_MARKER} format('%%I.%%I', n.nspname, c.relname) AS table_name, c.reltuples::float8 AS row_estimate,
       pg_table_size(c.oid) AS table_bytes
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND {_USER_SCHEMAS}
  AND NOT EXISTS (SELECT FROM pg_catalog.pg_constraint k
                  WHERE k.conrelid = c.oid AND k.contype = 'p')
ORDER BY 1
"""

NOT_VALID_CONSTRAINTS_SQL = f"""
SELECT {SQL_MARKER} format('%%I.%%I', n.nspname, c.relname) AS table_name,
       quote_ident(k.conname) AS constraint_name,
       CASE k.contype WHEN 'f' THEN 'foreign key' ELSE 'check' END AS kind
FROM pg_catalog.pg_constraint k
JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE NOT k.convalidated AND k.contype IN ('c', 'f') AND k.conparentid = 0
  AND {_USER_SCHEMAS}
ORDER BY 1, 2
"""

FOREIGN_KEY_TYPES_SQL = f"""
SELECT {SQL_MARKER} format('%%I.%%I', n.nspname, c.relname) AS table_name,
       quote_ident(k.conname) AS constraint_name,
       quote_ident(a.attname) AS column_name, format_type(a.atttypid, a.atttypmod) AS column_type,
       format('%%I.%%I', rn.nspname, r.relname) AS referenced_table,
       quote_ident(f.attname) AS referenced_column,
       format_type(f.atttypid, f.atttypmod) AS referenced_type
FROM pg_catalog.pg_constraint k
JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_class r ON r.oid = k.confrelid
JOIN pg_catalog.pg_namespace rn ON rn.oid = r.relnamespace
CROSS JOIN LATERAL unnest(k.conkey, k.confkey) AS u(attnum, fattnum)
JOIN pg_catalog.pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.attnum
JOIN pg_catalog.pg_attribute f ON f.attrelid = k.confrelid AND f.attnum = u.fattnum
WHERE k.contype = 'f' AND k.conparentid = 0 AND {_USER_SCHEMAS}
  AND (a.atttypid, a.atttypmod) <> (f.atttypid, f.atttypmod)
ORDER BY 1, 2, 3
"""

# Every valid btree index's key columns: their type category (B boolean, A array), whether they
# may be NULL, and (leading column only) the NULL fraction ANALYZE measured.
INDEX_KEYS_SQL = f"""
SELECT {SQL_MARKER} format('%%I.%%I', n.nspname, ic.relname) AS index_name,
       format('%%I.%%I', n.nspname, tc.relname) AS table_name,
       k.position::int AS position, quote_ident(a.attname) AS column_name,
       t.typcategory::text AS type_category, format_type(a.atttypid, NULL) AS column_type,
       a.attnotnull AS not_null, i.indisunique AS is_unique,
       pg_get_expr(i.indpred, i.indrelid) AS predicate,
       pg_relation_size(i.indexrelid) AS index_bytes,
       s.null_frac::float8 AS null_fraction,
       EXISTS (SELECT FROM pg_catalog.pg_constraint c WHERE c.conindid = i.indexrelid)
           AS backs_constraint
FROM pg_catalog.pg_index i
JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
JOIN pg_catalog.pg_am am ON am.oid = ic.relam AND am.amname = 'btree'
JOIN pg_catalog.pg_class tc ON tc.oid = i.indrelid
JOIN pg_catalog.pg_namespace n ON n.oid = tc.relnamespace
CROSS JOIN LATERAL unnest((i.indkey::int2[])[0:i.indnkeyatts - 1]) WITH ORDINALITY
    AS k(attnum, position)
JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_catalog.pg_stats s ON s.schemaname = n.nspname AND s.tablename = tc.relname
     AND s.attname = a.attname AND NOT s.inherited
WHERE i.indisvalid AND NOT tc.relispartition AND {_USER_SCHEMAS}
ORDER BY 1, 3
"""


@dataclass(frozen=True)
class TableWithoutKey:
    table_name: str
    row_estimate: float
    table_bytes: int


@dataclass(frozen=True)
class NotValidConstraint:
    table_name: str
    constraint_name: str
    kind: str


@dataclass(frozen=True)
class ForeignKeyType:
    table_name: str
    constraint_name: str
    column_name: str
    column_type: str
    referenced_table: str
    referenced_column: str
    referenced_type: str


@dataclass(frozen=True)
class IndexKey:
    index_name: str
    table_name: str
    position: int
    column_name: str
    type_category: str
    column_type: str
    not_null: bool
    is_unique: bool
    predicate: str | None
    index_bytes: int
    null_fraction: float | None
    backs_constraint: bool


@dataclass(frozen=True)
class SchemaSettings:
    mostly_null: float = 0.5  # a leading index column NULL this often: a partial index serves


@dataclass(frozen=True)
class SchemaFacts:
    tables_without_key: tuple[TableWithoutKey, ...] = ()
    not_valid: tuple[NotValidConstraint, ...] = ()
    foreign_key_types: tuple[ForeignKeyType, ...] = ()
    index_keys: tuple[IndexKey, ...] = ()
    settings: SchemaSettings = field(default_factory=SchemaSettings)


def read_schema_facts(
    conn: psycopg.Connection[Any], settings: SchemaSettings | None = None
) -> SchemaFacts:
    """The catalog facts the schema rules judge (four queries; dbtools' schema left out)."""
    params = {"monitoring": MONITORING_SCHEMA}

    def fetch(query: str, row_type: type[Any]) -> tuple[Any, ...]:
        with conn.cursor(row_factory=class_row(row_type)) as cur:
            return tuple(cur.execute(query, params).fetchall())

    return SchemaFacts(
        fetch(TABLES_WITHOUT_PRIMARY_KEY_SQL, TableWithoutKey),
        fetch(NOT_VALID_CONSTRAINTS_SQL, NotValidConstraint),
        fetch(FOREIGN_KEY_TYPES_SQL, ForeignKeyType),
        fetch(INDEX_KEYS_SQL, IndexKey),
        settings or SchemaSettings(),
    )


# -- rules ----------------------------------------------------------------------------------------


@rule("table_without_primary_key")
def tables_without_primary_key(facts: SchemaFacts) -> list[Finding]:
    """Tables without a primary key: rows cannot be addressed, logical replication cannot
    update or delete them, duplicates go unnoticed."""
    return [
        Finding(
            "table_without_primary_key",
            "warning",
            t.table_name,
            f"no primary key ({t.row_estimate:,.0f} rows, {byte_size(t.table_bytes)})",
            fix=f"ALTER TABLE {t.table_name} ADD PRIMARY KEY (…); or, with no natural key: "
            f"ALTER TABLE {t.table_name} ADD COLUMN id bigint GENERATED ALWAYS AS IDENTITY "
            "PRIMARY KEY; (both lock the table: an existing unique index can be promoted with "
            "ADD PRIMARY KEY USING INDEX)",
        )
        for t in facts.tables_without_key
    ]


@rule("not_valid_constraint")
def not_valid_constraints(facts: SchemaFacts) -> list[Finding]:
    """Check and foreign-key constraints added ``NOT VALID`` and never validated: existing
    rows were never checked, and the planner cannot rely on them."""
    return [
        Finding(
            "not_valid_constraint",
            "warning",
            f"{c.table_name}.{c.constraint_name}",
            f"{c.kind} constraint {c.constraint_name} on {c.table_name} is NOT VALID: "
            "rows written before it was added were never checked",
            fix=f"ALTER TABLE {c.table_name} VALIDATE CONSTRAINT {c.constraint_name}; "
            "(SHARE UPDATE EXCLUSIVE: reads and writes go on)",
        )
        for c in facts.not_valid
    ]


@rule("foreign_key_type_mismatch")
def foreign_key_type_mismatches(facts: SchemaFacts) -> list[Finding]:
    """Foreign-key columns of another type than the key they reference: every check casts,
    joins compare across types, and the smaller type can run out first."""
    return [
        Finding(
            "foreign_key_type_mismatch",
            "warning",
            f"{f.table_name}.{f.column_name}",
            f"foreign key {f.constraint_name}: {f.column_name} is {f.column_type}, "
            f"{f.referenced_table}.{f.referenced_column} is {f.referenced_type}",
            fix=f"ALTER TABLE {f.table_name} ALTER COLUMN {f.column_name} TYPE "
            f"{f.referenced_type}; (rewrites the table under an ACCESS EXCLUSIVE lock)",
        )
        for f in facts.foreign_key_types
    ]


def _plain(key: IndexKey) -> bool:
    return not key.is_unique and not key.backs_constraint


@rule("boolean_index")
def boolean_indexes(facts: SchemaFacts) -> list[Finding]:
    """Btree indexes with a boolean key column: two values select half a table, which the
    planner reads faster by sequential scan; a partial index on the rare value serves."""
    return [
        Finding(
            "boolean_index",
            "warning",
            k.index_name,
            f"btree index on boolean column {k.column_name} of {k.table_name} "
            f"({byte_size(k.index_bytes)})",
            fix=f"if one value is rare, index only it: CREATE INDEX CONCURRENTLY ON "
            f"{k.table_name} (…) WHERE {k.column_name}; then DROP INDEX CONCURRENTLY "
            f"{k.index_name};",
        )
        for k in facts.index_keys
        if k.type_category == "B" and _plain(k)
    ]


@rule("btree_on_array")
def btree_on_arrays(facts: SchemaFacts) -> list[Finding]:
    """Btree indexes on array columns: they serve only whole-array equality, never the
    containment operators (``@>``, ``&&``) array queries use; and large arrays overflow
    btree's entry size."""
    return [
        Finding(
            "btree_on_array",
            "warning",
            k.index_name,
            f"btree index on array column {k.column_name} ({k.column_type}) of {k.table_name}",
            fix=f"CREATE INDEX CONCURRENTLY ON {k.table_name} USING gin ({k.column_name}); "
            f"then DROP INDEX CONCURRENTLY {k.index_name};",
        )
        for k in facts.index_keys
        if k.type_category == "A" and _plain(k)
    ]


@rule("mostly_null_index")
def mostly_null_indexes(facts: SchemaFacts) -> list[Finding]:
    """Indexes whose leading column is mostly NULL (``pg_stats.null_frac``) and that do not
    leave NULLs out: a partial ``WHERE col IS NOT NULL`` index serves the same lookups,
    smaller."""
    findings = []
    for k in facts.index_keys:
        if k.position != 1 or k.not_null or not _plain(k) or k.null_fraction is None:
            continue
        if k.null_fraction < facts.settings.mostly_null:
            continue
        if k.predicate and k.column_name.strip('"') in k.predicate:
            continue  # already partial on this column
        saving = int(k.index_bytes * k.null_fraction)
        findings.append(
            Finding(
                "mostly_null_index",
                "info",
                k.index_name,
                f"{k.null_fraction:.0%} of {k.table_name}.{k.column_name} is NULL; the index "
                f"({byte_size(k.index_bytes)}) keeps every NULL (about {byte_size(saving)})",
                k.null_fraction,
                facts.settings.mostly_null,
                fix=f"CREATE INDEX CONCURRENTLY ON {k.table_name} ({k.column_name}) WHERE "
                f"{k.column_name} IS NOT NULL; then DROP INDEX CONCURRENTLY {k.index_name}; "
                "(if no query looks for the NULLs)",
            )
        )
    return findings


SCHEMA_RULES: tuple[Rule[SchemaFacts], ...] = (
    tables_without_primary_key,
    not_valid_constraints,
    foreign_key_type_mismatches,
    boolean_indexes,
    btree_on_arrays,
    mostly_null_indexes,
)


def schema_health(facts: SchemaFacts) -> tuple[Finding, ...]:
    """Every schema rule's findings, worst first."""
    return tuple(worst_first(run_rules(SCHEMA_RULES, facts)))


# -- its sections -------------------------------------------------------------------------------


def schema_health_section(findings: tuple[Finding, ...]) -> Section:
    return findings_section(
        "schema-health",
        "Schema health",
        "Tables without a primary key, NOT VALID constraints, foreign keys whose type differs "
        "from the key they reference, btree indexes on boolean or array columns, indexes on "
        "mostly-NULL columns (after pg-index-health's checks).",
        findings,
    )


# -- the subject ------------------------------------------------------------------------------------

SUBJECT = Subject(
    name="schema",
    key="schema_health",
    settings=SchemaSettings,
    read=lambda reading: read_schema_facts(reading.conn, reading.options.settings_of("schema")),
    build=lambda facts, building: schema_health(facts),
    sections=(schema_health_section,),
    place=60,
)
