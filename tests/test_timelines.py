"""Timelines of a report built from stored windows: per interval between consecutive samples,
against a workload whose calls per interval are known; a reset interval is left out; sizes at
the span's ends give the growth."""

from __future__ import annotations

import json
import re

import pytest

from dbtools.errors import ConfigError
from dbtools.report import make_report, render
from dbtools.report.charts import timeline_plots
from dbtools.report.html import render_html
from dbtools.report.model import ReportOptions
from dbtools.report.options import options_from
from tests.conftest import Database
from tests.snapshot_helpers import REQUEST_STATEMENTS, run_requests, take

TABLES = ("trip_requests", "flight_offers", "flight_search_cache")
RESET_OWN_ENTRIES = (
    "SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database "
    "WHERE datname = current_database()), 0)"
)
GROWING_ROWS = 20_000


def _size(db: Database) -> int:
    return int(db.execute("SELECT pg_total_relation_size('public.growing')")[0][0])


def test_timelines_give_each_intervals_calls_and_leave_a_reset_out(
    migrated_database: Database,
) -> None:
    db = migrated_database
    db.execute("CREATE TABLE public.growing (id bigint, pad text)")
    first_size = _size(db)
    take(db, "t:start")
    run_requests(db, 10)
    take(db, "t:10")
    run_requests(db, 20)
    db.execute(
        f"INSERT INTO public.growing SELECT i, repeat('x', 100) "
        f"FROM generate_series(1, {GROWING_ROWS}) i"
    )
    take(db, "t:20")
    db.execute(RESET_OWN_ENTRIES)  # the third interval's counters start again: not comparable
    run_requests(db, 5)
    last_size = _size(db)
    take(db, "t:end", requests=35)

    report = make_report(db.dsn, window="t", options=ReportOptions(timeline_statements=4))
    document = json.loads(render(report, "json"))
    timelines = document["timelines"]

    assert timelines["samples"] == 4
    assert [s["comparable"] for s in timelines["steps"]] == [True, True, False]
    assert any("reset" in problem for problem in timelines["steps"][2]["problems"])
    assert timelines["steps"][2]["buffer_cache_hit_ratio"] is None
    assert all(s["buffer_cache_hit_ratio"] is not None for s in timelines["steps"][:2])
    # The three statements of a request, each called once per request (10, then 20), and the
    # INSERT that grew a table (once, in the second interval).
    assert len(timelines["statements"]) == 4
    by_table = {
        next(t for t in (*TABLES, "public.growing") if re.search(rf"\b{t}\b", line["query"])): line
        for line in timelines["statements"]
    }
    assert set(by_table) == {*TABLES, "public.growing"} and len(REQUEST_STATEMENTS) == 3
    insert = by_table.pop("public.growing")
    assert [p and p["calls"] for p in insert["points"]] == [0, 1, None]
    for line in by_table.values():
        assert [p and p["calls"] for p in line["points"]] == [10, 20, None]
        times = [p["total_time_ms"] for p in line["points"][:2]]
        assert line["total_time_ms"] == pytest.approx(sum(times), abs=1e-5)
        means = [p["mean_time_ms"] for p in line["points"][:2]]
        assert means == pytest.approx([times[0] / 10, times[1] / 20], abs=1e-5)
    windows = timelines["windows"]
    assert [w["name"] for w in windows] == ["t"]
    assert windows[0]["started_at"] == timelines["started_at"]
    assert windows[0]["ended_at"] == timelines["ended_at"]

    growing = next(g for g in timelines["growth"] if g["name"] == "public.growing")
    assert growing["kind"] == "table"
    assert (growing["first_bytes"], growing["last_bytes"]) == (first_size, last_size)
    assert growing["growth_bytes"] == last_size - first_size > 0
    assert timelines["growth"][0]["name"] == "public.growing"  # the largest growth first


def test_timeline_charts_shade_the_windows_and_draw_only_comparable_steps(
    migrated_database: Database,
) -> None:
    db = migrated_database
    take(db, "b:start")
    run_requests(db, 10)
    take(db, "b:end")
    run_requests(db, 20)
    take(db, "c:start")
    run_requests(db, 30)
    take(db, "c:end")
    db.execute(
        "INSERT INTO perf_monitoring.request_metrics (bucket_start, bucket_seconds, operation, "
        "requests, errors, latency_p95_ms, cache_hits, cache_misses) "
        "SELECT taken_at, 0, 'search', 100, 5, 80.0, 1, 1 FROM perf_monitoring.snapshots "
        "WHERE label IN ('b:start', 'c:start')"
    )

    report = make_report(
        db.dsn, baseline="b", candidate="c", options=options_from({"timeline_statements": 2})
    )
    plots = {plot.title: plot for plot in timeline_plots(report)}

    assert report.timelines is not None
    starts = {p.name: (p.started_at, p.ended_at) for p in report.periods}
    shaded = (("baseline", *starts["baseline"]), ("candidate", *starts["candidate"]))
    assert all(plot.shaded == shaded for plot in plots.values())
    calls = plots["Calls per interval"]
    assert len(calls.series) == 2
    assert all(series.values == (10, 20, 30) for series in calls.series)
    ends = tuple(step.ended_at for step in report.timelines.steps)
    assert all(series.times == ends for series in calls.series)
    p95 = plots["Application p95 per bucket"].series[0]
    assert p95.values == (80.0, 80.0)
    assert plots["Application error rate per bucket"].series[0].values == (5.0, 5.0)
    assert set(plots) == {
        "Calls per interval", "Total time per interval", "Mean time per interval",
        "Hit ratios per interval", "Application p95 per bucket",
        "Application error rate per bucket",
    }  # fmt: skip

    html = render_html(report)
    section = html[html.index('<section id="timelines">') :]
    section = section[: section.index("</section>")]
    assert section.count("<svg") == len(plots)


def test_timeline_statements_is_a_report_setting() -> None:
    assert ReportOptions().timeline_statements == 5
    assert options_from({"timeline_statements": 2}).timeline_statements == 2
    with pytest.raises(ConfigError, match="timeline_statements must be a whole number"):
        options_from({"timeline_statements": 1.5})
