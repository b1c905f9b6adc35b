"""``dbtools lint``: the real migrations pass (every ignore with a reason), the broken fixture's
plain CREATE INDEX and DROP TABLE are flagged, ignores need reasons, dbtools' own rules."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from dbtools import lint_revisions
from dbtools.safety.lint import check_sql, location
from tests.helpers import REPO, assert_usage_error, run_cli

BROKEN = REPO / "tests" / "fixtures" / "broken_migrations"


def test_real_migrations_pass_with_reasoned_ignores() -> None:
    result = lint_revisions()
    assert result.passed, result.violations
    assert result.revisions == ("0001", "0002", "0003", "0004", "0005", "0006", "0007", "0008")
    ignored = Counter(
        (location(f).revision, location(f).direction, f.check) for f in result.ignored
    )
    assert ignored == {
        ("0001", "downgrade", "ban-drop-table"): 5,
        ("0002", "downgrade", "ban-drop-table"): 8,
        ("0002", "downgrade", "ban-drop-schema"): 1,
        ("0002", "downgrade", "ban-drop-function"): 1,
        # 0004 empties statement_stats.query in a rewrite (the texts leave its files) ...
        ("0004", "upgrade", "changing-column-type"): 1,
        ("0004", "upgrade", "ban-drop-not-null"): 1,
        # ... and its downgrade fills it again and drops what 0004 added
        ("0004", "downgrade", "adding-not-nullable-field"): 1,
        ("0004", "downgrade", "ban-drop-column"): 6,
        ("0004", "downgrade", "ban-drop-table"): 1,
        # 0005 rebuilds the monitoring tables' keys target first in one transaction (tables
        # only dbtools writes), and its downgrade rebuilds the old keys and drops what it added
        ("0005", "upgrade", "adding-not-nullable-field"): 6,
        ("0005", "upgrade", "adding-serial-primary-key-field"): 6,
        ("0005", "upgrade", "ban-drop-constraint"): 11,
        ("0005", "upgrade", "ban-drop-not-null"): 1,
        ("0005", "upgrade", "disallowed-unique-constraint"): 1,
        ("0005", "upgrade", "require-concurrent-index-creation"): 5,
        ("0005", "upgrade", "require-concurrent-index-deletion"): 1,
        ("0005", "downgrade", "adding-foreign-key-constraint"): 4,
        ("0005", "downgrade", "adding-not-nullable-field"): 1,
        ("0005", "downgrade", "adding-serial-primary-key-field"): 6,
        ("0005", "downgrade", "ban-drop-column"): 22,
        ("0005", "downgrade", "ban-drop-constraint"): 7,
        ("0005", "downgrade", "ban-drop-function"): 1,
        ("0005", "downgrade", "disallowed-unique-constraint"): 1,
        ("0005", "downgrade", "require-concurrent-index-creation"): 1,
        ("0005", "downgrade", "require-concurrent-index-deletion"): 5,
        # 0006's downgrade drops the two request-metrics columns it added
        ("0006", "downgrade", "ban-drop-column"): 2,
        # 0007's the latency histogram column it added (int4 counts, by declaration)
        ("0007", "upgrade", "prefer-bigint-over-int"): 1,
        ("0007", "downgrade", "ban-drop-column"): 1,
        # 0008 rebuilds the four sample tables partitioned by day (renamed, copied, dropped),
        # and its downgrade rebuilds them unpartitioned with their keys (and drops the entries
        # tables and their trigger functions)
        ("0008", "upgrade", "ban-drop-table"): 4,
        ("0008", "upgrade", "renaming-table"): 4,
        ("0008", "downgrade", "adding-serial-primary-key-field"): 4,
        ("0008", "downgrade", "ban-drop-function"): 11,
        ("0008", "downgrade", "ban-drop-table"): 8,
        ("0008", "downgrade", "renaming-table"): 4,
        ("0008", "downgrade", "require-concurrent-index-creation"): 4,
    }
    assert all(len((f.because or "").split()) >= 3 for f in result.ignored)
    assert result.squawk_excluded == {}


def test_real_migrations_command_exits_0() -> None:
    result = run_cli("lint")
    assert result.exit_code == 0, result.output
    assert (
        result.stdout.strip()
        .splitlines()[-1]
        .startswith("PASS: 0 violations, 147 ignored with reasons, in 8 revisions")
    )


def test_fixture_plain_create_index_and_drop_table_are_flagged() -> None:
    result = lint_revisions(ini=BROKEN / "alembic.ini")
    assert not result.passed
    assert [
        (location(f).revision, location(f).direction, f.check, f.subject)
        for f in result.violations
    ] == [
        ("b002", "upgrade", "require-concurrent-index-creation",
         "CREATE INDEX ix_widgets_name ON public.widgets (name)"),
        ("b003", "upgrade", "ban-drop-table", "DROP TABLE public.gadgets"),
    ]  # fmt: skip
    # b001 creates the tables; its downgrade's drops are ignored (Alembic's own varchar
    # alembic_version is not a finding at all).
    assert {(location(f).revision, f.check) for f in result.ignored} == {
        ("b001", "ban-drop-table"),
    }


def test_fixture_command_exits_1_and_names_the_statements() -> None:
    result = run_cli("lint", "--alembic-ini", str(BROKEN / "alembic.ini"))
    assert result.exit_code == 1
    assert "CREATE INDEX ix_widgets_name ON public.widgets (name)" in result.stdout
    assert "DROP TABLE public.gadgets" in result.stdout
    assert result.stdout.strip().splitlines()[-1].startswith("FAIL: 2 violations, 2 ignored")


def test_json_report() -> None:
    result = run_cli("lint", "--alembic-ini", str(BROKEN / "alembic.ini"), "--format", "json")
    payload = json.loads(result.stdout)
    assert payload["schema_version"] == 2 and payload["kind"] == "lint"
    assert payload["passed"] is False and payload["violations"] == 2


def test_lint_one_revision() -> None:
    result = lint_revisions(ini=BROKEN / "alembic.ini", only=["b003"])
    assert [f.check for f in result.violations] == ["ban-drop-table"]
    bad = run_cli("lint", "--revision", "b009", "--alembic-ini", str(BROKEN / "alembic.ini"))
    assert assert_usage_error(bad, "").startswith("Error: unknown revision 'b009'")


def _copy_with(tmp_path: Path, old: str, new: str) -> Path:
    copy = tmp_path / "migrations_copy"
    shutil.copytree(BROKEN, copy)
    revision = copy / "migrations" / "versions" / "b001_widgets.py"
    text = revision.read_text()
    assert old in text
    revision.write_text(text.replace(old, new))
    return copy / "alembic.ini"


@pytest.mark.parametrize(
    ("comment", "rule", "message"),
    [
        ("# dbtools-lint: ignore ban-drop-table in downgrade", "invalid-ignore",
         "an ignore needs a reason"),
        ("# dbtools-lint: ignore ban-drop-table because fine", "invalid-ignore",
         "an ignore needs a reason"),
        ("# dbtools-lint: skip ban-drop-table", "invalid-ignore", "cannot read this ignore"),
        ("# dbtools-lint: ignore unused-ignore because I really want to", "invalid-ignore",
         "unused-ignore cannot be ignored"),
    ],
)  # fmt: skip
def test_an_ignore_without_a_reason_is_a_violation(
    tmp_path: Path, comment: str, rule: str, message: str
) -> None:
    ini = _copy_with(
        tmp_path,
        "# dbtools-lint: ignore ban-drop-table in downgrade because it drops only the two "
        "tables this revision creates",
        comment,
    )
    result = lint_revisions(ini=ini, only=["b001"])
    rules = Counter(f.check for f in result.violations)
    assert rules == {rule: 1, "ban-drop-table": 2}  # and the drops are no longer ignored
    problem = next(f for f in result.violations if f.check == rule)
    assert location(problem).direction == "-" and location(problem).line == 24
    assert message in problem.message


def test_an_ignore_that_matches_nothing_is_a_violation(tmp_path: Path) -> None:
    ini = _copy_with(
        tmp_path,
        "ignore ban-drop-table in downgrade",
        "ignore ban-drop-table,ban-truncate-cascade in downgrade",
    )
    result = lint_revisions(ini=ini, only=["b001"])
    assert [(f.check, location(f).line) for f in result.violations] == [("unused-ignore", 24)]
    assert "breaks ban-truncate-cascade" in result.violations[0].message
    wrong_direction = _copy_with(tmp_path / "2", "in downgrade", "in upgrade")
    rules = Counter(f.check for f in lint_revisions(ini=wrong_direction, only=["b001"]).violations)
    assert rules == {"ban-drop-table": 2, "unused-ignore": 1}


SCRIPT = """SET lock_timeout = '5s';
SET statement_timeout = '1h';
BEGIN;
CREATE TABLE public.fresh (id int);
TRUNCATE public.fresh;
TRUNCATE public.old;
DELETE FROM public.old;
DELETE FROM public.old WHERE id = 1;
VACUUM FULL public.old;
CLUSTER public.old USING ix;
ALTER TABLE public.old SET TABLESPACE slow;
DROP INDEX CONCURRENTLY IF EXISTS public.ix;
DO $$ BEGIN EXECUTE 'CREATE INDEX ix2 ON public.old (a)'; END $$;
DO $$ BEGIN EXECUTE 'CREATE INDEX ix3 ON public.fresh (id)'; END $$;
FROB public.old;
COMMIT;
SET LOCAL lock_timeout = '1s';
SET lock_timeout = 0;
"""


def test_dbtools_rules_cover_what_squawk_does_not_see() -> None:
    found = sorted((location(f).line, f.check) for f in check_sql(SCRIPT))
    assert found == [
        (6, "destructive-statement"),  # TRUNCATE of an existing table (public.fresh is new)
        (7, "destructive-statement"),  # DELETE without WHERE
        (9, "autocommit-in-transaction"),  # VACUUM FULL in BEGIN … COMMIT
        (9, "table-rewrite"),
        (10, "table-rewrite"),  # CLUSTER
        (11, "table-rewrite"),  # SET TABLESPACE
        (12, "autocommit-in-transaction"),  # DROP INDEX CONCURRENTLY in a transaction
        (13, "blocking-ddl-in-do-block"),  # a plain CREATE INDEX hidden in a DO block
        (15, "unclassified-statement"),
        (17, "timeout-ineffective"),  # SET LOCAL outside a transaction
        (18, "timeout-ineffective"),  # lock_timeout = 0
    ]


def test_zero_lock_timeout_in_the_preamble_is_flagged() -> None:
    findings = check_sql(
        "SET lock_timeout = '0';\nBEGIN;\nCREATE INDEX ix ON public.t (a);\nCOMMIT;\n"
    )
    assert [(f.check, f.subject) for f in findings] == [("timeout-ineffective", "")]


def test_a_password_in_a_migration_is_masked_in_lint_and_plans(tmp_path: Path) -> None:
    """A migration that sets a role's password: lint and downgrade-plan show it masked."""
    from dbtools.safety.plan import build_plan
    from dbtools.safety.render import plan_json, plan_markdown

    shutil.copytree(BROKEN, tmp_path / "project", ignore=shutil.ignore_patterns("__pycache__"))
    versions = tmp_path / "project" / "migrations" / "versions"
    (versions / "b004_role_password.py").write_text(
        '"""Sets a password.\n\nRevision ID: b004\nRevises: b003\n"""\n\n'
        "from alembic import op\n\n"
        'revision = "b004"\ndown_revision = "b003"\nbranch_labels = None\ndepends_on = None\n\n\n'
        "def upgrade() -> None:\n    op.execute(\"ALTER ROLE app PASSWORD 'Up-S3cret'\")\n\n\n"
        "def downgrade() -> None:\n    op.execute(\"ALTER ROLE app PASSWORD 'Down-S3cret'\")\n"
    )
    ini = tmp_path / "project" / "alembic.ini"
    result = lint_revisions(ini=ini, only=["b004"])
    subjects = [f.subject for f in result.findings]
    assert "ALTER ROLE app PASSWORD '***'" in subjects
    assert not any("S3cret" in subject for subject in subjects)
    plan = build_plan("b003", "b004", ini=ini)
    for text in (plan_markdown(plan), plan_json(plan)):
        assert "PASSWORD '***'" in text and "S3cret" not in text
