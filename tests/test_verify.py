"""Verify against ground truth: workloads whose exact query counts are known, windows that
cannot be trusted, and one failing finding per broken object."""

from __future__ import annotations

import json
import time
from pathlib import Path

import psycopg
import pytest

from dbtools.figures.sums import Scope
from dbtools.figures.windows import window_labels
from dbtools.metrics import MetricsRecorder
from dbtools.schema.manifest import head_revision
from dbtools.sqltext.parse import TableRef
from dbtools.store import snapshots
from dbtools.verify import VerifyResult, verify
from dbtools.verify.thresholds import Thresholds
from tests.conftest import Database
from tests.helpers import run_cli
from tests.snapshot_helpers import REQUEST_STATEMENTS, record_metrics, run_requests, window

# Short test windows: keep the query-rate check out of the way where it is not under test.
RELAXED = Thresholds(critical_query_rate=1e9)


def _verify(db: Database, **kwargs: object) -> VerifyResult:
    kwargs.setdefault("thresholds", RELAXED)
    return verify(db.dsn, "before", "after", **kwargs)  # type: ignore[arg-type]


def _statuses(result: VerifyResult, check: str) -> dict[str, str]:
    return {f.subject: f.status for f in result.findings if f.check == check}


def _rollout(db: Database, requests: int = 20, batch: int = 10, **kwargs: object) -> None:
    """A baseline window on the per-request path, a candidate window on the batched path."""
    window(db, "before", requests, **kwargs)  # type: ignore[arg-type]
    window(db, "after", requests, batch=batch, **kwargs)  # type: ignore[arg-type]
    for label in ("before", "after"):
        record_metrics(db, label, requests=requests)


@pytest.mark.parametrize(("requests", "batch"), [(20, 10), (30, 5), (50, 50)])
def test_ground_truth_queries_per_request_and_reduction(
    migrated_database: Database, requests: int, batch: int
) -> None:
    db = migrated_database
    k = len(REQUEST_STATEMENTS)
    baseline_sent = window(db, "before", requests)
    candidate_sent = window(db, "after", requests, batch=batch)
    result = _verify(db)
    assert baseline_sent == requests * k and candidate_sent == -(-requests // batch) * k
    assert result.baseline.counts.queries == requests * k
    assert result.baseline.queries_per_request == k
    assert result.candidate.counts.queries == candidate_sent
    assert result.candidate.queries_per_request == pytest.approx(candidate_sent / requests)
    assert result.reduction == pytest.approx(1 - (candidate_sent / requests) / k)
    assert result.baseline.counts.statements == result.candidate.counts.statements == k
    assert result.baseline.counts.transaction_calls == 0


def test_guide_scenario_passes_and_exits_0(migrated_database: Database, tmp_path: Path) -> None:
    """Ten concurrent requests: thirty queries become three (90% fewer), every object healthy."""
    db = migrated_database
    window(db, "before", 10)
    window(db, "after", 10, batch=10, pause=0.3)  # 3 queries in >= 0.3 s: under 50/s
    for label in ("before", "after"):
        record_metrics(db, label, requests=10, p95_ms=180, cache_hits=60, cache_misses=40)
    result = run_cli("verify", "--dsn", db.dsn, "--baseline", "before", "--candidate", "after")
    assert result.exit_code == 0, result.output
    assert "verdict: PASS (exit code 0)" in result.stdout
    assert "query reduction: 90.0%" in result.stdout
    assert "3.00 -> 0.30 queries per request" in result.stdout
    as_json = run_cli("verify", "--dsn", db.dsn, "--baseline", "before:start..before:end",
                      "--candidate", "after", "--format", "json")  # fmt: skip
    document = json.loads(as_json.stdout)
    assert as_json.exit_code == 0
    assert document["schema_version"] == 1 and document["kind"] == "verify"
    assert document["verdict"] == "pass"
    assert document["windows"]["baseline"]["queries"] == 30
    assert document["windows"]["candidate"]["queries"] == 3
    assert document["query_reduction"] == pytest.approx(0.9)
    assert {f["status"] for f in document["findings"]} == {"pass"}
    # The JSON contract (schema_version 1): these keys, no fewer (kind, mode, and the findings'
    # fix, source, location and because, were added within the version).
    assert sorted(document) == [
        "database",
        "definitions",
        "exit_code",
        "findings",
        "kind",
        "mode",
        "query_reduction",
        "schema_version",
        "scope",
        "thresholds",
        "verdict",
        "windows",
    ]
    assert sorted(document["windows"]["candidate"]) == sorted(
        [
            "name",
            "start",
            "end",
            "started_at",
            "ended_at",
            "seconds",
            "trusted",
            "problems",
            "notes",
            "requests",
            "requests_source",
            "queries",
            "statements",
            "transaction_calls",
            "nested_calls",
            "hidden_calls",
            "queries_per_request",
            "query_rate",
            "buffer_cache_hit_ratio",
            "index_hit_ratio",
            "app_cache_hit_ratio",
            "p95_ms",
            "error_rate",
            "nested_per_request",
            "exec_time_per_request_ms",
            # added within schema version 1: the p95's interval and source, the worst
            # second's, and the requests' bounds at the window's edges
            "p95_low_ms",
            "p95_estimated",
            "p95_worst_second_ms",
            "requests_bounds",
            "edge_error",
        ]
    )
    assert sorted(document["findings"][0]) == [
        "because",
        "check",
        "fix",
        "location",
        "message",
        "source",
        "status",
        "subject",
        "threshold",
        "value",
    ]


def test_transaction_control_is_shown_apart(migrated_database: Database) -> None:
    db = migrated_database
    window(db, "before", 12, transactions=True)
    window(db, "after", 12, batch=4, transactions=True)
    result = _verify(db)
    # psycopg sends BEGIN before and COMMIT after each batch: shown, never counted as queries.
    assert result.baseline.counts.transaction_calls == 2 * 12
    assert result.candidate.counts.transaction_calls == 2 * 3
    assert result.baseline.counts.queries == 36 and result.candidate.counts.queries == 9


def test_requests_from_request_metrics(migrated_database: Database) -> None:
    db = migrated_database
    window(db, "before", 20, record_requests=False)
    window(db, "after", 20, batch=10, record_requests=False)
    record_metrics(db, "before", requests=20)
    record_metrics(db, "after", requests=12, operation="flight_search")
    record_metrics(db, "after", requests=8, operation="booking")
    result = _verify(db)
    assert result.baseline.requests_source == "request_metrics"
    assert result.baseline.requests == 20 and result.candidate.requests == 20
    assert result.reduction == pytest.approx(0.9)
    narrowed = _verify(db, operation="flight_search")
    assert narrowed.candidate.requests == 12
    assert narrowed.candidate.queries_per_request == pytest.approx(6 / 12)


def test_zero_requests_is_untrusted(migrated_database: Database) -> None:
    db = migrated_database
    window(db, "before", 6, record_requests=False)
    window(db, "after", 6, batch=3)
    result = _verify(db)
    assert result.verdict == "fail"
    assert not result.baseline.trusted
    assert "zero requests" in result.baseline.problems[0]
    assert _statuses(result, "query_reduction") == {"queries per request": "untrusted"}


def test_scope_by_role_and_table(migrated_database: Database) -> None:
    db = migrated_database
    role = f"{db.name}_app"
    db.execute(f"CREATE ROLE {role} LOGIN")
    db.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
    try:
        for label, batch in (("before", 1), ("after", 5)):
            start, end = window_labels(label)
            snapshots.snapshot(db.dsn, start)
            run_requests(db, 10, batch=batch, user=role)
            run_requests(db, 7)  # another role's traffic, same statements
            snapshots.snapshot(db.dsn, end, requests=10)
        everyone = _verify(db)
        app_only = _verify(db, scope=Scope(roles=frozenset({role})))
        offers = _verify(db, scope=Scope(roles=frozenset({role}),
                                         tables=frozenset({TableRef.parse("public.flight_offers")})))  # fmt: skip
    finally:
        db.execute(f"DROP OWNED BY {role}")
        db.execute(f"DROP ROLE {role}")
    assert everyone.baseline.counts.queries == 3 * 10 + 3 * 7
    assert app_only.baseline.counts.queries == 30 and app_only.candidate.counts.queries == 6
    assert app_only.reduction == pytest.approx(0.8)
    assert offers.baseline.counts.queries == 10 and offers.candidate.counts.queries == 2


def test_reset_inside_a_window_is_untrusted(migrated_database: Database) -> None:
    db = migrated_database
    window(db, "before", 10)
    start, end = window_labels("after")
    snapshots.snapshot(db.dsn, start)
    run_requests(db, 10, batch=10)
    db.execute("SELECT pg_stat_statements_reset()")
    run_requests(db, 10, batch=10)
    snapshots.snapshot(db.dsn, end, requests=10)
    record_metrics(db, "before", requests=10)
    record_metrics(db, "after", requests=10)
    result = run_cli("verify", "--dsn", db.dsn, "--baseline", "before", "--candidate", "after")
    assert result.exit_code == 1, result.output
    assert "pg_stat_statements was reset inside the window" in result.stdout
    document = json.loads(run_cli("verify", "--dsn", db.dsn, "--baseline", "before",
                                  "--candidate", "after", "--format", "json").stdout)  # fmt: skip
    assert document["verdict"] == "fail"
    assert document["windows"]["candidate"]["trusted"] is False
    assert document["windows"]["baseline"]["trusted"] is True
    statuses = {(f["check"], f["subject"]): f["status"] for f in document["findings"]}
    assert statuses[("query_reduction", "queries per request")] == "untrusted"
    assert statuses[("window", "candidate")] == "untrusted"


def test_windows_from_different_databases_are_untrusted(
    migrated_database: Database, pg_server: object
) -> None:
    db = migrated_database
    window(db, "before", 10)
    window(db, "after", 10, batch=10)
    # Pretend the candidate's end was taken elsewhere: same labels, another database's oid.
    db.execute("UPDATE perf_monitoring.snapshots SET database_oid = (database_oid::bigint + 1)::oid, "
               "database_name = 'elsewhere' WHERE label = 'after:end'")  # fmt: skip
    result = _verify(db)
    assert result.verdict == "fail"
    assert any("different databases" in p for p in result.candidate.problems)


@pytest.mark.parametrize(
    ("breakage", "check", "subject", "expected"),
    [
        ("UPDATE pg_index SET indisvalid = false "
         "WHERE indexrelid = 'public.ix_flight_offers_trip_expiry'::regclass",
         "batch_indexes", "public.ix_flight_offers_trip_expiry", "invalid"),
        ("DROP INDEX public.ix_trip_requests_active_batch",
         "batch_indexes", "public.ix_trip_requests_active_batch", "missing"),
        ("ALTER TABLE public.flight_search_cache SET (autovacuum_vacuum_scale_factor = 0.2)",
         "autovacuum_settings", "public.flight_search_cache",
         "autovacuum_vacuum_scale_factor = 0.2, expected 0.02"),
        ("ALTER TABLE public.trip_requests RESET (autovacuum_analyze_scale_factor)",
         "autovacuum_settings", "public.trip_requests",
         "autovacuum_analyze_scale_factor = (unset), expected 0.02"),
        ("UPDATE public.alembic_version SET version_num = '0002'",
         "schema_at_head", "alembic_version", f"at 0002, head is {head_revision()}"),
        ("DROP TABLE perf_monitoring.app_metrics",
         "monitoring_tables", "perf_monitoring", "missing: app_metrics"),
    ],
)  # fmt: skip
def test_each_broken_object_fails_verify_by_name(
    migrated_database: Database, tmp_path: Path, breakage: str, check: str, subject: str,
    expected: str,
) -> None:  # fmt: skip
    db = migrated_database
    _rollout(db)
    healthy = _verify(db)
    assert healthy.verdict == "pass", [f for f in healthy.findings if f.status != "pass"]
    db.execute(breakage)
    result = run_cli("verify", "--dsn", db.dsn, "--baseline", "before", "--candidate", "after",
                     "--format", "json", "--config", str(_relaxed_config(tmp_path)))  # fmt: skip
    assert result.exit_code == 1, result.output
    # work_per_request's warning compares database time per request, which a loaded machine
    # can tip (it never fails the gate); every other finding is exact.
    failing = [f for f in json.loads(result.stdout)["findings"]
               if f["status"] != "pass" and f["check"] != "work_per_request"]  # fmt: skip
    assert [(f["check"], f["subject"], f["status"]) for f in failing] == [(check, subject, "fail")]
    assert expected in failing[0]["message"]


def _relaxed_config(directory: Path) -> Path:
    path = directory / "relaxed.toml"
    path.write_text("[verify]\ncritical_query_rate = 1e9\n")
    return path


def test_unused_batch_index_fails_verify_by_name(migrated_database: Database) -> None:
    db = migrated_database
    without_cache = REQUEST_STATEMENTS[:2]
    window(db, "before", 10, statements=without_cache)
    window(db, "after", 10, batch=10, statements=without_cache)
    for label in ("before", "after"):
        record_metrics(db, label, requests=10)
    result = _verify(db)
    failing = [(f.subject, f.status, f.message) for f in result.findings if f.status != "pass"]
    assert failing == [("public.ix_flight_search_cache_key_expiry", "fail",
                        "valid but unused: 0 scans in the candidate window")]  # fmt: skip
    assert result.exit_code == 1


@pytest.mark.parametrize(
    ("metrics", "check", "status", "exit_code"),
    [
        # The window's p95 is the upper bound of its histogram bucket (schema.latency): 279 ms
        # reads 279.2 ms, 300 ms reads 304.4 ms (never less than the p95)
        ({"p95_ms": 279.0}, "p95_latency", "pass", 0),
        ({"p95_ms": 300.0}, "p95_latency", "fail", 1),
        ({"p95_ms": 501.0}, "p95_latency", "critical", 1),
        ({"p95_ms": 1001.0}, "p95_latency", "rollback", 3),
        ({"errors": 1}, "error_rate", "fail", 1),  # 1% of 100
        ({"errors": 6}, "error_rate", "rollback", 3),  # 6%
        ({"cache_hits": 39, "cache_misses": 61}, "app_cache_hit_ratio", "fail", 1),
        ({"cache_hits": 25, "cache_misses": 75}, "app_cache_hit_ratio", "fail", 1),
        ({"cache_hits": 19, "cache_misses": 81}, "app_cache_hit_ratio", "rollback", 3),
        ({"cache_hits": 0, "cache_misses": 0}, "app_cache_hit_ratio", "no data", 1),
    ],
)
def test_request_metric_thresholds(
    migrated_database: Database, metrics: dict[str, float], check: str, status: str,
    exit_code: int,
) -> None:  # fmt: skip
    db = migrated_database
    window(db, "before", 100)
    window(db, "after", 100, batch=100)
    record_metrics(db, "before", requests=100)
    record_metrics(db, "after", requests=100, **metrics)  # type: ignore[arg-type]
    result = _verify(db)
    assert _statuses(result, check) == {next(f.subject for f in result.findings
                                             if f.check == check): status}  # fmt: skip
    assert result.exit_code == exit_code


def test_query_rate_is_critical_above_50_per_second(migrated_database: Database) -> None:
    db = migrated_database
    _rollout(db, requests=400, batch=2)  # 600 queries in well under a few seconds
    result = verify(db.dsn, "before", "after")
    assert _statuses(result, "query_rate") == {"database query rate": "critical"}
    assert result.candidate.query_rate is not None and result.candidate.query_rate > 50
    assert result.verdict == "fail"


def test_thresholds_from_config_change_the_verdict(
    migrated_database: Database, tmp_path: Path
) -> None:
    db = migrated_database
    _rollout(db, requests=20, batch=4)  # 3 -> 0.75 queries per request: 75% fewer
    config = tmp_path / "verify.toml"
    config.write_text("[verify]\ncritical_query_rate = 1e9\n")
    strict = run_cli("verify", "--dsn", db.dsn, "--baseline", "before", "--candidate", "after",
                     "--config", str(config))  # fmt: skip
    assert strict.exit_code == 1 and "75.0% fewer (needs >= 85.0%)" in strict.stdout
    config.write_text("[verify]\ncritical_query_rate = 1e9\nmin_query_reduction = 0.7\n")
    lenient = run_cli("verify", "--dsn", db.dsn, "--baseline", "before", "--candidate", "after",
                      "--config", str(config))  # fmt: skip
    assert lenient.exit_code == 0, lenient.stdout


# -- the application's own count of its statements, reconciled (issue 22) ----------------------


def test_late_request_metrics_are_caught_by_the_applications_own_count(
    migrated_database: Database,
) -> None:
    """The application counts its statements (``dbtools.metrics``) and has not written its last
    bucket when verify runs: the window's requests are short by a bucket, its queries per
    request too high. Its own count of its statements falls as short, and says so; once the
    bucket is written, the counts agree and the window is trusted."""
    db = migrated_database
    window(db, "before", 30)
    record_metrics(db, "before", requests=30)
    start, end = window_labels("after")
    snapshots.snapshot(db.dsn, start)
    time.sleep(0.1)  # the first bucket starts certainly inside the window
    recorder = MetricsRecorder(db.dsn, operation="search", bucket_seconds=1,
                               flush_interval_s=None)  # fmt: skip
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        recorder.instrument_psycopg(conn)
        began = time.monotonic()
        while time.monotonic() - began < 2.5:
            with recorder.request():
                for statement in REQUEST_STATEMENTS:
                    conn.execute(statement, {"ids": [1], "keys": ["k1"]})
            time.sleep(0.01)
    recorder.flush()  # the buckets whose time is over; the last one is still open
    time.sleep(1.05)  # …and closes inside the window, unwritten
    snapshots.snapshot(db.dsn, end)
    late = _verify(db)
    (problem,) = late.candidate.problems
    assert problem.startswith("the application's request metrics count ")
    assert " fewer (" in problem and problem.endswith(
        "request metrics late, missing or not the window's, statements sent outside requests, "
        "or another application's statements (narrow with --role)"
    )
    assert late.verdict == "fail"
    recorder.close()  # the last bucket written
    on_time = _verify(db)
    assert on_time.candidate.trusted, on_time.candidate.problems
    queries = on_time.candidate.counts.queries
    assert on_time.candidate.requests is not None and queries == 3 * on_time.candidate.requests
    # Narrowed to one operation, the application's count covers that operation only: not judged.
    narrowed = _verify(db, operation="search")
    assert not any(p.startswith("the application's") for p in narrowed.candidate.problems)
