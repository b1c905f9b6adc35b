"""Frozen revisions and their manifests: each upgrade creates exactly what its manifest lists, a
frozen revision's SQL never changes, and what dbtools expects of a database follows its revision."""

from __future__ import annotations

import dataclasses
import difflib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from dbtools import verify_candidate
from dbtools.db.catalog import qualified, split_qualified
from dbtools.errors import ConfigError
from dbtools.grafana.dashboard import panels
from dbtools.schema.manifest import (
    IndexDefinition,
    Manifest,
    SettingDifference,
    TableSettings,
    head_revision,
    manifest_at,
    setting_differences,
)
from dbtools.schema.revisions import (
    IniPath,
    downgrade,
    offline_sql,
    script_directory,
    upgrade,
)
from dbtools.verify.thresholds import Thresholds
from tests.conftest import Database
from tests.helpers import REPO
from tests.snapshot_helpers import record_metrics, window

GOLDEN = REPO / "tests" / "golden" / "revisions"
REVISIONS = [rev.revision for rev in reversed(list(script_directory().walk_revisions()))]
PARENTS = dict(zip(REVISIONS, ["base", *REVISIONS[:-1]], strict=True))

# -- the catalog, read the way a manifest names things ------------------------------------------

# Partitions (revision 0008's sample days) are data and left out; a partitioned index is an index.
# Everything outside the system schemas that no extension owns (pg_stat_statements lives in
# public); Alembic's own version table is left out.
_OWN = """NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = '{catalog}'::regclass
                   AND d.objid = {oid} AND d.deptype = 'e')"""
_USER_SCHEMA = "n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'"
SCHEMAS_SQL = f"""
SELECT quote_ident(n.nspname) FROM pg_namespace n
WHERE {_USER_SCHEMA} AND {_OWN.format(catalog="pg_namespace", oid="n.oid")}"""
RELATIONS_SQL = f"""
SELECT format('%s.%s', quote_ident(n.nspname), quote_ident(c.relname)), lower(c.relkind::text),
       CASE WHEN c.relkind IN ('i', 'I') THEN pg_get_indexdef(c.oid) END, c.reloptions::text[]
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'i', 'I') AND NOT c.relispartition AND {_USER_SCHEMA}
  AND {_OWN.format(catalog="pg_class", oid="c.oid")}
  AND c.relname NOT IN ('alembic_version', 'alembic_version_pkc')"""
FUNCTIONS_SQL = f"""
SELECT format('%s.%s(%s)', quote_ident(n.nspname), quote_ident(p.proname),
              oidvectortypes(p.proargtypes))
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE {_USER_SCHEMA} AND {_OWN.format(catalog="pg_proc", oid="p.oid")}"""


@dataclass(frozen=True)
class Catalog:
    schemas: frozenset[str]
    tables: frozenset[str]
    indexes: dict[str, str]  # name: pg_get_indexdef
    options: dict[str, dict[str, str]]  # table: reloptions
    functions: frozenset[str]

    def names(self) -> set[str]:
        return {*self.schemas, *self.tables, *self.indexes, *self.functions}


def read_catalog(database: Database) -> Catalog:
    relations = database.execute(RELATIONS_SQL)
    return Catalog(
        schemas=frozenset(name for (name,) in database.execute(SCHEMAS_SQL)),
        tables=frozenset(name for name, kind, _, _ in relations if kind != "i"),
        indexes={name: definition for name, kind, definition, _ in relations if kind == "i"},
        options={
            name: dict(option.split("=", 1) for option in options or ())
            for name, kind, _, options in relations
            if kind != "i"
        },
        functions=frozenset(name for (name,) in database.execute(FUNCTIONS_SQL)),
    )


def own_manifest(revision: str) -> Manifest:
    """The MANIFEST *revision* exports (its own objects, not the cumulative manifest)."""
    manifest = script_directory().get_revision(revision).module.MANIFEST
    assert isinstance(manifest, Manifest)
    return manifest


def changed_options(before: Catalog, after: Catalog) -> dict[str, dict[str, str | None]]:
    """Per table, the storage parameters the upgrade set (None: one it reset)."""
    changed: dict[str, dict[str, str | None]] = {}
    for table, options in after.options.items():
        old = before.options.get(table, {})
        diff: dict[str, str | None] = {k: v for k, v in options.items() if old.get(k) != v}
        diff.update({k: None for k in old if k not in options})
        if diff:
            changed[table] = diff
    return changed


# -- (a) each upgrade creates exactly its manifest ----------------------------------------------


@pytest.mark.parametrize("revision", REVISIONS)
def test_upgrade_creates_exactly_its_manifest(database: Database, revision: str) -> None:
    parent = PARENTS[revision]
    if parent != "base":
        upgrade(database.dsn, parent)
    before = read_catalog(database)
    upgrade(database.dsn, revision)
    after = read_catalog(database)
    own = own_manifest(revision)

    assert after.schemas - before.schemas == set(own.schemas)
    assert after.tables - before.tables == set(own.tables)
    created = {name: d for name, d in after.indexes.items() if name not in before.indexes}
    assert created == {index.qualified_name: index.definition for index in own.indexes}
    assert after.functions - before.functions == set(own.functions)
    assert changed_options(before, after) == {
        spec.qualified_table: dict(spec.settings) for spec in own.table_settings
    }
    assert before.names() - after.names() == set(own.dropped)

    # And the database now holds exactly the manifest of every revision up to this one.
    cumulative = manifest_at(revision)
    assert cumulative.revision == revision
    assert after.schemas - {"public"} == set(cumulative.schemas)
    assert after.tables == set(cumulative.tables)
    assert after.indexes == {index.qualified_name: index.definition for index in cumulative.indexes}
    assert after.functions == set(cumulative.functions)
    assert {table: options for table, options in after.options.items() if options} == {
        spec.qualified_table: dict(spec.settings) for spec in cumulative.table_settings
    }


def test_manifests_count_what_the_revisions_create() -> None:
    counts = {}
    for revision in REVISIONS:
        own = own_manifest(revision)
        counts[revision] = (len(own.tables), len(own.indexes), len(own.table_settings),
                            len(own.functions), len(own.batch_indexes))  # fmt: skip
    assert counts == {"0001": (5, 10, 0, 0, 0), "0002": (8, 13, 0, 1, 0), "0003": (0, 3, 3, 0, 3),
                      "0004": (1, 1, 0, 0, 0), "0005": (0, 12, 0, 1, 0),
                      "0006": (0, 0, 0, 0, 0), "0007": (0, 0, 0, 0, 0),
                      "0008": (4, 12, 0, 11, 0)}  # fmt: skip


# -- (b) a frozen revision's SQL never changes --------------------------------------------------


def revision_sql(revision: str, direction: str, *, ini: IniPath = None) -> str:
    """``alembic upgrade PARENT:REV --sql`` (or ``downgrade REV:PARENT --sql``)."""
    parent = PARENTS[revision]
    if direction == "upgrade":
        return offline_sql(f"{parent}:{revision}", ini=ini)
    return offline_sql(f"{revision}:{parent}", downgrade=True, ini=ini)


def assert_frozen(
    revision: str, direction: str, *, ini: IniPath = None, update: bool = False
) -> None:
    """The revision's offline SQL equals its golden file; *update* rewrites the file instead."""
    golden = GOLDEN / f"{revision}.{direction}.sql"
    actual = revision_sql(revision, direction, ini=ini)
    if update:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(actual)
    if not golden.is_file():
        pytest.fail(
            f"no golden SQL for revision {revision}: run UPDATE_GOLDEN=1 pytest to freeze it"
        )
    expected = golden.read_text()
    if actual != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                actual.splitlines(keepends=True),
                str(golden.relative_to(REPO)),
                f"alembic {direction} --sql",
            )
        )
        pytest.fail(
            f"the {direction} SQL of revision {revision} changed: a frozen revision must not "
            "change (a database migrated before would differ from one migrated now); add a new "
            "revision instead. For a deliberate change (a comment, a helper's rendering), "
            f"regenerate with UPDATE_GOLDEN=1.\n{diff}",
            pytrace=False,
        )


@pytest.mark.parametrize("direction", ["upgrade", "downgrade"])
@pytest.mark.parametrize("revision", REVISIONS)
def test_frozen_revision_sql_is_unchanged(revision: str, direction: str) -> None:
    assert_frozen(revision, direction, update=os.environ.get("UPDATE_GOLDEN") == "1")


def test_every_golden_file_belongs_to_a_revision() -> None:
    expected = {f"{r}.{d}.sql" for r in REVISIONS for d in ("upgrade", "downgrade")}
    assert {path.name for path in GOLDEN.iterdir()} == expected


@pytest.fixture
def migrations_copy(tmp_path: Path) -> Path:
    """A copy of alembic.ini and migrations/ to edit; returns the copied alembic.ini."""
    shutil.copy(REPO / "alembic.ini", tmp_path / "alembic.ini")
    shutil.copytree(
        REPO / "migrations", tmp_path / "migrations", ignore=shutil.ignore_patterns("__pycache__")
    )
    return tmp_path / "alembic.ini"


def test_an_edited_frozen_revision_is_caught(migrations_copy: Path) -> None:
    revision_file = migrations_copy.parent / "migrations/versions/0003_batch_optimisation.py"
    text = revision_file.read_text()
    assert text.count("(search_key, expires_at DESC)") == 1
    revision_file.write_text(
        text.replace("(search_key, expires_at DESC)", "(search_key, expires_at)")
    )
    assert_frozen("0003", "downgrade", ini=migrations_copy)  # the downgrade did not change
    with pytest.raises(pytest.fail.Exception) as failure:
        assert_frozen("0003", "upgrade", ini=migrations_copy)
    message = str(failure.value)
    assert "the upgrade SQL of revision 0003 changed: a frozen revision must not change" in message
    assert "add a new revision instead" in message
    assert (
        "+CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_flight_search_cache_key_expiry ON "
        "public.flight_search_cache USING btree (search_key, expires_at);" in message
    )


def test_a_revision_without_a_manifest_is_a_config_error(migrations_copy: Path) -> None:
    revision_file = (
        migrations_copy.parent / "migrations/versions/0002_performance_monitoring_schema.py"
    )
    revision_file.write_text(revision_file.read_text().replace("MANIFEST = ", "NOT_A_MANIFEST = "))
    assert manifest_at("0001", ini=migrations_copy).tables  # below it, all is well
    with pytest.raises(
        ConfigError, match=r"revision 0002 \(.*0002_performance.*\) exports no MANIFEST"
    ):
        manifest_at("head", ini=migrations_copy)


# -- (c) verify judges a database against its revision's manifest -------------------------------


def test_verify_after_a_downgrade_to_0002_judges_against_0002(migrated_database: Database) -> None:
    db = migrated_database
    window(db, "before", 20)
    window(db, "after", 20, batch=10)
    for label in ("before", "after"):
        record_metrics(db, label, requests=20)
    relaxed = Thresholds(critical_query_rate=1e9)
    at_head = verify_candidate(db.dsn, "before", "after", thresholds=relaxed)
    assert at_head.verdict == "pass"
    assert len([f for f in at_head.findings if f.check == "batch_indexes"]) == 3
    assert len([f for f in at_head.findings if f.check == "autovacuum_settings"]) == 3

    downgrade(db.dsn, "0002")
    result = verify_candidate(db.dsn, "before", "after", thresholds=relaxed)
    by_check: dict[str, list[tuple[str, str, str]]] = {}
    for f in result.findings:
        by_check.setdefault(f.check, []).append((f.status, f.subject, f.message))
    assert by_check["batch_indexes"] == [
        ("pass", "revision 0002", "no batch indexes expected at 0002")
    ]
    assert by_check["autovacuum_settings"] == [
        ("pass", "revision 0002", "no autovacuum settings expected at 0002")
    ]
    assert by_check["monitoring_tables"] == [("pass", "perf_monitoring", "8 tables present")]
    assert by_check["schema_at_head"] == [
        ("fail", "alembic_version", f"at 0002, head is {head_revision()}")
    ]
    # The downgrade took the snapshots' record of pg_stat_statements' settings (revision 0004's
    # columns) with it: whether every statement was counted can no longer be told.
    assert by_check["window"] == [
        ("untrusted", role, "pg_stat_statements settings are not stored with this window's "
         f"snapshots (taken at revision {head_revision()}; they are stored from revision 0004 "
         "on, and a downgrade below 0004 drops them): whether every statement was counted is "
         "unknown")
        for role in ("baseline", "candidate")
    ]  # fmt: skip
    assert [f.check for f in result.findings if f.status not in ("pass", "untrusted")] == [
        "schema_at_head"
    ]
    assert result.verdict == "fail" and result.exit_code == 1


def test_verify_at_an_unknown_revision_is_a_config_error(migrated_database: Database) -> None:
    db = migrated_database
    window(db, "before", 3)
    window(db, "after", 3)
    db.execute("UPDATE public.alembic_version SET version_num = '0009'")
    with pytest.raises(ConfigError, match="unknown revision '0009'"):
        verify_candidate(db.dsn, "before", "after")


def test_dashboard_needs_the_tables_its_revision_creates() -> None:
    assert len(panels(manifest=manifest_at("0005"))) == len(panels())
    with pytest.raises(ConfigError) as error:
        panels(manifest=manifest_at("0001"))
    assert str(error.value) == (
        "the dashboard reads perf_monitoring.snapshots, which revision 0001 does not create"
    )
    # the panels' SQL reads 0005's samples through its indexes on (target, ...)
    with pytest.raises(ConfigError) as error:
        panels(manifest=manifest_at("0004"))
    assert str(error.value) == (
        "the dashboard reads perf_monitoring.pk_snapshots_target, which revision 0004 does not "
        "create"
    )


# -- (d) manifest_at -----------------------------------------------------------------------------

APP_TABLES = [f"public.{t}" for t in
              ("travelers", "trip_requests", "flight_offers", "flight_search_cache", "bookings")]  # fmt: skip
MONITORING_TABLES = ["app_metrics", "request_metrics", "setting_changes", "snapshots",
                     "database_stats", "index_stats", "statement_stats", "table_stats"]  # fmt: skip
BATCH_INDEXES = ["public.ix_trip_requests_active_batch", "public.ix_flight_offers_trip_expiry",
                 "public.ix_flight_search_cache_key_expiry"]  # fmt: skip


def test_manifest_at_base_and_never_migrated_is_empty() -> None:
    assert manifest_at(None) == manifest_at("base") == Manifest()


def test_manifest_at_each_revision() -> None:
    first, second, third = (manifest_at(r) for r in ("0001", "0002", "0003"))
    fourth = manifest_at("0004")
    assert (first.revision, second.revision, third.revision) == ("0001", "0002", "0003")
    assert list(first.tables) == APP_TABLES
    assert (len(first.indexes), first.schemas, first.functions, first.monitoring_tables) == (
        10, (), (), ()
    )  # fmt: skip
    assert list(second.tables) == APP_TABLES + [f"perf_monitoring.{t}" for t in MONITORING_TABLES]
    assert list(second.monitoring_tables) == MONITORING_TABLES
    assert second.schemas == ("perf_monitoring",)
    assert second.functions == ("perf_monitoring.purge_older_than(integer)",)
    assert len(second.indexes) == 23
    assert second.batch_indexes == () and second.table_settings == ()
    assert third.tables == second.tables and len(third.indexes) == 26
    assert [index.qualified_name for index in third.batch_indexes] == BATCH_INDEXES
    assert {spec.qualified_table: dict(spec.settings) for spec in third.table_settings} == {
        "public.flight_offers": {
            "autovacuum_vacuum_scale_factor": "0.05",
            "autovacuum_analyze_scale_factor": "0.02",
            "autovacuum_vacuum_cost_limit": "1000",
        },
        "public.flight_search_cache": {
            "autovacuum_vacuum_scale_factor": "0.02",
            "autovacuum_analyze_scale_factor": "0.01",
            "autovacuum_vacuum_insert_scale_factor": "0.05",
        },
        "public.trip_requests": {
            "autovacuum_vacuum_scale_factor": "0.05",
            "autovacuum_analyze_scale_factor": "0.02",
        },
    }
    assert fourth.tables == (*third.tables, "perf_monitoring.statement_texts")
    assert len(fourth.indexes) == 27 and fourth.table_settings == third.table_settings
    assert fourth.monitoring_tables == (*MONITORING_TABLES, "statement_texts")
    # 0005: the monitoring tables keyed by target first (8 keys and indexes replaced by 12),
    # and the function that folds samples
    fifth = manifest_at("0005")
    assert fifth.tables == fourth.tables and fifth.table_settings == fourth.table_settings
    assert len(fifth.indexes) == 27 - 8 + 12 == 31
    assert fifth.functions == (*fourth.functions, "perf_monitoring.fold_samples(text, bigint[])")
    # 0006 and 0007 add columns only (request_metrics' variant and queries, then its latency
    # histogram), which manifests do not list
    assert dataclasses.replace(manifest_at("0006"), revision="0005") == fifth
    assert dataclasses.replace(manifest_at("0007"), revision="0005") == fifth
    # 0008: the four sample tables partitioned by day (their 8 keys and indexes replaced by 8
    # on the partitioned tables; the day partitions are data, not listed) and the functions that
    # add, drop and rewrite day partitions; its entries tables (each entry's latest row) with
    # their keys and the functions of the triggers that keep them
    eighth = manifest_at("0008")
    entries = [f"{t}_entries" for t in ("statement_stats", "table_stats", "index_stats",
                                        "database_stats")]  # fmt: skip
    assert eighth.tables == (*fifth.tables, *(f"perf_monitoring.{t}" for t in entries))
    assert len(eighth.indexes) == 31 + 4  # the entries tables' keys
    assert eighth.functions[: len(fifth.functions) + 3] == (
        *fifth.functions,
        "perf_monitoring.add_sample_days(date, date)",
        "perf_monitoring.drop_sample_days(date)",
        "perf_monitoring.rewrite_sample_day(date)",
    )
    assert len(eighth.functions) == len(fifth.functions) + 3 + 8  # two triggers' a table
    assert manifest_at("head") == eighth


@pytest.mark.parametrize("revision", ["0010", "00", "0002,0003", "head-1"])
def test_manifest_at_an_unknown_revision_is_a_config_error(revision: str) -> None:
    with pytest.raises(ConfigError) as error:
        manifest_at(revision)
    assert str(error.value).startswith(f"unknown revision {revision!r}: the migrations in ")
    assert str(error.value).endswith(" have 0001, 0002, 0003, 0004, 0005, 0006, 0007, 0008")


# -- the manifest's parts, pure -----------------------------------------------------------------


def test_an_index_definition_gives_its_concurrent_build_and_drop() -> None:
    index = IndexDefinition(
        "CREATE INDEX ix_active ON public.trips USING btree (id) INCLUDE (key) "
        "WHERE (status = 'active'::text)"
    )
    assert (index.schema, index.name, index.table) == ("public", "ix_active", "trips")
    assert index.create_sql(if_not_exists=True) == (
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_active ON public.trips USING btree (id) "
        "INCLUDE (key) WHERE (status = 'active'::text)"
    )
    assert index.create_sql(concurrently=False) == index.definition
    assert index.drop_sql() == "DROP INDEX CONCURRENTLY IF EXISTS public.ix_active"
    quoted = IndexDefinition('CREATE UNIQUE INDEX "Ix ""1""" ON "My.Schema"."T" USING btree (id)')
    assert (quoted.schema, quoted.name, quoted.table) == ("My.Schema", 'Ix "1"', "T")
    assert quoted.qualified_name == '"My.Schema"."Ix ""1"""'
    assert quoted.create_sql() == (
        'CREATE UNIQUE INDEX CONCURRENTLY "Ix ""1""" ON "My.Schema"."T" USING btree (id)'
    )
    with pytest.raises(ValueError, match="not an index definition as pg_get_indexdef prints it"):
        IndexDefinition(
            "CREATE INDEX ix ON trips (id)"
        )  # no schema, no method: not pg_get_indexdef's


def test_qualified_names_split_back_into_their_parts() -> None:
    assert split_qualified("public.trip_requests") == ("public", "trip_requests")
    assert split_qualified('"My.Schema"."T ""x"""') == ("My.Schema", 'T "x"')
    assert qualified("My.Schema", 'T "x"') == '"My.Schema"."T ""x"""'
    for bad in ("trip_requests", "a.b.c", "public. t"):
        with pytest.raises(ValueError, match="not a schema-qualified name"):
            split_qualified(bad)


def test_setting_differences_name_what_is_missing_or_wrong() -> None:
    expected = TableSettings("public", "t", {"a": "1", "b": "2", "c": "3"})
    assert setting_differences(expected, {"a": "1", "b": "2", "c": "3", "fillfactor": "70"}) == ()
    assert setting_differences(expected, {"a": "1", "c": "4"}) == (
        SettingDifference("b", "2", None),
        SettingDifference("c", "3", "4"),
    )


def test_a_later_revision_drops_and_overrides() -> None:
    index = IndexDefinition("CREATE INDEX ix ON public.t USING btree (a)")
    first = Manifest(
        tables=("public.t", "public.u"),
        indexes=(index, IndexDefinition("CREATE INDEX iu ON public.u USING btree (a)")),
        table_settings=(TableSettings("public", "t", {"a": "1", "b": "2"}, "why"),),
        functions=("public.f(integer)",),
    )
    later = Manifest(
        revision="0009",
        tables=("public.v",),
        table_settings=(TableSettings("public", "t", {"b": "3"}, "why not"),),
        dropped=("public.u", "public.f(integer)"),
    )
    combined = Manifest().then(first).then(later)
    assert combined == Manifest(
        revision="0009",
        tables=("public.t", "public.v"),
        indexes=(index,),  # iu went with its table
        table_settings=(TableSettings("public", "t", {"a": "1", "b": "3"}, "why not"),),
    )
