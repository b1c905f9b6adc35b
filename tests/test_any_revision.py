"""A rollback's downgrade leaves dbtools working: snapshots, capture, doctor and verify at any
revision with the monitoring tables (0002 on), judging what that revision declares, and saying
why a window cannot be trusted when the downgrade took what judging it needs."""

from __future__ import annotations

import json

import pytest
from psycopg import conninfo

from dbtools import verify_candidate
from dbtools.schema.manifest import head_revision
from dbtools.schema.revisions import downgrade
from dbtools.verify.thresholds import Thresholds
from tests.conftest import Database
from tests.helpers import assert_usage_error, run_cli, run_dbtools
from tests.readme_runner import readme_monitor_grants
from tests.snapshot_helpers import (
    REQUEST_STATEMENTS,
    record_metrics,
    run_requests,
    snapshot_count,
    window,
)

SECRET = "s3cret-rollback-pw"
SETTINGS_NOT_STORED = (
    "pg_stat_statements settings are not stored with this window's snapshots (taken at revision "
    "{revision}; they are stored from revision 0004 on, and a downgrade below 0004 drops them): "
    "whether every statement was counted is unknown"
)


@pytest.mark.parametrize("revision", ["0002", "0003"])
def test_windows_below_head_are_stored_scrubbed_and_measured_exactly(
    migrated_database: Database, revision: str
) -> None:
    db = migrated_database
    downgrade(db.dsn, revision)
    role = f"{db.name}_pw"
    db.execute(f"CREATE ROLE {role} PASSWORD '{SECRET}'")  # a text that holds a password
    try:
        sent_before = window(db, "before", 30)  # per request: 3 statements each
        sent_after = window(db, "after", 30, batch=10)  # batched: 3 statements per 10
    finally:
        db.execute(f"DROP ROLE {role}")
    for label in ("before", "after"):
        record_metrics(db, label, requests=30)
    assert (sent_before, sent_after) == (90, 9)

    # Each row holds its text (no statement_texts below 0004), scrubbed before it was stored.
    texts = [query for (query,) in db.execute(
        "SELECT s.query FROM perf_monitoring.statement_stats s "
        "JOIN perf_monitoring.snapshots h ON h.id = s.snapshot_id WHERE h.label = 'after:end'")]  # fmt: skip
    assert texts and all(SECRET not in text for text in texts)
    assert any("PASSWORD $1" in text for text in texts), texts
    assert db.execute("SELECT DISTINCT alembic_revision FROM perf_monitoring.snapshots") == [
        (revision,)
    ]

    result = verify_candidate(
        db.dsn, "before", "after", thresholds=Thresholds(critical_query_rate=1e9)
    )
    assert (result.baseline.counts.queries, result.candidate.counts.queries) == (90, 9)
    assert result.reduction == pytest.approx(0.9)
    by_check = {(f.check, f.subject): (f.status, f.message) for f in result.findings}
    # Below 0004 nothing records what pg_stat_statements counted: untrusted, and why.
    for side in ("baseline", "candidate"):
        assert by_check["window", side] == (
            "untrusted",
            SETTINGS_NOT_STORED.format(revision=revision),
        )
    assert by_check["schema_at_head", "alembic_version"] == (
        "fail",
        f"at {revision}, head is {head_revision()}",
    )
    indexes = [(s, m) for (check, _), (s, m) in by_check.items() if check == "batch_indexes"]
    if revision == "0002":  # what 0002 declares: none
        assert indexes == [("pass", "no batch indexes expected at 0002")]
    else:  # 0003's three, whose use an untrusted window cannot show
        assert [s for s, _ in indexes] == ["untrusted"] * 3
    assert result.exit_code == 1


def test_a_window_across_a_rollback_says_why_it_is_untrusted(migrated_database: Database) -> None:
    db = migrated_database
    window(db, "baseline", 20)  # at head: the settings are recorded
    record_metrics(db, "baseline", requests=20)
    downgrade(db.dsn, "0002")
    window(db, "after-rollback", 20)
    record_metrics(db, "after-rollback", requests=20)
    result = run_cli("verify", "--dsn", db.dsn, "--baseline", "baseline",
                     "--candidate", "after-rollback", "--format", "json")  # fmt: skip
    assert result.exit_code == 1, result.output
    document = json.loads(result.stdout)
    windows = {f["subject"]: f["message"] for f in document["findings"] if f["check"] == "window"}
    assert windows == {
        "baseline": SETTINGS_NOT_STORED.format(
            revision=head_revision()
        ),  # dropped by the downgrade
        "candidate": SETTINGS_NOT_STORED.format(revision="0002"),  # never stored at 0002
    }
    # The figures are still there to compare by hand: the same 3 statements per request.
    assert [document["windows"][w]["queries_per_request"] for w in ("baseline", "candidate")] == [
        3.0,
        3.0,
    ]


def test_without_the_monitoring_tables_snapshots_are_refused(
    database: Database, migrated_database: Database
) -> None:
    never = run_dbtools("snapshot", "--label", "x", "--dsn", database.dsn)
    assert_usage_error(never, "the database was never migrated, which has no "
                              "perf_monitoring.snapshots to store snapshots in")  # fmt: skip
    downgrade(migrated_database.dsn, "0001")
    below = run_dbtools("capture", "--label", "x", "--duration", "1s",
                        "--dsn", migrated_database.dsn)  # fmt: skip
    assert_usage_error(below, "the database is at revision 0001, which has no "
                              "perf_monitoring.snapshots to store snapshots in: run alembic "
                              "upgrade head first")  # fmt: skip


def test_the_readme_monitoring_role_after_a_rollback(migrated_database: Database) -> None:
    """Granted at head as the runbook says, then the deploy role downgrades to 0002: doctor calls
    every command ready, and each one runs as that role."""
    db = migrated_database
    role = f"{db.name}_mon"
    db.execute(f"CREATE ROLE {role} LOGIN")
    try:
        db.execute(readme_monitor_grants(role))
        dsn = conninfo.make_conninfo(db.dsn, user=role)
        downgrade(db.dsn, "0002")
        result = run_cli("doctor", "--dsn", dsn, "--format", "json")
        document = json.loads(result.stdout)
        assert result.exit_code == 0, result.stdout
        assert all(state["ready"] for state in document["commands"].values())
        (revision,) = [c for c in document["checks"] if c["check"] == "database revision"]
        assert (revision["status"], revision["message"]) == ("pass", (
            f"at revision 0002, below head {head_revision()}: snapshots store what its monitoring "
            "tables hold, "
            "verify judges the objects it creates"))  # fmt: skip
        for label in ("a", "b"):
            captured = run_cli("capture", "--dsn", dsn, "--label", label, "--duration", "1s")
            assert captured.exit_code == 0, captured.output
            run_requests(db, 5, statements=REQUEST_STATEMENTS[:1])
        assert snapshot_count(db) == 4
        assert run_cli("verify", "--dsn", dsn, "--baseline", "a", "--candidate", "b").exit_code == 1
        assert run_cli("report", "--dsn", dsn, "--window", "b", "--output", "-").exit_code == 0
    finally:
        db.execute(f"DROP OWNED BY {role}")
        db.execute(f"DROP ROLE {role}")


# -- DBTOOLS_MAX_DURATION: a runbook's windows, rehearsed in seconds ------------------------------


def test_max_duration_shortens_a_capture(migrated_database: Database) -> None:
    db = migrated_database
    result = run_dbtools("capture", "--dsn", db.dsn, "--label", "w", "--duration", "10m",
                         env={"DBTOOLS_MAX_DURATION": "2s"}, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "WARNING dbtools.store.snapshots: DBTOOLS_MAX_DURATION shortens the window 'w' " \
           "from 600 s to 2 s" in result.stderr  # fmt: skip
    ((seconds,),) = db.execute(
        "SELECT extract(epoch FROM max(taken_at) - min(taken_at)) FROM perf_monitoring.snapshots"
    )
    assert 2 <= seconds < 10
    # A limit longer than the window asked for changes nothing.
    longer = run_dbtools("capture", "--dsn", db.dsn, "--label", "v", "--duration", "1s",
                         env={"DBTOOLS_MAX_DURATION": "1h"})  # fmt: skip
    assert longer.returncode == 0 and "shortens" not in longer.stderr


@pytest.mark.parametrize("value", ["soon", "0", "-5s", "10 minutes"])
def test_a_max_duration_that_is_not_a_duration_is_refused(
    migrated_database: Database, value: str
) -> None:
    result = run_dbtools("capture", "--dsn", migrated_database.dsn, "--label", "w",
                         "--duration", "10m", env={"DBTOOLS_MAX_DURATION": value})  # fmt: skip
    assert_usage_error(result, "DBTOOLS_MAX_DURATION: ")
    assert snapshot_count(migrated_database) == 0
