"""``doctor`` on a real server, as real roles: no false green. Whatever doctor says a command
needs is what that command needs when it runs as the same role, and every FAIL comes with the
statements that fix it (applied here, as a DBA would, until doctor and the commands agree)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import conninfo

from dbtools.figures.windows import window_labels
from dbtools.schema.manifest import head_revision
from dbtools.schema.revisions import upgrade
from dbtools.store import snapshots
from tests.conftest import Database
from tests.helpers import REPO, run_cli
from tests.readme_runner import readme_monitor_grants

COMMANDS = ("snapshot", "capture", "verify", "report", "report --live")
MakeRole = Callable[[str], str]


@pytest.fixture
def make_role(migrated_database: Database) -> Iterator[MakeRole]:
    """``make_role(grants)``: a login role with *grants* (``{role}`` stands for its name) in the
    test's database; returns its DSN. Dropped afterwards."""
    db = migrated_database
    created: list[str] = []

    def make(grants: str) -> str:
        role = f"{db.name}_r{len(created)}"
        db.execute(f"CREATE ROLE {role} LOGIN")
        created.append(role)
        if grants:
            db.execute(grants.format(role=role))
        return conninfo.make_conninfo(db.dsn, user=role)

    yield make
    for role in created:
        db.execute(f"DROP OWNED BY {role}")
        db.execute(f"DROP ROLE {role}")


def doctor(dsn: str, *, ini: Path | None = None) -> dict[str, Any]:
    """``dbtools doctor --format json`` (or the library with another alembic.ini)."""
    if ini is not None:
        from dbtools import run_doctor

        return dict(json.loads(json.dumps(run_doctor(dsn, ini=ini).as_dict())))
    result = run_cli("doctor", "--dsn", dsn, "--format", "json")
    document = json.loads(result.stdout)
    assert result.exit_code == (0 if document["ok"] else 1), result.stdout
    return dict(document)


def failing(document: dict[str, Any]) -> dict[str, str]:
    """The failing checks: name to fix."""
    return {c["check"]: c["fix"] for c in document["checks"] if c["status"] == "fail"}


def ready(document: dict[str, Any]) -> dict[str, bool]:
    return {name: state["ready"] for name, state in document["commands"].items()}


def stored_windows(db: Database) -> None:
    """Two windows, stored by the superuser, for verify and report to read."""
    for label in ("b", "c"):
        for end in window_labels(label):
            snapshots.snapshot(db.dsn, end, requests=10)


def command_exit_codes(db: Database, dsn: str, tag: str) -> dict[str, int]:
    """Each command's exit code when run as the role of *dsn*. 2 means it could not work at all
    (a missing grant, extension or revision); 0, 1 and 3 are measurements."""
    runs = {
        "snapshot": ["snapshot", "--label", f"{tag}-s"],
        "capture": ["capture", "--label", f"{tag}-c", "--duration", "1s"],
        "verify": ["verify", "--baseline", "b", "--candidate", "c"],
        "report": ["report", "--window", "b", "--output", "-"],
        "report --live": ["report", "--live", "--output", "-"],
    }
    return {name: run_cli(*args, "--dsn", dsn).exit_code for name, args in runs.items()}


def apply_fixes(db: Database, fixes: dict[str, str]) -> None:
    """Run every fix statement as the superuser, as a DBA pasting doctor's output would."""
    for fix in fixes.values():
        for statement in fix.splitlines():
            assert statement.endswith(";"), f"not a statement: {statement!r}"
            db.execute(statement)


def assert_no_false_green(document: dict[str, Any], codes: dict[str, int]) -> None:
    """A command doctor calls ready must be able to run (exit code 0, 1 or 3)."""
    for command in COMMANDS:
        if ready(document)[command]:
            assert codes[command] != 2, (command, codes, failing(document))


# -- the monitoring role, as the runbook sets it up, and less -----------------------------------


def test_pg_monitor_alone_fails_every_command_and_doctor_says_so(
    migrated_database: Database, make_role: MakeRole
) -> None:
    db = migrated_database
    stored_windows(db)
    dsn = make_role("GRANT pg_monitor TO {role}")
    role = conninfo.conninfo_to_dict(dsn)["user"]
    codes = command_exit_codes(db, dsn, "before")
    assert codes == dict.fromkeys(COMMANDS, 2)  # every command fails as this role

    found = doctor(dsn)
    assert found["ok"] is False  # no false green
    assert ready(found) == dict.fromkeys(COMMANDS, False)
    # In the order revisions 0002, 0004 and 0008 create them (their manifests').
    written = ", ".join(
        f"perf_monitoring.{t}"
        for t in ("snapshots", "database_stats", "index_stats", "statement_stats", "table_stats",
                  "statement_texts")
    )  # fmt: skip
    read = ", ".join(
        f"perf_monitoring.{t}"
        for t in ("app_metrics", "request_metrics", "setting_changes", "snapshots",
                  "database_stats", "index_stats", "statement_stats", "table_stats",
                  "statement_texts", "statement_stats_entries", "table_stats_entries",
                  "index_stats_entries", "database_stats_entries")
    )  # fmt: skip
    assert failing(found) == {
        "alembic_version readable": f"GRANT SELECT ON public.alembic_version TO {role};",
        "monitoring schema usable": f"GRANT USAGE ON SCHEMA perf_monitoring TO {role};",
        # a snapshot reads the previous sample back; an interrupted one is folded away
        "snapshots storable": f"GRANT SELECT ON {written} TO {role};\n"
        f"GRANT INSERT ON {written} TO {role};",
        "interrupted capture removable": f"GRANT DELETE ON {written} TO {role};",
        "stored snapshots readable": f"GRANT SELECT ON {read} TO {role};",
    }
    # The text names the same fixes, each under the FAIL line it fixes.
    text = run_cli("doctor", "--dsn", dsn)
    assert text.exit_code == 1
    lines = text.stdout.splitlines()
    for check, fix in failing(found).items():
        at = next(i for i, line in enumerate(lines) if line.startswith(f"  FAIL  {check}"))
        assert lines[at + 1].strip() == f"fix: {fix.splitlines()[0]}", lines[at : at + 3]

    apply_fixes(db, failing(found))
    after = doctor(dsn)
    assert failing(after) == {} and ready(after) == dict.fromkeys(COMMANDS, True)
    assert command_exit_codes(db, dsn, "after")["snapshot"] == 0


def test_the_readme_monitoring_role_passes_and_every_command_works(
    migrated_database: Database, make_role: MakeRole
) -> None:
    db = migrated_database
    stored_windows(db)
    dsn = make_role(readme_monitor_grants("{role}"))
    found = doctor(dsn)
    assert failing(found) == {} and found["ok"] is True
    assert ready(found) == dict.fromkeys(COMMANDS, True)
    codes = command_exit_codes(db, dsn, "readme")
    assert codes["snapshot"] == codes["capture"] == codes["report"] == codes["report --live"] == 0
    assert codes["verify"] in (0, 1)  # a measurement (these windows hold no requests' metrics)


ROLLUP_MARK_GRANT = "GRANT UPDATE ON perf_monitoring.snapshots TO {role}"


@pytest.mark.parametrize("with_update", [True, False], ids=["as-granted", "without-update"])
def test_the_readme_monitoring_role_collects_with_retention_and_rollups(
    migrated_database: Database, make_role: MakeRole, with_update: bool
) -> None:
    """``collect --retention --rollup-after`` as the runbook's role (doctor does not judge
    collect): DELETE lets ``fold_samples`` remove old samples, their rows and texts; UPDATE on
    ``snapshots`` marks the sample a roll-up keeps. Without that grant the round fails and
    nothing is marked."""
    db = migrated_database
    grants = readme_monitor_grants("{role}")
    assert f"{ROLLUP_MARK_GRANT};" in grants
    dsn = make_role(grants if with_update else grants.replace(f"{ROLLUP_MARK_GRANT};", ""))
    for _ in range(3):
        assert run_cli("collect", "--dsn", dsn, "--once").exit_code == 0
    # The first sample three days old (retention 2d removes it); the next two in one hour 30 hours
    # ago (a roll-up after 1d keeps the later, folds the other).
    db.execute(
        "UPDATE perf_monitoring.snapshots s SET taken_at = CASE o.n "
        "WHEN 1 THEN now() - interval '3 days' "
        "ELSE date_trunc('hour', now() - interval '30 hours') + o.n * interval '10 minutes' END "
        "FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM perf_monitoring.snapshots) o "
        "WHERE s.id = o.id"
    )
    result = run_cli("collect", "--dsn", dsn, "--once", "--retention", "2d", "--rollup-after", "1d")
    marked = db.execute(
        "SELECT count(*) FROM perf_monitoring.snapshots WHERE rollup_seconds = 3600"
    )
    if with_update:
        assert result.exit_code == 0, result.output
        assert ", 2 old samples purged" in result.stdout  # one by retention, one folded
        assert marked == [(1,)]
        assert db.execute("SELECT count(*) FROM perf_monitoring.snapshots") == [(2,)]
    else:
        assert result.exit_code == 2, result.output
        assert "permission denied" in result.output, result.output
        assert marked == [(0,)]


def test_without_pg_read_all_stats_other_roles_statements_are_hidden(
    migrated_database: Database, make_role: MakeRole
) -> None:
    grants = readme_monitor_grants("{role}").replace("GRANT pg_monitor TO {role};\n", "")
    dsn = make_role(grants)
    role = conninfo.conninfo_to_dict(dsn)["user"]
    found = doctor(dsn)
    assert failing(found) == {"reads all statistics": f"GRANT pg_monitor TO {role};"}
    assert ready(found) == {"snapshot": False, "capture": False, "verify": True,
                            "report": True, "report --live": False}  # fmt: skip
    apply_fixes(migrated_database, failing(found))
    assert doctor(dsn)["ok"] is True


def test_the_superuser_passes(migrated_database: Database) -> None:
    found = doctor(migrated_database.dsn)
    assert failing(found) == {} and ready(found) == dict.fromkeys(COMMANDS, True)
    assert {c["status"] for c in found["checks"]} == {"pass"}


# -- the server's side: the extension and what it counts ----------------------------------------


def test_a_missing_extension_is_named_with_its_fix(migrated_database: Database) -> None:
    db = migrated_database
    db.execute("DROP EXTENSION pg_stat_statements")
    found = doctor(db.dsn)
    assert failing(found) == {"pg_stat_statements created": "CREATE EXTENSION pg_stat_statements;"}
    assert ready(found) == {"snapshot": False, "capture": False, "verify": True,
                            "report": True, "report --live": False}  # fmt: skip
    assert run_cli("snapshot", "--dsn", db.dsn, "--label", "x").exit_code == 2
    apply_fixes(db, failing(found))
    assert doctor(db.dsn)["ok"] is True


def test_track_none_for_the_database_or_a_role_is_named_with_its_fix(
    migrated_database: Database, make_role: MakeRole
) -> None:
    db = migrated_database
    app_dsn = make_role("")
    app = conninfo.conninfo_to_dict(app_dsn)["user"]
    db.execute(f"ALTER DATABASE {db.name} SET pg_stat_statements.track = none")
    db.execute(f"ALTER ROLE {app} IN DATABASE {db.name} SET pg_stat_statements.track = 'none'")
    # What it means: the application's statements run and are not counted.
    with psycopg.connect(app_dsn, autocommit=True) as conn:
        for _ in range(3):
            conn.execute("SELECT /* uncounted probe */ 1")
    counted = db.execute(
        "SELECT count(*) FROM pg_stat_statements WHERE query LIKE '%%uncounted probe%%'"
    )
    assert counted == [(0,)]

    found = doctor(db.dsn)
    assert failing(found) == {
        "pg_stat_statements.track": f"ALTER DATABASE {db.name} RESET pg_stat_statements.track;\n"
        f"ALTER ROLE {app} IN DATABASE {db.name} RESET pg_stat_statements.track;"
    }
    apply_fixes(db, failing(found))
    assert doctor(db.dsn)["ok"] is True


# -- tables a later revision adds are covered through its manifest ------------------------------


EXTRA_REVISION = '''"""A monitoring table added by a later revision (a test's own).

Revision ID: 9999
Revises: {head}
"""
from alembic import op

from dbtools.schema.manifest import Manifest

revision = "9999"
down_revision = "{head}"
branch_labels = None
depends_on = None

MANIFEST = Manifest(tables=("perf_monitoring.extra_samples",))


def upgrade() -> None:
    op.execute("CREATE TABLE perf_monitoring.extra_samples (snapshot_id bigint)")


def downgrade() -> None:
    op.execute("DROP TABLE perf_monitoring.extra_samples")
'''


def test_a_table_a_later_revision_adds_is_checked(
    migrated_database: Database, make_role: MakeRole, tmp_path: Path
) -> None:
    shutil.copy(REPO / "alembic.ini", tmp_path / "alembic.ini")
    shutil.copytree(REPO / "migrations", tmp_path / "migrations",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    (tmp_path / "migrations/versions/9999_extra.py").write_text(
        EXTRA_REVISION.format(head=head_revision())
    )
    ini = tmp_path / "alembic.ini"
    upgrade(migrated_database.dsn, ini=ini)
    dsn = make_role(readme_monitor_grants("{role}"))
    role = conninfo.conninfo_to_dict(dsn)["user"]
    found = doctor(dsn, ini=ini)
    assert failing(found) == {
        "snapshots storable": f"GRANT INSERT ON perf_monitoring.extra_samples TO {role};",
        "stored snapshots readable": f"GRANT SELECT ON perf_monitoring.extra_samples TO {role};",
    }


def test_a_revoked_statistics_view_is_named_with_its_grant(
    migrated_database: Database, make_role: MakeRole
) -> None:
    db = migrated_database
    db.execute("REVOKE SELECT ON pg_stat_statements FROM PUBLIC")
    dsn = make_role(readme_monitor_grants("{role}"))
    role = conninfo.conninfo_to_dict(dsn)["user"]
    found = doctor(dsn)
    assert failing(found) == {
        "statistics readable": f"GRANT SELECT ON public.pg_stat_statements TO {role};"
    }
    assert run_cli("snapshot", "--dsn", dsn, "--label", "x").exit_code == 2
    apply_fixes(db, failing(found))
    assert doctor(dsn)["ok"] is True
    assert run_cli("snapshot", "--dsn", dsn, "--label", "x").exit_code == 0


def test_a_revoked_schema_is_named_with_its_grant(
    migrated_database: Database, make_role: MakeRole
) -> None:
    """A hardened database: no USAGE on schema public for PUBLIC (alembic_version and, here,
    pg_stat_statements live there)."""
    db = migrated_database
    db.execute("REVOKE USAGE ON SCHEMA public FROM PUBLIC")
    dsn = make_role(readme_monitor_grants("{role}"))
    role = conninfo.conninfo_to_dict(dsn)["user"]
    found = doctor(dsn)
    fix = f"GRANT USAGE ON SCHEMA public TO {role};"
    assert failing(found) == {"alembic_version readable": fix, "statistics readable": fix}
    assert run_cli("snapshot", "--dsn", dsn, "--label", "x").exit_code == 2
    apply_fixes(db, {"once": fix})
    assert doctor(dsn)["ok"] is True
