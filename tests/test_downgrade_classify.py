"""The statement classifier: lock levels (checked against pg_locks on a real server), what they
block, transactions, data loss, reruns; the SQL splitter and Alembic's offline-SQL markers."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from dbtools.safety.classify import RUN_TIME, SchemaContext, classify
from dbtools.safety.locks import Blocking, LockLevel
from dbtools.safety.plan import _rerun_verdicts
from dbtools.schema.manifest import manifest_at
from dbtools.schema.revisions import offline_sql
from dbtools.sqltext.split import read_offline_sql, split_statements, string_literals
from tests.conftest import Database

AE, SUE = LockLevel.ACCESS_EXCLUSIVE, LockLevel.SHARE_UPDATE_EXCLUSIVE

# statement, strongest lock, blocks, must run outside a transaction, destroys data, idempotent
CASES: list[tuple[str, LockLevel | None, Blocking, bool, bool, bool]] = [
    ("DROP INDEX CONCURRENTLY IF EXISTS public.ix", SUE, Blocking.NEITHER, True, False, True),
    ("DROP INDEX public.ix", AE, Blocking.READS_AND_WRITES, False, False, False),
    ("DROP TABLE perf_monitoring.snapshots", AE, Blocking.READS_AND_WRITES, False, True, False),
    ("DROP TABLE IF EXISTS public.t", AE, Blocking.READS_AND_WRITES, False, True, True),
    ("ALTER TABLE public.t RESET (autovacuum_vacuum_scale_factor)", SUE, Blocking.NEITHER,
     False, False, True),
    ("ALTER TABLE public.t SET (autovacuum_vacuum_scale_factor = 0.05)", SUE, Blocking.NEITHER,
     False, False, True),
    ("ALTER TABLE public.t SET (user_catalog_table = true)", AE, Blocking.READS_AND_WRITES,
     False, False, True),
    ("CREATE INDEX ix ON public.t (a)", LockLevel.SHARE, Blocking.WRITES, False, False, False),
    ("CREATE INDEX CONCURRENTLY IF NOT EXISTS ix ON public.t (a)", SUE, Blocking.NEITHER,
     True, False, False),  # an interrupted build leaves an INVALID index IF NOT EXISTS keeps
    ("ALTER TABLE public.t ADD CONSTRAINT c CHECK (a > 0)", AE, Blocking.READS_AND_WRITES,
     False, False, False),
    ("ALTER TABLE public.t ADD CONSTRAINT f FOREIGN KEY (a) REFERENCES public.u (id) NOT VALID",
     LockLevel.SHARE_ROW_EXCLUSIVE, Blocking.WRITES, False, False, False),
    ("ALTER TABLE public.t VALIDATE CONSTRAINT c", SUE, Blocking.NEITHER, False, False, True),
    ("ALTER TABLE public.t ALTER COLUMN a TYPE bigint", AE, Blocking.READS_AND_WRITES,
     False, False, True),
    ("ALTER TABLE public.t DROP COLUMN a", AE, Blocking.READS_AND_WRITES, False, True, False),
    ("DELETE FROM perf_monitoring.setting_changes WHERE revision = '0003'",
     LockLevel.ROW_EXCLUSIVE, Blocking.NEITHER, False, True, True),
    ("TRUNCATE public.t", AE, Blocking.READS_AND_WRITES, False, True, True),
    ("VACUUM FULL public.t", AE, Blocking.READS_AND_WRITES, True, False, True),
    ("VACUUM (ANALYZE) public.t", SUE, Blocking.NEITHER, True, False, True),
    ("REINDEX INDEX CONCURRENTLY public.ix", SUE, Blocking.NEITHER, True, False, False),
    ("LOCK TABLE public.t IN SHARE MODE", LockLevel.SHARE, Blocking.WRITES, False, False, True),
    ("REFRESH MATERIALIZED VIEW CONCURRENTLY public.mv", LockLevel.EXCLUSIVE, Blocking.WRITES,
     False, False, True),
    ("COMMENT ON TABLE public.t IS 'x'", SUE, Blocking.NEITHER, False, False, True),
    ("DROP SCHEMA perf_monitoring", None, Blocking.NEITHER, False, False, False),
    ("SET lock_timeout = '5s'", None, Blocking.NEITHER, False, False, True),
]  # fmt: skip


@pytest.mark.parametrize(
    ("sql", "lock", "blocks", "autocommit", "destroys", "idempotent"),
    CASES,
    ids=[case[0][:48] for case in CASES],
)
def test_classification(
    sql: str,
    lock: LockLevel | None,
    blocks: Blocking,
    autocommit: bool,
    destroys: bool,
    idempotent: bool,
) -> None:
    found = classify(sql)
    assert found.warning is None
    assert (found.lock, found.blocks, found.needs_autocommit) == (lock, blocks, autocommit)
    assert (found.destroys_data, found.idempotent) == (destroys, idempotent)


def test_do_block_is_classified_by_the_ddl_it_executes() -> None:
    """The DO blocks of 0003's downgrade restore storage parameters with EXECUTE'd ALTER TABLEs."""
    script = read_offline_sql(offline_sql("0003:0002", downgrade=True))
    blocks = [s.sql for s in script.statements if s.sql.startswith("DO")]
    settings = manifest_at("0003").table_settings
    assert len(blocks) == len(settings)
    for sql, spec in zip(blocks, reversed(settings), strict=True):
        found = classify(sql)
        assert found.warning is None and found.parser == "do-block"
        assert found.lock is SUE and found.blocks is Blocking.NEITHER
        assert {(lock.relation, lock.level) for lock in found.locks} == {
            ("perf_monitoring.setting_changes", LockLevel.ACCESS_SHARE),
            (spec.qualified_table, SUE),
        }


def test_dynamic_relation_is_named_at_run_time() -> None:
    found = classify(
        "DO $$ DECLARE r record; BEGIN FOR r IN SELECT relation FROM log LOOP "
        "EXECUTE 'ALTER TABLE ' || r.relation || ' SET (fillfactor = 90)'; END LOOP; END $$"
    )
    assert (RUN_TIME, SUE) in {(lock.relation, lock.level) for lock in found.locks}


@pytest.mark.parametrize(
    "sql",
    ["FROBNICATE public.t", "DO $$ BEGIN some_unknown_call public.t; END $$"],
)
def test_unknown_statements_come_back_with_a_warning(sql: str) -> None:
    found = classify(sql)
    assert found.warning is not None and "cannot classify" in found.warning
    assert found.lock is None


def test_drop_index_and_drop_table_learn_from_earlier_statements() -> None:
    context = SchemaContext()
    for statement in (
        "CREATE TABLE public.a (id int PRIMARY KEY)",
        "CREATE TABLE public.b (id int, a_id int REFERENCES public.a (id))",
        "CREATE INDEX ix_b ON public.b (a_id)",
    ):
        context.learn(classify(statement, context))
    index = classify("DROP INDEX CONCURRENTLY public.ix_b", context)
    assert [(lock.relation, lock.level) for lock in index.locks] == [("public.b", SUE)]
    table = classify("DROP TABLE public.b", context)
    assert {(lock.relation, lock.level) for lock in table.locks} == {
        ("public.b", AE),
        ("public.a", AE),
    }


# Each statement runs in a transaction that is rolled back; pg_locks says what it took.
SCHEMA = """
CREATE TABLE public.a (id int PRIMARY KEY);
CREATE TABLE public.b (id int PRIMARY KEY, a_id int REFERENCES public.a (id), n int);
CREATE INDEX ix_b ON public.b (a_id);
ALTER TABLE public.b ADD CONSTRAINT b_n CHECK (n > 0) NOT VALID;
"""
LOCK_PROBES = [
    "DROP TABLE public.b",
    "DROP INDEX public.ix_b",
    "COMMENT ON TABLE public.b IS 'x'",
    "COMMENT ON COLUMN public.b.n IS 'x'",
    "ALTER TABLE public.b RESET (autovacuum_vacuum_scale_factor)",
    "ALTER TABLE public.b SET (autovacuum_vacuum_scale_factor = 0.05)",
    "CREATE INDEX ix_probe ON public.b (n)",
    "CREATE TABLE public.c (id int, a_id int REFERENCES public.a (id))",
    "ALTER TABLE public.b ADD CONSTRAINT b_pos CHECK (id > 0)",
    "ALTER TABLE public.b ADD CONSTRAINT b_a FOREIGN KEY (n) REFERENCES public.a (id) NOT VALID",
    "ALTER TABLE public.b VALIDATE CONSTRAINT b_n",
    "ALTER TABLE public.b ALTER COLUMN n TYPE bigint",
    "DELETE FROM public.b WHERE id = 1",
    "TRUNCATE public.b",
    "LOCK TABLE public.b IN SHARE ROW EXCLUSIVE MODE",
]
_MODES = {level.value.title().replace(" ", "") + "Lock": level for level in LockLevel}


def _locks_taken(conn: psycopg.Connection[Any], statement: str) -> dict[str, LockLevel]:
    names = dict(
        conn.execute(
            "SELECT c.oid, n.nspname || '.' || c.relname FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' "
            "AND c.relkind IN ('r', 'p')"
        ).fetchall()
    )
    conn.execute(statement)
    rows = conn.execute(
        "SELECT relation, mode FROM pg_locks WHERE pid = pg_backend_pid() AND relation IS NOT NULL"
    ).fetchall()
    taken: dict[str, LockLevel] = {}
    for oid, mode in rows:
        if oid in names:
            level = _MODES[mode]
            if names[oid] not in taken or level.rank > taken[names[oid]].rank:
                taken[names[oid]] = level
    return taken


def test_lock_levels_match_what_postgresql_takes(database: Database) -> None:
    database.execute(SCHEMA)
    context = SchemaContext()
    for statement in SCHEMA.strip().split(";\n"):
        context.learn(classify(statement, context))
    mismatches = []
    with database.connect(autocommit=False) as conn:
        for probe in LOCK_PROBES:
            taken = _locks_taken(conn, probe)
            conn.rollback()
            claimed = {
                lock.relation: lock.level
                for lock in classify(probe, context).locks
                if lock.relation in ("public.a", "public.b")
            }
            if claimed != taken:
                mismatches.append((probe, claimed, taken))
    assert mismatches == []


# -- SQL text --------------------------------------------------------------------------------------


def test_splitter_respects_quotes_dollar_bodies_and_comments() -> None:
    text = (
        "SELECT 'a;b', E'it\\'s;';\n"
        "/* one; /* nested; */ */ DO $body$ BEGIN PERFORM 1; END $body$;\n"
        "-- only a comment;\n"
        'SELECT "odd;name" FROM t WHERE x = $1;'
    )
    statements = split_statements(text)
    assert [s.sql.split()[0] for s in statements] == ["SELECT", "DO", "SELECT"]
    assert [s.first_line for s in statements] == [1, 2, 4]
    assert string_literals("EXECUTE 'ALTER TABLE ' || t || ' SET (a = ''x'')'") == [
        "ALTER TABLE ",
        " SET (a = 'x')",
    ]


def test_offline_sql_markers_tell_transactions_from_autocommit() -> None:
    script = read_offline_sql(
        "SET lock_timeout = '5s';\nBEGIN;\nDELETE FROM t WHERE a = 1;\nCOMMIT;\n"
        "DROP INDEX CONCURRENTLY IF EXISTS public.ix;\nBEGIN;\nCOMMIT;\n"
        "DROP INDEX CONCURRENTLY IF EXISTS public.iy;\nBEGIN;\nUPDATE alembic_version SET x = '1';\n"
        "COMMIT;\n"
    )
    assert script.settings == {"lock_timeout": "5s"}
    assert [(s.sql.split()[0], s.in_transaction, s.block) for s in script.statements] == [
        ("DELETE", True, 1),
        ("DROP", False, 2),
        ("DROP", False, 3),
        ("UPDATE", True, 4),
    ]


# -- reruns ----------------------------------------------------------------------------------------

_RESTORE = """DO $$
DECLARE r record;
BEGIN
    FOR r IN SELECT option_name, old_value FROM perf_monitoring.setting_changes WHERE revision = 'x'
    LOOP
        EXECUTE 'ALTER TABLE public.t SET (' || quote_ident(r.option_name) || ' = '
            || quote_literal(r.old_value) || ')';
    END LOOP;
END $$;
"""
_TAIL = """DELETE FROM perf_monitoring.setting_changes WHERE revision = 'x';
COMMIT;
DROP INDEX CONCURRENTLY IF EXISTS public.ix;
BEGIN;
UPDATE alembic_version SET version_num = 'w';
COMMIT;
"""


def _verdicts(sql: str) -> list[tuple[str, bool]]:
    statements = read_offline_sql(sql).statements
    classified = [(s, classify(s.sql)) for s in statements]
    return [
        (s.sql.split()[0], ok)
        for (s, _), (ok, _) in zip(classified, _rerun_verdicts(classified), strict=True)
    ]


def test_rerun_is_unsafe_when_a_committed_change_outlives_the_log_it_is_undone_from() -> None:
    # RESET everything, re-SET recorded values, delete the record, commit, then a step that can
    # fail: a rerun RESETs again and finds no record to restore from.
    unsafe = _verdicts(
        "BEGIN;\nALTER TABLE public.t RESET (autovacuum_vacuum_scale_factor);\n" + _RESTORE + _TAIL
    )
    assert unsafe == [
        ("ALTER", False),
        ("DO", True),
        ("DELETE", True),
        ("DROP", True),
        ("UPDATE", True),
    ]
    # Restoring only from the record (the migrations' way): a rerun finds nothing left to do.
    assert all(ok for _, ok in _verdicts("BEGIN;\n" + _RESTORE + _TAIL))


def test_statements_of_the_last_transaction_roll_back_together() -> None:
    verdicts = _verdicts(
        "BEGIN;\nDROP TABLE public.t;\nINSERT INTO public.log VALUES (1);\nCOMMIT;\n"
    )
    assert verdicts == [("DROP", True), ("INSERT", True)]
    early = _verdicts(
        "BEGIN;\nINSERT INTO public.log VALUES (1);\nCOMMIT;\nVACUUM public.t;\nBEGIN;\nCOMMIT;\n"
        "BEGIN;\nUPDATE alembic_version SET version_num = 'w';\nCOMMIT;\n"
    )
    assert early == [("INSERT", False), ("VACUUM", True), ("UPDATE", True)]
