"""Space: table and index sizes, estimated bloat, and sequences running out of values.

``read_space`` reads, in a fixed number of queries whatever the number of tables:

* every user table's sizes (heap, TOAST, indexes, total) with a bloat *estimate* made from the
  catalog alone (``pg_class.relpages``/``reltuples`` and ``pg_stats`` widths: the pages its live
  rows need against the pages it has), the way the widely used estimation queries
  (ioguix's "bloat estimation") reason, written here in our own words;
* where the ``pgstattuple`` extension is created and the role may run it, a measurement with
  ``pgstattuple_approx`` instead, for the largest tables (it reads the pages the visibility map
  does not vouch for, so it costs I/O): each line says which method gave its figure;
* every valid btree index's size and estimated bloat (the pages its entries need, at btree's
  default 90% leaf fill, against the pages it has);
* every sequence (identity and serial columns' included) and how much of its range is used,
  against the smaller of its own maximum and the type of the column it feeds (the column that
  owns it, or any whose default calls it).

``SPACE_RULES`` turn them into findings (``dbtools.findings``), each with its fix: a sequence
near its end (``sequence_near_end``: warning and critical thresholds), a table or btree index
whose bloat passes ``bloat_warning`` (``table_bloat``, ``index_bloat``, naming the method:
estimate or pgstattuple_approx).

Estimates need ``ANALYZE``d statistics the role can read (``pg_stats`` shows a column only to
roles that may select it); without them a line says "no statistics". ``build_space`` (pure)
picks what the section shows. Growth over time needs collected samples (``dbtools collect``):
``SpaceReport.growth`` is where it goes; until then it is None.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from psycopg import sql
from psycopg.rows import class_row

from dbtools.db.catalog import qualified
from dbtools.db.connection import SQL_MARKER
from dbtools.findings import Finding, Rule, rule, run_rules, worst_first
from dbtools.output import NO_VALUE, byte_size, number, percent
from dbtools.report.sections import Section, findings_section
from dbtools.report.subjects import Subject

BLOCK_HEADER = 24  # page header bytes
TUPLE_HEADER = 24  # heap tuple header (23 bytes, aligned)
LINE_POINTER = 4
BTREE_SPECIAL = 16  # btree's per-page special space
INDEX_TUPLE_HEADER = 8
BTREE_FILLFACTOR = 90

_USER_SCHEMAS = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'"

# Per table: sizes, and the widths the estimate needs (the data of a row: each column's average
# width, weighted by how often it is not NULL, aligned to 8 bytes).
TABLES_SQL = f"""
WITH tables AS (
    SELECT c.oid, n.nspname::text AS schema_name, c.relname::text AS table_name,
           c.relpages::bigint AS pages, c.reltuples::float8 AS row_estimate,
           coalesce((SELECT substring(o FROM 'fillfactor=(\\d+)')::int
                     FROM unnest(c.reloptions) AS o WHERE o LIKE 'fillfactor=%'), 100)
               AS fillfactor,
           pg_relation_size(c.oid) AS heap_bytes,
           pg_table_size(c.oid) - pg_relation_size(c.oid) AS toast_bytes,
           pg_indexes_size(c.oid) AS index_bytes,
           pg_total_relation_size(c.oid) AS total_bytes
    FROM pg_catalog.pg_class c
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'm') AND {_USER_SCHEMAS}
), widths AS (
    SELECT t.oid, count(*) AS columns, count(s.attname) AS columns_with_statistics,
           sum((1 - coalesce(s.null_frac, 0)) * coalesce(s.avg_width, 0))::float8 AS data_width,
           bool_or(coalesce(s.null_frac, 0) > 0) AS has_nulls
    FROM tables t
    JOIN pg_catalog.pg_attribute a ON a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped
    LEFT JOIN pg_catalog.pg_stats s ON s.schemaname = t.schema_name
         AND s.tablename = t.table_name AND s.attname = a.attname AND NOT s.inherited
    GROUP BY t.oid
)
SELECT {SQL_MARKER} t.oid::bigint AS relid, t.schema_name, t.table_name, t.pages,
       t.row_estimate, t.fillfactor, t.heap_bytes, t.toast_bytes, t.index_bytes, t.total_bytes,
       coalesce(w.columns, 0) AS columns,
       coalesce(w.columns_with_statistics, 0) AS columns_with_statistics,
       coalesce(w.data_width, 0) AS data_width, coalesce(w.has_nulls, false) AS has_nulls
FROM tables t LEFT JOIN widths w ON w.oid = t.oid
ORDER BY t.total_bytes DESC, t.schema_name, t.table_name
"""

INDEXES_SQL = f"""
WITH indexes AS (
    SELECT i.indexrelid, i.indrelid, n.nspname::text AS schema_name,
           ic.relname::text AS index_name, tc.relname::text AS table_name,
           ic.relpages::bigint AS pages, ic.reltuples::float8 AS entry_estimate,
           coalesce((SELECT substring(o FROM 'fillfactor=(\\d+)')::int
                     FROM unnest(ic.reloptions) AS o WHERE o LIKE 'fillfactor=%'),
                    {BTREE_FILLFACTOR}) AS fillfactor,
           am.amname::text AS access_method, i.indisvalid AS is_valid,
           i.indkey::int2[] AS keys, i.indnatts::int AS key_count,
           pg_relation_size(i.indexrelid) AS index_bytes
    FROM pg_catalog.pg_index i
    JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
    JOIN pg_catalog.pg_class tc ON tc.oid = i.indrelid
    JOIN pg_catalog.pg_namespace n ON n.oid = tc.relnamespace
    JOIN pg_catalog.pg_am am ON am.oid = ic.relam
    WHERE tc.relkind IN ('r', 'm') AND {_USER_SCHEMAS}
), widths AS (
    SELECT x.indexrelid,
           count(s.attname) AS columns_with_statistics,
           bool_or(k.attnum = 0) AS has_expressions,
           sum((1 - coalesce(s.null_frac, 0)) * coalesce(s.avg_width, 0))::float8 AS data_width
    FROM indexes x
    CROSS JOIN LATERAL unnest(x.keys) AS k(attnum)
    LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
    LEFT JOIN pg_catalog.pg_stats s ON s.schemaname = x.schema_name
         AND s.tablename = x.table_name AND s.attname = a.attname AND NOT s.inherited
    GROUP BY x.indexrelid
)
SELECT {SQL_MARKER} x.indexrelid::bigint AS indexrelid, x.schema_name, x.index_name,
       x.table_name, x.access_method, x.is_valid, x.pages, x.entry_estimate, x.fillfactor,
       x.index_bytes, x.key_count, coalesce(w.columns_with_statistics, 0) AS columns_with_statistics,
       coalesce(w.has_expressions, false) AS has_expressions,
       coalesce(w.data_width, 0) AS data_width
FROM indexes x LEFT JOIN widths w ON w.indexrelid = x.indexrelid
ORDER BY x.index_bytes DESC, x.schema_name, x.index_name
"""

# Every sequence and the column it feeds: the column that owns it (identity: deptype 'i',
# serial or OWNED BY: 'a') or any column whose default calls it (its pg_attrdef depends on the
# sequence: a bigint sequence created apart and used as DEFAULT nextval('s') on an integer
# column). Of several, the one of the smallest type: it runs out first.
SEQUENCES_SQL = f"""
SELECT {SQL_MARKER} s.schemaname::text AS schema_name, s.sequencename::text AS sequence_name,
       s.data_type::text AS data_type, s.min_value, s.max_value, s.increment_by, s.cycle,
       s.last_value,
       feeds.table_name, feeds.column_name, feeds.column_type, feeds.identity, feeds.owned
FROM pg_catalog.pg_sequences s
LEFT JOIN LATERAL (
    SELECT quote_ident(tn.nspname) || '.' || quote_ident(t.relname) AS table_name,
           a.attname::text AS column_name, format_type(a.atttypid, NULL) AS column_type,
           f.deptype = 'i' AS identity, f.deptype IN ('a', 'i') AS owned
    FROM (
        SELECT d.refobjid AS relid, d.refobjsubid AS attnum, d.deptype
        FROM pg_catalog.pg_depend d
        WHERE d.classid = 'pg_catalog.pg_class'::regclass
          AND d.objid = format('%I.%I', s.schemaname, s.sequencename)::regclass
          AND d.refobjsubid > 0 AND d.deptype IN ('a', 'i')
        UNION ALL
        SELECT ad.adrelid, ad.adnum, 'n'
        FROM pg_catalog.pg_depend d
        JOIN pg_catalog.pg_attrdef ad ON ad.oid = d.objid
        WHERE d.classid = 'pg_catalog.pg_attrdef'::regclass
          AND d.refclassid = 'pg_catalog.pg_class'::regclass
          AND d.refobjid = format('%I.%I', s.schemaname, s.sequencename)::regclass
    ) f
    JOIN pg_catalog.pg_class t ON t.oid = f.relid
    JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace
    JOIN pg_catalog.pg_attribute a ON a.attrelid = f.relid AND a.attnum = f.attnum
    ORDER BY CASE a.atttypid WHEN 'int2'::regtype THEN 0 WHEN 'int4'::regtype THEN 1 ELSE 2 END,
             f.deptype <> 'n' DESC, 1, 2
    LIMIT 1
) feeds ON true
WHERE s.schemaname NOT IN ('pg_catalog', 'information_schema')
ORDER BY s.schemaname, s.sequencename
"""

PGSTATTUPLE_SQL = f"""
SELECT {SQL_MARKER} n.nspname::text AS schema_name,
       has_function_privilege(format('%I.pgstattuple_approx(regclass)', n.nspname), 'EXECUTE')
           AS usable
FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
WHERE e.extname = 'pgstattuple'
"""

_APPROX_SQL = """
SELECT {marker} t.relid, a.table_len, a.scanned_percent, a.approx_tuple_len, a.dead_tuple_len,
       a.dead_tuple_count, a.approx_free_space
FROM unnest(%(relids)s::bigint[]) AS t(relid),
     LATERAL {function}(t.relid::oid::regclass) AS a
"""

# Integer types' largest values: a column of a smaller type than its sequence runs out first.
TYPE_MAXIMUM = {"smallint": 2**15 - 1, "integer": 2**31 - 1, "bigint": 2**63 - 1}


@dataclass(frozen=True)
class TableSpace:
    relid: int
    schema_name: str
    table_name: str
    pages: int
    row_estimate: float
    fillfactor: int
    heap_bytes: int
    toast_bytes: int
    index_bytes: int
    total_bytes: int
    columns: int
    columns_with_statistics: int
    data_width: float
    has_nulls: bool

    @property
    def name(self) -> str:
        return qualified(self.schema_name, self.table_name)


@dataclass(frozen=True)
class IndexSpace:
    indexrelid: int
    schema_name: str
    index_name: str
    table_name: str
    access_method: str
    is_valid: bool
    pages: int
    entry_estimate: float
    fillfactor: int
    index_bytes: int
    key_count: int
    columns_with_statistics: int
    has_expressions: bool
    data_width: float

    @property
    def name(self) -> str:
        return qualified(self.schema_name, self.index_name)


@dataclass(frozen=True)
class SequenceState:
    schema_name: str
    sequence_name: str
    data_type: str
    min_value: int
    max_value: int
    increment_by: int
    cycle: bool
    last_value: int | None  # None: never used, or not visible to this role
    table_name: str | None  # the column it feeds (``SEQUENCES_SQL``), if any
    column_name: str | None
    column_type: str | None
    identity: bool | None
    owned: bool | None = None  # the column owns it (identity, serial, OWNED BY); else a default

    @property
    def name(self) -> str:
        return qualified(self.schema_name, self.sequence_name)


@dataclass(frozen=True)
class ApproxTuples:
    """``pgstattuple_approx`` of one table."""

    relid: int
    table_len: int
    scanned_percent: float
    approx_tuple_len: int
    dead_tuple_len: int
    dead_tuple_count: int
    approx_free_space: int


@dataclass(frozen=True)
class SpaceFacts:
    """What ``read_space`` read."""

    block_size: int
    tables: tuple[TableSpace, ...]
    indexes: tuple[IndexSpace, ...]
    sequences: tuple[SequenceState, ...]
    measured: tuple[ApproxTuples, ...]  # pgstattuple_approx, where it was used
    pgstattuple: Literal["used", "not created", "not permitted"]


@dataclass(frozen=True)
class SpaceSettings:
    """How much the space section reads and shows, and where it draws its lines."""

    top_tables: int = 20
    top_indexes: int = 20
    measure_tables: int = 20  # the largest tables measured with pgstattuple_approx, when usable
    measure_min_pages: int = 128  # smaller tables are only estimated (1 MiB at 8 kB pages)
    sequence_fraction: float = 0.75  # a sequence this far through its range: listed, a warning
    sequence_critical: float = 0.90  # ...this far: critical
    bloat_warning: float = 0.5  # a table or index this much bloat (of its size): a warning
    bloat_min_bytes: int = 8 * 2**20  # ...and at least this much (less is not worth a rewrite)


def read_space(conn: psycopg.Connection[Any], settings: SpaceSettings) -> SpaceFacts:
    """Sizes, bloat estimates, sequences; ``pgstattuple_approx`` for the largest tables where
    the extension is created and the role may execute it (five queries at most)."""
    block = conn.execute(f"SELECT {SQL_MARKER} current_setting('block_size')::int").fetchone()
    assert block is not None
    with conn.cursor(row_factory=class_row(TableSpace)) as cur:
        tables = tuple(cur.execute(TABLES_SQL).fetchall())
    with conn.cursor(row_factory=class_row(IndexSpace)) as cur:
        indexes = tuple(cur.execute(INDEXES_SQL).fetchall())
    with conn.cursor(row_factory=class_row(SequenceState)) as cur:
        sequences = tuple(cur.execute(SEQUENCES_SQL).fetchall())
    extension = conn.execute(PGSTATTUPLE_SQL).fetchone()
    measured: tuple[ApproxTuples, ...] = ()
    status: Literal["used", "not created", "not permitted"] = "not created"
    if extension is not None:
        status = "used" if extension[1] else "not permitted"
    if status == "used":
        assert extension is not None
        relids = [t.relid for t in tables if t.pages >= settings.measure_min_pages]
        query = sql.SQL(_APPROX_SQL).format(
            marker=sql.SQL(SQL_MARKER),
            function=sql.Identifier(extension[0], "pgstattuple_approx"),
        )
        with conn.cursor(row_factory=class_row(ApproxTuples)) as cur:
            measured = tuple(
                cur.execute(query, {"relids": relids[: settings.measure_tables]}).fetchall()
            )
    return SpaceFacts(block[0], tables, indexes, sequences, measured, status)


# -- estimates (pure) ------------------------------------------------------------------------------


def _align(width: float, to: int = 8) -> float:
    return -(-width // to) * to


def heap_pages_needed(table: TableSpace, block_size: int) -> int | None:
    """The pages *table*'s live rows would fill if packed at its fillfactor: None without a
    row estimate (never analyzed) or statistics for every column."""
    if table.row_estimate < 0 or table.columns_with_statistics < table.columns:
        return None
    if table.row_estimate == 0:
        return 0
    bitmap = _align(table.columns / 8) if table.has_nulls else 0
    row = _align(TUPLE_HEADER + bitmap) + _align(table.data_width) + LINE_POINTER
    per_page = max(int((block_size - BLOCK_HEADER) * table.fillfactor / 100 // row), 1)
    return int(-(-table.row_estimate // per_page))


def btree_pages_needed(index: IndexSpace, block_size: int) -> int | None:
    """The pages a btree's entries would fill at its fillfactor (plus the metapage); None
    for expression keys or columns without statistics."""
    if index.entry_estimate < 0 or index.has_expressions:
        return None
    if index.columns_with_statistics < index.key_count:
        return None
    entry = INDEX_TUPLE_HEADER + _align(index.data_width) + LINE_POINTER
    usable = (block_size - BLOCK_HEADER - BTREE_SPECIAL) * index.fillfactor / 100
    per_page = max(int(usable // entry), 1)
    return 1 + int(-(-index.entry_estimate // per_page))


# -- the section's data ----------------------------------------------------------------------------

Method = Literal["pgstattuple_approx", "estimate", "no statistics"]


@dataclass(frozen=True)
class TableSpaceLine:
    table: str
    total_bytes: int
    heap_bytes: int
    toast_bytes: int
    index_bytes: int
    row_estimate: float
    bloat_bytes: int | None  # free or dead space beyond what the live rows need
    bloat_ratio: float | None  # of the heap
    method: Method
    dead_tuple_bytes: int | None  # pgstattuple_approx only


@dataclass(frozen=True)
class IndexSpaceLine:
    index: str
    table: str
    access_method: str
    index_bytes: int
    bloat_bytes: int | None
    bloat_ratio: float | None
    method: Method | Literal["btree only"]


@dataclass(frozen=True)
class SequenceLine:
    sequence: str
    data_type: str
    column: str | None  # table.column (type, identity or serial) that draws from it
    last_value: int | None
    maximum: int  # the smaller of the sequence's and its column type's
    fraction_used: float | None
    fix: str


@dataclass(frozen=True)
class SpaceReport:
    """The space section: largest tables and indexes, their bloat, sequences near their end."""

    tables: tuple[TableSpaceLine, ...]
    indexes: tuple[IndexSpaceLine, ...]
    sequences: tuple[SequenceLine, ...]  # at or past settings.sequence_fraction
    sequences_checked: int
    pgstattuple: str  # used, not created, not permitted
    settings: SpaceSettings
    growth: None = None  # filled from collected samples (dbtools collect), when there are some
    findings: tuple[Finding, ...] = ()  # SPACE_RULES: sequences near their end, bloat


def _table_line(
    table: TableSpace, block_size: int, measured: ApproxTuples | None
) -> TableSpaceLine:
    bloat: int | None
    if measured is not None:
        bloat = measured.dead_tuple_len + measured.approx_free_space
        method: Method = "pgstattuple_approx"
        dead: int | None = measured.dead_tuple_len
    else:
        needed = heap_pages_needed(table, block_size)
        bloat = None if needed is None else max(table.pages - needed, 0) * block_size
        method = "no statistics" if needed is None else "estimate"
        dead = None
    return TableSpaceLine(
        table=table.name,
        total_bytes=table.total_bytes,
        heap_bytes=table.heap_bytes,
        toast_bytes=table.toast_bytes,
        index_bytes=table.index_bytes,
        row_estimate=max(table.row_estimate, 0),
        bloat_bytes=bloat,
        bloat_ratio=bloat / table.heap_bytes if bloat is not None and table.heap_bytes else None,
        method=method,
        dead_tuple_bytes=dead,
    )


def _index_line(index: IndexSpace, block_size: int) -> IndexSpaceLine:
    method: Method | Literal["btree only"]
    if index.access_method != "btree" or not index.is_valid:
        needed, method = None, "btree only"
    else:
        needed = btree_pages_needed(index, block_size)
        method = "no statistics" if needed is None else "estimate"
    bloat = None if needed is None else max(index.pages - needed, 0) * block_size
    return IndexSpaceLine(
        index=index.name,
        table=qualified(index.schema_name, index.table_name),
        access_method=index.access_method,
        index_bytes=index.index_bytes,
        bloat_bytes=bloat,
        bloat_ratio=bloat / index.index_bytes if bloat is not None and index.index_bytes else None,
        method=method,
    )


def sequence_maximum(sequence: SequenceState) -> int:
    """The last value *sequence* can hand out to its column: its own maximum, or its column
    type's when that is smaller (a bigint sequence behind an integer column)."""
    column_max = TYPE_MAXIMUM.get(sequence.column_type or "", sequence.max_value)
    return min(sequence.max_value, column_max)


def fraction_used(sequence: SequenceState) -> float | None:
    """How far through its range *sequence* is (descending sequences count down); None when
    it was never used or its value is not visible to this role."""
    if sequence.last_value is None:
        return None
    if sequence.increment_by > 0:
        top = sequence_maximum(sequence)
        span = top - sequence.min_value
        return (sequence.last_value - sequence.min_value) / span if span else 1.0
    span = sequence.max_value - sequence.min_value
    return (sequence.max_value - sequence.last_value) / span if span else 1.0


def _sequence_fix(sequence: SequenceState) -> str:
    if sequence.table_name and sequence.column_name:
        column = f"{sequence.table_name} ALTER COLUMN {sequence.column_name}"
        if sequence.identity:
            return f"ALTER TABLE {column} TYPE bigint; (rewrites the table; the identity's sequence follows)"
        return (
            f"ALTER SEQUENCE {sequence.name} AS bigint; ALTER TABLE {column} TYPE bigint; "
            "(the second rewrites the table)"
        )
    return f"ALTER SEQUENCE {sequence.name} AS bigint;"


def _sequence_line(sequence: SequenceState) -> SequenceLine:
    column = None
    if sequence.table_name and sequence.column_name:
        kind = "identity" if sequence.identity else "serial" if sequence.owned else "default"
        column = f"{sequence.table_name}.{sequence.column_name} ({sequence.column_type}, {kind})"
    return SequenceLine(
        sequence=sequence.name,
        data_type=sequence.data_type,
        column=column,
        last_value=sequence.last_value,
        maximum=sequence_maximum(sequence),
        fraction_used=fraction_used(sequence),
        fix=_sequence_fix(sequence),
    )


# -- findings (pure) ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SpaceEvidence:
    """What the space rules judge: every table, index and sequence, with the section's lines."""

    tables: tuple[TableSpaceLine, ...]
    indexes: tuple[IndexSpaceLine, ...]
    sequences: tuple[tuple[SequenceState, SequenceLine], ...]
    settings: SpaceSettings


@rule("sequence_near_end")
def sequences_near_end(evidence: SpaceEvidence) -> list[Finding]:
    """Sequences (not cycling) past ``sequence_fraction`` of their range, critical past
    ``sequence_critical``; the range ends at the smaller of the sequence's maximum and the type
    of the column it feeds (PgHero's sequence_danger)."""
    settings, findings = evidence.settings, []
    for sequence, line in evidence.sequences:
        used = line.fraction_used
        if sequence.cycle or used is None or used < settings.sequence_fraction:
            continue
        critical = used >= settings.sequence_critical
        limit = (
            f"its column {sequence.table_name}.{sequence.column_name} ({sequence.column_type})"
            if line.maximum < sequence.max_value
            else f"the sequence ({sequence.data_type})"
        )
        findings.append(
            Finding(
                "sequence_near_end",
                "critical" if critical else "warning",
                line.sequence,
                f"{used:.2%} of its range used: last value {line.last_value:,} of "
                f"{line.maximum:,}, the largest {limit} takes",
                used,
                settings.sequence_critical if critical else settings.sequence_fraction,
                fix=line.fix,
            )
        )
    return findings


def _bloat(
    check: str, subject: str, size: int, bloat: int | None, method: str, fix: str,
    settings: SpaceSettings,
) -> Finding | None:  # fmt: skip
    if bloat is None or not size or bloat < settings.bloat_min_bytes:
        return None
    share = bloat / size
    if share < settings.bloat_warning:
        return None
    return Finding(
        check,
        "warning",
        subject,
        f"{byte_size(bloat)} of {byte_size(size)} ({share:.0%}) is bloat, by {method}",
        share,
        settings.bloat_warning,
        fix=fix,
    )


@rule("table_bloat")
def table_bloat(evidence: SpaceEvidence) -> list[Finding]:
    """Tables whose heap is at least ``bloat_warning`` bloat (and ``bloat_min_bytes``), measured
    with pgstattuple_approx or estimated from the catalog: the method is named."""
    found = (
        _bloat(
            "table_bloat", t.table, t.heap_bytes, t.bloat_bytes, t.method,
            f"VACUUM FULL {t.table}; (an ACCESS EXCLUSIVE lock while it rewrites) or, online, "
            f"pg_repack --table={t.table}",
            evidence.settings,
        )
        for t in evidence.tables
    )  # fmt: skip
    return [finding for finding in found if finding is not None]


@rule("index_bloat")
def index_bloat(evidence: SpaceEvidence) -> list[Finding]:
    """Btree indexes at least ``bloat_warning`` bloat (and ``bloat_min_bytes``), by estimate."""
    found = (
        _bloat(
            "index_bloat", i.index, i.index_bytes, i.bloat_bytes, str(i.method),
            f"REINDEX INDEX CONCURRENTLY {i.index};", evidence.settings,
        )
        for i in evidence.indexes
    )  # fmt: skip
    return [finding for finding in found if finding is not None]


SPACE_RULES: tuple[Rule[SpaceEvidence], ...] = (sequences_near_end, table_bloat, index_bloat)


def build_space(facts: SpaceFacts, settings: SpaceSettings) -> SpaceReport:
    """The space section from what was read (pure): the largest tables and indexes, the
    sequences past ``sequence_fraction``, and every rule's findings over all of them."""
    measured = {m.relid: m for m in facts.measured}
    tables = tuple(_table_line(t, facts.block_size, measured.get(t.relid)) for t in facts.tables)
    indexes = tuple(_index_line(i, facts.block_size) for i in facts.indexes)
    sequences = tuple((s, _sequence_line(s)) for s in facts.sequences)
    near_end = [
        line
        for s, line in sequences
        if not s.cycle and (line.fraction_used or 0.0) >= settings.sequence_fraction
    ]
    near_end.sort(key=lambda line: (-(line.fraction_used or 0.0), line.sequence))
    evidence = SpaceEvidence(tables, indexes, sequences, settings)
    return SpaceReport(
        tables=tables[: settings.top_tables],
        indexes=indexes[: settings.top_indexes],
        sequences=tuple(near_end),
        sequences_checked=len(facts.sequences),
        pgstattuple=facts.pgstattuple,
        settings=settings,
        findings=tuple(worst_first(run_rules(SPACE_RULES, evidence))),
    )


# -- its sections -------------------------------------------------------------------------------


def space_tables(space: SpaceReport) -> Section:
    rows = [
        [t.table, byte_size(t.total_bytes), byte_size(t.heap_bytes), byte_size(t.toast_bytes),
         byte_size(t.index_bytes), number(round(t.row_estimate)), byte_size(t.bloat_bytes),
         percent(t.bloat_ratio), t.method]
        for t in space.tables
    ]  # fmt: skip
    return Section(
        "space-tables",
        "Space: tables",
        f"The {space.settings.top_tables} largest tables. Bloat is space the live rows do not "
        "need (dead rows and free space): measured with pgstattuple_approx where the extension "
        f"is created and permitted (here: {space.pgstattuple}), else estimated from the "
        "catalog (pages held against the pages the rows need at the table's fillfactor, from "
        "ANALYZE's widths). Growth over time will come from collected samples.",
        ["table", "total", "heap", "TOAST", "indexes", "rows (est.)", "bloat", "bloat %",
         "method"],
        rows,
    )  # fmt: skip


def space_indexes(space: SpaceReport) -> Section:
    rows = [
        [i.index, i.table, i.access_method, byte_size(i.index_bytes), byte_size(i.bloat_bytes),
         percent(i.bloat_ratio), i.method]
        for i in space.indexes
    ]  # fmt: skip
    return Section(
        "space-indexes",
        "Space: indexes",
        f"The {space.settings.top_indexes} largest indexes. Btree bloat is estimated: pages "
        "held against the pages their entries need at the index's fillfactor (90% by "
        "default); REINDEX INDEX CONCURRENTLY gives the space back.",
        ["index", "table", "method", "size", "bloat", "bloat %", "estimated by"],
        rows,
    )


def space_sequences(space: SpaceReport) -> Section:
    rows = [
        [q.sequence, q.data_type, q.column or NO_VALUE, number(q.last_value), number(q.maximum),
         percent(q.fraction_used), q.fix]
        for q in space.sequences
    ]  # fmt: skip
    share = percent(space.settings.sequence_fraction, 0)
    return Section(
        "space-sequences",
        "Space: sequences running out",
        f"Sequences (identity and serial columns' included) {share} or more through their "
        f"range, of {space.sequences_checked} checked; the range ends at the smaller of the "
        "sequence's maximum and its column type's.",
        ["sequence", "type", "column", "last value", "maximum", "used", "fix"],
        rows,
        empty=f"No sequence is {share} through its range.",
    )


def space_health(space: SpaceReport) -> Section:
    settings = space.settings
    return findings_section(
        "space-health",
        "Space health",
        f"Sequences {percent(settings.sequence_fraction, 0)} through the range of the column "
        f"they feed (critical from {percent(settings.sequence_critical, 0)}), tables and btree "
        f"indexes {percent(settings.bloat_warning, 0)} or more bloat (and at least "
        f"{byte_size(settings.bloat_min_bytes)}), each with the method that measured it.",
        space.findings,
    )


# -- the subject ------------------------------------------------------------------------------------

SUBJECT = Subject(
    name="space",
    key="space",
    settings=SpaceSettings,
    read=lambda reading: read_space(reading.conn, reading.options.settings_of("space")),
    build=lambda facts, building: build_space(facts, building.options.settings_of("space")),
    sections=(space_tables, space_indexes, space_sequences, space_health),
    place=40,
)
