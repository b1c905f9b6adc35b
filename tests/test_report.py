"""``dbtools report``: golden renderings of a fixed input, ground truth on a real database, no
secrets in any format, and charts that a real browser renders."""

from __future__ import annotations

import dataclasses
import gc
import json
import re
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy
import psycopg
import pytest
from PIL import Image

from dbtools.figures.deltas import WindowDeltas, window_deltas
from dbtools.figures.measures import P95_NAME, measure_window
from dbtools.figures.windows import window_labels
from dbtools.reading.rows import Snapshot
from dbtools.report import FORMATS, charts, make_report, render, write_report
from dbtools.report.html import render_html
from dbtools.report.model import Report, period_from_window
from dbtools.report.sections import sections
from dbtools.sqltext.families import shape_of
from dbtools.store import snapshots
from tests.conftest import Database, PgServer
from tests.factories import measured
from tests.helpers import assert_usage_error, check_golden, run_cli
from tests.report_fixture import (
    LOAD_TRIP,
    LOAD_TRIPS,
    OFFERS,
    OFFERS_BATCH,
    SECRET,
    TRAVELERS_2,
    fixed_report,
    windows,
)

CANDIDATE_BLUE = (0x2F, 0x6F, 0xB3)  # charts.COLOURS[1]: drawn by the charts and nothing else


# -- the fixed input ----------------------------------------------------------------------------


def test_markdown_golden() -> None:
    check_golden("report.md", render(fixed_report(), "md"))


def test_json_golden() -> None:
    check_golden("report.json", render(fixed_report(), "json"))


def test_the_build_leaves_the_collector_as_it_found_it() -> None:
    """The build freezes the objects alive before it (its input) out of garbage collection
    while it runs, then unfreezes them; objects a program froze itself stay frozen."""
    assert gc.get_freeze_count() == 0
    fixed_report()
    assert gc.get_freeze_count() == 0
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        fixed_report()
        assert gc.get_freeze_count() >= frozen > 0
    finally:
        gc.unfreeze()


def test_fixed_report_findings() -> None:
    """What the fixed input must yield, stated outright (the golden files hold the rest)."""
    report = fixed_report()
    suspects = {s.fingerprint: s for s in report.n_plus_one}
    load, offers = shape_of(LOAD_TRIP), shape_of(OFFERS)
    assert set(suspects) == {load.fingerprint, offers.fingerprint}
    assert suspects[load.fingerprint].batched_family == shape_of(LOAD_TRIPS).fingerprint
    assert suspects[offers.fingerprint].batched_family == shape_of(OFFERS_BATCH).fingerprint
    assert suspects[load.fingerprint].figures["baseline"].calls_per_request == 1.0  # type: ignore[union-attr]

    in_list = next(f for f in report.families if f.fingerprint == shape_of(TRAVELERS_2).fingerprint)
    assert in_list.figures["baseline"].statements == 2  # type: ignore[union-attr]
    assert in_list.figures["baseline"].calls == 6  # type: ignore[union-attr]
    assert {f.kind for f in report.unparsed} == {"vacuum", "alter role"}

    assert report.periods[0].queries_per_request == pytest.approx(3.08)
    assert report.periods[1].queries_per_request == pytest.approx(0.31)
    assert report.query_reduction == pytest.approx(1 - 0.31 / 3.08)

    index_findings = {(f.check, f.subject) for f in report.index_health}
    assert index_findings == {
        ("invalid_index", "public.ix_flight_search_cache_key_expiry"),
        ("duplicate_index", "public.ix_flight_offers_trip_expiry_copy"),
        ("overlapping_index", "public.ix_flight_offers_trip"),
        ("unused_index", "public.ix_bookings_created_at"),
        ("rarely_used_index", "public.ix_trip_requests_active_batch"),  # 20 scans, under 50
        ("unindexed_foreign_key", "public.bookings"),
        ("sequential_scans", "public.flight_search_cache"),
    }
    vacuum_findings = {(f.check, f.subject) for f in report.autovacuum_health}
    assert vacuum_findings == {
        ("autovacuum_settings", "public.flight_search_cache"),
        ("autovacuum_settings", "public.trip_requests"),
        ("dead_tuples", "public.flight_offers"),
        ("stale_statistics", "public.bookings"),
        ("stale_statistics", "public.flight_offers"),
        ("stale_statistics", "public.flight_search_cache"),
        ("transaction_id_age", "flights"),
        ("transaction_id_age", "public.flight_offers"),
    }


def test_a_comparison_opens_with_verifys_verdict_and_the_guides_figures() -> None:
    report = fixed_report()
    assert report.verification is not None
    opening = sections(report)[0]
    assert (opening.id, opening.title) == ("opening", "Verdict: FAIL (exit code 1)")
    rows = {row[0]: row[1:] for row in opening.rows}
    assert list(rows)[:7] == [
        "queries per request", "query reduction", "app cache hit ratio", P95_NAME,
        "error rate", "query rate", "queries (application)",
    ]  # fmt: skip
    assert rows["queries per request"][:2] == ["3.08", "0.31"]
    assert rows[P95_NAME] == [
        "900.0 ms", "240.0 ms", "< 300 ms (critical > 500 ms, rollback > 1000 ms)", "pass",
    ]  # fmt: skip
    assert rows["error rate"][:2] == ["1.0%", "0.0%"]
    assert len(opening.rows) == 7
    # Verify's other findings follow, each that did not pass in full.
    assert opening.bullets == [
        "batch_indexes FAIL: public.ix_flight_search_cache_key_expiry: invalid: rebuild with "
        "REINDEX INDEX CONCURRENTLY public.ix_flight_search_cache_key_expiry",
        "autovacuum_settings FAIL: public.flight_search_cache: autovacuum_vacuum_scale_factor = "
        "(unset), expected 0.02; autovacuum_analyze_scale_factor = (unset), expected 0.01; "
        "autovacuum_vacuum_insert_scale_factor = (unset), expected 0.05",
        "autovacuum_settings FAIL: public.trip_requests: autovacuum_vacuum_scale_factor = 0.2, "
        "expected 0.05",
        "passed: window (2), work_per_request, schema_at_head, batch_indexes (2), "
        "autovacuum_settings, monitoring_tables",
    ]


def test_a_chart_is_drawn_only_where_its_values_can_differ() -> None:
    report = fixed_report()
    assert charts.hit_ratios(report) is not None
    assert charts.queries_per_request(report) is not None
    alike = dataclasses.replace(report, periods=tuple(
        dataclasses.replace(p, buffer_cache_hit_ratio=1.0, index_hit_ratio=1.0,
                            table_hit_ratio=1.0, queries_per_request=0.5)
        for p in report.periods
    ))  # fmt: skip
    assert charts.hit_ratios(alike) is None  # three pairs of 100% bars say nothing
    assert charts.queries_per_request(alike) is None
    assert charts.charts(alike)["summary"] == []


def test_a_statement_label_is_drawn_as_text_never_as_mathematics() -> None:
    """matplotlib typesets what lies between two $ as mathematics (italic glyphs, no $): the
    placeholders of a statement must stay text. The SVG keeps each text as a comment beside
    its glyphs."""
    report = fixed_report()
    query = "SELECT $3 AS source, $4 AS x FROM t"
    lines = tuple(dataclasses.replace(line, query=query) for line in report.top_statements)
    svg = charts.top_statements(dataclasses.replace(report, top_statements=lines))
    assert svg is not None
    assert f"<!-- #1 {query} -->" in svg
    assert "Oblique" not in svg  # the glyphs of mathematics (DejaVuSans-Oblique) never drawn
    assert "\\$" not in svg  # the escape is not drawn either


def test_a_windows_deltas_are_computed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A report's period and its figures read one computation of a window's deltas (a window
    of in-memory snapshots: the reference sums)."""
    computed: list[str | None] = []

    def counting(start: Snapshot, end: Snapshot) -> WindowDeltas:
        computed.append(start.header.label)
        return window_deltas(start, end)

    monkeypatch.setattr("dbtools.figures.windows.window_deltas", counting)
    baseline, _ = windows()
    period = period_from_window(baseline, measured(baseline), "baseline")
    assert measure_window(baseline) == period.measures
    assert computed == ["baseline:start"]
    assert period.statements is baseline.deltas.statements.rows


def test_json_is_stable_and_versioned() -> None:
    document = json.loads(render(fixed_report(), "json"))
    assert document["schema_version"] == 2 and document["kind"] == "report"
    assert list(document) == [
        "schema_version", "kind", "title", "generated_at", "source", "target", "database",
        "server_version", "periods", "query_reduction", "top_statements", "families",
        "unparsed", "n_plus_one", "table_hit_ratios", "indexes", "index_health", "autovacuum",
        "autovacuum_health", "notes", "verification", "story", "batchable", "changes", "rules",
        "activity", "space", "settings", "plans", "index_advice", "schema_health", "timelines",
    ]  # fmt: skip
    # Findings use dbtools.findings' vocabulary, as verify's and lint's do.
    assert list(document["index_health"][0]) == [
        "check", "status", "subject", "message", "value", "threshold", "fix", "source",
        "location", "because",
    ]  # fmt: skip
    first = document["top_statements"][0]
    assert isinstance(first["queryid"], str)  # 64-bit ids survive JavaScript
    assert set(first["figures"]) == {"baseline", "candidate"}
    assert render(fixed_report(), "json") == render(fixed_report(), "json")


@pytest.mark.parametrize("fmt", FORMATS)
def test_fixed_report_never_shows_the_password(fmt: str) -> None:
    text = render(fixed_report(), fmt)
    assert SECRET not in text
    assert "ALTER ROLE app PASSWORD $1" in text


def test_html_is_self_contained() -> None:
    html = render(fixed_report(), "html")
    assert html.count("<svg") == 3  # queries per request, hit ratios, top statements
    references = re.findall(r"""(?:src|href)\s*=\s*["']?(?!#)([^"'\s>]+)""", html)
    assert references == []
    assert re.findall(r"url\((?!#)", html) == []  # only the SVGs' own clip paths
    for needle in ("<script", "<link", "@import", "<img", "<iframe"):
        assert needle not in html


def test_written_atomically_with_timestamped_name(tmp_path: Path) -> None:
    report = fixed_report()
    paths = [write_report(report, fmt, tmp_path) for fmt in FORMATS]
    assert [p.name for p in paths] == [
        f"report-baseline-vs-candidate-20260102T120000Z.{fmt}" for fmt in FORMATS
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)
    assert paths[0].read_text() == render(report, "md")


# -- the browser ---------------------------------------------------------------------------------


def screenshot(html: str, directory: Path, name: str) -> Image.Image:
    """Render *html* in headless Chromium; the screenshot as an RGB image."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail(
            "chromium is not installed: the HTML report test needs it "
            "(apt-get install -y chromium; .ci/run installs it)",
            pytrace=False,
        )
    page, png = directory / f"{name}.html", directory / f"{name}.png"
    page.write_text(html, encoding="utf-8")
    result = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={directory / (name + '-profile')}",
         f"--screenshot={png}", "--window-size=1200,2000", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0 and png.exists(), result.stderr[-2000:]
    return Image.open(png).convert("RGB")


def count_pixels(image: Image.Image, colour: tuple[int, int, int], tolerance: int = 8) -> int:
    pixels = numpy.asarray(image, dtype=numpy.int16)
    close = numpy.abs(pixels - numpy.array(colour, dtype=numpy.int16)) <= tolerance
    return int(close.all(axis=-1).sum())


def test_html_charts_render_in_chromium(tmp_path: Path) -> None:
    report = fixed_report()
    with_charts = screenshot(render_html(report), tmp_path, "charts")
    without = screenshot(render_html(report, with_charts=False), tmp_path, "plain")
    assert with_charts.size == (1200, 2000)
    for image in (with_charts, without):  # both rendered the page, not a blank screen
        assert count_pixels(image, (255, 255, 255), tolerance=0) < 1200 * 2000 * 0.98
    # The candidate's bars are drawn in one colour that nothing else on the page uses.
    assert count_pixels(without, CANDIDATE_BLUE) == 0
    assert count_pixels(with_charts, CANDIDATE_BLUE) > 5_000


# -- a real database -----------------------------------------------------------------------------

LOOKUP_TRIP = "SELECT id, search_key FROM trip_requests WHERE id = %(id)s AND status = 'active'"
LOOKUP_OFFERS = "SELECT price_total FROM flight_offers WHERE trip_request_id = %(id)s"
BATCH_TRIPS = (
    "SELECT id, search_key FROM trip_requests WHERE id = ANY(%(ids)s) AND status = 'active'"
)
BATCH_OFFERS = "SELECT price_total FROM flight_offers WHERE trip_request_id = ANY(%(ids)s)"
REQUESTS = 20
OFFER_LOOKUPS_PER_REQUEST = 3


def serve(db: Database, label: str, work: list[tuple[str, Any]], requests: int) -> None:
    """Run *work* between the snapshots LABEL:start and LABEL:end (with *requests*)."""
    start, end = window_labels(label)
    snapshots.snapshot(db.dsn, start)
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        for statement, params in work:
            conn.execute(statement, params)
    snapshots.snapshot(db.dsn, end, requests=requests)


def test_report_ground_truth(migrated_database: Database, pg_server: PgServer) -> None:
    """Per-request lookups (one and three per request) against their batched forms."""
    db = migrated_database
    baseline: list[tuple[str, Any]] = []
    for request in range(REQUESTS):
        baseline.append((LOOKUP_TRIP, {"id": request}))
        baseline += [(LOOKUP_OFFERS, {"id": request})] * OFFER_LOOKUPS_PER_REQUEST
    baseline += [("SELECT id FROM travelers WHERE id IN (%s, %s)", (1, 2))] * 4
    baseline += [("SELECT id FROM travelers WHERE id IN (%s, %s, %s)", (1, 2, 3))] * 2
    serve(db, "b", baseline, REQUESTS)
    candidate = [
        (statement, {"ids": list(range(first, first + 10))})
        for first in range(0, REQUESTS, 10)
        for statement in (BATCH_TRIPS, BATCH_OFFERS)
    ]
    serve(db, "c", candidate, REQUESTS)

    report = make_report(
        db.dsn, baseline="b", candidate="c", generated_at=datetime.now(timezone.utc)
    )

    sent_before = REQUESTS * (1 + OFFER_LOOKUPS_PER_REQUEST) + 6
    assert [p.queries for p in report.periods] == [sent_before, 4]
    assert report.periods[0].queries_per_request == sent_before / REQUESTS
    assert report.periods[1].queries_per_request == 4 / REQUESTS
    assert report.query_reduction == pytest.approx(1 - 4 / sent_before)

    families = {f.fingerprint: f for f in report.families}
    trips = _family(report, "trip_requests", "id = $1")
    offers = _family(report, "flight_offers", "id = $1")
    batch_trips = _family(report, "trip_requests", "ANY(")
    batch_offers = _family(report, "flight_offers", "ANY(")
    suspects = {s.fingerprint: s for s in report.n_plus_one}
    assert set(suspects) == {trips, offers}
    assert suspects[trips].figures["baseline"].calls_per_request == 1.0  # type: ignore[union-attr]
    assert suspects[offers].figures["baseline"].calls_per_request == 3.0  # type: ignore[union-attr]
    assert suspects[offers].figures["candidate"] is None
    assert suspects[trips].batched_family == batch_trips
    assert suspects[offers].batched_family == batch_offers
    assert families[batch_offers].figures["candidate"].calls == REQUESTS // 10  # type: ignore[union-attr]

    # PostgreSQL 18 keeps one entry for IN lists of any length, 15 one per length: one family.
    in_lists = [f for f in report.families if "IN (" in f.sql and "travelers" in f.sql]
    assert len(in_lists) == 1
    assert in_lists[0].figures["baseline"].calls == 6  # type: ignore[union-attr]
    assert in_lists[0].figures["baseline"].statements == (2 if pg_server.major < 18 else 1)  # type: ignore[union-attr]

    gone = next(line for line in report.top_statements if line.fingerprint == offers)
    assert gone.change is not None and gone.change.status == "gone"
    assert gone.figures["baseline"].calls == REQUESTS * OFFER_LOOKUPS_PER_REQUEST  # type: ignore[union-attr]
    assert report.periods[0].problems == () and report.periods[1].problems == ()


# Parents whose keys differ in position or type from the others' (p3: int, p4: id second).
FK_SCHEMA = """
CREATE TABLE p1 (id bigint PRIMARY KEY);
CREATE TABLE p2 (id bigint PRIMARY KEY);
CREATE TABLE p3 (id int PRIMARY KEY);
CREATE TABLE p4 (code text, id bigint PRIMARY KEY);
CREATE TABLE child (a bigint REFERENCES p1, b bigint REFERENCES p2, c int REFERENCES p3,
                    d bigint REFERENCES p4);
INSERT INTO p1 SELECT generate_series(1, 10);
INSERT INTO p2 SELECT generate_series(1, 10);
INSERT INTO p3 SELECT generate_series(1, 10);
INSERT INTO p4 SELECT 'x', generate_series(1, 10);
"""
# Parents whose key is one bigint in first position, as PostgreSQL 18 identifies an FK check.
SAME_KEY_PARENTS_SQL = """
SELECT DISTINCT n.nspname || '.' || c.relname
FROM pg_constraint k JOIN pg_class c ON c.oid = k.confrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = k.confkey[1]
WHERE k.contype = 'f' AND k.confkey = '{1}' AND a.atttypid = 'bigint'::regtype
"""


def test_a_foreign_key_check_entry_shows_every_table_it_may_cover(
    migrated_database: Database, pg_server: PgServer
) -> None:
    """PostgreSQL 18 names a table in a queryid by the name the statement gives it, and every
    foreign-key check calls its table ``x``: checks against parents whose keys have the same
    position and type share one entry, whose text names only the first. The report lists every
    parent such an entry may stand for; on 15 each parent has its own entry. Never the alias."""
    db = migrated_database
    with db.connect() as conn:
        conn.execute(FK_SCHEMA)
        conn.execute("INSERT INTO child (a) VALUES (1)")  # the p1 text comes first on 18
    inserts = {"a": 3, "b": 4, "c": 5, "d": 6}
    work = [(f"INSERT INTO child ({column}) VALUES (1)", None)
            for column, count in inserts.items() for _ in range(count)]  # fmt: skip
    serve(db, "w", work, REQUESTS)
    report = make_report(db.dsn, window="w", generated_at=datetime.now(timezone.utc))

    checks = {f.fingerprint: f for f in report.families if f.kind == "foreign-key check"}
    assert all("x" not in f.tables for f in report.families)
    by_first = {f.sql.split('"')[3]: f for f in checks.values()}  # the parent the text names
    calls = {name: f.figures["w"].calls for name, f in by_first.items()}  # type: ignore[union-attr]
    if pg_server.major < 18:
        assert {name: f.tables for name, f in by_first.items()} == {
            "p1": ("public.p1",), "p2": ("public.p2",), "p3": ("public.p3",),
            "p4": ("public.p4",),
        }  # fmt: skip
        assert calls == {"p1": 3, "p2": 4, "p3": 5, "p4": 6}
        assert not any(f.shared_entry for f in checks.values())
        return
    same_key = {name for (name,) in db.execute(SAME_KEY_PARENTS_SQL)}
    assert {"public.p1", "public.p2"} <= same_key
    # Samples refer to no snapshot by a foreign key (revision 0005): storing one runs no check.
    assert "perf_monitoring.snapshots" not in same_key
    assert "public.p3" not in same_key and "public.p4" not in same_key
    assert set(by_first) == {"p1", "p3", "p4"}  # p2's checks are counted under p1's text
    shared = by_first["p1"]
    assert shared.shared_entry and set(shared.tables) == same_key
    assert (by_first["p3"].tables, by_first["p4"].tables) == (("public.p3",), ("public.p4",))
    # The window holds p1's and p2's checks: one entry, several tables.
    assert calls == {"p1": 3 + 4, "p3": 5, "p4": 6}
    markdown = render(report, "md")
    listed = re.escape("several tables: " + ", ".join(sorted(same_key)))
    assert re.search(rf"\| foreign-key check\s+\| {listed}\s+\|", markdown)


def test_the_work_pg_stat_statements_records_is_shown(migrated_database: Database) -> None:
    """Planning time (with track_planning on in the session), temp blocks, WAL and I/O timing of
    the window's statements, equal to what pg_stat_statements recorded for them."""
    db = migrated_database
    db.execute("CREATE TABLE big (id bigint, pad text)")
    start, end = window_labels("work")
    snapshots.snapshot(db.dsn, start)
    with db.connect() as conn:
        conn.execute("SET pg_stat_statements.track_planning = on")
        conn.execute("SET work_mem = '64kB'")
        conn.execute("INSERT INTO big SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g")
        conn.execute("SELECT id FROM big ORDER BY pad DESC, id OFFSET 19999")
    snapshots.snapshot(db.dsn, end, requests=1)
    recorded = db.execute(
        "SELECT sum(plans), sum(total_plan_time), sum(temp_blks_read), sum(temp_blks_written),"
        " sum(wal_records)::bigint, sum(wal_bytes)::bigint FROM pg_stat_statements"
        " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " AND (query LIKE 'INSERT INTO big%' OR query LIKE 'SELECT id FROM big%')"
    )[0]
    report = make_report(db.dsn, window="work", generated_at=datetime.now(timezone.utc))
    work = report.periods[0].work
    assert work.plans == recorded[0] and work.plans >= 2
    assert work.plan_time_ms == pytest.approx(recorded[1])
    assert (work.temp_blks_read, work.temp_blks_written) == (recorded[2], recorded[3])
    assert work.temp_blks_written > 0
    assert (work.wal_records, work.wal_bytes) == (recorded[4], recorded[5])
    assert work.wal_bytes > 0
    (summary,) = [section for section in sections(report) if section.id == "summary"]
    rows = {row[0]: row[1] for row in summary.rows}
    assert rows["planning time"].endswith(f"({work.plans:,} plans)")
    assert (
        rows["temp blocks"] == f"{work.temp_blks_read:,} read, {work.temp_blks_written:,} written"
    )
    assert rows["WAL"].startswith(f"{work.wal_records:,} records")


def _family(report: Report, table: str, marker: str) -> str:
    found = [
        f.fingerprint
        for f in report.families
        if f.tables == (table,) and marker in f.sql and f.kind == "select"
    ]
    assert len(found) == 1, (table, marker, [f.sql for f in report.families])
    return found[0]


def test_password_literal_never_reaches_a_report(
    migrated_database: Database, pg_server: PgServer, tmp_path: Path
) -> None:
    """A role's password set on the server (kept as a literal in pg_stat_statements), and the
    DSN's password: in no format, window or live, nor on the terminal."""
    if pg_server.sandbox is None:
        pytest.fail("this test needs the sandbox's password authentication on TCP")
    db = migrated_database
    role = f"report_probe_{db.name}"
    snapshots.snapshot(db.dsn, "p:start")
    db.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{SECRET}' IN ROLE pg_monitor")
    try:
        db.execute(f"ALTER ROLE {role} PASSWORD '{SECRET}'")
        snapshots.snapshot(db.dsn, "p:end")
        db.execute(f"GRANT USAGE ON SCHEMA perf_monitoring TO {role}")
        db.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA perf_monitoring TO {role}")
        db.execute(f"GRANT SELECT ON public.alembic_version TO {role}")  # reading.live reads it
        stored = db.execute(
            "SELECT count(*) FROM pg_stat_statements WHERE query LIKE %s AND dbid = "
            "(SELECT oid FROM pg_database WHERE datname = current_database())",
            (f"%{SECRET}%",),
        )
        assert stored[0][0] >= 2  # the server kept the literal: there is something to scrub
        dsn = pg_server.sandbox.tcp_dsn(db.name, role, SECRET)
        for source in (["--window", "p"], ["--live"]):
            for fmt in FORMATS:
                out = tmp_path / f"{source[0][2:]}-{fmt}"
                result = run_cli("report", "--dsn", dsn, *source, "--format", fmt,
                                 "--output-dir", str(out))  # fmt: skip
                assert result.exit_code == 0, result.output
                (written,) = out.iterdir()
                text = written.read_text()
                assert SECRET not in text + result.output
                assert f"ALTER ROLE {role} PASSWORD $1" in text
                assert "report_probe" in text and "127.0.0.1" in text  # the target, no password
    finally:
        db.execute(f"DROP OWNED BY {role}")
        db.execute(f"DROP ROLE {role}")


# -- command line --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give exactly one of"),
        (["--live", "--window", "w"], "give exactly one of"),
        (["--baseline", "w"], "--baseline and --candidate go together"),
        (["--window", "nowhere"], "unknown snapshot label"),
        (["--window", "a..b..c"], "invalid window"),
    ],
)
def test_bad_input_is_one_line_exit_2_nothing_written(
    migrated_database: Database, tmp_path: Path, args: list[str], message: str
) -> None:
    out = tmp_path / "reports"
    result = run_cli("report", "--dsn", migrated_database.dsn, *args, "--output-dir", str(out))
    assert_usage_error(result, message)
    assert not out.exists()


def test_unwritable_output_dir_is_exit_2(database: Database, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    out = blocker / "reports"  # cannot be created: its parent is a file
    result = run_cli("report", "--dsn", database.dsn, "--live", "--output-dir", str(out))
    assert_usage_error(result, "Error: cannot write")


def test_cli_prints_the_path_of_the_report(database: Database, tmp_path: Path) -> None:
    database.execute("CREATE TABLE t (id int PRIMARY KEY)")
    result = run_cli("report", "--dsn", database.dsn, "--live", "--format", "json",
                     "--output-dir", str(tmp_path))  # fmt: skip
    assert result.exit_code == 0, result.stderr
    (written,) = tmp_path.iterdir()
    assert result.stdout.strip() == str(written)
    assert re.fullmatch(r"report-live-\d{8}T\d{6}Z\.json", written.name)
    document = json.loads(written.read_text())
    assert document["source"] == "live" and document["database"] == database.name
    assert any("CREATE TABLE t" in f["sql"] for f in document["families"] + document["unparsed"])


def test_the_command_offers_every_renderer() -> None:
    from dbtools.cli.report import REPORT_FORMATS
    from dbtools.report import FORMATS

    assert REPORT_FORMATS == FORMATS
