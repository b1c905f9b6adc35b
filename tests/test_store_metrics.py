"""Request and application metrics in a central store (``collect --store``): two databases on
two servers feed one store; each sample copies its target's ``request_metrics`` and
``app_metrics`` rows exactly once, late rows within the grace period; verify on the store gives
exactly the figures and verdict it gives on each target's own repository."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from dbtools.db.connection import SQL_MARKER
from dbtools.db.sandbox import Sandbox
from dbtools.report import ReportOptions, make_report
from dbtools.report.model import PeriodSummary
from dbtools.report.subjects import InspectionOptions
from dbtools.schema.latency import histogram
from dbtools.schema.revisions import upgrade
from dbtools.store import metrics_copy
from dbtools.store.collector import Target, TargetSampler
from dbtools.verify import verify
from dbtools.verify.canary import CanarySpec, verify_canary
from dbtools.verify.live import LIVE_CHECKS
from tests.conftest import Database, PgServer
from tests.helpers import assert_usage_error, run_cli
from tests.snapshot_helpers import INDEX_OPTIONS, REQUEST_STATEMENTS

GRACE_S = 60.0
# What each window's figures are compared on: everything its requests and statements give
# (its times and the database-wide counters differ: the two repositories' samples are read a
# few milliseconds apart, each writing to its own repository).
COMPARED = ("requests", "requests_source", "queries", "statements", "queries_per_request",
            "trusted", "problems", "p95_ms", "error_rate", "app_cache_hit_ratio")  # fmt: skip
REQUEST_COLUMNS = (
    "bucket_start, bucket_seconds, operation, variant, requests, errors, "
    "latency_p95_ms, cache_hits, cache_misses, queries, latency_histogram"
)
APP_COLUMNS = "recorded_at, name, value, labels"


def _execute(dsn: str, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []


@pytest.fixture
def fleet(
    pg_server: PgServer, migrated_database: Database, second_server: Sandbox
) -> Iterator[tuple[str, dict[str, str]]]:
    """A store (a migrated database) and two targets at head, by name: one on the session's
    server, one on a second server."""
    first = pg_server.create_database(
        pg_server.template("dbtools_test_migrated", lambda dsn: upgrade(dsn))
    )
    _execute(second_server.dsn(), "CREATE DATABASE app")
    upgrade(second_server.dsn("app"))
    try:
        yield migrated_database.dsn, {"near": pg_server.dsn(first), "far": second_server.dsn("app")}
    finally:
        pg_server.drop_database(first)


def _record(
    dsn: str, variant: str, requests: int, queries: int, p95_ms: float, age_s: float = 0.0
) -> None:
    """One request_metrics bucket of *variant* (an instant *age_s* seconds ago: its requests,
    a tenth of them errors, its *queries*) and one app_metrics row at that time."""
    _execute(
        dsn,
        f"INSERT {SQL_MARKER} INTO perf_monitoring.request_metrics ({REQUEST_COLUMNS}) "
        "VALUES (now() - make_interval(secs => %s), 0, 'flight_search', %s, %s, %s, %s, %s, %s, "
        "%s, %s)",
        (age_s, variant, requests, requests // 10, p95_ms, requests, requests, queries,
         histogram([p95_ms] * requests)),
    )  # fmt: skip
    _execute(
        dsn,
        f"INSERT {SQL_MARKER} INTO perf_monitoring.app_metrics ({APP_COLUMNS}) "
        "VALUES (now() - make_interval(secs => %s), 'kms_connection_reuse_ratio', 0.97, "
        """'{"pool": "kms"}')""",
        (age_s,),
    )


def _rows(dsn: str, table: str, columns: str, target: str | None = None) -> list[tuple[Any, ...]]:
    where = "WHERE target = %(target)s" if target else ""
    return sorted(_execute(dsn, f"SELECT {columns} FROM perf_monitoring.{table} {where}",
                           {"target": target}), key=repr)  # fmt: skip


def _window(samplers: list[TargetSampler], dsn: str, name: str, batch: int, requests: int) -> None:
    """Bracket *requests* requests served in batches of *batch* (three statements a batch) and
    their bucket (variant *name*) with samples NAME0 and NAME1 in each repository."""
    for sampler in samplers:
        sampler.sample(f"{name}0")
    # the bucket an instant well inside both repositories' windows (no end cuts it)
    time.sleep(0.2)
    sent = 3 * -(-requests // batch)
    _record(dsn, name, requests, sent, p95_ms=80.0 if batch > 1 else 120.0)
    with psycopg.connect(dsn, options=INDEX_OPTIONS, autocommit=True) as conn:
        for start in range(0, requests, batch):
            ids = list(range(start, min(start + batch, requests)))
            for statement in REQUEST_STATEMENTS:
                conn.execute(statement, {"ids": ids, "keys": [f"k{i}" for i in ids]})
    time.sleep(0.2)
    # ends in the reverse order: the own repository's writes to the target (its samples) stay
    # outside the store's window (they would be transactions no statement there explains)
    for sampler in reversed(samplers):
        sampler.sample(f"{name}1")


def _compared(result: dict[str, Any]) -> dict[str, Any]:
    windows = result["windows"]
    return {
        "verdict": result["verdict"],
        # the query rate is per second of the window: its status only
        "findings": [(f["check"], f["status"], f["value"] if f["check"] != "query_rate" else 0)
                     for f in result["findings"]],
        **{side: {key: windows[side].get(key) for key in COMPARED} for side in windows},
    }  # fmt: skip


# the columns only: no live inspection of the target
REPORT_OPTIONS = ReportOptions(inspection=InspectionOptions(sections=frozenset()))


def _period(period: PeriodSummary) -> tuple[Any, ...]:
    """A report column's figures from its requests and statements (not its times)."""
    return (period.requests, period.requests_source, period.queries, period.calls,
            period.queries_per_request, period.problems, period.app_cache_hit_ratio,
            period.p95_ms, period.error_rate)  # fmt: skip


def _own_and_store(central: dict[str, Any]) -> list[dict[str, Any]]:
    """A reader's keywords: the target's own repository, then the store's (*central*)."""
    return [{}, central]


def _judged(result: dict[str, Any]) -> dict[str, Any]:
    """``_compared`` but for the checks of the live objects."""
    found = _compared(result)
    found["findings"] = [f for f in found["findings"] if f[0] not in LIVE_CHECKS]
    return found


def test_two_servers_feed_one_store_and_verify_there_gives_each_targets_figures(
    fleet: tuple[str, dict[str, str]],
) -> None:
    store, targets = fleet
    for name, dsn in targets.items():
        own = TargetSampler(Target(name, dsn))
        central = TargetSampler(Target(name, dsn), store=store, metrics_grace_s=GRACE_S)
        try:
            _window([own, central], dsn, "per-request", batch=1, requests=40)
            _window([own, central], dsn, "batched", batch=10, requests=40)
        finally:
            own.close()
            central.close()
        # every row once, under the target's name
        for table, columns in (("request_metrics", REQUEST_COLUMNS),
                               ("app_metrics", APP_COLUMNS)):  # fmt: skip
            assert _rows(store, table, columns, name) == _rows(dsn, table, columns)
            assert len(_rows(store, table, columns, name)) == 2
        on_target = verify(dsn, "per-request0..per-request1", "batched0..batched1")
        on_store = verify(dsn, "per-request0..per-request1", "batched0..batched1",
                          target=name, store=store)  # fmt: skip
        assert _compared(on_store.as_dict()) == _compared(on_target.as_dict())
        windows = on_store.as_dict()["windows"]
        # the ground truth: 40 requests, 120 and 12 statements
        assert (windows["baseline"]["requests"], windows["baseline"]["queries"]) == (40, 120)
        assert (windows["candidate"]["requests"], windows["candidate"]["queries"]) == (40, 12)
        # a tenth of the requests failed: the error rate's rollback trigger, on both
        assert on_store.verdict == "rollback"
        # the store alone (no session to the target): the same figures and verdict, the checks
        # of the target's live objects skipped, saying why
        alone = verify(None, "per-request0..per-request1", "batched0..batched1",
                       target=name, store=store)  # fmt: skip
        live = [f for f in alone.findings if f.check in LIVE_CHECKS]
        assert live and all(f.status == "skipped" for f in live)
        assert all(f"target {name} is not known" in (f.because or "") for f in live)
        assert _judged(alone.as_dict()) == _judged(on_target.as_dict())
        # the report on the store: each column's request and statement figures, and verify's
        # verdict, as on the target
        reports = [make_report(dsn, baseline="per-request0..per-request1",
                               candidate="batched0..batched1", options=REPORT_OPTIONS,
                               **where)
                   for where in _own_and_store({"store": store, "sample_target": name})]  # fmt: skip
        on_own, on_central = ([_period(p) for p in r.periods] for r in reports)
        assert on_central == on_own
        assert [(p.requests, p.queries) for p in reports[1].periods] == [(40, 120), (40, 12)]
        verdicts = [(r.verification.verdict if r.verification else None) for r in reports]
        assert verdicts == ["rollback", "rollback"]
        # the canary over both variants' windows, the application's counts (request_metrics)
        spec = CanarySpec("per-request", "batched", "app")
        canaries = [verify_canary(dsn, "per-request0..batched1", spec, **where)
                    for where in _own_and_store({"store": store, "target": name})]  # fmt: skip
        own_variants, central_variants = (
            [(v.variant, v.requests, v.queries, v.queries_per_request, v.p95_ms, v.error_rate)
             for v in (c.baseline, c.candidate)]
            for c in canaries
        )  # fmt: skip
        assert central_variants == own_variants
        assert [v[1:3] for v in central_variants] == [(40, 120), (40, 12)]
        assert canaries[1].verdict == canaries[0].verdict


def test_rows_are_copied_once_late_ones_within_the_grace_period(
    fleet: tuple[str, dict[str, str]],
) -> None:
    store, targets = fleet
    dsn = targets["far"]
    central = TargetSampler(Target("far", dsn), store=store, metrics_grace_s=GRACE_S)

    def copied() -> list[int]:
        return [r[4] for r in _rows(store, "request_metrics", REQUEST_COLUMNS, "far")]

    try:
        _record(dsn, "batched", 7, 21, 80.0, age_s=1000.0)  # before any copy: taken all the same
        _record(dsn, "batched", 5, 15, 80.0)
        central.sample()
        assert sorted(copied()) == [5, 7]
        central.sample()
        assert sorted(copied()) == [5, 7]  # nothing twice
        # late: committed now for buckets before the latest copied one
        _record(dsn, "batched", 11, 33, 80.0, age_s=GRACE_S / 2)  # within the grace period
        _record(dsn, "batched", 13, 39, 80.0, age_s=2 * GRACE_S)  # older: not taken
        # two equal rows are two rows
        _execute(dsn, f"INSERT {SQL_MARKER} INTO perf_monitoring.request_metrics "
                      f"({REQUEST_COLUMNS}) SELECT {REQUEST_COLUMNS} "
                      "FROM perf_monitoring.request_metrics WHERE requests = 5")  # fmt: skip
        central.sample()
        central.sample()
    finally:
        central.close()
    assert sorted(copied()) == [5, 5, 7, 11]
    # the app_metrics rows alike (one per bucket recorded, by its time)
    assert len(_rows(store, "app_metrics", APP_COLUMNS, "far")) == 3


def test_reading_a_store_needs_no_target_and_names_the_store_at_fault(
    fleet: tuple[str, dict[str, str]], database: Database, tmp_path: Path
) -> None:
    store, targets = fleet
    sampler = TargetSampler(Target("far", targets["far"]), store=store)
    try:
        for label in ("a0", "a1", "b0", "b1"):
            sampler.sample(label)
    finally:
        sampler.close()
    windows = ("--baseline", "a0..a1", "--candidate", "b0..b1", "--format", "json")
    env = {"DATABASE_URL": "postgresql://nobody@/nowhere?host=/nonexistent"}
    # no --dsn: the store alone; the live checks skipped
    alone = run_cli("verify", "--store", store, "--target", "far", *windows, env=env)
    found = {(f["check"], f["status"]) for f in json.loads(alone.stdout)["findings"]}
    assert ("schema_at_head", "skipped") in found, alone.stdout
    # the targets file gives the target's DSN: the live checks are made
    listed = tmp_path / "targets.toml"
    listed.write_text(f"[[target]]\nname = 'far'\ndsn = '{targets['far']}'\n")
    checked = run_cli("verify", "--store", store, "--target", "far", "--targets", str(listed),
                      *windows, env=env)  # fmt: skip
    found = {(f["check"], f["status"]) for f in json.loads(checked.stdout)["findings"]}
    assert ("schema_at_head", "pass") in found, checked.stdout
    # the report on the store alone: the columns the target's DSN gives, and a note saying why
    # nothing was read from the target
    alone_report, with_target = (
        make_report(where, baseline="a0..a1", candidate="b0..b1", options=REPORT_OPTIONS,
                    store=store, sample_target="far")
        for where in (None, targets["far"])
    )  # fmt: skip
    assert [_period(p) for p in alone_report.periods] == [_period(p) for p in with_target.periods]
    assert any("Not read from the target" in note for note in alone_report.notes)
    written = tmp_path / "report.json"
    result = run_cli("report", "--store", store, "--target", "far", "--baseline", "a0..a1",
                     "--candidate", "b0..b1", "--format", "json", "-o", str(written), env=env)  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert with_target.verification is not None
    verdict = json.loads(written.read_text())["verification"]["verdict"]
    assert verdict == with_target.verification.verdict == "fail"  # no requests in the windows
    # an un-migrated store is the store's fault
    result = run_cli("verify", "--store", database.dsn, "--target", "far", *windows, env=env)
    line = assert_usage_error(result, "the store (host ")
    assert "has no monitoring tables" in line and database.name in line, line


def test_a_copy_refused_is_logged_and_the_sample_stored(
    fleet: tuple[str, dict[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    store, targets = fleet
    dsn = targets["near"]
    _record(dsn, "batched", 5, 15, 80.0)
    # a column the store's table requires is gone on the target: the store refuses the rows
    _execute(dsn, "ALTER TABLE perf_monitoring.request_metrics RENAME COLUMN errors TO failed")
    sampler = TargetSampler(Target("near", dsn), store=store)
    try:
        summary, _ = sampler.sample()
    finally:
        sampler.close()
    assert summary.target == "near"
    assert "request and app metrics not copied to the store" in caplog.text
    assert _rows(store, "request_metrics", REQUEST_COLUMNS, "near") == []


def test_a_backlog_is_caught_up_a_batch_a_sample(
    fleet: tuple[str, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, targets = fleet
    dsn = targets["near"]
    for age_s in (4000.0, 3000.0, 3000.0, 2000.0, 1000.0):  # two rows share their time
        _record(dsn, "batched", int(age_s // 1000), 3, 80.0, age_s=age_s)
    monkeypatch.setattr(metrics_copy, "ROWS_PER_COPY", 2)
    sampler = TargetSampler(Target("near", dsn), store=store, metrics_grace_s=GRACE_S)
    copied = []
    try:
        for _ in range(4):
            sampler.sample()
            copied.append(sorted(r[4] for r in _rows(store, "request_metrics", REQUEST_COLUMNS,
                                                     "near")))  # fmt: skip
    finally:
        sampler.close()
    assert copied == [[3, 4], [2, 3, 3, 4], [1, 2, 3, 3, 4], [1, 2, 3, 3, 4]]
