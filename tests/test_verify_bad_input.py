"""Bad input to snapshot, capture and verify: one line, exit code 2, no traceback, nothing
written. And the least-privileged monitoring role the runbook documents."""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

import psycopg
import pytest
from psycopg import conninfo

from dbtools import load_thresholds
from dbtools.db.sandbox import Sandbox
from dbtools.errors import ConfigError
from tests.conftest import Database, PgServer
from tests.helpers import assert_usage_error, run_cli, run_dbtools
from tests.readme_runner import readme_monitor_grants
from tests.snapshot_helpers import record_metrics, run_requests, snapshot_count, window

PG_BIN = os.environ.get("DBTOOLS_TEST_PG_BIN") or None


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    "command",
    [
        ["snapshot", "--label", "x"],
        ["capture", "--label", "x", "--duration", "1s"],
        ["verify", "--baseline", "a", "--candidate", "b"],
    ],
)
def test_unreachable_server(command: list[str]) -> None:
    port = _closed_port()
    dsn = f"postgresql://mon:S3cretPw@127.0.0.1:{port}/app"
    result = run_dbtools(*command, "--dsn", dsn)
    assert_usage_error(result, f"cannot connect to host 127.0.0.1 port {port} database app")
    assert "S3cretPw" not in result.stderr


def test_wrong_password(database: Database, pg_server: PgServer) -> None:
    assert pg_server.sandbox is not None, "needs the sandbox's password authentication on TCP"
    role = f"{database.name}_pw"
    database.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'right-one'")
    try:
        dsn = pg_server.sandbox.tcp_dsn(database.name, role, "Wr0ngPassw0rd")
        for command in (["snapshot", "--label", "x"],
                        ["verify", "--baseline", "a", "--candidate", "b"]):  # fmt: skip
            result = run_dbtools(*command, "--dsn", dsn)
            assert_usage_error(result, "password authentication failed")
            assert "Wr0ngPassw0rd" not in result.stderr
    finally:
        database.execute(f"DROP ROLE {role}")


@pytest.mark.server  # starts a sandbox of its own
def test_pg_stat_statements_not_preloaded() -> None:
    directory = Path(tempfile.mkdtemp(prefix="dbtools-nopreload-"))
    sandbox = Sandbox(directory, pg_bin=PG_BIN, settings={"shared_preload_libraries": "''"})
    try:
        sandbox.start()
        result = run_dbtools("snapshot", "--label", "x", "--dsn", sandbox.dsn())
        assert_usage_error(result, "pg_stat_statements is not in shared_preload_libraries")
    finally:
        sandbox.destroy()


def test_extension_not_created(migrated_database: Database) -> None:
    migrated_database.execute("DROP EXTENSION pg_stat_statements")
    result = run_dbtools("snapshot", "--label", "x", "--dsn", migrated_database.dsn)
    assert_usage_error(result, "the pg_stat_statements extension is not created in database")
    assert snapshot_count(migrated_database) == 0


def test_unknown_label(migrated_database: Database) -> None:
    window(migrated_database, "before", 3)
    result = run_dbtools("verify", "--dsn", migrated_database.dsn,
                         "--baseline", "before", "--candidate", "nope")  # fmt: skip
    assert_usage_error(result, "unknown snapshot label(s): 'nope:start', 'nope:end'")
    single = run_dbtools("verify", "--dsn", migrated_database.dsn,
                         "--baseline", "before:start", "--candidate", "before")  # fmt: skip
    assert_usage_error(single, "(a single snapshot is not a window: give START..END)")


def test_reused_label(migrated_database: Database) -> None:
    db = migrated_database
    first = run_dbtools("snapshot", "--label", "dup", "--dsn", db.dsn)
    assert first.returncode == 0, first.stderr
    again = run_dbtools("snapshot", "--label", "dup", "--dsn", db.dsn)
    assert_usage_error(again, f"target '{db.name}' already has a snapshot labelled 'dup'")
    capture = run_dbtools("capture", "--label", "dup", "--duration", "1s", "--dsn", db.dsn)
    assert capture.returncode == 0  # dup:start/dup:end are other labels
    reused = run_dbtools("capture", "--label", "dup", "--duration", "1s", "--dsn", db.dsn)
    assert_usage_error(reused, f"target '{db.name}' already has a snapshot labelled 'dup:end'")
    assert snapshot_count(db) == 3


def test_database_never_migrated(database: Database) -> None:
    never = run_dbtools("snapshot", "--label", "x", "--dsn", database.dsn)
    assert_usage_error(never, "the database was never migrated, which has no")
    no_tables = run_dbtools("verify", "--dsn", database.dsn, "--baseline", "a", "--candidate", "b")
    assert_usage_error(no_tables, "the monitoring table perf_monitoring.snapshots is missing")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("[verify\nmin_query_reduction = 0.9", "malformed TOML in"),
        ("[verify]\nmin_query_reductoin = 0.9\n", "unknown verify setting(s) min_query_reductoin"),
        ("[verify]\nmax_p95_ms = 'fast'\n", "max_p95_ms must be a number"),
        ("[verify]\nmin_cache_hit_ratio = 40\n", "is a fraction between 0 and 1"),
        ("[verify]\nrollback_p95_ms = 400\n", "critical_p95_ms (500.0) must not exceed"),
        (
            "[other]\nx = 1\n",
            "unknown table [other] (known: verify, lint, rehearse, report, rollout)",
        ),
        (
            "[tool.dbtools.verfy]\nmin_query_reduction = 0.9\n",
            "unknown table [tool.dbtools.verfy] (known: verify, lint, rehearse, report, rollout); did you mean [tool.dbtools.verify]?",
        ),
        (
            "[verify]\nmax_p95_ms = 250\n[verfy]\nmax_p95_ms = 200\n",
            "unknown table [verfy] (known: verify, lint, rehearse, report, rollout); did you mean [verify]?",
        ),
        ("[tool.dbtools]\nverify = 3\n", "[tool.dbtools.verify] must be a table"),
        ("x = 1\n", "no [verify] (or [tool.dbtools.verify]) table"),
    ],
)
def test_malformed_config(tmp_path: Path, content: str, expected: str) -> None:
    """Read before connecting: a bad file stops verify before it touches any database."""
    config = tmp_path / "verify.toml"
    config.write_text(content)
    result = run_cli("verify", "--dsn", f"postgresql://u@127.0.0.1:{_closed_port()}/x",
                     "--baseline", "a", "--candidate", "b", "--config", str(config))  # fmt: skip
    assert_usage_error(result, expected)


def test_a_misspelt_table_in_pyproject_is_an_error(tmp_path: Path) -> None:
    """A typo in a table's name must not leave every default silently in force."""
    (tmp_path / "pyproject.toml").write_text(
        "[project]\nname = 'x'\n[tool.dbtools.verfy]\nmin_query_reduction = 0.9\n"
    )
    with pytest.raises(ConfigError) as error:
        load_thresholds(project_dir=tmp_path)
    assert str(error.value) == (
        f"{tmp_path / 'pyproject.toml'}: unknown table [tool.dbtools.verfy] (known: verify, lint, rehearse, report, rollout); "
        "did you mean [tool.dbtools.verify]?"
    )
    (tmp_path / "pyproject.toml").write_text("[tool.dbtools.verify]\nmax_p95_ms = 250\n")
    assert load_thresholds(project_dir=tmp_path).max_p95_ms == 250


def test_config_skipping_an_unknown_check(migrated_database: Database, tmp_path: Path) -> None:
    window(migrated_database, "before", 3)
    window(migrated_database, "after", 3, batch=3)
    config = tmp_path / "verify.toml"
    config.write_text("[verify]\nskip = ['p95']\n")
    result = run_dbtools("verify", "--dsn", migrated_database.dsn, "--baseline", "before",
                         "--candidate", "after", "--config", str(config))  # fmt: skip
    assert_usage_error(result, "skip names unknown check(s) p95")


def test_missing_config_file(tmp_path: Path) -> None:
    result = run_dbtools("verify", "--baseline", "a", "--candidate", "b",
                         "--config", str(tmp_path / "absent.toml"))  # fmt: skip
    assert_usage_error(result, "absent.toml")


def test_least_privileged_monitoring_role(migrated_database: Database) -> None:
    db = migrated_database
    role = f"{db.name}_monitor"
    db.execute(f"CREATE ROLE {role} LOGIN")
    db.execute(readme_monitor_grants(role))  # exactly the runbook's
    try:
        dsn = conninfo.make_conninfo(db.dsn, user=role)
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
                                ).fetchone() == (False,)  # fmt: skip
        for label, batch in (("before", 1), ("after", 10)):
            started = run_dbtools("snapshot", "--label", f"{label}:start", "--dsn", dsn)
            assert started.returncode == 0, started.stderr
            run_requests(db, 20, batch=batch)  # the application, as another role
            ended = run_dbtools("snapshot", "--label", f"{label}:end", "--requests-served", "20",
                                "--dsn", dsn)  # fmt: skip
            assert ended.returncode == 0, ended.stderr
            assert "not visible" not in ended.stdout
            record_metrics(db, label, requests=20)
        result = run_dbtools("verify", "--dsn", dsn, "--baseline", "before", "--candidate",
                             "after", "--format", "json")  # fmt: skip
        assert '"queries": 60' in result.stdout and '"queries": 6' in result.stdout
        assert '"hidden_calls": 0' in result.stdout and result.returncode == 0, result.stdout
        # The grants are enough to store the texts of new statements, scrubbed, once each.
        assert db.execute(
            "SELECT count(*) FROM perf_monitoring.statement_texts "
            "WHERE query LIKE 'SELECT id, search_key, traveler_id, max_price FROM trip_requests%'"
        ) == [(1,)]
        # The report on the two windows opens with the same verdict, under the same grants.
        report = run_dbtools("report", "--dsn", dsn, "--baseline", "before", "--candidate",
                             "after", "--output", "-")  # fmt: skip
        assert report.returncode == 0, report.stderr
        assert "## Verdict: PASS (exit code 0)" in report.stdout
    finally:
        db.execute(f"DROP OWNED BY {role}")
        db.execute(f"DROP ROLE {role}")


def test_role_without_insert_grant_writes_nothing(migrated_database: Database) -> None:
    db = migrated_database
    role = f"{db.name}_readonly"
    db.execute(f"CREATE ROLE {role} LOGIN IN ROLE pg_monitor")
    db.execute(f"GRANT USAGE ON SCHEMA perf_monitoring TO {role}")
    db.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA perf_monitoring TO {role}")
    db.execute(f"GRANT SELECT ON public.alembic_version TO {role}")
    try:
        result = run_dbtools("snapshot", "--label", "x", "--dsn",
                             conninfo.make_conninfo(db.dsn, user=role))  # fmt: skip
        assert_usage_error(result, "permission denied for table ")
        assert snapshot_count(db) == 0
        assert db.execute("SELECT count(*) FROM perf_monitoring.statement_texts") == [(0,)]
    finally:
        db.execute(f"DROP OWNED BY {role}")
        db.execute(f"DROP ROLE {role}")
