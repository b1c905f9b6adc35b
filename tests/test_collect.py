"""``dbtools collect`` against real servers: one round for cron, SIGTERM and Ctrl-C in the middle
of a round (nothing half stored), two collectors on one target, retention, bad input."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dbtools.db.connection import SQL_MARKER
from dbtools.reading import live
from dbtools.store.collector import Collector, Target
from dbtools.store.compact import OWN_TEXT
from tests.conftest import Database
from tests.helpers import REPO, assert_usage_error, interruptible_child, run_cli
from tests.snapshot_helpers import snapshot_count


def _rows(db: Database) -> int:
    return int(
        db.execute(f"SELECT {SQL_MARKER} count(*) FROM perf_monitoring.statement_stats")[0][0]
    )


def _collector(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "dbtools", "-v", "collect", *args],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=interruptible_child,
    )  # fmt: skip


def _wait_until(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _waiting_for_a_lock(db: Database) -> bool:
    found = db.execute(
        f"SELECT {SQL_MARKER} count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock' "
        "AND application_name LIKE 'dbtools collect%%'"
    )
    return bool(found[0][0] == 1)


def test_once_stores_one_sample_and_says_so(migrated_database: Database) -> None:
    db = migrated_database
    with db.connect() as conn:
        for _ in range(3):
            conn.execute("SELECT 1 AS collected")
    result = run_cli("-v", "collect", "--dsn", db.dsn, "--once", "--interval", "30s")
    assert result.exit_code == 0, result.output
    # A first sample stores every entry: each statement, table, index and the database.
    stored = sum(
        db.execute(f"SELECT {SQL_MARKER} count(*) FROM perf_monitoring.{table}")[0][0]
        for table in ("statement_stats", "table_stats", "index_stats", "database_stats")
    )
    assert result.stdout == (
        f"collected 1 samples ({stored} rows) in 1 rounds, 0 failed target reads, "
        "0 old samples purged\n"
    )
    assert "round 1 at " in result.stderr and "1/1 targets sampled" in result.stderr
    assert db.execute(
        f"SELECT {SQL_MARKER} target, label, interval_seconds FROM perf_monitoring.snapshots"
    ) == [(db.name, None, 30.0)]
    assert db.execute(
        f"SELECT {SQL_MARKER} s.calls FROM perf_monitoring.statement_stats s "
        "JOIN perf_monitoring.statement_texts t USING (target, dbid, queryid) "
        "WHERE t.query = 'SELECT $1 AS collected'"
    ) == [(3,)]


def test_once_keeps_its_own_statements_between_runs_and_never_reads_their_texts_again(
    migrated_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``collect --once`` runs are processes that start with nothing in memory: dbtools' own
    statements met by one run (their texts read: a read of texts loads the server's whole
    texts file) are known to the next from the store, never asked for again."""
    db = migrated_database
    read_sample = live.read_sample
    met: list[frozenset[int]] = []  # the own statements each run met (read their texts)

    def recording(*args: Any, **kwargs: Any) -> live.SampleRead:
        read = read_sample(*args, **kwargs)
        met.append(read.own)
        return read

    monkeypatch.setattr(live, "read_sample", recording)
    for _ in range(4):
        with Collector([Target(db.name, db.dsn)], interval_s=60, once=True) as collector:
            assert collector.run(rounds=1).samples == 1
    assert len(met) == 4 and met[0] and met[1]  # a first sample's, then those run after it
    assert sum(len(found) for found in met) == len(frozenset().union(*met))  # none twice
    stored = db.execute(
        f"SELECT {SQL_MARKER} dbid, queryid FROM perf_monitoring.statement_texts WHERE query = %s",
        (OWN_TEXT,),
    )
    assert {live.text_key(dbid, queryid) for dbid, queryid in stored} == frozenset().union(*met)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
def test_a_signal_in_the_middle_of_a_round_stores_nothing(
    migrated_database: Database, sig: int, code: int
) -> None:
    """The round is held inside its read (a table's size waits behind an exclusive lock); the
    signal cancels it: no header, no rows, and the exit code says how it stopped."""
    db = migrated_database
    with db.connect(autocommit=False) as blocker:
        blocker.execute("LOCK TABLE perf_monitoring.app_metrics IN ACCESS EXCLUSIVE MODE")
        process = _collector("--dsn", db.dsn, "--once")
        try:
            _wait_until(lambda: _waiting_for_a_lock(db))
            process.send_signal(sig)
            stdout, stderr = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
        blocker.rollback()
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr
    assert "abandoned, nothing stored" in stderr
    assert stdout == (
        "collected 0 samples (0 rows) in 1 rounds, 0 failed target reads, 0 old samples purged, "
        "the last round abandoned (nothing half stored)\n"
    )
    assert snapshot_count(db) == 0 and _rows(db) == 0


def test_a_second_collector_on_the_same_target_is_refused_naming_the_first(
    migrated_database: Database,
) -> None:
    db = migrated_database
    first = _collector("--dsn", db.dsn, "--interval", "1h")
    try:
        _wait_until(lambda: snapshot_count(db) == 1)
        second = run_cli("collect", "--dsn", db.dsn, "--once")
        line = assert_usage_error(second, f"another collector holds target '{db.name}'")
        assert f"dbtools collect (pid {first.pid})" in line
        assert snapshot_count(db) == 1
        first.send_signal(signal.SIGTERM)
        stdout, stderr = first.communicate(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, stderr
    assert stdout.startswith("collected 1 samples (")
    # Once the first is gone, the target is free again.
    assert run_cli("collect", "--dsn", db.dsn, "--once").exit_code == 0
    assert snapshot_count(db) == 2


def test_retention_purges_old_samples_and_keeps_what_newer_ones_read(
    migrated_database: Database,
) -> None:
    db = migrated_database
    with db.connect() as conn:
        conn.execute("SELECT 1 AS stays_unmoved")
    for _ in range(3):
        assert run_cli("collect", "--dsn", db.dsn, "--once").exit_code == 0
    # The first two are three days old; the statement's only row is in the first.
    db.execute(
        f"UPDATE {SQL_MARKER} perf_monitoring.snapshots SET taken_at = taken_at - interval '3 days' "
        "WHERE id IN (SELECT id FROM perf_monitoring.snapshots ORDER BY id LIMIT 2)"
    )
    (kept_id,) = db.execute(f"SELECT {SQL_MARKER} max(id) FROM perf_monitoring.snapshots")[0]
    result = run_cli("collect", "--dsn", db.dsn, "--once", "--retention", "1d")
    assert result.exit_code == 0, result.output
    assert ", 2 old samples purged" in result.stdout
    assert snapshot_count(db) == 2
    # The kept sample still reads the statement whose row was stored by a purged one.
    assert db.execute(
        f"SELECT {SQL_MARKER} s.calls, s.snapshot_id < %s FROM perf_monitoring.statement_stats s "
        "JOIN perf_monitoring.statement_texts t USING (target, dbid, queryid) "
        "WHERE t.query = 'SELECT $1 AS stays_unmoved'",
        (kept_id,),
    ) == [(1, True)]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--target-dsn", "no-equals-sign"], "expected NAME=DSN"),
        (["--target-dsn", "=postgresql:///x"], "invalid target name"),
        (["--target-dsn", "a=postgresql:///x", "--target-dsn", "a=postgresql:///y"], "given twice"),
    ],
)
def test_bad_targets_are_usage_errors(args: list[str], expected: str) -> None:
    assert_usage_error(run_cli("collect", *args, "--once"), expected)


def test_once_with_no_target_reachable_is_a_connection_error(migrated_database: Database) -> None:
    """One round for cron that stores nothing says why and exits 2; a fleet where one target
    answers exits 0, its summary counting the failure."""
    gone = "postgresql://nobody@127.0.0.1:1/nothing"
    alone = run_cli("collect", "--target-dsn", f"gone={gone}", "--once")
    assert_usage_error(alone, "no target could be sampled: gone: no sample (cannot connect to")
    mixed = run_cli("collect", "--target-dsn", f"gone={gone}",
                    "--target-dsn", f"up={migrated_database.dsn}", "--once")  # fmt: skip
    assert mixed.exit_code == 0, mixed.output
    assert mixed.stdout.startswith("collected 1 samples (")
    assert ", 1 failed target reads," in mixed.stdout
    assert snapshot_count(migrated_database) == 1


def test_a_targets_file_names_each_target(tmp_path: Path) -> None:
    from dbtools.store.collector import Target, read_targets

    path = tmp_path / "targets.toml"
    path.write_text(
        '[[target]]\nname = "app"\ndsn = "postgresql://u@h/app"\n'
        '[[target]]\nname = "billing"\nservice = "billing"\n'
    )
    assert read_targets(path) == [
        Target("app", "postgresql://u@h/app"),
        Target("billing", "service=billing"),
    ]
    path.write_text('[[target]]\nname = "app"\n')
    assert_usage_error(
        run_cli("collect", "--targets", str(path), "--once"), "target 1: a name and either"
    )
