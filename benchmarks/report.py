"""Benchmark (not a test): ``dbtools report`` over 5,000 distinct statements.

Measures, side by side in one run:

1. statements classified per second (scrub + sqlglot parse + fingerprint) with and without the
   parse cache, over two periods holding the same 5,000 statements (a before/after report);
2. building and rendering a before/after report from constructed rows (no database): time per
   format and the peak of Python allocations (tracemalloc);
3. an end-to-end ``--live`` report on a sandbox PostgreSQL whose pg_stat_statements holds
   5,000 distinct statements: time and the process's peak RSS;
4. the same report with every section read from the database (activity, space, settings,
   plans, index advice, schema health), with none of them, and with each one alone.

Run: ``.venv/bin/python -m benchmarks.report`` (writes benchmarks/RESULTS-report.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import random
import resource
import statistics
import time
import tracemalloc
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import psycopg

from benchmarks.machine import machine_lines
from dbtools.report import ReportOptions, make_report, render
from dbtools.report.inspection import SECTIONS, InspectionOptions, inspect
from dbtools.report.model import Report, ReportInput, build_report
from dbtools.sandbox import temporary_sandbox
from dbtools.sqltext.families import Classifier
from tests.report_fixture import grown, report_input, statement

STATEMENTS = 5_000
RUNS = 3
RESULTS = Path(__file__).with_name("RESULTS-report.md")

TEMPLATES = (
    "SELECT c{a}, c{b} FROM public.t{t} WHERE c{c} = $1",
    "SELECT * FROM public.t{t} WHERE c{a} IN ($1,$2,$3) ORDER BY c{b} LIMIT $4",
    "INSERT INTO public.t{t} (c{a}, c{b}) VALUES ($1, $2) "
    "ON CONFLICT (c{a}) DO UPDATE SET c{b} = excluded.c{b}",
    "UPDATE public.t{t} SET c{a} = $1 WHERE c{b} = $2 AND c{c} > now() - $3::interval",
    "WITH x AS (SELECT c{a} FROM public.t{t} WHERE c{b} > $1) "
    "SELECT count(*) FROM x JOIN public.t{u} AS y ON y.c{c} = x.c{a}",
    "DELETE FROM public.t{t} WHERE c{a} < $1 RETURNING c{b}",
    "VACUUM (ANALYZE) public.t{t}",
)


def distinct_texts(count: int, seed: int = 5) -> list[str]:
    """*count* distinct statement texts of varied shapes (deterministic)."""
    rng = random.Random(seed)
    texts: dict[str, None] = {}
    while len(texts) < count:
        template = rng.choice(TEMPLATES)
        values = {k: rng.randrange(40) for k in ("a", "b", "c")}
        texts[template.format(t=rng.randrange(60), u=rng.randrange(60), **values)] = None
    return list(texts)


def median_seconds(action: Callable[[], object], runs: int = RUNS) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


# -- 1. classification rate ---------------------------------------------------------------------


def classify_all(texts: list[str], *, cache: bool, periods: int = 2) -> Classifier:
    classifier = Classifier(cache=cache)
    for _ in range(periods):
        for queryid, text in enumerate(texts, 1):
            classifier.shape(queryid, text)
    return classifier


# -- 2. build and render from constructed rows --------------------------------------------------


def big_input(texts: list[str]):  # type: ignore[no-untyped-def]
    """The fixture's windows with 5,000 more statements in both periods."""
    data = report_input()
    extra = [statement(10_000 + i, text, 50, 5.0, 50, 100, 1) for i, text in enumerate(texts)]
    periods = []
    for step, period in enumerate(data.periods, 1):
        rows = tuple(grown(row, calls=step, total_exec_time=0.1 * step) for row in extra)
        periods.append(dataclasses.replace(period, statements=period.statements + rows))
    return dataclasses.replace(data, periods=tuple(periods))


def build(data: ReportInput) -> Report:
    return build_report(data, generated_at=datetime(2026, 1, 2, tzinfo=timezone.utc))


# -- 3. end to end on a server ------------------------------------------------------------------


def fill_pg_stat_statements(dsn: str, count: int) -> None:
    """*count* distinct statements in pg_stat_statements: c_i by c_j lookups on a wide table."""
    columns = ", ".join(f"c{i} int" for i in range(100))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE wide ({columns})")
        conn.execute("INSERT INTO wide (c0) SELECT g FROM generate_series(1, 100) g")
        sent = 0
        for i in range(100):
            for j in range(100):
                if sent == count:
                    return
                conn.execute(f"SELECT c{i} FROM wide WHERE c{j} = %s", (sent,))
                sent += 1


def live_report_seconds(dsn: str, fmt: str, sections: tuple[str, ...] = SECTIONS) -> float:
    options = ReportOptions(inspection=InspectionOptions(sections=frozenset(sections)))
    return median_seconds(lambda: render(make_report(dsn, live=True, options=options), fmt))


INSPECT_RUNS = 9


def inspection_seconds(dsn: str) -> dict[str, float]:
    """Seconds ``inspect`` takes for each section alone, and for all of them."""
    from dbtools.db.connection import session
    from dbtools.stats.collect import collect

    found = {}
    with session(dsn, autocommit=True) as conn:
        state = collect(conn)
        for name in (*SECTIONS, "all"):
            wanted = frozenset(SECTIONS if name == "all" else (name,))
            options = InspectionOptions(sections=wanted)
            found[name] = median_seconds(
                lambda options=options: inspect(  # type: ignore[misc]
                    conn, state, state.statements, options, live=True, large_table_rows=10_000
                ),
                INSPECT_RUNS,
            )
    return found


def user_tables(dsn: str) -> int:
    """User tables in the benchmark's database."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_user_tables").fetchone()
    return int(row[0]) if row else 0


def machine() -> str:
    return "; ".join(machine_lines())


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    texts = distinct_texts(STATEMENTS)
    lookups = 2 * STATEMENTS

    uncached = median_seconds(lambda: classify_all(texts, cache=False))
    cached = median_seconds(lambda: classify_all(texts, cache=True))
    classifier = classify_all(texts, cache=True)
    unparsed = sum(1 for i, t in enumerate(texts, 1) if not classifier.shape(i, t).parsed)

    data = big_input(texts)
    build_seconds = median_seconds(lambda: build(data))
    report = build(data)
    render_seconds = {
        fmt: median_seconds(functools.partial(render, report, fmt))
        for fmt in ("md", "json", "html")
    }
    tracemalloc.start()
    render(build(data), "html")
    _, peak_traced = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    with temporary_sandbox() as sandbox:
        dsn = sandbox.dsn()
        fill_pg_stat_statements(dsn, STATEMENTS)
        with psycopg.connect(dsn) as conn:
            in_pgss = conn.execute("SELECT count(*) FROM pg_stat_statements").fetchone()[0]  # type: ignore[index]
            server = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        live = {fmt: live_report_seconds(dsn, fmt) for fmt in ("md", "json", "html")}
        without = live_report_seconds(dsn, "md", ())
        inspecting = inspection_seconds(dsn)
        tables = user_tables(dsn)
    peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Report benchmark",
        "",
        f"- date: {when}",
        f"- machine: {machine()}",
        f"- PostgreSQL {server} (sandbox, embedded); sqlglot, matplotlib as installed",
        f"- command: `.venv/bin/python -m benchmarks.report` (medians of {RUNS} runs)",
        f"- load average when the run ended: {', '.join(f'{x:.2f}' for x in os.getloadavg())} "
        "(the machine is shared; figures are noisy)",
        "",
        f"## Classifying statements ({STATEMENTS:,} distinct texts, two periods: "
        f"{lookups:,} classifications)",
        "",
        "| parse cache | parses | seconds | classifications/s | parses/s |",
        "|---|---:|---:|---:|---:|",
        f"| off | {lookups:,} | {uncached:.2f} | {lookups / uncached:,.0f} | "
        f"{lookups / uncached:,.0f} |",
        f"| on (by queryid) | {STATEMENTS:,} | {cached:.2f} | {lookups / cached:,.0f} | "
        f"{STATEMENTS / cached:,.0f} |",
        "",
        f"The cache makes a before/after report {uncached / cached:.2f}x faster to classify "
        f"({unparsed:,} of the texts are utility statements kept unparsed).",
        "",
        f"## Building and rendering ({STATEMENTS:,} + 10 statements in each of two periods, "
        "no database)",
        "",
        "| step | seconds |",
        "|---|---:|",
        f"| build (classify, families, health) | {build_seconds:.2f} |",
        *(f"| render {fmt} | {seconds:.3f} |" for fmt, seconds in render_seconds.items()),
        "",
        f"Peak of Python allocations (tracemalloc) while building and rendering HTML: "
        f"{peak_traced / 2**20:.1f} MiB.",
        "",
        f"## End to end: `--live` report on a server with {in_pgss:,} pg_stat_statements entries",
        "",
        "Every section on (activity, space, settings, plans of the 10 costliest statements, "
        f"index advice, schema health; {tables} user tables; no hypopg in the embedded server):",
        "",
        "| format | seconds (connect, collect, inspect, build, render) |",
        "|---|---:|",
        *(f"| {fmt} | {seconds:.2f} |" for fmt, seconds in live.items()),
        "",
        f"Markdown with none of them: {without:.2f} s. What reading each section costs alone "
        f"(`inspection.inspect` on an open session, median of {INSPECT_RUNS} runs; the "
        "end-to-end figures above move more than this from run to run on a shared machine):",
        "",
        "| section | milliseconds |",
        "|---|---:|",
        *(f"| {name} | {seconds * 1000:.1f} |" for name, seconds in inspecting.items()),
        "",
        f"Peak RSS of the whole benchmark process: {peak_rss_mib:.0f} MiB.",
        "",
    ]
    RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
