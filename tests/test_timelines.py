"""Timelines of a report built from stored windows: per interval between consecutive samples,
against a workload whose calls per interval are known; a reset interval is left out; sizes at
the span's ends give the growth."""

from __future__ import annotations

import itertools
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from dbtools.errors import ConfigError
from dbtools.output import NO_VALUE
from dbtools.reading.rows import Snapshot
from dbtools.report import make_report, render
from dbtools.report.charts import shade_colours, timeline_plots
from dbtools.report.html import render_html
from dbtools.report.model import ReportOptions
from dbtools.report.options import options_from
from dbtools.report.timelines import size_growth, step_between, step_points
from dbtools.store import Store
from dbtools.store.compact import fold
from tests.conftest import Database
from tests.helpers import assert_usage_error, run_cli
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
    # No autovacuum: its visibility map would add a page between a size measured and stored.
    db.execute("CREATE TABLE public.growing (id bigint, pad text) WITH (autovacuum_enabled = off)")
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
        "Calls per interval (families)", "Total time per interval (families)",
        "Mean time per interval (families)", "Hit ratios per interval",
        "Application p95 per bucket", "Application error rate per bucket",
    }  # fmt: skip

    html = render_html(report)
    section = html[html.index('<section id="timelines">') :]
    section = section[: section.index("</section>")]
    assert section.count("<svg") == len(plots)

    # Windows captured with two snapshots: one interval each, a point, never a trend: said on
    # the charts of the intervals (drawn as points) and in the section's text.
    assert report.timelines.sparse_windows == (("baseline", 1), ("candidate", 1))
    note = "too few intervals per window for a trend (baseline: 1, candidate: 1): points"
    assert {title: plot.note for title, plot in plots.items()} == {
        title: "" if title.startswith("Application") else note for title in plots
    }
    assert section.count(f"<!-- {note} -->") == len(plots) - 2
    assert "Too few intervals inside a window for a trend (baseline 1, candidate 1" in section


def test_a_window_with_enough_intervals_is_no_sparse_window() -> None:
    from datetime import datetime, timedelta, timezone

    from dbtools.report.sections import sparse_note
    from dbtools.report.timelines import MIN_INTERVALS, Shade, Step, Timelines

    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    steps = tuple(
        Step(t0 + timedelta(minutes=i), t0 + timedelta(minutes=i + 1), True, (), 1.0, 1.0)
        for i in range(MIN_INTERVALS + 1)
    )
    wide = Shade("wide", t0, t0 + timedelta(minutes=MIN_INTERVALS + 1))  # every interval
    narrow = Shade("narrow", t0 + timedelta(minutes=1), t0 + timedelta(minutes=2))  # one
    found = Timelines(t0, wide.ended_at, len(steps) + 1, (wide, narrow), steps, (), (), (), ())
    assert found.intervals_in(wide) == MIN_INTERVALS + 1
    assert found.sparse_windows == (("narrow", 1),)
    assert "(narrow 1;" in sparse_note(found)
    alone = Timelines(t0, wide.ended_at, len(steps) + 1, (wide,), steps, (), (), (), ())
    assert alone.sparse_windows == () and sparse_note(alone) == ""


def test_timeline_statements_and_families_are_report_settings() -> None:
    assert (ReportOptions().timeline_statements, ReportOptions().timeline_families) == (5, 5)
    assert options_from({"timeline_statements": 2}).timeline_statements == 2
    assert options_from({"timeline_families": 3}).timeline_families == 3
    for key in ("timeline_statements", "timeline_families"):
        with pytest.raises(ConfigError, match=f"{key} must be a whole number"):
            options_from({key: 1.5})


# Two families over one table, each of statements pg_stat_statements keeps apart: a literal
# and a cast literal (``$1`` and ``$1::bigint``: two query ids on every major), and IN lists of
# two and three values (two query ids on 15; 18 keeps one, its lists squashed).
BY_ID = ("SELECT v FROM public.fam WHERE id = 1", "SELECT v FROM public.fam WHERE id = 1::bigint")
BY_LIST = (
    "SELECT v FROM public.fam WHERE id IN (1, 2)",
    "SELECT v FROM public.fam WHERE id IN (1, 2, 3)",
)
# Calls of each statement in each of two intervals.
CALLS = {BY_ID[0]: (3, 6), BY_ID[1]: (2, 5), BY_LIST[0]: (4, 1), BY_LIST[1]: (3, 2)}


def _run(db: Database, step: int) -> None:
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        for statement, calls in CALLS.items():
            for _ in range(calls[step]):
                conn.execute(statement)


def test_family_timelines_sum_their_statements_per_interval(
    migrated_database: Database,
) -> None:
    db = migrated_database
    db.execute("CREATE TABLE public.fam (id bigint PRIMARY KEY, v int)")
    db.execute("INSERT INTO public.fam SELECT i, i FROM generate_series(1, 100) i")
    take(db, "f:start")
    _run(db, 0)
    take(db, "f:1")
    _run(db, 1)
    take(db, "f:2")
    db.execute(RESET_OWN_ENTRIES)  # not comparable: neither statements nor families drawn
    _run(db, 0)
    take(db, "f:end")

    options = ReportOptions(timeline_statements=100, timeline_families=100)
    report = make_report(db.dsn, window="f", options=options)
    timelines = json.loads(render(report, "json"))["timelines"]
    fam = [f for f in timelines["families"] if "public.fam" in f["query"]]
    by_id = next(f for f in fam if " IN " not in f["query"])
    by_list = next(f for f in fam if " IN " in f["query"])
    assert len(fam) == 2

    def summed(statements: tuple[str, ...]) -> list[int]:
        return [sum(CALLS[s][step] for s in statements) for step in (0, 1)]

    assert [p and p["calls"] for p in by_id["points"]] == [*summed(BY_ID), None] == [5, 11, None]
    assert [p and p["calls"] for p in by_list["points"]] == [*summed(BY_LIST), None] == [7, 3, None]
    assert by_id["statements"] == 2  # $1 and $1::bigint: two entries, one family
    version = int(db.execute("SHOW server_version_num")[0][0])
    assert by_list["statements"] == (2 if version < 180000 else 1)
    # The family's figures are its statements' summed: compare with the statement lines.
    members = [s for s in timelines["statements"] if "public.fam" in s["query"]]
    by_id_members = [s for s in members if " IN " not in s["query"]]
    assert len(by_id_members) == 2
    for step in (0, 1):
        times = [s["points"][step]["total_time_ms"] for s in by_id_members]
        point = by_id["points"][step]
        assert point["total_time_ms"] == pytest.approx(sum(times), abs=1e-6)
        assert point["mean_time_ms"] == pytest.approx(sum(times) / point["calls"], abs=1e-6)
    assert by_id["total_time_ms"] == pytest.approx(
        sum(s["total_time_ms"] for s in by_id_members), abs=1e-6
    )
    # Ranked by total time over the span, heaviest first.
    totals = [f["total_time_ms"] for f in timelines["families"]]
    assert totals == sorted(totals, reverse=True)

    markdown = render(report, "md")
    section = markdown[markdown.index("Top statements and families per interval") :]
    rank = timelines["families"].index(by_id) + 1
    row = next(line for line in section.splitlines() if line.startswith(f"| F{rank} "))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[1] == f"family {by_id['fingerprint']} (select, 2 statements)"
    assert cells[3] == f"5, 11, {NO_VALUE}"
    plots = {plot.title: plot for plot in timeline_plots(report)}
    family_calls = plots["Calls per interval (families)"].series[rank - 1]
    assert family_calls.values == (5, 11, None)


def _taken_at(db: Database, label: str) -> datetime:
    rows = db.execute("SELECT taken_at FROM perf_monitoring.snapshots WHERE label = %s", (label,))
    return rows[0][0]  # type: ignore[no-any-return]


def test_marked_windows_are_shaded_and_widen_the_span(migrated_database: Database) -> None:
    db = migrated_database
    for label, requests in (("b", 4), ("canary", 6), ("c", 8), ("rollback", 2)):
        take(db, f"{label}:start")
        run_requests(db, requests)
        take(db, f"{label}:end", requests=requests)

    report = make_report(
        db.dsn, baseline="b", candidate="c",
        marks=["canary=canary", "rollback=rollback:start..rollback:end"],
    )  # fmt: skip
    assert report.timelines is not None
    expected = tuple(
        (name, _taken_at(db, f"{label}:start"), _taken_at(db, f"{label}:end"))
        for name, label in (("baseline", "b"), ("candidate", "c"), ("canary", "canary"),
                            ("rollback", "rollback"))
    )  # fmt: skip
    shades = report.timelines.windows
    assert tuple((w.name, w.started_at, w.ended_at) for w in shades) == expected
    assert report.timelines.ended_at == expected[-1][2]  # the rollback after the candidate
    assert report.timelines.samples == 8
    calls = [p and p.calls for p in report.timelines.statements[0].points]
    assert calls == [4, 0, 6, 0, 8, 0, 2]
    plots = timeline_plots(report)
    assert plots and all(plot.shaded == expected for plot in plots)
    assert len(set(shade_colours(report))) == 4
    document = json.loads(render(report, "json"))["timelines"]["windows"]
    assert [w["name"] for w in document] == ["baseline", "candidate", "canary", "rollback"]
    assert document[3]["ended_at"] == expected[3][2].isoformat()
    html = render(report, "html")
    assert "rollback" in html[html.index('<section id="timelines">') :]


@pytest.mark.parametrize(
    ("marks", "expected"),
    [
        (["canary"], "invalid --mark 'canary': expected NAME=WINDOW"),
        (["canary="], "invalid --mark 'canary=': expected NAME=WINDOW"),
        (["=canary"], "invalid --mark name ''"),
        (["bad name=canary"], "invalid --mark name 'bad name'"),
        (["baseline=canary"], "--mark baseline: a window of that name is already shaded"),
        (["x=canary", "x=b"], "--mark x: a window of that name is already shaded"),
        (["x=a.."], "invalid window 'a..'"),
        (["x=nosuch"], "unknown snapshot label(s): 'nosuch:start', 'nosuch:end'"),
    ],
)
def test_bad_marks_are_one_error_line(
    migrated_database: Database, tmp_path: Path, marks: list[str], expected: str
) -> None:
    db = migrated_database
    for label in ("b", "c"):
        take(db, f"{label}:start")
        take(db, f"{label}:end")
    options = [arg for mark in marks for arg in ("--mark", mark)]
    result = run_cli("report", "--dsn", db.dsn, "--baseline", "b", "--candidate", "c",
                     *options, "--output-dir", str(tmp_path))  # fmt: skip
    assert_usage_error(result, expected)
    assert list(tmp_path.iterdir()) == []


def test_a_mark_needs_stored_windows(tmp_path: Path) -> None:
    result = run_cli("report", "--dsn", "postgresql://nobody@127.0.0.1:1/x", "--live",
                     "--mark", "canary=canary", "--output-dir", str(tmp_path))  # fmt: skip
    assert_usage_error(result, "--mark shades the timelines of stored windows: not with --live")


def test_replaying_what_samples_stored_gives_the_steps_of_whole_states(
    migrated_database: Database,
) -> None:
    """The cheap path (the first state and the rows stored after it) against every sample's
    state loaded whole: the same figures per step, problems included, across a removed sample
    (``fold``: the rows a later sample reads stay)."""
    db = migrated_database
    db.execute("CREATE TABLE public.fam (id bigint PRIMARY KEY, v int)")
    take(db, "r:start")
    for step in range(3):
        run_requests(db, 5 + step)
        _run(db, step % 2)
        if step == 2:
            db.execute(RESET_OWN_ENTRIES)
        take(db, f"r:{step}")
    db.execute("DROP TABLE public.fam")  # its table and index entries vanish
    take(db, "r:end")

    with psycopg.connect(db.dsn, autocommit=True) as conn:
        store = Store.of(conn)
        target = store.resolve_target(None)
        assert target is not None
        (removed,) = db.execute("SELECT id FROM perf_monitoring.snapshots WHERE label = 'r:0'")
        assert fold(conn, target, [removed[0]]) > 0
        start, end = _taken_at(db, "r:start"), _taken_at(db, "r:end")
        headers = store.headers_between(start, end, target)
        replay = store.replay(headers, target)
        replayed, first, last = replay.steps, replay.first, replay.last
        states = store.states(headers)
    whole = list(itertools.pairwise(states[h.id] for h in headers if h.id is not None))
    assert len(replayed) == len(whole) == 3

    def figures(pairs: list[tuple[Snapshot, Snapshot]]) -> list[Any]:
        steps = [step_between(a, b) for a, b in pairs]
        points, _ = step_points(steps)
        vanished = [len(window.deltas.tables.vanished) for _, window in steps]
        return [[step for step, _ in steps], points, vanished]

    found, expected = figures(replayed), figures(whole)
    assert found == expected
    assert [step.comparable for step in found[0]] == [True, False, True]
    assert sum(len(points or {}) for points in found[1]) > 0
    assert found[2] == [0, 0, 1]  # public.fam, gone from the last sample
    # Across the removed sample: both runs' calls (3 + 6 of the first statement).
    points, rows = step_points([step_between(*replayed[0])])
    assert points[0] is not None
    calls = {rows[key].query: point.calls for key, point in points[0].items()}
    assert calls["SELECT v FROM public.fam WHERE id = $1"] == sum(CALLS[BY_ID[0]])
    assert first is not None and last is not None and first.header.label == "r:start"
    assert size_growth(first, last) == size_growth(whole[0][0], whole[-1][1])
