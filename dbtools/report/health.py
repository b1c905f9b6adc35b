"""The report's health: hit ratios per table, indexes and autovacuum, each with its findings.
Small pure rules over the typed statistics rows, the model built from the periods' rows, and
the sections.

The rules read a ``HealthInput`` (the tables and indexes of one snapshot, the foreign keys, the
server's autovacuum settings, and the per-table settings the snapshot's revision sets, from its
manifest) and return ``dbtools.findings.Finding``s (status ``critical``, ``warning`` or
``info``, and a ``fix``: what a DBA would run or check next); ``INDEX_RULES`` and
``AUTOVACUUM_RULES`` list them. Usage counters are the snapshot's own (cumulative since the
statistics were last reset), as a DBA judges "unused": a short window proves nothing.

What the snapshots do not hold (foreign keys, server settings) ``read_catalog`` reads in two
queries, whatever the number of tables.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

import psycopg
from psycopg.rows import class_row

from dbtools.db.catalog import qualified
from dbtools.db.connection import SQL_MARKER
from dbtools.figures.measures import heap_hit_ratio, index_hit_ratio
from dbtools.figures.sums import application_rows
from dbtools.findings import Finding, Rule, Status, rule, run_rules, worst_first
from dbtools.output import NO_VALUE, byte_size, number, percent
from dbtools.reading.rows import DatabaseRow, IndexRow, Snapshot, TableRow
from dbtools.report.sections import Section, findings_section, moment
from dbtools.report.subjects import Subject, as_read
from dbtools.schema.manifest import TableSettings, setting_differences
from dbtools.schema.monitoring import is_application

WRAPAROUND_LIMIT = 2**31  # transaction IDs before wraparound


# -- catalog facts the snapshots do not hold ---------------------------------------------------


@dataclass(frozen=True)
class ForeignKey:
    """A foreign key: the referencing table's columns (quoted as ``pg_get_indexdef`` quotes),
    and the referenced table (as ``regclass`` prints it, and as ``schema.name``) with its key's
    shape: each column's position and type, and the referencing column's type (what tells one
    foreign-key check from another in pg_stat_statements 18)."""

    relid: int
    schemaname: str
    relname: str
    constraint_name: str
    columns: list[str]
    referenced_table: str
    referenced_name: str = ""
    referenced_key: str = ""

    @property
    def table(self) -> str:
        return qualified(self.schemaname, self.relname)


@dataclass(frozen=True)
class AutovacuumDefaults:
    """The server's autovacuum settings (what a table without reloptions gets)."""

    autovacuum: bool = True
    vacuum_threshold: int = 50
    vacuum_scale_factor: float = 0.2
    analyze_threshold: int = 50
    analyze_scale_factor: float = 0.1
    freeze_max_age: int = 200_000_000


@dataclass(frozen=True)
class Catalog:
    """Foreign keys and autovacuum settings, read when the report is made."""

    foreign_keys: tuple[ForeignKey, ...] = ()
    autovacuum: AutovacuumDefaults = field(default_factory=AutovacuumDefaults)


FOREIGN_KEYS_SQL = f"""
SELECT {SQL_MARKER} k.conrelid::bigint AS relid, n.nspname::text AS schemaname,
       c.relname::text AS relname, k.conname::text AS constraint_name,
       ARRAY(SELECT quote_ident(a.attname)
             FROM unnest(k.conkey) WITH ORDINALITY AS u(attnum, position)
             JOIN pg_catalog.pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.attnum
             ORDER BY u.position) AS columns,
       k.confrelid::regclass::text AS referenced_table,
       pn.nspname::text || '.' || p.relname::text AS referenced_name,
       (SELECT string_agg(format('%s:%s=%s', u.pk, format_type(pa.atttypid, NULL),
                                 format_type(fa.atttypid, NULL)), ',' ORDER BY u.position)
        FROM unnest(k.confkey, k.conkey) WITH ORDINALITY AS u(pk, fk, position)
        JOIN pg_catalog.pg_attribute pa ON pa.attrelid = k.confrelid AND pa.attnum = u.pk
        JOIN pg_catalog.pg_attribute fa ON fa.attrelid = k.conrelid AND fa.attnum = u.fk)
           AS referenced_key
FROM pg_catalog.pg_constraint k
JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_class p ON p.oid = k.confrelid
JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace
WHERE k.contype = 'f'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'
ORDER BY n.nspname, c.relname, k.conname
"""

AUTOVACUUM_DEFAULTS_SQL = f"""
SELECT {SQL_MARKER} current_setting('autovacuum')::bool AS autovacuum,
       current_setting('autovacuum_vacuum_threshold')::int AS vacuum_threshold,
       current_setting('autovacuum_vacuum_scale_factor')::float8 AS vacuum_scale_factor,
       current_setting('autovacuum_analyze_threshold')::int AS analyze_threshold,
       current_setting('autovacuum_analyze_scale_factor')::float8 AS analyze_scale_factor,
       current_setting('autovacuum_freeze_max_age')::bigint AS freeze_max_age
"""


def read_catalog(conn: psycopg.Connection[Any]) -> Catalog:
    """The foreign keys of user tables and the server's autovacuum settings (two queries)."""
    with conn.cursor(row_factory=class_row(ForeignKey)) as cur:
        foreign_keys = tuple(cur.execute(FOREIGN_KEYS_SQL).fetchall())
    with conn.cursor(row_factory=class_row(AutovacuumDefaults)) as cur:
        defaults = cur.execute(AUTOVACUUM_DEFAULTS_SQL).fetchone()
    assert defaults is not None
    return Catalog(foreign_keys, defaults)


# -- what the rules read -----------------------------------------------------------------------


@dataclass(frozen=True)
class HealthSettings:
    """Where the rules draw their lines."""

    large_table_rows: int = 10_000  # a table this big should not be read by sequential scans
    seq_scan_share: float = 0.5  # ...for more than this share of its scans
    min_seq_scans: int = 50  # ...counted once it was scanned sequentially this often
    min_seq_rows_read: int = 500_000  # ...and read this many rows so (an index build is one scan)
    rare_index_scans: int = 50  # an index scanned fewer times than this (but not never) is rare
    min_dead_tuples: int = 1_000  # fewer dead tuples than this are never worth a finding
    min_rows_to_analyze: int = 1_000  # a table never analyzed matters from this size
    xid_age_critical: int = 1_500_000_000  # wraparound at 2^31: this is ~70% of the way


@dataclass(frozen=True)
class HealthInput:
    """One snapshot's tables and indexes, with the catalog facts, as of ``as_of``."""

    as_of: datetime
    tables: tuple[TableRow, ...]
    indexes: tuple[IndexRow, ...]
    database: DatabaseRow | None = None
    catalog: Catalog = field(default_factory=Catalog)
    settings: HealthSettings = field(default_factory=HealthSettings)
    expected_settings: tuple[TableSettings, ...] = ()  # the revision's, from its manifest


def health_input(
    snapshot: Snapshot,
    catalog: Catalog,
    settings: HealthSettings | None = None,
    *,
    expected_settings: Sequence[TableSettings],
) -> HealthInput:
    """What the rules read about *snapshot*: the application's tables, indexes and foreign keys
    (``schema.monitoring.is_application``: dbtools' monitoring schema left out), as of its time, and
    the per-table settings its revision sets (``manifest_at(revision).table_settings``)."""
    return HealthInput(
        as_of=snapshot.header.taken_at,
        tables=application_rows(snapshot.tables),
        indexes=application_rows(snapshot.indexes),
        database=snapshot.database,
        catalog=Catalog(application_rows(catalog.foreign_keys), catalog.autovacuum),
        settings=settings or HealthSettings(),
        expected_settings=tuple(expected_settings),
    )


def index_name(row: IndexRow) -> str:
    return qualified(row.schemaname, row.indexrelname)


def table_name(row: TableRow | IndexRow) -> str:
    return qualified(row.schemaname, row.relname)


def _drop(row: IndexRow) -> str:
    return f"DROP INDEX CONCURRENTLY {index_name(row)};"


# -- index rules --------------------------------------------------------------------------------


@rule("invalid_index")
def invalid_indexes(data: HealthInput) -> list[Finding]:
    """Indexes a failed concurrent build left invalid: maintained on writes, never read."""
    return [
        Finding(
            "invalid_index",
            "critical",
            index_name(row),
            f"invalid index on {table_name(row)} (indisvalid = false"
            f"{', not ready' if not row.is_ready else ''}): a failed CREATE INDEX CONCURRENTLY",
            fix=f"{_drop(row)} then build it again, or REINDEX INDEX CONCURRENTLY "
            f"{index_name(row)};",
        )
        for row in data.indexes
        if not row.is_valid
    ]


def covers(index: IndexRow, columns: Iterable[str]) -> bool:
    """Whether *index* can serve lookups on *columns*: they are its leading key columns."""
    wanted = set(columns)
    return (
        index.is_valid
        and index.predicate is None
        and index.access_method == "btree"
        and set(index.key_columns[: len(wanted)]) == wanted
    )


def _backs_foreign_key(index: IndexRow, data: HealthInput) -> bool:
    return any(
        fk.relid == index.relid and covers(index, fk.columns) for fk in data.catalog.foreign_keys
    )


def _droppable(index: IndexRow, data: HealthInput) -> bool:
    """Whether *index* only serves reads: valid, and neither unique, primary, constraint- nor
    FK-backing (those enforce something, or keep deletes on the referenced table from
    scanning)."""
    return (
        index.is_valid
        and not (index.is_unique or index.is_primary or index.backs_constraint)
        and not _backs_foreign_key(index, data)
    )


@rule("unused_index")
def unused_indexes(data: HealthInput) -> list[Finding]:
    """Valid indexes never scanned, except unique, primary-key and constraint- or FK-backing ones
    (they enforce something, or keep deletes on the referenced table from scanning)."""
    findings = []
    for row in data.indexes:
        if row.idx_scan or not _droppable(row, data):
            continue
        size = f", {byte_size(row.index_bytes)}" if row.index_bytes is not None else ""
        findings.append(
            Finding(
                "unused_index",
                "warning",
                index_name(row),
                f"never scanned since statistics were reset (on {table_name(row)}{size}); "
                "every write still maintains it",
                fix=f"check replicas and rare jobs first, then {_drop(row)}",
            )
        )
    return findings


@rule("rarely_used_index")
def rarely_used_indexes(data: HealthInput) -> list[Finding]:
    """Valid indexes scanned, but fewer than ``rare_index_scans`` times since the statistics
    were reset (the same exceptions as ``unused_index``): every write maintains them for a
    handful of reads."""
    limit = data.settings.rare_index_scans
    findings = []
    for row in data.indexes:
        if not 0 < row.idx_scan < limit or not _droppable(row, data):
            continue
        size = f", {byte_size(row.index_bytes)}" if row.index_bytes is not None else ""
        findings.append(
            Finding(
                "rarely_used_index",
                "info",
                index_name(row),
                f"scanned {row.idx_scan} times since statistics were reset (on "
                f"{table_name(row)}{size}); every write still maintains it",
                row.idx_scan,
                limit,
                fix=f"find the statements that use it (plans), then if they can do without: "
                f"{_drop(row)}",
            )
        )
    return findings


def _signature(row: IndexRow) -> str:
    """The definition without ``CREATE [UNIQUE] INDEX name ON table``: method, keys, INCLUDE,
    WHERE. Equal signatures on one table are duplicates."""
    return row.definition.partition(" USING ")[2]


def _keep_first(row: IndexRow) -> tuple[bool, bool, int]:
    """Which of duplicates to keep: constraint-backing, then unique, then the oldest (the one
    built later is the duplicate)."""
    return (not row.backs_constraint, not row.is_unique, row.indexrelid)


@rule("duplicate_index")
def duplicate_indexes(data: HealthInput) -> list[Finding]:
    """Valid indexes with the same method, keys, INCLUDE and predicate as another on the table."""
    groups: dict[tuple[int, str], list[IndexRow]] = {}
    for row in data.indexes:
        if row.is_valid:
            groups.setdefault((row.relid, _signature(row)), []).append(row)
    findings = []
    for rows in groups.values():
        kept, *others = sorted(rows, key=_keep_first)
        for row in others:
            fix = (
                "both back constraints: drop the redundant constraint"
                if row.backs_constraint
                else _drop(row)
            )
            findings.append(
                Finding(
                    "duplicate_index",
                    "warning",
                    index_name(row),
                    f"duplicate of {index_name(kept)} ({_signature(row)})",
                    fix=fix,
                )
            )
    return findings


@rule("overlapping_index")
def overlapping_indexes(data: HealthInput) -> list[Finding]:
    """Non-unique btree indexes whose keys lead another index's keys (same predicate): the
    longer one serves the same lookups."""
    btree = [row for row in data.indexes if row.is_valid and row.access_method == "btree"]
    findings = []
    for short in btree:
        if short.is_unique or short.backs_constraint:
            continue
        for long in btree:
            if (
                long.relid == short.relid
                and long.predicate == short.predicate
                and len(long.key_columns) > len(short.key_columns)
                and long.key_columns[: len(short.key_columns)] == short.key_columns
            ):
                findings.append(
                    Finding(
                        "overlapping_index",
                        "info",
                        index_name(short),
                        f"its keys ({', '.join(short.key_columns)}) lead {index_name(long)} "
                        f"({', '.join(long.key_columns)})",
                        fix=f"if {index_name(long)} serves its queries: {_drop(short)}",
                    )
                )
                break
    return findings


@rule("unindexed_foreign_key")
def unindexed_foreign_keys(data: HealthInput) -> list[Finding]:
    """Foreign keys whose columns lead no valid index: every delete or key update on the
    referenced table scans the referencing one."""
    findings = []
    for fk in data.catalog.foreign_keys:
        if any(row.relid == fk.relid and covers(row, fk.columns) for row in data.indexes):
            continue
        columns = ", ".join(fk.columns)
        findings.append(
            Finding(
                "unindexed_foreign_key",
                "warning",
                fk.table,
                f"foreign key {fk.constraint_name} ({columns}) references {fk.referenced_table} "
                "with no index on its columns",
                fix=f"CREATE INDEX CONCURRENTLY ON {fk.table} ({columns});",
            )
        )
    return findings


@rule("sequential_scans")
def sequential_scan_tables(data: HealthInput) -> list[Finding]:
    """Large tables read mostly by sequential scans (a missing or unusable index), once they
    were scanned so at least ``min_seq_scans`` times over ``min_seq_rows_read`` rows."""
    limits = data.settings
    findings = []
    for row in data.tables:
        scans = row.seq_scan + row.idx_scan
        if row.n_live_tup < limits.large_table_rows or not scans:
            continue
        if row.seq_scan < limits.min_seq_scans or row.seq_tup_read < limits.min_seq_rows_read:
            continue  # a few scans (an index build, a one-off job) say nothing
        share = row.seq_scan / scans
        if share < limits.seq_scan_share:
            continue
        findings.append(
            Finding(
                "sequential_scans",
                "warning",
                table_name(row),
                f"{row.seq_scan} sequential scans ({share:.0%} of {scans} scans) over "
                f"{row.n_live_tup} rows read {row.seq_tup_read} rows",
                share,
                limits.seq_scan_share,
                fix="EXPLAIN the statements that read it (see the query families) for a missing "
                "index",
            )
        )
    return findings


INDEX_RULES: tuple[Rule[HealthInput], ...] = (
    invalid_indexes,
    unused_indexes,
    rarely_used_indexes,
    duplicate_indexes,
    overlapping_indexes,
    unindexed_foreign_keys,
    sequential_scan_tables,
)


# -- autovacuum rules ---------------------------------------------------------------------------


def _option(options: Mapping[str, str], name: str, default: float) -> float:
    try:
        return float(options[name])
    except (KeyError, ValueError):
        return default


def vacuum_trigger(row: TableRow, defaults: AutovacuumDefaults) -> float:
    """Dead tuples at which autovacuum vacuums *row* (its reloptions, else the server's)."""
    options = row.options
    return _option(options, "autovacuum_vacuum_threshold", defaults.vacuum_threshold) + _option(
        options, "autovacuum_vacuum_scale_factor", defaults.vacuum_scale_factor
    ) * max(row.n_live_tup, 0)


def analyze_trigger(row: TableRow, defaults: AutovacuumDefaults) -> float:
    """Changed rows at which autovacuum analyzes *row*."""
    options = row.options
    return _option(options, "autovacuum_analyze_threshold", defaults.analyze_threshold) + _option(
        options, "autovacuum_analyze_scale_factor", defaults.analyze_scale_factor
    ) * max(row.n_live_tup, 0)


def dead_tuple_ratio(row: TableRow) -> float | None:
    total = row.n_live_tup + row.n_dead_tup
    return row.n_dead_tup / total if total else None


def last_vacuum(row: TableRow) -> datetime | None:
    return max((t for t in (row.last_vacuum, row.last_autovacuum) if t), default=None)


def last_analyze(row: TableRow) -> datetime | None:
    return max((t for t in (row.last_analyze, row.last_autoanalyze) if t), default=None)


@rule("autovacuum_disabled")
def autovacuum_disabled(data: HealthInput) -> list[Finding]:
    """Autovacuum switched off for the server or for a table."""
    findings = []
    if not data.catalog.autovacuum.autovacuum:
        findings.append(
            Finding(
                "autovacuum_disabled",
                "critical",
                data.database.datname if data.database else "server",
                "autovacuum = off: dead tuples and transaction-ID age grow unchecked",
                fix="ALTER SYSTEM SET autovacuum = on; SELECT pg_reload_conf();",
            )
        )
    for row in data.tables:
        if row.options.get("autovacuum_enabled", "true").lower() in ("false", "off", "0", "no"):
            findings.append(
                Finding(
                    "autovacuum_disabled",
                    "warning",
                    table_name(row),
                    "autovacuum_enabled = false on this table",
                    fix=f"ALTER TABLE {table_name(row)} RESET (autovacuum_enabled);",
                )
            )
    return findings


@rule("dead_tuples")
def dead_tuples(data: HealthInput) -> list[Finding]:
    """Tables holding more dead tuples than their autovacuum trigger: vacuum is behind."""
    findings = []
    for row in data.tables:
        trigger = vacuum_trigger(row, data.catalog.autovacuum)
        if row.n_dead_tup < data.settings.min_dead_tuples or row.n_dead_tup <= trigger:
            continue
        ratio = dead_tuple_ratio(row) or 0.0
        findings.append(
            Finding(
                "dead_tuples",
                "warning",
                table_name(row),
                f"{row.n_dead_tup} dead tuples ({ratio:.0%} of rows), above the autovacuum "
                f"trigger of {trigger:.0f}; last vacuum {_when(last_vacuum(row), data.as_of)}",
                row.n_dead_tup,
                trigger,
                fix=f"VACUUM (ANALYZE) {table_name(row)}; then check what holds autovacuum back "
                "(long transactions, cost limits)",
            )
        )
    return findings


@rule("stale_statistics")
def stale_statistics(data: HealthInput) -> list[Finding]:
    """Tables changed past their autoanalyze trigger, or never analyzed at all."""
    findings = []
    for row in data.tables:
        analyzed = last_analyze(row)
        trigger = analyze_trigger(row, data.catalog.autovacuum)
        value: float | None = None
        threshold: float | None = None
        if analyzed is None and row.n_live_tup >= data.settings.min_rows_to_analyze:
            message = f"never analyzed, with {row.n_live_tup} rows: the planner is guessing"
        elif (
            row.n_mod_since_analyze >= data.settings.min_dead_tuples
            and row.n_mod_since_analyze > trigger
        ):
            message = (
                f"{row.n_mod_since_analyze} rows changed since the last analyze "
                f"({_when(analyzed, data.as_of)}), above the autoanalyze trigger of {trigger:.0f}"
            )
            value, threshold = row.n_mod_since_analyze, trigger
        else:
            continue
        findings.append(
            Finding("stale_statistics", "warning", table_name(row), message, value, threshold,
                    fix=f"ANALYZE {table_name(row)};")
        )  # fmt: skip
    return findings


@rule("autovacuum_settings")
def autovacuum_settings(data: HealthInput) -> list[Finding]:
    """The per-table settings the snapshot's revision sets (its manifest), as found."""
    tables = {table_name(row): row for row in data.tables}
    findings = []
    for spec in data.expected_settings:
        row = tables.get(spec.qualified_table)
        if row is None:
            findings.append(
                Finding(
                    "autovacuum_settings",
                    "info",
                    spec.qualified_table,
                    "table not found: the expected autovacuum settings cannot be checked",
                    fix="alembic upgrade head",
                )
            )
            continue
        wrong = sorted(setting_differences(spec, row.options), key=lambda d: d.option)
        if not wrong:
            continue
        differences = ", ".join(
            f"{d.option} = {d.found or '(default)'} (expected {d.expected})" for d in wrong
        )
        settings = ", ".join(f"{d.option} = {d.expected}" for d in wrong)
        findings.append(
            Finding(
                "autovacuum_settings",
                "warning",
                spec.qualified_table,
                differences,
                fix=f"ALTER TABLE {spec.qualified_table} SET ({settings});",
            )
        )
    return findings


@rule("transaction_id_age")
def transaction_id_age(data: HealthInput) -> list[Finding]:
    """Tables and the database past ``autovacuum_freeze_max_age`` (anti-wraparound vacuum is
    overdue), critical past ``xid_age_critical``."""
    subjects: list[tuple[str, int | None, str]] = [
        (table_name(row), row.xid_age, f"VACUUM (FREEZE, VERBOSE) {table_name(row)};")
        for row in data.tables
    ]
    if data.database is not None:
        name = data.database.datname
        subjects.append(
            (
                name,
                data.database.xid_age,
                f"vacuumdb --freeze --dbname {name} (oldest tables first)",
            )
        )
    findings = []
    for subject, age, fix in subjects:
        if age is None or age <= data.catalog.autovacuum.freeze_max_age:
            continue
        status: Status = "critical" if age > data.settings.xid_age_critical else "warning"
        findings.append(
            Finding(
                "transaction_id_age",
                status,
                subject,
                f"transaction-ID age {age} ({age / WRAPAROUND_LIMIT:.0%} of the way to "
                f"wraparound), past autovacuum_freeze_max_age "
                f"{data.catalog.autovacuum.freeze_max_age}",
                age,
                data.catalog.autovacuum.freeze_max_age,
                fix=f"{fix} and look for what blocks freezing (old transactions, prepared "
                "transactions, replication slots)",
            )
        )
    return findings


AUTOVACUUM_RULES: tuple[Rule[HealthInput], ...] = (
    autovacuum_disabled,
    dead_tuples,
    stale_statistics,
    autovacuum_settings,
    transaction_id_age,
)


def index_health(data: HealthInput) -> list[Finding]:
    """Every index rule's findings, worst first."""
    return worst_first(run_rules(INDEX_RULES, data))


def autovacuum_health(data: HealthInput) -> list[Finding]:
    """Every autovacuum rule's findings, worst first."""
    return worst_first(run_rules(AUTOVACUUM_RULES, data))


# -- wording ------------------------------------------------------------------------------------


def _when(moment: datetime | None, as_of: datetime) -> str:
    if moment is None:
        return "never"
    days = (as_of - moment).total_seconds() / 86400
    return f"{days:.1f} days before the snapshot"


# -- the report's model -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TableHitLine:
    """A table read in some period, with its hit ratios in each."""

    table: str
    figures: Mapping[str, TableHitFigures]


@dataclass(frozen=True)
class TableHitFigures:
    """A table's heap and index hit ratios in one period."""

    heap_hit_ratio: float | None
    index_hit_ratio: float | None
    heap_blocks_read: int
    index_blocks_read: int


@dataclass(frozen=True)
class IndexLine:
    """An index, with its scans in total and in each period."""

    index: str
    table: str
    valid: bool
    unique: bool
    size_bytes: int | None
    total_scans: int  # cumulative, at the latest snapshot
    scans: Mapping[str, int | None]  # per period


@dataclass(frozen=True)
class VacuumLine:
    """A table's tuples, (auto)vacuum and (auto)analyze, and its settings against the declared."""

    table: str
    live_tuples: int
    dead_tuples: int
    dead_ratio: float | None
    last_vacuum: datetime | None
    last_autovacuum: datetime | None
    last_analyze: datetime | None
    last_autoanalyze: datetime | None
    xid_age: int | None
    settings: Mapping[str, str]
    expected: Literal["ok", "differs", "not declared"]


def table_hit_lines(tables: Mapping[str, Iterable[TableRow]]) -> tuple[TableHitLine, ...]:
    """Each application table read in any period, with its hit ratios in each (by name)."""
    names: dict[int, str] = {}
    by_period: dict[str, dict[int, TableRow]] = {}
    for name, period_rows in tables.items():
        by_period[name] = {row.relid: row for row in period_rows if is_application(row)}
        for row in by_period[name].values():
            names[row.relid] = table_name(row)
    lines = []
    for relid, table in sorted(names.items(), key=lambda item: item[1]):
        rows = [found[relid] for found in by_period.values() if relid in found]
        if not any(r.heap_blks_hit + r.heap_blks_read + r.idx_blks_hit + r.idx_blks_read
                   for r in rows):  # fmt: skip
            continue  # not read in any period: nothing to say
        figures = {}
        for name, found_in in by_period.items():
            found = found_in.get(relid)
            figures[name] = TableHitFigures(
                heap_hit_ratio=heap_hit_ratio([found]) if found else None,
                index_hit_ratio=index_hit_ratio([found]) if found else None,
                heap_blocks_read=found.heap_blks_read if found else 0,
                index_blocks_read=found.idx_blks_read if found else 0,
            )
        lines.append(TableHitLine(table, figures))
    return tuple(lines)


def index_lines(
    scanned: Mapping[str, Iterable[IndexRow]], indexes: Iterable[IndexRow]
) -> tuple[IndexLine, ...]:
    """Each of *indexes* with its scans in total and in each period (*scanned*, by name)."""
    scans = {name: {row.indexrelid: row.idx_scan for row in rows} for name, rows in scanned.items()}
    lines = [
        IndexLine(
            index=index_name(row),
            table=table_name(row),
            valid=row.is_valid,
            unique=row.is_unique,
            size_bytes=row.index_bytes,
            total_scans=row.idx_scan,
            scans={name: found.get(row.indexrelid) for name, found in scans.items()},
        )
        for row in indexes
    ]
    return tuple(sorted(lines, key=lambda line: (line.table, line.index)))


def vacuum_lines(
    tables: Iterable[TableRow], expected_settings: Iterable[TableSettings]
) -> tuple[VacuumLine, ...]:
    """Each table's vacuum line; its settings judged against *expected_settings* (by name)."""
    expected = {spec.qualified_table: spec for spec in expected_settings}
    lines = []
    for row in tables:
        wanted = expected.get(table_name(row))
        options = row.options
        status: Literal["ok", "differs", "not declared"] = (
            "not declared"
            if wanted is None
            else "differs"
            if setting_differences(wanted, options)
            else "ok"
        )
        lines.append(
            VacuumLine(
                table=table_name(row),
                live_tuples=row.n_live_tup,
                dead_tuples=row.n_dead_tup,
                dead_ratio=dead_tuple_ratio(row),
                last_vacuum=row.last_vacuum,
                last_autovacuum=row.last_autovacuum,
                last_analyze=row.last_analyze,
                last_autoanalyze=row.last_autoanalyze,
                xid_age=row.xid_age,
                settings=dict(sorted(options.items())),
                expected=status,
            )
        )
    return tuple(sorted(lines, key=lambda line: line.table))


# -- sections --------------------------------------------------------------------------------------


class Shown(Protocol):
    """What the health's sections read of the report (``model.Report``)."""

    @property
    def period_names(self) -> tuple[str, ...]: ...
    @property
    def table_hit_ratios(self) -> tuple[TableHitLine, ...]: ...
    @property
    def indexes(self) -> tuple[IndexLine, ...]: ...
    @property
    def index_health(self) -> tuple[Finding, ...]: ...
    @property
    def autovacuum(self) -> tuple[VacuumLine, ...]: ...
    @property
    def autovacuum_health(self) -> tuple[Finding, ...]: ...


def hit_ratios_section(report: Shown) -> Section:
    rows = []
    for line in report.table_hit_ratios:
        for i, name in enumerate(report.period_names):
            f = line.figures[name]
            period = [name] if len(report.period_names) > 1 else []
            rows.append([line.table if i == 0 else "", *period, percent(f.heap_hit_ratio),
                         f"{f.heap_blocks_read:,}", percent(f.index_hit_ratio),
                         f"{f.index_blocks_read:,}"])  # fmt: skip
    period = ["period"] if len(report.period_names) > 1 else []
    return Section(
        "hit-ratios",
        "Hit ratios per table",
        "hit / (hit + read) of pg_statio_user_tables, per table: heap blocks and its indexes' "
        "blocks.",
        [
            "table",
            *period,
            "heap hit ratio",
            "heap blocks read",
            "index hit ratio",
            "index blocks read",
        ],
        rows,
    )


def indexes_section(report: Shown) -> Section:
    rows = [
        [line.index, line.table, "yes" if line.valid else "NO", "yes" if line.unique else "",
         byte_size(line.size_bytes), f"{line.total_scans:,}",
         *(number(line.scans[n]) for n in report.period_names)]
        for line in report.indexes
    ]  # fmt: skip
    return Section(
        "indexes",
        "Indexes",
        "Scans since the statistics were reset, and in each period.",
        [
            "index",
            "table",
            "valid",
            "unique",
            "size",
            "scans (total)",
            *(f"scans ({n})" for n in report.period_names),
        ],
        rows,
    )


def index_health_section(report: Shown) -> Section:
    return findings_section(
        "index-health",
        "Index health",
        "Invalid, unused (unique, primary-key and FK-backing indexes left out), duplicate and "
        "overlapping indexes, foreign keys without an index, large tables read by sequential "
        "scans.",
        report.index_health,
    )


def autovacuum_section(report: Shown) -> Section:
    rows = [
        [line.table, f"{line.live_tuples:,}", f"{line.dead_tuples:,}", percent(line.dead_ratio),
         moment(line.last_vacuum), moment(line.last_autovacuum), moment(line.last_analyze),
         moment(line.last_autoanalyze), number(line.xid_age),
         ", ".join(f"{k}={v}" for k, v in line.settings.items()) or NO_VALUE, line.expected]
        for line in report.autovacuum
    ]  # fmt: skip
    return Section(
        "autovacuum",
        "Autovacuum",
        "Dead tuples, last (auto)vacuum and (auto)analyze, transaction-ID age and the table's "
        "settings against those the migrations declare.",
        [
            "table",
            "live",
            "dead",
            "dead %",
            "last vacuum",
            "last autovacuum",
            "last analyze",
            "last autoanalyze",
            "xid age",
            "settings",
            "expected settings",
        ],
        rows,
    )


def autovacuum_health_section(report: Shown) -> Section:
    return findings_section(
        "autovacuum-health",
        "Autovacuum health",
        "Dead tuples past the autovacuum trigger, stale statistics, settings, transaction-ID age.",
        report.autovacuum_health,
    )


# -- the subject -----------------------------------------------------------------------------------


class _Period(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def tables(self) -> tuple[TableRow, ...]: ...
    @property
    def indexes(self) -> tuple[IndexRow, ...]: ...


class _Manifest(Protocol):
    @property
    def table_settings(self) -> Sequence[TableSettings]: ...


class _Options(Protocol):
    @property
    def health(self) -> HealthSettings: ...


class Windows(Protocol):
    """What the health reads of the windows (``model.WindowsReading``)."""

    @property
    def periods(self) -> Sequence[_Period]: ...
    @property
    def state(self) -> Snapshot: ...
    @property
    def catalog(self) -> Catalog: ...
    @property
    def manifest(self) -> _Manifest: ...
    @property
    def options(self) -> _Options: ...


def _read(windows: Windows) -> dict[str, Any]:
    data = health_input(
        windows.state, windows.catalog, windows.options.health,
        expected_settings=windows.manifest.table_settings,
    )  # fmt: skip
    periods = windows.periods
    return {
        "table_hit_ratios": table_hit_lines({p.name: p.tables for p in periods}),
        "indexes": index_lines({p.name: p.indexes for p in periods}, data.indexes),
        "index_health": tuple(index_health(data)),
        "autovacuum": vacuum_lines(data.tables, data.expected_settings),
        "autovacuum_health": tuple(autovacuum_health(data)),
    }


SUBJECT = Subject(
    name="health",
    key="health",
    settings=HealthSettings,  # also ReportOptions.health, read by the catalog's subjects
    read=_read,
    build=as_read,
    sections=(
        hit_ratios_section, indexes_section, index_health_section, autovacuum_section,
        autovacuum_health_section,
    ),
    place=-20,
    reads="windows",
    fields=("table_hit_ratios", "indexes", "index_health", "autovacuum", "autovacuum_health"),
)  # fmt: skip
