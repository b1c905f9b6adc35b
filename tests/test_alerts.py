"""Grafana alert rules (``dbtools dashboard --alerts``): the provisioning document's schema, and
every rule's SQL run on a real migrated database over a fixed time range, its condition
evaluated as Grafana does (the query's value per series, the threshold expression on it), with
data exactly at each threshold (must not fire), just past it (must fire) and outside the rule's
span (must not count)."""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from psycopg.types.json import Jsonb

from dbtools.grafana.alerts import alert_provisioning
from dbtools.grafana.dashboard import (
    DASHBOARD_UID,
    DATASOURCE_TYPE,
    KMS_REUSE_METRIC,
    MEMORY_USAGE_METRIC,
    dashboard,
)
from dbtools.metrics.buckets import percentile
from dbtools.schema.latency import histogram, histogram_percentile, weighted_percentile
from dbtools.store import snapshots
from dbtools.verify.thresholds import Thresholds
from tests.conftest import Database
from tests.helpers import assert_usage_error, run_cli
from tests.snapshot_helpers import run_requests

DATASOURCE_UID = "pg-main"
# The end of the fixed time range every rule is evaluated over ("now" for Grafana).
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
MB = 2**20
UID = re.compile(r"[A-Za-z0-9_-]{1,40}")
DURATION = re.compile(r"\d+[smhd]")
# Grafana expands $VAR in provisioned titles, labels and annotations: only its macros may use $.
GRAFANA_MACRO = re.compile(r"\$__time(Filter\([^)]*\)|From\(\)|To\(\))")
THRESHOLD_TESTS: dict[str, Callable[[float, float], bool]] = {
    "gt": operator.gt,
    "lt": operator.lt,
}


def rules_by_uid(thresholds: Thresholds | None = None) -> dict[str, dict[str, Any]]:
    document = alert_provisioning(thresholds, datasource_uid=DATASOURCE_UID)
    return {rule["uid"]: rule for group in document["groups"] for rule in group["rules"]}


# -- the provisioning document ------------------------------------------------------------------


def test_document_has_grafanas_required_keys_and_a_valid_chain_per_rule() -> None:
    document = alert_provisioning(datasource_uid=DATASOURCE_UID)
    assert document["apiVersion"] == 1
    (group,) = document["groups"]
    assert {"orgId", "name", "folder", "interval", "rules"} <= group.keys()
    assert group["name"] and group["folder"] and DURATION.fullmatch(group["interval"])
    uids = [rule["uid"] for rule in group["rules"]]
    assert len(uids) == len(set(uids)) == 9
    for rule in group["rules"]:
        required = {"uid", "title", "condition", "data", "noDataState", "execErrState", "for",
                    "labels", "annotations"}  # fmt: skip
        assert required <= rule.keys(), rule["uid"]
        assert UID.fullmatch(rule["uid"]) and rule["title"]
        assert rule["noDataState"] in {"Alerting", "NoData", "OK", "KeepLast"}
        assert rule["execErrState"] in {"Alerting", "Error", "OK", "KeepLast"}
        assert DURATION.fullmatch(rule["for"])
        assert rule["labels"]["severity"] in {"critical", "warning", "rollback"}
        assert rule["annotations"]["summary"]
        for text in [rule["title"], *rule["labels"].values(), *rule["annotations"].values()]:
            assert "$" not in text, (rule["uid"], text)
        # The refId chain: unique ids, the condition is one, every expression reads an
        # earlier one, every query is read (nothing dangles), queries name the data source.
        refs = [query["refId"] for query in rule["data"]]
        assert len(refs) == len(set(refs)) and rule["condition"] in refs
        read: set[str] = set()
        for position, query in enumerate(rule["data"]):
            model = query["model"]
            assert model["refId"] == query["refId"]
            if query["datasourceUid"] == "__expr__":
                assert model["type"] == "threshold"
                assert model["expression"] in refs[:position], rule["uid"]
                read.add(model["expression"])
                (condition,) = model["conditions"]
                assert condition["evaluator"]["type"] in THRESHOLD_TESTS
                assert len(condition["evaluator"]["params"]) == 1
            else:
                assert query["datasourceUid"] == DATASOURCE_UID
                assert model["datasource"] == {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID}
                assert model["format"] == "table" and model["rawQuery"] is True
                span = query["relativeTimeRange"]
                assert span["from"] > span["to"] == 0
                assert GRAFANA_MACRO.search(model["rawSql"])
                assert "$" not in GRAFANA_MACRO.sub("", model["rawSql"])
        assert set(refs) - read == {rule["condition"]}, rule["uid"]


def test_rules_are_the_guides_alerts_with_verifys_thresholds() -> None:
    summary = {
        uid: (
            rule["labels"]["severity"],
            rule["data"][-1]["model"]["conditions"][0]["evaluator"]["type"],
            rule["data"][-1]["model"]["conditions"][0]["evaluator"]["params"][0],
            rule["data"][0]["relativeTimeRange"]["from"],
        )
        for uid, rule in rules_by_uid().items()
    }
    assert summary == {
        "dbtools-critical-error-rate": ("critical", "gt", 0.05, 300),
        "dbtools-critical-p95": ("critical", "gt", 500, 300),
        "dbtools-critical-query-rate": ("critical", "gt", 50, 300),
        "dbtools-warning-cache-hit-ratio": ("warning", "lt", 0.30, 300),
        "dbtools-warning-memory-growth": ("warning", "gt", 100, 1800),
        "dbtools-warning-kms-reuse": ("warning", "lt", 0.60, 300),
        "dbtools-rollback-error-rate": ("rollback", "gt", 0.05, 300),
        "dbtools-rollback-p95": ("rollback", "gt", 1000, 300),
        "dbtools-rollback-cache-hit-ratio": ("rollback", "lt", 0.20, 300),
    }
    tuned = rules_by_uid(Thresholds(critical_p95_ms=400, warning_kms_reuse_ratio=0.5))
    assert tuned["dbtools-critical-p95"]["data"][1]["model"]["conditions"][0]["evaluator"][
        "params"] == [400]  # fmt: skip
    assert tuned["dbtools-warning-kms-reuse"]["data"][1]["model"]["conditions"][0]["evaluator"][
        "params"] == [0.5]  # fmt: skip


def test_rules_link_the_dashboard_panel_showing_their_figure() -> None:
    titles = {panel["id"]: panel["title"] for panel in dashboard()["panels"]}
    linked = {
        uid: titles[rule["panelId"]]
        for uid, rule in rules_by_uid().items()
        if rule.get("dashboardUid") == DASHBOARD_UID
    }
    assert linked == {
        "dbtools-critical-error-rate": "Error rate",
        "dbtools-critical-p95": "Response time p95",
        "dbtools-critical-query-rate": "Database query rate",
        "dbtools-warning-cache-hit-ratio": "App cache hit ratio",
        "dbtools-warning-kms-reuse": "KMS connection reuse ratio",
        "dbtools-rollback-error-rate": "Error rate",
        "dbtools-rollback-p95": "Response time p95",
        "dbtools-rollback-cache-hit-ratio": "App cache hit ratio",
    }


# -- the rules on a real database ----------------------------------------------------------------


def expand_macros(sql: str, start: datetime, end: datetime) -> str:
    """Grafana's time macros as its PostgreSQL data source expands them for [start, end]."""
    first, last = (f"'{moment:%Y-%m-%dT%H:%M:%SZ}'" for moment in (start, end))
    sql = re.sub(r"\$__timeFilter\(([^)]+)\)", rf"\1 BETWEEN {first} AND {last}", sql)
    return sql.replace("$__timeFrom()", first).replace("$__timeTo()", last)


def series(db: Database, rule: dict[str, Any], now: datetime = NOW) -> dict[str, float]:
    """The value of each series *rule*'s query gives when Grafana evaluates it at *now*: the
    query runs over its relative time range; a row's text columns are its labels (here one, or
    none: "(value)"), its one number the value."""
    data = {query["refId"]: query for query in rule["data"]}
    source = data[data[rule["condition"]]["model"]["expression"]]
    span = source["relativeTimeRange"]
    sql = expand_macros(
        source["model"]["rawSql"],
        now - timedelta(seconds=span["from"]),
        now - timedelta(seconds=span["to"]),
    )
    result: dict[str, float] = {}
    for row in db.execute(sql):
        labels = [value for value in row if isinstance(value, str)]
        (value,) = [value for value in row if isinstance(value, float)]
        assert len(labels) + 1 == len(row), row
        if len(labels) > 1 and db.name in labels:
            # the target label of the test database's own rows (naming none): keyed without it
            labels.remove(db.name)
        result[" ".join(labels) or "(value)"] = value
    return result


def evaluate(db: Database, rule: dict[str, Any], now: datetime = NOW) -> dict[str, bool]:
    """Per series, whether *rule*'s condition (the threshold expression on its query) fires."""
    data = {query["refId"]: query for query in rule["data"]}
    (condition,) = data[rule["condition"]]["model"]["conditions"]
    fires = THRESHOLD_TESTS[condition["evaluator"]["type"]]
    (limit,) = condition["evaluator"]["params"]
    return {labels: fires(value, limit) for labels, value in series(db, rule, now).items()}


def insert_request_metrics(db: Database, rows: Iterable[tuple[Any, ...]]) -> None:
    """Rows of (minutes before NOW, variant, requests, errors, p95 ms, cache hits, misses)."""
    with db.connect() as conn, conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO perf_monitoring.request_metrics (bucket_start, bucket_seconds, "
            "operation, variant, requests, errors, latency_p95_ms, cache_hits, cache_misses) "
            "VALUES (%s, 60, 'search', %s, %s, %s, %s, %s, %s)",
            [(NOW - timedelta(minutes=minutes), *rest) for minutes, *rest in rows],
        )


def insert_app_metrics(db: Database, name: str, rows: Iterable[tuple[float, str, float]]) -> None:
    """Rows of (minutes before NOW, instance label, value) of the application metric *name*."""
    with db.connect() as conn, conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO perf_monitoring.app_metrics (recorded_at, name, value, labels) "
            "VALUES (%s, %s, %s, %s)",
            [
                (NOW - timedelta(minutes=minutes), name, value, Jsonb({"instance": instance}))
                for minutes, instance, value in rows
            ],
        )


def test_error_rate_rules_fire_just_above_five_percent(migrated_database: Database) -> None:
    db = migrated_database
    insert_request_metrics(db, [
        (4, "at-limit", 100, 5, 100, 0, 0),      # 5/100 = 5%: not above
        (4, "over", 1000, 51, 100, 0, 0),         # 51/1000 = 5.1%
        (6, "outside", 100, 100, 100, 0, 0),      # 100% errors, but 6 minutes ago
        (2, "outside", 100, 0, 100, 0, 0),        # … its 5 minutes: 0%
        (1, None, 100, 6, 100, 0, 0),             # no variant named: 6%
        (3, "idle", 0, 0, None, 0, 0),            # no requests: no series
    ])  # fmt: skip
    rules = rules_by_uid()
    expected = {"(none)": True, "at-limit": False, "outside": False, "over": True}
    assert evaluate(db, rules["dbtools-critical-error-rate"]) == expected
    assert evaluate(db, rules["dbtools-rollback-error-rate"]) == expected
    assert series(db, rules["dbtools-critical-error-rate"]) == {
        "(none)": 0.06, "at-limit": 0.05, "outside": 0.0, "over": 0.051,
    }  # fmt: skip


def test_p95_rules_fire_just_above_500_and_1000_ms(migrated_database: Database) -> None:
    db = migrated_database
    insert_request_metrics(db, [
        (4, "at-critical", 100, 0, 300, 0, 0),
        (3, "at-critical", 100, 0, 500, 0, 0),    # the highest bucket p95: 500, not above
        (2, "at-critical", 0, 0, 9000, 0, 0),     # a bucket without requests has no p95
        (4, "over-critical", 100, 0, 501, 0, 0),
        (4, "at-rollback", 100, 0, 1000, 0, 0),
        (4, "over-rollback", 100, 0, 1001, 0, 0),
        (6, "outside", 100, 0, 5000, 0, 0),       # 6 minutes ago: outside the span
        (1, "outside", 100, 0, 100, 0, 0),
    ])  # fmt: skip
    rules = rules_by_uid()
    assert evaluate(db, rules["dbtools-critical-p95"]) == {
        "at-critical": False, "at-rollback": True, "outside": False, "over-critical": True,
        "over-rollback": True,
    }  # fmt: skip
    assert evaluate(db, rules["dbtools-rollback-p95"]) == {
        "at-critical": False, "at-rollback": False, "outside": False, "over-critical": False,
        "over-rollback": True,
    }  # fmt: skip
    assert series(db, rules["dbtools-critical-p95"])["at-critical"] == 500.0


def test_p95_rules_read_the_merged_histograms_not_the_worst_bucket(
    migrated_database: Database,
) -> None:
    """Histograms (revision 0007): a variant whose requests take ~100 ms but one minute's took
    2 s (4% of the requests) has a p95 of ~100 ms over the span, and fires no rule (the highest
    bucket p95 would roll it back); one whose requests take 600 ms is critical. The value is
    what verify computes for a window (schema.latency's percentile of the merged histogram)."""
    db = migrated_database
    fast = [100.0 * (0.9 + 0.2 * i / 99) for i in range(100)]
    rows = [(4.5 - i / 10, "spiky", fast) for i in range(24)]
    rows += [(2, "spiky", [2000.0] * 100), (3, "slow", [600.0] * 50)]
    rows += [(6, "slow", [50.0] * 5000)]  # 6 minutes ago: outside the span
    with db.connect() as conn, conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO perf_monitoring.request_metrics (bucket_start, bucket_seconds, "
            "operation, variant, requests, latency_p95_ms, latency_histogram) "
            "VALUES (%s, 1, 'search', %s, %s, %s, %s)",
            [(NOW - timedelta(minutes=minutes), variant, len(values),
              percentile(values, 0.95), histogram(values)) for minutes, variant, values in rows],
        )  # fmt: skip
    rules = rules_by_uid()
    assert evaluate(db, rules["dbtools-critical-p95"]) == {"slow": True, "spiky": False}
    assert evaluate(db, rules["dbtools-rollback-p95"]) == {"slow": False, "spiky": False}
    merged = histogram_percentile(histogram(fast * 24 + [2000.0] * 100), 0.95)
    assert merged is not None
    assert series(db, rules["dbtools-critical-p95"]) == {
        "slow": histogram_percentile(histogram([600.0]), 0.95).value_ms,  # type: ignore[union-attr]
        "spiky": pytest.approx(merged.value_ms),
    }
    # One row without a histogram (an older writer) turns the variant's p95 into the estimate.
    insert_request_metrics(db, [(1, "spiky", 100, 0, 110.0, 0, 0)])
    expected = weighted_percentile(
        [percentile(fast, 0.95)] * 24 + [2000.0, 110.0], [100] * 26, 0.95
    )
    assert expected is not None and expected.value_ms == 110.0
    assert series(db, rules["dbtools-critical-p95"])["spiky"] == expected.value_ms


def test_cache_hit_ratio_rules_fire_just_below_30_and_20_percent(
    migrated_database: Database,
) -> None:
    db = migrated_database
    insert_request_metrics(db, [
        (4, "at-warning", 100, 0, 100, 30, 70),   # 30%: not below
        (4, "under-warning", 100, 0, 100, 29, 71),
        (4, "at-rollback", 100, 0, 100, 20, 80),
        (4, "under-rollback", 100, 0, 100, 19, 81),
        (6, "outside", 100, 0, 100, 0, 100),      # 0%, but 6 minutes ago
        (2, "outside", 100, 0, 100, 50, 50),
        (3, "uncached", 100, 0, 100, 0, 0),       # no cache lookups: no series
    ])  # fmt: skip
    rules = rules_by_uid()
    assert evaluate(db, rules["dbtools-warning-cache-hit-ratio"]) == {
        "at-rollback": True, "at-warning": False, "outside": False, "under-rollback": True,
        "under-warning": True,
    }  # fmt: skip
    assert evaluate(db, rules["dbtools-rollback-cache-hit-ratio"]) == {
        "at-rollback": False, "at-warning": False, "outside": False, "under-rollback": True,
        "under-warning": False,
    }  # fmt: skip


def test_memory_growth_fires_above_100_mb_in_30_minutes(migrated_database: Database) -> None:
    db = migrated_database
    insert_app_metrics(db, MEMORY_USAGE_METRIC, [
        (29, "at-limit", 500 * MB), (15, "at-limit", 650 * MB),   # a peak between …
        (1, "at-limit", 600 * MB),                                # … latest - earliest: 100 MB
        (20, "over", 500 * MB), (2, "over", 600 * MB + 1),        # one byte more
        (31, "outside", 0), (10, "outside", 500 * MB), (5, "outside", 550 * MB),  # 50 MB
        (25, "falling", 900 * MB), (5, "falling", 100 * MB),
    ])  # fmt: skip
    insert_app_metrics(db, "other_metric", [(20, "over", 0), (2, "over", 10_000 * MB)])
    rule = rules_by_uid()["dbtools-warning-memory-growth"]
    assert evaluate(db, rule) == {
        '{"instance": "at-limit"}': False, '{"instance": "falling"}': False,
        '{"instance": "outside"}': False, '{"instance": "over"}': True,
    }  # fmt: skip
    assert series(db, rule)['{"instance": "at-limit"}'] == 100.0


def test_kms_reuse_fires_below_60_percent(migrated_database: Database) -> None:
    db = migrated_database
    insert_app_metrics(db, KMS_REUSE_METRIC, [
        (3, "at-limit", 0.60),                        # 60%: not below
        (4, "under", 0.60), (2, "under", 0.58),       # 59% over the 5 minutes
        (6, "outside", 0.0), (1, "outside", 0.90),    # 0% six minutes ago: not counted
    ])  # fmt: skip
    insert_app_metrics(db, "other_metric", [(1, "other", 0.0)])
    rule = rules_by_uid()["dbtools-warning-kms-reuse"]
    assert evaluate(db, rule) == {
        '{"instance": "at-limit"}': False, '{"instance": "outside"}': False,
        '{"instance": "under"}': True,
    }  # fmt: skip
    assert series(db, rule)['{"instance": "under"}'] == pytest.approx(0.59)


def test_query_rate_rule_reads_the_steps_between_snapshots_in_its_span(
    migrated_database: Database,
) -> None:
    """Snapshots 6, 2 and 1 minutes before NOW: 90 statements in the first step (outside the
    span), 30 in the second (60 s): 0.5 statements/s, a series per target (the database's)."""
    db = migrated_database
    target = db.name
    for label, requests in (("q0", 30), ("q1", 10), ("q2", 0)):
        snapshots.snapshot(db.dsn, label)
        assert run_requests(db, requests) == 3 * requests
    for label, minutes in (("q0", 6), ("q1", 2), ("q2", 1)):
        db.execute(
            "UPDATE perf_monitoring.snapshots SET taken_at = %s WHERE label = %s",
            (NOW - timedelta(minutes=minutes), label),
        )
    at_limit = rules_by_uid(Thresholds(critical_query_rate=0.5))["dbtools-critical-query-rate"]
    assert series(db, at_limit) == {target: 0.5}
    assert evaluate(db, at_limit) == {target: False}
    just_under = Thresholds(critical_query_rate=0.499)  # 0.5/s is just above it
    assert evaluate(db, rules_by_uid(just_under)["dbtools-critical-query-rate"]) == {target: True}
    # The guide's 50/s: far from it.
    assert evaluate(db, rules_by_uid()["dbtools-critical-query-rate"]) == {target: False}
    # No snapshots in the span: no series (Grafana's "no data", which this rule treats as OK).
    assert evaluate(db, at_limit, NOW + timedelta(hours=1)) == {}


# -- the command ---------------------------------------------------------------------------------


def test_cli_writes_the_rules_beside_the_dashboard(tmp_path: Path) -> None:
    alerts = tmp_path / "provisioning" / "alerting" / "dbtools.yaml"
    board = tmp_path / "dashboard.json"
    args = ("dashboard", "--datasource-uid", "pg-main", "--alerts", str(alerts), "-o", str(board))
    missing = run_cli(*args)  # as pg_dump -f: the directory must exist, and nothing is written
    assert missing.stderr == f"Error: cannot write {alerts}: no directory {alerts.parent}\n"
    assert not board.exists()
    alerts.parent.mkdir(parents=True)
    result = run_cli(*args)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"{board}\n{alerts}\n"
    document = json.loads(alerts.read_text())
    assert document == alert_provisioning(datasource_uid="pg-main")
    preselected = json.loads(board.read_text())["templating"]["list"][0]["current"]["value"]
    assert preselected == "pg-main"  # the rules query the dashboard's data source
    assert [p.name for p in alerts.parent.iterdir()] == ["dbtools.yaml"]  # no temporary left


def test_cli_rules_with_the_dashboard_on_standard_output(tmp_path: Path) -> None:
    alerts = tmp_path / "rules.json"
    result = run_cli("dashboard", "--datasource-uid", "pg", "--alerts", str(alerts), "-o", "-")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["uid"] == DASHBOARD_UID
    assert result.stderr == f"{alerts}\n"
    assert json.loads(alerts.read_text())["apiVersion"] == 1


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--alerts", "rules.yaml"), "--alerts needs --datasource-uid"),
        (("--datasource-uid", "pg", "--alerts", "rules.txt"), ".yaml, .yml, .json files only"),
    ],
)
def test_cli_bad_alerts_option_is_exit_2_and_writes_nothing(
    tmp_path: Path, args: tuple[str, ...], expected: str
) -> None:
    out = tmp_path / "out"
    named = [str(tmp_path / arg) if arg.startswith("rules.") else arg for arg in args]
    result = run_cli("dashboard", *named, "--output-dir", str(out))
    assert_usage_error(result, expected)
    assert not out.exists()


def test_request_rules_split_a_stores_targets_and_variants(migrated_database: Database) -> None:
    """In a central store (``collect --store`` copies each target's rows under its name) a
    series is a target's variant: one target's errors never hide in another's requests."""
    db = migrated_database
    with db.connect() as conn, conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO perf_monitoring.request_metrics (target, bucket_start, bucket_seconds, "
            "operation, variant, requests, errors, latency_p95_ms, cache_hits, cache_misses) "
            "VALUES (%s, %s, 60, 'search', %s, %s, %s, %s, 0, 0)",
            [("app", NOW - timedelta(minutes=2), "batched", 1000, 10, 100.0),
             ("app", NOW - timedelta(minutes=2), "per-request", 1000, 0, 300.0),
             ("billing", NOW - timedelta(minutes=2), "batched", 100, 7, 1200.0),
             ("billing", NOW - timedelta(minutes=3), "per-request", 100, 0, 200.0)],
        )  # fmt: skip
    rules = rules_by_uid()
    assert series(db, rules["dbtools-critical-error-rate"]) == {
        "app batched": 0.01, "app per-request": 0.0, "billing batched": 0.07,
        "billing per-request": 0.0,
    }  # fmt: skip
    assert evaluate(db, rules["dbtools-rollback-p95"]) == {
        "batched app": False, "per-request app": False, "batched billing": True,
        "per-request billing": False,
    }  # fmt: skip
