"""``dbtools rehearse``: passes on the real migrations, fails on a downgrade that forgets an
index (naming it), refuses databases that hold data, never runs on DATABASE_URL by accident."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dbtools import rehearse
from dbtools.errors import UsageError
from dbtools.safety.rehearse import object_identity, schema_differences
from dbtools.schema.dump import dump_schema
from dbtools.schema.manifest import head_revision
from tests.conftest import Database, PgServer
from tests.helpers import REPO, assert_usage_error, run_cli

BROKEN_INI = REPO / "tests" / "fixtures" / "broken_migrations" / "alembic.ini"


def test_real_migrations_pass_revision_by_revision(database: Database) -> None:
    result = rehearse(dsn=database.dsn)
    assert result.passed
    assert [(s.revision, s.down_revision) for s in result.steps] == [
        ("0001", "base"),
        ("0002", "0001"),
        ("0003", "0002"),
        ("0004", "0003"),
        ("0005", "0004"),
        ("0006", "0005"),
        ("0007", "0006"),
        ("0008", "0007"),
    ]
    assert all(s.upgraded and s.downgrade_restores and s.reupgrade_matches for s in result.steps)
    assert result.server_version_num // 10000 == database.server.major
    # The scratch database is left at head.
    assert database.execute("SELECT version_num FROM alembic_version") == [(head_revision(),)]


def test_forgotten_index_fails_the_rehearsal_naming_it(database: Database) -> None:
    result = run_cli("rehearse", "--dsn", database.dsn, "--alembic-ini", str(BROKEN_INI), "-v")
    assert result.exit_code == 1, result.output
    # -v after the command: the progress, revision i of n (b003 is never reached)
    progress = [line.split(": upgrade")[0] for line in result.stderr.splitlines()
                if "dbtools.safety.rehearse: rehearsing revision" in line]  # fmt: skip
    assert progress == [
        "INFO dbtools.safety.rehearse: rehearsing revision 1 of 3, b001",
        "INFO dbtools.safety.rehearse: rehearsing revision 2 of 3, b002",
    ]
    rows = {
        line.split("|")[1].strip(): line for line in result.stdout.splitlines() if "| b00" in line
    }
    assert "PASS" in rows["b001"]
    assert "FAIL" in rows["b002"] and "index public.ix_widgets_name left behind" in rows["b002"]
    assert "not run" in rows["b003"]
    assert (
        result.stdout.strip()
        .splitlines()[-1]
        .startswith("FAIL: revision b002 (database " + database.name)
    )
    assert result.stdout.strip().endswith("index public.ix_widgets_name left behind")


def test_json_report(database: Database) -> None:
    result = run_cli(
        "rehearse", "--dsn", database.dsn, "--alembic-ini", str(BROKEN_INI), "--format", "json"
    )
    assert result.exit_code == 1
    payload = json.loads(result.stdout)
    assert payload["schema_version"] == 1 and payload["passed"] is False
    assert payload["not_run"] == ["b003"]
    assert payload["steps"][1]["differences"] == ["index public.ix_widgets_name left behind"]


def test_refuses_a_database_that_holds_data(migrated_database: Database) -> None:
    migrated_database.execute("INSERT INTO public.travelers (email) VALUES ('a@example.com')")
    before = dump_schema(migrated_database.dsn)
    result = run_cli("rehearse", "--dsn", migrated_database.dsn)
    assert assert_usage_error(result, "") == (
        f"Error: refusing to rehearse in {migrated_database.name}: it holds data "
        "(public.travelers); a rehearsal drops what the migrations created. Use a scratch "
        "database (or --allow-data)"
    )
    assert dump_schema(migrated_database.dsn) == before
    assert migrated_database.execute("SELECT count(*) FROM public.travelers") == [(1,)]


def test_forced_rehearsal_in_a_database_with_data(database: Database) -> None:
    database.execute("CREATE TABLE public.keep (id int); INSERT INTO public.keep VALUES (1)")
    with pytest.raises(UsageError):
        rehearse(dsn=database.dsn)
    assert rehearse(dsn=database.dsn, force=True).passed
    assert database.execute("SELECT count(*) FROM public.keep") == [(1,)]


def test_refuses_the_database_url_database(database: Database) -> None:
    result = run_cli("rehearse", "--dsn", database.dsn, env={"DATABASE_URL": database.dsn})
    assert_usage_error(result, "it is the database DATABASE_URL names")


def test_without_dsn_it_uses_a_sandbox_never_database_url(
    migrated_database: Database, pg_server: PgServer
) -> None:
    """DATABASE_URL points at a database with data; the rehearsal must not touch it."""
    migrated_database.execute("INSERT INTO public.travelers (email) VALUES ('b@example.com')")
    before = dump_schema(migrated_database.dsn)
    pg_bin = ["--pg-bin", str(pg_server.bin_dir)] if pg_server.bin_dir else []
    result = run_cli("rehearse", *pg_bin, env={"DATABASE_URL": migrated_database.dsn})
    assert result.exit_code == 0, result.output
    last = result.stdout.strip().splitlines()[-1]
    assert (
        last
        == f"PASS: every downgrade undid its upgrade exactly (8 revisions, a sandbox (PostgreSQL {pg_server.major}))"
    )
    assert dump_schema(migrated_database.dsn) == before
    assert migrated_database.execute("SELECT count(*) FROM public.travelers") == [(1,)]


def test_allow_data_without_dsn_is_a_usage_error() -> None:
    result = run_cli("rehearse", "--allow-data")
    assert_usage_error(result, "Error: --allow-data only applies")


def test_schema_differences_name_objects() -> None:
    before = (
        "CREATE TABLE public.t (\n    id bigint NOT NULL\n);\n\n"
        "ALTER TABLE ONLY public.t\n    ADD CONSTRAINT t_pkey PRIMARY KEY (id);\n"
    )
    after = (
        "CREATE TABLE public.t (\n    id bigint NOT NULL\n)\nWITH (fillfactor='90');\n\n"
        "CREATE INDEX ix_t ON public.t USING btree (id);\n"
    )
    assert [str(d) for d in schema_differences(before, after)] == [
        "table public.t changed ((none) → WITH (fillfactor='90'))",  # both sides
        "index public.ix_t left behind",
        "constraint t_pkey on public.t missing",
    ]
    assert object_identity("COMMENT ON TABLE public.t IS 'x'") == "comment on table public.t"
    assert (
        object_identity("CREATE FUNCTION s.f(days integer) RETURNS bigint LANGUAGE sql AS $$ $$")
        == "function s.f"
    )


def test_unknown_alembic_ini_is_a_usage_error(tmp_path: Path) -> None:
    result = run_cli("rehearse", "--alembic-ini", str(tmp_path / "nope.ini"))
    line = assert_usage_error(result, "")
    assert line == f"Error: alembic.ini not found: {tmp_path / 'nope.ini'}"


def test_fixture_copy_elsewhere_still_runs(tmp_path: Path) -> None:
    """The fixture's env.py finds the project's env.py wherever the fixture is copied."""
    copy = tmp_path / "migrations_copy"
    shutil.copytree(BROKEN_INI.parent, copy)
    from dbtools.schema.revisions import offline_sql

    assert "CREATE INDEX ix_widgets_name" in offline_sql("b001:b002", ini=copy / "alembic.ini")
