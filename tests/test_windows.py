"""Windows by time: ISO ends and ``last:10m`` parsed; the samples nearest inside the times asked;
untrusted with no sample near an end or a gap longer than twice the collection interval; the
exact times of the samples used printed by verify."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import pytest

from dbtools.db.connection import SQL_MARKER, connect
from dbtools.errors import UsageError
from dbtools.figures import windows
from dbtools.store.collector import Collector, Target
from tests.conftest import Database
from tests.helpers import run_cli
from tests.snapshot_helpers import run_requests, stored_windows, take

T = datetime(2026, 11, 30, 10, 0, tzinfo=timezone.utc)


def test_time_and_last_forms() -> None:
    ref = windows.parse_window("2026-11-30T10:00Z..2026-11-30T11:10:30+01:00")
    assert (ref.start_time, ref.end_time) == (
        T,
        datetime(2026, 11, 30, 10, 10, 30, tzinfo=timezone.utc),
    )
    assert ref.by_time
    assert windows.parse_window("2026-11-30 10:00..b").start_time == T  # no offset: UTC
    last = windows.parse_window("last:10m")
    assert (last.last_seconds, last.by_time) == (600, True)
    assert not windows.parse_window("a..b").by_time
    for bad, message in (
        ("2026-11-30T10:10Z..2026-11-30T10:00Z", "its end is not after its start"),
        ("2026-13-30T10:00Z..b", "invalid time"),
        ("last:soon", "is not a duration"),
    ):
        with pytest.raises(UsageError, match=message):
            windows.parse_window(bad)
    with pytest.raises(UsageError, match="reads as a time"):
        windows.validate_label("2026-11-30T10:00Z")


def _samples_at(db: Database, offsets_s: list[int], base: datetime) -> list[datetime]:
    """Collected samples (interval 60 s), moved to *base* + each offset."""
    with Collector([Target(db.name, db.dsn)], interval_s=60) as collector:
        collector.open_all()
        for _ in offsets_s:
            collector.run(rounds=1)
    moments = [base + timedelta(seconds=s) for s in offsets_s]
    ids = [
        i
        for (i,) in db.execute(f"SELECT {SQL_MARKER} id FROM perf_monitoring.snapshots ORDER BY id")
    ]
    for sample_id, moment in zip(ids, moments, strict=True):
        db.execute(
            f"UPDATE {SQL_MARKER} perf_monitoring.snapshots SET taken_at = %s WHERE id = %s",
            (moment, sample_id),
        )
    return moments


def _problems(db: Database, reference: str) -> tuple[tuple[str, ...], datetime, datetime]:
    with connect(db.dsn, autocommit=True) as conn:
        (window,) = stored_windows(conn, reference)
    return window.problems, window.start.taken_at, window.end.taken_at


def test_a_window_by_time_uses_the_samples_inside_and_judges_their_coverage(
    migrated_database: Database,
) -> None:
    db = migrated_database
    at = _samples_at(db, [0, 60, 120, 360], T)  # a gap of 4 minutes after 10:02

    def iso(moment: datetime) -> str:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

    # 10:00:00..10:02:05: the samples at 10:00 and 10:02, nothing missing.
    problems, start, end = _problems(db, f"{iso(T)}..{iso(at[2] + timedelta(seconds=5))}")
    assert (problems, start, end) == ((), at[0], at[2])
    # 09:59:30..10:02:30: the same samples, each end within twice the interval of its time,
    # but two minutes of three observed.
    problems, start, end = _problems(
        db, f"{iso(T - timedelta(seconds=30))}..{iso(at[2] + timedelta(seconds=30))}"
    )
    assert (start, end) == (at[0], at[2])
    assert problems == (
        "its samples cover 66.7% of it (2m 0s of 3m 0s, from 2026-11-30 10:00:00 to "
        "2026-11-30 10:02:00 UTC; at least 90% needed): what happened in the rest was not "
        "observed",
    )
    problems, start, end = _problems(db, f"{iso(T)}..{iso(at[3])}")
    assert (start, end) == (at[0], at[3])
    assert problems == (
        "a gap of 4m 0s between samples at 2026-11-30 10:02:00 and 2026-11-30 10:06:00 UTC "
        "(more than twice the collection interval, 60 s): the collector missed samples",
    )
    problems, _, end = _problems(db, f"{iso(T)}..{iso(T + timedelta(minutes=10))}")
    assert end == at[3]
    assert (
        "no sample at the end: the last inside the window is 4m 0s before 2026-11-30 10:10:00 "
        "UTC (more than twice the collection interval, 60 s)"
    ) in problems
    with pytest.raises(UsageError, match=r"no two samples .* between 2026-11-30 10:07:00"):
        _problems(db, f"{iso(T + timedelta(minutes=7))}..{iso(T + timedelta(minutes=9))}")


def test_verify_prints_the_samples_used_and_last_10m_of_a_fresh_collector_is_untrusted(
    migrated_database: Database,
) -> None:
    db = migrated_database
    (now,) = db.execute(f"SELECT {SQL_MARKER} now()")[0]
    hour_ago = _samples_at(db, [0, 60], now - timedelta(hours=1))
    with Collector([Target(db.name, db.dsn)], interval_s=60) as collector:
        collector.open_all()
        collector.run(rounds=1)
        collector.run(rounds=1)  # two rounds, without waiting the interval
    fresh = [t for (t,) in db.execute(
        f"SELECT {SQL_MARKER} taken_at FROM perf_monitoring.snapshots ORDER BY id OFFSET 2")]  # fmt: skip
    window = f"{hour_ago[0].isoformat()}..{hour_ago[1].isoformat()}"
    result = run_cli("verify", "--dsn", db.dsn, "--baseline", window, "--candidate", "last:10m",
                     "--format", "json")  # fmt: skip
    assert result.stdout, result.stderr
    document = json.loads(result.stdout)
    baseline, candidate = document["windows"]["baseline"], document["windows"]["candidate"]
    assert (baseline["started_at"], baseline["ended_at"]) == tuple(t.isoformat() for t in hour_ago)
    assert (candidate["started_at"], candidate["ended_at"]) == tuple(t.isoformat() for t in fresh)
    assert not any("collection interval" in p for p in baseline["problems"])
    # The collector started a moment ago: nothing covers the first ten minutes asked.
    assert any(p.startswith("no sample at the start: the first inside the window is ")
               for p in candidate["problems"])  # fmt: skip
    assert candidate["trusted"] is False and result.exit_code == 1
    table = run_cli("verify", "--dsn", db.dsn, "--baseline", window, "--candidate", "last:10m")
    clock = f"{hour_ago[0].astimezone(timezone.utc):%Y-%m-%d %H:%M:%S}"
    assert "samples used (UTC)" in table.stdout and clock in table.stdout


def test_last_10m_answered_by_an_8_second_labelled_pair_is_untrusted_with_its_coverage(
    migrated_database: Database,
) -> None:
    """The only samples of the last ten minutes are a labelled pair 8 s apart (no collector):
    the window they answer covers 1.3% of the time asked, and verify says so (exit 1)."""
    db = migrated_database
    (now,) = db.execute(f"SELECT {SQL_MARKER} now()")[0]
    hour_ago = _samples_at(db, [0, 60], now - timedelta(hours=1))
    take(db, "pair:start")
    run_requests(db, 8)
    time.sleep(8)
    take(db, "pair:end", 8)
    result = run_cli("verify", "--dsn", db.dsn, "--baseline",
                     f"{hour_ago[0].isoformat()}..{hour_ago[1].isoformat()}",
                     "--candidate", "last:10m", "--format", "json")  # fmt: skip
    document = json.loads(result.stdout)
    candidate = document["windows"]["candidate"]
    assert 8 <= candidate["seconds"] < 9.5
    (problem,) = [p for p in candidate["problems"] if p.startswith("its samples cover")]
    covered = candidate["seconds"] / 600
    assert problem.startswith(f"its samples cover {covered:.1%} of it (8s of 10m 0s, from ")
    assert problem.endswith("at least 90% needed): what happened in the rest was not observed")
    assert candidate["trusted"] is False and document["verdict"] == "fail"
    assert result.exit_code == 1
    # The same pair asked by its labels is the window it is: nothing asked went unobserved.
    with connect(db.dsn, autocommit=True) as conn:
        (pair,) = stored_windows(conn, "pair")
    assert not any(p.startswith("its samples cover") for p in pair.problems)
    # A setting: half of the time asked is enough (still untrusted here, at 1.3%).
    with connect(db.dsn, autocommit=True) as conn:
        (loose,) = stored_windows(conn, "last:10m", min_coverage=0.5)
    assert any("at least 50% needed" in p for p in loose.problems)


def test_the_coverage_boundary(migrated_database: Database) -> None:
    """Samples spanning exactly 90% of the time asked pass; a second less does not."""
    db = migrated_database
    at = _samples_at(db, [0, 90], T)

    def window(seconds: float) -> tuple[str, ...]:
        end = T + timedelta(seconds=seconds)
        return _problems(db, f"{T.isoformat()}..{end.isoformat()}")[0]

    assert window(100) == ()  # 90 of 100 s
    (problem,) = window(101)  # 90 of 101 s: 89.1%
    assert problem.startswith("its samples cover 89.1% of it (1m 30s of 1m 41s, from ")
    assert at[1] == T + timedelta(seconds=90)
