"""The Grafana dashboard: its JSON model, and every panel's SQL run on a real migrated database
with a known workload and with a day of samples of two targets (Grafana's time macro and target
variable replaced by what Grafana sends)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from dbtools.db.connection import SQL_MARKER
from dbtools.figures.requests import UNNAMED_VARIANT
from dbtools.grafana.dashboard import (
    DATASOURCE_TYPE,
    KMS_REUSE_METRIC,
    TARGETS_SQL,
    Panel,
    dashboard,
    panels,
)
from dbtools.store import snapshots
from dbtools.verify.thresholds import Thresholds
from tests.conftest import Database
from tests.helpers import assert_usage_error, run_cli
from tests.snapshot_helpers import run_requests, stored_measures

TIME_FILTER = re.compile(r"\$__timeFilter\(([^)]+)\)")
REQUESTS = 10


LAST_DAY = "now() - interval '1 day'", "now() + interval '1 minute'"
# The panels drawn from samples (a point per step between two samples, a series per target).
STEP_PANELS = (
    "Database query rate", "Queries per request", "Index hit ratio", "Buffer cache hit ratio",
)  # fmt: skip


def as_run_by_grafana(sql: str, targets: Sequence[str], between: tuple[str, str] = LAST_DAY) -> str:
    """The SQL as Grafana sends it: ``$__timeFilter(col)`` as a range predicate, ``$target`` as
    the selected targets' quoted list."""
    quoted = ", ".join("'" + target.replace("'", "''") + "'" for target in targets)
    ranged = TIME_FILTER.sub(rf"\1 BETWEEN {between[0]} AND {between[1]}", sql)
    return ranged.replace("$target", quoted)


def run_panel(
    db: Database, panel: Panel, targets: Sequence[str], between: tuple[str, str] = LAST_DAY
) -> tuple[list[str], list[tuple[Any, ...]]]:
    with db.connect() as conn:
        cursor = conn.execute(as_run_by_grafana(panel.sql, targets, between))
        assert cursor.description is not None
        return [column.name for column in cursor.description], cursor.fetchall()


def targets_in(db: Database) -> list[str]:
    return [row[0] for row in db.execute(TARGETS_SQL)]


def by_title() -> dict[str, Panel]:
    return {panel.title: panel for panel in panels()}


def test_dashboard_model_carries_the_guides_thresholds() -> None:
    model = dashboard(datasource_uid="pg-main")
    assert model["uid"] == "dbtools-rollout"
    source, target = model["templating"]["list"]
    assert source["current"]["value"] == "pg-main"
    assert (target["name"], target["query"], target["multi"]) == ("target", TARGETS_SQL, True)
    assert target["datasource"] == {"type": DATASOURCE_TYPE, "uid": "${datasource}"}
    titles = [panel["title"] for panel in model["panels"]]
    assert titles == [
        "Database query rate", "Queries per request", "App cache hit ratio",
        "Response time p95", "Error rate", "Index hit ratio", "Buffer cache hit ratio",
        "Request rate", "KMS connection reuse ratio",
    ]  # fmt: skip
    steps = {
        panel["title"]: [
            s["value"] for s in panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        ]
        for panel in model["panels"]
    }
    assert steps["Database query rate"] == [None, 50]
    assert steps["App cache hit ratio"] == [None, 0.2, 0.3, 0.4]
    assert steps["Response time p95"] == [None, 300, 500, 1000]
    assert steps["Error rate"] == [None, 0.01, 0.05]
    assert steps["KMS connection reuse ratio"] == [None, 0.6]
    for panel in model["panels"]:
        (target,) = panel["targets"]
        assert target["datasource"] == {"type": DATASOURCE_TYPE, "uid": "${datasource}"}
        assert target["format"] == "time_series" and target["rawQuery"] is True
        # Grafana's polling is left out of what dbtools measures.
        assert SQL_MARKER in target["rawSql"].split("\n")[0]
    positions = {(p["gridPos"]["x"], p["gridPos"]["y"]) for p in model["panels"]}
    assert len(positions) == len(model["panels"])  # no two panels overlap


def test_thresholds_follow_the_configuration() -> None:
    tuned = {p.title: p for p in panels(Thresholds(critical_query_rate=80.0))}
    assert [s.value for s in tuned["Database query rate"].steps] == [None, 80.0]


def test_every_panel_runs_on_a_migrated_database(migrated_database: Database) -> None:
    db = migrated_database
    snapshots.snapshot(db.dsn, "d1")
    sent = run_requests(db, REQUESTS)  # ten requests, three statements each
    snapshots.snapshot(db.dsn, "d2", requests=REQUESTS)
    db.execute(
        "INSERT INTO perf_monitoring.request_metrics (bucket_start, bucket_seconds, operation, "
        "requests, errors, latency_p95_ms, cache_hits, cache_misses) VALUES "
        "(date_trunc('minute', now()) - interval '5 minutes', 60, 'search', 200, 4, 250, 45, 55), "
        "(date_trunc('minute', now()) - interval '5 minutes', 60, 'book', 100, 1, 320, 5, 5)"
    )
    db.execute(
        "INSERT INTO perf_monitoring.app_metrics (name, value) VALUES (%s, 0.75)",
        (KMS_REUSE_METRIC,),
    )
    taken = db.execute("SELECT taken_at FROM perf_monitoring.snapshots ORDER BY taken_at")
    seconds = (taken[1][0] - taken[0][0]).total_seconds()

    expected = {
        "Database query rate": sent / seconds,
        "Queries per request": sent / REQUESTS,
        "App cache hit ratio": 50 / 110,
        "Response time p95": 320.0,
        "Error rate": 5 / 300,
        "Request rate": 300 / 60,
        "KMS connection reuse ratio": 0.75,
    }
    assert sent == 3 * REQUESTS
    (target,) = targets_in(db)
    for panel in panels():
        columns, rows = run_panel(db, panel, [target])
        assert columns == ["time", "metric", panel.value_column], panel.title
        assert len(rows) == 1, (panel.title, rows)
        ((moment, named, value),) = rows
        # the request panels: a series per target and variant (here: rows naming neither)
        request_panel = panel.title not in (*STEP_PANELS, "KMS connection reuse ratio")
        assert named == (f"{db.name} {UNNAMED_VARIANT}" if request_panel else target), panel.title
        assert isinstance(moment, datetime) and isinstance(value, float), (panel.title, rows)
        if panel.title in expected:
            assert value == pytest.approx(expected[panel.title]), panel.title
        else:  # the hit ratios: the workload read index and heap blocks
            assert 0 < value <= 1, panel.title


def test_a_statistics_reset_breaks_the_series(migrated_database: Database) -> None:
    """Counters that went back to zero between two snapshots make no point (as in verify)."""
    db = migrated_database
    snapshots.snapshot(db.dsn, "r1")
    run_requests(db, REQUESTS)
    snapshots.snapshot(db.dsn, "r2", requests=REQUESTS)
    db.execute("SELECT pg_stat_statements_reset()")
    run_requests(db, REQUESTS)
    snapshots.snapshot(db.dsn, "r3", requests=REQUESTS)
    _, rows = run_panel(db, by_title()["Queries per request"], targets_in(db))
    assert [value for _, _, value in rows] == [3.0]


def test_a_step_counts_the_requests_of_the_buckets_its_ends_cut_as_a_window_does(
    migrated_database: Database,
) -> None:
    """Without --requests, a step's requests are its overlapping buckets', each counted by the
    share of its time inside the step (``request_metrics.inside_share``): the panel's queries
    per request is the window's, as verify measures it."""
    db = migrated_database
    snapshots.snapshot(db.dsn, "p:start")
    sent = run_requests(db, REQUESTS)
    snapshots.snapshot(db.dsn, "p:end")
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)
    db.execute(
        "UPDATE perf_monitoring.snapshots SET taken_at = %s + "
        "CASE label WHEN 'p:end' THEN interval '60 s' ELSE interval '0' END",
        (start,),
    )
    db.execute(
        "INSERT INTO perf_monitoring.request_metrics (bucket_start, bucket_seconds, operation, "
        "requests, errors, cache_hits, cache_misses) VALUES "
        "(%(start)s - interval '30 s', 60, 'search', 100, 0, 0, 0), "  # half inside: 50
        "(%(start)s + interval '40 s', 40, 'search', 60, 0, 0, 0), "  # half inside: 30
        "(%(start)s + interval '90 s', 60, 'search', 1000, 0, 0, 0)",  # after the step
        {"start": start},
    )
    (target,) = targets_in(db)
    _, rows = run_panel(db, by_title()["Queries per request"], [target])
    assert [value for _, _, value in rows] == [pytest.approx(sent / 80)]
    with db.connect() as conn:
        (measured,) = stored_measures(conn, "p")
    assert measured.requests == 80
    assert measured.queries_per_request == pytest.approx(sent / 80)


# A day of samples, one a minute, for two targets. Per target, what each minute adds: queries,
# shared blocks hit and read, index blocks hit and read; and the requests of each step.
THE_DAY = datetime(2026, 11, 29, tzinfo=timezone.utc)
SAMPLES = 1440
KNOWN = {"app": (120, 900, 100, 300, 100, 60), "billing": (30, 95, 5, 50, 50, 10)}
RESTART = ("billing", 720)  # billing's server restarts before its sample 720 (from 0)


def store_a_day_of_samples(db: Database, *, requests_served: bool = True) -> None:
    """Headers as ``dbtools collect`` writes them (a real sample's, copied), with known sums
    (without *requests_served*: no requests, as a collector's samples have none)."""
    snapshots.snapshot(db.dsn, "seed")
    columns = [
        row[0]
        for row in db.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = "
            "'perf_monitoring' AND table_name = 'snapshots' AND column_name NOT IN ('id', 'label') "
            "ORDER BY ordinal_position"
        )
    ]
    for target, (queries, hit, read, idx_hit, idx_read, requests) in KNOWN.items():
        restart_at = RESTART[1] if target == RESTART[0] else SAMPLES
        known = {
            "target": "%(target)s",
            "taken_at": "%(start)s + g * interval '1 minute'",
            "interval_seconds": "60",
            "queries": f"g * {queries}",
            "shared_blks_hit": f"g * {hit}",
            "shared_blks_read": f"g * {read}",
            "idx_blks_hit": f"g * {idx_hit}",
            "idx_blks_read": f"g * {idx_read}",
            "requests": str(requests) if requests_served else "NULL",
            "server_started_at": "s.server_started_at + CASE WHEN g >= %(restart_at)s "
            "THEN interval '1 hour' ELSE interval '0' END",
        }
        values = ", ".join(known.get(name, f"s.{name}") for name in columns)
        db.execute(
            f"INSERT INTO perf_monitoring.snapshots ({', '.join(columns)}) SELECT {values} "
            "FROM perf_monitoring.snapshots s, generate_series(0, %(last)s) g "
            "WHERE s.label = 'seed'",
            {"target": target, "start": THE_DAY, "restart_at": restart_at, "last": SAMPLES - 1},
        )


def expected_points(
    target: str, value: float, first: int = 1, last: int = SAMPLES - 1
) -> list[tuple[datetime, str, float]]:
    """A point per step between consecutive samples *first* - 1 .. *last*, none across the
    restart."""
    return [
        (THE_DAY + timedelta(minutes=g), target, value)
        for g in range(first, last + 1)
        if (target, g) != RESTART
    ]


def step_value(title: str, known: tuple[int, ...]) -> float:
    """What a step panel shows for a minute of a target's *known* counters."""
    queries, hit, read, idx_hit, idx_read, requests = known
    return {
        "Database query rate": queries / 60,
        "Queries per request": queries / requests,
        "Buffer cache hit ratio": hit / (hit + read),
        "Index hit ratio": idx_hit / (idx_hit + idx_read),
    }[title]


def test_panels_over_a_day_of_samples_of_two_targets(migrated_database: Database) -> None:
    db = migrated_database
    store_a_day_of_samples(db)
    (seed_target,) = {row[0] for row in db.execute(
        "SELECT target FROM perf_monitoring.snapshots WHERE label = 'seed'")}  # fmt: skip
    assert set(targets_in(db)) == {"app", "billing", seed_target}
    assert len(targets_in(db)) == 3
    day = f"'{THE_DAY.isoformat()}'::timestamptz", f"'{THE_DAY.isoformat()}'::timestamptz + '1 day'"
    for title in STEP_PANELS:
        panel = by_title()[title]
        _, rows = run_panel(db, panel, ["app", "billing"], day)
        expected = sorted(
            point
            for target, known in KNOWN.items()
            for point in expected_points(target, step_value(title, known))
        )
        assert rows == expected, title
        assert len(rows) == (SAMPLES - 1) + (SAMPLES - 2), title  # 1,439 + 1,438 points
        # one target selected: its series only
        _, rows = run_panel(db, panel, ["billing"], day)
        assert rows == expected_points("billing", step_value(title, KNOWN["billing"])), title
    # the last hour: its 60 samples make 59 steps
    last_hour = f"{day[0]} + interval '23 hours'", day[1]
    _, rows = run_panel(db, by_title()["Database query rate"], ["app"], last_hour)
    assert rows == expected_points("app", 2.0, first=SAMPLES - 59)
    assert len(rows) == 59


# A minute's request metrics per target and variant in a store (``collect --store`` copies them
# under the target's name): requests, errors, p95 (ms; no histogram: the row's own), cache hits
# and misses.
VARIANTS = {
    ("app", "per-request"): (40, 2, 200.0, 30, 10),
    ("app", "batched"): (20, 0, 90.0, 18, 2),
    ("billing", "per-request"): (4, 1, 400.0, 1, 3),
    ("billing", "batched"): (6, 0, 150.0, 4, 1),
}
REQUEST_PANELS: dict[str, Callable[[int, int, float, int, int], float]] = {
    "Request rate": lambda r, e, p95, h, m: r / 60,
    "Error rate": lambda r, e, p95, h, m: e / r,
    "App cache hit ratio": lambda r, e, p95, h, m: h / (h + m),
    "Response time p95": lambda r, e, p95, h, m: p95,
}


def test_request_panels_by_target_and_variant_in_a_store(migrated_database: Database) -> None:
    db = migrated_database
    store_a_day_of_samples(db, requests_served=False)
    for (target, variant), (requests, errors, p95, hits, misses) in VARIANTS.items():
        db.execute(
            "INSERT INTO perf_monitoring.request_metrics (target, bucket_start, bucket_seconds, "
            "operation, variant, requests, errors, latency_p95_ms, cache_hits, cache_misses) "
            "SELECT %s, %s + g * interval '1 minute', 60, 'search', %s, %s, %s, %s, %s, %s "
            "FROM generate_series(0, %s) g",
            (target, THE_DAY, variant, requests, errors, p95, hits, misses, SAMPLES - 1),
        )
    db.execute(
        "INSERT INTO perf_monitoring.app_metrics (target, recorded_at, name, value) VALUES "
        "('app', %(t)s, %(name)s, 0.9), ('billing', %(t)s, %(name)s, 0.5)",
        {"t": THE_DAY + timedelta(hours=23, minutes=30), "name": KMS_REUSE_METRIC},
    )
    last_hour = (f"'{THE_DAY.isoformat()}'::timestamptz + interval '23 hours'",
                 f"'{THE_DAY.isoformat()}'::timestamptz + interval '1 day'")  # fmt: skip
    minutes = [THE_DAY + timedelta(minutes=g) for g in range(SAMPLES - 60, SAMPLES)]
    for title, figure in REQUEST_PANELS.items():
        for selected in (["app", "billing"], ["billing"]):
            _, rows = run_panel(db, by_title()[title], selected, last_hour)
            assert rows == [
                (minute, f"{target} {variant}", pytest.approx(figure(*known)))
                for minute in minutes
                for (target, variant), known in sorted(VARIANTS.items())
                if target in selected
            ], (title, selected)
    _, rows = run_panel(db, by_title()["KMS connection reuse ratio"], ["app"], last_hour)
    assert [(target, value) for _, target, value in rows] == [("app", 0.9)]
    # queries per request: a step's requests are its own target's buckets (both variants)
    _, rows = run_panel(db, by_title()["Queries per request"], ["app", "billing"], last_hour)
    assert rows == sorted(
        expected_points("app", 120 / 60, first=SAMPLES - 59)
        + expected_points("billing", 30 / 10, first=SAMPLES - 59)
    )


def test_cli_writes_the_dashboard(tmp_path: Path) -> None:
    config = tmp_path / "thresholds.toml"
    config.write_text("[verify]\nmax_p95_ms = 250\n")
    out = tmp_path / "monitoring" / "dashboard.json"
    out.parent.mkdir()
    result = run_cli("dashboard", "--config", str(config), "-o", str(out))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(out)
    model = json.loads(out.read_text())
    p95 = next(p for p in model["panels"] if p["title"] == "Response time p95")
    assert [s["value"] for s in p95["fieldConfig"]["defaults"]["thresholds"]["steps"]] == [
        None, 250, 500, 1000,
    ]  # fmt: skip
    assert [p.name for p in out.parent.iterdir()] == ["dashboard.json"]  # no temporary left
    stdout = run_cli("dashboard", "--output", "-")
    assert json.loads(stdout.stdout)["uid"] == "dbtools-rollout"


def test_cli_default_is_a_timestamped_file_in_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = run_cli("dashboard")
    assert result.exit_code == 0, result.stderr
    (written,) = (tmp_path / "reports").iterdir()
    assert re.fullmatch(r"dashboard-\d{8}T\d{6}Z\.json", written.name)
    assert result.stdout == f"reports/{written.name}\n"
    assert json.loads(written.read_text())["uid"] == "dbtools-rollout"


def test_cli_output_and_output_dir_exclude_each_other(tmp_path: Path) -> None:
    result = run_cli("dashboard", "-o", str(tmp_path / "d.json"), "--output-dir", str(tmp_path))
    assert_usage_error(result, "give --output or --output-dir, not both")
    assert list(tmp_path.iterdir()) == []


def test_cli_bad_config_is_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[verify]\nmax_p95_ms = 'fast'\n")
    result = run_cli("dashboard", "--config", str(config), "--output-dir", str(tmp_path / "out"))
    assert_usage_error(result, "max_p95_ms must be a number")
    assert not (tmp_path / "out").exists()
