"""lint, downgrade-plan and rehearse on other projects' migrations, as their authors ship them.

The fixtures are synthetic projects (dbtools' own test code) with the patterns real projects
have: ``tests/fixtures/shop`` (its own relative script_location and version_locations, a
pyproject.toml with [tool.alembic] and dbtools declarations, a stock env.py that reads only
sqlalchemy.url and configures logging, a non-PostgreSQL placeholder URL, branches and a merge,
revisions that cannot render offline, an irreversible downgrade, a re-added column, a downgrade
that forgets a column and rewrites data) and ``tests/fixtures/elsewhere`` (an env.py that
ignores both the URL and the connection and migrates another database).

Each false failure found on public projects (issue 26; docs/any-project.md) has its fixture:
``casting`` (Airflow: psycopg2 sends a string uncast, psycopg 3 casts it and jsonb refuses it),
``warehouse`` (mlflow: an env.py that connects from the engine it is handed, a history that
alters a table ``create_all`` made, ``existing_type``, a table renamed), ``worker`` (Prefect: an
env.py that reads its own URL variable, picks its versions folder while it runs and calls back
into an AnyIO worker thread), ``guarded`` (dagster and Airflow: an env.py that refuses
offline mode, an upgrade guarded by "if the table exists", logging and a banner on stdout) and
``warehouse/production.sql`` (dagster's base: a pg_dump of production naming its roles, with a
pg_dump 18's ``SET transaction_timeout``).
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from dbtools.errors import DbtoolsError
from dbtools.safety.lint import lint_revisions, location
from dbtools.safety.plan import build_plan
from dbtools.safety.rehearse import schema_comparison
from dbtools.safety.render import plan_markdown
from dbtools.safety.squawk import run_squawk
from dbtools.schema.revisions import (
    Migrations,
    UnrenderableRevision,
    find_project,
    heads_of,
    sqlalchemy_url,
    upgrade,
)
from tests.conftest import Database, PgServer
from tests.helpers import REPO, assert_usage_error, run_cli, run_dbtools

FIXTURES = REPO / "tests" / "fixtures"
SHOP = FIXTURES / "shop"
SHOP_INI = SHOP / "alembic.ini"
ELSEWHERE_INI = FIXTURES / "elsewhere" / "alembic.ini"
# Alembic's upgrade order: the two branches (s003 on a, s004 on b) either way round.
ORDER = ["s001", "s002", "s003", "s004", "s005", "s006", "s007", "s008", "s009"]


def in_branch_order(revisions: list[str]) -> list[str]:
    """*revisions* with the two branch revisions put in one order, for comparing."""
    branches = sorted(r for r in revisions if r in ("s003", "s004"))
    it = iter(branches)
    return [next(it) if r in ("s003", "s004") else r for r in revisions]


@pytest.fixture
def no_declarations(tmp_path: Path) -> Path:
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    return empty


# -- finding and rendering --------------------------------------------------------------------


def test_migrations_are_found_as_shipped_from_any_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # Alembic alone would look for ./schema here
    location = str(SHOP / "schema")
    for given in (SHOP_INI, SHOP / "pyproject.toml", SHOP):
        project = find_project(given)
        assert project.options["script_location"] == location, given
        assert project.options["version_locations"].split("\n") == [
            f"{location}/versions",
            f"{location}/branch_b",
        ]
    assert find_project(SHOP).config_file == SHOP_INI  # a directory: its alembic.ini first
    assert find_project(SHOP / "pyproject.toml").toml_file == SHOP / "pyproject.toml"
    packaged = tmp_path / "alembic.ini"  # gnocchi's form: package:directory
    packaged.write_text(
        "[alembic]\nscript_location = tests.fixtures.shop:schema\npath_separator = space\n"
        "version_locations = tests.fixtures.shop:schema/versions "
        "tests.fixtures.shop:schema/branch_b\n"
    )
    assert Path(Migrations(packaged).script.dir) == SHOP / "schema"
    spec = Migrations("tests.fixtures.elsewhere:migrations")  # --alembic-ini PACKAGE:DIR
    assert spec.project.options == {"script_location": "tests.fixtures.elsewhere:migrations"}
    assert spec.heads() == ("e002",)
    for given in (SHOP_INI, SHOP / "pyproject.toml", packaged):
        migrations = Migrations(given)
        assert in_branch_order([r.revision for r in migrations.upgrade_order()]) == ORDER
        assert migrations.heads() == ("s009",)


def test_a_main_section_and_a_location_relative_to_a_parent(tmp_path: Path) -> None:
    """fief's [main] section; mlflow's script_location relative to site-packages."""
    package = tmp_path / "site" / "app" / "db"
    package.mkdir(parents=True)
    shutil.copytree(SHOP / "schema", package / "migrations")
    ini = package / "alembic.ini"
    ini.write_text(
        "[main]\nscript_location = app/db/migrations\n"
        "version_locations = app/db/migrations/versions app/db/migrations/branch_b\n"
        "path_separator = space\n"
    )
    project = find_project(ini)
    assert project.section == "main"
    assert project.options["script_location"] == str(package / "migrations")
    assert Migrations(ini).heads() == ("s009",)


def test_a_missing_script_location_is_one_line(tmp_path: Path) -> None:
    ini = tmp_path / "alembic.ini"
    ini.write_text("[alembic]\nscript_location = nowhere\n")
    result = run_cli("lint", "--alembic-ini", str(ini))
    assert_usage_error(result, "Error: script_location 'nowhere' not found next to")


def test_a_package_the_migrations_need_is_named_with_the_interpreter(tmp_path: Path) -> None:
    copy = tmp_path / "shop"
    shutil.copytree(SHOP, copy)
    env = copy / "schema" / "env.py"
    env.write_text("import shop_models_not_installed  # noqa: F401\n" + env.read_text())
    expected = (
        f"Error: the migrations import 'shop_models_not_installed', which {sys.executable} "
        "cannot import: install the project into that interpreter"
    )
    for command in (["lint"], ["downgrade-plan", "--to", "base", "--offline", "-o", "-"]):
        result = run_cli(*command, "--alembic-ini", str(copy / "alembic.ini"))
        assert_usage_error(result, expected)
    result = run_cli("lint", "--alembic-ini", "shop_not_installed.db:migrations")
    assert_usage_error(result, "Error: the migrations import 'shop_not_installed'")


def test_offline_sql_is_postgresql_whatever_the_ini_and_env_py_say() -> None:
    """The ini's URL is driver://… and env.py leaves the driver's paramstyle, which doubles %."""
    migrations = Migrations(SHOP_INI)
    rendered = migrations.render(migrations.get("s007"), "upgrade")
    assert "UPDATE customers SET email = lower(email) WHERE email LIKE '%@%';" in rendered.sql
    assert "%%" not in rendered.sql
    assert rendered.environment.qualified_version_table == "public.alembic_version"
    assert not rendered.environment.is_dbtools
    elsewhere = Migrations(ELSEWHERE_INI)  # its env.py asks for SQLite offline
    sql = elsewhere.render(elsewhere.get("e001"), "upgrade").sql
    assert "CREATE TABLE alembic_version (\n    version_num VARCHAR(32) NOT NULL" in sql
    assert sql.startswith("BEGIN;")  # SQLite's offline SQL has no transactional DDL: no BEGIN


def test_a_merge_renders_from_both_heads() -> None:
    migrations = Migrations(SHOP_INI)
    merge = migrations.get("s005")
    up = migrations.render(merge, "upgrade").sql
    assert "DELETE FROM alembic_version WHERE alembic_version.version_num = 's003';" in up
    assert "UPDATE alembic_version SET version_num='s005' WHERE" in up
    down = migrations.render(merge, "downgrade").sql
    # One branch's head is inserted, the merge's row becomes the other's (either way round).
    inserted = re.search(r"INSERT INTO alembic_version \(version_num\) VALUES \('(s00\d)'\)", down)
    updated = re.search(r"UPDATE alembic_version SET version_num='(s00\d)' WHERE .* = 's005'", down)
    assert inserted and updated
    assert {inserted.group(1), updated.group(1)} == {"s003", "s004"}
    assert heads_of({"s001", "s002", "s003", "s004"}, migrations) == ("s003", "s004")


def test_an_unrenderable_revision_says_why_and_where() -> None:
    migrations = Migrations(SHOP_INI)
    with pytest.raises(UnrenderableRevision) as raised:
        migrations.render(migrations.get("s007"), "downgrade")
    assert raised.value.reason == (
        "NotImplementedError: the original case of each email is gone "
        "(line 15 of s007_lower_emails.py)"
    )


def test_sqlalchemy_url_keeps_socket_directories_and_passwords() -> None:
    assert sqlalchemy_url("host=/tmp/s port=5433 dbname=app user=me password=p%w") == (
        "postgresql+psycopg://me:p%25w@/app?host=%2Ftmp%2Fs&port=5433"
    )
    assert sqlalchemy_url("postgresql://me@db.internal:5433/app?sslmode=require") == (
        "postgresql+psycopg://me@db.internal:5433/app?sslmode=require"
    )


# -- lint -----------------------------------------------------------------------------------------


def test_lint_a_project_as_shipped_with_its_declarations() -> None:
    result = run_cli("lint", "--alembic-ini", str(SHOP_INI), "--format", "json")
    assert result.exit_code == 1, result.output
    assert result.stderr == ""  # env.py's fileConfig printed nothing
    payload = json.loads(result.stdout)
    # s001 is before the declared baseline
    assert in_branch_order(payload["revisions"]) == ORDER[1:]
    assert payload["revisions_left_out"] == {
        "s001": "before s002: s001 is the baseline, created before the rules"
    }
    assert sorted(payload["rules_left_out"]) == [
        "prefer-bigint-over-int", "require-lock-timeout", "require-statement-timeout",
    ]  # fmt: skip
    found = Counter(
        (f["location"]["revision"], f["location"]["direction"], f["check"])
        for f in payload["findings"]
    )
    assert found == {
        ("s002", "upgrade", "renaming-table"): 1,
        ("s002", "downgrade", "renaming-table"): 1,
        ("s004", "upgrade", "ban-drop-column"): 1,
        ("s003", "upgrade", "ban-drop-not-null"): 1,
        ("s003", "downgrade", "adding-not-nullable-field"): 1,
        ("s006", "upgrade", "unrenderable-revision"): 1,
        ("s006", "downgrade", "unrenderable-revision"): 1,
        ("s007", "downgrade", "unrenderable-revision"): 1,
        ("s009", "upgrade", "adding-serial-primary-key-field"): 1,
        ("s009", "upgrade", "renaming-object"): 1,
        ("s009", "downgrade", "ban-drop-function"): 1,
        ("s009", "downgrade", "renaming-object"): 1,
        ("s009", "downgrade", "ban-drop-constraint"): 1,
        ("s009", "downgrade", "changing-column-type"): 1,  # text → varchar(100): a real rewrite
        ("s009", "downgrade", "prefer-text-field"): 1,
    }


def test_lint_leaves_out_what_squawk_gets_wrong(no_declarations: Path, tmp_path: Path) -> None:
    """Squawk itself flags these statements; dbtools knows they are not problems."""
    migrations = Migrations(SHOP_INI)
    files = []
    for revision, direction in (("s001", "upgrade"), ("s001", "downgrade"), ("s009", "upgrade")):
        path = tmp_path / f"{revision}.{direction}.sql"
        path.write_text(migrations.render(migrations.get(revision), direction).sql)
        files.append(path)
    raw = {(Path(f.file).name, f.rule) for f in run_squawk(files)}
    wrong = {
        ("s001.upgrade.sql", "prefer-text-field"),  # alembic_version's varchar (and customers')
        ("s001.downgrade.sql", "require-concurrent-index-deletion"),  # its table goes next
        ("s009.upgrade.sql", "constraint-missing-not-valid"),  # a primary key
        ("s009.upgrade.sql", "changing-column-type"),  # varchar(100) → text
    }
    assert wrong <= raw
    result = lint_revisions(ini=SHOP_INI, only=["s001", "s009"], config_file=no_declarations)
    kept = {
        (location(f).revision, location(f).direction, f.check, f.subject[:24])
        for f in result.findings
    }
    assert (
        "s001",
        "downgrade",
        "require-concurrent-index-deletion",
        "DROP INDEX ix_old_orders",
    ) not in kept
    assert not [f for f in result.findings if "alembic_version" in f.subject]
    assert not [
        f for f in result.findings
        if location(f).revision == "s009" and location(f).direction == "upgrade"
        and f.check in ("constraint-missing-not-valid", "changing-column-type")
    ]  # fmt: skip
    assert ("s001", "upgrade", "prefer-text-field", "CREATE TABLE customers (") in kept
    assert not [f for f in result.findings if f.check == "unclassified-statement"]


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[tool.dbtools.lint]\nskip_rules = [{ rule = "ban-drop-table", reason = "fine" }]\n',
         "skip_rules ban-drop-table: needs a reason of at least 3 words"),
        ("[tool.dbtools.lint]\nskip_everything = true\n", "unknown key(s) skip_everything"),
        ('[tool.dbtools.lint]\nskip_revisions = [{ revision = "s404", reason = "a b c" }]\n',
         "skip_revisions: unknown revision 's404'"),
        ('[tool.dbtools.rehearse]\nirreversible = ["s007"]\n',
         "irreversible: expected a list of { revision = …, reason = … }"),
    ],
)  # fmt: skip
def test_bad_declarations_are_one_line(tmp_path: Path, toml: str, message: str) -> None:
    config = tmp_path / "pyproject.toml"
    config.write_text(toml)
    command = "rehearse" if "rehearse" in toml else "lint"
    result = run_cli(command, "--alembic-ini", str(SHOP_INI), "--config", str(config))
    assert_usage_error(result, message)


# -- downgrade-plan ----------------------------------------------------------------------------


def test_plan_across_a_merge_with_unplannable_revisions() -> None:
    plan = build_plan("base", ini=SHOP_INI)
    # Alembic's order: the merge, then one branch's revision, then the other's.
    undone = [r.revision for r in plan.revisions]
    migrations = Migrations(SHOP_INI)
    assert undone == [r.revision for r in migrations.downgrade_order(("s009",), "base")]
    assert in_branch_order(undone[::-1]) == ORDER
    first, second = undone[5], undone[6]
    commands = {r.revision: r.command for r in plan.revisions}
    assert commands["s005"] == f"alembic downgrade {first}"
    assert commands[first] == f"alembic downgrade {first}@-1"  # the other branch stays
    assert commands[second] == "alembic downgrade s002"
    unplanned = {s.revision: s.action for s in plan.steps if s.kind == "unplanned"}
    assert unplanned == {
        "s007": "cannot be planned offline: NotImplementedError: the original case of each "
        "email is gone (line 15 of s007_lower_emails.py)",
        "s006": "cannot be planned offline: AttributeError: 'NoneType' object has no attribute "
        "'scalar' (line 22 of s006_customer_tier.py)",
    }
    assert (
        "the downgrade of s008 does not remove column public.customers.nickname, which its "
        "upgrade creates"
    ) in plan.warnings
    update = next(s for s in plan.steps if s.revision == "s008" and s.action == "UPDATE")
    assert [loss.what for loss in update.data_loss] == [
        "the values of email in every row (overwritten)"
    ]
    export = next(s for s in plan.steps if s.revision == "s008" and s.kind == "export")
    assert (
        export.sql
        == "\\copy (SELECT * FROM public.customers) TO 'public.customers.s008.csv' CSV HEADER"
    )
    assert not plan.env_is_dbtools and plan.lock_timeout is None
    text = plan_markdown(plan)
    assert "the project's env.py is not dbtools', so nothing says a revision that times out" in text
    assert "is retried up to" not in text
    assert "retried up to 3 times" in plan_markdown(build_plan("-1"))  # dbtools' own env.py


def test_plan_renders_only_the_range_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    rendered: list[tuple[str, str]] = []
    original = Migrations.render

    def counting(self: Migrations, revision, direction, **kwargs):  # type: ignore[no-untyped-def]
        rendered.append((revision.revision, direction))
        return original(self, revision, direction, **kwargs)

    monkeypatch.setattr(Migrations, "render", counting)
    plan = build_plan("s008", "s009", ini=SHOP_INI)
    assert rendered == [("s009", "upgrade"), ("s009", "downgrade")]
    assert [r.revision for r in plan.revisions] == ["s009"]
    assert not [w for w in plan.warnings if "s006" in w or "s007" in w]


def test_plan_with_a_database_answers_the_revisions_reads(database: Database) -> None:
    upgrade(database.dsn, "heads", ini=SHOP_INI)
    database.execute("INSERT INTO customers (email) VALUES ('a@example.com')")
    plan = build_plan("s005", dsn=database.dsn, ini=SHOP_INI)
    assert plan.from_source == "current" and plan.from_revision == "s009"
    s006 = next(r for r in plan.revisions if r.revision == "s006")
    assert [s.action for s in s006.steps] == [  # its SELECT was answered, not planned
        "export public.customers (column tier)",
        "ALTER TABLE … DROP COLUMN",
        "record revision (alembic_version): UPDATE",
    ]
    unplanned = [s.action for s in plan.steps if s.kind == "unplanned"]
    assert unplanned == [
        "cannot be planned even with its reads answered by the database: NotImplementedError: "
        "the original case of each email is gone (line 15 of s007_lower_emails.py)"
    ]
    assert database.execute("SELECT version_num FROM alembic_version") == [("s009",)]


# -- rehearse -------------------------------------------------------------------------------------


def _rows(stdout: str) -> dict[str, list[str]]:
    rows = {}
    for line in stdout.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if cells and cells[0] in ORDER:
            rows[cells[0]] = cells
    return rows


def test_rehearse_keeps_going_over_a_history_with_branches(
    database: Database, pg_server: PgServer
) -> None:
    result = run_cli(
        "rehearse", "--dsn", database.dsn, "--alembic-ini", str(SHOP_INI), "--keep-going"
    )
    assert result.exit_code == 1, result.output
    rows = _rows(result.stdout)
    assert in_branch_order(list(rows)) == ORDER
    results = {revision: cells[5] for revision, cells in rows.items()}
    assert results == {
        **dict.fromkeys(["s001", "s002", "s004", "s003", "s006", "s009"], "PASS"),
        "s005": "no change",  # a merge: nothing in the schema changes
        "s007": "irreversible, by declaration",
        "s008": "FAIL",
    }
    assert rows["s008"][6] == "column public.customers.nickname left behind"
    assert rows["s007"][6] == "lower-casing emails cannot be undone"
    assert rows["s005"][1] == "s003, s004"
    assert rows["s004"][6] == (
        "note: table public.customers: the same columns in another order (a downgrade that "
        "re-adds a dropped column adds it at the end)"
    )
    not_null = "note: table public.orders: NOT NULL constraint names differ"
    assert rows["s003"][6].startswith(not_null) == (pg_server.major >= 18)
    assert result.stdout.strip().splitlines()[-1] == (
        "FAIL: 1 of 9 revisions failed, 7 passed, 1 irreversible by declaration, 1 with no change "
        f"(database {database.name} on {_host(database)}): s008"
    )
    assert database.execute("SELECT version_num FROM alembic_version") == [("s009",)]


def _host(database: Database) -> str:
    from dbtools.db.connection import describe

    return describe(database.dsn).host


def test_rehearse_stops_at_the_first_failure_and_needs_the_declaration(
    database: Database, no_declarations: Path
) -> None:
    result = run_cli(
        "rehearse", "--dsn", database.dsn, "--alembic-ini", str(SHOP_INI), "--format", "json"
    )
    assert result.exit_code == 1
    payload = json.loads(result.stdout)
    assert payload["failures"] == ["s008"] and payload["not_run"] == ["s009"]
    assert all(step["seconds"] > 0 for step in payload["steps"])
    database.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    result = run_cli(
        "rehearse", "--dsn", database.dsn, "--alembic-ini", str(SHOP_INI),
        "--config", str(no_declarations),
    )  # fmt: skip
    rows = _rows(result.stdout)
    assert rows["s007"][5] == "FAIL"
    assert rows["s007"][6] == (  # named by its source: the revision, and its line
        "downgrade: NotImplementedError: the original case of each email is gone "
        "(line 15 of s007_lower_emails.py)"
    )
    assert [r for r, cells in rows.items() if cells[5] == "not run"] == ["s008", "s009"]


def test_rehearse_from_to(database: Database) -> None:
    result = run_cli(
        "rehearse", "--dsn", database.dsn, "--alembic-ini", str(SHOP_INI),
        "--from", "s003", "--to", "s005",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert list(_rows(result.stdout)) == ["s003", "s005"]  # s004 applied, not rehearsed
    assert (
        result.stdout.strip()
        .splitlines()[-1]
        .startswith(
            "PASS: every downgrade undid its upgrade exactly (2 revisions, 1 with no change, "
            "database "
        )
    )
    assert database.execute("SELECT version_num FROM alembic_version") == [("s005",)]
    bad = run_cli("rehearse", "--alembic-ini", str(SHOP_INI), "--from", "s404")
    assert_usage_error(bad, "Error: --from: unknown revision 's404'")


def test_an_env_py_that_migrates_another_database_is_never_judged(
    database: Database, pg_server: PgServer
) -> None:
    other = pg_server.create_database()
    try:
        result = run_cli(
            "rehearse", "--dsn", database.dsn, "--alembic-ini", str(ELSEWHERE_INI),
            env={"ELSEWHERE_DSN": sqlalchemy_url(pg_server.dsn(other))},
        )  # fmt: skip
        line = assert_usage_error(result, "Error: after `upgrade e001` the version table ")
        assert f"public.alembic_version in database {database.name} on " in line
        assert (
            "does not exist (expected e001): the project's env.py migrated another database" in line
        )
        assert f"(it connected to postgresql+psycopg://postgres@/{other}?host=" in line
        assert line.endswith("); nothing was judged")
        with pg_server_connection(pg_server, other) as conn:
            assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [("e001",)]
        assert database.execute("SELECT to_regclass('public.things')") == [(None,)]
    finally:
        pg_server.drop_database(other)


def test_a_wrong_target_shows_the_real_error_too(database: Database, pg_server: PgServer) -> None:
    other = pg_server.create_database()
    try:
        with pg_server_connection(pg_server, other) as conn:
            conn.execute("CREATE TABLE things (id bigint)")  # e001 fails there
        result = run_cli(
            "rehearse", "--dsn", database.dsn, "--alembic-ini", str(ELSEWHERE_INI),
            env={"ELSEWHERE_DSN": sqlalchemy_url(pg_server.dsn(other))},
        )  # fmt: skip
        line = assert_usage_error(result, "the project's env.py migrated another database")
        assert line.endswith(
            '; nothing was judged; the step itself failed: DuplicateTable: relation "things" '
            "already exists (line 10 of e001_things.py)"
        ), line
    finally:
        pg_server.drop_database(other)


def pg_server_connection(pg_server: PgServer, name: str):  # type: ignore[no-untyped-def]
    import psycopg

    return psycopg.connect(pg_server.dsn(name), autocommit=True)


# -- the schema comparison ------------------------------------------------------------------------


def test_what_is_no_difference_is_said_in_a_note() -> None:
    before = (
        "CREATE TABLE public.t (\n    id integer CONSTRAINT old_t_id_not_null NOT NULL,\n"
        "    a text,\n    b text\n);\n\n"
        "ALTER TABLE ONLY public.t\n    ADD CONSTRAINT old_t_pkey PRIMARY KEY (id);\n"
    )
    after = (
        "CREATE TABLE public.t (\n    id integer NOT NULL,\n    b text,\n    a text\n);\n\n"
        "ALTER TABLE ONLY public.t\n    ADD CONSTRAINT t_pkey PRIMARY KEY (id);\n"
    )
    differences, notes = schema_comparison(before, after)
    assert differences == []
    assert notes == [
        "table public.t: the same columns in another order (a downgrade that re-adds a dropped "
        "column adds it at the end)",
        "constraint on public.t named old_t_pkey before and t_pkey after: a name PostgreSQL "
        "generates, same definition",
    ]
    named = after.replace("t_pkey PRIMARY KEY", "t_primary PRIMARY KEY")
    assert [str(d) for d in schema_comparison(before, named)[0]] == [
        "constraint t_primary on public.t left behind",
        "constraint old_t_pkey on public.t missing",
    ]
    retyped = after.replace("    a text\n", "    a jsonb NOT NULL\n")
    assert [str(d) for d in schema_comparison(before, retyped)[0]] == [
        "column public.t.a changed (a text → a jsonb NOT NULL)"  # both sides
    ]
    renamed_column = after.replace("    a text\n", "    c text\n")
    assert [str(d) for d in schema_comparison(before, renamed_column)[0]] == [
        "column public.t.c left behind",
        "column public.t.a missing",
    ]


# -- statements real projects run -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("statement", "action", "lock", "created", "dropped"),
    [
        ("CREATE FUNCTION public.g() RETURNS trigger AS $$ BEGIN RETURN NEW; END; $$ "
         "LANGUAGE plpgsql", "CREATE FUNCTION", None, ["function public.g"], []),
        ("CREATE OR REPLACE FUNCTION f() RETURNS int AS $$ SELECT 1 $$ LANGUAGE sql",
         "CREATE OR REPLACE FUNCTION", None, ["function public.f"], []),
        ("DROP EXTENSION IF EXISTS pg_trgm CASCADE", "DROP EXTENSION", None, [],
         ["extension pg_trgm"]),
        ("ALTER INDEX ix_a RENAME TO ix_b", "ALTER INDEX … RENAME", "SHARE UPDATE EXCLUSIVE", [],
         []),
        ("ALTER SEQUENCE s RESTART WITH 5", "ALTER SEQUENCE", "SHARE ROW EXCLUSIVE", [], []),
        ("DO $$ DECLARE n TEXT; BEGIN SELECT conname INTO n FROM pg_constraint; "
         "EXECUTE format('ALTER TABLE resource DROP CONSTRAINT %I', n); END $$",
         "DO block (ALTER TABLE … DROP CONSTRAINT)", "ACCESS EXCLUSIVE", [], []),
        ("ALTER TABLE t ADD COLUMN c text", "ALTER TABLE … ADD COLUMN", "ACCESS EXCLUSIVE",
         ["column public.t.c"], []),
    ],
)  # fmt: skip
def test_statements_real_projects_run_are_classified(
    statement: str, action: str, lock: str | None, created: list[str], dropped: list[str]
) -> None:
    from dbtools.safety.classify import classify

    found = classify(statement)
    assert found.warning is None
    assert found.action == action
    assert (found.lock.value if found.lock else None) == lock
    assert [str(o) for o in found.created] == created
    assert [str(o) for o in found.dropped] == dropped


# -- the project's driver and interpreter, env.py as teams write it (issue 26) --------------------

CASTING_INI = FIXTURES / "casting" / "alembic.ini"
WAREHOUSE_INI = FIXTURES / "warehouse" / "alembic.ini"
WORKER_INI = FIXTURES / "worker" / "alembic.ini"
GUARDED_INI = FIXTURES / "guarded" / "alembic.ini"


def _steps(stdout: str) -> dict[str, dict[str, Any]]:
    return {step["revision"]: step for step in json.loads(stdout)["steps"]}


def test_migrations_run_with_the_projects_own_driver(
    database: Database, pg_server: PgServer
) -> None:
    """Airflow's false failure: psycopg 3's dialect casts a string parameter (``::VARCHAR``)
    that psycopg2 sends uncast, and a jsonb column refuses it. The ini's URL names psycopg2."""
    assert Migrations(CASTING_INI).driver == "psycopg2"
    assert Migrations(WORKER_INI).driver == "asyncpg"  # its pyproject.toml's dependencies
    forced = run_cli("rehearse", "--dsn", database.dsn, "--alembic-ini", str(CASTING_INI),
                     "--driver", "psycopg", "--format", "json")  # fmt: skip
    assert forced.exit_code == 1, forced.output
    assert _steps(forced.stdout)["c001"]["error"] == (
        'upgrade: DatatypeMismatch: column "kwargs" is of type jsonb but expression is of type '
        "character varying (line 17 of c001_triggers.py)"
    )
    other = pg_server.create_database()
    try:
        dsn = pg_server.dsn(other)
        result = run_cli("rehearse", "--dsn", dsn, "--alembic-ini", str(CASTING_INI),
                         "--format", "json")  # fmt: skip
        assert result.exit_code == 0, result.output
        assert _steps(result.stdout)["c001"]["passed"]
        with pg_server_connection(pg_server, other) as conn:
            rows = conn.execute("SELECT kwargs FROM trigger").fetchall()
            assert rows == [({"delay": 5},)]  # the upgrade ran again after the downgrade
    finally:
        pg_server.drop_database(other)


def test_the_migrations_run_in_the_projects_own_interpreter(database: Database) -> None:
    """``--python``: a runner in that interpreter speaks JSON with dbtools; what it prints,
    and its env.py's logging, go to stderr."""
    result = run_dbtools(
        "rehearse", "--dsn", database.dsn, "--alembic-ini", str(GUARDED_INI),
        "--python", sys.executable, "--format", "json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    steps = _steps(result.stdout)  # stdout is dbtools' alone: it parses
    assert list(steps) == ["g001", "g002"]
    assert "guarded migrations: starting" in result.stderr
    assert "logging to stdout, as Airflow's settings do" in result.stderr
    bad = run_cli("lint", "--alembic-ini", str(GUARDED_INI), "--python", "/nonexistent/python")
    assert_usage_error(bad, "Error: --python: no such interpreter: /nonexistent/python")


def test_an_interpreter_without_alembic_is_one_line(tmp_path: Path) -> None:
    import venv

    venv.create(tmp_path / "bare", with_pip=False)  # neither Alembic nor SQLAlchemy there
    python = tmp_path / "bare" / "bin" / "python"
    result = run_cli("lint", "--alembic-ini", str(GUARDED_INI), "--python", str(python))
    assert_usage_error(
        result,
        f"Error: --python: {python} cannot run dbtools' env runner: No module named "
        "'sqlalchemy' (it needs Alembic and SQLAlchemy, as the project's migrations do)",
    )


def test_an_env_py_on_its_own_connection_from_a_create_all_base(database: Database) -> None:
    """mlflow's shape: env.py opens its own connection from the engine it is handed (which names
    the rehearsal's database), and the first revision alters a table create_all made."""
    bare = run_cli("rehearse", "--dsn", database.dsn, "--alembic-ini", str(WAREHOUSE_INI),
                   "--format", "json")  # fmt: skip
    assert bare.exit_code == 1, bare.output  # the real error, not "another database"
    assert _steps(bare.stdout)["w001"]["error"] == (
        'upgrade: UndefinedTable: relation "items" does not exist (line 11 of '
        "w001_longer_labels.py)"
    )
    for base in (
        "tests.fixtures.warehouse.models:metadata",
        str(WAREHOUSE_INI.parent / "base.sql"),
    ):
        result = run_cli(
            "rehearse", "--dsn", database.dsn, "--alembic-ini", str(WAREHOUSE_INI),
            "--base-schema", base, "--keep-going", "--format", "json", "--allow-data",
        )  # fmt: skip
        assert result.exit_code == 1, result.output
        payload = json.loads(result.stdout)
        assert payload["failures"] == ["w004"] and payload["stopped"] is None, payload
        steps = _steps(result.stdout)
        assert [r for r, s in steps.items() if s["no_change"]] == ["w002"]  # Float → FLOAT(53)
        assert steps["w004"]["differences"] == ["column public.items.size left behind"]
        assert payload["base"] in (f"create_all of {base}", base)
        # --keep-going recreated the database and loaded the base again before going on
        assert database.execute("SELECT count(*) FROM pg_class WHERE relname = 'items'") == [(1,)]
    unknown = run_cli("rehearse", "--alembic-ini", str(WAREHOUSE_INI), "--base-schema", "nothing")
    assert_usage_error(unknown, "Error: --base-schema: 'nothing' is neither a SQL file nor a")


PRODUCTION_DUMP = WAREHOUSE_INI.parent / "production.sql"


def test_a_dump_of_production_is_a_base_in_a_sandbox(pg_server: PgServer) -> None:
    """dagster's false failure: a pg_dump of production names its roles (owner, grantee), which a
    sandbox lacks, and a pg_dump 18 sets transaction_timeout, which PostgreSQL 15 lacks."""
    pg_bin = ["--pg-bin", str(pg_server.bin_dir)] if pg_server.bin_dir else []
    result = run_cli(
        "-v", "rehearse", "--alembic-ini", str(WAREHOUSE_INI), *pg_bin,
        "--base-schema", str(PRODUCTION_DUMP), "--keep-going", "--format", "json",
    )  # fmt: skip
    assert result.exit_code == 1, result.output  # w004's downgrade: the history's own failure
    payload = json.loads(result.stdout)
    assert payload["where"] == f"a sandbox (PostgreSQL {pg_server.major})"
    assert payload["failures"] == ["w004"] and payload["stopped"] is None, payload
    assert [r for r, s in _steps(result.stdout).items() if s["no_change"]] == ["w002"]
    created = re.findall(r"base schema: created role (.+) \(NOLOGIN\)", result.stderr)
    assert created == ["warehouse_owner", "warehouse reader"]  # once: keep-going reloads it
    left_out = re.findall(r"base schema: left out (SET \w+)", result.stderr)
    assert left_out == ([] if pg_server.major >= 17 else ["SET transaction_timeout"] * 2)


def test_a_dump_naming_roles_a_given_server_lacks_says_so(database: Database) -> None:
    """With --dsn the server is not dbtools' own: no role is created there."""
    result = run_cli("rehearse", "--dsn", database.dsn, "--alembic-ini", str(WAREHOUSE_INI),
                     "--base-schema", str(PRODUCTION_DUMP))  # fmt: skip
    assert_usage_error(
        result,
        f"Error: the base schema {PRODUCTION_DUMP} does not load: line 41: ERROR:  role "
        "\"warehouse_owner\" does not exist (the server has no role 'warehouse_owner': create "
        "it, or dump with --no-owner --no-privileges)",
    )
    assert database.execute(
        "SELECT count(*) FROM pg_roles WHERE rolname IN ('warehouse_owner', 'warehouse reader')"
    ) == [(0,)]


def test_a_base_leaves_out_only_settings_the_server_lacks(
    database: Database, tmp_path: Path
) -> None:
    """Session settings the server does not know are left out; the same line in a function body
    is not a setting; the text reaches the server as written (UTF-8, whatever the locale); an
    error after them names its line in the file."""
    from dbtools.safety.base import BaseSchema

    body = "CREATE FUNCTION public.f() RETURNS void LANGUAGE plpgsql AS $$\nBEGIN\n{}\nEND $$;\n"
    base = tmp_path / "base.sql"
    base.write_text(
        "SET statement_timeout = 0;\nSET dbtools_future_timeout = 0;\n"
        + body.format("SET dbtools_future_timeout = 0;")
        + "CREATE TABLE public.t (id integer);\nCOMMENT ON TABLE public.t IS 'Flüge – vols';\n",
        encoding="utf-8",
    )
    BaseSchema.parse(str(base)).load(database.dsn, Migrations(WAREHOUSE_INI))
    assert database.execute("SELECT obj_description('public.t'::regclass)") == [("Flüge – vols",)]
    assert database.execute("SELECT prosrc FROM pg_proc WHERE proname = 'f'") == [
        ("\nBEGIN\nSET dbtools_future_timeout = 0;\nEND ",)
    ]
    base.write_text(
        "SET dbtools_future_timeout = 0;\nSET statement_timeout = 0;\nSELECT nothing;\n"
    )
    with pytest.raises(DbtoolsError) as raised:
        BaseSchema.parse(str(base)).load(database.dsn, Migrations(WAREHOUSE_INI))
    assert str(raised.value) == (
        f'the base schema {base} does not load: line 3: ERROR:  column "nothing" does not exist'
    )


def test_a_failure_below_from_is_named_not_an_internal_error(database: Database) -> None:
    result = run_cli("rehearse", "--dsn", database.dsn, "--alembic-ini", str(WAREHOUSE_INI),
                     "--from", "w002", "--format", "json")  # fmt: skip
    assert result.exit_code == 1, result.output
    payload = json.loads(result.stdout)
    assert payload["steps"][0]["error"] == (
        "upgrade to w001, below the revisions rehearsed, failed: UndefinedTable: relation "
        '"items" does not exist (line 11 of w001_longer_labels.py)'
    )
    assert payload["not_run"] == ["w003", "w004"]


def test_an_async_env_py_with_its_own_url_variable_and_versions_folder(
    database: Database,
) -> None:
    """Prefect's shape: env.py reads its URL from WORKER_DATABASE_URL, picks its dialect's
    versions folder while it runs, and calls back into an AnyIO worker thread."""
    result = run_cli(
        "rehearse", "--dsn", database.dsn, "--alembic-ini", str(WORKER_INI),
        "--url-env", "WORKER_DATABASE_URL", "--format", "json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert list(_steps(result.stdout)) == ["k001", "k002"]  # the PostgreSQL tree, asked of env.py
    assert database.execute("SELECT version_num FROM alembic_version") == [("k002",)]
    linted = run_cli("lint", "--alembic-ini", str(WORKER_INI), "--url-env", "WORKER_DATABASE_URL",
                     "--format", "json")  # fmt: skip
    assert json.loads(linted.stdout)["revisions"] == ["k001", "k002"]
    named = run_cli("lint", "--alembic-ini", str(WORKER_INI), "--format", "json",
                    "--version-locations", str(WORKER_INI.parent / "migrations/versions/postgresql"))  # fmt: skip
    assert json.loads(named.stdout)["revisions"] == ["k001", "k002"]


def test_an_empty_history_is_never_a_pass(tmp_path: Path) -> None:
    (tmp_path / "migrations" / "versions").mkdir(parents=True)
    shutil.copy(CASTING_INI.parent / "migrations" / "env.py", tmp_path / "migrations" / "env.py")
    ini = tmp_path / "alembic.ini"
    ini.write_text("[alembic]\nscript_location = migrations\n")
    for command in (["lint"], ["rehearse"], ["downgrade-plan", "--to", "base", "--offline"]):
        result = run_cli(*command, "--alembic-ini", str(ini))
        assert_usage_error(
            result, f"Error: no revisions found in {tmp_path / 'migrations' / 'versions'} ({ini})"
        )


def test_an_env_py_that_refuses_offline_mode_is_planned_step_by_step(tmp_path: Path) -> None:
    """dagster's shape: env.py raises without the connection it is handed, offline too; its
    logging and banner on stdout never reach dbtools' stdout."""
    result = run_dbtools("downgrade-plan", "--alembic-ini", str(GUARDED_INI), "--to", "base",
                         "--offline", "--format", "json", "--output", "-")  # fmt: skip
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    refusal = (
        "env.py: Exception: No connection set in alembic config: run these migrations from the app"
    )
    assert [(s["revision"], s["kind"], s["action"]) for s in plan["revisions"][0]["steps"]] == [
        ("g002", "unplanned", f"cannot be planned offline: {refusal}")
    ]
    assert len(plan["revisions"]) == 2
    assert plan["warnings"][0].startswith(
        "the project's env.py does not run offline (the project's env.py: Exception: No connection set"
    )
    linted = run_dbtools("lint", "--alembic-ini", str(GUARDED_INI), "--format", "json")
    assert linted.returncode == 1, linted.stderr
    findings = json.loads(linted.stdout)["findings"]
    assert {(f["location"]["revision"], f["check"]) for f in findings} == {
        ("g001", "unrenderable-revision"), ("g002", "unrenderable-revision"),
    }  # fmt: skip


def test_a_guarded_upgrade_that_changes_nothing_is_no_change(database: Database) -> None:
    result = run_cli("rehearse", "--dsn", database.dsn, "--alembic-ini", str(GUARDED_INI))
    assert result.exit_code == 0, result.output
    rows = {
        line.split("|")[1].strip(): line for line in result.stdout.splitlines() if "| g00" in line
    }
    assert "| PASS " in rows["g001"]
    assert (
        "| no change " in rows["g002"]
        and "its upgrade changed nothing in the schema" in rows["g002"]
    )
    assert (
        result.stdout.strip()
        .splitlines()[-1]
        .startswith(
            "PASS: every downgrade undid its upgrade exactly (2 revisions, 1 with no change, database "
        )
    )


def test_lint_honours_existing_type_the_base_schema_and_table_renames() -> None:
    def changes(*options: str) -> list[tuple[str, str, str]]:
        result = run_cli("lint", "--alembic-ini", str(WAREHOUSE_INI), "--format", "json", *options)
        findings = json.loads(result.stdout)["findings"]
        return [(f["location"]["revision"], f["location"]["direction"], f["subject"])
                for f in findings if f["check"] == "changing-column-type"]  # fmt: skip

    # w001 varchar(250) → (5000) by existing_type, w003 integer → integer after a rename: no
    # rewrite. w001's downgrade shortens the varchar (existing_type says from 5000) and w004's
    # int → bigint (the history says int) are real ones.
    real = [
        ("w001", "downgrade", "ALTER TABLE items ALTER COLUMN label TYPE VARCHAR(250)"),
        ("w004", "upgrade", "ALTER TABLE items ALTER COLUMN size TYPE BIGINT"),
    ]
    # w002's Float → FLOAT(53): only the base says the column was a Float (double precision)
    unknown = ("w002", "upgrade", "ALTER TABLE items ALTER COLUMN weight TYPE FLOAT(53)")
    assert changes() == [real[0], unknown, real[1]]
    assert changes("--base-schema", "tests.fixtures.warehouse.models:metadata") == real
    assert changes("--base-schema", str(WAREHOUSE_INI.parent / "base.sql")) == real
    assert changes("--base-schema", str(PRODUCTION_DUMP)) == real


@pytest.mark.parametrize(
    ("rename", "column"),
    [
        ("ALTER TABLE t RENAME TO u", "public.u.a"),
        ("ALTER TABLE t RENAME a TO b", "public.t.b"),  # sqlglot reads this as a table rename
        ("ALTER TABLE t RENAME COLUMN a TO b", "public.t.b"),
        ('ALTER TABLE t RENAME COLUMN "a" TO "b"', "public.t.b"),
        ("ALTER TABLE t RENAME CONSTRAINT a TO b", "public.t.a"),
    ],
)
def test_renames_are_followed(rename: str, column: str) -> None:
    """Airflow's integer → integer after a rename is no rewrite; the same change on a column
    nothing is known of is one."""
    from dbtools.safety.classify import SchemaContext, classify

    context = SchemaContext()
    for statement in ("CREATE TABLE t (a integer)", rename):
        context.learn(classify(statement, context))
    assert context.column_types == {column: "INT"}
    table, name = column.rsplit(".", 1)[0].removeprefix("public."), column.rsplit(".", 1)[1]
    change = f"ALTER TABLE {table} ALTER COLUMN {name} TYPE integer"
    assert not classify(change, context).rewrites_table
    assert classify(change, SchemaContext()).rewrites_table
